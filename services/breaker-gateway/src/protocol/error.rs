//! Error bodies shaped like each provider's, for errors the gateway produces itself (no healthy
//! deployment, bulkhead full, translation impossible) and for upstream errors that crossed protocols.
//!
//! The official SDKs choose their exception class from the HTTP status and read the message from
//! `error.message` in both protocols, so a provider-shaped body makes a gateway failure surface as,
//! say, `anthropic.RateLimitError` with our message instead of an opaque decoding error. Inside a
//! stream the status is already sent, so failures after the first byte are reported as the error
//! event each provider uses.

use serde_json::{Value, json};

use super::Protocol;
use super::sse;

/// OpenAI's `error.type` for a status. OpenAI's own values are not fully documented; these follow
/// the categories it uses, and the SDKs only use the status.
pub fn openai_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's `error.type` for a status, as listed in its API errors documentation.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The status Anthropic pairs with an `error.type`; used for errors that arrive inside a stream,
/// where only the type is known. Unknown types count as `api_error` (500).
pub fn anthropic_error_status(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// A response body for an error with HTTP `status`. OpenAI's shape carries the gateway's `code`;
/// Anthropic's has no field for it (its `type` is derived from the status), so there `code` is not
/// sent.
pub fn error_body(protocol: Protocol, status: u16, code: &str, message: &str) -> Value {
    match protocol {
        Protocol::OpenAi => json!({
            "error": {"message": message, "type": openai_error_type(status), "param": null, "code": code}
        }),
        Protocol::Anthropic => json!({
            "type": "error",
            "error": {"type": anthropic_error_type(status), "message": message}
        }),
    }
}

/// The encoded SSE event reporting a failure after a stream has started: a `data:` chunk holding
/// an error body for OpenAI (what OpenAI sends; the SDK raises on a chunk with `error`), an
/// `event: error` for Anthropic.
pub fn stream_error(protocol: Protocol, status: u16, code: &str, message: &str) -> String {
    let body = error_body(protocol, status, code, message);
    match protocol {
        Protocol::OpenAi => sse::encode_json(None, &body),
        Protocol::Anthropic => sse::encode_json(Some("error"), &body),
    }
}

/// `error.message` of an error body of either protocol.
pub fn error_message(body: &Value) -> Option<&str> {
    body.get("error")?.get("message")?.as_str()
}

/// Re-shapes an upstream error body (of either protocol, or anything else) with HTTP `status` for
/// a client speaking `to`, keeping the message and, for OpenAI, a code (the upstream's `code`, or
/// its `type` when it has no code).
pub fn translate_error_body(to: Protocol, status: u16, body: &Value) -> Value {
    let error = body.get("error");
    let field = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty());
    let message = match field("message") {
        Some(message) => message.to_owned(),
        None => format!("upstream returned status {status}"),
    };
    let code = field("code").or_else(|| field("type")).unwrap_or("upstream_error");
    error_body(to, status, code, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sse::SseParser;

    #[test]
    fn openai_error_body_has_the_sdk_shape() {
        let body = error_body(Protocol::OpenAi, 503, "no_healthy_deployment", "all deployments are open");
        assert_eq!(
            body,
            json!({"error": {
                "message": "all deployments are open",
                "type": "server_error",
                "param": null,
                "code": "no_healthy_deployment"
            }})
        );
        assert_eq!(error_message(&body), Some("all deployments are open"));
    }

    #[test]
    fn anthropic_error_types_follow_the_status() {
        let expected = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (529, "overloaded_error"),
        ];
        for (status, ty) in expected {
            let body = error_body(Protocol::Anthropic, status, "some_code", "msg");
            assert_eq!(body, json!({"type": "error", "error": {"type": ty, "message": "msg"}}), "{status}");
        }
        // Types map back to a status with the same type.
        for status in [400, 401, 402, 403, 404, 413, 429, 500, 504, 529] {
            let ty = anthropic_error_type(status);
            assert_eq!(anthropic_error_status(ty), status, "{ty}");
        }
        assert_eq!(anthropic_error_status("something_new"), 500);
    }

    #[test]
    fn openai_error_types_follow_the_status() {
        assert_eq!(openai_error_type(400), "invalid_request_error");
        assert_eq!(openai_error_type(404), "invalid_request_error");
        assert_eq!(openai_error_type(401), "authentication_error");
        assert_eq!(openai_error_type(429), "rate_limit_error");
        assert_eq!(openai_error_type(502), "server_error");
    }

    #[test]
    fn stream_errors_are_single_events_of_each_providers_kind() {
        let mut parser = SseParser::default();
        let openai = stream_error(Protocol::OpenAi, 502, "upstream_failed", "upstream stream broke");
        let events = parser.feed(openai.as_bytes()).expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, None);
        let data = events[0].json().expect("json");
        assert_eq!(data, error_body(Protocol::OpenAi, 502, "upstream_failed", "upstream stream broke"));

        let anthropic = stream_error(Protocol::Anthropic, 529, "overloaded", "try later");
        let events = parser.feed(anthropic.as_bytes()).expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.as_deref(), Some("error"));
        let data = events[0].json().expect("json");
        assert_eq!(
            data,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "try later"}})
        );
    }

    #[test]
    fn upstream_errors_are_reshaped_for_the_other_protocol() {
        let anthropic =
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert_eq!(
            translate_error_body(Protocol::OpenAi, 529, &anthropic),
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded_error"}})
        );
        let openai = json!({"error": {
            "message": "Rate limit reached for gpt-4o", "type": "requests", "param": null, "code": "rate_limit_exceeded"
        }});
        assert_eq!(
            translate_error_body(Protocol::Anthropic, 429, &openai),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached for gpt-4o"}})
        );
        assert_eq!(
            translate_error_body(Protocol::OpenAi, 502, &Value::String("<html>bad gateway</html>".into())),
            json!({"error": {
                "message": "upstream returned status 502", "type": "server_error", "param": null, "code": "upstream_error"
            }})
        );
    }
}
