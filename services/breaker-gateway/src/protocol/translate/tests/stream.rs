//! Stream translation in both directions, and through both translators.

use serde_json::{Value, json};

use super::*;

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
fn anthropic_thinking_streams_as_reasoning_content_deltas() {
    let events = stream_events(fixtures::ANTHROPIC_STREAM_THINKING);
    let chunks = run_anthropic_to_openai(&events, false);
    let reasoning: Vec<&str> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str()).collect();
    assert_eq!(
        reasoning,
        [
            "Let me solve this step by step:\n\n1. First break down 27 * 453",
            "\n2. 453 = 400 + 50 + 3\n3. 27 * 453 = 12231"
        ]
    );
    // Reasoning and text never share a delta, so a client can tell which is which.
    assert!(chunks.iter().all(|c| {
        let delta = &c["choices"][0]["delta"];
        delta["reasoning_content"].is_null() || delta["content"].is_null()
    }));
    let assembled = accumulate_openai(&chunks);
    assert_eq!(assembled["choices"][0]["message"]["content"], "27 * 453 = 12,231");
    assert_eq!(
        assembled["choices"][0]["message"]["reasoning_content"],
        "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3\n3. 27 * 453 = 12231"
    );
    let all = serde_json::to_string(&chunks).expect("json");
    assert!(!all.contains("EqQB"), "the signature does not leak");
    let mut expected = anthropic_response_to_openai(&accumulate_anthropic(&events), "gpt-4o");
    expected["created"] = assembled["created"].clone();
    expected["usage"] = Value::Null;
    assert_eq!(assembled, expected, "streamed and whole answers agree");
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

        let mut expected = with_unsigned_thinking(&original);
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

// ---- reasoning and stop sequences in streams ----

#[test]
fn reasoning_after_text_opens_a_new_thinking_block() {
    let chunk = |delta: Value, finish: Value| json!({"id": "chatcmpl-r", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let chunks = [
        chunk(json!({"role": "assistant", "reasoning_content": "think"}), Value::Null),
        chunk(json!({"content": "say"}), Value::Null),
        chunk(json!({"reasoning": "think again"}), Value::Null),
        chunk(json!({"content": "say more"}), Value::Null),
        chunk(json!({}), json!("stop")),
    ];
    let message = accumulate_anthropic(&run_openai_to_anthropic(&chunks));
    assert_eq!(
        message["content"],
        json!([
            {"type": "thinking", "thinking": "think", "signature": ""},
            {"type": "text", "text": "say"},
            {"type": "thinking", "thinking": "think again", "signature": ""},
            {"type": "text", "text": "say more"}
        ])
    );
}

#[test]
fn vllm_stream_stop_string_becomes_the_stop_sequence() {
    let chunk = |delta: Value, finish: Value, stop: Value| json!({"id": "chatcmpl-v", "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "stop_reason": stop}]});
    let chunks = [
        chunk(json!({"role": "assistant", "content": "<answer>42"}), Value::Null, Value::Null),
        chunk(json!({}), json!("stop"), json!("</answer>")),
    ];
    let events = run_openai_to_anthropic(&chunks);
    let delta = &events.iter().find(|(n, _)| n == "message_delta").expect("message_delta").1["delta"];
    assert_eq!(delta, &json!({"stop_reason": "stop_sequence", "stop_sequence": "</answer>"}));

    let chunks = [
        chunk(json!({"role": "assistant", "content": "hi"}), Value::Null, Value::Null),
        chunk(json!({}), json!("stop"), json!(151645)),
    ];
    let message = accumulate_anthropic(&run_openai_to_anthropic(&chunks));
    assert_eq!((&message["stop_reason"], &message["stop_sequence"]), (&json!("end_turn"), &Value::Null));
}

#[test]
fn anthropic_stop_sequence_stream_finishes_with_stop_and_redacted_thinking_is_not_streamed() {
    let events = [
        ("message_start", json!({"type": "message_start", "message": {"id": "msg_s", "usage": {"input_tokens": 5, "output_tokens": 1}}})),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "EmwK"}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "1, 2, 3"}})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": ", 4"}, "usage": {"output_tokens": 7}})),
        ("message_stop", json!({"type": "message_stop"})),
    ]
    .map(|(name, data)| (name.to_owned(), data));
    let chunks = run_anthropic_to_openai(&events, true);
    let assembled = accumulate_openai(&chunks);
    assert_eq!(assembled["choices"][0]["message"]["content"], "1, 2, 3");
    assert!(assembled["choices"][0]["message"].get("reasoning_content").is_none());
    assert_eq!(assembled["choices"][0]["finish_reason"], "stop");
    assert!(!serde_json::to_string(&chunks).expect("json").contains("EmwK"));
}
