//! TypeScript `tsc`: `file.ts(3,5): error TS2304: msg` and the pretty `file.ts:3:5 - error TS2304: msg`.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{Location, RawDiagnostic, Severity, rank};

static PLAIN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?P<file>[^\s(][^(]*)\((?P<line>\d+),(?P<col>\d+)\): (?P<sev>error|warning) (?P<code>TS\d+): (?P<msg>.+)$",
    )
});
static PRETTY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+) - (?P<sev>error|warning) (?P<code>TS\d+): (?P<msg>.+)$",
    )
});

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    if !input.text.contains(" TS") {
        return;
    }
    for i in 0..input.lines.len() {
        if input.is_claimed(i) {
            continue;
        }
        let line = input.lines[i];
        let Some(c) = PLAIN.captures(line).or_else(|| PRETTY.captures(line)) else { continue };
        let warning = &c["sev"] == "warning";
        out.push(RawDiagnostic {
            tool: "tsc".to_owned(),
            severity: Some(if warning { Severity::Warning } else { Severity::Error }),
            message: format!("{} {}: {}", &c["sev"], &c["code"], &c["msg"]),
            code: Some(c["code"].to_owned()),
            location: Some(Location {
                file: c["file"].to_owned(),
                line: c["line"].parse().ok(),
                column: c["col"].parse().ok(),
            }),
            span: (i, i),
            rank: if warning { rank::WARNING } else { rank::ERROR },
            ..RawDiagnostic::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn both_forms() {
        let d = parse(
            "src/a.ts(3,5): error TS2304: Cannot find name 'foo'.\nsrc/b.ts:1:10 - error TS2307: Cannot find module 'x' or its corresponding type declarations.\n\nFound 2 errors.\n",
            None,
        );
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].code.as_deref(), Some("TS2304"));
        assert_eq!(d[1].location.as_ref().map(|l| l.column), Some(Some(10)));
    }
}
