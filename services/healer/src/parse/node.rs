//! Node.js: uncaught errors (`TypeError: x is not a function` with its stack and the
//! `file.js:N` source header) and npm's `npm ERR!` / `npm error` blocks.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{Location, RawDiagnostic, Severity, rank};

static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:Uncaught )?(?P<type>(?:[A-Z][A-Za-z]*)?Error|[A-Z]\w*Exception)(?: \[(?P<code>[A-Z0-9_]+)\])?: (?P<msg>.+)$",
    )
});
static HEADER: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?P<file>\S+\.(?:js|mjs|cjs|ts|mts|cts|jsx|tsx)):(?P<line>\d+)$"));
static FRAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s+at (?:.*? \()?(?P<file>[^()\s]+?):(?P<line>\d+):(?P<col>\d+)\)?$"));
static NPM: LazyLock<Regex> = LazyLock::new(|| re(r"^npm (?:ERR!|error) ?(?P<rest>.*)$"));

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    let text = input.text;
    if text.contains("npm ERR!") || text.contains("npm error") {
        npm(input, out);
    }
    if !text.contains("Error") && !text.contains("Exception") {
        return;
    }
    let nodeish = text.contains("Node.js v") || text.contains("node:internal") || text.contains("    at ");
    let n = input.lines.len();
    let mut i = 0;
    while i < n {
        if input.is_claimed(i) {
            i += 1;
            continue;
        }
        let line = input.lines[i];
        let candidate = line.contains("Error") || line.contains("Exception");
        let Some(c) = candidate.then(|| ERROR.captures(line)).flatten() else {
            i += 1;
            continue;
        };
        // a header `file.js:N` up to 5 lines above (source line and caret between)
        let header = (i.saturating_sub(5)..i).rev().find_map(|j| {
            HEADER.captures(input.lines[j]).map(|h| {
                (j, Location { file: h["file"].to_owned(), line: h["line"].parse().ok(), column: None })
            })
        });
        let has_stack = (i + 1..(i + 8).min(n)).any(|j| input.lines[j].trim_start().starts_with("at "));
        if !(has_stack || header.is_some() || nodeish) {
            i += 1;
            continue;
        }
        let start = header.as_ref().map_or(i, |(j, _)| *j);
        let mut context: Vec<String> = Vec::new();
        if let Some((j, _)) = &header {
            for l in &input.lines[j + 1..i] {
                let t = l.trim();
                if !t.is_empty() && !t.chars().all(|c| c == '^') {
                    context.push(t.to_owned());
                }
            }
        }
        let mut end = i;
        let mut frame_loc: Option<Location> = None;
        while end + 1 < n {
            let next = input.lines[end + 1];
            let t = next.trim();
            if t.starts_with("at ") {
                if frame_loc.is_none()
                    && let Some(f) = FRAME.captures(next)
                    && !f["file"].starts_with("node:")
                    && !f["file"].contains("node_modules")
                {
                    frame_loc = Some(Location {
                        file: f["file"].to_owned(),
                        line: f["line"].parse().ok(),
                        column: f["col"].parse().ok(),
                    });
                }
                end += 1;
            } else if t.starts_with("- ")
                || t == "Require stack:"
                || t.starts_with('{')
                || t.starts_with('}')
                || t.starts_with("code:")
                || t.starts_with("requireStack")
                || t.starts_with("errno")
                || t.starts_with("syscall")
                || t.starts_with("address")
                || t.starts_with("port:")
                || t.starts_with('\'')
                || t.starts_with(']')
            {
                context.push(t.to_owned());
                end += 1;
            } else if t.is_empty() && end + 2 < n && input.lines[end + 2].starts_with("Node.js v") {
                end += 2;
            } else if t.starts_with("Node.js v") {
                end += 1;
            } else {
                break;
            }
        }
        let location = header.map(|(_, l)| l).or(frame_loc);
        out.push(RawDiagnostic {
            tool: "node".to_owned(),
            severity: Some(Severity::Error),
            message: input.lines[i].trim_start_matches("Uncaught ").trim_end().to_owned(),
            code: c.name("code").map(|m| m.as_str().to_owned()),
            location,
            context,
            span: (start, end),
            rank: rank::ROOT,
            ..RawDiagnostic::default()
        });
        i = end + 1;
    }
}

/// One diagnostic per npm error block: the code and the first line that says what went wrong.
fn npm(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    let n = input.lines.len();
    let mut i = 0;
    while i < n {
        if input.is_claimed(i) || !NPM.is_match(input.lines[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut code = None;
        let mut message: Option<String> = None;
        let mut context = Vec::new();
        while i < n {
            let Some(c) = NPM.captures(input.lines[i]) else { break };
            let rest = c["rest"].trim();
            if let Some(v) = rest.strip_prefix("code ") {
                code = Some(v.trim().to_owned());
            } else if rest.is_empty()
                || rest.starts_with("errno")
                || rest.starts_with("syscall")
                || rest.starts_with("path ")
                || rest.starts_with("A complete log")
                || rest.contains("-debug")
                || rest.starts_with("Log files")
            {
            } else if message.is_none() {
                message = Some(rest.to_owned());
            } else {
                context.push(rest.to_owned());
            }
            i += 1;
        }
        let message =
            message.unwrap_or_else(|| format!("npm failed with {}", code.as_deref().unwrap_or("an error")));
        out.push(RawDiagnostic {
            tool: "npm".to_owned(),
            severity: Some(Severity::Error),
            message,
            code,
            context,
            span: (start, i.saturating_sub(1)),
            rank: rank::ERROR,
            ..RawDiagnostic::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn uncaught_error_with_header_and_stack() {
        let out = "/home/a/t.js:2\no.send(1);\n  ^\n\nTypeError: o.send is not a function\n    at Object.<anonymous> (/home/a/t.js:2:3)\n    at Module._compile (node:internal/modules/cjs/loader:1521:14)\n\nNode.js v20.20.2\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "TypeError: o.send is not a function");
        assert_eq!(
            d[0].location.as_ref().map(|l| (l.file.as_str(), l.line)),
            Some(("/home/a/t.js", Some(2)))
        );
        assert_eq!(d[0].context, vec!["o.send(1);"]);
    }

    #[test]
    fn npm_block() {
        let out = "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://registry.example/nope - Not found\nnpm ERR! 404\nnpm ERR! A complete log of this run can be found in: /root/.npm/_logs/x-debug-0.log\n";
        let d = parse(out, None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code.as_deref(), Some("E404"));
        assert!(d[0].message.starts_with("404 Not Found"));
    }
}
