//! The console as a user works it, in headless Chromium over the DevTools protocol, with the
//! live feed on: the page finishes loading although the feed is live, a search narrows the
//! traces, a click drills into a trace and a span's attributes, a deep link
//! (`/dashboard/traces/{id}`) opens its trace, the orchestrator's runs, the gateway's circuits
//! and the healed signatures are shown, colours keep their meaning, and a span posted while the
//! page is open arrives in the feed and in the open trace. Waits on conditions in the page.

use std::time::{SystemTime, UNIX_EPOCH};

use helix_core::ServiceKind;
use helix_tests::chromium::Chromium;
use helix_tests::{Helix, client};
use serde_json::{Value, json};

fn now() -> u64 {
    let n = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    u64::try_from(n).expect("fits")
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    id: u64,
    parent: Option<u64>,
    name: &str,
    kind: &str,
    status: &str,
    project: &str,
    attrs: Value,
) -> Value {
    let t = now() - 60_000_000_000 + id * 1_000_000_000;
    let mut s = json!({"trace_id": trace, "span_id": format!("{id:016x}"), "name": name, "kind": kind,
        "project": project, "run": format!("run-{project}"), "start_unix_nanos": t, "end_unix_nanos": t + 500_000_000,
        "status": status, "attributes": attrs});
    if let Some(p) = parent {
        s["parent_span_id"] = json!(format!("{p:016x}"));
    }
    s
}

/// Evaluates to a JSON value of what the test reads of the page (null while it is not there).
const PAGE: &str = r##"(() => { try { return {
  loaded: document.body.dataset.loaded === "true",
  ready: document.readyState,
  feed: (document.getElementById("feed") || {}).dataset?.state || "",
  feedText: document.getElementById("feed").innerText,
  path: location.pathname,
  rows: [...document.querySelectorAll("#trace-table tr.trace-row")].map((r) => r.dataset.id),
  timeline: document.getElementById("timeline-svg")?.dataset.trace || null,
  spans: document.querySelectorAll("#timeline-svg rect.span").length,
  title: document.getElementById("timeline-title").innerText,
  detail: document.getElementById("span-detail").innerText,
  runs: document.getElementById("runs").innerText,
  circuits: document.getElementById("circuits").innerText,
  circuitClass: document.querySelector("#circuit-table td.err")?.textContent || null,
  signatures: document.getElementById("signatures").innerText,
  fills: [...document.querySelectorAll("#timeline-svg rect.span")].map((r) => [r.dataset.kind, r.dataset.status, r.getAttribute("fill"), r.getAttribute("stroke")]),
}; } catch (e) { return null; } })()"##;

#[tokio::test]
async fn the_console_searches_drills_down_follows_links_and_stays_live_in_chromium() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let checkout = format!("{:032x}", 0xc0ffee_u64);
    let billing = format!("{:032x}", 0xb111_u64);
    let events = vec![
        span(&checkout, 1, None, "run checkout-service", "run", "error", "shop", json!({})),
        span(&checkout, 2, Some(1), "phase build", "phase", "ok", "shop", json!({})),
        span(
            &checkout,
            3,
            Some(2),
            "execute_tool pytest",
            "tool_call",
            "error",
            "shop",
            json!({"gen_ai.tool.name": "pytest", "helix.tool.result": "ModuleNotFoundError: No module named 'yaml'"}),
        ),
        span(
            &checkout,
            4,
            Some(2),
            "heal install_package",
            "heal",
            "ok",
            "shop",
            json!({"helix.heal.signature": "5f3a9c1e77aa", "helix.heal.class": "missing_dependency", "helix.heal.fix": "pip install pyyaml"}),
        ),
        span(&checkout, 5, Some(2), "attempt 2", "retry", "ok", "shop", json!({})),
        span(&billing, 1, None, "run billing-jobs", "run", "ok", "finance", json!({})),
        span(
            &billing,
            2,
            Some(1),
            "chat claude",
            "llm_call",
            "ok",
            "finance",
            json!({"gen_ai.request.model": "claude", "helix.cost_usd": 0.02}),
        ),
        span(
            &format!("{:032x}", 0xc1c1_u64),
            1,
            None,
            "circuit openai-main open",
            "circuit",
            "unset",
            "gw",
            json!({"helix.gateway.deployment": "openai-main", "helix.circuit.from": "closed", "helix.circuit.to": "open", "helix.circuit.reason": "5 of 10 calls failed"}),
        ),
    ];
    let res = http.post(format!("{url}/v1/events")).json(&events).send().await.expect("post");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());

    let mut chromium = Chromium::launch();
    let page = chromium.open(&format!("{url}/dashboard")).await;
    // loading finishes with the live feed on
    let p = chromium
        .until(&page, PAGE, "the page loads with its feed live", |p| {
            p["loaded"] == true
                && p["ready"] == "complete"
                && p["feed"] == "open"
                && p["rows"].as_array().is_some_and(|r| r.len() >= 3)
        })
        .await;
    assert!(
        p["runs"].as_str().is_some_and(|r| r.contains("run-shop") && r.contains("run-finance")),
        "{}",
        p["runs"]
    );
    assert!(
        p["circuits"]
            .as_str()
            .is_some_and(|c| c.contains("openai-main") && c.contains("5 of 10 calls failed"))
    );
    assert_eq!(p["circuitClass"], "open", "an open circuit is in the error colour");
    assert!(
        p["signatures"]
            .as_str()
            .is_some_and(|s| s.contains("5f3a9c1e77aa") && s.contains("pip install pyyaml"))
    );

    // search: text
    chromium
        .eval(&page, r##"document.getElementById("q").value = "checkout"; document.getElementById("search").requestSubmit(); true"##)
        .await;
    let p = chromium
        .until(&page, PAGE, "the search keeps the checkout trace only", |p| {
            p["rows"] == json!([checkout.clone()])
        })
        .await;
    assert!(p["path"] == "/dashboard");
    // search: status and project
    chromium
        .eval(&page, r##"document.getElementById("q").value = ""; document.getElementById("f-project").value = "finance"; document.getElementById("search").requestSubmit(); true"##)
        .await;
    chromium
        .until(&page, PAGE, "the project filter keeps billing only", |p| {
            p["rows"] == json!([billing.clone()])
        })
        .await;
    chromium
        .eval(&page, r##"document.getElementById("f-project").value = ""; document.getElementById("f-status").value = "error"; document.getElementById("search").requestSubmit(); true"##)
        .await;
    chromium
        .until(&page, PAGE, "the status filter keeps the failed trace", |p| {
            p["rows"] == json!([checkout.clone()])
        })
        .await;

    // drill down: the trace, then a span's attributes
    chromium.eval(&page, r##"document.querySelector("#trace-table a.trace-link").click(); true"##).await;
    let p = chromium
        .until(&page, PAGE, "the trace opens", |p| {
            p["timeline"] == json!(checkout.clone()) && p["spans"] == 5
        })
        .await;
    assert_eq!(p["path"], format!("/dashboard/traces/{checkout}"), "the address is the trace's link");
    // colours: errors and anomalies are marked in their own colours, never a kind's fill
    for f in p["fills"].as_array().expect("fills") {
        assert!(f[2] != "#dc2626" && f[2] != "#d97706", "no kind is drawn in a status colour: {f}");
        if f[1] == "error" {
            assert_eq!(f[3], "#dc2626", "a failed span is outlined red: {f}");
        }
    }
    let tool_fill =
        p["fills"].as_array().expect("fills").iter().find(|f| f[0] == "tool_call").expect("tool")[2].clone();
    let heal_fill =
        p["fills"].as_array().expect("fills").iter().find(|f| f[0] == "heal").expect("heal")[2].clone();
    assert_ne!(tool_fill, heal_fill, "kinds differ");
    chromium
        .eval(&page, r##"[...document.querySelectorAll("#timeline-svg g.row")].find((g) => g.textContent.includes("execute_tool pytest")).dispatchEvent(new MouseEvent("click", {bubbles: true})); true"##)
        .await;
    let p = chromium
        .until(&page, PAGE, "the span's details show", |p| {
            p["detail"].as_str().is_some_and(|d| d.contains("helix.tool.result"))
        })
        .await;
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("No module named 'yaml'") && d.contains("error"))
    );

    // follow a link: the other trace's deep link in a fresh load
    let navigated = chromium
        .call(Some(&page), "Page.navigate", json!({"url": format!("{url}/dashboard/traces/{billing}")}))
        .await;
    assert!(navigated.get("errorText").is_none());
    let p = chromium
        .until(&page, PAGE, "the deep link opens its trace", |p| {
            p["timeline"] == json!(billing.clone()) && p["loaded"] == true && p["feed"] == "open"
        })
        .await;
    assert!(p["title"].as_str().is_some_and(|t| t.contains("run billing-jobs")), "{}", p["title"]);

    // a new span arrives in the feed and in the open trace
    let new =
        [span(&billing, 3, Some(1), "execute_tool deploy-billing", "tool_call", "ok", "finance", json!({}))];
    let res = http.post(format!("{url}/v1/events")).json(&new).send().await.expect("post");
    assert_eq!(res.status(), 200);
    chromium
        .until(&page, PAGE, "the new span arrives", |p| {
            p["feedText"].as_str().is_some_and(|f| f.contains("execute_tool deploy-billing"))
                && p["spans"] == 3
        })
        .await;

    // a deep link that is not a trace id is a clear 400
    let res = http.get(format!("{url}/dashboard/traces/not-a-trace")).send().await.expect("get");
    assert_eq!(res.status(), 400);
    let shot = chromium.screenshot(&page).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-console.png");
    std::fs::write(&path, shot).expect("save the screenshot");
    chromium.close().await;
    helix.stop().await;
}
