//! Load test of the trace-collector at scale, over real HTTP on 127.0.0.1, bounded in requests.
//!
//! 1. Fills a store with EVENTS events (default 10,000,000) in batches of 1,000, through the same
//!    durable log the collector uses: traces of 100 spans (a run, phases, LLM and tool calls with
//!    costs and tokens) and ten big traces of 10,000 spans each, whose spans are spread over a
//!    tenth of the log each (a long run interleaved with everything else: the hard case for a
//!    trace read). With `HELIX_LOAD_DIR` set, a store filled earlier is reused.
//! 2. Starts the collector in-process on a free loopback port (what `helix up` runs), reporting
//!    the start-up time and the resident memory before and after.
//! 3. Measures p50/p99 of `GET /v1/traces/{id}` for the big traces, cost queries over the whole
//!    store, and the trace listing, one client at a time.
//!
//! usage: cargo run --release -p helix-benches --example load_collector [-- EVENTS REQUESTS]
//! `HELIX_LOAD_SPANS=1` makes every small trace one span (EVENTS traces: the memory case).
//! Targets (issue 4): trace read p99 <= 10 ms for a 10,000-span trace in 10M events; cost queries
//! over 10M events <= 100 ms; memory bounded and independent of store size.

use std::time::{Duration, Instant};

use helix_core::ServiceKind;
use helix_core::trace::Event;
use helix_trace_collector::store::EventStore;
use helix_trace_collector::store::log::LogStore;

const BIG_TRACES: u64 = 10;
const BIG_SPANS: u64 = 10_000;
/// Spans per small trace (`HELIX_LOAD_SPANS`, default 100).
fn small_spans() -> u64 {
    std::env::var("HELIX_LOAD_SPANS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(100)
}
const PROJECTS: [&str; 4] = ["checkout", "search", "billing", "mobile"];
const PHASES: [&str; 4] = ["plan", "development", "test", "review"];
const MODELS: [&str; 3] = ["claude-sonnet-4-5", "gpt-4.1", "claude-haiku-4-5"];

fn span(trace: u64, span: u64, start: u64) -> Event {
    let kind = match span % 10 {
        0 => "phase",
        1..=4 => "llm_call",
        _ => "tool_call",
    };
    let project = PROJECTS[(trace % 4) as usize];
    let phase = PHASES[((span / 25) % 4) as usize];
    let mut e = serde_json::json!({
        "trace_id": format!("{:032x}", trace + 1),
        "span_id": format!("{:016x}", span + 1),
        "parent_span_id": if span == 0 { None } else { Some(format!("{:016x}", 1)) },
        "name": if span == 0 { "run".to_owned() } else { format!("{kind} {span}") },
        "kind": if span == 0 { "run" } else { kind },
        "start_unix_nanos": start,
        "end_unix_nanos": start + 1_500_000_000 + (span % 7) * 100_000_000,
        "status": if span.is_multiple_of(97) { "error" } else { "ok" },
        "project": project,
        "phase": phase,
        "run": format!("run-{trace}"),
        "attributes": {}
    });
    if kind == "llm_call" {
        e["attributes"] = serde_json::json!({
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": MODELS[(span % 3) as usize],
            "gen_ai.usage.input_tokens": 1200 + span % 500,
            "gen_ai.usage.output_tokens": 300 + span % 200,
            "helix.cost_usd": 0.0042
        });
    } else if kind == "tool_call" {
        e["name"] = serde_json::json!("execute_tool Bash");
        e["attributes"] = serde_json::json!({
            "gen_ai.tool.name": "Bash",
            "helix.tool.args": "cargo test --workspace -- --nocapture",
            "helix.tool.result": "test result: ok. 42 passed; 0 failed"
        });
    }
    serde_json::from_value(e).expect("event")
}

/// Fills `dir` with `events` events; returns the big traces' ids.
fn fill(dir: &std::path::Path, events: u64) -> Vec<String> {
    let big: Vec<String> = (0..BIG_TRACES).map(|b| format!("{:032x}", 1_000_000_000 + b + 1)).collect();
    let store = LogStore::open(dir).expect("open store");
    if store.len() >= events {
        println!("reusing {} events in {}", store.len(), dir.display());
        return big;
    }
    let t = Instant::now();
    let batches = events / 1000;
    let per_window = batches / BIG_TRACES;
    let big_per_batch = BIG_SPANS / per_window.max(1);
    let small_spans = small_spans();
    let mut small_trace = 0u64;
    let mut small_span = 0u64;
    let mut big_next = vec![0u64; BIG_TRACES as usize];
    // recent enough for any retention setting; one second per batch, so 10M events span ~3 hours
    let now = u64::try_from(helix_core::time::now_ms()).unwrap_or(0) * 1_000_000;
    let base = now - 2 * 86_400 * 1_000_000_000;
    for b in 0..batches {
        let now = base + b * 1_000_000_000;
        let mut batch = Vec::with_capacity(1000);
        let w = (b / per_window.max(1)).min(BIG_TRACES - 1) as usize;
        for _ in 0..big_per_batch {
            if big_next[w] < BIG_SPANS {
                let i = big_next[w];
                batch.push(span(1_000_000_000 + w as u64, i, now + i));
                big_next[w] += 1;
            }
        }
        while batch.len() < 1000 {
            batch.push(span(small_trace, small_span, now + small_span));
            small_span += 1;
            if small_span == small_spans {
                small_span = 0;
                small_trace += 1;
            }
        }
        store.append(batch).expect("append");
        if (b + 1).is_multiple_of(1000) {
            println!(
                "  {} events, {:.0} events/s",
                (b + 1) * 1000,
                ((b + 1) * 1000) as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    println!("filled {} events in {:.1}s", store.len(), t.elapsed().as_secs_f64());
    big
}

fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        status.lines().find(|l| l.starts_with(k)).map(|l| l[k.len()..].trim().to_owned()).unwrap_or_default()
    };
    format!("rss {} (peak {})", get("VmRSS:"), get("VmHWM:"))
}

async fn measure(name: &str, requests: usize, urls: &[String]) {
    let http = reqwest::Client::new();
    let mut lat = Vec::with_capacity(requests);
    let mut bytes = 0;
    for i in 0..requests {
        let t = Instant::now();
        let url = &urls[i % urls.len()];
        let res = http.get(url).send().await.expect("request");
        if !res.status().is_success() {
            panic!("{name}: GET {url}: {} {}", res.status(), res.text().await.unwrap_or_default());
        }
        bytes = res.bytes().await.expect("body").len();
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{name:<24} n={:<5} p50={:>8.3}ms p99={:>8.3}ms max={:>8.3}ms  body={bytes} bytes",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(Duration::ZERO).as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let events = args.first().copied().unwrap_or(10_000_000);
    let requests = args.get(1).copied().unwrap_or(200) as usize;
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = std::env::var_os("HELIX_LOAD_DIR").map(std::path::PathBuf::from).unwrap_or(tmp.path().into());
    let big = fill(&root.join("trace-collector/events"), events);

    {
        // the same read without HTTP: where the time goes
        let store = LogStore::open(&root.join("trace-collector/events")).expect("open");
        let (mut read, mut build) = (Vec::new(), Vec::new());
        for id in &big {
            // warm the page cache, as the HTTP measurement below is warm
            store.trace_records(id).expect("read");
        }
        for i in 0..20 {
            let t = Instant::now();
            let records = store.trace_records(&big[i % big.len()]).expect("read");
            read.push(t.elapsed());
            let t = Instant::now();
            let json = helix_trace_collector::routes::traces::tree_json(&records);
            build.push(t.elapsed());
            assert!(json.len() > 1000);
        }
        read.sort();
        build.sort();
        println!(
            "in-process, 10k-span trace, warm: read records p50 {:.2} ms, assemble tree JSON p50 {:.2} ms",
            read[10].as_secs_f64() * 1e3,
            build[10].as_secs_f64() * 1e3
        );
    }
    println!("before start: {}", rss());
    let cfg = helix_core::HelixConfig {
        trace_collector_port: 0,
        data_dir: root.clone(),
        log_level: "warn".to_owned(),
        workers: 2,
        trace_collector: helix_core::TraceCollectorConfig {
            retention_days: 0,
            retention_bytes: 0,
            ..Default::default()
        },
        ..helix_core::HelixConfig::default()
    };
    let t = Instant::now();
    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::TraceCollector]).await.expect("start");
    println!("collector opened {events} events in {:.2}s; {}", t.elapsed().as_secs_f64(), rss());
    // a second start reads sealed segments' summaries and the baselines snapshot saved at stop
    stack.stop().await.expect("stop");
    let t = Instant::now();
    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::TraceCollector]).await.expect("start");
    println!("collector reopened in {:.2}s; {}", t.elapsed().as_secs_f64(), rss());
    let url = stack.url(ServiceKind::TraceCollector).expect("url");

    let traces: Vec<String> = big.iter().map(|id| format!("{url}/v1/traces/{id}")).collect();
    measure("trace 10k spans", requests, &traces).await;
    for g in ["project", "model", "day", "week"] {
        measure(&format!("costs group_by={g}"), requests, &[format!("{url}/v1/costs?group_by={g}")]).await;
    }
    measure(
        "costs project by day",
        requests,
        &[format!(
            "{url}/v1/costs?group_by=project&bucket=day&from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
        )],
    )
    .await;
    measure("list traces", requests, &[format!("{url}/v1/traces?limit=50")]).await;
    measure("list traces project", requests, &[format!("{url}/v1/traces?limit=50&project=billing")]).await;
    let t = Instant::now();
    let page: serde_json::Value =
        reqwest::get(format!("{url}/v1/traces?limit=50")).await.expect("list").json().await.expect("json");
    let cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
    println!("first page again in {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    measure("list traces page 2", requests, &[format!("{url}/v1/traces?limit=50&cursor={cursor}")]).await;
    println!("after queries: {}", rss());
    stack.stop().await.expect("stop");
}
