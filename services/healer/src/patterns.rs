//! The pattern knowledge base: human-editable TOML files under `patterns/`, one per ecosystem.
//!
//! A pattern says how to recognise a diagnostic (a regex over its message, optionally a tool
//! filter, a diagnostic code and a regex over its context lines), what it is (category, failure
//! class, which parameter is the key), and what to do about it (explanation, fixes, and
//! machine-applicable actions). Named capture groups become the diagnostic's parameters and
//! are masked as `<name>` in its template, so the pattern base also sharpens signatures.
//!
//! Files are validated as a whole when loaded: a bad file is rejected with its name and the line
//! of the offending key, so a typo stops start-up instead of silently matching nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::matcher::{Groups, Matcher};
use serde::Deserialize;
use toml::Spanned;

use crate::model::{Category, FailureClass, RawDiagnostic};

/// The seed pattern files, compiled into the binary so `helix up` works from any directory.
pub const SEED: &[(&str, &str)] = &[
    ("c.toml", include_str!("../../../patterns/c.toml")),
    ("go.toml", include_str!("../../../patterns/go.toml")),
    ("java.toml", include_str!("../../../patterns/java.toml")),
    ("llm.toml", include_str!("../../../patterns/llm.toml")),
    ("node.toml", include_str!("../../../patterns/node.toml")),
    ("python.toml", include_str!("../../../patterns/python.toml")),
    ("rust.toml", include_str!("../../../patterns/rust.toml")),
    ("shell.toml", include_str!("../../../patterns/shell.toml")),
    ("typescript.toml", include_str!("../../../patterns/typescript.toml")),
    ("generic.toml", include_str!("../../../patterns/generic.toml")),
];

/// A pattern file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    ecosystem: String,
    #[serde(default)]
    description: Option<String>,
    /// Lookup tables used by actions, e.g. `[maps.pypi] yaml = "PyYAML"`.
    #[serde(default)]
    maps: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    patterns: Vec<PatternSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternSpec {
    id: Spanned<String>,
    title: String,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(rename = "match")]
    matcher: Spanned<String>,
    #[serde(default)]
    code: Option<Spanned<String>>,
    #[serde(default)]
    context: Option<Spanned<String>>,
    category: Spanned<String>,
    #[serde(default)]
    failure_class: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    explanation: String,
    #[serde(default)]
    fixes: Vec<String>,
    #[serde(default)]
    actions: Vec<ActionSpec>,
}

/// A machine-applicable fix, with parameters templated from the diagnostic's params:
/// `{module}` is the value, `{module:pypi}` looks it up in the file's `pypi` map.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// `add_dependency`, `run_command`, `create_file`, `install_package`, `set_env`, `retry`.
    pub kind: String,
    /// The file the action edits, e.g. `requirements.txt`, `package.json`, `Cargo.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The package, crate or distribution to add or install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// A command to run, e.g. `apt-get install -y {header:debian}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `auto` (safe to apply unattended), `suggest` or `needs_input`.
    #[serde(default = "default_confidence")]
    pub confidence: String,
}

fn default_confidence() -> String {
    "suggest".to_owned()
}

/// A loaded, validated pattern.
#[derive(Debug)]
pub struct Pattern {
    pub id: String,
    pub ecosystem: String,
    pub title: String,
    pub tools: Vec<String>,
    pub matcher: Matcher,
    pub code: Option<String>,
    pub context: Option<Matcher>,
    pub category: Category,
    pub failure_class: FailureClass,
    pub key: Option<String>,
    pub explanation: String,
    pub fixes: Vec<String>,
    pub actions: Vec<ActionSpec>,
    /// The file's lookup tables (shared by its patterns).
    pub maps: Arc<BTreeMap<String, BTreeMap<String, String>>>,
    /// Source file and line, for `helix patterns lint` and error messages.
    pub source: String,
}

/// Why a pattern file was rejected: the file, the line, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PatternError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Parameters a parser may provide on its own (so a pattern may name them as key).
const PARSER_PARAMS: &[&str] =
    &["test", "symbol", "symbol_kind", "status", "provider", "error_type", "error_code", "line", "target"];

/// The whole knowledge base: every pattern of every file, in match order.
#[derive(Debug)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
    prefilter: Prefilter,
    /// SHA-256 over every file's name and text: the index is rebuilt when it changes.
    digest: String,
}

impl PatternSet {
    /// Loads pattern files given as (file name, text). Files are validated whole; the first
    /// error is returned with its file and line.
    pub fn load(files: &[(&str, &str)]) -> Result<PatternSet, PatternError> {
        let mut patterns = Vec::new();
        let mut ids: HashSet<String> = HashSet::new();
        for (name, text) in files {
            let err = |offset: usize, message: String| PatternError {
                file: (*name).to_owned(),
                line: line_of(text, offset),
                message,
            };
            let spec: FileSpec = toml::from_str(text).map_err(|e| {
                let offset = e.span().map_or(0, |s| s.start);
                err(offset, e.message().to_owned())
            })?;
            let _ = spec.description;
            let maps = Arc::new(spec.maps);
            for p in spec.patterns {
                let id = p.id.get_ref().clone();
                if id.trim().is_empty()
                    || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                {
                    return Err(err(
                        p.id.span().start,
                        format!("invalid pattern id {id:?}: use letters, digits, '.', '-', '_'"),
                    ));
                }
                if !ids.insert(id.clone()) {
                    return Err(err(p.id.span().start, format!("duplicate pattern id {id:?}")));
                }
                // `\b` is compiled as an ASCII word boundary: a Unicode one keeps the regex off its
                // fast DFA path, and tool output words are ASCII.
                let compile = |s: &Spanned<String>| {
                    Matcher::new(&ascii_word_boundaries(s.get_ref()))
                        .map_err(|e| err(s.span().start, format!("pattern {id}: invalid regex: {e}")))
                };
                let matcher = compile(&p.matcher)?;
                let context = p.context.as_ref().map(compile).transpose()?;
                let category = Category::parse(p.category.get_ref()).ok_or_else(|| {
                    err(
                        p.category.span().start,
                        format!("pattern {id}: unknown category {:?}", p.category.get_ref()),
                    )
                })?;
                let failure_class = match &p.failure_class {
                    Some(fc) => FailureClass::parse(fc.get_ref()).ok_or_else(|| {
                        err(
                            fc.span().start,
                            format!("pattern {id}: unknown failure_class {:?}", fc.get_ref()),
                        )
                    })?,
                    None => category.default_failure_class(),
                };
                let captures: HashSet<&str> = matcher
                    .capture_names()
                    .chain(context.iter().flat_map(|c| c.capture_names()))
                    .flatten()
                    .map(param_name)
                    .collect();
                if let Some(key) = &p.key
                    && !captures.contains(key.get_ref().as_str())
                    && !PARSER_PARAMS.contains(&key.get_ref().as_str())
                {
                    return Err(err(
                        key.span().start,
                        format!(
                            "pattern {id}: key {:?} is not a named capture of match or context",
                            key.get_ref()
                        ),
                    ));
                }
                for a in &p.actions {
                    if !matches!(a.confidence.as_str(), "auto" | "suggest" | "needs_input") {
                        return Err(err(
                            p.id.span().start,
                            format!("pattern {id}: action confidence must be auto, suggest or needs_input"),
                        ));
                    }
                }
                patterns.push(Pattern {
                    source: format!("{name}:{}", line_of(text, p.id.span().start)),
                    id,
                    ecosystem: spec.ecosystem.clone(),
                    title: p.title,
                    tools: p.tools.iter().map(|t| t.to_lowercase()).collect(),
                    matcher,
                    code: p.code.map(|c| c.into_inner()),
                    context,
                    category,
                    failure_class,
                    key: p.key.map(|k| k.into_inner()),
                    explanation: p.explanation,
                    fixes: p.fixes,
                    actions: p.actions,
                    maps: maps.clone(),
                });
            }
        }
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        for (name, text) in files {
            sha2::Digest::update(&mut h, name.as_bytes());
            sha2::Digest::update(&mut h, [0u8]);
            sha2::Digest::update(&mut h, text.as_bytes());
            sha2::Digest::update(&mut h, [0u8]);
        }
        let digest = sha2::Digest::finalize(h).iter().map(|b| format!("{b:02x}")).collect();
        let prefilter = Prefilter::new(&patterns);
        Ok(PatternSet { patterns, prefilter, digest })
    }

    /// Loads every `*.toml` of a directory (sorted by name, `generic.toml` last).
    pub fn load_dir(dir: &std::path::Path) -> Result<PatternSet, PatternError> {
        let io = |e: std::io::Error| PatternError {
            file: dir.display().to_string(),
            line: 0,
            message: e.to_string(),
        };
        let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        names.sort_by_key(|p| (p.file_name().is_some_and(|n| n == "generic.toml"), p.clone()));
        let mut files = Vec::new();
        for path in &names {
            let text = std::fs::read_to_string(path).map_err(|e| PatternError {
                file: path.display().to_string(),
                line: 0,
                message: e.to_string(),
            })?;
            files.push((path.display().to_string(), text));
        }
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        PatternSet::load(&refs)
    }

    /// The seed patterns compiled into the binary.
    pub fn seed() -> Result<PatternSet, PatternError> {
        PatternSet::load(SEED)
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Identifies the exact pattern files loaded.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pattern> {
        self.patterns.iter()
    }

    pub fn get(&self, id: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.id == id)
    }

    /// A lookup table of the pattern files (`[maps.pypi]`), by name: the first file that has it.
    pub fn map(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.patterns.iter().find_map(|p| p.maps.get(name))
    }

    /// Every pattern that matches `message` of the diagnostic `d`, in priority order: file
    /// order (`generic.toml` last), then order within the file.
    pub fn matching<'a>(
        &'a self,
        d: &'a RawDiagnostic,
        message: &'a str,
    ) -> impl Iterator<Item = (&'a Pattern, Groups<'a>)> + 'a {
        // One scan for the literals every pattern must start with, then only the candidates'
        // regexes run. (A combined RegexSet was ~25x slower: its lazy DFA thrashes on 170+
        // Unicode-aware patterns.)
        let candidates = self.prefilter.candidates(message);
        self.patterns.iter().enumerate().filter(move |(i, _)| candidates[*i]).filter_map(move |(_, p)| {
            if !p.tools.is_empty() && !p.tools.iter().any(|t| tool_family(&d.tool).contains(&t.as_str())) {
                return None;
            }
            if let Some(code) = &p.code
                && d.code.as_deref() != Some(code.as_str())
            {
                return None;
            }
            if !p.matcher.is_match(message) {
                return None;
            }
            p.matcher.captures(message).map(|c| (p, c))
        })
    }
}

/// Which patterns can possibly match a message: each pattern's regex must begin with one of a
/// small set of literals (extracted from its syntax tree); one Aho-Corasick scan finds which
/// literals occur. Patterns without such a set (leading class, case-insensitive words) are
/// always candidates.
#[derive(Debug)]
struct Prefilter {
    ac: Option<aho_corasick::AhoCorasick>,
    /// For each literal of the automaton, the pattern it belongs to.
    owner: Vec<usize>,
    always: Vec<bool>,
}

impl Prefilter {
    const MAX_LITERALS: usize = 64;
    const MIN_LEN: usize = 3;

    fn new(patterns: &[Pattern]) -> Prefilter {
        use regex_syntax::hir::literal::{ExtractKind, Extractor};
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut owner = Vec::new();
        let mut always = vec![true; patterns.len()];
        for (i, p) in patterns.iter().enumerate() {
            let Ok(hir) = regex_syntax::Parser::new().parse(p.matcher.as_str()) else { continue };
            let mut ex = Extractor::new();
            ex.kind(ExtractKind::Prefix).limit_total(Self::MAX_LITERALS);
            let seq = ex.extract(&hir);
            let Some(lits) = seq.literals() else { continue };
            if lits.is_empty()
                || lits.len() > Self::MAX_LITERALS
                || lits.iter().any(|l| l.as_bytes().len() < Self::MIN_LEN)
            {
                continue;
            }
            always[i] = false;
            for l in lits {
                literals.push(l.as_bytes().to_vec());
                owner.push(i);
            }
        }
        let ac = aho_corasick::AhoCorasick::new(&literals).ok();
        if ac.is_none() {
            always.iter_mut().for_each(|a| *a = true);
        }
        Prefilter { ac, owner, always }
    }

    fn candidates(&self, message: &str) -> Vec<bool> {
        let mut c = self.always.clone();
        if let Some(ac) = &self.ac {
            for m in ac.find_overlapping_iter(message) {
                if let Some(&p) = self.owner.get(m.pattern().as_usize()) {
                    c[p] = true;
                }
            }
        }
        c
    }
}

/// Rewrites `\b` (not `\\b`) to `(?-u:\b)`.
fn ascii_word_boundaries(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 16);
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('b') => out.push_str("(?-u:\\b)"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The parameter a capture group fills: `name__2` fills `name` (alternatives in one regex).
pub fn param_name(capture: &str) -> &str {
    capture.split("__").next().unwrap_or(capture)
}

/// The names a tool answers to in `tools` filters: `pytest` is also `python`, `cargo` also
/// `rustc`, `clang` also `gcc`, and so on.
pub fn tool_family(tool: &str) -> &'static [&'static str] {
    match tool {
        "python" => &["python"],
        "pytest" => &["pytest", "python"],
        "unittest" => &["unittest", "python"],
        "rustc" | "rust" => &["rustc", "rust"],
        "cargo" => &["cargo", "rustc", "rust"],
        "gcc" => &["gcc", "cc"],
        "clang" => &["clang", "gcc", "cc"],
        "ld" => &["ld", "gcc", "cc"],
        "javac" => &["javac", "java"],
        "go" => &["go"],
        "tsc" => &["tsc", "typescript"],
        "node" => &["node", "javascript"],
        "npm" => &["npm", "node"],
        "bash" | "sh" | "zsh" | "dash" | "ksh" => &["shell", "bash", "sh"],
        "openai" => &["openai", "llm"],
        "anthropic" => &["anthropic", "llm"],
        _ => &["shell"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_patterns_load() {
        let set = PatternSet::seed().expect("seed patterns are valid");
        assert!(set.len() >= 80, "{} patterns", set.len());
        let ecosystems: HashSet<_> = set.iter().map(|p| p.ecosystem.as_str()).collect();
        assert!(ecosystems.len() >= 8, "{ecosystems:?}");
    }

    #[test]
    fn prefilter_never_hides_a_match() {
        let set = PatternSet::seed().expect("seed");
        let filtered = set.prefilter.always.iter().filter(|a| !**a).count();
        assert!(
            filtered > set.len() / 2,
            "only {filtered} of {} patterns have a literal prefilter",
            set.len()
        );
        let d = RawDiagnostic { tool: "python".to_owned(), ..RawDiagnostic::default() };
        for msg in [
            "ModuleNotFoundError: No module named 'x'",
            "openai 429 requests: slow down",
            "bash: line 1: x: command not found",
            "error[E0308]: mismatched types",
            "Segmentation fault (core dumped)",
        ] {
            let with: Vec<&str> = set.matching(&d, msg).map(|(p, _)| p.id.as_str()).collect();
            let all: Vec<&str> = set
                .iter()
                .filter(|p| {
                    p.matcher.is_match(msg) && (p.tools.is_empty() || p.tools.iter().any(|t| t == "python"))
                })
                .map(|p| p.id.as_str())
                .collect();
            assert_eq!(with, all, "{msg}");
        }
    }

    #[test]
    fn word_boundaries_become_ascii() {
        assert_eq!(ascii_word_boundaries(r"\bx\b|\\b|\d"), r"(?-u:\b)x(?-u:\b)|\\b|\d");
    }

    #[test]
    fn invalid_files_name_file_and_line() {
        let bad_regex = "ecosystem = \"x\"\n\n[[patterns]]\nid = \"x.a\"\ntitle = \"t\"\nmatch = '''(unclosed'''\ncategory = \"syntax_error\"\nexplanation = \"e\"\n";
        let e = PatternSet::load(&[("x.toml", bad_regex)]).expect_err("bad regex");
        assert_eq!((e.file.as_str(), e.line), ("x.toml", 6), "{e}");

        let unknown = "ecosystem = \"x\"\n[[patterns]]\nid = \"x.a\"\ntitle = \"t\"\nmatch = 'a'\ncategory = \"syntax_error\"\nexplanation = \"e\"\nfixs = []\n";
        let e = PatternSet::load(&[("y.toml", unknown)]).expect_err("unknown field");
        assert_eq!(e.line, 8, "{e}");
        assert!(e.message.contains("fixs"), "{e}");

        let bad_category = "ecosystem = \"x\"\n[[patterns]]\nid = \"x.a\"\ntitle = \"t\"\nmatch = 'a'\ncategory = \"oops\"\nexplanation = \"e\"\n";
        let e = PatternSet::load(&[("z.toml", bad_category)]).expect_err("category");
        assert_eq!(e.line, 6, "{e}");

        let bad_key = "ecosystem = \"x\"\n[[patterns]]\nid = \"x.a\"\ntitle = \"t\"\nmatch = '(?P<m>a)'\ncategory = \"unknown\"\nkey = \"module\"\nexplanation = \"e\"\n";
        let e = PatternSet::load(&[("k.toml", bad_key)]).expect_err("key");
        assert_eq!(e.line, 7, "{e}");

        let dup = "ecosystem = \"x\"\n[[patterns]]\nid = \"x.a\"\ntitle = \"t\"\nmatch = 'a'\ncategory = \"unknown\"\nexplanation = \"e\"\n[[patterns]]\nid = \"x.a\"\ntitle = \"t\"\nmatch = 'b'\ncategory = \"unknown\"\nexplanation = \"e\"\n";
        let e = PatternSet::load(&[("d.toml", dup)]).expect_err("dup");
        assert_eq!(e.line, 9, "{e}");
    }
}
