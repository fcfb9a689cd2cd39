//! The emitter against real receivers: the trace-collector itself (in process, on a loopback
//! port) and, for answers the collector only gives under load, a minimal scripted HTTP server.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use helix_core::gateway_config::ProviderKind;
use helix_core::trace::{Event, SpanKind, SpanStatus, attr};
use helix_trace_collector::CollectorState;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::breaker::{Change, State};
use crate::protocol::Protocol;
use crate::protocol::usage::Usage;

const T0: u64 = 1_773_532_800_000_000_000;

fn call<'a>(trace: &'a TraceContext, project: &'a str) -> LlmCall<'a> {
    LlmCall {
        trace,
        project,
        client_protocol: Protocol::Anthropic,
        request_model: "smart",
        provider: ProviderKind::Openai,
        response_model: Some("gpt-4.1-2025-04-14"),
        deployment_id: "openai-main",
        fallback_from: Some("anthropic-main"),
        attempts: 2,
        status_code: Some(200),
        error: None,
        streaming: true,
        usage: Some(Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_tokens: 50,
            cache_write_tokens: 5,
        }),
        cost_usd: Some(0.0012),
        start_unix_nanos: T0,
        end_unix_nanos: T0 + 1_500_000_000,
    }
}

/// `n` valid call spans in `trace`, each with its own span id.
fn spans(trace: &TraceContext, project: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let t = TraceContext { span_id: new_span_id(), ..trace.clone() };
            let mut c = call(&t, project);
            c.start_unix_nanos = T0 + i as u64;
            c.end_unix_nanos = T0 + i as u64 + 10;
            llm_call_event(&c)
        })
        .collect()
}

/// A port nothing listens on (bound and released; another process could take it, unlikely).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

struct Collector {
    handle: actix_web::dev::ServerHandle,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// The real trace-collector, on `port` (0: any free one).
    fn start(port: u16) -> Collector {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = helix_core::HelixConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
        let state = web::Data::new(CollectorState::open(&cfg).expect("open collector"));
        let server = HttpServer::new(move || {
            let state = state.clone();
            App::new().configure(move |c| helix_trace_collector::configure(c, state.clone()))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", port))
        .expect("bind collector");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Collector { handle, port, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span of a trace, flattened from `GET /v1/traces/{id}`; empty when it is unknown.
    async fn trace(&self, id: &str) -> Vec<Event> {
        let res = reqwest::get(format!("{}/v1/traces/{id}", self.url())).await.expect("get trace");
        if res.status() == 404 {
            return Vec::new();
        }
        assert_eq!(res.status(), 200);
        let tree: Value = res.json().await.expect("json");
        fn walk(nodes: &Value, out: &mut Vec<Event>) {
            for n in nodes.as_array().expect("nodes") {
                out.push(serde_json::from_value(n["span"].clone()).expect("span"));
                walk(&n["children"], out);
            }
        }
        let mut out = Vec::new();
        walk(&tree["spans"], &mut out);
        assert_eq!(tree["summary"]["spans"].as_u64(), Some(out.len() as u64));
        out
    }
}

async fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[test]
fn traceparent_joins_the_clients_trace_or_starts_a_new_one() {
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let t = TraceContext::from_traceparent(Some(header));
    assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(t.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert!(is_lower_hex(&t.span_id, 16) && t.span_id != "00f067aa0ba902b7");
    assert_eq!(t.flags, 1);
    // what goes upstream names the gateway's span as the parent
    let upstream = parse_traceparent(&t.traceparent()).expect("own traceparent parses");
    assert_eq!(upstream, (t.trace_id.clone(), t.span_id.clone(), 1));
    assert_eq!(
        parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future"),
        Some(("4bf92f3577b34da6a3ce929d0e0e4736".to_owned(), "00f067aa0ba902b7".to_owned(), 0)),
        "later versions may add fields"
    );
    for bad in [
        "",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        let t = TraceContext::from_traceparent(Some(bad));
        assert_eq!(t.parent_span_id, None, "{bad:?} starts a new trace");
        assert!(is_lower_hex(&t.trace_id, 32) && t.trace_id != "0".repeat(32));
    }
    let (a, b) = (TraceContext::new_root(), TraceContext::new_root());
    assert_ne!(a.trace_id, b.trace_id, "random");
}

#[test]
fn an_llm_call_is_one_genai_span() {
    let t = TraceContext::from_traceparent(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    let e = llm_call_event(&call(&t, "shop"));
    assert_eq!(e.validate(), Ok(()));
    assert_eq!(e.name, "chat smart");
    assert_eq!(e.kind, SpanKind::LlmCall);
    assert_eq!(e.status, SpanStatus::Ok);
    assert_eq!(e.status_message, None);
    assert_eq!(e.project.as_deref(), Some("shop"));
    assert_eq!(
        (e.trace_id.as_str(), e.parent_span_id.as_deref()),
        (t.trace_id.as_str(), Some("00f067aa0ba902b7"))
    );
    assert_eq!(e.span_id, t.span_id);
    assert_eq!(e.text(attr::GEN_AI_OPERATION_NAME), Some("chat"));
    assert_eq!(e.text(attr::GEN_AI_PROVIDER_NAME), Some("openai"));
    assert_eq!(e.text(attr::GEN_AI_REQUEST_MODEL), Some("smart"));
    assert_eq!(e.text(attr::GEN_AI_RESPONSE_MODEL), Some("gpt-4.1-2025-04-14"));
    assert_eq!(e.number(attr::GEN_AI_USAGE_INPUT_TOKENS), Some(155.0), "all input, cached included");
    assert_eq!(e.number(attr::GEN_AI_USAGE_OUTPUT_TOKENS), Some(20.0));
    assert_eq!(e.number(attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS), Some(50.0));
    assert_eq!(e.number(names::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS), Some(5.0));
    assert_eq!(e.number(attr::HELIX_COST_USD), Some(0.0012));
    assert_eq!(e.text(names::DEPLOYMENT), Some("openai-main"));
    assert_eq!(e.text(names::FALLBACK_FROM), Some("anthropic-main"));
    assert_eq!(e.number(names::ATTEMPTS), Some(2.0));
    assert_eq!(e.number(names::HTTP_RESPONSE_STATUS_CODE), Some(200.0));
    assert_eq!(e.attributes.get(names::STREAMING), Some(&Value::Bool(true)));
    assert_eq!(e.text(names::CLIENT_PROTOCOL), Some("anthropic"));
    // exactly these attributes: nothing else (no prompt, no key) rides along
    let keys: Vec<&str> = e.attributes.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 15, "{keys:?}");

    let mut failed = call(&t, "shop");
    failed.status_code = Some(503);
    failed.usage = None;
    failed.cost_usd = None;
    failed.fallback_from = None;
    let e = llm_call_event(&failed);
    assert_eq!(e.validate(), Ok(()));
    assert_eq!(e.status, SpanStatus::Error);
    assert_eq!(e.status_message.as_deref(), Some("upstream answered 503"));
    assert!(!e.attributes.contains_key(attr::GEN_AI_USAGE_INPUT_TOKENS));
    assert!(
        !e.attributes.contains_key(attr::HELIX_COST_USD) && !e.attributes.contains_key(names::FALLBACK_FROM)
    );
    failed.status_code = None;
    failed.error = Some("upstream timed out after 120 s");
    let e = llm_call_event(&failed);
    assert_eq!(e.status_message.as_deref(), Some("upstream timed out after 120 s"));
    assert!(!e.attributes.contains_key(names::HTTP_RESPONSE_STATUS_CODE));

    // a client's absurd model name is cut, not a reason to lose the span
    let long = "é".repeat(600);
    let mut c = call(&t, "shop");
    c.request_model = &long;
    let e = llm_call_event(&c);
    assert_eq!(e.validate(), Ok(()));
    assert!(e.name.len() <= helix_core::trace::MAX_NAME);
}

#[test]
fn the_json_written_directly_is_the_events() {
    let child =
        TraceContext::from_traceparent(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    let root = TraceContext::new_root();
    let long = "é\"\\".repeat(300);
    let mut variants = vec![call(&child, "shop"), call(&root, "a \"quoted\" project")];
    let mut failed = call(&root, "shop");
    (failed.status_code, failed.usage, failed.cost_usd, failed.fallback_from) = (Some(503), None, None, None);
    variants.push(failed.clone());
    (failed.status_code, failed.error, failed.response_model) = (None, Some("timed out\n"), None);
    variants.push(failed.clone());
    (failed.error, failed.cost_usd, failed.streaming) = (None, Some(f64::NAN), false);
    variants.push(failed);
    let mut odd = call(&child, &long);
    (odd.request_model, odd.end_unix_nanos) = (&long, T0 - 1);
    variants.push(odd);
    for c in &variants {
        let written: Event = serde_json::from_slice(&llm_call_json(c)).expect("an Event");
        assert_eq!(written, llm_call_event(c), "{c:?}");
        assert_eq!(written.validate(), Ok(()));
    }
}

#[test]
fn a_breaker_transition_is_a_circuit_span() {
    let change =
        Change { from: State::Closed, to: State::Open, reason: "failure rate 60% >= 50%".to_owned() };
    let alone = circuit_event("anthropic-main", &change, T0, None);
    assert_eq!(alone.validate(), Ok(()));
    assert_eq!(alone.kind, SpanKind::Circuit);
    assert_eq!(alone.parent_span_id, None);
    assert_eq!(alone.text(names::CIRCUIT_FROM), Some("closed"));
    assert_eq!(alone.text(names::CIRCUIT_TO), Some("open"));
    assert_eq!(alone.text(names::CIRCUIT_REASON), Some("failure rate 60% >= 50%"));
    assert_eq!(alone.text(names::DEPLOYMENT), Some("anthropic-main"));
    let t = TraceContext::new_root();
    let caused = circuit_event("anthropic-main", &change, T0, Some(&t));
    assert_eq!(caused.validate(), Ok(()));
    assert_eq!(
        (caused.trace_id.as_str(), caused.parent_span_id.as_deref()),
        (t.trace_id.as_str(), Some(t.span_id.as_str()))
    );
}

#[actix_web::test]
async fn emitted_spans_arrive_at_the_real_collector() {
    let collector = Collector::start(0);
    let emitter = Emitter::spawn(format!("{}/", collector.url()), 10_000);
    let trace =
        TraceContext::from_traceparent(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    let span = llm_call_event(&call(&trace, "shop"));
    emitter.emit(span.clone());
    let change = Change { from: State::Closed, to: State::Open, reason: "tripped".to_owned() };
    emitter.emit(circuit_event("openai-main", &change, T0 + 2, Some(&trace)));
    assert!(emitter.flush(Duration::from_secs(10)).await, "{:?}", emitter.stats());
    let stats = emitter.stats();
    assert_eq!((stats.sent, stats.dropped, stats.rejected, stats.queued), (2, 0, 0, 0), "{stats:?}");
    assert!(stats.connected && stats.last_error.is_none());

    let stored = collector.trace(&trace.trace_id).await;
    assert_eq!(stored.len(), 2);
    let got = stored.iter().find(|e| e.span_id == span.span_id).expect("the call span");
    assert_eq!(got, &span, "stored as sent");
    let circuit = stored.iter().find(|e| e.kind == SpanKind::Circuit).expect("the circuit span");
    assert_eq!(circuit.parent_span_id.as_deref(), Some(span.span_id.as_str()));
    collector.handle.stop(true).await;
}

#[actix_web::test]
async fn a_collector_down_at_first_loses_nothing_once_it_is_up() {
    let port = free_port();
    let emitter = Emitter::spawn(format!("http://127.0.0.1:{port}"), 10_000);
    let traces: Vec<TraceContext> = (0..3).map(|_| TraceContext::new_root()).collect();
    for t in &traces {
        for e in spans(t, "shop", 400) {
            emitter.emit(e);
        }
    }
    assert!(
        wait_for(Duration::from_secs(10), || emitter.stats().failed_posts >= 2).await,
        "the worker keeps trying: {:?}",
        emitter.stats()
    );
    let down = emitter.stats();
    assert_eq!((down.sent, down.dropped, down.queued), (0, 0, 1_200), "{down:?}");
    assert!(!down.connected);
    let error = down.last_error.expect("an error is reported");
    assert!(error.starts_with("cannot reach the trace-collector"), "{error}");
    assert!(!error.contains("http://"), "no url in errors: {error}");

    let collector = Collector::start(port);
    assert!(emitter.flush(Duration::from_secs(30)).await, "{:?}", emitter.stats());
    let up = emitter.stats();
    assert_eq!((up.sent, up.dropped, up.queued), (1_200, 0, 0), "{up:?}");
    assert!(up.connected && up.last_error.is_none());
    for t in &traces {
        let stored = collector.trace(&t.trace_id).await;
        assert_eq!(stored.len(), 400, "every span of trace {}", t.trace_id);
        assert!(stored.iter().all(|e| e.project.as_deref() == Some("shop")));
    }
    collector.handle.stop(true).await;
}

#[tokio::test]
async fn beyond_capacity_events_are_dropped_and_counted_without_blocking() {
    let port = free_port();
    let emitter = Emitter::spawn(format!("http://127.0.0.1:{port}"), 100);
    let events = spans(&TraceContext::new_root(), "shop", 1_000);
    // while nothing can be delivered (no collector, retries backing off for seconds) every emit
    // still returns: an emit that waited for room would never finish here, since the queue
    // never drains; how fast emits are belongs in benchmarks
    let emitter = std::sync::Arc::new(emitter);
    let (done, finished) = std::sync::mpsc::channel();
    let e2 = emitter.clone();
    std::thread::spawn(move || {
        for e in events {
            e2.emit(e);
        }
        let _ = done.send(());
    });
    finished.recv_timeout(Duration::from_secs(30)).expect("1000 emits into a full queue did not return");
    let stats = emitter.stats();
    assert_eq!(stats.dropped, 900, "{stats:?}");
    assert_eq!(stats.queued, 100, "the batch in flight counts against the capacity");
    assert_eq!(stats.sent, 0);

    let mut invalid = spans(&TraceContext::new_root(), "shop", 1).remove(0);
    invalid.span_id = "0".repeat(16);
    emitter.emit(invalid);
    assert_eq!(emitter.stats().rejected, 1);
    assert!(
        !emitter.flush(Duration::from_millis(300)).await,
        "nothing can drain while the collector is down"
    );
}

/// One request the scripted server saw.
#[derive(Debug, Clone)]
struct Seen {
    events: usize,
    status: u16,
    at: Instant,
}

/// A minimal HTTP/1.1 receiver answering with scripted statuses (then 200) and counting events.
struct Scripted {
    port: u16,
    seen: std::sync::Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    async fn start(script: Vec<(u16, Option<u64>)>) -> Scripted {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let script = std::sync::Arc::new(Mutex::new(VecDeque::from(script)));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    assert!(head.starts_with("post /v1/events "), "{head}");
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .expect("content-length");
                    while buf.len() < head_end + length {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let events: Vec<Value> =
                        serde_json::from_slice(&buf[head_end..head_end + length]).expect("array");
                    let (status, retry_after) =
                        script.lock().expect("script").pop_front().unwrap_or((200, None));
                    log.lock().expect("log").push(Seen { events: events.len(), status, at: Instant::now() });
                    let body = if status == 200 {
                        serde_json::json!({"accepted": events.len(), "rejected": []}).to_string()
                    } else {
                        serde_json::json!({"code": "whatever"}).to_string()
                    };
                    let retry = retry_after.map(|s| format!("retry-after: {s}\r\n")).unwrap_or_default();
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{retry}\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(answer.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Scripted { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

#[tokio::test]
async fn busy_answers_are_retried_after_retry_after_and_413_splits_the_batch() {
    let server = Scripted::start(vec![(503, Some(1)), (413, None), (500, None)]).await;
    let emitter = Emitter::spawn(format!("http://127.0.0.1:{}", server.port), 10_000);
    for e in spans(&TraceContext::new_root(), "shop", 600) {
        emitter.emit(e);
    }
    assert!(emitter.flush(Duration::from_secs(20)).await, "{:?}", emitter.stats());
    let seen = server.seen();
    let stats = emitter.stats();
    assert_eq!((stats.sent, stats.dropped, stats.queued), (600, 0, 0), "{stats:?} {seen:?}");
    assert_eq!(stats.failed_posts, 2, "the 503 and the 500");
    let stored: usize = seen.iter().filter(|s| s.status == 200).map(|s| s.events).sum();
    assert_eq!(stored, 600, "{seen:?}");

    // the batch refused with 503 comes back whole, no sooner than Retry-After
    assert_eq!(seen[1].events, seen[0].events, "{seen:?}");
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950), "{:?}", seen[1].at - seen[0].at);
    // the 413 batch is sent again in halves (the first half meets the 500 and is retried)
    let big = seen[1].events;
    assert_eq!(seen[1].status, 413);
    assert!(big > 1);
    assert_eq!((seen[2].events, seen[2].status), (big / 2, 500));
    assert_eq!((seen[3].events, seen[3].status), (big / 2, 200));
    assert_eq!((seen[4].events, seen[4].status), (big - big / 2, 200));
}

#[tokio::test]
async fn a_batch_refused_for_good_is_dropped_and_counted() {
    let server = Scripted::start(vec![(400, None)]).await;
    let emitter = Emitter::spawn(format!("http://127.0.0.1:{}", server.port), 10_000);
    for e in spans(&TraceContext::new_root(), "shop", 10) {
        emitter.emit(e);
    }
    assert!(emitter.flush(Duration::from_secs(10)).await, "{:?}", emitter.stats());
    let seen = server.seen();
    let refused: usize = seen.iter().filter(|s| s.status == 400).map(|s| s.events).sum();
    assert!(refused > 0, "{seen:?}");
    let stats = emitter.stats();
    assert_eq!(
        (stats.dropped, stats.sent, stats.failed_posts),
        (refused as u64, 10 - refused as u64, 1),
        "{stats:?}"
    );
    assert_eq!(seen.len(), if refused == 10 { 1 } else { 2 }, "a 400 is not retried: {seen:?}");
}

#[test]
fn events_built_by_the_gateway_validate_whatever_their_text() {
    let long_model = "模".repeat(MAX_MODEL); // 3 bytes a character: cut inside one
    let long_project = "ü".repeat(helix_core::trace::MAX_NAME);
    let long_error = "\u{1F525}".repeat(2_000);
    let control = "gpt\n\t\u{0}\u{7f}\"\\<script>";
    let child =
        TraceContext::from_traceparent(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    let root = TraceContext::new_root();
    let mut calls = Vec::new();
    for (model, project) in
        [(long_model.as_str(), long_project.as_str()), (control, control), ("", ""), (" ", "\u{0}")]
    {
        for trace in [&child, &root] {
            let mut c = call(trace, project);
            c.request_model = model;
            c.response_model = Some(model);
            c.fallback_from = Some(control);
            calls.push(c.clone());
            (c.status_code, c.error, c.cost_usd, c.end_unix_nanos) =
                (None, Some(long_error.as_str()), Some(f64::INFINITY), T0 - 1);
            calls.push(c.clone());
            (c.usage, c.cost_usd, c.error, c.status_code) = (None, Some(f64::NAN), None, Some(599));
            calls.push(c);
        }
    }
    for c in &calls {
        let e = llm_call_event(c);
        assert_eq!(e.validate(), Ok(()), "{c:?}");
        assert!(e.name.starts_with("chat ") && e.name.len() <= 5 + MAX_MODEL, "{}", e.name);
        assert!(e.project.as_ref().is_some_and(|p| p.len() <= helix_core::trace::MAX_NAME));
        assert!(e.status_message.as_ref().is_none_or(|m| m.len() <= 1024));
        assert!(e.text(attr::GEN_AI_REQUEST_MODEL).is_some_and(|m| m.len() <= MAX_MODEL));
        assert!(!e.attributes.contains_key(attr::HELIX_COST_USD) || e.number(attr::HELIX_COST_USD).is_some());
        assert!(e.end_unix_nanos >= e.start_unix_nanos);
        // what is sent is the same event, and valid too
        let written: Event = serde_json::from_slice(&llm_call_json(c)).expect("an Event");
        assert_eq!(written, e);
    }

    let reason = "x".repeat(100_000);
    let change = Change { from: State::HalfOpen, to: State::Open, reason: reason.clone() };
    let deployment = "d".repeat(2 * helix_core::trace::MAX_NAME);
    for caused_by in [None, Some(&child)] {
        let e = circuit_event(&deployment, &change, T0, caused_by);
        assert_eq!(e.validate(), Ok(()));
        assert!(e.name.len() <= helix_core::trace::MAX_NAME);
        assert_eq!(e.text(names::CIRCUIT_REASON).map(str::len), Some(1024));
        assert_eq!(e.text(names::DEPLOYMENT), Some(deployment.as_str()), "kept whole (an attribute)");
        assert_eq!(e.status, SpanStatus::Unset);
    }
}
