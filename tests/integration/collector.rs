//! The trace-collector over HTTP: ingest, span trees, listing.

use helix_core::ServiceKind;
use helix_tests::{Helix, client, expect_problem, get_json};
use serde_json::json;

fn span(
    trace: u32,
    span: u32,
    parent: Option<u32>,
    start_s: u64,
    dur_ms: u64,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut v = json!({
        "trace_id": format!("{trace:032x}"),
        "span_id": format!("{span:016x}"),
        "name": format!("span {span}"),
        "kind": if parent.is_none() { "run" } else { "tool_call" },
        "start_unix_nanos": 1_764_000_000_000_000_000u64 + start_s * 1_000_000_000,
        "end_unix_nanos": 1_764_000_000_000_000_000u64 + start_s * 1_000_000_000 + dur_ms * 1_000_000,
        "project": "webshop",
        "status": "ok"
    });
    if let Some(p) = parent {
        v["parent_span_id"] = json!(format!("{p:016x}"));
    }
    if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in more {
            obj.insert(k.clone(), val.clone());
        }
    }
    v
}

#[tokio::test]
async fn ingest_keeps_valid_events_and_reports_invalid_ones_by_index() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let batch = json!([
        span(1, 1, None, 0, 5000, json!({"phase": "plan", "status": "unset"})),
        span(1, 2, Some(1), 1, 1000, json!({"phase": "development", "name": "execute_tool bash", "attributes": {"gen_ai.tool.name": "bash", "helix.cost_usd": 0.25}})),
        {"trace_id": "nothex", "span_id": "00f067aa0ba902b7", "name": "x", "kind": "other", "start_unix_nanos": 1, "end_unix_nanos": 2},
        span(1, 3, Some(2), 2, 100, json!({"status": "error", "phase": "development"})),
        {"this": "is not an event"}
    ]);
    let res = http.post(format!("{url}/v1/events")).json(&batch).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["accepted"], 3);
    let rejected = body["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 2);
    assert!(rejected[0]["reason"].as_str().expect("reason").contains("trace_id"), "{body}");
    assert_eq!(rejected[1]["index"], 4);

    // NDJSON
    let nd = format!(
        "{}\n\n{}\n",
        span(2, 1, None, 10, 10, json!({"project": "billing"})),
        span(2, 2, Some(1), 10, 5, json!({"project": "billing"}))
    );
    let res = http
        .post(format!("{url}/v1/events"))
        .header("content-type", "application/x-ndjson")
        .body(nd)
        .send()
        .await
        .expect("send");
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["accepted"], 2, "{body}");

    // the span tree
    let t: serde_json::Value = get_json(&http, &format!("{url}/v1/traces/{:032x}", 1)).await;
    assert_eq!(t["summary"]["spans"], 3);
    assert_eq!(t["summary"]["status"], "error", "an unset root: any failed span makes the trace failed");
    assert_eq!(t["summary"]["phases"], json!(["plan", "development"]));
    assert!((t["summary"]["cost_usd"].as_f64().expect("cost") - 0.25).abs() < 1e-9);
    assert_eq!(t["spans"].as_array().expect("roots").len(), 1);
    let tool = &t["spans"][0]["children"][0];
    assert_eq!(tool["span"]["name"], "execute_tool bash");
    assert_eq!(tool["offset_nanos"], 1_000_000_000u64);
    assert_eq!(tool["children"][0]["span"]["status"], "error");

    // listing, filters, pagination
    let l: serde_json::Value = get_json(&http, &format!("{url}/v1/traces")).await;
    assert_eq!(l["traces"].as_array().expect("traces").len(), 2);
    assert_eq!(l["traces"][0]["project"], "billing", "newest first");
    let l: serde_json::Value =
        get_json(&http, &format!("{url}/v1/traces?project=webshop&status=error")).await;
    assert_eq!(l["traces"].as_array().expect("traces").len(), 1);
    let l: serde_json::Value = get_json(&http, &format!("{url}/v1/traces?limit=1")).await;
    let cursor = l["next_cursor"].as_str().expect("cursor").to_owned();
    let l2: serde_json::Value = get_json(&http, &format!("{url}/v1/traces?limit=1&cursor={cursor}")).await;
    assert_eq!(l2["traces"][0]["project"], "webshop");
    assert!(l2["next_cursor"].is_null());
    let l: serde_json::Value = get_json(&http, &format!("{url}/v1/traces?since=2030-01-01T00:00:00Z")).await;
    assert_eq!(l["traces"], json!([]));

    // bad input
    let res =
        http.post(format!("{url}/v1/events")).json(&json!({"trace_id": "x"})).send().await.expect("send");
    expect_problem(res, 400, "invalid_request").await;
    let res = http
        .post(format!("{url}/v1/events"))
        .header("content-type", "text/csv")
        .body("a,b")
        .send()
        .await
        .expect("send");
    expect_problem(res, 415, "unsupported_media_type").await;
    let res = http.get(format!("{url}/v1/traces/{}", "f".repeat(32))).send().await.expect("send");
    expect_problem(res, 404, "not_found").await;
    let res = http.get(format!("{url}/v1/traces?since=yesterday")).send().await.expect("send");
    expect_problem(res, 400, "invalid_query").await;
    helix.stop().await;
}

#[tokio::test]
async fn events_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_tests::test_config(dir.path());
    // the spans are of 2025-11: older than the default retention, which would remove them once
    // their segment is sealed (a clean stop seals it)
    cfg.trace_collector.retention_days = 0;
    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::TraceCollector]).await.expect("start");
    let url = stack.url(ServiceKind::TraceCollector).expect("url");
    let batch: Vec<serde_json::Value> = (1..=100)
        .map(|i| span(7, i, if i == 1 { None } else { Some(1) }, u64::from(i), 1, json!({})))
        .collect();
    let res = client().post(format!("{url}/v1/events")).json(&batch).send().await.expect("send");
    assert_eq!(res.status(), 200);
    stack.stop().await.expect("stop");
    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::TraceCollector]).await.expect("restart");
    let url = stack.url(ServiceKind::TraceCollector).expect("url");
    let t: serde_json::Value = client()
        .get(format!("{url}/v1/traces/{:032x}", 7))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(t["summary"]["spans"], 100);
    stack.stop().await.expect("stop");
}

#[tokio::test]
async fn otlp_protobuf_and_json_in_otlp_json_out_and_claude_import() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let events: Vec<helix_core::trace::Event> = vec![
        serde_json::from_value(span(9, 1, None, 0, 3000, json!({"project": "agents"}))).expect("event"),
        serde_json::from_value(span(9, 2, Some(1), 1, 500, json!({"project": "agents", "kind": "llm_call", "name": "chat claude-sonnet",
            "attributes": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-sonnet", "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}})))
        .expect("event"),
    ];
    // protobuf, as OpenTelemetry SDKs send by default
    let body = helix_trace_collector::otlp::to_otlp_protobuf(&events);
    let res = http
        .post(format!("{url}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-protobuf");
    let t: serde_json::Value = get_json(&http, &format!("{url}/v1/traces/{:032x}", 9)).await;
    assert_eq!(t["summary"]["spans"], 2, "{t}");
    let llm = &t["spans"][0]["children"][0]["span"];
    assert_eq!(llm["kind"], "llm_call");
    assert_eq!(llm["attributes"]["gen_ai.usage.input_tokens"], 1200);

    // JSON with one bad span: partial success, the good one kept
    let mut doc = helix_trace_collector::otlp::to_otlp_json(&[serde_json::from_value(span(
        10,
        1,
        None,
        0,
        10,
        json!({}),
    ))
    .expect("event")]);
    let good = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0].clone();
    let mut bad = good.clone();
    bad["spanId"] = json!("abcd");
    if let Some(spans) = doc["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array_mut() {
        spans.push(bad);
    }
    let res: serde_json::Value = http
        .post(format!("{url}/v1/traces"))
        .json(&doc)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(res["partialSuccess"]["rejectedSpans"], "1", "{res}");
    let t: serde_json::Value = get_json(&http, &format!("{url}/v1/traces/{:032x}", 10)).await;
    assert_eq!(t["summary"]["spans"], 1);

    // cost attribution
    let c: serde_json::Value = get_json(&http, &format!("{url}/v1/costs?group_by=model")).await;
    let sonnet = c["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["key"] == "claude-sonnet")
        .cloned()
        .expect("model row");
    assert_eq!(sonnet["input_tokens"], 1200, "{c}");
    assert_eq!(sonnet["llm_calls"], 1);
    let c: serde_json::Value = get_json(
        &http,
        &format!("{url}/v1/costs?group_by=day&from=2025-11-24T00:00:00Z&to=2025-11-26T00:00:00Z"),
    )
    .await;
    assert_eq!(c["rows"][0]["key"], "2025-11-24", "{c}");
    let res = http.get(format!("{url}/v1/costs?group_by=planet")).send().await.expect("send");
    expect_problem(res, 400, "invalid_query").await;

    // OTLP JSON out
    let o: serde_json::Value = get_json(&http, &format!("{url}/v1/traces/{:032x}/otlp", 9)).await;
    assert_eq!(o["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().expect("spans").len(), 2, "{o}");

    // a Claude Code transcript
    let transcript = [
        json!({"type": "system", "subtype": "init", "session_id": "sess-1", "model": "claude-sonnet-4-5", "cwd": "/w", "tools": ["Bash"]}),
        json!({"type": "assistant", "session_id": "sess-1", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "cargo test"}}], "usage": {"input_tokens": 100, "output_tokens": 20}}}),
        json!({"type": "user", "session_id": "sess-1", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "test result: ok", "is_error": false}]}}),
        json!({"type": "result", "subtype": "success", "is_error": false, "duration_ms": 4000, "duration_api_ms": 2500, "num_turns": 2, "result": "done", "session_id": "sess-1", "total_cost_usd": 0.0123}),
    ]
    .iter()
    .map(|l| l.to_string())
    .collect::<Vec<_>>()
    .join("\n")
        + "\nnot json at all\n";
    let res: serde_json::Value = http
        .post(format!("{url}/v1/import/claude-stream-json?project=agents"))
        .header("content-type", "application/x-ndjson")
        .body(transcript.clone())
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(res["accepted"].as_u64().expect("accepted") >= 3, "{res}");
    assert_eq!(res["skipped"][0]["index"], 5);
    let trace_id = res["trace_ids"][0].as_str().expect("trace id").to_owned();
    let t: serde_json::Value = get_json(&http, &format!("{url}/v1/traces/{trace_id}")).await;
    assert!((t["summary"]["cost_usd"].as_f64().expect("cost") - 0.0123).abs() < 1e-9, "{t}");
    assert_eq!(t["summary"]["project"], "agents");
    helix.stop().await;
}

#[tokio::test]
async fn slow_phases_are_flagged_on_the_span_and_listed_across_restarts() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = helix_tests::test_config(dir.path());
    let start =
        || async { helix::stack::Stack::start(&cfg, &[ServiceKind::TraceCollector]).await.expect("start") };
    let stack = start().await;
    let url = stack.url(ServiceKind::TraceCollector).expect("url");
    let http = client();
    let phase = |run: u32, secs: u64| {
        json!({
            "trace_id": format!("{:032x}", 1000 + run), "span_id": format!("{:016x}", 1000 + run),
            "name": "phase development", "kind": "phase", "project": "webshop", "phase": "development",
            "start_unix_nanos": 1_764_000_000_000_000_000u64 + u64::from(run) * 3_600_000_000_000,
            "end_unix_nanos": 1_764_000_000_000_000_000u64 + u64::from(run) * 3_600_000_000_000 + secs * 1_000_000_000
        })
    };
    let normal: Vec<serde_json::Value> =
        [270, 265, 280, 275, 268, 272].iter().enumerate().map(|(i, s)| phase(i as u32, *s)).collect();
    let res = http.post(format!("{url}/v1/events")).json(&normal).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let res =
        http.post(format!("{url}/v1/events")).json(&json!([phase(50, 840)])).send().await.expect("send");
    assert_eq!(res.status(), 200);

    let a: serde_json::Value = get_json(&http, &format!("{url}/v1/anomalies?project=webshop")).await;
    let list = a["anomalies"].as_array().expect("anomalies");
    assert_eq!(list.len(), 1, "{a}");
    assert_eq!(list[0]["reason"], "phase 'development' took 3.1x longer than its median of 4m31s");
    assert_eq!(list[0]["metric"], "duration");
    let t: serde_json::Value = get_json(&http, &format!("{url}/v1/traces/{:032x}", 1050)).await;
    assert!(
        t["spans"][0]["span"]["attributes"]["helix.anomaly"].as_str().expect("marked").contains("3.1x"),
        "{t}"
    );
    stack.stop().await.expect("stop");

    let stack = start().await;
    let url = stack.url(ServiceKind::TraceCollector).expect("url");
    let a: serde_json::Value = get_json(&http, &format!("{url}/v1/anomalies")).await;
    assert_eq!(a["anomalies"].as_array().expect("anomalies").len(), 1, "rebuilt at start-up: {a}");
    stack.stop().await.expect("stop");
}

#[tokio::test]
async fn live_feed_streams_stored_spans_filtered_by_project() {
    use futures_util::StreamExt;
    let helix = Helix::start_with(|c| c.shutdown_grace_secs = 120).await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let res = http.get(format!("{url}/v1/stream?project=live")).send().await.expect("subscribe");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.bytes_stream();
    // the opening comment arrives at once
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("opened")
        .expect("chunk")
        .expect("bytes");
    assert!(first.starts_with(b": helix live feed"));
    let batch = json!([
        span(31, 1, None, 0, 10, json!({"project": "other"})),
        span(32, 1, None, 0, 10, json!({"project": "live"}))
    ]);
    let res = http.post(format!("{url}/v1/events")).json(&batch).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let mut seen = String::new();
    while !seen.contains("\n\n") || !seen.contains("event: span") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
            .await
            .expect("a span")
            .expect("chunk")
            .expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains(&format!("{:032x}", 32)), "{seen}");
    assert!(!seen.contains(&format!("{:032x}", 31)), "other projects are filtered out: {seen}");
    // shutdown ends open streams instead of waiting out the (two minute) grace period for them
    let started = std::time::Instant::now();
    helix.stop().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "stop took {:?}", started.elapsed());
    drop(body);
}

#[tokio::test]
async fn export_forwards_to_another_collector_and_catches_up_after_it_was_down() {
    // the receiver: a second collector on a port chosen now, started later
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir_a = tempfile::tempdir().expect("tmp");
    let mut cfg_a = helix_tests::test_config(dir_a.path());
    cfg_a.trace_collector.export_otlp_endpoint = Some(format!("http://127.0.0.1:{port}/v1/traces"));
    let a = helix::stack::Stack::start(&cfg_a, &[ServiceKind::TraceCollector]).await.expect("start a");
    let url_a = a.url(ServiceKind::TraceCollector).expect("url");
    let http = client();
    let batch: Vec<serde_json::Value> = (1..=30)
        .map(|i| span(77, i, if i == 1 { None } else { Some(1) }, u64::from(i), 5, json!({})))
        .collect();
    let res = http.post(format!("{url_a}/v1/events")).json(&batch).send().await.expect("send");
    assert_eq!(res.status(), 200);

    // the receiver is down for a while: the exporter retries; nothing is lost
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let dir_b = tempfile::tempdir().expect("tmp");
    let mut cfg_b = helix_tests::test_config(dir_b.path());
    cfg_b.trace_collector_port = port;
    let b = helix::stack::Stack::start(&cfg_b, &[ServiceKind::TraceCollector]).await.expect("start b");
    let url_b = b.url(ServiceKind::TraceCollector).expect("url");
    let mut spans = 0;
    for _ in 0..100 {
        let res = http.get(format!("{url_b}/v1/traces/{:032x}", 77)).send().await.expect("send");
        if res.status() == 200 {
            let t: serde_json::Value = res.json().await.expect("json");
            spans = t["summary"]["spans"].as_u64().unwrap_or(0);
            if spans == 30 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(spans, 30, "every span reached the receiver once it was up");
    // a later batch follows without a restart
    let more: Vec<serde_json::Value> =
        (31..=35).map(|i| span(77, i, Some(1), u64::from(i), 5, json!({}))).collect();
    http.post(format!("{url_a}/v1/events")).json(&more).send().await.expect("send");
    for _ in 0..100 {
        let t: serde_json::Value = get_json(&http, &format!("{url_b}/v1/traces/{:032x}", 77)).await;
        spans = t["summary"]["spans"].as_u64().unwrap_or(0);
        if spans == 35 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(spans, 35);
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

#[tokio::test]
async fn a_long_attribute_is_cut_not_refused_and_a_far_future_span_is_refused() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let year_2191 = 7_000_000_000_000_000_000u64;
    let batch = json!([
        span(7, 1, None, 0, 10, json!({"attributes": {"helix.tool.result": "x".repeat(70_000)}})),
        span(8, 1, None, 0, 10, json!({"start_unix_nanos": year_2191, "end_unix_nanos": year_2191 + 1})),
    ]);
    let res = http.post(format!("{url}/v1/events")).json(&batch).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["accepted"], 1, "{body}");
    let rejected = body["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 1, "{body}");
    assert_eq!(rejected[0]["index"], 1);
    assert!(rejected[0]["reason"].as_str().is_some_and(|r| r.contains("in the future")), "{body}");
    let t: serde_json::Value = get_json(&http, &format!("{url}/v1/traces/{:032x}", 7)).await;
    let kept = t["spans"][0]["span"]["attributes"]["helix.tool.result"].as_str().expect("kept");
    assert!(kept.len() <= 65_536 && kept.len() > 60_000 && kept.ends_with('…'), "{}", kept.len());
    helix.stop().await;
}
