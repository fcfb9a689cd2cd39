//! Non-streaming response bodies in both directions.

use serde_json::{Map, Value, json};

use super::{
    anthropic_stop, arguments_to_input, finish_from_stop_reason, input_to_arguments, present, reasoning_text,
    reprefix_id, str_of, unix_now,
};
use crate::protocol::usage::Usage;

/// An OpenAI chat completion as an Anthropic message, reporting `requested_model` (the model the
/// client asked for, not the deployment's).
///
/// The first choice is used (translated requests never ask for more). Its `reasoning_content` (or
/// `reasoning`) becomes a leading `thinking` block with an empty signature, its text (or
/// `refusal`) a text block and its `tool_calls` `tool_use` blocks. The id keeps its suffix with a
/// `msg_` prefix. A `stop` is reported as `end_turn` with a null `stop_sequence`, as OpenAI does
/// not say which stop sequence matched, unless the server names it (vLLM's `stop_reason`). Usage
/// is split into uncached input and cache reads ([`Usage::from_openai`]); missing usage is
/// reported as zeros.
pub fn openai_response_to_anthropic(resp: &Value, requested_model: &str) -> Value {
    let choice = resp.get("choices").and_then(|c| c.get(0)).unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(thinking) = reasoning_text(message) {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
    }
    let mut push_text = |text: &str| {
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
    };
    match message.get("content") {
        Some(Value::String(text)) => push_text(text),
        // Some compatible servers answer with content parts.
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(text) = str_of(part, "text").or_else(|| str_of(part, "refusal")) {
                    push_text(text);
                }
            }
        }
        _ => {}
    }
    if let Some(refusal) = str_of(message, "refusal") {
        push_text(refusal);
    }
    let calls = message.get("tool_calls").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    for call in calls {
        let function = call.get("function").unwrap_or(&Value::Null);
        content.push(json!({
            "type": "tool_use",
            "id": str_of(call, "id").map_or_else(|| reprefix_id(None, "toolu_"), str::to_owned),
            "name": str_of(function, "name").unwrap_or_default(),
            "input": arguments_to_input(str_of(function, "arguments").unwrap_or_default()),
        }));
    }
    let (stop_reason, stop_sequence) = anthropic_stop(choice, !calls.is_empty());
    let usage = resp.get("usage").and_then(Usage::from_openai).unwrap_or_default();
    json!({
        "id": reprefix_id(str_of(resp, "id"), "msg_"),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage.to_anthropic(),
    })
}

/// An Anthropic message as an OpenAI chat completion, reporting `requested_model`.
///
/// Text blocks are concatenated into `content` (null when there is none, as OpenAI sends with tool
/// calls); `tool_use` blocks become `tool_calls`; `thinking` blocks become `reasoning_content` (as
/// DeepSeek and vLLM send it; their signatures are dropped), and redacted thinking and server-tool
/// blocks are dropped. Cache reads and writes count into `prompt_tokens`, reads also into
/// `prompt_tokens_details.cached_tokens` ([`Usage::to_openai`]). `created` is the current time,
/// as Anthropic has no such field; the id keeps its suffix with a `chatcmpl-` prefix.
pub fn anthropic_response_to_openai(resp: &Value, requested_model: &str) -> Value {
    let blocks = resp.get("content").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let mut text = String::new();
    let mut thinking: Vec<&str> = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match str_of(block, "type") {
            Some("text") => text.push_str(str_of(block, "text").unwrap_or_default()),
            Some("thinking") => {
                if let Some(t) = str_of(block, "thinking").filter(|t| !t.is_empty()) {
                    thinking.push(t);
                }
            }
            Some("tool_use") => tool_calls.push(json!({
                "id": str_of(block, "id").unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": str_of(block, "name").unwrap_or_default(),
                    "arguments": input_to_arguments(block.get("input")),
                },
            })),
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".to_owned(), json!("assistant"));
    let has_content = !text.is_empty() || tool_calls.is_empty();
    message.insert("content".to_owned(), if has_content { Value::String(text) } else { Value::Null });
    message.insert("refusal".to_owned(), Value::Null);
    if !thinking.is_empty() {
        message.insert("reasoning_content".to_owned(), Value::String(thinking.join("\n\n")));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }
    let stop_reason = present(resp, "stop_reason").and_then(Value::as_str);
    let usage = resp.get("usage").and_then(Usage::from_anthropic).unwrap_or_default();
    json!({
        "id": reprefix_id(str_of(resp, "id"), "chatcmpl-"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": requested_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_from_stop_reason(stop_reason),
        }],
        "usage": usage.to_openai(),
    })
}
