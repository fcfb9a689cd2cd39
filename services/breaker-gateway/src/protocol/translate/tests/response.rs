//! Non-streaming response translation in both directions.

use serde_json::{Value, json};

use super::*;

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
fn anthropic_tool_use_response_becomes_tool_calls_and_thinking_reasoning_content() {
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
    assert_eq!(
        message["reasoning_content"],
        "The user wants the weather in two cities. I should call get_weather twice."
    );
    assert!(!out.to_string().contains("EqQB"), "the signature is dropped");

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
        let mut expected = with_unsigned_thinking(&original);
        expected["usage"] = Usage::from_anthropic(&original["usage"]).expect("usage").to_anthropic();
        // The cache write count does not survive OpenAI's usage shape, it counts as input there.
        let usage = Usage::from_anthropic(&original["usage"]).expect("usage");
        expected["usage"]["input_tokens"] = json!(usage.input_tokens + usage.cache_write_tokens);
        expected["usage"]["cache_creation_input_tokens"] = json!(0);
        assert_eq!(back, expected);
    }
}

#[test]
fn vllm_reasoning_response_becomes_thinking_and_names_the_stop_sequence() {
    let resp = fixture(fixtures::OPENAI_RESPONSE_REASONING);
    let out = openai_response_to_anthropic(&resp, "claude-sonnet-4-5");
    assert_eq!(
        out,
        json!({
            "id": "msg_8f3c2a1b9d7e4f60a5b4c3d2e1f0a9b8",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": resp["choices"][0]["message"]["reasoning_content"], "signature": ""},
                {"type": "text", "text": "<answer>42"}
            ],
            "stop_reason": "stop_sequence",
            "stop_sequence": "</answer>",
            "usage": {"input_tokens": 412 - 256, "output_tokens": 118, "cache_read_input_tokens": 256, "cache_creation_input_tokens": 0}
        })
    );
    // Through Anthropic's shape and back, the reasoning is where an OpenAI client looks for it.
    let back = anthropic_response_to_openai(&out, "qwen");
    assert_eq!(
        back["choices"][0]["message"]["reasoning_content"],
        resp["choices"][0]["message"]["reasoning_content"]
    );
    assert_eq!(back["choices"][0]["finish_reason"], "stop");
    assert_eq!(Usage::from_openai(&back["usage"]), Usage::from_openai(&resp["usage"]));
}

#[test]
fn a_stop_without_a_named_string_is_an_end_turn() {
    let resp = |stop_reason: Value, finish: &str| {
        json!({"choices": [{"index": 0, "finish_reason": finish, "stop_reason": stop_reason,
                            "message": {"role": "assistant", "content": "x", "reasoning": "from `reasoning`"}}]})
    };
    for (stop_reason, finish, expected) in [
        (json!(151645), "stop", "end_turn"),
        (Value::Null, "stop", "end_turn"),
        (json!(""), "stop", "end_turn"),
        (json!("END"), "length", "max_tokens"),
    ] {
        let out = openai_response_to_anthropic(&resp(stop_reason.clone(), finish), "c");
        assert_eq!(
            (out["stop_reason"].as_str(), &out["stop_sequence"]),
            (Some(expected), &Value::Null),
            "{stop_reason}"
        );
        // OpenRouter's and newer vLLM's `reasoning` field is read as well.
        assert_eq!(
            out["content"][0],
            json!({"type": "thinking", "thinking": "from `reasoning`", "signature": ""})
        );
    }
}

#[test]
fn anthropic_thinking_becomes_reasoning_content_and_redacted_thinking_is_dropped() {
    let resp = json!({"id": "msg_1", "stop_reason": "stop_sequence", "stop_sequence": "###", "content": [
        {"type": "thinking", "thinking": "first", "signature": "sig"},
        {"type": "redacted_thinking", "data": "EmwK"},
        {"type": "thinking", "thinking": "second", "signature": "sig"},
        {"type": "text", "text": "answer"}
    ]});
    let out = anthropic_response_to_openai(&resp, "g");
    let message = &out["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "first\n\nsecond");
    assert_eq!(message["content"], "answer");
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    assert!(!out.to_string().contains("EmwK") && !out.to_string().contains("sig"));
    // Without thinking there is no reasoning_content at all.
    let out = anthropic_response_to_openai(&fixture(fixtures::ANTHROPIC_RESPONSE_TEXT), "g");
    assert!(out["choices"][0]["message"].get("reasoning_content").is_none());
}
