//! Go: `go build`/`go vet` (`file.go:line:col: msg`), module errors, `go test` failures
//! (`--- FAIL: TestX` with its `file_test.go:N: msg` lines) and panics.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{Category, Location, RawDiagnostic, Severity, rank};

static DIAG: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?P<file>[^:\s][^:]*\.go):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<msg>.+)$"));
static FAIL: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*--- FAIL: (?P<test>\S+)(?: \([\d.]+s\))?"));
static TEST_LINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s+(?P<file>[^:\s]+_test\.go):(?P<line>\d+): (?P<msg>.+)$"));
static PANIC: LazyLock<Regex> = LazyLock::new(|| re(r"^panic: (?P<msg>.+?)(?: \[recovered\])?$"));
static FRAME: LazyLock<Regex> = LazyLock::new(|| re(r"^\s+(?P<file>/\S+\.go):(?P<line>\d+)"));

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    let text = input.text;
    if !(text.contains(".go:") || text.contains("--- FAIL") || text.contains("panic: ")) {
        return;
    }
    let n = input.lines.len();
    let mut i = 0;
    while i < n {
        if input.is_claimed(i) {
            i += 1;
            continue;
        }
        let line = input.lines[i];
        if let Some(c) = FAIL.captures(line) {
            let test = c["test"].to_owned();
            let mut end = i;
            let mut first: Option<(Location, String)> = None;
            let mut context = Vec::new();
            while end + 1 < n {
                let next = input.lines[end + 1];
                if let Some(t) = TEST_LINE.captures(next) {
                    if first.is_none() {
                        first = Some((
                            Location {
                                file: t["file"].to_owned(),
                                line: t["line"].parse().ok(),
                                column: None,
                            },
                            t["msg"].to_owned(),
                        ));
                    } else {
                        context.push(t["msg"].to_owned());
                    }
                    end += 1;
                } else if next.starts_with("        ") {
                    context.push(next.trim().to_owned());
                    end += 1;
                } else {
                    break;
                }
            }
            let (location, msg) = match first {
                Some((l, m)) => (Some(l), m),
                None => (None, format!("test {test} failed")),
            };
            let mut d = RawDiagnostic {
                tool: "go".to_owned(),
                severity: Some(Severity::Error),
                message: msg,
                location,
                context,
                category_hint: Some(Category::TestFailure),
                span: (i, end),
                rank: rank::ERROR,
                ..RawDiagnostic::default()
            };
            d.params.insert("test".to_owned(), test);
            out.push(d);
            i = end + 1;
            continue;
        }
        if let Some(c) = PANIC.captures(line) {
            let mut end = i;
            let mut location = None;
            while end + 1 < n && end - i < 60 {
                let next = input.lines[end + 1];
                if next.starts_with("exit status") || next.starts_with("FAIL") {
                    break;
                }
                if location.is_none()
                    && let Some(f) = FRAME.captures(next)
                    && !f["file"].contains("/src/runtime/")
                {
                    location = Some(Location {
                        file: f["file"].to_owned(),
                        line: f["line"].parse().ok(),
                        column: None,
                    });
                }
                end += 1;
            }
            out.push(RawDiagnostic {
                tool: "go".to_owned(),
                severity: Some(Severity::Error),
                message: format!("panic: {}", &c["msg"]),
                location,
                span: (i, end),
                rank: rank::ROOT,
                ..RawDiagnostic::default()
            });
            i = end + 1;
            continue;
        }
        if let Some(c) = DIAG.captures(line) {
            let mut end = i;
            let mut context = Vec::new();
            while end + 1 < n && input.lines[end + 1].starts_with('\t') {
                context.push(input.lines[end + 1].trim().to_owned());
                end += 1;
            }
            let msg = c["msg"].to_owned();
            let warning = msg.starts_with("warning:");
            out.push(RawDiagnostic {
                tool: "go".to_owned(),
                severity: Some(if warning { Severity::Warning } else { Severity::Error }),
                message: msg,
                location: Some(Location {
                    file: c["file"].to_owned(),
                    line: c["line"].parse().ok(),
                    column: c.name("col").and_then(|m| m.as_str().parse().ok()),
                }),
                context,
                span: (i, end),
                rank: if warning { rank::WARNING } else { rank::ERROR },
                ..RawDiagnostic::default()
            });
            i = end + 1;
            continue;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn build_test_and_panic() {
        let d = parse("# example.com/app\n./main.go:5:2: undefined: fooBar\n", None);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "undefined: fooBar");
        let d = parse(
            "--- FAIL: TestAdd (0.00s)\n    add_test.go:9: Add(1, 2) = 4, want 3\nFAIL\nFAIL\texample.com/m\t0.002s\n",
            None,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "Add(1, 2) = 4, want 3");
        assert_eq!(d[0].params.get("test").map(String::as_str), Some("TestAdd"));
        let d = parse(
            "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\t/home/x/main.go:8 +0x1d\nexit status 2\n",
            None,
        );
        assert_eq!(d[0].message, "panic: runtime error: index out of range [5] with length 3");
        assert_eq!(d[0].location.as_ref().map(|l| l.line), Some(Some(8)));
    }
}
