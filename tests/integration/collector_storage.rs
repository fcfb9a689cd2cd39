//! The trace-collector's storage promises over HTTP: idempotent ingest and import, damage that
//! costs the damaged record only and is reported, forwarding that never stalls on a refusal.

use std::sync::{Arc, Mutex};

use helix_core::ServiceKind;
use helix_tests::{client, get_json, post_json};
use serde_json::json;

fn span(trace: u32, span: u32, name: &str, cost: f64) -> serde_json::Value {
    json!({
        "trace_id": format!("{trace:032x}"),
        "span_id": format!("{span:016x}"),
        "parent_span_id": (span > 1).then(|| format!("{:016x}", 1)),
        "name": name,
        "kind": if span == 1 { "run" } else { "tool_call" },
        "start_unix_nanos": 1_764_000_000_000_000_000u64 + u64::from(span) * 1_000_000,
        "end_unix_nanos": 1_764_000_000_000_000_000u64 + u64::from(span) * 1_000_000 + 500_000,
        "project": "webshop",
        "status": "ok",
        "attributes": {"helix.cost_usd": cost}
    })
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = http.get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

async fn project_cost(http: &reqwest::Client, url: &str, project: &str) -> f64 {
    let c = get_json(http, &format!("{url}/v1/costs?group_by=project")).await;
    c["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["key"] == project)
        .and_then(|r| r["cost_usd"].as_f64())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_retried_batch_and_a_reimported_transcript_count_once() {
    let helix = helix_tests::Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let batch: Vec<serde_json::Value> = (1..=20).map(|i| span(5, i, "step", 0.01)).collect();
    let first: serde_json::Value = post_json(&http, &format!("{url}/v1/events"), &batch).await;
    assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(20), Some(0)), "{first}");
    // the client did not see the answer and sends the batch again, with a new span in it
    let mut again = batch.clone();
    again.push(span(5, 21, "step", 0.01));
    let second: serde_json::Value = post_json(&http, &format!("{url}/v1/events"), &again).await;
    assert_eq!(
        (second["accepted"].as_u64(), second["duplicates"].as_u64()),
        (Some(21), Some(20)),
        "{second}"
    );
    let t = get_json(&http, &format!("{url}/v1/traces/{:032x}", 5)).await;
    assert_eq!(t["summary"]["spans"], 21);
    assert!((t["summary"]["cost_usd"].as_f64().expect("cost") - 0.21).abs() < 1e-9, "{t}");
    assert!((project_cost(&http, &url, "webshop").await - 0.21).abs() < 1e-9);
    // the same over OTLP/JSON
    let otlp = helix_trace_collector::otlp::to_otlp_json(
        &batch.iter().map(|v| serde_json::from_value(v.clone()).expect("event")).collect::<Vec<_>>(),
    );
    let res = http.post(format!("{url}/v1/traces")).json(&otlp).send().await.expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(get_json(&http, &format!("{url}/v1/traces/{:032x}", 5)).await["summary"]["spans"], 21);

    // a transcript without timestamps (estimated times), imported twice
    let transcript = [
        json!({"type": "system", "subtype": "init", "session_id": "sess-idem", "model": "claude-sonnet-4-5"}),
        json!({"type": "assistant", "session_id": "sess-idem", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}], "usage": {"input_tokens": 100, "output_tokens": 20}}}),
        json!({"type": "user", "session_id": "sess-idem", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a b", "is_error": false}]}}),
        json!({"type": "assistant", "session_id": "sess-idem", "message": {"id": "msg_2", "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "done"}], "usage": {"input_tokens": 120, "output_tokens": 5}}}),
        json!({"type": "result", "subtype": "success", "is_error": false, "duration_ms": 4000, "num_turns": 2, "session_id": "sess-idem", "total_cost_usd": 0.47}),
    ]
    .iter()
    .map(|l| l.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    let import = |text: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let res = http
                .post(format!("{url}/v1/import/claude-stream-json?project=agents"))
                .header("content-type", "application/x-ndjson")
                .body(text)
                .send()
                .await
                .expect("send");
            assert_eq!(res.status(), 200);
            res.json::<serde_json::Value>().await.expect("json")
        }
    };
    let one = import(transcript.clone()).await;
    assert_eq!(one["duplicates"], 0, "{one}");
    let two = import(transcript).await;
    assert_eq!(two["duplicates"], two["accepted"], "{two}");
    let trace_id = one["trace_ids"][0].as_str().expect("trace").to_owned();
    let t = get_json(&http, &format!("{url}/v1/traces/{trace_id}")).await;
    assert_eq!(t["summary"]["spans"].as_u64(), one["accepted"].as_u64(), "{t}");
    assert!((project_cost(&http, &url, "agents").await - 0.47).abs() < 1e-9, "cost counted once");
    assert!(metric(&http, &url, "helix_collector_duplicate_spans_total").await >= 40.0);
    helix.stop().await;
}

#[tokio::test]
async fn a_flipped_byte_in_the_newest_segment_costs_one_record_and_is_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_tests::test_config(dir.path());
    // the spans are of 2025-11, older than the default retention
    cfg.trace_collector.retention_days = 0;
    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::TraceCollector]).await.expect("start");
    let url = stack.url(ServiceKind::TraceCollector).expect("url");
    let http = client();
    for i in 1..=40 {
        let res = http
            .post(format!("{url}/v1/events"))
            .json(&[span(6, i, "step", 0.0)])
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 200);
    }
    stack.stop().await.expect("stop");
    let segment = cfg.service_data_dir(ServiceKind::TraceCollector).join("events").join("00000001.log");
    let mut data = std::fs::read(&segment).expect("segment");
    let middle = data.len() / 2;
    data[middle] ^= 0x20;
    std::fs::write(&segment, &data).expect("damage");

    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::TraceCollector]).await.expect("restart");
    let url = stack.url(ServiceKind::TraceCollector).expect("url");
    // reported at start, before anything reads the damaged record
    let ready: serde_json::Value =
        http.get(format!("{url}/ready")).send().await.expect("ready").json().await.expect("json");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let t = get_json(&http, &format!("{url}/v1/traces/{:032x}", 6)).await;
    assert_eq!(t["summary"]["spans"], 39, "one record lost, not everything after it");
    let ready = http.get(format!("{url}/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let check =
        ready["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "event_log").expect("check");
    assert!(check["detail"].as_str().is_some_and(|d| d.contains("1 damaged")), "{check}");
    assert_eq!(metric(&http, &url, "helix_collector_damaged_records").await, 1.0);
    let quarantine = cfg.service_data_dir(ServiceKind::TraceCollector).join("events").join("quarantine");
    assert_eq!(std::fs::read_dir(&quarantine).expect("quarantine").count(), 1, "the damaged bytes are kept");
    // ingest goes on after the damage
    let res =
        http.post(format!("{url}/v1/events")).json(&[span(6, 41, "step", 0.0)]).send().await.expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(get_json(&http, &format!("{url}/v1/traces/{:032x}", 6)).await["summary"]["spans"], 40);
    stack.stop().await.expect("stop");
}

/// What the OTLP receiver standing in for the user's tracing backend saw.
#[derive(Default)]
struct Receiver {
    /// Span names it accepted.
    accepted: Vec<String>,
    requests: usize,
}

/// An OTLP/HTTP receiver with limits: a body of more than 4 spans is too large (413), a body
/// holding a span named `poison` is invalid (400).
async fn start_receiver(seen: Arc<Mutex<Receiver>>) -> (String, actix_web::dev::ServerHandle) {
    let server = actix_web::HttpServer::new(move || {
        let seen = seen.clone();
        actix_web::App::new().app_data(actix_web::web::PayloadConfig::new(64 << 20)).route(
            "/v1/traces",
            actix_web::web::post().to(move |body: actix_web::web::Bytes| {
                let seen = seen.clone();
                async move {
                    let spans: Vec<String> = helix_trace_collector::otlp::decode_protobuf(&body)
                        .expect("protobuf")
                        .into_iter()
                        .map(|e| e.expect("span").name)
                        .collect();
                    let mut seen = seen.lock().expect("lock");
                    seen.requests += 1;
                    if spans.len() > 4 {
                        return actix_web::HttpResponse::PayloadTooLarge().finish();
                    }
                    if spans.iter().any(|n| n == "poison") {
                        return actix_web::HttpResponse::BadRequest().body("invalid span");
                    }
                    seen.accepted.extend(spans);
                    actix_web::HttpResponse::Ok().content_type("application/x-protobuf").finish()
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/v1/traces"), handle)
}

#[tokio::test]
async fn forwarding_splits_a_413_dead_letters_a_400_and_goes_on() {
    let seen = Arc::new(Mutex::new(Receiver::default()));
    let (endpoint, receiver) = start_receiver(seen.clone()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_tests::test_config(dir.path());
    cfg.trace_collector.export_otlp_endpoint = Some(endpoint);
    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::TraceCollector]).await.expect("start");
    let url = stack.url(ServiceKind::TraceCollector).expect("url");
    let http = client();
    // one batch of 10: too large for the receiver, and one of its spans is refused for good
    let mut batch: Vec<serde_json::Value> = (1..=10).map(|i| span(8, i, &format!("s{i}"), 0.0)).collect();
    batch[6]["name"] = json!("poison");
    let res = http.post(format!("{url}/v1/events")).json(&batch).send().await.expect("send");
    assert_eq!(res.status(), 200);
    // and later ones still arrive
    let later: Vec<serde_json::Value> = (11..=12).map(|i| span(8, i, &format!("s{i}"), 0.0)).collect();
    http.post(format!("{url}/v1/events")).json(&later).send().await.expect("send");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = seen.lock().expect("lock").accepted.len();
        if n >= 11 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (mut accepted, requests) = {
        let s = seen.lock().expect("lock");
        (s.accepted.clone(), s.requests)
    };
    accepted.sort();
    let mut expected: Vec<String> = (1..=12).filter(|i| *i != 7).map(|i| format!("s{i}")).collect();
    expected.sort();
    assert_eq!(accepted, expected, "everything but the refused span, each once");
    assert!(requests < 30, "no request is retried forever: {requests}");
    assert_eq!(metric(&http, &url, "helix_collector_export_dead_lettered_spans_total").await, 1.0);
    assert!(metric(&http, &url, "helix_collector_export_splits_total").await >= 1.0);
    let dead = std::fs::read_to_string(
        cfg.service_data_dir(ServiceKind::TraceCollector).join("export.deadletter.ndjson"),
    )
    .expect("dead letters");
    assert_eq!(dead.lines().count(), 1);
    assert!(dead.contains("poison") && dead.contains("\"status\":400"), "{dead}");
    stack.stop().await.expect("stop");
    receiver.stop(true).await;
}

/// One OTLP/JSON export request of `n` spans, each with a `pad`-byte attribute.
fn otlp_body(trace: u32, n: u32, pad: usize) -> Vec<u8> {
    let spans: Vec<serde_json::Value> = (1..=n)
        .map(|i| {
            json!({
                "traceId": format!("{trace:032x}"), "spanId": format!("{i:016x}"), "name": "step",
                "startTimeUnixNano": "1764000000000000000", "endTimeUnixNano": "1764000000500000000",
                "attributes": [{"key": "pad", "value": {"stringValue": "x".repeat(pad)}}]
            })
        })
        .collect();
    serde_json::to_vec(&json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "bulk"}},
            {"key": "deployment.environment", "value": {"stringValue": "staging"}}
        ]},
        "scopeSpans": [{"spans": spans}]
    }]}))
    .expect("json")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

#[tokio::test]
async fn otlp_bodies_have_their_own_limit_after_decompression_and_keep_resource_attributes() {
    let helix = helix_tests::Helix::start_with(|c| {
        c.max_body_bytes = 1024 * 1024;
        c.trace_collector.otlp_max_body_bytes = 4 * 1024 * 1024;
    })
    .await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    // 2.5 MiB: over max_body_bytes, under the OTLP limit
    let body = otlp_body(7, 40, 64 * 1024);
    assert!(body.len() > 2 * 1024 * 1024);
    let res = http
        .post(format!("{url}/v1/traces"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let t = get_json(&http, &format!("{url}/v1/traces/{:032x}", 7)).await;
    assert_eq!(t["summary"]["spans"], 40, "{}", t["summary"]);
    let root = &t["spans"][0];
    assert_eq!(root["span"]["attributes"]["deployment.environment"], "staging");
    // other routes keep max_body_bytes
    let res = http
        .post(format!("{url}/v1/events"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 413);
    // a small gzip body that inflates past the OTLP limit is refused, not inflated in memory
    let bomb = gzip(&otlp_body(8, 80, 64 * 1024));
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let res = http
        .post(format!("{url}/v1/traces"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 413);
    assert!(res.headers()["content-type"].to_str().unwrap_or("").contains("problem+json"));
    // gzip under the limit is inflated and stored
    let small = gzip(&otlp_body(9, 10, 1024));
    let res = http
        .post(format!("{url}/v1/traces"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(small)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let t = get_json(&http, &format!("{url}/v1/traces/{:032x}", 9)).await;
    assert_eq!(t["summary"]["spans"], 10);
    helix.stop().await;
}

/// A Claude Code-shaped OTLP/JSON logs body: a prompt, an API request with cost, a failed tool.
fn claude_logs(session: &str) -> serde_json::Value {
    let a = |k: &str, v: serde_json::Value| json!({"key": k, "value": v});
    let record = |t: u64, name: &str, extra: Vec<serde_json::Value>| {
        let mut attributes = vec![
            a("session.id", json!({"stringValue": session})),
            a("event.name", json!({"stringValue": name})),
        ];
        attributes.extend(extra);
        json!({"timeUnixNano": (1_764_000_000_000_000_000u64 + t).to_string(),
               "body": {"stringValue": format!("claude_code.{name}")}, "attributes": attributes})
    };
    json!({"resourceLogs": [{
        "resource": {"attributes": [
            a("service.name", json!({"stringValue": "claude-code"})),
            a("helix.project", json!({"stringValue": "cc"}))
        ]},
        "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events"}, "logRecords": [
            record(1_000_000, "user_prompt", vec![a("prompt_length", json!({"stringValue": "12"}))]),
            record(900_000_000, "api_request", vec![
                a("model", json!({"stringValue": "claude-sonnet-4-5"})),
                a("input_tokens", json!({"intValue": "5977"})),
                a("output_tokens", json!({"intValue": 1504})),
                a("cost_usd", json!({"doubleValue": 0.040491})),
                a("duration_ms", json!({"stringValue": "850"}))
            ]),
            record(950_000_000, "tool_result", vec![
                a("tool_name", json!({"stringValue": "Bash"})),
                a("success", json!({"stringValue": "false"})),
                a("error", json!({"stringValue": "exit 1"})),
                a("duration_ms", json!({"intValue": 40}))
            ]),
            {"body": {"stringValue": "no time at all"}}
        ]}]
    }]})
}

#[tokio::test]
async fn claude_code_log_events_become_calls_with_cost_once_and_metrics_become_points() {
    let helix = helix_tests::Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    for round in 0..2 {
        let res: serde_json::Value = post_json(&http, &format!("{url}/v1/logs"), &claude_logs("s-1")).await;
        // the record without a time is rejected by itself, the others are kept
        assert_eq!(res["partialSuccess"]["rejectedLogRecords"], "1", "round {round}: {res}");
    }
    let c = get_json(&http, &format!("{url}/v1/costs?group_by=project")).await;
    let row = c["rows"].as_array().expect("rows").iter().find(|r| r["key"] == "cc").expect("cc row").clone();
    assert!(
        (row["cost_usd"].as_f64().expect("cost") - 0.040491).abs() < 1e-9,
        "sent twice, counted once: {row}"
    );
    assert_eq!((row["llm_calls"].as_u64(), row["tool_calls"].as_u64()), (Some(1), Some(1)), "{row}");
    assert_eq!(row["input_tokens"], 5977);
    let traces = get_json(&http, &format!("{url}/v1/traces?project=cc")).await;
    let list = traces["traces"].as_array().expect("traces");
    assert_eq!(list.len(), 1, "{traces}");
    assert_eq!(list[0]["name"], "claude-code session s-1");
    let t = get_json(&http, &format!("{url}/v1/traces/{}", list[0]["trace_id"].as_str().expect("id"))).await;
    assert_eq!(t["summary"]["spans"], 4, "run + prompt + call + tool: {}", t["summary"]);
    let root = &t["spans"][0];
    assert_eq!(root["span"]["kind"], "run");
    let kids: Vec<&serde_json::Value> =
        root["children"].as_array().expect("kids").iter().map(|c| &c["span"]).collect();
    let call = kids.iter().find(|s| s["kind"] == "llm_call").expect("llm call");
    assert_eq!(call["name"], "chat claude-sonnet-4-5");
    assert_eq!(
        call["end_unix_nanos"].as_u64().expect("end") - call["start_unix_nanos"].as_u64().expect("start"),
        850_000_000
    );
    let tool = kids.iter().find(|s| s["kind"] == "tool_call").expect("tool call");
    assert_eq!(
        (&tool["name"], &tool["status"], &tool["status_message"]),
        (&json!("execute_tool Bash"), &json!("error"), &json!("exit 1"))
    );

    // metrics: a delta sum and a gauge land in the same session's trace, not in the cost table
    let metrics = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "claude-code"}},
                                    {"key": "helix.project", "value": {"stringValue": "cc"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "claude_code.cost.usage", "unit": "USD", "sum": {"aggregationTemporality": 1, "isMonotonic": true,
             "dataPoints": [{"attributes": [{"key": "session.id", "value": {"stringValue": "s-1"}}],
                             "startTimeUnixNano": "1764000000000000000", "timeUnixNano": "1764000001000000000", "asDouble": 0.040491}]}},
            {"name": "queue.depth", "gauge": {"dataPoints": [{"attributes": [{"key": "session.id", "value": {"stringValue": "s-1"}}],
                             "timeUnixNano": "1764000001000000000", "asInt": "7"}]}}
        ]}]
    }]});
    for _ in 0..2 {
        let res = http.post(format!("{url}/v1/metrics")).json(&metrics).send().await.expect("send");
        assert_eq!(res.status(), 200);
    }
    let t = get_json(&http, &format!("{url}/v1/traces/{}", list[0]["trace_id"].as_str().expect("id"))).await;
    assert_eq!(t["summary"]["spans"], 6, "two points, each once: {}", t["summary"]);
    let c = get_json(&http, &format!("{url}/v1/costs?group_by=project")).await;
    let row = c["rows"].as_array().expect("rows").iter().find(|r| r["key"] == "cc").expect("cc row").clone();
    assert!(
        (row["cost_usd"].as_f64().expect("cost") - 0.040491).abs() < 1e-9,
        "metric cost is not counted again: {row}"
    );
    // protobuf that is not OTLP is a clear 400
    let res = http
        .post(format!("{url}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 400);
    helix.stop().await;
}
