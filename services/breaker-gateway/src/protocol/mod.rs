//! The OpenAI Chat Completions and Anthropic Messages wire protocols.
//!
//! Clients talk to the gateway with the official SDKs, so whatever the gateway sends back has to look
//! exactly like what the provider would have sent: the SDKs pick their exception types from the status
//! and parse error messages, streamed events and usage from provider-specific shapes. A fallback chain
//! may cross protocols (an Anthropic request served by an OpenAI-compatible deployment and back), so
//! requests, responses and streams are translated here in both directions.
//!
//! Everything works on `serde_json::Value` rather than typed structs: when no translation is needed a
//! body is forwarded with only its `model` replaced, and fields this code has never heard of (new
//! provider features) pass through untouched. Translation, by contrast, builds the target body from
//! the fields it understands and drops or rejects the rest (see [`translate`]).
//!
//! Nothing here does IO or knows about actix; the functions are pure apart from reading the clock
//! for OpenAI's `created` timestamps and generating ids.

pub mod error;
pub mod estimate;
pub mod raw;
pub mod responses;
pub mod sse;
pub mod translate;
pub mod usage;

#[cfg(test)]
mod fixtures;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use error::{error_body, error_message, stream_error, translate_error_body};
pub use raw::{RequestHead, replace_model, response_usage_raw};
pub use sse::{SseError, SseEvent, SseParser};
pub use translate::{
    AnthropicToOpenAiStream, MaxTokensField, OpenAiToAnthropicStream, StreamError, TranslateError,
    anthropic_request_to_openai, anthropic_response_to_openai, openai_request_to_anthropic,
    openai_response_to_anthropic,
};
pub use usage::{Usage, UsageAccumulator, response_usage};

/// The wire protocol a client speaks or a deployment serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`), also spoken by most
    /// OpenAI-compatible servers.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages (`POST /v1/messages`).
    #[serde(rename = "anthropic")]
    Anthropic,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Protocol, String> {
        match s {
            "openai" => Ok(Protocol::OpenAi),
            "anthropic" => Ok(Protocol::Anthropic),
            other => Err(format!("unknown protocol `{other}` (expected `openai` or `anthropic`)")),
        }
    }
}

/// The `model` a client asked for, if the body names one.
pub fn request_model(req: &Value) -> Option<&str> {
    req.get("model").and_then(Value::as_str)
}

/// Whether the client asked for a streamed response (`"stream": true`, in both protocols).
pub fn is_stream(req: &Value) -> bool {
    req.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

/// The request with only `model` replaced, for forwarding to a deployment of the same protocol:
/// every other field, known or not, is kept as the client sent it.
pub fn with_model(req: &Value, upstream_model: &str) -> Value {
    let mut out = req.clone();
    if let Value::Object(map) = &mut out {
        map.insert("model".to_owned(), Value::String(upstream_model.to_owned()));
    }
    out
}

/// Makes a streaming OpenAI request ask for the final usage chunk, without which a stream cannot be
/// metered. Returns whether the client had asked for it itself; when it had not, the gateway should
/// hide the usage from it again with [`strip_usage_chunk`]. Non-streaming requests are left alone
/// (OpenAI rejects `stream_options` without `stream`) and return `false`.
pub fn ensure_openai_stream_usage(req: &mut Value) -> bool {
    if !is_stream(req) {
        return false;
    }
    let Value::Object(map) = req else {
        return false;
    };
    let options = map.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    let Value::Object(options) = options else {
        return false;
    };
    let asked = options.get("include_usage").and_then(Value::as_bool).unwrap_or(false);
    options.insert("include_usage".to_owned(), Value::Bool(true));
    asked
}

/// Removes the usage the gateway asked for on the client's behalf from an OpenAI stream chunk.
/// Returns `true` when nothing is left for the client and the chunk should be dropped (the
/// usage-only final chunk, `"choices": []`); otherwise the chunk is kept without its `usage` field,
/// which is what a client that did not ask for usage would have received.
pub fn strip_usage_chunk(chunk: &mut Value) -> bool {
    let Value::Object(map) = chunk else {
        return false;
    };
    let had_usage = map.remove("usage").is_some_and(|u| !u.is_null());
    let no_choices = map.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
    had_usage && no_choices
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn protocol_names_round_trip_through_serde_and_from_str() {
        for p in [Protocol::OpenAi, Protocol::Anthropic] {
            let s = serde_json::to_string(&p).expect("serialize");
            assert_eq!(s, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Protocol>(&s).expect("deserialize"), p);
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
        }
        assert!("open_ai".parse::<Protocol>().is_err());
    }

    #[test]
    fn model_and_stream_are_read_from_either_protocol() {
        let req = json!({"model": "gpt-4o", "stream": true, "messages": []});
        assert_eq!(request_model(&req), Some("gpt-4o"));
        assert!(is_stream(&req));
        let req = json!({"model": 3, "stream": "yes"});
        assert_eq!(request_model(&req), None);
        assert!(!is_stream(&req));
        assert!(!is_stream(&json!({})));
    }

    #[test]
    fn with_model_replaces_only_the_model() {
        let req = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "future_field": {"nested": [1, 2, {"x": null}]},
            "messages": [{"role": "user", "content": "hi"}]
        });
        let out = with_model(&req, "claude-sonnet-4-5-20250929");
        let mut expected = req.clone();
        expected["model"] = json!("claude-sonnet-4-5-20250929");
        assert_eq!(out, expected);
        // The input is not modified.
        assert_eq!(req["model"], "claude-sonnet-4-5");
    }

    #[test]
    fn stream_usage_is_requested_and_the_clients_choice_reported() {
        let mut req = json!({"model": "m", "stream": true});
        assert!(!ensure_openai_stream_usage(&mut req));
        assert_eq!(req["stream_options"], json!({"include_usage": true}));

        let mut req = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}});
        assert!(ensure_openai_stream_usage(&mut req));
        assert_eq!(req["stream_options"], json!({"include_usage": true}));

        let mut req = json!({"stream": true, "stream_options": {"include_usage": false, "other": 1}});
        assert!(!ensure_openai_stream_usage(&mut req));
        assert_eq!(req["stream_options"], json!({"include_usage": true, "other": 1}));

        let mut req = json!({"stream": true, "stream_options": null});
        assert!(!ensure_openai_stream_usage(&mut req));
        assert_eq!(req["stream_options"], json!({"include_usage": true}));

        let mut req = json!({"model": "m"});
        assert!(!ensure_openai_stream_usage(&mut req));
        assert_eq!(req, json!({"model": "m"}));
    }

    #[test]
    fn usage_is_stripped_and_the_usage_only_chunk_dropped() {
        let mut usage_only = json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        assert!(strip_usage_chunk(&mut usage_only));

        let mut content = json!({
            "id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "hi"}}], "usage": null
        });
        assert!(!strip_usage_chunk(&mut content));
        assert_eq!(
            content,
            json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
        );

        // Some compatible servers put the usage on the finishing chunk itself.
        let mut finishing = json!({
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        });
        assert!(!strip_usage_chunk(&mut finishing));
        assert!(finishing.get("usage").is_none());
    }
}
