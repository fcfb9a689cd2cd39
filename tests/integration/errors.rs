//! Bad input gets one problem+json shape, with a stable code; request ids are echoed.

use helix_core::ServiceKind;
use helix_tests::{Helix, client, expect_problem};

#[tokio::test]
async fn invalid_json_is_a_400_naming_the_parse_error() {
    let helix = Helix::start().await;
    let url = format!("{}/v1/fingerprint", helix.url(ServiceKind::Healer));
    let res = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"text": "x",,}"#)
        .send()
        .await
        .expect("send");
    let body = expect_problem(res, 400, "invalid_json").await;
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("line 1 column"), "{detail}");

    // valid JSON of the wrong shape is a different code
    let res = client().post(&url).json(&serde_json::json!({"text": 5})).send().await.expect("send");
    let body = expect_problem(res, 400, "invalid_request").await;
    assert!(body["detail"].as_str().expect("detail").contains("invalid type"), "{body}");
    let res =
        client().post(&url).json(&serde_json::json!({"text": "a", "extra": 1})).send().await.expect("send");
    let body = expect_problem(res, 400, "invalid_request").await;
    assert!(body["detail"].as_str().expect("detail").contains("extra"), "{body}");

    // not JSON at all
    let res = client().post(&url).header("content-type", "text/plain").body("hi").send().await.expect("send");
    expect_problem(res, 415, "unsupported_media_type").await;
    helix.stop().await;
}

#[tokio::test]
async fn oversized_body_is_a_413_and_the_service_keeps_serving() {
    let helix = Helix::start_with(|c| c.max_body_bytes = 4096).await;
    let url = format!("{}/v1/fingerprint", helix.url(ServiceKind::Healer));
    let big = serde_json::json!({ "text": "x".repeat(64 * 1024) });
    let res = client().post(&url).json(&big).send().await.expect("send");
    let body = expect_problem(res, 413, "payload_too_large").await;
    assert!(body["detail"].as_str().expect("detail").contains("4096"), "{body}");

    // the same, streamed without a content-length
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..16).map(|i| Ok(if i == 0 { b"{\"text\": \"".to_vec() } else { vec![b'y'; 1024] })).collect();
    let res = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    expect_problem(res, 413, "payload_too_large").await;

    // below the limit all is well
    let res = client().post(&url).json(&serde_json::json!({"text": "small"})).send().await.expect("send");
    assert_eq!(res.status(), 200);
    helix.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let helix = Helix::start().await;
    for kind in ServiceKind::ALL {
        let url = helix.url(kind);
        let res = client().get(format!("{url}/no/such/route")).send().await.expect("send");
        let body = expect_problem(res, 404, "not_found").await;
        assert!(body["detail"].as_str().expect("detail").contains("/no/such/route"));

        let res = client().delete(format!("{url}/health")).send().await.expect("send");
        assert_eq!(res.headers()["allow"], "GET");
        expect_problem(res, 405, "method_not_allowed").await;
    }
    helix.stop().await;
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let helix = Helix::start().await;
    let url = format!("{}/health", helix.url(ServiceKind::TraceCollector));
    let res = client().get(&url).header("x-request-id", "run-42.phase-3").send().await.expect("send");
    assert_eq!(res.headers()["x-request-id"], "run-42.phase-3");

    let a = client().get(&url).send().await.expect("send");
    let b = client().get(&url).send().await.expect("send");
    let id_a = a.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let id_b = b.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(id_a.len(), 36, "a generated uuid: {id_a}");
    assert_ne!(id_a, id_b);

    // an unusable id (too long) is replaced rather than echoed into logs and headers
    let res = client().get(&url).header("x-request-id", "x".repeat(500)).send().await.expect("send");
    assert_eq!(res.headers()["x-request-id"].len(), 36);

    // problems carry the same id in the body
    let res =
        client().get(format!("{url}/nope")).header("x-request-id", "trace-me").send().await.expect("send");
    let body = expect_problem(res, 404, "not_found").await;
    assert_eq!(body["request_id"], "trace-me");
    helix.stop().await;
}

#[tokio::test]
async fn fingerprints_are_stable_across_paths_and_names() {
    let helix = Helix::start().await;
    let url = format!("{}/v1/fingerprint", helix.url(ServiceKind::Healer));
    let sig = |text: &'static str| {
        let url = url.clone();
        async move {
            let res =
                client().post(&url).json(&serde_json::json!({ "text": text })).send().await.expect("send");
            assert_eq!(res.status(), 200);
            res.json::<serde_json::Value>().await.expect("json")
        }
    };
    let a = sig("FileNotFoundError: [Errno 2] No such file or directory: '/home/a/data.csv'").await;
    let b = sig("FileNotFoundError: [Errno 2] No such file or directory: '/srv/x/other.csv'").await;
    let c = sig("PermissionError: [Errno 13] Permission denied: '/etc/shadow'").await;
    assert_eq!(a["signature"], b["signature"]);
    assert_ne!(a["signature"], c["signature"]);
    assert_eq!(a["version"], "v1");
    assert_eq!(a["params"][1]["value"], "/home/a/data.csv");

    let res = client().post(&url).json(&serde_json::json!({ "text": "" })).send().await.expect("send");
    expect_problem(res, 400, "invalid_request").await;
    helix.stop().await;
}
