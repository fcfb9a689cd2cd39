//! Success paths end to end: a pass after healing reports which steps got there; the healer
//! ranks the paths of a signature (`GET /v1/signatures/{sig}`), and the orchestrator starts with
//! the first step of the most successful one.

use super::*;

/// Fails with a NameError on every odd run (its counter outside the workspace), passes on even
/// ones: whatever the healer makes of it, a plain retry heals it.
fn pipeline(counter: &Path) -> String {
    format!(
        r#"name = "paths"

[[phase]]
name = "compute"
kind = "command"
run = ["python3", "-c", "import sys; p = sys.argv[1]; n = int(open(p).read()) if __import__('os').path.exists(p) else 0; open(p, 'w').write(str(n + 1)); sys.exit(0) if n % 2 else frobnicate()", {counter}]
retries = 2
"#,
        counter = path_str(counter)
    )
}

#[tokio::test]
async fn a_pass_after_healing_records_its_path_and_the_most_successful_path_is_tried_first() {
    let o = Orch::start().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let counter = scratch.path().join("counter");

    // a deterministic failure is retried with hints; the retry passes: path ["hint"]
    let done = o.run_inline(&pipeline(&counter), "paths", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let first = &attempts(&done["phases"][0])[0]["heal"];
    assert_eq!(first["action"], "retry_with_hints", "{first:#}");
    let sig = first["signature"].as_str().expect("signature").to_owned();
    let healer = o.helix.url(ServiceKind::Healer);
    let report = get_json(&o.http, &format!("{healer}/v1/signatures/{sig}?project=paths")).await;
    assert_eq!(report["paths"][0]["steps"], json!(["hint"]), "{report:#}");
    assert_eq!(report["paths"][0]["successes"], 1);
    assert_eq!(report["paths"][0]["phases"], json!(["compute"]));

    // others found that a plain retry heals it (twice): that path now ranks first
    for _ in 0..2 {
        let res = o
            .http
            .post(format!("{healer}/v1/paths"))
            .json(&json!({"signature": sig, "steps": ["backoff"], "project": "paths", "phase": "compute"}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 201);
    }
    let again = o.run_inline(&pipeline(&counter), "paths", None).await;
    assert_eq!(again["status"], "succeeded", "{again:#}");
    let heal = &attempts(&again["phases"][0])[0]["heal"];
    assert_eq!(heal["action"], "retry_backoff", "the best path's first step: {heal:#}");
    assert_eq!(heal["path"], json!(["backoff"]), "{heal:#}");
    let report = get_json(&o.http, &format!("{healer}/v1/signatures/{sig}?project=paths")).await;
    assert_eq!(report["paths"][0]["steps"], json!(["backoff"]), "{report:#}");
    assert_eq!(report["paths"][0]["successes"], 3, "{report:#}");
    assert_eq!(report["paths"][1]["steps"], json!(["hint"]), "{report:#}");
    // another project does not see them
    let other = get_json(&o.http, &format!("{healer}/v1/signatures/{sig}?project=elsewhere")).await;
    assert_eq!(other["paths"], json!([]), "{other:#}");

    // bad paths are refused
    for bad in [json!([]), json!(["a b"]), json!(["x".repeat(81)])] {
        let res = o
            .http
            .post(format!("{healer}/v1/paths"))
            .json(&json!({"signature": sig, "steps": bad}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 400, "{bad}");
    }
    o.helix.stop().await;
}
