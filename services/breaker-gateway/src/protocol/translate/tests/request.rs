//! Request translation in both directions.

use serde_json::{Value, json};

use super::*;

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
            "reasoning_effort": "low",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
                    {"type": "text", "text": "plain words"}
                ]},
                // The assistant turn held only thinking and is left out.
                {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: chart attached"},
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
        base(json!([{"role": "system", "content": [{"type": "image", "source": {}}]}])),
        base(
            json!([{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]}]),
        ),
        base(
            json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document", "source": {}}]}]}]),
        ),
        json!({"messages": [], "output_format": {"type": "json_schema", "schema": {"type": "object"}}}),
        json!({"messages": [], "output_config": {"format": {"type": "json_schema", "schema": {}}}}),
        json!({"messages": [], "stop_sequences": ["a", "b", "c", "d", "e"]}),
    ];
    for req in unsupported_cases {
        let err = anthropic_request_to_openai(&req, "gpt").expect_err("unsupported");
        assert!(matches!(err, TranslateError::Unsupported(_)), "{req}: {err}");
    }
    let invalid_cases = [
        json!([]),
        json!({"model": "m"}),
        base(json!([{"role": "tool", "content": "x"}])),
        base(json!([{"role": "system", "content": 5}])),
        base(json!([{"role": "user", "content": 5}])),
        base(json!([{"role": "user", "content": [{"type": "tool_result", "content": "no id"}]}])),
        base(json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}])),
        base(json!([{"role": "user", "content": [{"text": "no type"}]}])),
        json!({"messages": [], "stop_sequences": "END"}),
        json!({"messages": [], "stop_sequences": ["END", 4]}),
        json!({"messages": [], "thinking": {"type": "enabled"}}),
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

// ---- mapping details added for coding agents ----

#[test]
fn anthropic_system_messages_inside_messages_stay_in_place() {
    let req = json!({"model": "m", "max_tokens": 5, "system": "top", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "be terse"},
        {"role": "system", "content": ""},
        {"role": "system", "content": [
            {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "two"}
        ]},
        {"role": "assistant", "content": "ok"}
    ]});
    let out = anthropic_request_to_openai(&req, "gpt").expect("translates");
    assert_eq!(
        out["messages"],
        json!([
            {"role": "system", "content": "top"},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "be terse"},
            // An empty one is left out.
            {"role": "system", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "ok"}
        ])
    );
}

#[test]
fn openai_system_and_developer_messages_anywhere_are_appended_to_the_system_prompt() {
    let req = json!({"messages": [
        {"role": "developer", "content": "first"},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": ""}]},
        {"role": "assistant", "content": "hello"},
        {"role": "developer", "content": "third"},
        {"role": "user", "content": "bye"}
    ]});
    let out = openai_request_to_anthropic(&req, "claude").expect("translates");
    assert_eq!(
        out["system"],
        json!([{"type": "text", "text": "first"}, {"type": "text", "text": "second"}, {"type": "text", "text": "third"}])
    );
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"}
        ])
    );
}

#[test]
fn thinking_budget_and_reasoning_effort_map_at_the_documented_thresholds() {
    let req =
        |thinking: Value| json!({"model": "m", "max_tokens": 64000, "messages": [], "thinking": thinking});
    let effort = |thinking: Value, field: MaxTokensField| {
        anthropic_request_to_openai_with(&req(thinking), "o3", field)
            .expect("ok")
            .get("reasoning_effort")
            .cloned()
    };
    let reasoning = MaxTokensField::MaxCompletionTokens;
    for (budget, expected) in
        [(1024, "low"), (4096, "low"), (4097, "medium"), (16384, "medium"), (16385, "high"), (63999, "high")]
    {
        let thinking = json!({"type": "enabled", "budget_tokens": budget});
        assert_eq!(effort(thinking.clone(), reasoning), Some(json!(expected)), "{budget}");
        // Non-reasoning deployments reject reasoning_effort: it is not sent to them.
        assert_eq!(effort(thinking, MaxTokensField::MaxTokens), None, "{budget}");
    }
    assert_eq!(effort(json!({"type": "disabled"}), reasoning), None);
    assert_eq!(effort(json!({"type": "adaptive"}), reasoning), None);

    // And back: each effort's budget maps to the same effort again.
    for effort_name in ["low", "medium", "high"] {
        let openai = json!({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort_name, "max_tokens": 64000});
        let anthropic = openai_request_to_anthropic(&openai, "claude").expect("ok");
        let again = anthropic_request_to_openai_with(&anthropic, "o3", reasoning).expect("ok");
        assert_eq!(again["reasoning_effort"], effort_name);
    }
}

#[test]
fn stop_sequences_and_stop_map_both_ways() {
    let anthropic =
        |stops: Value| json!({"model": "m", "max_tokens": 5, "messages": [], "stop_sequences": stops});
    let four = json!(["a", "b", "c", "d"]);
    assert_eq!(anthropic_request_to_openai(&anthropic(four.clone()), "g").expect("ok")["stop"], four);
    assert!(anthropic_request_to_openai(&anthropic(json!([])), "g").expect("ok").get("stop").is_none());
    let err =
        anthropic_request_to_openai(&anthropic(json!(["a", "b", "c", "d", "e"])), "g").expect_err("five");
    assert_eq!(
        err.to_string(),
        "cannot be translated to the other protocol: `stop_sequences` with 5 entries (OpenAI accepts at most 4)"
    );

    let openai = |stop: Value| json!({"messages": [], "stop": stop});
    let stops = |stop: Value| {
        openai_request_to_anthropic(&openai(stop), "c").expect("ok").get("stop_sequences").cloned()
    };
    assert_eq!(stops(json!("END")), Some(json!(["END"])));
    assert_eq!(stops(json!(["a", "b"])), Some(json!(["a", "b"])));
    assert_eq!(stops(json!([])), None);
    assert_eq!(stops(json!("")), None);
    assert_eq!(stops(Value::Null), None);
    for bad in [json!(5), json!(["a", 1])] {
        let err = openai_request_to_anthropic(&openai(bad.clone()), "c").expect_err("invalid");
        assert!(matches!(err, TranslateError::Invalid(_)), "{bad}: {err}");
    }
}

#[test]
fn several_tool_results_become_tool_messages_then_one_user_message() {
    let image = |data: &str| json!({"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": data}});
    let req = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "before"},
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": [{"type": "text", "text": "a1"}, image("R0lGa"), {"type": "text", "text": "a2"}]},
        {"type": "tool_result", "tool_use_id": "toolu_b", "is_error": true},
        {"type": "tool_result", "tool_use_id": "toolu_c", "content": [image("R0lGc")], "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "after"}
    ]}]});
    let out = anthropic_request_to_openai(&req, "gpt").expect("translates");
    let url = |data: &str| json!({"type": "image_url", "image_url": {"url": format!("data:image/gif;base64,{data}")}});
    assert_eq!(
        out["messages"],
        json!([
            {"role": "tool", "tool_call_id": "toolu_a", "content": "a1\n\na2"},
            {"role": "tool", "tool_call_id": "toolu_b", "content": "Error"},
            {"role": "tool", "tool_call_id": "toolu_c", "content": ""},
            // The turn's own blocks and the results' images, in the order they came.
            {"role": "user", "content": [
                {"type": "text", "text": "before"}, url("R0lGa"), url("R0lGc"), {"type": "text", "text": "after"}
            ]}
        ])
    );
}

#[test]
fn image_data_urls_parse_back_into_base64_sources() {
    let req = |url: &str| json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]});
    let source = |url: &str| {
        openai_request_to_anthropic(&req(url), "c").expect("ok")["messages"][0]["content"][0]["source"]
            .clone()
    };
    assert_eq!(
        source("data:image/png;base64,iVBORw0KGgo"),
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo"})
    );
    assert_eq!(
        source("data:image/jpeg;name=shot.jpg;base64,/9j/4AAQ"),
        json!({"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"})
    );
    assert_eq!(
        source("https://example.com/a.png"),
        json!({"type": "url", "url": "https://example.com/a.png"})
    );
    // The short form, a bare string, as some clients send it.
    let bare = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://example.com/b.png"}]}]});
    assert_eq!(
        openai_request_to_anthropic(&bare, "c").expect("ok")["messages"][0]["content"][0]["source"]["url"],
        "https://example.com/b.png"
    );
    for url in ["data:;base64,AAAA", "data:image/png,raw"] {
        let err = openai_request_to_anthropic(&req(url), "c").expect_err("not base64");
        assert!(matches!(err, TranslateError::Unsupported(_)), "{url}: {err}");
    }
}

#[test]
fn harmless_openai_metadata_is_dropped_and_the_user_kept() {
    let req = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"trace": "x"}, "store": true, "service_tier": "flex", "user": "u-1",
        "prompt_cache_key": "k", "stream_options": {"include_usage": true}, "seed": 7
    });
    let out = openai_request_to_anthropic(&req, "claude").expect("translates");
    assert_eq!(
        out,
        json!({
            "model": "claude", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": DEFAULT_ANTHROPIC_MAX_TOKENS, "metadata": {"user_id": "u-1"}
        })
    );
    let req = json!({"model": "m", "max_tokens": 5, "messages": [], "metadata": {"user_id": "u-2", "other": 1},
                     "service_tier": "auto", "top_k": 5, "context_management": {"edits": []}});
    let out = anthropic_request_to_openai(&req, "gpt").expect("translates");
    assert_eq!(out, json!({"model": "gpt", "messages": [], "max_tokens": 5, "user": "u-2"}));
}
