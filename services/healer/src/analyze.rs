//! Analysis: raw output in, classified diagnostics with signatures and a root cause out.
//!
//! parse (split into raw diagnostics) → classify each against the pattern base (category,
//! failure class, named parameters, key, template) → signature of the template → dedupe →
//! pick the primary. Pure and synchronous: the service runs it off the async runtime.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::{
    Category, DiagnosticConfidence, FailureClass, Location, Params, RawDiagnostic, Severity, Suggestion,
};
use crate::patterns::{Pattern, PatternSet, param_name};
use crate::signature::{self, SIGNATURE_VERSION};
use crate::{parse, text};

/// At most this many pattern matches are listed per diagnostic.
const MAX_MATCHES: usize = 5;

/// Raw diagnostics classified per analysis at most; beyond it the best ranked are kept (a log of
/// ten thousand warnings still yields its one error). Bounds the work per request, and the
/// signatures one request can add to the index.
pub const MAX_DIAGNOSTICS: usize = 200;

/// Generically masked parts (`path`, `number_2`, ...) listed as parameters of one diagnostic.
const MAX_GENERIC_PARAMS: usize = 32;

/// What the caller knows about the output.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub output: &'a str,
    pub tool: Option<&'a str>,
    pub command: Option<&'a str>,
    pub exit_code: Option<i32>,
}

/// A known pattern that matches a diagnostic.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PatternMatch {
    /// `pattern` (a pattern of the knowledge base).
    #[schema(example = "pattern")]
    pub kind: String,
    #[schema(example = "python.module-not-found")]
    pub id: String,
    #[schema(example = "Python module is not installed")]
    pub title: String,
    /// 1.0 for a pattern whose matcher matched; lower for similar ones.
    pub score: f32,
    /// The explanation with the diagnostic's parameters filled in.
    pub explanation: String,
    /// Human fixes, parameters filled in.
    pub fixes: Vec<String>,
    /// `llm` for an LLM's analysis of a diagnostic nothing else classified (`[healer]
    /// llm_model`); absent for the knowledge base's own matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One classified diagnostic.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Diagnostic {
    /// SHA-256 (hex) of the signature version and the template.
    pub signature: String,
    /// Version of the signature algorithm (`v1`).
    pub signature_version: String,
    pub category: Category,
    pub failure_class: FailureClass,
    /// How the category and key were decided: `high` by a pattern written for this error,
    /// `medium` by a generic cue, `low` by nothing but the failure (category `unknown`).
    pub confidence: DiagnosticConfidence,
    #[schema(example = "python")]
    pub tool: String,
    pub severity: Severity,
    /// The headline as the tool printed it.
    #[schema(example = "ModuleNotFoundError: No module named 'yaml'")]
    pub message: String,
    /// The headline with variable parts as `<name>` placeholders.
    #[schema(example = "ModuleNotFoundError: No module named '<module>'")]
    pub template: String,
    /// Named variable parts.
    #[schema(example = json!({"module": "yaml"}))]
    pub params: Params,
    /// The parameter a fix needs, if any.
    #[schema(example = "yaml")]
    pub key: Option<String>,
    pub location: Option<Location>,
    /// The tool's own code for it (`E0425`, `TS2304`, an HTTP status).
    pub code: Option<String>,
    /// First and last line (0-based) of the output this diagnostic covers.
    pub lines: [usize; 2],
    pub matches: Vec<PatternMatch>,
    /// Replacements the tool itself proposed (cargo `--message-format=json`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
    /// Index of the pattern that classified it (internal).
    #[serde(skip)]
    pub rank: i32,
}

/// The result of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Analysis {
    pub diagnostics: Vec<Diagnostic>,
    /// Index of the root-cause diagnostic, null when there are none.
    pub primary: Option<usize>,
}

/// What makes two raw diagnostics classify the same: tool, headline, code, context, params.
type HeadlineKey<'a> = (&'a str, &'a str, Option<&'a str>, &'a [String], &'a Params);

/// Analyses raw output. Never fails: output nobody understands gives no diagnostics (or one
/// `unknown` diagnostic with the last line, when the command failed).
pub fn analyze(req: &Request<'_>, patterns: &PatternSet) -> Analysis {
    let cleaned = text::clean(req.output);
    let mut raws = parse::parse(&cleaned, req.tool);
    if raws.is_empty()
        && req.exit_code.is_some_and(|c| c != 0)
        && let Some((i, line)) = cleaned.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).last()
    {
        raws.push(RawDiagnostic {
            tool: req.tool.unwrap_or("generic").to_owned(),
            severity: Some(Severity::Error),
            message: parse::bounded(line.trim()).to_owned(),
            span: (i, i),
            rank: 0,
            ..RawDiagnostic::default()
        });
    }
    if raws.len() > MAX_DIAGNOSTICS {
        // the best ranked, earliest first among equals, then back in output order
        let mut order: Vec<usize> = (0..raws.len()).collect();
        order.sort_by(|&a, &b| raws[b].rank.cmp(&raws[a].rank).then(a.cmp(&b)));
        let mut keep = vec![false; raws.len()];
        for &i in order.iter().take(MAX_DIAGNOSTICS) {
            keep[i] = true;
        }
        let mut k = keep.into_iter();
        raws.retain(|_| k.next().unwrap_or(false));
    }
    let mut diagnostics: Vec<Diagnostic> = Vec::with_capacity(raws.len());
    // (signature, params, location) of each diagnostic kept → its index
    let mut kept: HashMap<(String, Params, Option<Location>), usize> = HashMap::new();
    // Logs repeat themselves (the same warning per file, the same error per retry): classify
    // each distinct headline once and reuse it, with the repeat's own location and span.
    let mut seen: HashMap<HeadlineKey<'_>, Diagnostic> = HashMap::new();
    for raw in &raws {
        let key = (
            raw.tool.as_str(),
            raw.message.as_str(),
            raw.code.as_deref(),
            raw.context.as_slice(),
            &raw.params,
        );
        let d = match seen.get(&key) {
            Some(known) => Diagnostic {
                location: raw.location.clone(),
                lines: [raw.span.0, raw.span.1],
                suggestions: raw.suggestions.clone(),
                ..known.clone()
            },
            None => {
                let d = classify(raw, patterns);
                seen.insert(key, d.clone());
                d
            }
        };
        // the same diagnostic twice (a summary repeating an error): keep the first, best rank
        let same = (d.signature.clone(), d.params.clone(), d.location.clone());
        if let Some(&i) = kept.get(&same) {
            diagnostics[i].rank = diagnostics[i].rank.max(d.rank);
            continue;
        }
        kept.insert(same, diagnostics.len());
        diagnostics.push(d);
    }
    let mut primary = diagnostics
        .iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| a.rank.cmp(&b.rank).then(ib.cmp(ia)))
        .map(|(i, _)| i);
    // An installer that could not reach its index says the package is missing as well (`No
    // matching distribution found`); the cause is the connection, and retrying is the fix.
    // So does a wrapper's bare headline (`Error: unable to perform an operation on node ...`,
    // nothing but "an error" or nothing known) above the line that says the peer is unreachable.
    let wrapper = |d: &Diagnostic| {
        d.category == Category::Unknown || d.matches.first().is_some_and(|m| m.id == "generic.exception")
    };
    if let Some(p) = primary
        && (diagnostics[p].category == Category::MissingDependency || wrapper(&diagnostics[p]))
        && let Some(t) = diagnostics.iter().position(|d| d.category == Category::Transient)
    {
        primary = Some(t);
    }
    // Exit status 127 is the shell's (and xargs', env's, timeout's) "command not found": a
    // program that names a missing file and exits so did not find the command it was to run.
    if req.exit_code == Some(127)
        && let Some(p) = primary
        && diagnostics[p].category == Category::FileNotFound
    {
        diagnostics[p].category = Category::CommandNotFound;
        diagnostics[p].failure_class = Category::CommandNotFound.default_failure_class();
    }
    Analysis { diagnostics, primary }
}

/// A missing dependency's key without the version requirement it was asked with
/// (`flask==3.0.0`, `left-pad@^1.3`, `serde >= 1`): the name is what a fix installs.
fn dependency_name(category: Category, key: &str) -> String {
    if category != Category::MissingDependency {
        return key.to_owned();
    }
    let cut = key
        .char_indices()
        .skip(1)
        .find(|&(_, c)| matches!(c, '=' | '<' | '>' | '~' | '!' | '^' | ' ' | '@' | '['))
        .map_or(key.len(), |(i, _)| i);
    let name = key[..cut].trim_end();
    if name.is_empty() { key.to_owned() } else { name.to_owned() }
}

/// Classifies one raw diagnostic against the pattern base.
pub fn classify(raw: &RawDiagnostic, patterns: &PatternSet) -> Diagnostic {
    let message = signature::normalize(&raw.message);
    let mut params = Params::new();
    let mut spans = Vec::new();
    let mut matched: Vec<&Pattern> = Vec::new();
    let mut first: Option<&Pattern> = None;
    for (p, caps) in patterns.matching(raw, &message) {
        if first.is_none() {
            first = Some(p);
            for name in p.matcher.capture_names().flatten() {
                if let Some(m) = caps.name(name).filter(|m| !m.as_str().is_empty()) {
                    let param = param_name(name).to_owned();
                    spans.push((m.start(), m.end(), param.clone()));
                    params.entry(param).or_insert_with(|| m.as_str().to_owned());
                }
            }
            if let Some(ctx) = &p.context {
                let found = std::iter::once(message.as_str())
                    .chain(raw.context.iter().map(String::as_str))
                    .find_map(|t| ctx.captures(t));
                if let Some(c) = found {
                    for name in ctx.capture_names().flatten() {
                        if let Some(m) = c.name(name) {
                            params
                                .entry(param_name(name).to_owned())
                                .or_insert_with(|| m.as_str().to_owned());
                        }
                    }
                }
            }
        }
        if !matched.iter().any(|m| m.id == p.id) {
            matched.push(p);
        }
        if matched.len() >= MAX_MATCHES {
            break;
        }
    }
    for (k, v) in &raw.params {
        params.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let (template, generic) = signature::template_with(&message, &spans);
    // generically masked parts are parameters too, under their kind (`path`, `number_2`, ...)
    // (the next free suffix per kind is remembered: searching it from 2 for each part was
    // quadratic in a message made of numbers); at most MAX_GENERIC_PARAMS are listed, the template
    // masks them all
    // the first quoted part and the first path: the key when a keyword pattern gives none
    let first_of = |kind: &str| generic.iter().find(|p| p.kind == kind).map(|p| p.value.clone());
    let (first_quoted, first_path) = (first_of("quoted"), first_of("path"));
    let mut next: HashMap<&str, usize> = HashMap::new();
    for p in generic.into_iter().take(MAX_GENERIC_PARAMS) {
        let n = next.entry(p.kind).or_insert(1);
        let mut name = if *n == 1 { p.kind.to_owned() } else { format!("{}_{n}", p.kind) };
        while params.contains_key(&name) {
            *n += 1;
            name = format!("{}_{n}", p.kind);
        }
        *n += 1;
        params.insert(name, p.value);
    }
    // Within one rank tier (same parser confidence), a diagnostic a specific pattern explains is
    // a better root cause than one only a keyword matched, and that better than an unknown one.
    let rank = raw.rank
        + match first {
            Some(p) if p.ecosystem != "generic" => 5,
            Some(_) => 0,
            None if raw.category_hint.is_some() => 0,
            None => -5,
        };
    let confidence = match first {
        Some(p) if p.ecosystem != "generic" => DiagnosticConfidence::High,
        Some(_) => DiagnosticConfidence::Medium,
        None if raw.category_hint.is_some() => DiagnosticConfidence::Medium,
        None => DiagnosticConfidence::Low,
    };
    let (category, failure_class, key) = match first {
        // a tool-agnostic keyword pattern does not override what the format itself says
        Some(p) if p.ecosystem == "generic" && raw.category_hint.is_some() => {
            let c = raw.category_hint.unwrap_or(Category::Unknown);
            (c, c.default_failure_class(), None)
        }
        Some(p) => (
            p.category,
            p.failure_class,
            p.key.as_ref().and_then(|k| params.get(k)).map(|k| dependency_name(p.category, k)),
        ),
        None => {
            let c = raw.category_hint.unwrap_or(Category::Unknown);
            (c, c.default_failure_class(), None)
        }
    };
    // A keyword pattern gave a category whose fix needs a name, but no name: the first quoted
    // part names it (`package 'x' ...`, `'x': ...`), or for a missing file the first path.
    let key = key.or_else(|| {
        if confidence != DiagnosticConfidence::Medium {
            return None;
        }
        match category {
            Category::FileNotFound => first_quoted.or(first_path),
            Category::MissingDependency | Category::UnresolvedSymbol | Category::CommandNotFound => {
                first_quoted.map(|k| dependency_name(category, &k))
            }
            _ => None,
        }
    });
    let matches = matched
        .iter()
        .map(|p| PatternMatch {
            kind: "pattern".to_owned(),
            id: p.id.clone(),
            title: p.title.clone(),
            score: 1.0,
            explanation: fill(&p.explanation, &params, p),
            fixes: p.fixes.iter().map(|f| fill(f, &params, p)).collect(),
            source: None,
        })
        .collect();
    Diagnostic {
        signature: signature::signature_of(&template),
        signature_version: SIGNATURE_VERSION.to_owned(),
        category,
        failure_class,
        confidence,
        tool: raw.tool.clone(),
        severity: raw.severity.unwrap_or(Severity::Error),
        message: parse::bounded(&raw.message).to_owned(),
        template,
        params,
        key,
        location: raw.location.clone(),
        code: raw.code.clone(),
        lines: [raw.span.0, raw.span.1],
        matches,
        suggestions: raw.suggestions.clone(),
        rank,
    }
}

/// Fills `{name}` and `{name:map}` in a pattern's text. `{{` is a literal brace. A missing
/// parameter is left as its name in angle brackets.
pub fn fill(text: &str, params: &Params, pattern: &Pattern) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
            continue;
        }
        let Some(close) = tail.find('}') else {
            out.push_str(tail);
            return out;
        };
        let spec = &tail[1..close];
        let (name, map) = match spec.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (spec, None),
        };
        match params.get(name) {
            Some(v) => out.push_str(&map_value(v, map, pattern)),
            None => {
                out.push('<');
                out.push_str(name);
                out.push('>');
            }
        }
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    out
}

/// `{module:pypi}` and friends: a lookup in the pattern file's map, with ecosystem rules for
/// names the map does not list.
pub fn map_value(value: &str, map: Option<&str>, pattern: &Pattern) -> String {
    let Some(map) = map else { return value.to_owned() };
    let table = pattern.maps.get(map);
    if let Some(v) = table.and_then(|t| t.get(value)) {
        return v.clone();
    }
    match map {
        // a submodule is installed by its top-level package: yaml.constructor -> PyYAML
        "pypi" => {
            let top = value.split('.').next().unwrap_or(value);
            table.and_then(|t| t.get(top)).cloned().unwrap_or_else(|| top.replace('_', "-"))
        }
        // a deep import is installed by its package: lodash/fp -> lodash, @scope/pkg/x -> @scope/pkg
        "npm" => {
            let mut parts = value.split('/');
            match (parts.next(), parts.next()) {
                (Some(scope), Some(name)) if scope.starts_with('@') => format!("{scope}/{name}"),
                (Some(name), _) => name.to_owned(),
                _ => value.to_owned(),
            }
        }
        // crate names use hyphens on the registry where code uses underscores; both resolve
        "crates" => value.to_owned(),
        // a header's package is often lib<dir>-dev: openssl/ssl.h -> libssl-dev is in the map;
        // for others, name the header's directory or stem
        "debian" => {
            let stem = value.split('/').next().unwrap_or(value).trim_end_matches(".h");
            format!("lib{}-dev", stem.to_lowercase())
        }
        "debian_lib" => format!("lib{value}-dev"),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PatternSet {
        PatternSet::seed().expect("seed")
    }

    fn one(output: &str) -> Diagnostic {
        let a = analyze(&Request { output, ..Request::default() }, &set());
        let i = a.primary.expect("a primary diagnostic");
        a.diagnostics[i].clone()
    }

    #[test]
    fn exit_status_127_makes_a_missing_file_a_missing_command() {
        let output = "xargs: lint-file: No such file or directory\n";
        let run = |code| {
            let a = analyze(&Request { output, exit_code: Some(code), ..Request::default() }, &set());
            let d = &a.diagnostics[a.primary.expect("a primary diagnostic")];
            (d.category, d.key.clone())
        };
        assert_eq!(run(127), (Category::CommandNotFound, Some("lint-file".to_owned())));
        assert_eq!(run(1), (Category::FileNotFound, Some("lint-file".to_owned())));
        // a missing shared library also exits 127: it stays a missing dependency
        let output = "./app: error while loading shared libraries: libacme.so.1: cannot open shared object file: No such file or directory\n";
        let a = analyze(&Request { output, exit_code: Some(127), ..Request::default() }, &set());
        assert_ne!(a.diagnostics[a.primary.expect("primary")].category, Category::CommandNotFound);
    }

    #[test]
    fn a_name_below_the_headline_is_the_key() {
        let output = "\nError: Reference to undeclared input variable\n\n  on main.tf line 2, in output \"b\":\n   2: output \"b\" { value = var.region }\n\nAn input variable with the name \"region\" has not been declared.\n";
        let d = one(output);
        assert_eq!((d.category, d.key.as_deref()), (Category::UnresolvedSymbol, Some("region")));
    }

    #[test]
    fn confidence_says_what_decided_the_category() {
        let d = one(
            "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\nModuleNotFoundError: No module named 'yaml'\n",
        );
        assert_eq!(d.confidence, DiagnosticConfidence::High);
        // a line only a keyword explains
        let d = one("2026-11-25 10:00:00 worker ERROR the frobnicator stalled\n");
        assert!(d.confidence <= DiagnosticConfidence::Medium, "{d:?}");
        let a = analyze(
            &Request { output: "step 1\nstep 2 went sideways\n", exit_code: Some(2), ..Request::default() },
            &set(),
        );
        let d = &a.diagnostics[a.primary.expect("the last line")];
        assert_eq!((d.category, d.confidence), (Category::Unknown, DiagnosticConfidence::Low));
    }

    #[test]
    fn generic_cues_name_the_key_and_keep_causes_apart() {
        let cases = [
            // a keyword pattern without a name in it: the quoted part is the key
            ("Error: module 'left-pad' not found\n", Category::MissingDependency, Some("left-pad")),
            ("sh: 1: frobnicate: not found\n", Category::CommandNotFound, None),
            ("ERROR:  relation \"orders\" does not exist\n", Category::UnresolvedSymbol, Some("orders")),
            (
                "tool: can't open 'data/in.csv': No such file or directory\n",
                Category::FileNotFound,
                Some("data/in.csv"),
            ),
            (
                "Can't locate X/Y.pm in @INC (you may need to install the X::Y module) at -e line 1.\n",
                Category::MissingDependency,
                Some("X::Y"),
            ),
            ("error: could not connect to server: Connection refused\n", Category::Transient, None),
        ];
        for (output, category, key) in cases {
            let a = analyze(&Request { output, exit_code: Some(1), ..Request::default() }, &set());
            let d = &a.diagnostics[a.primary.expect("a diagnostic")];
            assert_eq!(d.category, category, "{output}: {d:?}");
            if key.is_some() {
                assert_eq!(d.key.as_deref(), key, "{output}");
            }
        }
        // the same cause with other names groups; another cause does not
        let sig = |output: &str| {
            let a = analyze(&Request { output, exit_code: Some(1), ..Request::default() }, &set());
            a.diagnostics[a.primary.expect("a diagnostic")].signature.clone()
        };
        assert_eq!(
            sig("ERROR:  relation \"a\" does not exist\n"),
            sig("ERROR:  relation \"b_2\" does not exist\n")
        );
        assert_ne!(
            sig("ERROR:  relation \"a\" does not exist\n"),
            sig("ERROR:  column \"a\" does not exist\n")
        );
    }

    #[test]
    fn module_not_found_end_to_end() {
        let d = one(
            "Traceback (most recent call last):\n  File \"/a/app.py\", line 2, in <module>\n    import yaml\nModuleNotFoundError: No module named 'yaml'\n",
        );
        assert_eq!(d.category, Category::MissingDependency);
        assert_eq!(d.failure_class, FailureClass::Environment);
        assert_eq!(d.key.as_deref(), Some("yaml"));
        assert_eq!(d.template, "ModuleNotFoundError: No module named '<module>'");
        assert_eq!(d.matches[0].id, "python.module-not-found");
        assert!(d.matches[0].fixes[0].contains("pip install PyYAML"), "{:?}", d.matches[0].fixes);
    }

    #[test]
    fn rustc_primary_is_the_first_error_not_the_trailer() {
        let a = analyze(
            &Request {
                output: "warning: unused import: `std::fs`\n --> src/main.rs:1:5\n  |\n\nerror[E0425]: cannot find value `x` in this scope\n --> src/main.rs:3:5\n  |\n\nerror: aborting due to 1 previous error; 1 warning emitted\n",
                ..Request::default()
            },
            &set(),
        );
        let p = &a.diagnostics[a.primary.expect("primary")];
        assert_eq!(p.code.as_deref(), Some("E0425"));
        assert_eq!(p.key.as_deref(), Some("x"));
        assert_eq!(a.diagnostics.len(), 2);
    }

    #[test]
    fn empty_output_has_no_diagnostics() {
        let a = analyze(&Request::default(), &set());
        assert!(a.diagnostics.is_empty());
        assert_eq!(a.primary, None);
        let a = analyze(&Request { output: "all good\n", exit_code: Some(0), ..Request::default() }, &set());
        assert!(a.diagnostics.is_empty());
        let a = analyze(
            &Request { output: "weird thing\nstopped\n", exit_code: Some(3), ..Request::default() },
            &set(),
        );
        assert_eq!(a.diagnostics.len(), 1);
        assert_eq!(a.diagnostics[0].message, "stopped");
    }

    #[test]
    fn fill_and_maps() {
        let set = set();
        let p = set.get("c.missing-header").expect("pattern");
        let mut params = Params::new();
        params.insert("header".to_owned(), "openssl/ssl.h".to_owned());
        assert_eq!(
            fill("apt-get install {header:debian} {{x}}", &params, p),
            "apt-get install libssl-dev {x}"
        );
        let p = set.get("node.module-not-found").expect("pattern");
        assert_eq!(map_value("@aws-sdk/client-s3/dist", Some("npm"), p), "@aws-sdk/client-s3");
        assert_eq!(map_value("lodash/fp", Some("npm"), p), "lodash");
        let p = set.get("python.module-not-found").expect("pattern");
        for (module, dist) in [
            ("yaml", "PyYAML"),
            ("cv2", "opencv-python"),
            ("PIL", "Pillow"),
            ("sklearn", "scikit-learn"),
            ("bs4", "beautifulsoup4"),
            ("yaml.constructor", "PyYAML"),
        ] {
            assert_eq!(map_value(module, Some("pypi"), p), dist);
        }
    }
}
