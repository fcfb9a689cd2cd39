//! Translation between OpenAI Chat Completions and Anthropic Messages, so that a fallback chain can
//! serve a request with a deployment of the other protocol and the client still sees its own.
//!
//! Translation builds the target body from the fields it understands. What the target protocol
//! cannot express either changes meaning if dropped (images in unsupported forms, server-side tools,
//! several choices, forced JSON output, logprobs, audio): those fail with
//! [`TranslateError::Unsupported`], so the gateway can pick a same-protocol deployment or tell the
//! client instead of silently answering a different question. Fields that only tune sampling or
//! bookkeeping are dropped; each function's documentation lists them.
//!
//! Conventions shared by both directions:
//! - Tool call ids are kept as they are (`call_…` or `toolu_…`); neither SDK checks their form and
//!   keeping them lets a conversation go back and forth between protocols.
//! - Tool arguments travel as a JSON string in OpenAI and as an object in Anthropic. Arguments that
//!   are not a JSON object (a model can emit broken JSON) become `{"_raw_arguments": "<string>"}`
//!   because Anthropic requires an object; empty arguments become `{}`.
//! - Reasoning is shown, never replayed. In answers, Anthropic `thinking` becomes the
//!   `reasoning_content` that OpenAI-compatible servers (DeepSeek, vLLM) use, and their
//!   `reasoning_content` (or `reasoning`) becomes a `thinking` block with an empty `signature`,
//!   streamed or not, so agents can display it. In requests, thinking in the history is dropped
//!   either way: Anthropic only accepts thinking with its own signature, and Chat Completions
//!   has no field for it. [`strip_unsigned_thinking`] removes the unsigned blocks from a request
//!   that goes to Anthropic as it is. The thinking budget and `reasoning_effort` are mapped onto
//!   each other where the target accepts them (see the request functions).
//! - Prompt caching hints (`cache_control`) are dropped, as OpenAI caches by itself; usage,
//!   cache reads and writes included, is mapped as in [`super::usage`].
//! - Anthropic's `stop_sequence` stop reason becomes `finish_reason: "stop"`; back, a `stop` is
//!   `stop_sequence` only when the server names the matched string (vLLM's `stop_reason`),
//!   `end_turn` otherwise.

mod request;
mod response;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

pub use request::{
    DEFAULT_ANTHROPIC_MAX_TOKENS, MaxTokensField, OPENAI_MAX_STOP_SEQUENCES, TOOL_ERROR_PREFIX,
    anthropic_request_to_openai, anthropic_request_to_openai_with, openai_request_to_anthropic,
    strip_unsigned_thinking,
};
pub use response::{anthropic_response_to_openai, openai_response_to_anthropic};
pub use stream::{AnthropicToOpenAiStream, OpenAiToAnthropicStream, StreamError};

/// Why a request cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The request is malformed in its own protocol; the client should get a 400.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request is valid but uses something the other protocol cannot express; a deployment of
    /// the client's own protocol could still serve it.
    #[error("cannot be translated to the other protocol: {0}")]
    Unsupported(String),
}

fn invalid(msg: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(msg.into())
}

fn unsupported(msg: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(msg.into())
}

/// The key the arguments of a tool call that are not a JSON object are kept under.
pub const RAW_ARGUMENTS_KEY: &str = "_raw_arguments";

/// OpenAI tool arguments (a JSON string) as an Anthropic tool input (an object).
fn arguments_to_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let mut map = Map::new();
            map.insert(RAW_ARGUMENTS_KEY.to_owned(), Value::String(arguments.to_owned()));
            Value::Object(map)
        }
    }
}

/// An Anthropic tool input as OpenAI tool arguments, undoing [`arguments_to_input`]'s wrapping.
fn input_to_arguments(input: Option<&Value>) -> String {
    match input {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::Object(map)) if map.len() == 1 => match map.get(RAW_ARGUMENTS_KEY) {
            Some(Value::String(raw)) => raw.clone(),
            _ => Value::Object(map.clone()).to_string(),
        },
        Some(v) => v.to_string(),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The value at `key` unless it is absent or null.
fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

/// An id for a response or tool call that came without one: unique within the process and across
/// restarts (time based), which is all clients use ids for.
pub(super) fn generated_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:04x}", nanos, n & 0xffff)
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `id` with the other protocol's prefix replaced by `prefix` (`chatcmpl-abc` → `msg_abc`).
fn reprefix_id(id: Option<&str>, prefix: &str) -> String {
    match id.filter(|id| !id.is_empty()) {
        Some(id) if id.starts_with(prefix) => id.to_owned(),
        Some(id) => {
            let bare = id.strip_prefix("chatcmpl-").or_else(|| id.strip_prefix("msg_")).unwrap_or(id);
            format!("{prefix}{bare}")
        }
        None => format!("{prefix}{}", generated_id()),
    }
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`. `content_filter` becomes `refusal`, the
/// stop reason Anthropic uses when its own classifiers stop a response.
fn stop_reason_from_finish(finish_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        // Some compatible servers finish tool calls with `stop` (or nothing).
        _ if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic `stop_reason` and `stop_sequence` for an OpenAI choice (a response's or a stream's
/// finishing one). A `stop` is a stop sequence only when the server says which string matched, as
/// vLLM does in `stop_reason` (a number there is a stop token, not a sequence).
fn anthropic_stop(choice: &Value, has_tool_calls: bool) -> (&'static str, Value) {
    let finish_reason = str_of(choice, "finish_reason");
    if finish_reason == Some("stop")
        && !has_tool_calls
        && let Some(matched) = str_of(choice, "stop_reason").filter(|s| !s.is_empty())
    {
        return ("stop_sequence", Value::String(matched.to_owned()));
    }
    (stop_reason_from_finish(finish_reason, has_tool_calls), Value::Null)
}

/// The reasoning text of an OpenAI message or stream delta: `reasoning_content` (DeepSeek, vLLM)
/// or `reasoning` (OpenRouter, newer vLLM), whichever is a non-empty string.
fn reasoning_text(v: &Value) -> Option<&str> {
    ["reasoning_content", "reasoning"].into_iter().find_map(|key| str_of(v, key).filter(|t| !t.is_empty()))
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
fn finish_from_stop_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and anything new.
        _ => "stop",
    }
}

#[cfg(test)]
mod tests;
