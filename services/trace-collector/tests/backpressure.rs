//! Back-pressure over HTTP: when the disk cannot keep up, ingest answers 503 with `Retry-After`
//! instead of queueing without bound, and everything it acknowledged is durable.

use std::time::Duration;

use actix_web::{App, test, web};
use helix_trace_collector::CollectorState;
use helix_trace_collector::store::log::LogOptions;

fn batch(trace: u32) -> serde_json::Value {
    let spans: Vec<serde_json::Value> = (1..=10)
        .map(|s| {
            serde_json::json!({
                "trace_id": format!("{trace:032x}"),
                "span_id": format!("{s:016x}"),
                "name": "step",
                "kind": "tool_call",
                "start_unix_nanos": 1_000 + s,
                "end_unix_nanos": 2_000 + s,
                "project": "slow-disk"
            })
        })
        .collect();
    serde_json::Value::Array(spans)
}

#[actix_web::test]
async fn a_slow_disk_answers_503_with_retry_after_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_core::HelixConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
    // the spans are from 1970: a clean close seals the segment, and retention at the reopen would
    // then remove it as older than retention_days (whether the seal finished first was a race)
    cfg.trace_collector.retention_days = 0;
    // a disk whose every commit takes 200 ms, and room for about two batches in the queue
    let options = LogOptions {
        queue_bytes: 6 * 1024,
        commit_delay: Duration::from_millis(200),
        ..LogOptions::default()
    };
    let state = web::Data::new(CollectorState::open_with(&cfg, options).expect("open"));
    let app =
        test::init_service(App::new().configure(|c| helix_trace_collector::configure(c, state.clone())))
            .await;

    let requests = (1..=12u32)
        .map(|t| test::TestRequest::post().uri("/v1/events").set_json(batch(t)).send_request(&app));
    let responses = futures_util::future::join_all(requests).await;
    let mut accepted = 0;
    let mut refused = 0;
    for res in responses {
        match res.status().as_u16() {
            200..=202 => accepted += 1,
            503 => {
                refused += 1;
                assert_eq!(res.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
                let body: serde_json::Value = test::read_body_json(res).await;
                assert_eq!(body["code"], "unavailable", "{body}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused > 0, "the slow disk must push back");
    assert!(accepted > 0);
    assert_eq!(state.store.len(), accepted * 10);
    drop(app);
    drop(state);
    let reopened = CollectorState::open(&cfg).expect("reopen");
    assert_eq!(reopened.store.len(), accepted * 10, "every acknowledged event is durable");
}
