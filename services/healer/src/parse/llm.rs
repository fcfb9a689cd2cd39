//! Error bodies of LLM providers: OpenAI (`{"error": {"message", "type", "code"}}`) and
//! Anthropic (`{"type": "error", "error": {"type": "overloaded_error", ...}}`), as raw JSON, as
//! printed by their Python SDKs (`Error code: 529 - {'type': 'error', ...}`), with or without an
//! HTTP status nearby.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{RawDiagnostic, Severity, rank};

static STATUS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:error code|status(?: code)?|http(?:/\d(?:\.\d)?)?)[:=\s]+(?P<status>[45]\d\d)\b|\b(?P<status2>[45]\d\d) (?:Too Many Requests|Internal Server Error|Service Unavailable|Bad Gateway|Gateway Timeout|Overloaded)",
    )
});
static FIELD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"["'](?P<name>type|message|code)["']\s*:\s*(?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'|(?P<null>None|null))"#,
    )
});

/// The status a provider error type stands for when no status was printed.
fn status_of_type(kind: &str) -> Option<u16> {
    Some(match kind {
        "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" | "requests" | "tokens" => 429,
        "overloaded_error" => 529,
        "api_error" | "server_error" => 500,
        "authentication_error" | "invalid_api_key" => 401,
        "permission_error" => 403,
        "not_found_error" | "model_not_found" => 404,
        "request_too_large" => 413,
        "invalid_request_error" | "context_length_exceeded" => 400,
        "timeout_error" => 504,
        _ => return None,
    })
}

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    let text = input.text;
    if !(text.contains("error") && (text.contains("\"type\"") || text.contains("'type'"))) {
        return;
    }
    // once, not per error body (each would scan the whole output)
    let anthropic_output = text.contains("anthropic");
    let n = input.lines.len();
    let mut i = 0;
    while i < n {
        if input.is_claimed(i)
            || !(input.lines[i].contains("\"error\"") || input.lines[i].contains("'error'"))
        {
            i += 1;
            continue;
        }
        // a pretty-printed body spans lines: take up to the line where braces balance
        let mut end = i;
        let mut depth: i32 = 0;
        let mut seen_open = false;
        let from = (i.saturating_sub(2)..=i).find(|&j| input.lines[j].contains('{')).unwrap_or(i);
        for j in from..n.min(from + 60) {
            for ch in input.lines[j].chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        seen_open = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            end = j;
            if seen_open && depth <= 0 {
                break;
            }
        }
        // a brace-balanced line above line i (an error body printed before this one) ends the
        // scan early: the body always covers line i, so the walk moves on (it looped forever
        // on `error: {"type":"error"}` followed by `{"type":"error"}`)
        let end = end.max(i);
        let start = from.min(i);
        let body: String = input.lines[start..=end].join("\n");
        let (mut kind, mut message, mut code, mut anthropic) = (
            None,
            None,
            None,
            body.contains("\"type\": \"error\"")
                || body.contains("\"type\":\"error\"")
                || body.contains("'type': 'error'"),
        );
        for c in FIELD.captures_iter(&body) {
            let value =
                c.name("dq").or(c.name("sq")).map(|m| m.as_str().replace("\\\"", "\"").replace("\\'", "'"));
            match &c["name"] {
                "type" if value.as_deref() == Some("error") => anthropic = true,
                "type" if kind.is_none() => kind = value,
                "message" if message.is_none() => message = value,
                "code" if code.is_none() => code = value,
                _ => {}
            }
        }
        let Some(message) = message else {
            i = end + 1;
            continue;
        };
        debug_assert!(end >= i);
        let found = (start.saturating_sub(3)..=end).find_map(|j| {
            STATUS.captures(input.lines[j]).and_then(|c| {
                c.name("status")
                    .or(c.name("status2"))
                    .and_then(|m| m.as_str().parse::<u16>().ok())
                    .map(|s| (j, s))
            })
        });
        // the status line belongs to this diagnostic
        let start = found.map_or(start, |(j, _)| j.min(start));
        let status: Option<u16> = found
            .map(|(_, s)| s)
            .or_else(|| code.as_deref().and_then(status_of_type))
            .or_else(|| kind.as_deref().and_then(status_of_type));
        let provider = if anthropic || anthropic_output { "anthropic" } else { "openai" };
        let kind = kind.or(code.clone()).unwrap_or_else(|| "error".to_owned());
        let status_text = status.map(|s| s.to_string()).unwrap_or_else(|| "error".to_owned());
        let mut d = RawDiagnostic {
            tool: provider.to_owned(),
            severity: Some(Severity::Error),
            message: format!("{provider} {status_text} {kind}: {message}"),
            code: status.map(|s| s.to_string()),
            span: (start, end),
            rank: rank::ROOT,
            ..RawDiagnostic::default()
        };
        d.params.insert("provider".to_owned(), provider.to_owned());
        d.params.insert("error_type".to_owned(), kind);
        if let Some(s) = status {
            d.params.insert("status".to_owned(), s.to_string());
        }
        if let Some(c) = code {
            d.params.insert("error_code".to_owned(), c);
        }
        out.push(d);
        i = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn anthropic_overloaded_and_openai_rate_limit() {
        let d = parse(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "anthropic 529 overloaded_error: Overloaded");
        let d = parse(
            "HTTP/1.1 429 Too Many Requests\n{\n  \"error\": {\n    \"message\": \"Rate limit reached for gpt-4o in organization org-1 on tokens per min (TPM): Limit 30000, Used 29000.\",\n    \"type\": \"tokens\",\n    \"param\": null,\n    \"code\": \"rate_limit_exceeded\"\n  }\n}\n",
            None,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.starts_with("openai 429 tokens: Rate limit reached"), "{}", d[0].message);
        let d = parse(
            "anthropic.InternalServerError: Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}",
            None,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].params.get("status").map(String::as_str), Some("529"));
    }

    #[test]
    fn a_body_after_another_balanced_one_ends_the_walk() {
        // each line once: a line above that balances its braces no longer sends the walk back
        let d = parse("error: {\"type\":\"error\"}\n{\"type\":\"error\"}\n", None);
        assert!(d.iter().all(|d| d.tool != "anthropic" || d.message.contains(':')), "{d:?}");
        let many = "agent error: API Error: 429 {\"error\":{\"message\":\"spent\",\"type\":\"rate_limit_error\"},\"type\":\"error\"}\n".repeat(200);
        let d = parse(&many, None);
        assert!(!d.is_empty());
    }
}
