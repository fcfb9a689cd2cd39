//! Static preflight: the failures a run of a workspace would hit, predicted from its files before
//! anything runs (`POST /v1/check`, `helix check DIR`, the orchestrator's `preflight`).
//!
//! Each ecosystem's checker compares what the sources use with what the manifests declare:
//! Python imports against `requirements*.txt`, `pyproject.toml`, `setup.cfg`, `setup.py`,
//! `Pipfile`, `environment.yml`; JS/TS imports against `package.json`; `use` / `extern crate`
//! against `Cargo.toml`; C/C++ `#include`s of headers from a known `-dev` package against the
//! system packages the workspace declares (Dockerfile and CI `apt-get install`, `apt.txt`,
//! `debian/control`) or the caller says are installed.
//!
//! A predicted failure is written as the output the tool would print (a traceback, a Node
//! resolution error, rustc's E0432, gcc's fatal error) and then analysed by the same
//! [`crate::analyze::analyze`] as a failed run: so a finding has the very signature, category,
//! pattern matches and fixes the failure would get, and a fix learned from either applies to
//! both.
//!
//! Precision first: a false alarm costs a user's trust, a miss costs a run. So an import counts
//! as satisfied when any plausible reading allows it: local modules and files of the workspace,
//! the standard library, guarded imports (`try: import x` / `except ImportError`, `#ifdef`),
//! names a declared distribution provides (the pattern base's import → distribution map,
//! namespace prefixes, `python-x`-style names) or brings in transitively (a small table of
//! well-known dependencies). An ecosystem with no manifest at all is skipped, not guessed.
//!
//! Linear in the input: every file is scanned once, line by line, with bounded lines
//! ([`MAX_LINE_BYTES`]); at most [`MAX_FINDINGS`] findings are reported.

mod c;
mod node;
mod python;
mod rust;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use utoipa::ToSchema;

use crate::analyze::{self, Diagnostic};
use crate::patterns::PatternSet;
use crate::propose::{self, DiagnosticRef, MatchRef, ProposedFix, WorkspaceFile};

/// Longer source lines are not scanned for imports (minified bundles, data).
pub const MAX_LINE_BYTES: usize = 4096;
/// At most this many findings per check.
pub const MAX_FINDINGS: usize = 100;

/// What the caller knows about the machine the run will use.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Installed Debian packages (`dpkg-query -W -f '${Package}\n'`), when known.
    pub installed_packages: Option<Vec<String>>,
}

/// One failure the run would hit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Finding {
    /// Which check predicted it: `python-import`, `node-import`, `rust-crate`, `c-header`.
    #[schema(example = "python-import")]
    pub check: String,
    /// The file and line (1-based) of the first use.
    #[schema(example = "app/main.py")]
    pub file: String,
    pub line: usize,
    /// What is used but not provided: a module, a package, a crate, a header.
    #[schema(example = "yaml")]
    pub name: String,
    /// Why it would fail, in words.
    #[schema(example = "`import yaml` but no declared distribution provides yaml (PyYAML)")]
    pub reason: String,
    /// Further uses of the same name elsewhere in the workspace.
    pub other_uses: usize,
    /// The diagnostic the failure would produce, as `POST /v1/analyze` returns it.
    pub diagnostic: Diagnostic,
    /// Fixes against the files sent, as `POST /v1/fixes/propose` returns them.
    pub fixes: Vec<ProposedFix>,
}

/// What a check looked at.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Checked {
    /// Source files scanned.
    pub files: usize,
    /// Imports, `use`s and `#include`s seen.
    pub imports: usize,
    /// Ecosystems checked (`python`, `node`, `rust`, `c`).
    pub ecosystems: Vec<String>,
    /// Ecosystems with sources that were not checked, and why.
    pub skipped: Vec<String>,
}

/// The result of a preflight check.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CheckReport {
    /// Predicted failures, ordered by file and line.
    pub findings: Vec<Finding>,
    pub checked: Checked,
}

/// A use of something the workspace does not provide, found by an ecosystem's checker.
#[derive(Debug, Clone)]
struct Missing {
    check: &'static str,
    file: String,
    line: usize,
    name: String,
    reason: String,
    /// The tool output the failure would print, and which tool prints it.
    output: String,
    tool: &'static str,
    /// The directory of the project the file belongs to (its manifest's): fixes edit the
    /// manifest there.
    root: String,
}

/// What every checker gets: the files by path, and every path the workspace has.
struct Workspace<'a> {
    files: BTreeMap<String, &'a str>,
    paths: BTreeSet<String>,
    env: &'a Environment,
}

impl<'a> Workspace<'a> {
    fn new(files: &'a [WorkspaceFile], listing: &[String], env: &'a Environment) -> Workspace<'a> {
        let files: BTreeMap<String, &str> =
            files.iter().map(|f| (normalize(&f.path), f.content.as_str())).collect();
        let mut paths: BTreeSet<String> = listing.iter().map(|p| normalize(p)).collect();
        paths.extend(files.keys().cloned());
        Workspace { files, paths, env }
    }

    /// Sent files whose path ends with one of `exts`, skipping vendored and generated trees.
    fn sources<'s>(&'s self, exts: &'s [&str]) -> impl Iterator<Item = (&'s str, &'a str)> + 's {
        self.files
            .iter()
            .filter(move |(p, _)| exts.iter().any(|e| p.ends_with(e)) && !vendored(p))
            .map(|(p, c)| (p.as_str(), *c))
    }

    /// Sent files named `name` (in any directory).
    fn named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = (&'s str, &'a str)> + 's {
        self.files.iter().filter(move |(p, _)| base(p) == name && !vendored(p)).map(|(p, c)| (p.as_str(), *c))
    }
}

fn normalize(path: &str) -> String {
    let p = path.replace('\\', "/");
    let mut p = p.as_str();
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_start_matches('/').to_owned()
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn dir(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// Directories whose files are not the project's own sources.
fn vendored(path: &str) -> bool {
    path.split('/').rev().skip(1).any(helix_core::client::check::skipped_dir)
}

/// Directories of code a run of the project does not run: examples, demos, benchmarks, docs and
/// test fixtures. Their imports are their own business unless a manifest of their own governs
/// them (`examples/app/requirements.txt`).
const ASIDE: &[&str] = &[
    "examples",
    "example",
    "demo",
    "demos",
    "samples",
    "sample",
    "benchmarks",
    "benchmark",
    "bench",
    "docs",
    "doc",
    "fixtures",
    "testdata",
    "test-fixtures",
];

/// Whether `path` lies in an [`ASIDE`] directory that its governing manifest (at `root`) is not in.
fn aside(path: &str, root: &str) -> bool {
    let dirs: Vec<&str> = path.split('/').collect();
    let mut at = 0;
    for d in &dirs[..dirs.len().saturating_sub(1)] {
        let end = at + d.len();
        if ASIDE.contains(d) {
            // the manifest sits in or below this directory: the example is a project of its own
            let dir = &path[..end];
            return !(root == dir || root.strip_prefix(dir).is_some_and(|r| r.starts_with('/')));
        }
        at = end + 1;
    }
    false
}

/// The lines of `text` with their 1-based numbers, lines over [`MAX_LINE_BYTES`] left out.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| l.len() <= MAX_LINE_BYTES).map(|(i, l)| (i + 1, l))
}

/// Predicts the failures a run of the workspace would hit.
pub fn check(
    files: &[WorkspaceFile],
    listing: &[String],
    env: &Environment,
    patterns: &PatternSet,
) -> CheckReport {
    let ws = Workspace::new(files, listing, env);
    let mut checked = Checked::default();
    let mut missing = Vec::new();
    for (name, run) in [
        ("python", python::check as fn(&Workspace<'_>, &PatternSet, &mut Checked) -> Option<Vec<Missing>>),
        ("node", node::check),
        ("rust", rust::check),
        ("c", c::check),
    ] {
        if let Some(found) = run(&ws, patterns, &mut checked) {
            checked.ecosystems.push(name.to_owned());
            missing.extend(found);
        }
    }
    // one finding per missing name and check: the first use, the others counted
    missing.sort_by(|a, b| (a.check, &a.name, &a.file, a.line).cmp(&(b.check, &b.name, &b.file, b.line)));
    let mut grouped: Vec<(Missing, usize)> = Vec::new();
    for m in missing {
        match grouped.last_mut() {
            Some((first, n)) if first.check == m.check && first.name == m.name => *n += 1,
            _ => grouped.push((m, 0)),
        }
    }
    grouped.sort_by(|(a, _), (b, _)| (&a.file, a.line, &a.name).cmp(&(&b.file, b.line, &b.name)));
    grouped.truncate(MAX_FINDINGS);
    let findings =
        grouped.into_iter().filter_map(|(m, others)| finding(m, others, files, listing, patterns)).collect();
    CheckReport { findings, checked }
}

/// The predicted failure analysed like a real one, with the fixes for it.
fn finding(
    m: Missing,
    other_uses: usize,
    files: &[WorkspaceFile],
    listing: &[String],
    patterns: &PatternSet,
) -> Option<Finding> {
    let analysis = analyze::analyze(
        &analyze::Request { output: &m.output, tool: Some(m.tool), command: None, exit_code: Some(1) },
        patterns,
    );
    let primary = analysis.primary?;
    let diagnostic = analysis.diagnostics.into_iter().nth(primary)?;
    let dref = DiagnosticRef {
        signature: diagnostic.signature.clone(),
        params: diagnostic.params.clone(),
        key: diagnostic.key.clone(),
        matches: diagnostic
            .matches
            .iter()
            .map(|x| MatchRef { kind: x.kind.clone(), id: x.id.clone() })
            .collect(),
        suggestions: Vec::new(),
    };
    let fixes = if m.root.is_empty() {
        propose::propose(&[dref], Some(0), files, listing, patterns)
    } else {
        // propose against the sub-project as if it were the workspace, then put its paths back
        let prefix = format!("{}/", m.root);
        let strip = |p: &str| normalize(p).strip_prefix(&prefix).map(str::to_owned);
        let sub: Vec<WorkspaceFile> = files
            .iter()
            .filter_map(|f| Some(WorkspaceFile { path: strip(&f.path)?, content: f.content.clone() }))
            .collect();
        let sub_listing: Vec<String> = listing.iter().filter_map(|p| strip(p)).collect();
        let mut fixes = propose::propose(&[dref], Some(0), &sub, &sub_listing, patterns);
        for fix in &mut fixes {
            for f in &mut fix.files {
                fix.description = fix.description.replacen(f.as_str(), &format!("{prefix}{f}"), 1);
                *f = format!("{prefix}{f}");
            }
            if let Some(p) = &mut fix.patch {
                *p = p
                    .lines()
                    .map(|l| match (l.strip_prefix("--- a/"), l.strip_prefix("+++ b/")) {
                        (Some(rest), _) => format!("--- a/{prefix}{rest}\n"),
                        (_, Some(rest)) => format!("+++ b/{prefix}{rest}\n"),
                        _ => format!("{l}\n"),
                    })
                    .collect();
            }
        }
        fixes
    };
    Some(Finding {
        check: m.check.to_owned(),
        file: m.file,
        line: m.line,
        name: m.name,
        reason: m.reason,
        other_uses,
        diagnostic,
        fixes,
    })
}

/// Build recipes: files whose commands install what a fresh machine needs.
fn is_recipe(path: &str) -> bool {
    let name = base(path);
    name.starts_with("Dockerfile")
        || name.ends_with(".Dockerfile")
        || name == "Containerfile"
        || path.starts_with(".github/workflows/")
        || name == ".gitlab-ci.yml"
        || name == ".travis.yml"
        || name == "Makefile"
        || name.ends_with(".sh")
}

/// The package words of `TOOL install a b` commands in a recipe (`-y`, `--flags` and `-r file`
/// left out; lines continued with `\` joined; `&&` and `;` separate commands).
fn installs(text: &str, tools: &[&str]) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for l in joined.lines() {
        for seg in l.split("&&").flat_map(|s| s.split(';')) {
            let words: Vec<&str> = seg.split_whitespace().collect();
            // `pip install`, `python -m pip install`, `uv pip install`, `sudo apt-get install`
            let Some(at) = words.windows(2).position(|w| tools.contains(&base(w[0])) && w[1] == "install")
            else {
                continue;
            };
            let mut skip_next = false;
            for w in &words[at + 2..] {
                if skip_next {
                    skip_next = false;
                    continue;
                }
                if matches!(
                    *w,
                    "-r" | "--requirement"
                        | "-c"
                        | "--constraint"
                        | "-e"
                        | "--target"
                        | "-t"
                        | "--index-url"
                        | "-i"
                ) {
                    skip_next = true;
                    continue;
                }
                if w.starts_with('-') || w.starts_with('$') || w.contains('/') {
                    continue;
                }
                out.push(w.trim_matches(['"', '\'']).to_owned());
            }
        }
    }
    out
}

/// A `name: provided provided ...` table (one row a line), read once.
type Transitive = Vec<(&'static str, Vec<&'static str>)>;

/// The rows of a [`Transitive`] table's text.
fn transitive(table: &'static str) -> Transitive {
    table
        .lines()
        .filter_map(|l| {
            let (name, brings) = l.split_once(':')?;
            Some((name.trim(), brings.split_whitespace().collect()))
        })
        .collect()
}

/// Package names compare case-insensitively with `-`, `_` and `.` alike (PEP 503, Cargo).
fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('_');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests;
