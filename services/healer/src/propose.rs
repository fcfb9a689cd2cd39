//! Machine-applicable fixes: unified diffs (or commands) for the diagnostics of an analysis,
//! computed against workspace files the caller sends. The healer never writes to a user's
//! files; the caller decides and applies.
//!
//! Two sources, each with a confidence modelled on rustc's `Applicability`:
//! - the tool's own suggestions (rustc/cargo JSON): `MachineApplicable` → `auto`,
//!   `MaybeIncorrect`/`Unspecified` → `suggest`, `HasPlaceholders` → `needs_input`;
//! - the actions of the pattern that classified the diagnostic (add a dependency to the
//!   manifest, install a package, retry), with the confidence the pattern declares, lowered when
//!   the workspace does not show what the action needs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::analyze::fill;
use crate::diff::unified;
use crate::model::{Params, Suggestion};
use crate::patterns::{ActionSpec, PatternSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Safe to apply without review.
    Auto,
    /// Probably right; review before applying.
    Suggest,
    /// Needs a decision or information only the caller has.
    NeedsInput,
}

impl Confidence {
    fn parse(s: &str) -> Confidence {
        match s {
            "auto" => Confidence::Auto,
            "needs_input" => Confidence::NeedsInput,
            _ => Confidence::Suggest,
        }
    }

    fn of_applicability(a: &str) -> Confidence {
        match a {
            "MachineApplicable" => Confidence::Auto,
            "HasPlaceholders" => Confidence::NeedsInput,
            _ => Confidence::Suggest,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    /// Apply `patch` (unified diff, `patch -p1` / `git apply`).
    Patch,
    /// Run `command` in the workspace.
    Command,
    /// Run the step again (transient failure).
    Retry,
    /// Nothing to apply yet: the description says what is missing.
    Info,
}

/// A file of the workspace, as the caller sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceFile {
    /// Path relative to the workspace root.
    #[schema(example = "requirements.txt")]
    pub path: String,
    #[schema(example = "flask==3.0.0\n")]
    pub content: String,
}

/// The parts of a diagnostic a proposal needs (the shape `POST /v1/analyze` returns; other
/// fields are ignored).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct DiagnosticRef {
    pub signature: String,
    #[serde(default)]
    pub params: Params,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub matches: Vec<MatchRef>,
    /// The compiler's own suggestions; filled when the proposal starts from raw output (they
    /// are not read from a posted analysis).
    #[serde(skip)]
    pub suggestions: Vec<Suggestion>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct MatchRef {
    pub kind: String,
    pub id: String,
}

/// A proposed fix.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProposedFix {
    /// Index of the diagnostic it fixes.
    pub diagnostic: usize,
    pub signature: String,
    /// `rustc` (the compiler's suggestion) or `pattern:<id>`.
    #[schema(example = "pattern:python.module-not-found")]
    pub source: String,
    pub kind: FixKind,
    pub confidence: Confidence,
    #[schema(example = "add PyYAML to requirements.txt")]
    pub description: String,
    /// Unified diff for `kind: patch`.
    pub patch: Option<String>,
    /// Command for `kind: command`.
    pub command: Option<String>,
    /// Files the patch touches.
    pub files: Vec<String>,
}

/// Proposes fixes for `diagnostics`, the one at `primary` first.
pub fn propose(
    diagnostics: &[DiagnosticRef],
    primary: Option<usize>,
    files: &[WorkspaceFile],
    listing: &[String],
    patterns: &PatternSet,
) -> Vec<ProposedFix> {
    let mut order: Vec<usize> = (0..diagnostics.len()).collect();
    if let Some(p) = primary.filter(|p| *p < diagnostics.len()) {
        order.retain(|i| *i != p);
        order.insert(0, p);
    }
    let mut out = Vec::new();
    for i in order {
        let d = &diagnostics[i];
        out.extend(from_suggestions(i, d, files));
        let pattern = d.matches.iter().find(|m| m.kind == "pattern").and_then(|m| patterns.get(&m.id));
        if let Some(p) = pattern {
            for action in &p.actions {
                if let Some(fix) = from_action(i, d, p, action, files, listing) {
                    out.push(fix);
                }
            }
        }
    }
    out
}

fn file<'a>(files: &'a [WorkspaceFile], path: &str) -> Option<&'a WorkspaceFile> {
    let norm = |p: &str| p.trim_start_matches("./").to_owned();
    files.iter().find(|f| norm(&f.path) == norm(path))
}

fn from_suggestions(i: usize, d: &DiagnosticRef, files: &[WorkspaceFile]) -> Vec<ProposedFix> {
    let mut by_file: Vec<(&str, Vec<&Suggestion>)> = Vec::new();
    for s in &d.suggestions {
        match by_file.iter_mut().find(|(f, _)| *f == s.file) {
            Some((_, v)) => v.push(s),
            None => by_file.push((&s.file, vec![s])),
        }
    }
    let mut out = Vec::new();
    for (path, mut suggestions) in by_file {
        let Some(f) = file(files, path) else { continue };
        // apply back to front so earlier byte offsets stay valid; skip overlapping edits
        suggestions.sort_by_key(|s| std::cmp::Reverse(s.byte_start));
        let mut content = f.content.clone();
        let mut applied = Vec::new();
        let mut floor = usize::MAX;
        for s in suggestions {
            let (Ok(start), Ok(end)) = (usize::try_from(s.byte_start), usize::try_from(s.byte_end)) else {
                continue;
            };
            if end > floor
                || start > end
                || end > content.len()
                || !content.is_char_boundary(start)
                || !content.is_char_boundary(end)
            {
                continue;
            }
            content.replace_range(start..end, &s.replacement);
            floor = start;
            applied.push(s);
        }
        let Some(patch) = unified(path, &f.content, &content, false) else { continue };
        let confidence = applied
            .iter()
            .map(|s| Confidence::of_applicability(&s.applicability))
            .max()
            .unwrap_or(Confidence::Suggest);
        let mut messages: Vec<&str> = applied.iter().map(|s| s.message.as_str()).collect();
        messages.dedup();
        out.push(ProposedFix {
            diagnostic: i,
            signature: d.signature.clone(),
            source: "rustc".to_owned(),
            kind: FixKind::Patch,
            confidence,
            description: messages.join("; "),
            patch: Some(patch),
            command: None,
            files: vec![path.to_owned()],
        });
    }
    out
}

fn from_action(
    i: usize,
    d: &DiagnosticRef,
    p: &crate::patterns::Pattern,
    action: &ActionSpec,
    files: &[WorkspaceFile],
    listing: &[String],
) -> Option<ProposedFix> {
    let fill = |s: &str| fill(s, &d.params, p);
    let base = ProposedFix {
        diagnostic: i,
        signature: d.signature.clone(),
        source: format!("pattern:{}", p.id),
        kind: FixKind::Info,
        confidence: Confidence::parse(&action.confidence),
        description: String::new(),
        patch: None,
        command: None,
        files: Vec::new(),
    };
    match action.kind.as_str() {
        "add_dependency" => {
            let manifest = action.manifest.as_deref()?;
            let package = fill(action.package.as_deref()?);
            if package.contains('<') {
                return None; // a parameter the pattern needs is missing
            }
            let listed = listing.iter().any(|l| l.trim_start_matches("./") == manifest);
            match file(files, manifest) {
                Some(f) => {
                    let new = add_dependency(manifest, &f.content, &package)?;
                    let patch = unified(manifest, &f.content, &new, false)?;
                    Some(ProposedFix {
                        kind: FixKind::Patch,
                        description: format!("add {package} to {manifest}"),
                        patch: Some(patch),
                        files: vec![manifest.to_owned()],
                        ..base
                    })
                }
                None if listed => Some(ProposedFix {
                    confidence: Confidence::NeedsInput,
                    description: format!(
                        "add {package} to {manifest} (send the content of {manifest} for a patch)"
                    ),
                    files: vec![manifest.to_owned()],
                    ..base
                }),
                None if manifest == "requirements.txt" => {
                    let other = ["pyproject.toml", "setup.py", "setup.cfg", "Pipfile"].iter().find(|m| {
                        listing
                            .iter()
                            .chain(files.iter().map(|f| &f.path))
                            .any(|l| l.trim_start_matches("./") == **m)
                    });
                    match other {
                        Some(m) => Some(ProposedFix {
                            confidence: Confidence::NeedsInput,
                            description: format!("add {package} to the dependencies in {m}"),
                            files: vec![(*m).to_owned()],
                            ..base
                        }),
                        None => Some(ProposedFix {
                            kind: FixKind::Patch,
                            confidence: Confidence::Suggest,
                            description: format!("create {manifest} with {package}"),
                            patch: unified(manifest, "", &format!("{package}\n"), true),
                            files: vec![manifest.to_owned()],
                            ..base
                        }),
                    }
                }
                None => Some(ProposedFix {
                    confidence: Confidence::NeedsInput,
                    description: format!("add {package} to {manifest} (not found in the workspace)"),
                    ..base
                }),
            }
        }
        "install_package" | "run_command" => {
            let command = fill(action.command.as_deref()?);
            Some(ProposedFix {
                kind: FixKind::Command,
                description: format!("run {command}"),
                command: Some(command),
                ..base
            })
        }
        "retry" => Some(ProposedFix {
            kind: FixKind::Retry,
            description: "retry the step with backoff".to_owned(),
            ..base
        }),
        _ => None,
    }
}

/// The manifest with `package` added, or None when it is already there.
fn add_dependency(manifest: &str, content: &str, package: &str) -> Option<String> {
    let name = |s: &str| {
        s.split(['<', '>', '=', '!', '~', ';', '[', ' ', '@'])
            .next()
            .unwrap_or("")
            .trim()
            .to_lowercase()
            .replace('_', "-")
    };
    let mut text = content.to_owned();
    match manifest.rsplit('/').next().unwrap_or(manifest) {
        "requirements.txt" => {
            let want = name(package);
            if content.lines().any(|l| name(l.trim()) == want) {
                return None;
            }
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(package);
            text.push('\n');
            Some(text)
        }
        "package.json" => {
            if content.contains(&format!("\"{package}\"")) {
                return None;
            }
            let key = "\"dependencies\"";
            match content.find(key) {
                Some(at) => {
                    let open = at + content[at..].find('{')?;
                    let close = open + content[open..].find('}')?;
                    let empty = content[open + 1..close].trim().is_empty();
                    // indentation of the "dependencies" line, one level deeper
                    let line_start = content[..at].rfind('\n').map_or(0, |n| n + 1);
                    let indent = &content[line_start..at];
                    let entry = format!("\n{indent}{indent}\"{package}\": \"*\"");
                    if empty {
                        text.replace_range(open + 1..close, &format!("{entry}\n{indent}"));
                    } else {
                        text.insert_str(open + 1, &format!("{entry},"));
                    }
                }
                None => {
                    let close = content.rfind('}')?;
                    let before = content[..close].trim_end();
                    let comma = if before.ends_with('{') { "" } else { "," };
                    text = format!(
                        "{before}{comma}\n  \"dependencies\": {{\n    \"{package}\": \"*\"\n  }}\n}}\n"
                    );
                }
            }
            Some(text)
        }
        "Cargo.toml" => {
            let crate_name = package.replace('_', "-");
            let in_deps = content
                .lines()
                .skip_while(|l| l.trim() != "[dependencies]")
                .skip(1)
                .take_while(|l| !l.trim_start().starts_with('['));
            if in_deps.into_iter().any(|l| name(l.split('=').next().unwrap_or("")) == crate_name) {
                return None;
            }
            match content.lines().position(|l| l.trim() == "[dependencies]") {
                Some(idx) => {
                    let mut lines: Vec<&str> = content.lines().collect();
                    let entry = format!("{crate_name} = \"*\"");
                    lines.insert(idx + 1, &entry);
                    let mut joined = lines.join("\n");
                    joined.push('\n');
                    Some(joined)
                }
                None => {
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(&format!("\n[dependencies]\n{crate_name} = \"*\"\n"));
                    Some(text)
                }
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PatternSet {
        PatternSet::seed().expect("seed")
    }

    fn python_diag() -> DiagnosticRef {
        let mut params = Params::new();
        params.insert("module".to_owned(), "yaml".to_owned());
        DiagnosticRef {
            signature: "s".repeat(64),
            params,
            key: Some("yaml".to_owned()),
            matches: vec![MatchRef { kind: "pattern".to_owned(), id: "python.module-not-found".to_owned() }],
            suggestions: vec![],
        }
    }

    #[test]
    fn requirements_gets_the_distribution_name() {
        let files =
            [WorkspaceFile { path: "requirements.txt".to_owned(), content: "flask==3.0\n".to_owned() }];
        let fixes = propose(&[python_diag()], Some(0), &files, &[], &set());
        assert_eq!(fixes.len(), 1, "{fixes:?}");
        assert_eq!(fixes[0].confidence, Confidence::Auto);
        assert_eq!(
            fixes[0].patch.as_deref(),
            Some("--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1,1 +1,2 @@\n flask==3.0\n+PyYAML\n")
        );
        // already there (any case, any pin): nothing to do
        let files =
            [WorkspaceFile { path: "requirements.txt".to_owned(), content: "pyyaml>=6\n".to_owned() }];
        assert!(propose(&[python_diag()], Some(0), &files, &[], &set()).is_empty());
        // only pyproject.toml: needs input
        let fixes = propose(&[python_diag()], Some(0), &[], &["pyproject.toml".to_owned()], &set());
        assert_eq!(fixes[0].confidence, Confidence::NeedsInput);
    }

    #[test]
    fn package_json_and_cargo_toml() {
        let pkg = "{\n  \"name\": \"app\",\n  \"dependencies\": {\n    \"express\": \"^4.0.0\"\n  }\n}\n";
        let new = add_dependency("package.json", pkg, "lodash").expect("added");
        let v: serde_json::Value = serde_json::from_str(&new).expect("still JSON");
        assert_eq!(v["dependencies"]["lodash"], "*");
        assert_eq!(v["dependencies"]["express"], "^4.0.0");
        let bare = add_dependency("package.json", "{\n  \"name\": \"app\"\n}\n", "@aws-sdk/client-s3")
            .expect("added");
        let v: serde_json::Value = serde_json::from_str(&bare).expect("still JSON");
        assert_eq!(v["dependencies"]["@aws-sdk/client-s3"], "*");

        let cargo = "[package]\nname = \"x\"\n\n[dependencies]\nserde = \"1\"\n";
        let new = add_dependency("Cargo.toml", cargo, "serde_json").expect("added");
        assert!(new.contains("[dependencies]\nserde-json = \"*\"\nserde = \"1\"\n"), "{new}");
        assert!(add_dependency("Cargo.toml", cargo, "serde").is_none());
    }

    #[test]
    fn rustc_machine_applicable_suggestion_becomes_an_auto_patch() {
        let content = "fn main() {\n    let x = 1\n    let y = 2;\n}\n";
        let at = i64::try_from(content.find("= 1").expect("pos") + 3).expect("small");
        let d = DiagnosticRef {
            signature: "r".repeat(64),
            suggestions: vec![Suggestion {
                message: "add `;` here".to_owned(),
                file: "src/main.rs".to_owned(),
                byte_start: at,
                byte_end: at,
                line_start: 2,
                replacement: ";".to_owned(),
                applicability: "MachineApplicable".to_owned(),
            }],
            ..DiagnosticRef::default()
        };
        let files = [WorkspaceFile { path: "src/main.rs".to_owned(), content: content.to_owned() }];
        let fixes = propose(&[d], Some(0), &files, &[], &set());
        assert_eq!(fixes.len(), 1);
        assert_eq!(fixes[0].confidence, Confidence::Auto);
        assert!(fixes[0].patch.as_deref().expect("patch").contains("-    let x = 1\n+    let x = 1;\n"));
    }
}
