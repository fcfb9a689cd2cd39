//! rustc and cargo: human output (`error[E0425]: ...` with ` --> file:line:col`) and cargo's
//! `--message-format=json` lines.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, location, re};
use crate::model::{Location, RawDiagnostic, Severity, Suggestion, rank};

static HEADER: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?P<sev>error|warning)(?:\[(?P<code>E\d{4})\])?: (?P<msg>.+)$"));
static ARROW: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*--> (?P<loc>.+)$"));
static PANIC: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^thread '(?P<thread>[^']*)' (?:\(\d+\) )?panicked at (?P<loc>[^:]+:\d+:\d+):?(?: (?P<msg>.+))?$")
});

/// Lines rustc and cargo print that are not diagnostics of their own.
fn is_trailer(msg: &str) -> bool {
    msg.starts_with("aborting due to")
        || msg.starts_with("could not compile")
        || msg.starts_with("build failed")
        || msg.ends_with("warnings emitted")
        || msg.ends_with("warning emitted")
        || msg.starts_with("Some errors have detailed explanations")
        || msg.starts_with("For more information about")
        || (msg.contains("generated") && msg.contains("warning"))
        || msg.starts_with("test failed, to rerun")
}

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    let text = input.text;
    if !(text.contains("error") || text.contains("warning") || text.contains("panicked")) {
        return;
    }
    let n = input.lines.len();
    let tool =
        if text.contains("Compiling ") || text.contains("could not compile") { "cargo" } else { "rustc" };
    let mut i = 0;
    while i < n {
        if input.is_claimed(i) {
            i += 1;
            continue;
        }
        let line = input.lines[i];
        if !(line.starts_with("error") || line.starts_with("warning") || line.starts_with("thread '")) {
            i += 1;
            continue;
        }
        if let Some(c) = PANIC.captures(line) {
            let mut msg = c.name("msg").map(|m| m.as_str().to_owned()).unwrap_or_default();
            let mut end = i;
            if msg.is_empty() && i + 1 < n {
                msg = input.lines[i + 1].trim().to_owned();
                end = i + 1;
            }
            out.push(RawDiagnostic {
                tool: "rust".to_owned(),
                severity: Some(Severity::Error),
                message: format!("panicked: {msg}"),
                location: location(&c["loc"]),
                span: (i, end),
                rank: rank::ROOT,
                ..RawDiagnostic::default()
            });
            i = end + 1;
            continue;
        }
        let Some(c) = HEADER.captures(line) else {
            i += 1;
            continue;
        };
        let msg = c["msg"].to_owned();
        if is_trailer(&msg) {
            input.claim(i, i);
            i += 1;
            continue;
        }
        // the block runs until a blank line followed by a non-indented line, or the next header
        let mut end = i;
        let mut loc: Option<Location> = None;
        let mut context = Vec::new();
        let mut j = i + 1;
        while j < n {
            let l = input.lines[j];
            if HEADER.is_match(l) || (l.trim().is_empty() && j + 1 < n && HEADER.is_match(input.lines[j + 1]))
            {
                break;
            }
            if l.trim().is_empty() && (j + 1 >= n || !input.lines[j + 1].starts_with(' ')) {
                break;
            }
            if loc.is_none()
                && let Some(a) = ARROW.captures(l)
            {
                loc = location(&a["loc"]);
            } else {
                let t = l
                    .trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
                    .trim_start_matches('|')
                    .trim();
                if !t.is_empty() && !t.chars().all(|c| matches!(c, '^' | '-' | '~' | '|' | ' ')) {
                    context.push(t.to_owned());
                }
            }
            end = j;
            j += 1;
        }
        let warning = &c["sev"] == "warning";
        out.push(RawDiagnostic {
            tool: tool.to_owned(),
            severity: Some(if warning { Severity::Warning } else { Severity::Error }),
            message: line.trim_end().to_owned(),
            code: c.name("code").map(|m| m.as_str().to_owned()),
            location: loc,
            context,
            span: (i, end),
            rank: if warning { rank::WARNING } else { rank::ERROR },
            ..RawDiagnostic::default()
        });
        i = end + 1;
    }
}

/// cargo `--message-format=json`: one JSON object per line; `compiler-message` entries carry the
/// diagnostic, its code, spans and the rendered human text.
pub fn parse_json(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    if !input.text.contains("\"reason\":") {
        return;
    }
    for i in 0..input.lines.len() {
        // a JSON message is parsed whole (serde is linear), however long its rendered text
        let line = input.whole_line(i).trim();
        if !line.starts_with('{') || !line.contains("\"reason\":\"compiler-message\"") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let m = &v["message"];
        let level = m["level"].as_str().unwrap_or("error");
        let text = m["message"].as_str().unwrap_or_default();
        if text.is_empty() || is_trailer(text) {
            input.claim(i, i);
            continue;
        }
        let code = m["code"]["code"].as_str().map(str::to_owned);
        let primary = m["spans"].as_array().and_then(|s| s.iter().find(|s| s["is_primary"] == true));
        let location = primary.map(|s| Location {
            file: s["file_name"].as_str().unwrap_or_default().to_owned(),
            line: s["line_start"].as_u64().and_then(|v| u32::try_from(v).ok()),
            column: s["column_start"].as_u64().and_then(|v| u32::try_from(v).ok()),
        });
        let mut context: Vec<String> = Vec::new();
        if let Some(label) = primary.and_then(|s| s["label"].as_str()) {
            context.push(label.to_owned());
        }
        let mut suggestions = Vec::new();
        for child in m["children"].as_array().into_iter().flatten() {
            let t = child["message"].as_str().unwrap_or_default();
            if !t.is_empty() {
                context.push(format!("{}: {t}", child["level"].as_str().unwrap_or("note")));
            }
            for span in child["spans"].as_array().into_iter().flatten() {
                let Some(replacement) = span["suggested_replacement"].as_str() else { continue };
                let num = |k: &str| span[k].as_i64();
                if let (Some(byte_start), Some(byte_end)) = (num("byte_start"), num("byte_end")) {
                    suggestions.push(Suggestion {
                        message: t.to_owned(),
                        file: span["file_name"].as_str().unwrap_or_default().to_owned(),
                        byte_start,
                        byte_end,
                        line_start: num("line_start").and_then(|v| i32::try_from(v).ok()).unwrap_or(0),
                        replacement: replacement.to_owned(),
                        applicability: span["suggestion_applicability"]
                            .as_str()
                            .unwrap_or("Unspecified")
                            .to_owned(),
                    });
                }
            }
        }
        let header = match &code {
            Some(code) => format!("{level}[{code}]: {text}"),
            None => format!("{level}: {text}"),
        };
        let warning = level == "warning";
        let mut d = RawDiagnostic {
            tool: "cargo".to_owned(),
            severity: Some(if warning { Severity::Warning } else { Severity::Error }),
            message: header,
            code,
            location,
            context,
            span: (i, i),
            rank: if warning { rank::WARNING } else { rank::ERROR },
            suggestions,
            ..RawDiagnostic::default()
        };
        if let Some(target) = v["target"]["name"].as_str() {
            d.params.insert("target".to_owned(), target.to_owned());
        }
        out.push(d);
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn human_output_skips_trailers_and_keeps_warnings_apart() {
        let out = "error[E0425]: cannot find value `count` in this scope\n --> a.rs:2:5\n  |\n2 |     count + 1\n  |     ^^^^^ not found in this scope\n\nwarning: unused variable: `x`\n --> a.rs:1:9\n  |\n\nerror: aborting due to 1 previous error\n\nFor more information about this error, try `rustc --explain E0425`.\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].code.as_deref(), Some("E0425"));
        assert_eq!(
            d[0].location.as_ref().map(|l| (l.file.as_str(), l.line, l.column)),
            Some(("a.rs", Some(2), Some(5)))
        );
        assert!(d[0].context.iter().any(|c| c.contains("not found in this scope")), "{:?}", d[0].context);
        assert!(d[0].rank > d[1].rank);
    }

    #[test]
    fn cargo_json_lines() {
        let line = r#"{"reason":"compiler-message","package_id":"x","target":{"name":"app"},"message":{"rendered":"error[E0432]: unresolved import `serde`","children":[{"level":"help","message":"you might be missing a crate named `serde`","spans":[]}],"code":{"code":"E0432","explanation":"..."},"level":"error","message":"unresolved import `serde`","spans":[{"file_name":"src/main.rs","line_start":1,"column_start":5,"is_primary":true,"label":"use of unresolved module or unlinked crate `serde`"}]}}"#;
        let out = format!("{line}\n{{\"reason\":\"build-finished\",\"success\":false}}\n");
        let d = parse(&out, None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "error[E0432]: unresolved import `serde`");
        assert_eq!(d[0].location.as_ref().map(|l| l.line), Some(Some(1)));
    }
}
