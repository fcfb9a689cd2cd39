//! Load test of the healer over real HTTP on 127.0.0.1, bounded in requests and time.
//!
//! 1. Indexes N synthetic signatures (default 100,000) into a fresh data directory, as a
//!    long-running healer would have learned them.
//! 2. Starts the healer in-process on a free loopback port (exactly what `helix up` runs).
//! 3. Fires a fixed number of requests from C concurrent clients (default 32) for each
//!    scenario and prints p50/p99/max latency and throughput:
//!    - `analyze`: POST /v1/analyze with a typical failure (known pattern),
//!    - `analyze_unseen`: POST /v1/analyze with errors no pattern matches (similar-error search),
//!    - `search`: GET /v1/patterns?q=... full-text search.
//!
//! 4. With `HELIX_BENCH_POSTGRES=1`, the same scenarios again in the same run on a healer whose
//!    learning store is PostgreSQL (a fresh database on the machine's server, dropped after),
//!    and the p99 ratios PostgreSQL / embedded.
//!
//! usage: cargo run --release -p helix-benches --example load_healer [-- SIGNATURES CLIENTS REQUESTS]
//! Targets (issue 3): analyze p99 <= 10 ms at 32 clients; search p99 <= 5 ms with 100k signatures.
//! Issue 17: analyze p99 on PostgreSQL within 1.5x of the embedded backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_core::ServiceKind;
use helix_healer::index::KnowledgeIndex;
use helix_healer::model::Category;
use helix_healer::patterns::PatternSet;

const WORDS: &[&str] = &[
    "connection",
    "module",
    "timeout",
    "buffer",
    "index",
    "parser",
    "socket",
    "cache",
    "worker",
    "schema",
    "token",
    "config",
    "stream",
    "thread",
    "queue",
    "record",
    "handler",
    "client",
    "server",
    "future",
];

fn synthetic_template(i: usize) -> String {
    let w = |k: usize| WORDS[(i / k.max(1) + k) % WORDS.len()];
    format!("{}Error: {} {} failed in {} '<quoted>' at <path> (code {})", w(1), w(3), w(7), w(11), i % 997)
}

struct Stats {
    name: &'static str,
    latencies: Vec<Duration>,
    errors: usize,
    wall: Duration,
}

impl Stats {
    fn p99(&self) -> Duration {
        self.latencies.get((self.latencies.len() as f64 * 0.99) as usize).copied().unwrap_or_default()
    }

    fn print(&mut self) {
        self.latencies.sort();
        let pct = |p: f64| {
            self.latencies[((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1)]
        };
        println!(
            "{:<16} n={:<6} errors={:<3} p50={:>8.3}ms p99={:>8.3}ms max={:>8.3}ms  {:>8.0} req/s",
            self.name,
            self.latencies.len(),
            self.errors,
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            self.latencies.len() as f64 / self.wall.as_secs_f64()
        );
    }
}

async fn run<F>(name: &'static str, clients: usize, requests: usize, make: F) -> Stats
where
    F: Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (make, next) = (make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                match make(&http, i).send().await {
                    Ok(res) if res.status().is_success() => {
                        let _ = res.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut stats = Stats { name, latencies: Vec::new(), errors: 0, wall: Duration::ZERO };
    for t in tasks {
        if let Ok((lat, errors)) = t.await {
            stats.latencies.extend(lat);
            stats.errors += errors;
        }
    }
    stats.wall = started.elapsed();
    stats
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let signatures = args.first().copied().unwrap_or(100_000);
    let clients = args.get(1).copied().unwrap_or(32);
    let requests = args.get(2).copied().unwrap_or(20_000);

    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = helix_core::HelixConfig {
        healer_port: 0,
        data_dir: dir.path().to_path_buf(),
        log_level: "warn".to_owned(),
        ..helix_core::HelixConfig::default()
    };
    cfg.workers = 2;

    let t = Instant::now();
    {
        let patterns = PatternSet::seed().expect("seed");
        let index = KnowledgeIndex::open(&dir.path().join("healer/index"), &patterns).expect("index");
        for i in 0..signatures {
            let sig = format!("{i:064x}");
            index
                .upsert_signature(&sig, &synthetic_template(i), "python", Category::RuntimeError, &[])
                .expect("upsert");
        }
        index.commit_if_dirty().expect("commit");
    }
    println!("indexed {signatures} signatures in {:.1}s", t.elapsed().as_secs_f64());

    let embedded = scenarios(&cfg, clients, requests).await;
    if std::env::var("HELIX_BENCH_POSTGRES").is_ok_and(|v| v == "1") {
        let db = helix_tests::postgres::TestDatabase::create("load_healer");
        cfg.healer.database_url = Some(db.url.clone());
        println!("the same on PostgreSQL ({})", db.name);
        let pg = scenarios(&cfg, clients, requests).await;
        for (e, p) in embedded.iter().zip(&pg) {
            println!(
                "{:<16} p99 PostgreSQL / embedded = {:.2}",
                e.name,
                p.p99().as_secs_f64() / e.p99().as_secs_f64()
            );
        }
    }
}

/// Starts the healer of `cfg`, runs every scenario against it, stops it.
async fn scenarios(cfg: &helix_core::HelixConfig, clients: usize, requests: usize) -> Vec<Stats> {
    let stack = helix::stack::Stack::start(cfg, &[ServiceKind::Healer]).await.expect("start healer");
    let url = stack.url(ServiceKind::Healer).expect("url");
    println!("healer at {url}; {clients} clients, {requests} requests per scenario (127.0.0.1 only)");
    let mut all = Vec::new();
    let known = serde_json::json!({"output": "Traceback (most recent call last):\n  File \"/w/app.py\", line 2, in <module>\n    import yaml\nModuleNotFoundError: No module named 'yaml'\n", "project": "load"});
    let u = url.clone();
    all.push(
        run("analyze", clients, requests, move |h, _| h.post(format!("{u}/v1/analyze")).json(&known)).await,
    );
    let u = url.clone();
    all.push(
        run("analyze_unseen", clients, requests, move |h, i| {
            h.post(format!("{u}/v1/analyze"))
                .json(&serde_json::json!({"output": format!("fatal: {} {} refused the {} handshake #{i}\n", WORDS[i % 20], WORDS[(i / 20) % 20], WORDS[(i / 7) % 20]), "exit_code": 1}))
        })
        .await,
    );
    let u = url.clone();
    all.push(
        run("search", clients, requests, move |h, i| {
            h.get(format!("{u}/v1/patterns?q={}+{}+not+found&limit=10", WORDS[i % 20], WORDS[(i / 3) % 20]))
        })
        .await,
    );
    for s in &mut all {
        s.print();
    }
    stack.stop().await.expect("stop");
    all
}
