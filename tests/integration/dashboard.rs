//! The dashboard, end to end in headless Chromium (Debian's `chromium`): the page loads from the
//! collector with no external asset, runs its script against the real API, and shows the data.
//! The test saves a screenshot (target/dashboard.png).

use std::process::Command;

use helix_core::ServiceKind;
use helix_tests::chromium::chromium;
use helix_tests::{Helix, client};
use serde_json::json;

fn run_chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    Command::new("timeout")
        .arg("90")
        .arg(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[tokio::test]
async fn dashboard_shows_costs_baselines_anomalies_and_a_timeline_in_chromium() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let mut events = Vec::new();
    for run in 0..8u64 {
        let trace = format!("{:032x}", 500 + run);
        let start = 1_764_000_000_000_000_000u64 + run * 86_400_000_000_000 / 2;
        let secs = if run == 7 { 900 } else { 270 + run };
        events.push(json!({"trace_id": trace, "span_id": format!("{:016x}", 1), "name": "run webshop", "kind": "run",
            "project": "webshop", "start_unix_nanos": start, "end_unix_nanos": start + secs * 1_000_000_000, "status": "ok"}));
        events.push(json!({"trace_id": trace, "span_id": format!("{:016x}", 2), "parent_span_id": format!("{:016x}", 1),
            "name": "phase development", "kind": "phase", "project": "webshop", "phase": "development",
            "start_unix_nanos": start, "end_unix_nanos": start + secs * 1_000_000_000}));
        events.push(json!({"trace_id": trace, "span_id": format!("{:016x}", 3), "parent_span_id": format!("{:016x}", 2),
            "name": "chat claude-sonnet", "kind": "llm_call", "project": "webshop", "phase": "development",
            "start_unix_nanos": start + 1_000_000_000, "end_unix_nanos": start + 9_000_000_000,
            "attributes": {"gen_ai.request.model": "claude-sonnet", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200, "helix.cost_usd": 0.05}}));
    }
    let res = http.post(format!("{url}/v1/events")).json(&events).send().await.expect("send");
    assert_eq!(res.status(), 200);

    // the page itself: served by the collector, nothing from elsewhere
    let page = http.get(format!("{url}/dashboard")).send().await.expect("page").text().await.expect("html");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from the network"
    );

    // run it in headless Chromium and read the DOM after its script ran
    // with the live feed on: it polls, so no request stays pending and the virtual clock runs
    // out (a stream held open stopped it, and the snapshot never came)
    let dashboard = format!("{url}/dashboard");
    let out = run_chromium(&["--virtual-time-budget=10000", "--dump-dom"], &dashboard);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the script ran to the end: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("data-state=\"open\""), "the live feed was on in the snapshot");
    assert!(dom.matches("class=\"bar\"").count() >= 4, "cost bars per day");
    assert!(dom.contains("claude-sonnet"), "cost by model");
    assert!(dom.contains("webshop / development"), "phase baseline row");
    assert!(
        dom.contains("took 3.2x longer") || dom.contains("x longer than its median"),
        "the anomaly is listed"
    );
    assert!(
        dom.contains("id=\"timeline-svg\"") && dom.matches("class=\"span\"").count() >= 3,
        "trace timeline"
    );

    // and a screenshot, for people
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png");
    let out = run_chromium(
        &[
            "--virtual-time-budget=10000",
            "--window-size=1400,1500",
            &format!("--screenshot={}", shot.display()),
        ],
        &dashboard,
    );
    assert!(out.status.success() || shot.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&shot).expect("screenshot saved").len() > 10_000);
    helix.stop().await;
}
