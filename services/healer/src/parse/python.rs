//! Python: tracebacks (with chained exceptions), SyntaxError blocks, warnings, and the
//! summaries of pytest and unittest.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{Category, Location, RawDiagnostic, Severity, rank};

static FRAME: LazyLock<Regex> =
    LazyLock::new(|| re(r#"^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$"#));
static EXCEPTION: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?P<type>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)(?:: ?(?P<msg>.*))?$"));
static WARNING: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?P<file>[^:\s][^:]*\.py):(?P<line>\d+): (?P<type>\w*Warning): (?P<msg>.+)$"));
static PYTEST_SUMMARY: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?P<kind>FAILED|ERROR) (?P<node>\S+?)(?: - (?P<msg>.+))?$"));
static PYTEST_E: LazyLock<Regex> = LazyLock::new(|| re(r"^E\s+(?P<msg>.+)$"));
static UNITTEST_HEADER: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?P<kind>FAIL|ERROR): (?P<test>\S+) \((?P<class>[^)]+)\)"));

const CHAIN_MARKERS: [&str; 2] = [
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
];

/// Does `name` look like a Python exception class (last dotted segment)?
fn is_exception_type(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && (last.ends_with("Error")
            || last.ends_with("Exception")
            || last.ends_with("Warning")
            || last.ends_with("Exit")
            || last.ends_with("Interrupt")
            || last.ends_with("Failure")
            || last.ends_with("Timeout")
            || last.ends_with("Refused")
            || matches!(last, "StopIteration" | "StopAsyncIteration" | "GeneratorExit"))
}

fn is_library(file: &str) -> bool {
    file.starts_with("<frozen")
        || file.contains("/lib/python")
        || file.contains("site-packages")
        || file.contains("\\Lib\\")
}

fn is_caret_line(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && t.chars().all(|c| matches!(c, '^' | '~' | ' '))
}

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    let text = input.text;
    if !(text.contains("File \"")
        || text.contains("Warning: ")
        || text.contains("FAILED ")
        || text.contains("ERROR ")
        || text.contains("\nE "))
    {
        return;
    }
    let n = input.lines.len();
    let mut i = 0;
    // Whether the next traceback continues a chain (it is a consequence of the previous one).
    let mut chained = false;
    let mut unittest_test: Option<String> = None;
    while i < n {
        if input.is_claimed(i) {
            i += 1;
            continue;
        }
        let line = input.lines[i];
        let trimmed = line.trim_start();
        if CHAIN_MARKERS.iter().any(|m| trimmed.starts_with(m)) {
            chained = true;
            input.claim(i, i);
            i += 1;
            continue;
        }
        if (line.starts_with("FAIL: ") || line.starts_with("ERROR: "))
            && let Some(c) = UNITTEST_HEADER.captures(line)
        {
            unittest_test = Some(format!("{}.{}", &c["class"], &c["test"]));
            input.claim(i, i);
            i += 1;
            continue;
        }
        if trimmed.starts_with("Traceback (most recent call last):") {
            let (next, diag) = traceback(input, i, chained);
            if let Some(mut d) = diag {
                if let Some(test) = unittest_test.take() {
                    d.params.insert("test".to_owned(), test);
                    d.tool = "unittest".to_owned();
                }
                out.push(d);
                chained = false;
            }
            i = next;
            continue;
        }
        if line.contains("File \"")
            && let Some(d) = syntax_block(input, i)
        {
            i = d.span.1 + 1;
            out.push(d);
            continue;
        }
        if line.contains("Warning: ")
            && let Some(c) = WARNING.captures(line)
        {
            out.push(RawDiagnostic {
                tool: "python".to_owned(),
                severity: Some(Severity::Warning),
                message: format!("{}: {}", &c["type"], &c["msg"]),
                location: Some(Location {
                    file: c["file"].to_owned(),
                    line: c["line"].parse().ok(),
                    column: None,
                }),
                span: (i, i),
                rank: rank::WARNING,
                ..RawDiagnostic::default()
            });
        } else if (line.starts_with("FAILED ") || line.starts_with("ERROR "))
            && let Some(c) = PYTEST_SUMMARY.captures(line)
        {
            let node = c["node"].to_owned();
            if node.contains(".py") {
                let msg = c.name("msg").map(|m| m.as_str().to_owned());
                let file = node.split("::").next().unwrap_or(&node).to_owned();
                let mut d = RawDiagnostic {
                    tool: "pytest".to_owned(),
                    severity: Some(Severity::Error),
                    message: msg.clone().unwrap_or_else(|| format!("{} {}", &c["kind"], node)),
                    location: Some(Location { file, line: None, column: None }),
                    span: (i, i),
                    rank: rank::ERROR,
                    category_hint: (&c["kind"] == "FAILED").then_some(Category::TestFailure),
                    ..RawDiagnostic::default()
                };
                d.params.insert("test".to_owned(), node);
                out.push(d);
            }
        } else if line.starts_with("E ")
            && let Some(c) = PYTEST_E.captures(line)
        {
            // pytest's long tracebacks: the first `E   SomeError: ...` line of a block
            let msg = c["msg"].trim();
            let is_exc = EXCEPTION
                .captures(msg)
                .is_some_and(|e| is_exception_type(&e["type"]) && e.name("msg").is_some());
            let prev_is_e = i > 0 && input.lines[i - 1].starts_with("E ");
            if (is_exc || msg.starts_with("assert ")) && !prev_is_e {
                let mut end = i;
                let mut context = Vec::new();
                while end + 1 < n && input.lines[end + 1].starts_with("E ") {
                    end += 1;
                    context.push(input.lines[end][1..].trim().to_owned());
                }
                out.push(RawDiagnostic {
                    tool: "pytest".to_owned(),
                    severity: Some(Severity::Error),
                    message: if is_exc { msg.to_owned() } else { format!("AssertionError: {msg}") },
                    context,
                    span: (i, end),
                    rank: rank::ROOT,
                    category_hint: Some(Category::TestFailure),
                    ..RawDiagnostic::default()
                });
                i = end + 1;
                continue;
            }
        }
        i += 1;
    }
}

/// A traceback starting at `start`; returns the index after it and its diagnostic.
fn traceback(input: &Input, start: usize, chained: bool) -> (usize, Option<RawDiagnostic>) {
    let n = input.lines.len();
    let mut i = start + 1;
    let mut frames: Vec<Location> = Vec::new();
    let mut context = Vec::new();
    while i < n {
        let l = input.lines[i];
        if let Some(c) = FRAME.captures(l) {
            frames.push(Location { file: c["file"].to_owned(), line: c["line"].parse().ok(), column: None });
            i += 1;
            continue;
        }
        if l.starts_with(' ') || l.starts_with('\t') {
            if !is_caret_line(l) {
                context.push(l.trim().to_owned());
            }
            i += 1;
            continue;
        }
        if l.trim().is_empty() || l.trim() == "..." {
            i += 1;
            continue;
        }
        break;
    }
    if i >= n {
        return (i, None);
    }
    let line = input.lines[i];
    let Some(c) = EXCEPTION.captures(line.trim_end()) else { return (i, None) };
    if !is_exception_type(&c["type"]) {
        return (i, None);
    }
    let mut end = i;
    // message continuation lines (multi-line exception messages)
    while end + 1 < n {
        let next = input.lines[end + 1];
        let t = next.trim_start();
        if t.is_empty() || t.starts_with("Traceback (") || CHAIN_MARKERS.iter().any(|m| t.starts_with(m)) {
            break;
        }
        if EXCEPTION.captures(next).is_some_and(|c| is_exception_type(&c["type"]) && c.name("msg").is_some())
        {
            break;
        }
        if end - i >= 20 {
            break;
        }
        end += 1;
        context.push(t.to_owned());
    }
    let location = frames.iter().rev().find(|f| !is_library(&f.file)).or(frames.last()).cloned();
    let d = RawDiagnostic {
        tool: "python".to_owned(),
        severity: Some(Severity::Error),
        message: line.trim_end().to_owned(),
        location,
        context,
        span: (start, end),
        rank: if chained { rank::CONSEQUENCE } else { rank::ROOT },
        ..RawDiagnostic::default()
    };
    (end + 1, Some(d))
}

/// A SyntaxError (or IndentationError) block without traceback: `File "x", line N`, the source
/// line, a caret line, then the error.
fn syntax_block(input: &Input, start: usize) -> Option<RawDiagnostic> {
    let c = FRAME.captures(input.lines[start])?;
    if c.name("func").is_some() {
        return None;
    }
    let location = Location { file: c["file"].to_owned(), line: c["line"].parse().ok(), column: None };
    let mut context = Vec::new();
    for j in start + 1..(start + 6).min(input.lines.len()) {
        let l = input.lines[j];
        let t = l.trim_start();
        if let Some(e) = EXCEPTION.captures(t)
            && matches!(e["type"].rsplit('.').next(), Some("SyntaxError" | "IndentationError" | "TabError"))
        {
            return Some(RawDiagnostic {
                tool: "python".to_owned(),
                severity: Some(Severity::Error),
                message: t.trim_end().to_owned(),
                location: Some(location),
                context,
                category_hint: Some(Category::SyntaxError),
                span: (start, j),
                rank: rank::ROOT,
                ..RawDiagnostic::default()
            });
        }
        if !is_caret_line(l) {
            context.push(t.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn traceback_gives_the_exception_and_the_deepest_user_frame() {
        let out = "Traceback (most recent call last):\n  File \"/home/a/app.py\", line 2, in <module>\n    import yaml\n  File \"/usr/lib/python3.11/importlib/__init__.py\", line 9, in x\n    pass\nModuleNotFoundError: No module named 'yaml'\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "ModuleNotFoundError: No module named 'yaml'");
        let loc = d[0].location.as_ref().expect("loc");
        assert_eq!((loc.file.as_str(), loc.line), ("/home/a/app.py", Some(2)));
        assert_eq!(d[0].context, vec!["import yaml", "pass"]);
    }

    #[test]
    fn chained_exceptions_rank_the_first_as_root() {
        let out = "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\n    d['k']\nKeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"a.py\", line 3, in f\n    raise ValueError('bad')\nValueError: bad\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 2);
        assert!(d[0].rank > d[1].rank, "{d:?}");
        assert_eq!(d[0].message, "KeyError: 'k'");
    }

    #[test]
    fn syntax_error_block() {
        let out =
            "  File \"/x/calc.py\", line 2\n    return x +\n              ^\nSyntaxError: invalid syntax\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "SyntaxError: invalid syntax");
        assert_eq!(d[0].location.as_ref().and_then(|l| l.line), Some(2));
    }

    #[test]
    fn pytest_summary_and_e_lines() {
        let out = "    def test_add():\n>       assert add(1, 2) == 4\nE       assert 3 == 4\nE        +  where 3 = add(1, 2)\n\ntests/test_m.py:5: AssertionError\n=========================== short test summary info ============================\nFAILED tests/test_m.py::test_add - assert 3 == 4\n";
        let d = parse(out, None);
        assert!(
            d.iter().any(|d| d.tool == "pytest"
                && d.params.get("test").is_some_and(|t| t == "tests/test_m.py::test_add")),
            "{d:?}"
        );
        assert!(d.iter().any(|d| d.message == "AssertionError: assert 3 == 4"), "{d:?}");
    }
}
