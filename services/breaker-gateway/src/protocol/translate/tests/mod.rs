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
    json!({
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": first["model"],
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage,
    })
}

fn without_thinking(message: &Value) -> Value {
    let mut message = message.clone();
    let content = message["content"].as_array_mut().expect("content");
    content.retain(|b| b["type"] != "thinking" && b["type"] != "redacted_thinking");
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

// ---- requests, Anthropic to OpenAI ----

#[test]
fn anthropic_request_becomes_the_equivalent_openai_request() {
    let req = fixture(fixtures::ANTHROPIC_REQUEST);
    let out = anthropic_request_to_openai(&req, "gpt-4o").expect("translates");
    let image = req["messages"][0]["content"][1]["source"]["data"].as_str().expect("image data");
    let tools = &req["tools"][0];
    assert_eq!(
        out,
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": [
                    {"type": "text", "text": "You are a helpful weather assistant."},
                    {"type": "text", "text": "Always answer in metric units."}
                ]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Where was this photo taken, and what is the weather there and in New York?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{image}")}}
                ]},
                {"role": "assistant",
                 "content": "That is the Golden Gate Bridge in San Francisco. Let me check both cities.",
                 "tool_calls": [
                    {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {
                        "name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}},
                    {"id": "toolu_01B7x2kQmZ4pN3rT8vW6yH5j", "type": "function", "function": {
                        "name": "get_weather", "arguments": "{\"location\":\"New York, NY\",\"unit\":\"celsius\"}"}}
                 ]},
                {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees, foggy"},
                {"role": "tool", "tool_call_id": "toolu_01B7x2kQmZ4pN3rT8vW6yH5j", "content": "22 degrees\n\nsunny"},
                {"role": "user", "content": "Which one is warmer?"}
            ],
            "max_tokens": 1024,
            "temperature": 0.7,
            "top_p": 0.9,
            "stop": ["\n\nHuman:"],
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "user-7f3a",
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": tools["description"],
                "parameters": tools["input_schema"]
            }}],
            "tool_choice": "auto",
            "parallel_tool_calls": false
        })
    );
}

#[test]
fn anthropic_request_round_trip_keeps_text_system_tools_and_tool_results() {
    let original = fixture(fixtures::ANTHROPIC_REQUEST);
    let openai = anthropic_request_to_openai(&original, "gpt-4o").expect("to openai");
    let back = openai_request_to_anthropic(&openai, "claude-sonnet-4-5").expect("back");

    // What cannot survive: thinking, cache hints, top_k, and a tool result's block structure.
    let mut expected = original.clone();
    expected["system"][1].as_object_mut().expect("block").remove("cache_control");
    expected.as_object_mut().expect("object").remove("top_k");
    let assistant = expected["messages"][1]["content"].as_array_mut().expect("blocks");
    assistant.retain(|b| b["type"] != "thinking");
    expected["messages"][2]["content"][1]["content"] = json!("22 degrees\n\nsunny");
    assert_eq!(back, expected);
}

#[test]
fn anthropic_tool_choice_maps_to_openai() {
    let cases = [
        (json!({"type": "auto"}), json!("auto"), None),
        (json!({"type": "any"}), json!("required"), None),
        (json!({"type": "none"}), json!("none"), None),
        (
            json!({"type": "tool", "name": "get_weather"}),
            json!({"type": "function", "function": {"name": "get_weather"}}),
            None,
        ),
        (json!({"type": "any", "disable_parallel_tool_use": true}), json!("required"), Some(json!(false))),
        (json!({"type": "none", "disable_parallel_tool_use": true}), json!("none"), None),
    ];
    for (choice, expected, parallel) in cases {
        let req = json!({
            "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": choice,
        });
        let out = anthropic_request_to_openai(&req, "gpt").expect("translates");
        assert_eq!(out["tool_choice"], expected, "{choice}");
        assert_eq!(out.get("parallel_tool_calls").cloned(), parallel, "{choice}");
        let back = openai_request_to_anthropic(&out, "claude").expect("back");
        let mut expected_back = choice.clone();
        if choice.get("disable_parallel_tool_use").is_some() && choice["type"] == "none" {
            expected_back.as_object_mut().expect("object").remove("disable_parallel_tool_use");
        }
        assert_eq!(back["tool_choice"], expected_back, "{choice}");
    }
    // Without tools, no tool choice is sent.
    let req = json!({"messages": [], "tool_choice": {"type": "auto"}});
    assert!(anthropic_request_to_openai(&req, "gpt").expect("ok").get("tool_choice").is_none());
}

#[test]
fn anthropic_request_details_map_as_documented() {
    let req = json!({
        "model": "claude", "max_tokens": 64, "system": "Be brief.", "stream": false,
        "stop_sequences": [], "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "document", "title": "report.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}
            ]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true, "content": [
                    {"type": "text", "text": "chart attached"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}}
                ]}
            ]}
        ]
    });
    let out = anthropic_request_to_openai_with(&req, "o3", MaxTokensField::MaxCompletionTokens).expect("ok");
    assert_eq!(
        out,
        json!({
            "model": "o3",
            "max_completion_tokens": 64,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
                    {"type": "text", "text": "plain words"}
                ]},
                // The assistant turn held only thinking and is left out.
                {"role": "tool", "tool_call_id": "toolu_1", "content": "chart attached"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]}
            ]
        })
    );
}

#[test]
fn anthropic_requests_that_cannot_be_translated_are_refused_with_a_reason() {
    let base = |messages: Value| json!({"model": "m", "max_tokens": 1, "messages": messages});
    let unsupported_cases = [
        json!({"model": "m", "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
        json!({"model": "m", "messages": [], "mcp_servers": [{"type": "url", "url": "https://mcp.example.com"}]}),
        base(
            json!([{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]),
        ),
        base(
            json!([{"role": "user", "content": [{"type": "search_result", "source": "x", "title": "t", "content": []}]}]),
        ),
        base(
            json!([{"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]),
        ),
        json!({"messages": [], "system": [{"type": "image", "source": {}}]}),
    ];
    for req in unsupported_cases {
        let err = anthropic_request_to_openai(&req, "gpt").expect_err("unsupported");
        assert!(matches!(err, TranslateError::Unsupported(_)), "{req}: {err}");
    }
    let invalid_cases = [
        json!([]),
        json!({"model": "m"}),
        base(json!([{"role": "system", "content": "x"}])),
        base(json!([{"role": "user", "content": 5}])),
        base(json!([{"role": "user", "content": [{"type": "tool_result", "content": "no id"}]}])),
        base(json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}])),
        base(json!([{"role": "user", "content": [{"text": "no type"}]}])),
    ];
    for req in invalid_cases {
        let err = anthropic_request_to_openai(&req, "gpt").expect_err("invalid");
        assert!(matches!(err, TranslateError::Invalid(_)), "{req}: {err}");
    }
    let err = anthropic_request_to_openai(
        &base(json!([{"role": "user", "content": [{"type": "tool_result", "content": "no id"}]}])),
        "gpt",
    )
    .expect_err("invalid");
    assert_eq!(err.to_string(), "invalid request: messages[0].content[0].tool_use_id must be a string");
}

// ---- requests, OpenAI to Anthropic ----

#[test]
fn openai_request_becomes_the_equivalent_anthropic_request() {
    let req = fixture(fixtures::OPENAI_REQUEST);
    let out = openai_request_to_anthropic(&req, "claude-sonnet-4-5-20250929").expect("translates");
    let function = &req["tools"][0]["function"];
    assert_eq!(
        out,
        json!({
            "model": "claude-sonnet-4-5-20250929",
            "system": "You are a helpful weather assistant.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What's the weather in the city in this picture, and in Paris?"},
                    {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/wikipedia/commons/7/7a/Boston_skyline.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_Kx3mQ9vL2pR7tY1wZ5nB8cD4", "name": "get_weather", "input": {"location": "Boston, MA"}},
                    {"type": "tool_use", "id": "call_Pz9aS4dF6gH1jK3lM5nQ7rT2", "name": "get_weather", "input": {"location": "Paris, France"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_Kx3mQ9vL2pR7tY1wZ5nB8cD4", "content": "7 degrees, rain"},
                    {"type": "tool_result", "tool_use_id": "call_Pz9aS4dF6gH1jK3lM5nQ7rT2", "content": "12 degrees, cloudy"},
                    {"type": "text", "text": "Thanks. Which one is warmer?"}
                ]}
            ],
            "max_tokens": 512,
            "temperature": 1.0,
            "stop_sequences": ["END"],
            "stream": true,
            "metadata": {"user_id": "user-7f3a"},
            "tools": [{"name": "get_weather", "description": function["description"], "input_schema": function["parameters"]}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}
        })
    );
}

#[test]
fn openai_request_round_trip_keeps_messages_and_tools() {
    let original = fixture(fixtures::OPENAI_REQUEST);
    let anthropic = openai_request_to_anthropic(&original, "claude").expect("to anthropic");
    let back = anthropic_request_to_openai(&anthropic, "gpt-4o").expect("back");
    let mut expected = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful weather assistant."},
            {"role": "user", "content": [
                {"type": "text", "text": "What's the weather in the city in this picture, and in Paris?"},
                {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/wikipedia/commons/7/7a/Boston_skyline.jpg"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": original["messages"][2]["tool_calls"]},
            original["messages"][3],
            original["messages"][4],
            original["messages"][5]
        ],
        "max_tokens": 512,
        "temperature": 1.0,
        "stop": ["END"],
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user-7f3a",
        "tools": original["tools"],
        "tool_choice": "auto",
        "parallel_tool_calls": false
    });
    // Arguments are re-serialized compactly; `strict` has no Anthropic equivalent.
    for call in expected["messages"][2]["tool_calls"].as_array_mut().expect("calls") {
        let parsed: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("args")).expect("json");
        call["function"]["arguments"] = json!(parsed.to_string());
    }
    expected["tools"][0]["function"].as_object_mut().expect("function").remove("strict");
    assert_eq!(back, expected);
}

#[test]
fn openai_request_details_map_as_documented() {
    let req = json!({
        "model": "gpt",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"role": "user", "content": "hi"},
            {"role": "user", "name": "bob", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGR"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}}
            ]},
            {"role": "developer", "content": "three"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "result"}]}
        ],
        "max_tokens": 77,
        "temperature": 0.5,
        "stop": ["a", "b"],
        "safety_identifier": "hash-1",
        "n": 1,
        "response_format": {"type": "text"},
        "logprobs": false,
        "tools": []
    });
    let out = openai_request_to_anthropic(&req, "claude").expect("translates");
    assert_eq!(
        out,
        json!({
            "model": "claude",
            "system": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}, {"type": "text", "text": "three"}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklGR"}},
                    {"type": "document", "title": "a.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
                ]},
                {"role": "assistant", "content": "I can't help with that."},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "result"}]}
                ]}
            ],
            "max_tokens": 77,
            "temperature": 0.5,
            "stop_sequences": ["a", "b"],
            "metadata": {"user_id": "hash-1"}
        })
    );

    let minimal = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    let out = openai_request_to_anthropic(&minimal, "claude").expect("translates");
    assert_eq!(out["max_tokens"], DEFAULT_ANTHROPIC_MAX_TOKENS);
    assert_eq!(out["messages"], json!([{"role": "user", "content": "hi"}]));
    assert!(out.get("system").is_none() && out.get("stream").is_none());

    let both = json!({"messages": [], "max_tokens": 10, "max_completion_tokens": 20});
    assert_eq!(openai_request_to_anthropic(&both, "c").expect("ok")["max_tokens"], 20);
}

#[test]
fn openai_tool_choice_maps_to_anthropic() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let cases = [
        (json!("auto"), json!({"type": "auto"})),
        (json!("required"), json!({"type": "any"})),
        (json!("none"), json!({"type": "none"})),
        (json!({"type": "function", "function": {"name": "f"}}), json!({"type": "tool", "name": "f"})),
    ];
    for (choice, expected) in cases {
        let req = json!({"messages": [], "tools": tools, "tool_choice": choice});
        let out = openai_request_to_anthropic(&req, "c").expect("ok");
        assert_eq!(out["tool_choice"], expected);
        assert_eq!(
            out["tools"],
            json!([{"name": "f", "input_schema": {"type": "object", "properties": {}}}])
        );
    }
    let req = json!({"messages": [], "tools": tools, "parallel_tool_calls": false});
    let out = openai_request_to_anthropic(&req, "c").expect("ok");
    assert_eq!(out["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
    let req = json!({"messages": [], "tools": tools, "tool_choice": "none", "parallel_tool_calls": false});
    assert_eq!(openai_request_to_anthropic(&req, "c").expect("ok")["tool_choice"], json!({"type": "none"}));
}

#[test]
fn openai_requests_that_cannot_be_translated_are_refused_with_a_reason() {
    let with = |extra: Value| {
        let mut req = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().expect("object") {
            req[k] = v.clone();
        }
        req
    };
    let unsupported_cases = [
        with(json!({"n": 2})),
        with(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}})),
        with(json!({"response_format": {"type": "json_object"}})),
        with(json!({"logprobs": true, "top_logprobs": 3})),
        with(json!({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}})),
        with(json!({"web_search_options": {}})),
        with(json!({"functions": [{"name": "f"}]})),
        with(json!({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]})),
        with(json!({"messages": [{"role": "function", "name": "f", "content": "x"}]})),
        with(
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}),
        ),
        with(
            json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}),
        ),
        with(
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}]}]}),
        ),
        with(
            json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]}),
        ),
    ];
    for req in unsupported_cases {
        let err = openai_request_to_anthropic(&req, "claude").expect_err("unsupported");
        assert!(matches!(err, TranslateError::Unsupported(_)), "{req}: {err}");
    }
    let invalid_cases = [
        json!("text"),
        json!({"model": "gpt"}),
        with(json!({"messages": [{"content": "no role"}]})),
        with(json!({"messages": [{"role": "tool", "content": "no id"}]})),
        with(
            json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]}),
        ),
        with(json!({"messages": [{"role": "user"}]})),
        with(
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
        ),
    ];
    for req in invalid_cases {
        let err = openai_request_to_anthropic(&req, "claude").expect_err("invalid");
        assert!(matches!(err, TranslateError::Invalid(_)), "{req}: {err}");
    }
    let err = openai_request_to_anthropic(&with(json!({"n": 3})), "claude").expect_err("unsupported");
    assert_eq!(
        err.to_string(),
        "cannot be translated to the other protocol: `n` other than 1 (several choices)"
    );
}

#[test]
fn tool_arguments_that_are_not_an_object_survive_both_ways() {
    for raw in ["{\"city\": \"Par", "[1, 2]", "\"just a string\""] {
        let req = json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": raw}}
        ]}]});
        let anthropic = openai_request_to_anthropic(&req, "c").expect("ok");
        let input = &anthropic["messages"][0]["content"][0]["input"];
        assert_eq!(input, &json!({RAW_ARGUMENTS_KEY: raw}));
        let back = anthropic_request_to_openai(&anthropic, "g").expect("ok");
        assert_eq!(back["messages"][0]["tool_calls"][0]["function"]["arguments"], raw);
    }
    let req = json!({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    ]}]});
    let anthropic = openai_request_to_anthropic(&req, "c").expect("ok");
    assert_eq!(anthropic["messages"][0]["content"][0]["input"], json!({}));
}

// ---- non-streaming responses ----

#[test]
fn openai_text_response_becomes_an_anthropic_message() {
    let resp = fixture(fixtures::OPENAI_RESPONSE_TEXT);
    let out = openai_response_to_anthropic(&resp, "claude-sonnet-4-5");
    assert_eq!(
        out,
        json!({
            "id": "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": resp["choices"][0]["message"]["content"]}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 1117 - 1024, "output_tokens": 46, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 0}
        })
    );
}

#[test]
fn openai_tool_call_response_becomes_tool_use_blocks() {
    let resp = fixture(fixtures::OPENAI_RESPONSE_TOOLS);
    let out = openai_response_to_anthropic(&resp, "claude");
    assert_eq!(
        out["content"],
        json!([
            {"type": "tool_use", "id": "call_Kx3mQ9vL2pR7tY1wZ5nB8cD4", "name": "get_weather",
             "input": {"location": "Boston, MA", "unit": "celsius"}},
            {"type": "tool_use", "id": "call_Pz9aS4dF6gH1jK3lM5nQ7rT2", "name": "get_weather",
             "input": {"location": "Paris, France", "unit": "celsius"}}
        ])
    );
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(out["usage"]["input_tokens"], 82);
}

#[test]
fn finish_and_stop_reasons_map_both_ways() {
    let openai = |finish: Value, tool_calls: bool| {
        let mut message = json!({"role": "assistant", "content": "x"});
        if tool_calls {
            message["tool_calls"] =
                json!([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
        }
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
    };
    let cases = [
        (json!("stop"), false, "end_turn"),
        (json!("length"), false, "max_tokens"),
        (json!("tool_calls"), true, "tool_use"),
        (json!("content_filter"), false, "refusal"),
        (json!("stop"), true, "tool_use"),
        (Value::Null, false, "end_turn"),
    ];
    for (finish, tools, expected) in cases {
        let out = openai_response_to_anthropic(&openai(finish.clone(), tools), "c");
        assert_eq!(out["stop_reason"], expected, "{finish}");
    }
    let cases = [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ];
    for (stop, expected) in cases {
        let resp = json!({"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop});
        assert_eq!(
            anthropic_response_to_openai(&resp, "g")["choices"][0]["finish_reason"],
            expected,
            "{stop}"
        );
    }
}

#[test]
fn openai_refusals_and_odd_responses_still_become_valid_messages() {
    let resp = json!({"id": "chatcmpl-9", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": null, "refusal": "I can't help with that."
    }, "finish_reason": "content_filter"}]});
    let out = openai_response_to_anthropic(&resp, "c");
    assert_eq!(out["content"], json!([{"type": "text", "text": "I can't help with that."}]));
    assert_eq!(out["stop_reason"], "refusal");

    let out = openai_response_to_anthropic(&json!({"choices": []}), "c");
    assert_eq!(out["content"], json!([]));
    assert!(out["id"].as_str().is_some_and(|id| id.starts_with("msg_") && id.len() > 10));
    assert_eq!(out["usage"], Usage::default().to_anthropic());
}

#[test]
fn anthropic_text_response_becomes_a_chat_completion() {
    let resp = fixture(fixtures::ANTHROPIC_RESPONSE_TEXT);
    let out = anthropic_response_to_openai(&resp, "gpt-4o");
    let created = out["created"].as_u64().expect("created");
    assert!(created > 1_700_000_000, "created is the current time");
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-013Zva2CMHLNnXjNJJKqJ2EF",
            "object": "chat.completion",
            "created": created,
            "model": "gpt-4o",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! My name is Claude. How can I help you today?", "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598, "prompt_tokens_details": {"cached_tokens": 0}}
        })
    );
}

#[test]
fn anthropic_tool_use_response_becomes_tool_calls_without_thinking() {
    let resp = fixture(fixtures::ANTHROPIC_RESPONSE_TOOLS);
    let out = anthropic_response_to_openai(&resp, "gpt-4o");
    let message = &out["choices"][0]["message"];
    assert_eq!(message["content"], "I'll check the weather in both cities.");
    let calls = message["tool_calls"].as_array().expect("tool calls");
    assert_eq!(calls.len(), 2);
    for (call, block) in calls.iter().zip(&resp["content"].as_array().expect("content")[2..]) {
        assert_eq!(call["id"], block["id"]);
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], block["name"]);
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("string")).expect("json");
        assert_eq!(args, block["input"]);
    }
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out["usage"]["prompt_tokens"], 472 + 2048 + 1500);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 2048);
    assert!(!out.to_string().contains("I should call get_weather twice"), "thinking is dropped");

    // Tool calls alone give null content, as OpenAI sends.
    let resp = json!({"id": "msg_2", "content": [resp["content"][2]], "stop_reason": "tool_use"});
    assert_eq!(anthropic_response_to_openai(&resp, "g")["choices"][0]["message"]["content"], Value::Null);
}

#[test]
fn responses_survive_a_round_trip_through_the_other_protocol() {
    for text in [fixtures::OPENAI_RESPONSE_TEXT, fixtures::OPENAI_RESPONSE_TOOLS] {
        let original = fixture(text);
        let back = anthropic_response_to_openai(&openai_response_to_anthropic(&original, "claude"), "gpt");
        let (a, b) = (&original["choices"][0], &back["choices"][0]);
        assert_eq!(a["finish_reason"], b["finish_reason"]);
        assert_eq!(a["message"]["content"], b["message"]["content"]);
        assert_eq!(
            a["message"]["tool_calls"].as_array().map(Vec::len),
            b["message"]["tool_calls"].as_array().map(Vec::len)
        );
        assert_eq!(Usage::from_openai(&original["usage"]), Usage::from_openai(&back["usage"]));
        assert_eq!(back["id"], original["id"]);
    }
    for text in [fixtures::ANTHROPIC_RESPONSE_TEXT, fixtures::ANTHROPIC_RESPONSE_TOOLS] {
        let original = fixture(text);
        let back = openai_response_to_anthropic(
            &anthropic_response_to_openai(&original, "gpt"),
            "claude-sonnet-4-5-20250929",
        );
        let mut expected = without_thinking(&original);
        expected["usage"] = Usage::from_anthropic(&original["usage"]).expect("usage").to_anthropic();
        // The cache write count does not survive OpenAI's usage shape, it counts as input there.
        let usage = Usage::from_anthropic(&original["usage"]).expect("usage");
        expected["usage"]["input_tokens"] = json!(usage.input_tokens + usage.cache_write_tokens);
        expected["usage"]["cache_creation_input_tokens"] = json!(0);
        assert_eq!(back, expected);
    }
}

// ---- streams, OpenAI to Anthropic ----

fn event_names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

#[test]
fn openai_text_stream_becomes_an_anthropic_stream_with_the_final_usage() {
    let chunks = openai_chunks(fixtures::OPENAI_STREAM_TEXT);
    let events = run_openai_to_anthropic(&chunks);
    assert_eq!(
        event_names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let message = accumulate_anthropic(&events);
    let expected = openai_response_to_anthropic(&accumulate_openai(&chunks), "claude-sonnet-4-5");
    assert_eq!(message, expected);
    assert_eq!(message["content"][0]["text"], "Hello! Ça va? 今日は ☀️ How can I help?");
    assert_eq!(
        events[7].1["usage"],
        json!({"input_tokens": 58, "output_tokens": 12, "cache_read_input_tokens": 1152, "cache_creation_input_tokens": 0})
    );
}

#[test]
fn message_delta_waits_for_the_end_of_the_stream() {
    let chunks = openai_chunks(fixtures::OPENAI_STREAM_TEXT);
    let mut translator = OpenAiToAnthropicStream::new("claude");
    let mut before_finish = Vec::new();
    for chunk in &chunks {
        before_finish.extend(translator.push(chunk));
    }
    assert!(!event_names(&before_finish).contains(&"message_delta"));
    assert_eq!(translator.usage().map(|u| u.output_tokens), Some(12));
    let end = translator.finish();
    assert_eq!(event_names(&end), ["message_delta", "message_stop"]);
    assert_eq!(end[0].1["delta"], json!({"stop_reason": "end_turn", "stop_sequence": null}));
    assert!(translator.push(&chunks[1]).is_empty(), "nothing after finish");
}

#[test]
fn openai_tool_call_stream_opens_a_block_per_text_run_and_tool_call() {
    let chunks = openai_chunks(fixtures::OPENAI_STREAM_TOOLS);
    let events = run_openai_to_anthropic(&chunks);
    let starts: Vec<&Value> =
        events.iter().filter(|(n, _)| n == "content_block_start").map(|(_, d)| &d["content_block"]).collect();
    assert_eq!(
        starts,
        [
            &json!({"type": "text", "text": ""}),
            &json!({"type": "tool_use", "id": "call_Kx3mQ9vL2pR7tY1wZ5nB8cD4", "name": "get_weather", "input": {}}),
            &json!({"type": "tool_use", "id": "call_Pz9aS4dF6gH1jK3lM5nQ7rT2", "name": "get_weather", "input": {}}),
        ]
    );
    let fragments: Vec<(u64, &str)> = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| {
            (d["index"].as_u64().expect("index"), d["delta"]["partial_json"].as_str().expect("json"))
        })
        .collect();
    assert_eq!(
        fragments,
        [
            (1, "{\"lo"),
            (1, "cation\": \"Bos"),
            (1, "ton, MA\"}"),
            (2, "{\"location\""),
            (2, ": \"Paris, France\"}")
        ]
    );
    let message = accumulate_anthropic(&events);
    assert_eq!(message, openai_response_to_anthropic(&accumulate_openai(&chunks), "claude-sonnet-4-5"));
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(message["content"][2]["input"], json!({"location": "Paris, France"}));
}

#[test]
fn openai_stream_without_usage_still_ends_properly() {
    let chunks: Vec<Value> =
        openai_chunks(fixtures::OPENAI_STREAM_TEXT).into_iter().filter(|c| c["usage"].is_null()).collect();
    let events = run_openai_to_anthropic(&chunks);
    let message = accumulate_anthropic(&events);
    assert_eq!(message["usage"], Usage::default().to_anthropic());
    assert_eq!(message["stop_reason"], "end_turn");
}

#[test]
fn openai_tool_call_fragments_before_the_name_are_kept() {
    // Some compatible servers send the id first, the name later, and no index.
    let chunk = |delta: Value, finish: Value| json!({"id": "chatcmpl-x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let chunks = [
        chunk(
            json!({"role": "assistant", "tool_calls": [{"id": "call_a", "function": {"arguments": "{\"q\""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"function": {"name": "search", "arguments": ": \"rust"}}]}),
            Value::Null,
        ),
        chunk(json!({"tool_calls": [{"function": {"arguments": "\"}"}}]}), Value::Null),
        chunk(
            json!({"tool_calls": [{"id": "call_b", "function": {"name": "lookup", "arguments": "{}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("stop")),
    ];
    let events = run_openai_to_anthropic(&chunks);
    let message = accumulate_anthropic(&events);
    assert_eq!(
        message["content"],
        json!([
            {"type": "tool_use", "id": "call_a", "name": "search", "input": {"q": "rust"}},
            {"type": "tool_use", "id": "call_b", "name": "lookup", "input": {}}
        ])
    );
    assert_eq!(message["stop_reason"], "tool_use");
}

#[test]
fn openai_in_stream_error_becomes_an_anthropic_error_event() {
    let chunks = openai_chunks(fixtures::OPENAI_STREAM_TEXT);
    let mut translator = OpenAiToAnthropicStream::new("claude");
    let mut events = translator.push(&chunks[0]);
    events.extend(translator.push(&chunks[1]));
    let error = json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}});
    let out = translator.push(&error);
    assert_eq!(
        out,
        [(
            "error".to_owned(),
            json!({"type": "error", "error": {"type": "api_error", "message": "The server had an error while processing your request."}})
        )]
    );
    assert!(!translator.is_complete());
    assert!(translator.finish().is_empty());
    assert!(translator.push(&chunks[2]).is_empty());
}

// ---- streams, Anthropic to OpenAI ----

#[test]
fn anthropic_text_stream_becomes_openai_chunks_with_usage() {
    let events = stream_events(fixtures::ANTHROPIC_STREAM_TEXT);
    let chunks = run_anthropic_to_openai(&events, true);
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let contents: Vec<&str> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(contents, ["", "Hello", "! Ça va? 今日は ☀️", " How can I help?"]);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 1825, "completion_tokens": 15, "total_tokens": 1840, "prompt_tokens_details": {"cached_tokens": 1800}})
    );
    for chunk in &chunks[..chunks.len() - 1] {
        assert!(chunk.get("usage").is_some_and(Value::is_null), "other chunks carry usage: null");
        assert_eq!(chunk["model"], "gpt-4o");
        assert_eq!(chunk["id"], "chatcmpl-1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
    }
    let finishing: Vec<&Value> =
        chunks.iter().filter(|c| !c["choices"][0]["finish_reason"].is_null()).collect();
    assert_eq!(finishing.len(), 1);
    assert_eq!(finishing[0]["choices"][0]["finish_reason"], "stop");

    let assembled = accumulate_openai(&chunks);
    let mut expected = anthropic_response_to_openai(&accumulate_anthropic(&events), "gpt-4o");
    expected["created"] = assembled["created"].clone();
    assert_eq!(assembled, expected);
}

#[test]
fn without_include_usage_there_is_no_usage_anywhere() {
    let events = stream_events(fixtures::ANTHROPIC_STREAM_TEXT);
    let chunks = run_anthropic_to_openai(&events, false);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert!(chunks.iter().all(|c| c["choices"].as_array().is_some_and(|a| a.len() == 1)));
    assert_eq!(chunks.last().expect("chunks")["choices"][0]["finish_reason"], "stop");
}

#[test]
fn anthropic_tool_use_stream_becomes_indexed_tool_call_deltas() {
    let events = stream_events(fixtures::ANTHROPIC_STREAM_TOOLS);
    let chunks = run_anthropic_to_openai(&events, true);
    let announced: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .filter(|call| call.get("id").is_some())
        .collect();
    assert_eq!(
        announced,
        [
            &json!({"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
            &json!({"index": 1, "id": "toolu_01B7x2kQmZ4pN3rT8vW6yH5j", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
        ]
    );
    let assembled = accumulate_openai(&chunks);
    let message = &assembled["choices"][0]["message"];
    assert_eq!(message["content"], "I'll check both cities.");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"location\": \"San Francisco, CA\", \"unit\": \"celsius\"}"
    );
    assert_eq!(message["tool_calls"][1]["function"]["arguments"], "{\"location\": \"New York, NY\"}");
    assert_eq!(assembled["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        Usage::from_openai(&assembled["usage"]).map(|u| u.total_input_tokens()),
        Some(472 + 1500 + 2048),
    );
}

#[test]
fn anthropic_thinking_is_dropped_from_openai_streams() {
    let events = stream_events(fixtures::ANTHROPIC_STREAM_THINKING);
    let chunks = run_anthropic_to_openai(&events, false);
    let assembled = accumulate_openai(&chunks);
    assert_eq!(assembled["choices"][0]["message"]["content"], "27 * 453 = 12,231");
    let all = serde_json::to_string(&chunks).expect("json");
    assert!(!all.contains("step by step") && !all.contains("EqQB"), "no thinking or signature leaks");
}

#[test]
fn anthropic_error_events_are_returned_for_the_caller_to_report() {
    let events = stream_events(fixtures::ANTHROPIC_STREAM_TEXT);
    let mut translator = AnthropicToOpenAiStream::new("gpt-4o", true);
    for (name, data) in &events[..4] {
        translator.push(name, data).expect("normal events");
    }
    let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let err = translator.push("error", &error).expect_err("error event");
    assert_eq!(
        err,
        StreamError { error_type: "overloaded_error".to_owned(), message: "Overloaded".to_owned() }
    );
    assert_eq!(err.status(), 529);
    assert!(!translator.is_complete());
    let reported = stream_error(Protocol::OpenAi, err.status(), &err.error_type, &err.message);
    let mut parser = SseParser::default();
    let sent = parser.feed(reported.as_bytes()).expect("parses");
    assert_eq!(sent[0].json().expect("json")["error"]["message"], "Overloaded");
}

// ---- streams through both translators ----

#[test]
fn an_anthropic_stream_through_openai_and_back_keeps_its_message() {
    for stream in [
        fixtures::ANTHROPIC_STREAM_TEXT,
        fixtures::ANTHROPIC_STREAM_TOOLS,
        fixtures::ANTHROPIC_STREAM_THINKING,
    ] {
        let events = stream_events(stream);
        let original = accumulate_anthropic(&events);
        // Through the wire, as the gateway would send and receive them.
        let mut wire = String::new();
        for chunk in run_anthropic_to_openai(&events, true) {
            wire.push_str(&sse::encode_json(None, &chunk));
        }
        wire.push_str(sse::OPENAI_DONE);
        let back = accumulate_anthropic(&run_openai_to_anthropic(&openai_chunks(&wire)));

        let mut expected = without_thinking(&original);
        expected["model"] = json!("claude-sonnet-4-5");
        expected["usage"] = Usage::from_anthropic(&original["usage"]).expect("usage").to_anthropic();
        let usage = Usage::from_anthropic(&original["usage"]).expect("usage");
        expected["usage"]["input_tokens"] = json!(usage.input_tokens + usage.cache_write_tokens);
        expected["usage"]["cache_creation_input_tokens"] = json!(0);
        assert_eq!(back, expected);
    }
}

#[test]
fn an_openai_stream_through_anthropic_and_back_keeps_its_completion() {
    for stream in [fixtures::OPENAI_STREAM_TEXT, fixtures::OPENAI_STREAM_TOOLS] {
        let chunks = openai_chunks(stream);
        let original = accumulate_openai(&chunks);
        let mut wire = String::new();
        for (name, data) in run_openai_to_anthropic(&chunks) {
            wire.push_str(&sse::encode_json(Some(&name), &data));
        }
        let back = accumulate_openai(&run_anthropic_to_openai(&stream_events(&wire), true));
        let (a, b) = (&original["choices"][0], &back["choices"][0]);
        assert_eq!(a["message"]["content"], b["message"]["content"]);
        assert_eq!(a["message"]["tool_calls"], b["message"]["tool_calls"]);
        assert_eq!(a["finish_reason"], b["finish_reason"]);
        assert_eq!(Usage::from_openai(&original["usage"]), Usage::from_openai(&back["usage"]));
        assert_eq!(back["id"], original["id"]);
    }
}
