#![allow(clippy::unwrap_used)] // a test fails loudly on what it did not expect

use serde_json::{Value, json};

use super::*;
use crate::protocol::TranslateError;

fn shell() -> Value {
    json!({"type": "function", "name": "shell", "parameters": {"type": "object"}})
}

fn codex_like_request() -> Value {
    json!({
        "model": "gpt-helix",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: none"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "make a file"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xyz"},
            {"type": "function_call", "call_id": "call_a", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
            {"type": "function_call", "call_id": "call_b", "name": "shell", "arguments": "{\"command\":[\"pwd\"]}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "call_b", "output": "/w"},
            {"type": "custom_tool_call", "call_id": "call_c", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_c", "output": "Done!"},
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "run", "parameters": {"type": "object", "properties": {"command": {"type": "array"}}}, "strict": false},
            {"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"effort": "medium"},
        "store": false,
        "stream": true,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "abc",
    })
}

#[test]
fn a_codex_like_request_becomes_chat_messages_in_order() {
    let call = to_chat(&codex_like_request(), &[]).expect("translates");
    let chat = &call.chat;
    let roles: Vec<&str> =
        chat["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "system", "user", "assistant", "tool", "tool", "assistant", "tool"]);
    assert_eq!(chat["messages"][0]["content"], "You are a coding agent.");
    assert_eq!(chat["messages"][1]["content"], "sandbox: none");
    assert_eq!(chat["messages"][2]["content"], "make a file");
    // the two consecutive calls are one assistant turn
    let calls = chat["messages"][3]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["id"], "call_b");
    assert_eq!(calls[1]["function"]["arguments"], "{\"command\":[\"pwd\"]}");
    assert_eq!(chat["messages"][5]["tool_call_id"], "call_b");
    // a custom tool's input travels wrapped
    let custom = &chat["messages"][6]["tool_calls"][0]["function"];
    assert_eq!(custom["name"], "apply_patch");
    assert_eq!(
        serde_json::from_str::<Value>(custom["arguments"].as_str().unwrap()).unwrap(),
        json!({"input": "*** Begin Patch"})
    );
    assert_eq!(chat["tools"][0]["function"]["name"], "shell");
    assert_eq!(chat["tools"][1]["function"]["parameters"]["required"], json!(["input"]));
    assert!(chat["tools"][1]["function"]["description"].as_str().unwrap().contains("start: x"));
    assert_eq!(chat["parallel_tool_calls"], false);
    assert_eq!(chat["reasoning_effort"], "medium");
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    for absent in ["store", "include", "prompt_cache_key", "instructions", "input", "reasoning"] {
        assert!(chat.get(absent).is_none(), "{absent} is not a Chat field");
    }
    assert!(!call.ctx.stored());
    assert_eq!(call.ctx.kind_of("apply_patch"), ToolKind::Custom);
    assert_eq!(call.input_items.len(), 9);
}

#[test]
fn history_comes_before_the_new_input_and_a_string_input_is_a_user_message() {
    let history = vec![
        json!({"type": "message", "role": "user", "content": "first"}),
        message_item("msg_1", "answer", "completed"),
    ];
    let call =
        to_chat(&json!({"model": "m", "input": "second", "max_output_tokens": 50}), &history).expect("ok");
    let m = &call.chat["messages"];
    assert_eq!(m[0], json!({"role": "user", "content": "first"}));
    assert_eq!(m[1], json!({"role": "assistant", "content": "answer"}));
    assert_eq!(m[2], json!({"role": "user", "content": "second"}));
    assert_eq!(call.chat["max_tokens"], 50);
    assert!(call.chat.get("stream").is_none());
}

#[test]
fn images_and_structured_formats_are_mapped() {
    let req = json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is it"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
    ]}], "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": true}}});
    let call = to_chat(&req, &[]).expect("ok");
    let content = &call.chat["messages"][0]["content"];
    assert_eq!(
        content[1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}})
    );
    assert_eq!(call.chat["response_format"]["json_schema"]["name"], "x");
}

#[test]
fn what_chat_cannot_express_is_refused_naming_it() {
    // a hosted tool offered is left out; forcing one cannot be served
    let hosted = json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}, shell()]});
    let call = to_chat(&hosted, &[]).expect("served without the hosted tool");
    assert_eq!(call.dropped_tools, ["web_search"]);
    assert_eq!(call.chat["tools"].as_array().map(Vec::len), Some(1));
    let forced = json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}});
    match to_chat(&forced, &[]) {
        Err(TranslateError::Unsupported(m)) => assert!(m.contains("web_search"), "{m}"),
        other => panic!("expected unsupported, got {other:?}"),
    }
    // a namespace's tools are offered flat
    let ns = json!({"model": "m", "input": "hi", "tools": [{"type": "namespace", "name": "multi_agent_v1", "tools": [shell()]}]});
    let call = to_chat(&ns, &[]).expect("ok");
    assert_eq!(call.chat["tools"][0]["function"]["name"], "shell");
    let reference = json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]});
    assert!(
        matches!(to_chat(&reference, &[]), Err(TranslateError::Unsupported(m)) if m.contains("item_reference"))
    );
    let file = json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]});
    assert!(matches!(to_chat(&file, &[]), Err(TranslateError::Unsupported(_))));
    assert!(matches!(to_chat(&json!({"model": "m"}), &[]), Err(TranslateError::Invalid(_))));
    assert!(matches!(to_chat(&json!({"model": "m", "input": 3}), &[]), Err(TranslateError::Invalid(_))));
    assert!(matches!(
        to_chat(&json!({"model": "m", "input": [{"type": "message"}]}), &[]),
        Err(TranslateError::Invalid(_))
    ));
}

fn ctx_for(req: &Value) -> ResponseContext {
    to_chat(req, &[]).expect("ok").ctx
}

#[test]
fn a_chat_answer_becomes_a_response_with_the_clients_model_and_usage() {
    let ctx = ctx_for(&codex_like_request());
    let chat = json!({
        "id": "chatcmpl-1", "model": "upstream-model-2025",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.",
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "shell", "arguments": "{\"command\":[\"ls\"]}"}},
                {"id": "call_10", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\\n\"}"}},
            ]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                  "prompt_tokens_details": {"cached_tokens": 40}, "completion_tokens_details": {"reasoning_tokens": 5}},
    });
    let (resp, output) = chat_to_response(&chat, &ctx);
    assert_eq!(resp["object"], "response");
    assert_eq!(resp["model"], "gpt-helix");
    assert_eq!(resp["status"], "completed");
    assert!(resp["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(output.len(), 3);
    assert_eq!(resp["output"][0]["content"][0]["text"], "Let me look.");
    assert_eq!(resp["output"][1]["type"], "function_call");
    assert_eq!(resp["output"][1]["call_id"], "call_9");
    assert_eq!(resp["output"][2]["type"], "custom_tool_call");
    assert_eq!(resp["output"][2]["input"], "*** Begin Patch\n");
    assert_eq!(resp["usage"]["input_tokens"], 100);
    assert_eq!(resp["usage"]["input_tokens_details"]["cached_tokens"], 40);
    assert_eq!(resp["usage"]["output_tokens_details"]["reasoning_tokens"], 5);
    assert_eq!(resp["usage"]["total_tokens"], 120);
    assert_eq!(resp["store"], false);
    assert_eq!(resp["parallel_tool_calls"], false);

    let cut = json!({"choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "abc"}}]});
    let (resp, _) = chat_to_response(&cut, &ctx);
    assert_eq!(resp["status"], "incomplete");
    assert_eq!(resp["incomplete_details"]["reason"], "max_output_tokens");
    assert!(resp["usage"].is_null());
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn a_chat_stream_becomes_responses_events_in_order_with_sequence_numbers() {
    let mut s = ChatToResponsesStream::new(ctx_for(&codex_like_request()));
    let mut all = Vec::new();
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "lo"}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "shell", "arguments": ""}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"command\":"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "[\"ls\"]}"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}),
    ];
    for c in &chunks {
        all.extend(s.push(c));
    }
    all.extend(s.finish());
    assert!(s.is_done());
    assert_eq!(
        names(&all),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (name, data)) in all.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64);
        assert_eq!(data["type"], name.as_str());
    }
    assert_eq!(all[6].1["text"], "Hello");
    assert_eq!(all[12].1["arguments"], "{\"command\":[\"ls\"]}");
    assert_eq!(all[13].1["item"]["call_id"], "call_1");
    assert_eq!(all[13].1["output_index"], 1);
    let done = &all[14].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"].as_array().unwrap().len(), 2);
    assert_eq!(done["usage"]["total_tokens"], 10);
    assert_eq!(s.output().len(), 2);
    // nothing after the end
    assert!(s.push(&chunks[1]).is_empty());
    assert!(s.finish().is_empty());
}

#[test]
fn an_error_chunk_fails_the_response_and_a_custom_call_streams_its_input_whole() {
    let mut s = ChatToResponsesStream::new(ctx_for(&codex_like_request()));
    let mut all = s.push(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_p", "function": {"name": "apply_patch", "arguments": "{\"input\":\"abc\"}"}}]}}]}));
    all.extend(s.push(
        &json!({"error": {"message": "upstream broke", "type": "server_error", "code": "upstream_failed"}}),
    ));
    let n = names(&all);
    assert_eq!(n[2], "response.output_item.added");
    assert_eq!(all[2].1["item"]["type"], "custom_tool_call");
    assert_eq!(&n[n.len() - 2..], ["error", "response.failed"]);
    assert_eq!(all[all.len() - 2].1["code"], "upstream_failed");
    assert_eq!(all[all.len() - 1].1["response"]["status"], "failed");
    assert!(s.is_done());

    let mut s = ChatToResponsesStream::new(ctx_for(&codex_like_request()));
    let mut all = s.push(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_p", "function": {"name": "apply_patch", "arguments": "{\"input\":\"abc\"}"}}]}, "finish_reason": "tool_calls"}]}));
    all.extend(s.finish());
    let input_done =
        all.iter().find(|(n, _)| n == "response.custom_tool_call_input.done").expect("input done");
    assert_eq!(input_done.1["input"], "abc");
    assert_eq!(all.last().unwrap().1["response"]["output"][0]["input"], "abc");
}

#[test]
fn the_store_chains_turns_per_project_and_stays_bounded() {
    let store = ResponseStore::new(3, 1 << 20);
    let item = |t: &str| json!({"type": "message", "role": "user", "content": t});
    store.put("p", "r1", None, vec![item("1"), item("1a")]).unwrap();
    store.put("p", "r2", Some("r1"), vec![item("2")]).unwrap();
    assert_eq!(store.conversation("p", "r2").unwrap(), vec![item("1"), item("1a"), item("2")]);
    // another project cannot read them
    assert!(store.conversation("q", "r2").is_none());
    store.put("p", "r3", Some("r2"), vec![item("3")]).unwrap();
    store.put("p", "r4", Some("r3"), vec![item("4")]).unwrap();
    assert_eq!(store.len(), 3);
    // r1 was evicted: the chain through it is broken, and says so
    assert!(store.conversation("p", "r4").is_none());
    assert_eq!(store.conversation("p", "r3").map(|c| c.len()), None);
    // bytes bound the store too
    let small = ResponseStore::new(100, 200);
    assert_eq!(small.put("p", "big", None, vec![json!("x".repeat(300))]), Err(StoreFull));
    for i in 0..10 {
        small.put("p", &format!("r{i}"), None, vec![json!("y".repeat(50))]).unwrap();
    }
    assert!(small.len() <= 3);
}
