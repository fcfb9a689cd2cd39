//! Operator actions leave a trace: breaker commands, run cancels and resumes, recorded fixes are
//! spans in the trace-collector naming the token (its id, never its value).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{DEADLINE, Upstream, http};
use crate::tokens::{ADMIN, CI, WRITER, up_with_tokens};

/// Waits for a span named `name` whose actor is `actor`; returns it.
async fn audit_span(collector: &str, name: &str, actor: &str) -> Value {
    let start = Instant::now();
    loop {
        let list: Value = http()
            .get(format!("{collector}/v1/traces?limit=200"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        for t in list["traces"].as_array().into_iter().flatten().filter(|t| t["name"] == name) {
            let id = t["trace_id"].as_str().expect("id");
            let tree: Value = http()
                .get(format!("{collector}/v1/traces/{id}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            let span = tree["spans"][0]["span"].clone();
            if span["attributes"]["helix.audit.actor"] == actor {
                return span;
            }
        }
        assert!(start.elapsed() < DEADLINE, "no {name} by {actor}: {list:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn operator_actions_are_audit_spans_naming_the_token() {
    let upstream = Upstream::openai_answering("hi");
    let up = up_with_tokens(&upstream, "");
    let collector = up.url("trace-collector");
    let res = http()
        .post(format!("{}/v1/circuits/up/force-open", up.url("breaker-gateway")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let span = audit_span(collector, "audit breaker.force_open", "admin").await;
    assert_eq!(span["attributes"]["helix.audit.target"], "up");
    assert!(!span.to_string().contains(ADMIN), "the token's value is not in it");

    let slow = "name = \"s\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"sleep\", \"600\"]\n";
    let res = up.start_run(Some(CI), json!({"pipeline": slow})).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
    let res = http()
        .post(format!("{}/v1/runs/{id}/cancel", up.url("orchestrator")))
        .bearer_auth(CI)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 202);
    let span = audit_span(collector, "audit run.cancel", "ci").await;
    assert_eq!(
        (span["attributes"]["helix.audit.target"].as_str(), span["project"].as_str()),
        (Some(id.as_str()), Some("shop"))
    );

    let res = http()
        .post(format!("{}/v1/fixes", up.url("healer")))
        .bearer_auth(WRITER)
        .json(&json!({"signature": "ef".repeat(32), "description": "retry", "outcome": "success"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
    audit_span(collector, "audit fix.record", "writer").await;
}
