//! javac: `File.java:2: error: msg`, the source line, a caret, and `symbol:` / `location:` lines.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{Location, RawDiagnostic, Severity, rank};

static DIAG: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?P<file>[^:\s][^:]*\.java):(?P<line>\d+): (?P<sev>error|warning): (?P<msg>.+)$"));
static SYMBOL: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*symbol:\s+(?P<kind>\w+)\s+(?P<name>[^\s(]+)"));

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    if !input.text.contains(".java:") {
        return;
    }
    let n = input.lines.len();
    let mut i = 0;
    while i < n {
        let candidate = !input.is_claimed(i) && input.lines[i].contains(".java:");
        let Some(c) = candidate.then(|| DIAG.captures(input.lines[i])).flatten() else {
            i += 1;
            continue;
        };
        let mut end = i;
        let mut context = Vec::new();
        let mut d = RawDiagnostic::default();
        while end + 1 < n && !DIAG.is_match(input.lines[end + 1]) {
            let next = input.lines[end + 1];
            let t = next.trim();
            if t.is_empty()
                || (t.ends_with(" error")
                    || t.ends_with(" errors")
                    || t.ends_with(" warning")
                    || t.ends_with(" warnings"))
                    && t.split(' ').next().is_some_and(|w| w.parse::<u32>().is_ok())
            {
                break;
            }
            if let Some(s) = SYMBOL.captures(next) {
                d.params.insert("symbol_kind".to_owned(), s["kind"].to_owned());
                d.params.insert("symbol".to_owned(), s["name"].to_owned());
            }
            if !t.chars().all(|c| c == '^') {
                context.push(t.to_owned());
            }
            end += 1;
        }
        let warning = &c["sev"] == "warning";
        d.tool = "javac".to_owned();
        d.severity = Some(if warning { Severity::Warning } else { Severity::Error });
        d.message = format!("{}: {}", &c["sev"], &c["msg"]);
        d.location =
            Some(Location { file: c["file"].to_owned(), line: c["line"].parse().ok(), column: None });
        d.context = context;
        d.span = (i, end);
        d.rank = if warning { rank::WARNING } else { rank::ERROR };
        out.push(d);
        i = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn symbol_lines_become_params() {
        let out = "App.java:2: error: cannot find symbol\n  int f() { return countt + 1; }\n                   ^\n  symbol:   variable countt\n  location: class App\n1 error\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "error: cannot find symbol");
        assert_eq!(d[0].params.get("symbol").map(String::as_str), Some("countt"));
    }
}
