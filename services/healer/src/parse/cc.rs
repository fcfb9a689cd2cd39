//! gcc, clang and the linker: `file:line:col: error: msg` with notes and source excerpts,
//! `undefined reference to`, `cannot find -lfoo`.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{Location, RawDiagnostic, Severity, rank};

static DIAG: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?P<file>[^:\s][^:]*?):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<sev>fatal error|error|warning|note): (?P<msg>.+)$",
    )
});
static LINKER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?P<prefix>(?:/usr/bin/)?(?:ld|ld\.\w+|collect2|[\w./-]*ld)(?:: [^:]+)*?|[^:\s]+\.o(?:: in function `[^']*')?|[^:\s]+:\(\.\w+[^)]*\)): (?P<msg>.*(?:undefined reference to|cannot find -l|library not found for|multiple definition of).*)$",
    )
});

fn is_trailer(line: &str) -> bool {
    let t = line.trim();
    t == "compilation terminated."
        || t.ends_with("errors generated.")
        || t.ends_with("error generated.")
        || t.ends_with("warnings generated.")
        || t.ends_with("warning generated.")
        || t.starts_with("collect2: error: ld returned")
        || t.starts_with("clang: error: linker command failed")
        || (t.contains("In function") && t.ends_with(':'))
        || t.starts_with("In file included from")
}

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    let text = input.text;
    if !(text.contains("error")
        || text.contains("warning")
        || text.contains("undefined reference")
        || text.contains("cannot find -l")
        || text.contains("library not found"))
    {
        return;
    }
    // once: asked per diagnostic it was a scan of the whole output each time
    let tool = if text.contains("clang") { "clang" } else { "gcc" };
    let n = input.lines.len();
    let mut i = 0;
    while i < n {
        if input.is_claimed(i) {
            i += 1;
            continue;
        }
        let line = input.lines[i];
        if is_trailer(line) {
            i += 1;
            continue;
        }
        let linkerish = line.contains("undefined reference")
            || line.contains("cannot find -l")
            || line.contains("library not found")
            || line.contains("multiple definition");
        if let Some(c) = linkerish.then(|| LINKER.captures(line)).flatten() {
            out.push(RawDiagnostic {
                tool: "ld".to_owned(),
                severity: Some(Severity::Error),
                message: c["msg"].trim().to_owned(),
                span: (i, i),
                rank: rank::ERROR,
                ..RawDiagnostic::default()
            });
            i += 1;
            continue;
        }
        let diagish = line.contains(": error")
            || line.contains(": warning")
            || line.contains(": fatal error")
            || line.contains(": note");
        let Some(c) = diagish.then(|| DIAG.captures(line)).flatten() else {
            i += 1;
            continue;
        };
        let sev = &c["sev"];
        if sev == "note" {
            // a note without a preceding diagnostic of ours: context of someone else's
            i += 1;
            continue;
        }
        let file = c["file"].to_owned();
        if file.ends_with(".java") || file.ends_with(".go") || file.ends_with(".py") {
            i += 1;
            continue;
        }
        let mut end = i;
        let mut context = Vec::new();
        // source excerpt (`  2 | code`, `    |   ^~~`), notes about the same diagnostic
        while end + 1 < n {
            let next = input.lines[end + 1];
            if next.starts_with(' ') || next.starts_with('\t') {
                let t = next
                    .trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
                    .trim_start_matches('|')
                    .trim();
                if !t.is_empty() && !t.chars().all(|c| matches!(c, '^' | '~' | ' ' | '|')) {
                    context.push(t.to_owned());
                }
                end += 1;
            } else if let Some(nc) = DIAG.captures(next)
                && &nc["sev"] == "note"
            {
                context.push(format!("note: {}", &nc["msg"]));
                end += 1;
            } else {
                break;
            }
        }
        let warning = sev == "warning";
        let fatal = sev == "fatal error";
        out.push(RawDiagnostic {
            tool: tool.to_owned(),
            severity: Some(if warning { Severity::Warning } else { Severity::Error }),
            message: format!("{sev}: {}", &c["msg"]),
            location: Some(Location {
                file,
                line: c["line"].parse().ok(),
                column: c.name("col").and_then(|m| m.as_str().parse().ok()),
            }),
            context,
            span: (i, end),
            rank: if warning {
                rank::WARNING
            } else if fatal {
                rank::ROOT
            } else {
                rank::ERROR
            },
            ..RawDiagnostic::default()
        });
        i = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn gcc_error_with_note_and_excerpt() {
        let out = "a.c: In function ‘f’:\na.c:2:10: error: ‘counter’ undeclared (first use in this function)\n    2 |   return counter + 1;\n      |          ^~~~~~~\na.c:2:10: note: each undeclared identifier is reported only once for each function it appears in\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "error: ‘counter’ undeclared (first use in this function)");
        assert_eq!(d[0].context.len(), 2, "{:?}", d[0].context);
    }

    #[test]
    fn linker_errors() {
        let out = "/usr/bin/ld: /tmp/ccX.o: in function `main':\nm.c:(.text+0x1e): undefined reference to `compute'\ncollect2: error: ld returned 1 exit status\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "undefined reference to `compute'");
        let d = parse("/usr/bin/ld: cannot find -lssl: No such file or directory\n", None);
        assert_eq!(d[0].message, "cannot find -lssl: No such file or directory");
    }
}
