//! The dashboard's live feed in a real browser: headless Chromium has the page open with its
//! EventSource connected, only then are new spans posted, and they must show up in `#feed`.
//!
//! dashboard.rs settles the page with virtual time, which an open EventSource stops, so it leaves
//! the feed closed. Here Chromium runs in real time and is driven over the DevTools protocol, and
//! the test waits on conditions in the page, never on sleeps: the spans are posted once `#feed`
//! says its EventSource is open, and the collector subscribes a stream before answering it, so
//! nothing posted afterwards can be missed. The protocol runs on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4): no WebSocket client, no port,
//! and Chromium quits as soon as the pipe closes, even when the test process dies. The test saves
//! a screenshot (target/dashboard-live.png).

use std::time::{SystemTime, UNIX_EPOCH};

use helix_core::ServiceKind;
use helix_tests::chromium::{Chromium, base64};
use helix_tests::{Helix, client};
use serde_json::{Value, json};

/// What the test reads of the live feed, as JSON (null until the element exists).
const FEED: &str = r#"(() => {
  const f = document.getElementById("feed");
  return f && {
    state: f.dataset.state || "",
    text: f.innerText,
    items: [...f.querySelectorAll(".feed-item")].map((i) => i.innerText),
    errors: [...f.querySelectorAll(".feed-item .err")].map((e) => e.textContent),
  };
})()"#;

fn span(trace: &str, id: u64, parent: Option<u64>, name: &str, kind: &str, status: &str) -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    let now = u64::try_from(now).expect("nanoseconds fit u64 until 2554");
    let mut span = json!({"trace_id": trace, "span_id": format!("{id:016x}"), "name": name, "kind": kind,
        "project": "livefeed", "start_unix_nanos": now - 2_000_000_000, "end_unix_nanos": now, "status": status});
    if let Some(parent) = parent {
        span["parent_span_id"] = json!(format!("{parent:016x}"));
    }
    span
}

fn text(feed: &Value) -> &str {
    feed["text"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_live_feed_shows_spans_posted_while_the_page_is_open_in_chromium() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let mut chromium = Chromium::launch();
    let target = chromium.call(None, "Target.createTarget", json!({"url": "about:blank"})).await;
    let target = target["targetId"].as_str().expect("target id").to_owned();
    let attached =
        chromium.call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await;
    let page = attached["sessionId"].as_str().expect("session id").to_owned();
    let navigated =
        chromium.call(Some(&page), "Page.navigate", json!({"url": format!("{url}/dashboard")})).await;
    assert!(navigated.get("errorText").is_none(), "the dashboard loads: {navigated}");

    let open = chromium.until(&page, FEED, "the feed's EventSource opens", |f| f["state"] == "open").await;
    assert_eq!(open["items"], json!([]), "nothing in the feed before anything is posted");

    let trace = format!("{:032x}", 0x11fe);
    let first = [
        span(&trace, 1, None, "run livefeed", "run", "ok"),
        span(&trace, 2, Some(1), "phase livefeed-build", "phase", "ok"),
        span(&trace, 3, Some(2), "tool cargo-livefeed", "tool_call", "error"),
    ];
    let res = http.post(format!("{url}/v1/events")).json(&first).send().await.expect("post spans");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let names = ["run livefeed", "phase livefeed-build", "tool cargo-livefeed"];
    let seen = chromium
        .until(&page, FEED, "the posted spans appear in the live feed", |f| {
            names.iter().all(|n| text(f).contains(n))
        })
        .await;
    assert_eq!(seen["items"].as_array().map(Vec::len), Some(3), "one line per span: {seen:#}");
    assert_eq!(seen["errors"], json!(["tool cargo-livefeed"]), "the failed span is marked");

    // the feed stays live: a later span arrives too, on top
    let later = [span(&trace, 4, Some(1), "phase livefeed-deploy", "phase", "ok")];
    let res = http.post(format!("{url}/v1/events")).json(&later).send().await.expect("post span");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let seen = chromium
        .until(&page, FEED, "a later span appears in the live feed", |f| {
            text(f).contains("phase livefeed-deploy")
        })
        .await;
    let items = seen["items"].as_array().expect("feed items");
    assert_eq!(items.len(), 4, "{seen:#}");
    assert!(items[0].as_str().is_some_and(|i| i.contains("phase livefeed-deploy")), "newest first: {seen:#}");
    assert_eq!(seen["state"], "open", "still connected");

    // and a screenshot, for people
    let shot = chromium.call(Some(&page), "Page.captureScreenshot", json!({"format": "png"})).await;
    let png = base64(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a png screenshot");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-live.png");
    std::fs::write(&path, png).expect("save the screenshot");

    chromium.close().await;
    helix.stop().await;
}
