//! The OpenAI Responses API on the gateway (issue 13): served by Chat Completions and Anthropic
//! deployments through the same chain walk, whole and streamed, with tool calls,
//! `previous_response_id` and `store: false`.

#![allow(clippy::unwrap_used)] // a test fails loudly on what it did not expect

use helix_core::gateway_config::ProviderKind;
use helix_tests::fake_provider::{FakeProvider, Mode};
use serde_json::{Value, json};

use crate::gateway::{chain, deployment, header, http, parse_sse, start};

async fn post_responses(url: &str, body: &Value) -> reqwest::Response {
    http().post(format!("{url}/v1/responses")).json(body).send().await.expect("send")
}

fn shell_tool() -> Value {
    json!({"type": "function", "name": "shell", "description": "runs a command",
           "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}})
}

#[tokio::test]
async fn a_tool_call_loop_continues_by_previous_response_id_through_a_chat_deployment() {
    let fake = FakeProvider::start().await;
    let (_helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "upstream-gpt")];
        gw.models = vec![chain("gpt-helix", &["oa"])];
    })
    .await;
    fake.script([Mode::ToolCall]);
    let res = post_responses(
        &url,
        &json!({"model": "gpt-helix", "instructions": "be brief", "input": "list files", "tools": [shell_tool()]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("oa"));
    let first: Value = res.json().await.expect("json");
    assert_eq!(first["object"], "response");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["model"], "gpt-helix", "the answer keeps the model name asked for");
    let call =
        first["output"].as_array().unwrap().iter().find(|i| i["type"] == "function_call").expect("a call");
    assert_eq!(call["name"], "shell");
    assert!(first["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let upstream = fake.last_request().expect("upstream call");
    assert_eq!(upstream.path, "/v1/chat/completions");
    assert_eq!(upstream.body["model"], "upstream-gpt");
    assert_eq!(upstream.body["messages"][0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(upstream.body["tools"][0]["function"]["name"], "shell");

    // the next turn sends only the tool's output and the id
    let second = post_responses(
        &url,
        &json!({"model": "gpt-helix", "previous_response_id": first["id"], "tools": [shell_tool()],
                "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt b.txt"}]}),
    )
    .await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.expect("json");
    assert_eq!(second["previous_response_id"], first["id"]);
    assert_eq!(second["output"][0]["type"], "message");
    let messages = &fake.last_request().expect("second call").body["messages"];
    let roles: Vec<&str> = messages.as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    // as OpenAI does, the earlier turn's `instructions` are not carried over
    assert_eq!(roles, ["user", "assistant", "tool"], "the earlier turn was replayed: {messages}");
    assert_eq!(messages[1]["tool_calls"][0]["id"], call["call_id"]);
    assert_eq!(messages[2]["content"], "a.txt b.txt");

    // `store: false` answers, but cannot be continued; an unknown id is a clear 400 before any call
    let unstored = post_responses(&url, &json!({"model": "gpt-helix", "input": "hi", "store": false})).await;
    let unstored: Value = unstored.json().await.expect("json");
    let before = fake.request_count();
    for id in [unstored["id"].clone(), json!("resp_nope")] {
        let res = post_responses(
            &url,
            &json!({"model": "gpt-helix", "input": "again", "previous_response_id": id}),
        )
        .await;
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.expect("json");
        assert!(body["error"]["message"].as_str().unwrap().contains("is not stored"), "{body}");
    }
    assert_eq!(fake.request_count(), before, "nothing reached the upstream");
}

#[tokio::test]
async fn a_stream_through_an_anthropic_deployment_after_a_fallback_has_the_responses_events() {
    let broken = FakeProvider::start().await;
    let fake = FakeProvider::start().await;
    broken.set_default(Mode::status(500));
    let (_helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("oa-broken", ProviderKind::Openai, &broken, "gpt-x"),
            deployment("an", ProviderKind::Anthropic, &fake, "claude-up"),
        ];
        gw.models = vec![chain("gpt-helix", &["oa-broken", "an"])];
    })
    .await;
    let res =
        post_responses(&url, &json!({"model": "gpt-helix", "input": "hello there", "stream": true})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("an"));
    let text = res.text().await.expect("body");
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap_or("")).collect();
    assert_eq!(names.first(), Some(&"response.created"), "{names:?}");
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    for needed in ["response.output_item.added", "response.output_text.delta", "response.output_item.done"] {
        assert!(names.contains(&needed), "{needed} in {names:?}");
    }
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("response.output_text.delta"))
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, "echo: hello there");
    let done: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(done["response"]["model"], "gpt-helix");
    assert!(done["response"]["usage"]["output_tokens"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(fake.last_request().unwrap().path, "/v1/messages");
    // the stream's last word is the cost comment
    let last_line = text.trim_end().lines().last().unwrap_or_default();
    let comment: Value = serde_json::from_str(last_line.strip_prefix(": helix ").expect(last_line)).unwrap();
    assert_eq!(comment["deployment"], "an");
    assert!(comment["output_tokens"].as_u64().unwrap() > 0);

    // a streamed turn is kept like a whole one
    let res = post_responses(
        &url,
        &json!({"model": "gpt-helix", "input": "and then", "previous_response_id": done["response"]["id"]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let sent = &fake.last_request().unwrap().body["messages"];
    assert_eq!(sent[0]["content"], "hello there", "{sent}");
    assert_eq!(sent[1]["role"], "assistant", "{sent}");

    // a hosted tool offered is left out (Codex offers web search); forcing one is a 400 naming
    // it, before any call
    let res =
        post_responses(&url, &json!({"model": "gpt-helix", "input": "x", "tools": [{"type": "web_search"}]}))
            .await;
    assert_eq!(res.status(), 200);
    assert!(fake.last_request().unwrap().body.get("tools").is_none());
    let before = fake.request_count() + broken.request_count();
    let res = post_responses(
        &url,
        &json!({"model": "gpt-helix", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}),
    )
    .await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert!(body["error"]["message"].as_str().unwrap().contains("web_search"), "{body}");
    assert_eq!(fake.request_count() + broken.request_count(), before);
}

#[tokio::test]
async fn a_deployment_serving_the_responses_api_gets_the_call_as_it_came_and_falls_back_to_chat() {
    let native = FakeProvider::start().await;
    let chat = FakeProvider::start().await;
    let (_helix, url) = start(|gw| {
        let mut d = deployment("oa-responses", ProviderKind::Openai, &native, "gpt-native");
        d.responses_api = true;
        gw.deployments = vec![d, deployment("oa-chat", ProviderKind::Openai, &chat, "gpt-chat")];
        gw.models = vec![chain("gpt-helix", &["oa-responses", "oa-chat"])];
    })
    .await;
    let body =
        json!({"model": "gpt-helix", "input": "pass me through", "include": ["reasoning.encrypted_content"]});
    let res = post_responses(&url, &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("oa-responses"));
    let r: Value = res.json().await.expect("json");
    assert_eq!(r["id"], "resp_fake1", "the upstream's own response");
    assert_eq!(r["model"], "gpt-helix");
    assert_eq!(r["output"][0]["content"][0]["text"], "echo: pass me through");
    let sent = native.last_request().unwrap();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(sent.body["model"], "gpt-native");
    assert_eq!(sent.body["include"], json!(["reasoning.encrypted_content"]), "forwarded as it came");

    // streamed: the upstream's events, relayed, then the cost comment
    let res =
        post_responses(&url, &json!({"model": "gpt-helix", "input": "stream me", "stream": true})).await;
    let text = res.text().await.expect("body");
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap_or("")).collect();
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    let done: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(done["response"]["model"], "gpt-helix");
    assert!(text.trim_end().lines().last().unwrap().starts_with(": helix {\"cache_read_tokens\""), "{text}");
    assert!(text.contains("\"deployment\":\"oa-responses\""));

    // an id the gateway did not store goes to the deployment that made it, and nowhere else
    let res = post_responses(
        &url,
        &json!({"model": "gpt-helix", "input": "and then", "previous_response_id": "resp_fake1"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(native.last_request().unwrap().body["previous_response_id"], "resp_fake1");
    assert_eq!(chat.request_count(), 0);

    // the native deployment failing: the chat one serves the translated call
    native.set_default(Mode::status(500));
    let res = post_responses(&url, &json!({"model": "gpt-helix", "input": "fall back"})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("oa-chat"));
    let r: Value = res.json().await.expect("json");
    assert_eq!(r["output"][0]["content"][0]["text"], "echo: fall back");
    assert_eq!(chat.last_request().unwrap().path, "/v1/chat/completions");
}
