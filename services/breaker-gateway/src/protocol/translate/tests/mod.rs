//! Tests of the translation, against fixtures shaped as the providers send them. The helpers
//! here accumulate streams the way the SDKs do, so a stream is checked by the message it builds.

mod agents;
mod request;
mod response;
mod stream;

use serde_json::{Value, json};

use super::*;
use crate::protocol::error::stream_error;
use crate::protocol::fixtures;
use crate::protocol::sse::SseParser;
use crate::protocol::usage::Usage;
use crate::protocol::{Protocol, sse};

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is json")
}

/// The events of a stream fixture, fed to the parser in uneven pieces as a network delivers them;
/// `[DONE]` is left out.
fn stream_events(stream: &str) -> Vec<(String, Value)> {
    let bytes = stream.as_bytes();
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut at = 0;
    for size in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89].iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size).min(bytes.len());
        events.extend(parser.feed(&bytes[at..end]).expect("fixture parses"));
        at = end;
    }
    events.extend(parser.finish());
    events
        .into_iter()
        .filter(|e| !e.is_openai_done())
        .map(|e| (e.event_name().to_owned(), e.json().expect("json data")))
        .collect()
}

fn openai_chunks(stream: &str) -> Vec<Value> {
    stream_events(stream).into_iter().map(|(_, data)| data).collect()
}

/// Checks that `events` form a well-formed Anthropic stream and builds the message from them, the
/// way the Anthropic SDKs accumulate a stream.
fn accumulate_anthropic(events: &[(String, Value)]) -> Value {
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "message_delta").count(), 1, "{names:?}");
    assert_eq!(names[names.len() - 2], "message_delta", "{names:?}");

    let mut message = Value::Null;
    let mut partial_json: Vec<String> = Vec::new();
    let mut open: Option<u64> = None;
    for (name, data) in events {
        assert_eq!(data["type"], name.as_str(), "event name matches its type");
        match name.as_str() {
            "message_start" => {
                message = data["message"].clone();
                assert_eq!(message["content"], json!([]));
                assert_eq!(message["type"], "message");
                assert_eq!(message["role"], "assistant");
            }
            "content_block_start" => {
                assert_eq!(open, None, "a block starts only after the previous one stopped");
                let index = data["index"].as_u64().expect("index");
                let content = message["content"].as_array_mut().expect("content");
                assert_eq!(index, content.len() as u64, "blocks are numbered in order");
                content.push(data["content_block"].clone());
                partial_json.push(String::new());
                open = Some(index);
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().expect("index");
                assert_eq!(open, Some(index), "deltas go to the open block");
                let block = &mut message["content"][index as usize];
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        assert_eq!(block["type"], "text");
                        let text = format!(
                            "{}{}",
                            block["text"].as_str().expect("text"),
                            delta["text"].as_str().expect("text")
                        );
                        block["text"] = json!(text);
                    }
                    Some("input_json_delta") => {
                        assert_eq!(block["type"], "tool_use");
                        partial_json[index as usize]
                            .push_str(delta["partial_json"].as_str().expect("partial_json"));
                    }
                    Some("thinking_delta") => {
                        let thinking = format!(
                            "{}{}",
                            block["thinking"].as_str().expect("thinking"),
                            delta["thinking"].as_str().expect("thinking")
                        );
                        block["thinking"] = json!(thinking);
                    }
                    Some("signature_delta") => block["signature"] = delta["signature"].clone(),
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().expect("index");
                assert_eq!(open, Some(index));
                open = None;
                let block = &mut message["content"][index as usize];
                if block["type"] == "tool_use" && !partial_json[index as usize].is_empty() {
                    block["input"] =
                        serde_json::from_str(&partial_json[index as usize]).expect("tool input is json");
                }
            }
            "message_delta" => {
                assert_eq!(open, None, "blocks are closed before message_delta");
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                for (key, value) in data["usage"].as_object().expect("usage") {
                    message["usage"][key] = value.clone();
                }
            }
            "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    message
}

/// Builds the chat completion an OpenAI client would assemble from `chunks`.
fn accumulate_openai(chunks: &[Value]) -> Value {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut saw_content = false;
    let mut role = Value::Null;
    let mut tool_calls: Vec<Value> = Vec::new();
    let mut finish_reason = Value::Null;
    let mut usage = Value::Null;
    let first = chunks.first().expect("chunks");
    for chunk in chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], first["id"], "one id for the whole stream");
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        if !delta["role"].is_null() {
            role = delta["role"].clone();
        }
        if let Some(text) = delta["content"].as_str() {
            content.push_str(text);
            saw_content |= !text.is_empty();
        }
        if let Some(text) = delta["reasoning_content"].as_str() {
            reasoning.push_str(text);
        }
        for call in delta["tool_calls"].as_array().map_or(&[][..], Vec::as_slice) {
            let index = call["index"].as_u64().expect("index") as usize;
            if index == tool_calls.len() {
                assert!(call["id"].is_string(), "a new call is announced with its id");
                tool_calls.push(json!({
                    "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}
                }));
            }
            let arguments = &mut tool_calls[index]["function"]["arguments"];
            let joined = format!(
                "{}{}",
                arguments.as_str().expect("string"),
                call["function"]["arguments"].as_str().unwrap_or("")
            );
            *arguments = json!(joined);
        }
        if !choice["finish_reason"].is_null() {
            finish_reason = choice["finish_reason"].clone();
        }
    }
    let mut message = json!({
        "role": role,
        "content": if saw_content || tool_calls.is_empty() { json!(content) } else { Value::Null },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    json!({
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": first["model"],
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage,
    })
}

/// `message` as it comes back from a trip through OpenAI: thinking keeps its text but loses its
/// signature (OpenAI has none to carry), redacted thinking is gone.
fn with_unsigned_thinking(message: &Value) -> Value {
    let mut message = message.clone();
    let content = message["content"].as_array_mut().expect("content");
    content.retain(|b| b["type"] != "redacted_thinking");
    for block in content.iter_mut().filter(|b| b["type"] == "thinking") {
        block["signature"] = json!("");
    }
    message
}

fn run_openai_to_anthropic(chunks: &[Value]) -> Vec<(String, Value)> {
    let mut translator = OpenAiToAnthropicStream::new("claude-sonnet-4-5");
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(translator.push(chunk));
    }
    assert!(translator.is_complete());
    events.extend(translator.finish());
    assert!(translator.finish().is_empty(), "finish is idempotent");
    events
}

fn run_anthropic_to_openai(events: &[(String, Value)], include_usage: bool) -> Vec<Value> {
    let mut translator = AnthropicToOpenAiStream::new("gpt-4o", include_usage);
    let mut chunks = Vec::new();
    for (name, data) in events {
        chunks.extend(translator.push(name, data).expect("no error event"));
    }
    assert!(translator.is_complete());
    chunks
}
