//! The breaker-gateway end to end: Helix in-process on port 0, deployments pointing at scripted
//! fake providers on loopback, official-SDK-shaped requests over real HTTP.
//!
//! API keys are read from environment variables. Setting variables in a multi-threaded test
//! binary is `unsafe` (and racy) and the workspace forbids `unsafe`, so the tests that need keys
//! use variables this process already has, with long, distinct values (see [`existing_vars`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use helix_core::ServiceKind;
use helix_core::gateway_config::{
    BreakerGatewayConfig, DeploymentConfig, GatewayKeyConfig, ModelChainConfig, PriceConfig, ProviderKind,
};
use helix_tests::fake_provider::{FakeOptions, FakeProvider, Mode};
use helix_tests::{Helix, expect_problem, get_json};
use serde_json::{Value, json};

/// Every request of these tests ends within this (a hung gateway fails the test).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(CALL_TIMEOUT).build().expect("client")
}

/// `n` environment variables of this process with values usable as keys: long, printable, and
/// none contained in another (so finding one in a response cannot be a coincidence of another).
pub(crate) fn existing_vars(n: usize) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(_, v)| (16..=1024).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .collect();
    vars.sort();
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in vars {
        if out.iter().all(|(_, o)| !o.contains(v.as_str()) && !v.contains(o.as_str())) {
            out.push((k, v));
        }
        if out.len() == n {
            return out;
        }
    }
    panic!("the test process needs {n} environment variables with long, distinct values");
}

pub(crate) fn deployment(
    id: &str,
    provider: ProviderKind,
    fake: &FakeProvider,
    model: &str,
) -> DeploymentConfig {
    DeploymentConfig {
        id: id.to_owned(),
        provider,
        base_url: fake.url(),
        model: model.to_owned(),
        api_key_env: None,
        max_in_flight: None,
        breaker: None,
        responses_api: false,
    }
}

pub(crate) fn chain(name: &str, ids: &[&str]) -> ModelChainConfig {
    ModelChainConfig { name: name.to_owned(), chain: ids.iter().map(|s| (*s).to_owned()).collect() }
}

pub(crate) fn price(model: &str, input: f64, output: f64) -> PriceConfig {
    PriceConfig { model: model.to_owned(), input, output, cache_read: 0.0, cache_write: 0.0 }
}

/// Helix with `[breaker_gateway]` as `adjust` leaves it (no retries and fast backoff unless the
/// test says otherwise), and the gateway's base URL.
pub(crate) async fn start(adjust: impl FnOnce(&mut BreakerGatewayConfig)) -> (Helix, String) {
    let helix = Helix::start_with(|c| {
        let gw = &mut c.breaker_gateway;
        gw.max_retries = 0;
        gw.retry_base_backoff_ms = 10;
        adjust(gw);
    })
    .await;
    let url = helix.url(ServiceKind::BreakerGateway);
    (helix, url)
}

pub(crate) fn chat(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
}

fn message(model: &str, text: &str) -> Value {
    json!({ "model": model, "max_tokens": 64, "messages": [{ "role": "user", "content": text }] })
}

pub(crate) fn streaming(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

pub(crate) async fn post_openai(url: &str, body: &Value) -> reqwest::Response {
    http().post(format!("{url}/v1/chat/completions")).json(body).send().await.expect("send")
}

async fn post_anthropic(url: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{url}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("send")
}

pub(crate) fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// (event name, data) of each SSE event of `text`; comment lines are left out.
pub(crate) fn parse_sse(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data: Option<String> = None;
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.get_or_insert_with(String::new).push_str(d);
                }
            }
            data.map(|d| (event, d))
        })
        .collect()
}

/// The text of an OpenAI stream (its `delta.content`s), checking it ends with `[DONE]`.
pub(crate) fn openai_stream_text(events: &[(Option<String>, String)]) -> String {
    let (last, chunks) = events.split_last().expect("events");
    assert_eq!(last.1, "[DONE]", "{events:?}");
    chunks
        .iter()
        .map(|(_, d)| serde_json::from_str::<Value>(d).expect("chunk is json"))
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

/// The text of an Anthropic stream (its `text_delta`s), checking it ends with `message_stop`.
fn anthropic_stream_text(events: &[(Option<String>, String)]) -> String {
    assert_eq!(events.last().and_then(|e| e.0.as_deref()), Some("message_stop"), "{events:?}");
    events
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("content_block_delta"))
        .map(|(_, d)| serde_json::from_str::<Value>(d).expect("event is json"))
        .filter_map(|e| e["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}

pub(crate) async fn circuit(http: &reqwest::Client, url: &str, id: &str) -> Value {
    let list = get_json(http, &format!("{url}/v1/circuits")).await;
    list["circuits"]
        .as_array()
        .expect("circuits")
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no circuit {id}: {list}"))
}

/// Samples of the Prometheus text: `name{labels}` → value. Panics on a line that is neither a
/// comment nor a sample.
pub(crate) fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        assert!(name_end == series.len() || series.ends_with('}'), "bad labels in {line}");
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        out.insert(series.to_owned(), value);
    }
    out
}

#[tokio::test]
async fn same_protocol_calls_pass_bodies_headers_and_only_the_upstream_key_through() {
    let vars = existing_vars(3);
    let (openai_key_env, openai_key) = vars[0].clone();
    let (anthropic_key_env, anthropic_key) = vars[1].clone();
    let (gateway_key_env, gateway_key) = vars[2].clone();
    let fake_o = FakeProvider::start_with(FakeOptions {
        openai_key: Some(openai_key.clone()),
        ..FakeOptions::default()
    })
    .await;
    let fake_a = FakeProvider::start_with(FakeOptions {
        anthropic_key: Some(anthropic_key.clone()),
        ..FakeOptions::default()
    })
    .await;
    let (helix, url) = start(|gw| {
        let mut o = deployment("oa", ProviderKind::Openai, &fake_o, "gpt-4o-2024-08-06");
        o.api_key_env = Some(openai_key_env.clone());
        let mut a = deployment("an", ProviderKind::Anthropic, &fake_a, "claude-sonnet-4-5-20250929");
        a.api_key_env = Some(anthropic_key_env.clone());
        gw.deployments = vec![o, a];
        gw.models = vec![chain("gpt", &["oa"]), chain("claude", &["an"])];
        gw.keys = vec![GatewayKeyConfig {
            key_env: gateway_key_env.clone(),
            project: "shop".to_owned(),
            daily_budget_usd: None,
            max_in_flight: None,
        }];
        gw.prices = vec![price("gpt-4o", 2.5, 10.0), price("claude-sonnet-4-5", 3.0, 15.0)];
    })
    .await;
    let http = http();
    let mut seen = String::new();

    // OpenAI: the body arrives as sent (unknown fields included) with only the model replaced
    let mut body = chat("gpt", "hello there friend");
    body["x_unknown"] = json!({ "nested": [1, 2.5, null, "s"] });
    body["temperature"] = json!(0.25);
    let res = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&gateway_key)
        .header("x-custom", "kept")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("oa"));
    assert_eq!(header(&res, "x-helix-fallback-from"), None);
    let overhead: f64 = header(&res, "x-helix-overhead-ms").expect("overhead").parse().expect("number");
    assert!((0.0..5_000.0).contains(&overhead), "{overhead}");
    // the fake counts words: 3 in, "echo: hello there friend" = 4 out; gpt-4o prices the dated model
    let cost: f64 = header(&res, "x-helix-cost-usd").expect("cost").parse().expect("number");
    let expected = 3.0 / 1e6 * 2.5 + 4.0 / 1e6 * 10.0;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    seen.push_str(&format!("{:?}", res.headers()));
    let answer: Value = res.json().await.expect("json");
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: hello there friend");
    assert_eq!(answer["usage"]["prompt_tokens"], 3);
    seen.push_str(&answer.to_string());
    let sent = fake_o.last_request().expect("the fake was called");
    let mut expected_body = body.clone();
    expected_body["model"] = json!("gpt-4o-2024-08-06");
    assert_eq!(sent.body, expected_body);
    assert_eq!(sent.header("x-custom"), Some("kept"));
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {openai_key}").as_str()));
    // the upstream call continues the gateway's trace
    assert!(sent.header("traceparent").is_some_and(|t| t.starts_with("00-")), "{sent:?}");

    // Anthropic: its version and beta headers and unknown fields reach the fake too
    let mut body = message("claude", "hi from anthropic");
    body["metadata"] = json!({ "user_id": "u-1" });
    body["x_unknown"] = json!({ "a": true });
    let res = http
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", &gateway_key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "tools-2024-04-04")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("an"));
    let cost: f64 = header(&res, "x-helix-cost-usd").expect("cost").parse().expect("number");
    let expected = 3.0 / 1e6 * 3.0 + 4.0 / 1e6 * 15.0;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    seen.push_str(&format!("{:?}", res.headers()));
    let answer: Value = res.json().await.expect("json");
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], "echo: hi from anthropic");
    seen.push_str(&answer.to_string());
    let sent = fake_a.last_request().expect("the fake was called");
    let mut expected_body = body.clone();
    expected_body["model"] = json!("claude-sonnet-4-5-20250929");
    assert_eq!(sent.body, expected_body);
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("anthropic-beta"), Some("tools-2024-04-04"));
    assert_eq!(sent.header("x-api-key"), Some(anthropic_key.as_str()));

    // the gateway key never travels upstream
    for r in fake_o.requests().iter().chain(fake_a.requests().iter()) {
        assert!(r.headers.values().all(|v| !v.contains(&gateway_key)), "{r:?}");
    }

    // no key or a wrong key: 401 in the client's shape, nothing sent upstream
    let calls_before = fake_o.request_count() + fake_a.request_count();
    let res = http.post(format!("{url}/v1/chat/completions")).json(&chat("gpt", "x")).send().await;
    let res = res.expect("send");
    assert_eq!(res.status(), 401);
    let problem: Value = res.json().await.expect("json");
    assert_eq!(problem["error"]["type"], "authentication_error", "{problem}");
    assert_eq!(problem["error"]["code"], "unauthorized");
    let res = http
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", format!("{gateway_key}x"))
        .json(&message("claude", "x"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    let problem: Value = res.json().await.expect("json");
    assert_eq!(problem["type"], "error");
    assert_eq!(problem["error"]["type"], "authentication_error");
    assert_eq!(fake_o.request_count() + fake_a.request_count(), calls_before);

    // keys appear nowhere the gateway shows
    for path in ["/v1/circuits", "/metrics", "/ready", "/v1/models"] {
        let res = http.get(format!("{url}{path}")).bearer_auth(&gateway_key).send().await.expect("send");
        assert_eq!(res.status(), 200, "{path}");
        seen.push_str(&format!("{:?}", res.headers()));
        seen.push_str(&res.text().await.expect("text"));
    }
    for key in [&openai_key, &anthropic_key, &gateway_key] {
        assert!(!seen.contains(key.as_str()), "a key was shown");
    }
    helix.stop().await;
    fake_o.stop().await;
    fake_a.stop().await;
}

#[tokio::test]
async fn fallback_crosses_protocols_both_ways() {
    let fake_o = FakeProvider::start().await;
    let fake_a = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("oa", ProviderKind::Openai, &fake_o, "gpt-4o"),
            deployment("an", ProviderKind::Anthropic, &fake_a, "claude-sonnet-4-5"),
        ];
        gw.models = vec![chain("openai-first", &["oa", "an"]), chain("anthropic-first", &["an", "oa"])];
    })
    .await;
    let http = http();

    // OpenAI client, its OpenAI deployment answers 500: served by Anthropic, in OpenAI's shape
    fake_o.script([Mode::status(500)]);
    let res = post_openai(&url, &chat("openai-first", "one two")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("an"));
    assert_eq!(header(&res, "x-helix-fallback-from").as_deref(), Some("oa"));
    let answer: Value = res.json().await.expect("json");
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: one two");
    let sent = fake_a.last_request().expect("anthropic was called");
    assert_eq!(sent.path, "/v1/messages");
    assert!(sent.body["max_tokens"].as_u64().is_some(), "translation adds max_tokens: {sent:?}");
    assert!(sent.header("anthropic-version").is_some());

    // Anthropic client, its Anthropic deployment is forced open: served by OpenAI, Anthropic's shape
    let res = http.post(format!("{url}/v1/circuits/an/force-open")).send().await.expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.expect("json")["state"], "forced_open");
    let anthropic_calls = fake_a.request_count();
    let res = post_anthropic(&url, &message("anthropic-first", "three four")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("oa"));
    assert_eq!(header(&res, "x-helix-fallback-from").as_deref(), Some("an"));
    let answer: Value = res.json().await.expect("json");
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(answer["content"][0]["text"], "echo: three four");
    assert_eq!(fake_a.request_count(), anthropic_calls, "an open breaker sends nothing");
    assert_eq!(fake_o.last_request().expect("openai was called").path, "/v1/chat/completions");

    // streaming, Anthropic client: still forced open, OpenAI's stream arrives as Anthropic events
    let res = post_anthropic(&url, &streaming(message("anthropic-first", "streamed five"))).await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    assert_eq!(header(&res, "x-helix-fallback-from").as_deref(), Some("an"));
    let events = parse_sse(&res.text().await.expect("stream"));
    assert_eq!(events[0].0.as_deref(), Some("message_start"), "{events:?}");
    assert_eq!(anthropic_stream_text(&events), "echo: streamed five");

    // streaming, OpenAI client: its deployment fails before any event, Anthropic's stream serves
    http.post(format!("{url}/v1/circuits/an/reset")).send().await.expect("send");
    fake_o.script([Mode::status(503)]);
    let res = post_openai(&url, &streaming(chat("openai-first", "streamed six"))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("an"));
    assert_eq!(header(&res, "x-helix-fallback-from").as_deref(), Some("oa"));
    let events = parse_sse(&res.text().await.expect("stream"));
    assert_eq!(openai_stream_text(&events), "echo: streamed six");
    // the client did not ask for usage: no usage chunk (the gateway asked for it to meter)
    assert!(events.iter().all(|(_, d)| !d.contains("\"usage\":{")), "{events:?}");
    helix.stop().await;
    fake_o.stop().await;
    fake_a.stop().await;
}

#[tokio::test]
async fn retries_wait_as_long_as_retry_after_ms_says() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o")];
        gw.max_retries = 2;
        // without the hint, a backoff would be at most 50 ms
        gw.retry_base_backoff_ms = 50;
    })
    .await;
    fake.script([
        Mode::Status { code: 429, retry_after_secs: None, retry_after_ms: Some(600), body: None },
        Mode::Status { code: 503, retry_after_secs: None, retry_after_ms: Some(300), body: None },
    ]);
    let res = post_openai(&url, &chat("oa", "retry me")).await;
    assert_eq!(res.status(), 200);
    let requests = fake.requests_to("/v1/chat/completions");
    assert_eq!(requests.len(), 3, "two retries");
    let gap = |i: usize| requests[i + 1].at() - requests[i].at();
    assert!(gap(0) >= Duration::from_millis(600), "{:?}", gap(0));
    assert!(gap(1) >= Duration::from_millis(300), "{:?}", gap(1));

    // retries are bounded by max_retries: the last answer is passed on
    fake.set_default(Mode::Status { code: 503, retry_after_secs: None, retry_after_ms: Some(1), body: None });
    let before = fake.request_count();
    let res = post_openai(&url, &chat("oa", "always failing")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(fake.request_count() - before, 3);
    let body: Value = res.json().await.expect("json");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("overloaded")), "{body}");
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_breaker_trips_then_fails_fast_and_a_reset_closes_it() {
    let fake_o = FakeProvider::start().await;
    let fake_a = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("oa", ProviderKind::Openai, &fake_o, "gpt-4o"),
            deployment("an", ProviderKind::Anthropic, &fake_a, "claude-sonnet-4-5"),
        ];
        gw.models = vec![chain("gpt", &["oa"]), chain("both", &["oa", "an"])];
        gw.breaker.window_size = 4;
        gw.breaker.minimum_calls = 4;
        gw.breaker.failure_rate_threshold = 50.0;
        gw.breaker.open_secs = 60;
        gw.breaker.max_open_secs = 60;
    })
    .await;
    let http = http();
    fake_o.set_default(Mode::status(500));
    for _ in 0..4 {
        let res = post_openai(&url, &chat("gpt", "fail")).await;
        assert_eq!(res.status(), 500);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["type"], "server_error", "{body}");
    }
    let c = circuit(&http, &url, "oa").await;
    assert_eq!(c["state"], "open", "{c}");
    assert_eq!(c["failures"], 4);
    assert!(c["next_half_open_unix_ms"].is_u64(), "{c}");

    // open: refused at once, in the client's shape, with Retry-After, without calling upstream
    let calls = fake_o.request_count();
    let res = post_openai(&url, &chat("gpt", "refused")).await;
    assert_eq!(res.status(), 503);
    let retry_after: u64 = header(&res, "retry-after").expect("retry-after").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "circuit_open", "{body}");
    assert_eq!(fake_o.request_count(), calls);

    // every breaker of a chain open: the same, for an Anthropic client too
    http.post(format!("{url}/v1/circuits/an/force-open")).send().await.expect("send");
    let res = post_anthropic(&url, &message("both", "refused")).await;
    assert_eq!(res.status(), 503);
    assert!(header(&res, "retry-after").is_some());
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
    assert_eq!(fake_a.request_count(), 0);

    // a reset closes it; unknown ids are 404 problems
    let res = http.post(format!("{url}/v1/circuits/oa/reset")).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let snapshot: Value = res.json().await.expect("json");
    assert_eq!((snapshot["state"].as_str(), snapshot["calls"].as_u64()), (Some("closed"), Some(0)));
    assert_eq!(circuit(&http, &url, "oa").await["state"], "closed");
    fake_o.set_default(Mode::Ok);
    assert_eq!(post_openai(&url, &chat("gpt", "back")).await.status(), 200);
    for command in ["reset", "force-open", "disable"] {
        let res = http.post(format!("{url}/v1/circuits/no-such-id/{command}")).send().await.expect("send");
        expect_problem(res, 404, "not_found").await;
    }
    let res = http.post(format!("{url}/v1/circuits/an/disable")).send().await.expect("send");
    assert_eq!(res.json::<Value>().await.expect("json")["state"], "disabled");
    let list = get_json(&http, &format!("{url}/v1/circuits")).await;
    assert_eq!(list["redis"]["configured"], false);

    // the trip and the operator commands reached the trace-collector as circuit spans
    let collector = helix.url(ServiceKind::TraceCollector);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let traces = get_json(&http, &format!("{collector}/v1/traces?limit=100")).await;
        let names: Vec<&str> =
            traces["traces"].as_array().expect("traces").iter().filter_map(|t| t["name"].as_str()).collect();
        if names.contains(&"circuit oa open") && names.contains(&"circuit an forced_open") {
            break;
        }
        assert!(Instant::now() < deadline, "circuit spans missing: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    helix.stop().await;
    fake_o.stop().await;
    fake_a.stop().await;
}

#[tokio::test]
async fn upstream_client_errors_are_answered_once_and_do_not_count_against_the_breaker() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o")];
        gw.max_retries = 3;
    })
    .await;
    fake.script([Mode::status(400)]);
    let res = post_openai(&url, &chat("oa", "bad")).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["message"], "fake provider: scripted invalid request");
    assert_eq!(fake.request_count(), 1, "not retried");
    let c = circuit(&http(), &url, "oa").await;
    assert_eq!((c["calls"].as_u64(), c["failures"].as_u64()), (Some(1), Some(0)), "{c}");
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_stream_that_stalls_after_content_ends_with_an_error_event() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("oa", ProviderKind::Openai, &fake, "gpt-4o"),
            deployment("an", ProviderKind::Anthropic, &fake, "claude-sonnet-4-5"),
        ];
        gw.idle_timeout_ms = 400;
        gw.keepalive_ms = 100;
    })
    .await;
    // stalled far longer than the idle timeout: the stream ends long before the stall would
    fake.script([Mode::StalledStream { after_chunks: 3, ms: 300_000 }]);
    let started = Instant::now();
    let res = post_openai(&url, &streaming(chat("oa", "one two three four five"))).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("the stream ends");
    assert!(started.elapsed() < Duration::from_secs(120), "{:?}", started.elapsed());
    let events = parse_sse(&text);
    assert!(events.len() >= 2, "{text}");
    assert!(events[..events.len() - 1].iter().all(|(_, d)| !d.contains("\"error\"")), "{text}");
    let (_, last) = events.last().expect("events");
    let error: Value = serde_json::from_str(last).expect("the error event is json");
    assert_eq!(error["error"]["code"], "upstream_failed", "{error}");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("stalled")), "{error}");
    assert!(!text.contains("[DONE]"), "a cut stream does not pretend to be complete");
    assert!(text.contains(": keep-alive"), "silence is filled while waiting: {text}");

    // Anthropic: an `event: error`
    // (after its first content: a stall before any content is a failure that may fall back)
    fake.script([Mode::StalledStream { after_chunks: 4, ms: 10_000 }]);
    let res = post_anthropic(&url, &streaming(message("an", "six seven eight"))).await;
    let events = parse_sse(&res.text().await.expect("the stream ends"));
    assert_eq!(events[0].0.as_deref(), Some("message_start"));
    let (name, data) = events.last().expect("events");
    assert_eq!(name.as_deref(), Some("error"), "{events:?}");
    let error: Value = serde_json::from_str(data).expect("json");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    assert!(events.iter().all(|(n, _)| n.as_deref() != Some("message_stop")));
    // the outcome is recorded right after the stream's end reached the client
    let deadline = Instant::now() + Duration::from_secs(5);
    while circuit(&http(), &url, "an").await["failures"] != 1 {
        assert!(Instant::now() < deadline, "the stall was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_slow_first_byte_gets_keep_alives_before_the_content() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o")];
        gw.keepalive_ms = 100;
    })
    .await;
    fake.script([Mode::SlowFirstByte { ms: 800 }]);
    let res = post_openai(&url, &streaming(chat("oa", "patience pays"))).await;
    assert_eq!(res.status(), 200);
    // the head went out before any deployment answered
    assert_eq!(header(&res, "x-helix-deployment"), None);
    let text = res.text().await.expect("stream");
    let first_data = text.find("data:").expect("content");
    let keepalives = text[..first_data].matches(": keep-alive").count();
    assert!(keepalives >= 3, "{keepalives} keep-alives before the content: {text}");
    assert_eq!(openai_stream_text(&parse_sse(&text)), "echo: patience pays");

    // a quick upstream: its events come first, and the deployment is named
    let res = post_openai(&url, &streaming(chat("oa", "quick"))).await;
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("oa"));
    let text = res.text().await.expect("stream");
    assert!(text.starts_with("data:"), "{text}");
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_spent_budget_is_a_429_naming_when_it_resets() {
    let vars = existing_vars(1);
    let (key_env, key) = vars[0].clone();
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("oa", ProviderKind::Openai, &fake, "gpt-4o"),
            deployment("an", ProviderKind::Anthropic, &fake, "claude-sonnet-4-5"),
        ];
        gw.keys = vec![GatewayKeyConfig {
            key_env: key_env.clone(),
            project: "tight".to_owned(),
            daily_budget_usd: Some(0.000_01),
            max_in_flight: None,
        }];
        // 3 words in, 4 out: 0.000 043 USD, more than the budget
        gw.prices = vec![price("gpt-4o", 1.0, 10.0)];
    })
    .await;
    let http = http();
    let call = |path: &'static str, body: Value| {
        http.post(format!("{url}{path}"))
            .bearer_auth(&key)
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let res = call("/v1/chat/completions", chat("oa", "spend it all")).await.expect("send");
    assert_eq!(res.status(), 200, "the call that crosses the budget completes");
    let res = call("/v1/chat/completions", chat("oa", "one more")).await.expect("send");
    assert_eq!(res.status(), 429);
    let retry_after: u64 = header(&res, "retry-after").expect("retry-after").parse().expect("seconds");
    assert!((1..=86_400).contains(&retry_after));
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let text = body["error"]["message"].as_str().expect("message");
    assert!(text.contains("tight") && text.contains("resets at"), "{text}");
    let res = call("/v1/messages", message("an", "x")).await.expect("send");
    assert_eq!(res.status(), 429);
    assert_eq!(res.json::<Value>().await.expect("json")["error"]["type"], "rate_limit_error");
    assert_eq!(fake.request_count(), 1, "refused calls never reach the upstream");
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn one_projects_flood_is_refused_at_its_limit_while_another_project_is_served() {
    let vars = existing_vars(2);
    let ((a_env, a_key), (b_env, b_key)) = (vars[0].clone(), vars[1].clone());
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o")];
        let key = |env: &str, project: &str, max| GatewayKeyConfig {
            key_env: env.to_owned(),
            project: project.to_owned(),
            daily_budget_usd: None,
            max_in_flight: max,
        };
        gw.keys = vec![key(&a_env, "flood", Some(2)), key(&b_env, "calm", None)];
    })
    .await;
    let http = http();
    // project A's calls are slow (the mode header travels through the gateway to the fake)
    let slow = Mode::SlowFirstByte { ms: 1_500 }.header_value();
    let flood = (0..6).map(|i| {
        http.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&a_key)
            .header(helix_tests::fake_provider::MODE_HEADER, slow.clone())
            .json(&chat("oa", &format!("flood {i}")))
            .send()
    });
    let flood = tokio::spawn(futures_util::future::join_all(flood));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&b_key)
        .json(&chat("oa", "calm call"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let answers = flood.await.expect("flood");
    let mut statuses: Vec<u16> = Vec::new();
    for a in answers {
        let res = a.expect("send");
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert_eq!(header(&res, "retry-after").as_deref(), Some("1"));
            let body: Value = res.json().await.expect("json");
            assert_eq!(body["error"]["code"], "concurrency_limit", "{body}");
        }
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    assert_eq!(fake.max_in_flight(), 3, "two of the flood and the calm call");
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_full_deployment_is_skipped_and_a_full_chain_is_a_429() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        let mut one = deployment("one", ProviderKind::Openai, &fake, "gpt-4o");
        one.max_in_flight = Some(1);
        let mut two = deployment("two", ProviderKind::Anthropic, &fake, "claude-sonnet-4-5");
        two.max_in_flight = Some(1);
        gw.deployments = vec![one, two];
        gw.models = vec![chain("pair", &["one", "two"])];
    })
    .await;
    let http = http();
    // the mode header reaches the fake when client and deployment speak the same protocol
    let slow = Mode::SlowFirstByte { ms: 1_500 }.header_value();
    let occupy = |path: &str, body: Value| {
        let req = http
            .post(format!("{url}{path}"))
            .header(helix_tests::fake_provider::MODE_HEADER, slow.clone())
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send();
        tokio::spawn(req)
    };
    // `one` (called by its id) is busy: the chain falls back to `two`, which translates
    let first = occupy("/v1/chat/completions", chat("one", "occupy"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = post_openai(&url, &chat("pair", "fallback")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("two"));
    assert_eq!(header(&res, "x-helix-fallback-from").as_deref(), Some("one"));
    // both busy: 429 with Retry-After, at once
    let second = occupy("/v1/messages", message("two", "occupy"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = post_openai(&url, &chat("pair", "no room")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after").as_deref(), Some("1"));
    assert_eq!(res.json::<Value>().await.expect("json")["error"]["code"], "concurrency_limit");
    for busy in [first, second] {
        assert_eq!(busy.await.expect("task").expect("send").status(), 200);
    }
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn calls_are_traced_to_the_collector_and_counted_in_metrics() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o-2024-08-06")];
        gw.models = vec![chain("gpt", &["oa"])];
        gw.prices = vec![price("gpt-4o", 2.5, 10.0)];
    })
    .await;
    let http = http();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = http
        .post(format!("{url}/v1/chat/completions"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&chat("gpt", "trace this call"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let cost: f64 = header(&res, "x-helix-cost-usd").expect("cost").parse().expect("number");
    // the upstream is called as a child of the gateway's span, in the client's trace
    let upstream_tp = fake.last_request().and_then(|r| r.header("traceparent").map(str::to_owned));
    let upstream_tp = upstream_tp.expect("traceparent upstream");
    assert!(upstream_tp.starts_with(&format!("00-{trace_id}-")), "{upstream_tp}");
    assert!(!upstream_tp.contains("00f067aa0ba902b7"), "{upstream_tp}");
    // a streamed call is metered when it ends
    let res = post_openai(&url, &streaming(chat("gpt", "and this stream"))).await;
    assert_eq!(res.status(), 200);
    res.text().await.expect("stream");

    let collector = helix.url(ServiceKind::TraceCollector);
    let deadline = Instant::now() + Duration::from_secs(10);
    let traces = loop {
        let list = get_json(&http, &format!("{collector}/v1/traces?project=default")).await;
        let traces = list["traces"].as_array().cloned().unwrap_or_default();
        if traces.len() >= 2 {
            break traces;
        }
        assert!(Instant::now() < deadline, "trace events did not arrive: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ours = traces.iter().find(|t| t["trace_id"] == trace_id).expect("the client's trace");
    assert!((ours["cost_usd"].as_f64().expect("cost") - cost).abs() < 1e-12, "{ours}");
    let tree = get_json(&http, &format!("{collector}/v1/traces/{trace_id}")).await;
    let span = &tree["spans"][0]["span"];
    assert_eq!(span["kind"], "llm_call", "{tree}");
    assert_eq!(span["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(span["attributes"]["gen_ai.request.model"], "gpt");
    assert_eq!(span["attributes"]["helix.gateway.deployment"], "oa");
    assert_eq!(span["attributes"]["gen_ai.usage.input_tokens"], 3);
    // timed in nanoseconds: a sub-millisecond call is not a span of 0 or 1 ms (which made every
    // duration baseline a median of 0 and every call an anomaly)
    let took =
        span["end_unix_nanos"].as_u64().expect("end") - span["start_unix_nanos"].as_u64().expect("start");
    assert_ne!(took % 1_000_000, 0, "{span}");
    let streamed = traces.iter().find(|t| t["trace_id"] != trace_id).expect("the stream's trace");
    // "and this stream": 3 words in, "echo: and this stream" 4 out
    let expected = 3.0 / 1e6 * 2.5 + 4.0 / 1e6 * 10.0;
    assert!((streamed["cost_usd"].as_f64().expect("cost") - expected).abs() < 1e-12, "{streamed}");

    let res = http.get(format!("{url}/metrics")).send().await.expect("send");
    assert_eq!(header(&res, "content-type").as_deref(), Some("text/plain; version=0.0.4"));
    let metrics = parse_metrics(&res.text().await.expect("text"));
    assert_eq!(
        metrics.get(r#"helix_gateway_requests_total{protocol="openai",model="gpt",status="200"}"#),
        Some(&2.0)
    );
    assert_eq!(
        metrics
            .get(r#"helix_gateway_upstream_call_duration_seconds_count{deployment="oa",status_class="2xx"}"#),
        Some(&2.0)
    );
    let metered = metrics[r#"helix_gateway_cost_usd_total{project="default",model="gpt-4o-2024-08-06"}"#];
    assert!((metered - cost - expected).abs() < 1e-12, "{metered}");
    assert_eq!(
        metrics
            .get(r#"helix_gateway_tokens_total{project="default",model="gpt-4o-2024-08-06",kind="output"}"#),
        Some(&8.0)
    );
    assert_eq!(metrics.get(r#"helix_gateway_breaker_state{deployment="oa"}"#), Some(&0.0));
    // the emitter counts a batch as sent once the collector's answer is read
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = http.get(format!("{url}/metrics")).send().await.expect("send").text().await.expect("text");
        if parse_metrics(&text).get("helix_gateway_trace_events_sent_total") == Some(&2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn bad_requests_are_answered_in_the_clients_shape() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o")];
        gw.models = vec![chain("gpt", &["oa"])];
    })
    .await;
    let http = http();
    let raw = |path: &str, body: &'static str| {
        http.post(format!("{url}{path}")).header("content-type", "application/json").body(body).send()
    };
    let res = raw("/v1/chat/completions", "{\"model\": ").await.expect("send");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["type"].as_str()),
        (Some("invalid_json"), Some("invalid_request_error"))
    );
    let res = raw("/v1/messages", "[1, 2]").await.expect("send");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("invalid_request_error"))
    );
    let res = raw("/v1/chat/completions", "{\"messages\": []}").await.expect("send");
    assert_eq!(res.status(), 400);
    let res = post_openai(&url, &chat("not-configured", "x")).await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.expect("json");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("not-configured")), "{body}");
    assert_eq!(fake.request_count(), 0);

    // the models, in both shapes
    let list = get_json(&http, &format!("{url}/v1/models")).await;
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> =
        list["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["gpt", "oa"]);
    let list: Value = http
        .get(format!("{url}/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"][1]["type"], "model");
    assert_eq!((list["first_id"].as_str(), list["last_id"].as_str()), (Some("gpt"), Some("oa")));
    assert_eq!(list["has_more"], false);
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_in_the_clients_shape() {
    let fake = FakeProvider::start().await;
    let helix = Helix::start_with(|c| {
        c.max_body_bytes = 4096;
        c.breaker_gateway.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o")];
    })
    .await;
    let url = helix.url(ServiceKind::BreakerGateway);
    let res = post_anthropic(&url, &message("oa", &"word ".repeat(2_000))).await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["type"], "request_too_large", "{body}");
    assert_eq!(fake.request_count(), 0);
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_missing_key_variable_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_tests::test_config(dir.path());
    cfg.breaker_gateway.deployments = vec![DeploymentConfig {
        api_key_env: Some("HELIX_TEST_UNSET_UPSTREAM_KEY_7F3A".to_owned()),
        ..deployment("oa", ProviderKind::Openai, &FakeProvider::start().await, "gpt-4o")
    }];
    let err = helix::stack::Stack::start(&cfg, &[ServiceKind::BreakerGateway]).await.err().expect("fails");
    let message = format!("{err:#}");
    assert!(
        message.contains("HELIX_TEST_UNSET_UPSTREAM_KEY_7F3A") && message.contains("\"oa\""),
        "{message}"
    );

    cfg.breaker_gateway.deployments.clear();
    cfg.breaker_gateway.keys = vec![GatewayKeyConfig {
        key_env: "HELIX_TEST_UNSET_GATEWAY_KEY_7F3A".to_owned(),
        project: "p".to_owned(),
        daily_budget_usd: None,
        max_in_flight: None,
    }];
    let err = helix::stack::Stack::start(&cfg, &[ServiceKind::BreakerGateway]).await.err().expect("fails");
    assert!(format!("{err:#}").contains("HELIX_TEST_UNSET_GATEWAY_KEY_7F3A"), "{err:#}");
}

fn ready_check(ready: &Value, name: &str) -> Value {
    ready["checks"].as_array().expect("checks").iter().find(|c| c["name"] == name).cloned().expect("check")
}

/// Redis shares the breakers; its outage leaves the gateway ready (degraded) and serving.
#[tokio::test]
async fn readiness_reports_redis_breakers_and_the_collector_without_failing_on_them() {
    let fake = FakeProvider::start().await;
    let http = http();
    // the real Redis of this machine: shared state, reported ok once connected
    let prefix = format!("helix-test-gateway-{}-{}", std::process::id(), helix_core::time::now_ms());
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o")];
        gw.redis_url = Some("redis://127.0.0.1:6379/0".to_owned());
        gw.redis_key_prefix = prefix.clone();
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready = get_json(&http, &format!("{url}/ready")).await;
        if ready_check(&ready, "redis")["status"] == "ok" {
            assert_eq!(ready["status"], "ready", "{ready}");
            break;
        }
        assert!(Instant::now() < deadline, "redis did not connect: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(post_openai(&url, &chat("oa", "shared")).await.status(), 200);
    assert_eq!(circuit(&http, &url, "oa").await["shared"], true);
    // its keys, under a prefix of its own, expire by themselves
    helix.stop().await;

    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("oa", ProviderKind::Openai, &fake, "gpt-4o")];
        // nothing listens on port 9 (discard): Redis is configured but away
        gw.redis_url = Some("redis://127.0.0.1:9/0".to_owned());
    })
    .await;
    assert_eq!(post_openai(&url, &chat("oa", "still serving")).await.status(), 200);
    http.post(format!("{url}/v1/circuits/oa/force-open")).send().await.expect("send");
    let res = http.get(format!("{url}/ready")).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let ready: Value = res.json().await.expect("json");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let check = |name: &str| ready_check(&ready, name);
    assert_eq!(check("redis")["status"], "degraded");
    assert_eq!(check("breaker:oa")["status"], "degraded");
    assert_eq!(check("trace_collector")["status"], "ok");
    assert_eq!(check("data_dir")["status"], "ok");
    helix.stop().await;
    fake.stop().await;
}
