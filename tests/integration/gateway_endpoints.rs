//! The gateway's other provider endpoints (issue 13): embeddings, legacy completions and
//! count_tokens through chains (deployments of the other protocol skipped), `GET
//! /v1/models/{id}`, and answers that keep the model name the client asked for.

#![allow(clippy::unwrap_used)] // a test fails loudly on what it did not expect

use helix_core::gateway_config::ProviderKind;
use helix_tests::fake_provider::{FakeProvider, Mode, ScriptEntry};
use serde_json::{Value, json};

use crate::gateway::{
    chain, chat, deployment, header, http, openai_stream_text, parse_sse, post_openai, start, streaming,
};

async fn post(url: &str, path: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{url}{path}"))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn embeddings_and_legacy_completions_go_to_the_openai_deployments_of_a_chain() {
    let anthropic = FakeProvider::start().await;
    let broken = FakeProvider::start().await;
    let openai = FakeProvider::start().await;
    broken.set_default(Mode::status(503));
    let (_helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("an", ProviderKind::Anthropic, &anthropic, "claude-up"),
            deployment("oa-broken", ProviderKind::Openai, &broken, "embed-up"),
            deployment("oa", ProviderKind::Openai, &openai, "embed-up"),
        ];
        gw.models = vec![chain("embedder", &["an", "oa-broken", "oa"]), chain("claude-only", &["an"])];
    })
    .await;
    let res = http()
        .post(format!("{url}/v1/embeddings"))
        .json(&json!({"model": "embedder", "input": ["one two", "three"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("oa"), "fell back past the broken one");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["model"], "embedder", "the answer keeps the name asked for");
    assert_eq!(openai.last_request().unwrap().path, "/v1/embeddings");
    assert_eq!(openai.last_request().unwrap().body["model"], "embed-up");
    assert_eq!(anthropic.request_count(), 0, "an Anthropic deployment serves no embeddings");

    let res = http()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": "embedder", "prompt": "say hi", "max_tokens": 5}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "echo: say hi");
    let res = http()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": "embedder", "prompt": "say hi", "stream": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let events = parse_sse(&res.text().await.expect("body"));
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let text: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "echo: say hi");

    let res = http()
        .post(format!("{url}/v1/embeddings"))
        .json(&json!({"model": "claude-only", "input": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert!(body["error"]["message"].as_str().unwrap().contains("/v1/embeddings"), "{body}");
}

#[tokio::test]
async fn count_tokens_is_forwarded_to_an_anthropic_deployment_or_estimated() {
    let anthropic = FakeProvider::start().await;
    let openai = FakeProvider::start().await;
    let (_helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("oa", ProviderKind::Openai, &openai, "gpt-up"),
            deployment("an", ProviderKind::Anthropic, &anthropic, "claude-up"),
        ];
        gw.models = vec![chain("claude-*", &["oa", "an"]), chain("gpt-only", &["oa"])];
    })
    .await;
    let body = |model: &str| json!({"model": model, "system": "be brief", "messages": [{"role": "user", "content": "count these five words"}]});
    let res = post(&url, "/v1/messages/count_tokens", &body("claude-sonnet-4-5")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("an"));
    assert!(header(&res, "x-helix-token-count").is_none());
    let counted: Value = res.json().await.expect("json");
    assert!(counted["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(anthropic.last_request().unwrap().path, "/v1/messages/count_tokens");
    assert_eq!(openai.request_count(), 0);

    // no Anthropic deployment: estimated, and said so
    let res = post(&url, "/v1/messages/count_tokens", &body("gpt-only")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-token-count").as_deref(), Some("estimated"));
    let estimated: Value = res.json().await.expect("json");
    assert!(estimated["input_tokens"].as_u64().unwrap() >= 5, "{estimated}");
    // the Anthropic deployment failing: estimated too, the client keeps going
    anthropic.script_entries([ScriptEntry::new(Mode::status(529)).for_path("/v1/messages/count_tokens")]);
    let res = post(&url, "/v1/messages/count_tokens", &body("claude-haiku")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-token-count").as_deref(), Some("estimated"));
    assert_eq!(anthropic.queued(), 0, "the failing deployment was asked");
    assert_eq!(openai.request_count(), 0);
}

#[tokio::test]
async fn models_are_found_by_name_and_glob_and_answers_keep_the_name_asked_for() {
    let fake = FakeProvider::start().await;
    let (_helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "upstream-gpt-2025")];
        gw.models = vec![chain("smart", &["oa"]), chain("claude-*", &["oa"])];
    })
    .await;
    for id in ["smart", "claude-opus-4-1", "oa"] {
        let res = http().get(format!("{url}/v1/models/{id}")).send().await.expect("send");
        assert_eq!(res.status(), 200, "{id}");
        let m: Value = res.json().await.expect("json");
        assert_eq!(m["id"], id);
        assert_eq!(m["object"], "model");
    }
    let res = http()
        .get(format!("{url}/v1/models/claude-sonnet-4-5"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("send");
    let m: Value = res.json().await.expect("json");
    assert_eq!(m["type"], "model");
    assert_eq!(m["display_name"], "claude-sonnet-4-5");
    let res = http().get(format!("{url}/v1/models/nope")).send().await.expect("send");
    assert_eq!(res.status(), 404);
    let e: Value = res.json().await.expect("json");
    assert!(e["error"]["message"].as_str().unwrap().contains("nope"), "{e}");

    let res = post_openai(&url, &chat("smart", "hi")).await;
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["model"], "smart");
    let res = post_openai(&url, &streaming(chat("smart", "hi"))).await;
    let events = parse_sse(&res.text().await.expect("body"));
    assert_eq!(openai_stream_text(&events), "echo: hi");
    for (_, d) in events.iter().filter(|(_, d)| d != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["model"], "smart", "{d}");
    }
}
