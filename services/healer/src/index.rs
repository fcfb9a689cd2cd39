//! The tantivy index over the knowledge base: patterns and observed signatures (with the fixes
//! that worked for them), on disk under `<data_dir>/healer/index`.
//!
//! Two uses: full-text search of patterns (`GET /v1/patterns?q=`), and similar-error search,
//! which ranks patterns and known signatures for a diagnostic no pattern matched (BM25 over its
//! template's words plus tool and category), so an analysis has useful matches even for errors
//! never seen. The pattern part is rebuilt when the pattern files change (their digest is kept
//! beside the index); signatures are added as they are first seen and updated when a fix is
//! recorded. Writes are committed by the healer's flush thread, not on the request path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, STORED, STRING, Schema, TEXT, Value};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

use crate::model::Category;
use crate::patterns::PatternSet;

/// Bumped when the schema changes: an index of another version is rebuilt from scratch.
const SCHEMA_VERSION: &str = "1";
const WRITER_MEMORY: usize = 20_000_000;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    kind: Field,
    id: Field,
    title: Field,
    body: Field,
    tool: Field,
    category: Field,
}

/// A search hit: what it is, its id, its BM25 score.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub kind: HitKind,
    pub id: String,
    pub title: String,
    pub score: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    Pattern,
    Signature,
}

pub struct KnowledgeIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    dirty: AtomicBool,
    path: PathBuf,
}

impl std::fmt::Debug for KnowledgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeIndex").field("path", &self.path).finish()
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        kind: b.add_text_field("kind", STRING | STORED),
        id: b.add_text_field("id", STRING | STORED),
        title: b.add_text_field("title", TEXT | STORED),
        body: b.add_text_field("body", TEXT),
        tool: b.add_text_field("tool", TEXT),
        category: b.add_text_field("category", TEXT),
    };
    (b.build(), fields)
}

/// Words of a text, as a query: placeholders (`<module>`) and punctuation go.
fn query_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_placeholder = false;
    for c in text.chars() {
        match c {
            '<' => in_placeholder = true,
            '>' => in_placeholder = false,
            c if in_placeholder => {
                let _ = c;
            }
            c if c.is_alphanumeric() => out.push(c),
            _ => out.push(' '),
        }
    }
    out.split_whitespace().filter(|w| w.len() > 1).take(48).collect::<Vec<_>>().join(" ")
}

impl KnowledgeIndex {
    /// Opens the index in `dir`, creating it, or rebuilding it when the schema version changed;
    /// re-indexes the patterns when their files changed.
    pub fn open(dir: &Path, patterns: &PatternSet) -> Result<KnowledgeIndex, IndexError> {
        let io = |source| IndexError::Io { path: dir.display().to_string(), source };
        let version_file = dir.join("helix-schema-version");
        let same_version = std::fs::read_to_string(&version_file).is_ok_and(|v| v.trim() == SCHEMA_VERSION);
        if dir.exists() && !same_version {
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let (schema, fields) = schema();
        let index = if dir.join("meta.json").exists() {
            Index::open_in_dir(dir)?
        } else {
            Index::create_in_dir(dir, schema)?
        };
        std::fs::write(&version_file, SCHEMA_VERSION).map_err(io)?;
        let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::OnCommitWithDelay).try_into()?;
        let this = KnowledgeIndex {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            dirty: AtomicBool::new(false),
            path: dir.to_path_buf(),
        };
        let digest_file = dir.join("helix-patterns.sha256");
        let indexed = std::fs::read_to_string(&digest_file).unwrap_or_default();
        if indexed.trim() != patterns.digest() {
            this.index_patterns(patterns)?;
            this.commit()?;
            std::fs::write(&digest_file, patterns.digest()).map_err(io)?;
            tracing::info!(patterns = patterns.len(), "pattern index rebuilt");
        }
        Ok(this)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index_patterns(&self, patterns: &PatternSet) -> Result<(), IndexError> {
        let f = self.fields;
        let writer = self.lock();
        writer.delete_term(Term::from_field_text(f.kind, "pattern"));
        for p in patterns.iter() {
            let body = format!(
                "{} {} {} {} {}",
                p.explanation,
                p.fixes.join(" "),
                p.matcher.as_str(),
                p.ecosystem,
                p.id.replace(['.', '-'], " ")
            );
            let tools = if p.tools.is_empty() { p.ecosystem.clone() } else { p.tools.join(" ") };
            writer.add_document(doc!(
                f.kind => "pattern",
                f.id => p.id.clone(),
                f.title => p.title.clone(),
                f.body => body,
                f.tool => tools,
                f.category => p.category.as_str().replace('_', " "),
            ))?;
        }
        Ok(())
    }

    /// Adds or replaces a signature: its template, tool, category and the fixes that worked.
    pub fn upsert_signature(
        &self,
        signature: &str,
        template: &str,
        tool: &str,
        category: Category,
        fixes: &[String],
    ) -> Result<(), IndexError> {
        let f = self.fields;
        let writer = self.lock();
        writer.delete_term(Term::from_field_text(f.id, signature));
        writer.add_document(doc!(
            f.kind => "signature",
            f.id => signature.to_owned(),
            f.title => template.to_owned(),
            f.body => fixes.join(" "),
            f.tool => tool.to_owned(),
            f.category => category.as_str().replace('_', " "),
        ))?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Indexes `signature` as `store` knows it now: its template, tool, category and the fixes
    /// that worked (after a fix is recorded, here or on another replica). Failures are logged:
    /// the index is a cache of the store.
    pub fn learn_signature(&self, store: &dyn crate::store::LearningStore, signature: &str) {
        let Some(report) = store.report(signature, &crate::store::FixScope::All) else { return };
        let worked: Vec<String> =
            report.fixes.iter().filter(|f| f.successes > 0).map(|f| f.description.clone()).collect();
        let template = report.template.clone().unwrap_or_default();
        let tool = report.tool.clone().unwrap_or_default();
        let category = report.category.unwrap_or(Category::Unknown);
        if let Err(e) = self.upsert_signature(signature, &template, &tool, category, &worked) {
            tracing::warn!(error = %e, "cannot index a signature");
        }
    }

    /// Drops signatures the store forgot.
    pub fn remove_signatures(&self, signatures: &[String]) {
        if signatures.is_empty() {
            return;
        }
        let writer = self.lock();
        for s in signatures {
            writer.delete_term(Term::from_field_text(self.fields.id, s));
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Commits pending writes, if any (the flush thread calls this every second).
    pub fn commit_if_dirty(&self) -> Result<(), IndexError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&self) -> Result<(), IndexError> {
        self.lock().commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Full-text search over patterns.
    pub fn search_patterns(&self, q: &str, limit: usize) -> Result<Vec<Hit>, IndexError> {
        let words = query_words(q);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.title, f.body, f.tool, f.category]);
        parser.set_field_boost(f.title, 2.0);
        let (query, _) = parser.parse_query_lenient(&format!("+kind:pattern AND ({words})"));
        self.run(&*query, limit)
    }

    /// Patterns and signatures similar to a diagnostic: BM25 over its template's words, tool
    /// and category.
    pub fn similar(
        &self,
        template: &str,
        tool: &str,
        category: Category,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let words = query_words(template);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.title, f.body, f.tool, f.category]);
        parser.set_field_boost(f.title, 2.0);
        parser.set_field_boost(f.tool, 0.5);
        parser.set_field_boost(f.category, 0.5);
        let text = format!(
            "({words}) tool:({}) category:({})",
            query_words(tool),
            category.as_str().replace('_', " ")
        );
        let (query, _) = parser.parse_query_lenient(&text);
        self.run(&*query, limit)
    }

    fn run(&self, query: &dyn tantivy::query::Query, limit: usize) -> Result<Vec<Hit>, IndexError> {
        let searcher = self.reader.searcher();
        let top = searcher.search(query, &TopDocs::with_limit(limit.max(1)).order_by_score())?;
        let f = self.fields;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let text =
                |field| d.get_first(field).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let kind = if text(f.kind) == "signature" { HitKind::Signature } else { HitKind::Pattern };
            hits.push(Hit { kind, id: text(f.id), title: text(f.title), score });
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_patterns_and_finds_similar_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let patterns = PatternSet::seed().expect("seed");
        let idx = KnowledgeIndex::open(&dir.path().join("index"), &patterns).expect("open");
        let hits = idx.search_patterns("module not installed pip", 5).expect("search");
        assert!(hits.iter().any(|h| h.id == "python.module-not-found"), "{hits:?}");
        // a message no pattern matches word for word still finds its family
        let hits = idx
            .similar(
                "ModuleNotFoundError: the module '<quoted>' could not be located by the import system",
                "python",
                Category::MissingDependency,
                5,
            )
            .expect("similar");
        assert!(hits.iter().take(3).any(|h| h.id.starts_with("python.")), "{hits:?}");
        // signatures come back once committed
        idx.upsert_signature(
            &"a".repeat(64),
            "frobnicator exploded: <quoted>",
            "frob",
            Category::RuntimeError,
            &["restart the frobnicator".to_owned()],
        )
        .expect("upsert");
        idx.commit_if_dirty().expect("commit");
        let hits =
            idx.similar("frobnicator exploded again", "frob", Category::RuntimeError, 3).expect("similar");
        assert_eq!(hits.first().map(|h| h.kind), Some(HitKind::Signature), "{hits:?}");
    }

    #[test]
    fn reopening_keeps_the_index_and_a_pattern_change_rebuilds_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("index");
        let one = "ecosystem = \"x\"\n[[patterns]]\nid = \"x.alpha\"\ntitle = \"zebra failure\"\nmatch = 'zebra'\ncategory = \"unknown\"\nexplanation = \"e\"\n";
        let set = PatternSet::load(&[("x.toml", one)]).expect("load");
        drop(KnowledgeIndex::open(&path, &set).expect("open"));
        let idx = KnowledgeIndex::open(&path, &set).expect("reopen");
        assert_eq!(idx.search_patterns("zebra", 5).expect("search").len(), 1);
        drop(idx);
        let two = one.replace("zebra failure", "giraffe failure");
        let set = PatternSet::load(&[("x.toml", two.as_str())]).expect("load");
        let idx = KnowledgeIndex::open(&path, &set).expect("rebuild");
        assert!(
            idx.search_patterns("zebra failure", 5)
                .expect("search")
                .iter()
                .all(|h| h.title != "zebra failure")
        );
        assert_eq!(idx.search_patterns("giraffe", 5).expect("search").len(), 1);
    }
}
