//! The gateway's verdicts on upstream answers (issue 13): which answers mean "this deployment is
//! broken" (fall back, count a failure), which are the client's own, when a probe closes a
//! breaker, how far retries and fallbacks go, what a waiting client is told, and when a stream
//! is committed to its deployment.

use std::time::Duration;

use helix_core::gateway_config::ProviderKind;
use helix_tests::fake_provider::{FakeProvider, Mode};
use serde_json::Value;

use crate::gateway::{
    chain, chat, circuit, deployment, header, http, openai_stream_text, parse_metrics, parse_sse,
    post_openai, start, streaming,
};

#[tokio::test]
async fn a_deployment_that_refuses_its_key_or_model_is_failed_over_and_counted_broken() {
    for refused in [401u16, 403, 404] {
        let bad = FakeProvider::start().await;
        let good = FakeProvider::start().await;
        bad.set_default(Mode::status(refused));
        let (helix, url) = start(|gw| {
            gw.deployments = vec![
                deployment("revoked", ProviderKind::Openai, &bad, "gpt-4o"),
                deployment("healthy", ProviderKind::Openai, &good, "gpt-4o"),
            ];
            gw.models = vec![chain("smart", &["revoked", "healthy"])];
            gw.max_retries = 2;
            gw.breaker.minimum_calls = 100;
            gw.breaker.window_size = 1000;
        })
        .await;
        for i in 0..20 {
            let res = post_openai(&url, &chat("smart", &format!("hi {i}"))).await;
            assert_eq!(res.status(), 200, "{refused}: client {i} got the healthy deployment's answer");
            assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("healthy"));
        }
        assert_eq!(bad.request_count(), 20, "{refused}: no retry on a deployment that refuses calls");
        let c = circuit(&http(), &url, "revoked").await;
        assert_eq!(c["failures"].as_u64(), Some(20), "{refused} counts as a failure: {c}");
        // alone in its chain: a gateway failure, never the upstream's 401 blaming the client
        let res = post_openai(&url, &chat("revoked", "alone")).await;
        assert_eq!(res.status(), 502, "{refused}");
        let body: Value = res.json().await.expect("json");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("revoked")), "{body}");
        helix.stop().await;
        bad.stop().await;
        good.stop().await;
    }
}

#[tokio::test]
async fn request_caused_errors_are_the_clients_answer_without_fallback_or_failure() {
    for code in [400u16, 413, 422] {
        let fake = FakeProvider::start().await;
        let other = FakeProvider::start().await;
        fake.set_default(Mode::status(code));
        let (helix, url) = start(|gw| {
            gw.deployments = vec![
                deployment("a", ProviderKind::Openai, &fake, "gpt-4o"),
                deployment("b", ProviderKind::Openai, &other, "gpt-4o"),
            ];
            gw.models = vec![chain("smart", &["a", "b"])];
            gw.max_retries = 2;
        })
        .await;
        let res = post_openai(&url, &chat("smart", "bad request")).await;
        assert_eq!(res.status().as_u16(), code);
        assert_eq!(other.request_count(), 0, "{code}: no fallback for the client's own error");
        assert_eq!(fake.request_count(), 1, "{code}: no retry");
        let c = circuit(&http(), &url, "a").await;
        assert_eq!(c["failures"].as_u64(), Some(0), "{code}: not the deployment's fault: {c}");
        helix.stop().await;
        fake.stop().await;
        other.stop().await;
    }
}

/// Trips breaker `id` of a chain of one with 500s (minimum_calls = 2) and waits out its open
/// time (1 s) until it admits a probe.
async fn tripped(fake: &FakeProvider, url: &str, id: &str) {
    fake.script([Mode::status(500), Mode::status(500)]);
    for _ in 0..2 {
        let res = post_openai(url, &chat(id, "fail")).await;
        assert_eq!(res.status(), 500);
    }
    assert_eq!(circuit(&http(), url, id).await["state"], "open");
    let start = std::time::Instant::now();
    while circuit(&http(), url, id).await["next_half_open_unix_ms"].as_u64().is_some_and(|until| {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
        u128::from(until) > now
    }) {
        assert!(start.elapsed() < Duration::from_secs(60), "the breaker stays open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_half_open_probe_answered_with_a_client_error_does_not_close_the_breaker() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("a", ProviderKind::Openai, &fake, "gpt-4o")];
        gw.breaker.minimum_calls = 2;
        gw.breaker.window_size = 2;
        gw.breaker.open_secs = 1;
        gw.breaker.half_open_probes = 1;
    })
    .await;
    tripped(&fake, &url, "a").await;
    let c = circuit(&http(), &url, "a").await;
    assert!(c["next_half_open_unix_ms"].is_null() || c["state"] != "closed", "{c}");
    fake.script([Mode::status(400)]);
    let res = post_openai(&url, &chat("a", "probe")).await;
    assert_eq!(res.status(), 400, "the probe's answer is the client's");
    let c = circuit(&http(), &url, "a").await;
    assert_ne!(c["state"], "closed", "a 400 proves nothing about the upstream: {c}");
    // a healthy probe (after the next open period) closes it
    let start = std::time::Instant::now();
    loop {
        let res = post_openai(&url, &chat("a", "probe again")).await;
        if res.status() == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no probe admitted: {}", res.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(circuit(&http(), &url, "a").await["state"], "closed");
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_client_waiting_on_a_probe_is_told_to_look_again_within_seconds() {
    let fake = FakeProvider::start().await;
    let (helix, url) = start(|gw| {
        gw.deployments = vec![deployment("a", ProviderKind::Openai, &fake, "gpt-4o")];
        gw.breaker.minimum_calls = 2;
        gw.breaker.window_size = 2;
        gw.breaker.open_secs = 1;
        gw.breaker.half_open_probes = 1;
    })
    .await;
    tripped(&fake, &url, "a").await;
    // the probe hangs on its first byte while another client asks
    fake.script([Mode::SlowFirstByte { ms: 3000 }]);
    let probe = tokio::spawn({
        let url = url.clone();
        async move { post_openai(&url, &chat("a", "probe")).await.status().as_u16() }
    });
    let start = std::time::Instant::now();
    while fake.in_flight() == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the probe never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let res = post_openai(&url, &chat("a", "waiting")).await;
    assert_eq!(res.status(), 503);
    let wait: u64 = header(&res, "retry-after").and_then(|v| v.parse().ok()).expect("retry-after");
    assert!((1..=5).contains(&wait), "Retry-After {wait} while a probe is out");
    assert_eq!(probe.await.expect("probe"), 200);
    helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_retry_after_longer_than_the_backoff_cap_moves_on_instead_of_waiting() {
    let busy = FakeProvider::start().await;
    let good = FakeProvider::start().await;
    busy.set_default(Mode::rate_limited(30));
    let (helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("busy", ProviderKind::Openai, &busy, "gpt-4o"),
            deployment("good", ProviderKind::Openai, &good, "gpt-4o"),
        ];
        gw.models = vec![chain("smart", &["busy", "good"])];
        gw.max_retries = 2;
        gw.retry_max_backoff_ms = 1000;
        gw.breaker.minimum_calls = 100;
    })
    .await;
    let res = post_openai(&url, &chat("smart", "hi")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("good"));
    assert_eq!(busy.request_count(), 1, "a 30 s Retry-After is not retried after the 1 s cap");
    // none left: the client gets the 429 with that Retry-After
    let res = post_openai(&url, &chat("busy", "alone")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after").as_deref(), Some("30"));
    assert_eq!(busy.request_count(), 2);
    helix.stop().await;
    busy.stop().await;
    good.stop().await;
}

#[tokio::test]
async fn fallbacks_spend_the_retry_budget() {
    let fakes = [FakeProvider::start().await, FakeProvider::start().await, FakeProvider::start().await];
    for f in &fakes {
        f.set_default(Mode::status(500));
    }
    let (helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("a", ProviderKind::Openai, &fakes[0], "gpt-4o"),
            deployment("b", ProviderKind::Openai, &fakes[1], "gpt-4o"),
            deployment("c", ProviderKind::Openai, &fakes[2], "gpt-4o"),
        ];
        gw.models = vec![chain("smart", &["a", "b", "c"])];
        gw.max_retries = 0;
        gw.retry_budget = 0.2;
        // breakers out of the way: only the budget limits the walk
        gw.breaker.minimum_calls = 100_000;
        gw.breaker.window_size = 100_000;
    })
    .await;
    let requests = 200;
    let mut tasks = Vec::new();
    for i in 0..requests {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            post_openai(&url, &chat("smart", &format!("x{i}"))).await.status()
        }));
        if tasks.len() >= 40 {
            for t in tasks.drain(..) {
                assert_eq!(t.await.expect("task"), 500);
            }
        }
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 500);
    }
    let attempts: usize = fakes.iter().map(FakeProvider::request_count).sum();
    let per_request = attempts as f64 / f64::from(requests);
    // without a budget on fallbacks every request makes 3 attempts
    assert!(
        per_request < 2.0,
        "{attempts} upstream attempts for {requests} requests ({per_request:.2} each)"
    );
    let metrics =
        http().get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let refused = parse_metrics(&metrics)
        .iter()
        .filter(|(k, _)| k.contains("retry_budget"))
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert!(refused > 0.0, "refused fallbacks are counted: {metrics}");
    helix.stop().await;
    for f in fakes {
        f.stop().await;
    }
}

#[tokio::test]
async fn a_stream_cut_before_its_first_content_still_falls_back() {
    let cut = FakeProvider::start().await;
    let good = FakeProvider::start().await;
    // the first chunk of an OpenAI stream is the content-free role chunk
    cut.set_default(Mode::CutStream { after_chunks: 1 });
    let (helix, url) = start(|gw| {
        gw.deployments = vec![
            deployment("cut", ProviderKind::Openai, &cut, "gpt-4o"),
            deployment("good", ProviderKind::Openai, &good, "gpt-4o"),
        ];
        gw.models = vec![chain("smart", &["cut", "good"])];
    })
    .await;
    let res = post_openai(&url, &streaming(chat("smart", "tell me"))).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("body");
    let events = parse_sse(&text);
    assert_eq!(openai_stream_text(&events), "echo: tell me", "{text}");
    assert_eq!(cut.request_count(), 1);
    assert_eq!(good.request_count(), 1, "fell back after the content-free cut");
    helix.stop().await;
    cut.stop().await;
    good.stop().await;
}
