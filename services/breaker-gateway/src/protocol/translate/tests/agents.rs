//! What coding agents send and receive, end to end: a Claude Code turn served by an OpenAI
//! deployment, a Codex turn served by Anthropic, and the reasoning streams that come back.

use serde_json::{Value, json};

use super::*;

/// Whether `messages` is an Anthropic conversation the API accepts structurally: alternating
/// turns starting with the user, and every tool call answered in the very next user turn, with
/// the tool results first.
fn assert_valid_anthropic_turns(messages: &Value) {
    let messages = messages.as_array().expect("messages");
    for (i, message) in messages.iter().enumerate() {
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        assert_eq!(message["role"], expected, "turns alternate: {messages:#?}");
        let Some(blocks) = message["content"].as_array() else {
            continue;
        };
        let calls: Vec<&Value> =
            blocks.iter().filter(|b| b["type"] == "tool_use").map(|b| &b["id"]).collect();
        if calls.is_empty() {
            continue;
        }
        let next = messages[i + 1]["content"].as_array().expect("tool results follow as blocks");
        let results: Vec<&Value> =
            next.iter().take_while(|b| b["type"] == "tool_result").map(|b| &b["tool_use_id"]).collect();
        assert_eq!(results, calls, "each call is answered, results first");
    }
}

// ---- Claude Code to an OpenAI deployment ----

#[test]
fn claude_code_request_becomes_an_openai_request_field_by_field() {
    let req = fixture(fixtures::CLAUDE_CODE_REQUEST);
    let out = anthropic_request_to_openai(&req, "gpt-4.1").expect("translates");
    let m = &req["messages"];
    let png = |i: usize, path: &str| {
        let data = m[i]["content"].pointer(path).and_then(Value::as_str).expect("image data");
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}})
    };
    let expected = json!({
        "model": "gpt-4.1",
        "messages": [
            // The cached system blocks, without their cache_control.
            {"role": "system", "content": [
                {"type": "text", "text": req["system"][0]["text"]},
                {"type": "text", "text": req["system"][1]["text"]}
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": m[0]["content"][0]["text"]},
                {"type": "text", "text": "The checkout page crashes, see the screenshot. Fix it."},
                png(0, "/2/source/data")
            ]},
            // Signed thinking is dropped, text and the two parallel calls stay.
            {"role": "assistant", "content": "I'll look at the cart code and run its tests.", "tool_calls": [
                {"id": "toolu_01RcA5qH3x9WJvUd2kLmN7pQ", "type": "function", "function": {
                    "name": "Read", "arguments": "{\"file_path\":\"/home/dev/shop/src/cart.ts\"}"}},
                {"id": "toolu_01Fz8bT2yK4nPq6wXr3sV9mD", "type": "function", "function": {
                    "name": "Bash", "arguments": "{\"command\":\"npm test -- cart\",\"description\":\"Run the cart tests\"}"}}
            ]},
            // Two tool results, two tool messages, then the rest of the user turn.
            {"role": "tool", "tool_call_id": "toolu_01RcA5qH3x9WJvUd2kLmN7pQ", "content": m[2]["content"][0]["content"][0]["text"]},
            {"role": "tool", "tool_call_id": "toolu_01Fz8bT2yK4nPq6wXr3sV9mD",
             "content": "Error: FAIL src/cart.test.ts\n  TypeError: Cannot read properties of undefined (reading 'price')"},
            {"role": "user", "content": m[2]["content"][2]["text"]},
            // The mid-conversation system message stays where it was.
            {"role": "system", "content": "Plan mode is active: do not edit files until the user approves a plan."},
            // Redacted thinking is dropped too.
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_01Xk3mW9pQ2vR7tY5nB8cD4s", "type": "function", "function": {
                    "name": "Read", "arguments": "{\"file_path\":\"/home/dev/shop/screenshots/after.png\"}"}}
            ]},
            // A tool message cannot hold the screenshot the tool returned: it follows as a user message.
            {"role": "tool", "tool_call_id": "toolu_01Xk3mW9pQ2vR7tY5nB8cD4s", "content": ""},
            {"role": "user", "content": [png(5, "/0/content/0/source/data")]}
        ],
        "max_tokens": 32000,
        "temperature": 1,
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": req["metadata"]["user_id"],
        // Not a reasoning deployment (max_tokens): the thinking request is dropped.
        "tools": [
            {"type": "function", "function": {
                "name": "Read", "description": req["tools"][0]["description"], "parameters": req["tools"][0]["input_schema"]}},
            {"type": "function", "function": {
                "name": "Bash", "description": req["tools"][1]["description"], "parameters": req["tools"][1]["input_schema"]}}
        ]
    });
    assert_eq!(out, expected);
    let text = out.to_string();
    for absent in ["cache_control", "signature", "thinking", "EmwKAhgB"] {
        assert!(!text.contains(absent), "`{absent}` does not reach OpenAI");
    }
}

#[test]
fn claude_code_thinking_becomes_reasoning_effort_for_a_reasoning_deployment() {
    let req = fixture(fixtures::CLAUDE_CODE_REQUEST);
    let out = anthropic_request_to_openai_with(&req, "gpt-5", MaxTokensField::MaxCompletionTokens)
        .expect("translates");
    assert_eq!(out["reasoning_effort"], "medium", "a budget of 10000 tokens");
    assert_eq!(out["max_completion_tokens"], 32000);
    assert!(out.get("max_tokens").is_none());
}

#[test]
fn claude_code_request_through_openai_and_back_is_a_valid_anthropic_conversation() {
    let req = fixture(fixtures::CLAUDE_CODE_REQUEST);
    let openai = anthropic_request_to_openai_with(&req, "gpt-5", MaxTokensField::MaxCompletionTokens)
        .expect("to openai");
    let back = openai_request_to_anthropic(&openai, "claude-sonnet-4-5").expect("back");
    assert_valid_anthropic_turns(&back["messages"]);
    // The mid-conversation system message joins the system prompt, after the leading blocks.
    assert_eq!(
        back["system"],
        json!([
            {"type": "text", "text": req["system"][0]["text"]},
            {"type": "text", "text": req["system"][1]["text"]},
            {"type": "text", "text": "Plan mode is active: do not edit files until the user approves a plan."}
        ])
    );
    // The screenshot a tool returned comes back in the same user turn, after the tool result.
    let last = back["messages"][4]["content"].as_array().expect("blocks");
    assert_eq!(last[0]["type"], "tool_result");
    assert_eq!(last[1]["source"], req["messages"][5]["content"][0]["content"][0]["source"]);
    // medium effort comes back as 8192 tokens of thinking, but the conversation is in a tool
    // loop whose thinking went missing on the way, so Anthropic would refuse it.
    assert!(back.get("thinking").is_none());
    assert_eq!(back["metadata"]["user_id"], req["metadata"]["user_id"]);
}

// ---- Codex to an Anthropic deployment ----

#[test]
fn codex_request_becomes_an_anthropic_request_field_by_field() {
    let req = fixture(fixtures::CODEX_CHAT_REQUEST);
    let out = openai_request_to_anthropic(&req, "claude-sonnet-4-5").expect("translates");
    let m = &req["messages"];
    let args = |i: usize, j: usize| -> Value {
        let raw = m[i]["tool_calls"][j]["function"]["arguments"].as_str().expect("arguments");
        serde_json::from_str(raw).expect("json arguments")
    };
    let function = |i: usize| &req["tools"][i]["function"];
    let expected = json!({
        "model": "claude-sonnet-4-5",
        // The leading system message and the later developer message, in order.
        "system": [
            {"type": "text", "text": m[0]["content"]},
            {"type": "text", "text": "<user_instructions>\nKeep answers short.\n</user_instructions>"}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": m[1]["content"]},
                {"type": "text", "text": "Fix the failing cart test."}
            ]},
            // reasoning_content in the history has no signature and is dropped.
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_tP2mX8kQ4vR6nW1yZ3bL5cJ7", "name": "shell", "input": args(3, 0)}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_tP2mX8kQ4vR6nW1yZ3bL5cJ7", "content": m[4]["content"]}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": m[5]["content"]},
                {"type": "tool_use", "id": "call_9hGv2LmQ7xN4pR8tW1yK3sB6", "name": "apply_patch", "input": args(5, 0)},
                {"type": "tool_use", "id": "call_Lw5sD1fG8hJ2kQ9zX4cV7bN3", "name": "shell", "input": args(5, 1)}
            ]},
            // Consecutive tool messages and the user message after them make one user turn.
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_9hGv2LmQ7xN4pR8tW1yK3sB6", "content": [
                    {"type": "text", "text": "Success. Updated the following files:"},
                    {"type": "text", "text": "M src/cart.ts"}
                ]},
                {"type": "tool_result", "tool_use_id": "call_Lw5sD1fG8hJ2kQ9zX4cV7bN3", "content": m[7]["content"]},
                {"type": "text", "text": "Does the page still look like this screenshot?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQ=="}}
            ]}
        ],
        // No client limit, and no thinking (the last assistant turn called tools): the default.
        "max_tokens": DEFAULT_ANTHROPIC_MAX_TOKENS,
        "stream": true,
        "tools": [
            {"name": "shell", "description": function(0)["description"], "input_schema": function(0)["parameters"]},
            {"name": "apply_patch", "description": function(1)["description"], "input_schema": function(1)["parameters"]}
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}
    });
    assert_eq!(out, expected);
    assert_valid_anthropic_turns(&out["messages"]);
}

#[test]
fn codex_reasoning_effort_becomes_thinking_when_anthropic_accepts_it() {
    // The next turn: the tool loop is over, the last assistant turn is an answer.
    let mut req = fixture(fixtures::CODEX_CHAT_REQUEST);
    let messages = req["messages"].as_array_mut().expect("messages");
    messages.push(json!({"role": "assistant", "content": "Yes, it renders the same."}));
    messages.push(json!({"role": "user", "content": "Thanks, commit it."}));
    let out = openai_request_to_anthropic(&req, "claude").expect("translates");
    assert_eq!(out["thinking"], json!({"type": "enabled", "budget_tokens": 8192}));
    assert_eq!(out["max_tokens"], DEFAULT_ANTHROPIC_MAX_TOKENS + 8192, "room for thinking and answer");
    assert_valid_anthropic_turns(&out["messages"]);

    let with = |changes: Value| {
        let mut r = req.clone();
        for (k, v) in changes.as_object().expect("object") {
            r[k] = v.clone();
        }
        openai_request_to_anthropic(&r, "claude").expect("translates")
    };
    let thinking = |out: &Value| out["thinking"]["budget_tokens"].as_u64();
    assert_eq!(thinking(&with(json!({"reasoning_effort": "low"}))), Some(2048));
    assert_eq!(thinking(&with(json!({"reasoning_effort": "high"}))), Some(24576));
    let explicit = with(json!({"reasoning_effort": "high", "max_completion_tokens": 30000}));
    assert_eq!((thinking(&explicit), explicit["max_tokens"].as_u64()), (Some(24576), Some(30000)));
    // What Anthropic would refuse with thinking on drops the thinking, not the request.
    for changes in [
        json!({"reasoning_effort": "minimal"}),
        json!({"reasoning_effort": "none"}),
        json!({"reasoning_effort": "high", "max_tokens": 24576}),
        json!({"temperature": 0.2}),
        json!({"top_p": 0.5}),
        json!({"tool_choice": "required"}),
        json!({"tool_choice": {"type": "function", "function": {"name": "shell"}}}),
    ] {
        let out = with(changes.clone());
        assert!(out.get("thinking").is_none(), "{changes}");
        let limit = changes.get("max_tokens").cloned().unwrap_or(json!(DEFAULT_ANTHROPIC_MAX_TOKENS));
        assert_eq!(out["max_tokens"], limit, "{changes}");
    }
    // temperature 1 (or above, clamped to 1) and top_p from 0.95 go with thinking.
    assert!(with(json!({"temperature": 1.3, "top_p": 0.95})).get("thinking").is_some());
}

// ---- reasoning streams ----

#[test]
fn deepseek_reasoning_stream_becomes_thinking_text_and_tool_use_blocks() {
    let chunks = openai_chunks(fixtures::OPENAI_STREAM_REASONING);
    let events = run_openai_to_anthropic(&chunks);
    let starts: Vec<(u64, &Value)> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| (d["index"].as_u64().expect("index"), &d["content_block"]))
        .collect();
    assert_eq!(
        starts,
        [
            (0, &json!({"type": "thinking", "thinking": "", "signature": ""})),
            (1, &json!({"type": "text", "text": ""})),
            (
                2,
                &json!({"type": "tool_use", "id": "call_00_Qm7xK2pL9vR4tY8wZ1nB5cD3", "name": "Read", "input": {}})
            ),
        ]
    );
    let thinking: Vec<(u64, &str)> = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "thinking_delta")
        .map(|(_, d)| (d["index"].as_u64().expect("index"), d["delta"]["thinking"].as_str().expect("text")))
        .collect();
    assert_eq!(
        thinking,
        [(0, "The test reads `price` of an undefined item"), (0, "; I should read cart.ts.")]
    );
    let message = accumulate_anthropic(&events);
    assert_eq!(
        message["content"],
        json!([
            {"type": "thinking", "thinking": "The test reads `price` of an undefined item; I should read cart.ts.", "signature": ""},
            {"type": "text", "text": "Let me read the cart code."},
            {"type": "tool_use", "id": "call_00_Qm7xK2pL9vR4tY8wZ1nB5cD3", "name": "Read",
             "input": {"file_path": "/home/dev/shop/src/cart.ts"}}
        ])
    );
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(
        message["usage"],
        json!({"input_tokens": 30, "output_tokens": 210, "cache_read_input_tokens": 1920, "cache_creation_input_tokens": 0})
    );
    // The stream and the whole answer translate alike.
    assert_eq!(message, openai_response_to_anthropic(&accumulate_openai(&chunks), "claude-sonnet-4-5"));
}

#[test]
fn claude_thinking_stream_with_cache_usage_becomes_reasoning_content_and_cached_tokens() {
    let events = stream_events(fixtures::ANTHROPIC_STREAM_THINKING_TOOLS);
    let chunks = run_anthropic_to_openai(&events, true);
    let assembled = accumulate_openai(&chunks);
    let message = &assembled["choices"][0]["message"];
    assert_eq!(
        message["reasoning_content"],
        "The total() call fails on undefined items. Guard the price access, then run the tests."
    );
    assert_eq!(message["content"], "I'll guard against missing prices.");
    // The tool_use block has index 2 but is the first tool call.
    let call = &message["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01Hq7vB3nM5kT9wR2xY6pL4d");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().expect("args")).expect("json");
    assert_eq!(
        args,
        json!({"file_path": "/home/dev/shop/src/cart.ts", "old_string": "i.price", "new_string": "(i?.price ?? 0)"})
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"]["tool_calls"][0]["index"].as_u64().is_none_or(|i| i == 0))
    );
    assert_eq!(assembled["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        assembled["usage"],
        json!({"prompt_tokens": 12 + 2200 + 18400, "completion_tokens": 184, "total_tokens": 12 + 2200 + 18400 + 184,
               "prompt_tokens_details": {"cached_tokens": 18400}})
    );
    let all = serde_json::to_string(&chunks).expect("json");
    assert!(!all.contains("EpIBCkYI"), "the signature does not leak");

    // And back to Anthropic: the thinking survives unsigned, cache writes count as input.
    let mut wire = String::new();
    for chunk in &chunks {
        wire.push_str(&sse::encode_json(None, chunk));
    }
    wire.push_str(sse::OPENAI_DONE);
    let back = accumulate_anthropic(&run_openai_to_anthropic(&openai_chunks(&wire)));
    let original = accumulate_anthropic(&events);
    assert_eq!(back["content"], with_unsigned_thinking(&original)["content"]);
    assert_eq!(
        back["usage"],
        json!({"input_tokens": 12 + 2200, "output_tokens": 184, "cache_read_input_tokens": 18400, "cache_creation_input_tokens": 0})
    );
}

#[test]
fn unsigned_thinking_from_a_translated_answer_is_stripped_before_anthropic_sees_it() {
    // Claude Code got its last answer from an OpenAI deployment, and sends it back to Anthropic.
    let answer =
        accumulate_anthropic(&run_openai_to_anthropic(&openai_chunks(fixtures::OPENAI_STREAM_REASONING)));
    let mut req = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [
            {"role": "user", "content": "Fix the cart."},
            {"role": "assistant", "content": answer["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_00_Qm7xK2pL9vR4tY8wZ1nB5cD3", "content": "export function total(items) {}"}
            ]}
        ]
    });
    assert!(strip_unsigned_thinking(&mut req));
    assert_eq!(req["messages"][1]["content"], json!([answer["content"][1], answer["content"][2]]));
    // That turn called a tool without (signed) thinking: Anthropic would refuse thinking now.
    assert!(req.get("thinking").is_none());

    // Signed thinking, and requests without any thinking, are left as they are.
    let mut signed = fixture(fixtures::CLAUDE_CODE_REQUEST);
    let original = signed.clone();
    assert!(!strip_unsigned_thinking(&mut signed));
    assert_eq!(signed, original);

    // An unsigned thinking block before a plain answer goes; the answer and thinking stay on.
    let mut req = json!({
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "greet", "signature": ""}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "greet"}, {"type": "text", "text": "Hello!"}]},
            {"role": "user", "content": "bye"}
        ]
    });
    assert!(strip_unsigned_thinking(&mut req));
    assert_eq!(
        req["messages"],
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
            {"role": "user", "content": "bye"}
        ])
    );
    assert!(req.get("thinking").is_some());
}
