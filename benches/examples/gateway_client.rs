//! Load client of `benches/gateway_load.sh`: per-request latency (and time to first token for
//! streams) of the same small LLM call sent to several targets in interleaved rounds, so a shared,
//! noisy machine drifts alike for all of them and the per-round differences can be compared.
//!
//! Two modes, both over keep-alive HTTP/1.1 connections on loopback, bounded in requests or time:
//!
//! - `seq`: concurrency 1, one connection per target, requests back to back; each round sends
//!   `--requests` to every target in turn (after `--warmup` unmeasured ones).
//! - `paced`: an open-loop constant rate (`--rate` req/s for `--secs` per target and round): a
//!   pacer thread releases request i at t0 + i/rate whatever the answers do (no coordinated
//!   omission; a request still in flight does not hold the next one back), connections are reused
//!   from a pool that grows as needed (at most `--max-in-flight` requests at once; requests beyond
//!   are counted as `skipped`, never queued). Latency is measured from the moment the request's
//!   task starts; how late that was against its schedule is reported as `lag`.
//!
//! A target is `label,kind,model,url`; kinds: `chat` (non-streaming Chat Completions), `chat-stream`,
//! `messages-stream` (Anthropic Messages, `stream: true`), `responses-stream` (OpenAI Responses,
//! `stream: true`). For streams the first content event (a Chat chunk with non-empty
//! `delta.content` or `tool_calls`, an Anthropic `content_block_delta`, a Responses
//! `response.output_text.delta` / `response.function_call_arguments.delta`) gives the time to first
//! token (TTFT); the whole answer's latency is until the body ends. A kind ending in `+fresh`
//! (`chat-stream+fresh`) opens a new connection for every request instead of reusing one. A stream counts as an error
//! unless it reached its proper end (`[DONE]`, `message_stop`, `response.completed`); streams that
//! carry the gateway's closing `: helix {...}` comment are counted (`helix=`).
//!
//! `--after-round-post URL` POSTs URL after each target's round (the fake's `/_fake/reset`); then
//! the client pauses `--gap-ms` (300) before the next target.
//! `--pid label=PID` samples VmRSS of PID every 200 ms while that target is loaded and prints, after
//! each of its rounds, the calls sent to it so far, VmRSS now, the peak sampled and VmHWM.
//!
//! Output, one line each (times in µs), for the script to aggregate:
//!   ROUND label round n errors skipped p50 p90 p99 max ttft_p50 ttft_p99 lag_p99 helix
//!   ERRORS label round what:count... (after a ROUND with errors: HTTP status, transport, incomplete)
//!   MEM label round calls rss_kb peak_kb hwm_kb
//!
//! usage: gateway_client seq [--rounds 7] [--requests 5000] [--warmup 500] TARGET...
//!        gateway_client paced [--rounds 5] [--secs 4] [--warmup-secs 1] [--rate 2000]
//!                             [--max-in-flight 512] [--pid label=PID]... TARGET...
//!        (both: [--after-round-post URL] [--gap-ms 300] [--header name:value]...)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Chat,
    ChatStream,
    MessagesStream,
    ResponsesStream,
}

impl Kind {
    fn parse(s: &str) -> Result<Kind, String> {
        Ok(match s {
            "chat" => Kind::Chat,
            "chat-stream" => Kind::ChatStream,
            "messages-stream" => Kind::MessagesStream,
            "responses-stream" => Kind::ResponsesStream,
            _ => return Err(format!("unknown kind {s}")),
        })
    }

    fn body(self, model: &str) -> Vec<u8> {
        let messages = json!([{ "role": "user", "content": "Say hello" }]);
        let body = match self {
            Kind::Chat => json!({ "model": model, "messages": messages, "max_tokens": 16 }),
            Kind::ChatStream => {
                json!({ "model": model, "messages": messages, "max_tokens": 16, "stream": true })
            }
            Kind::MessagesStream => {
                json!({ "model": model, "messages": messages, "max_tokens": 16, "stream": true })
            }
            Kind::ResponsesStream => {
                json!({ "model": model, "input": "Say hello", "max_output_tokens": 16, "stream": true })
            }
        };
        body.to_string().into_bytes()
    }
}

#[derive(Clone)]
struct Target {
    label: String,
    kind: Kind,
    /// A new connection for every request (kind suffix `+fresh`) instead of kept-alive ones.
    fresh: bool,
    url: String,
    body: &'static [u8],
}

fn parse_target(s: &str) -> Result<Target, String> {
    let parts: Vec<&str> = s.splitn(4, ',').collect();
    let [label, kind, model, url] = parts[..] else {
        return Err(format!("a target is label,kind,model,url: {s}"));
    };
    let (kind, fresh) = match kind.strip_suffix("+fresh") {
        Some(k) => (k, true),
        None => (kind, false),
    };
    let kind = Kind::parse(kind)?;
    Ok(Target {
        label: label.to_owned(),
        kind,
        fresh,
        url: url.to_owned(),
        body: Box::leak(kind.body(model).into_boxed_slice()),
    })
}

/// One answer's measurements; `ttft` is None for non-streaming calls.
struct Sample {
    total: Duration,
    ttft: Option<Duration>,
    ok: bool,
    /// The answer's HTTP status, 0 when none arrived.
    status: u16,
    helix: bool,
}

/// What the stream parser saw so far.
#[derive(Default)]
struct StreamState {
    buf: Vec<u8>,
    first: bool,
    end: bool,
    helix: bool,
}

impl StreamState {
    /// Feeds bytes; returns true when this chunk completed the first content event.
    fn feed(&mut self, kind: Kind, chunk: &[u8]) -> bool {
        self.buf.extend_from_slice(chunk);
        let mut became_first = false;
        while let Some(pos) = find(&self.buf, b"\n\n") {
            let event: Vec<u8> = self.buf.drain(..pos + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let mut name = "";
            let mut data = String::new();
            for line in text.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                } else if line.starts_with(": helix ") {
                    self.helix = true;
                }
            }
            match kind {
                Kind::ChatStream => {
                    if data == "[DONE]" {
                        self.end = true;
                    } else if !self.first && !data.is_empty() {
                        let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                        let delta = &v["choices"][0]["delta"];
                        let content = delta["content"].as_str().is_some_and(|c| !c.is_empty());
                        if content || delta["tool_calls"].is_array() {
                            self.first = true;
                            became_first = true;
                        }
                    }
                }
                Kind::MessagesStream => match name {
                    "content_block_delta" if !self.first => {
                        self.first = true;
                        became_first = true;
                    }
                    "message_stop" => self.end = true,
                    _ => {}
                },
                Kind::ResponsesStream => match name {
                    "response.output_text.delta" | "response.function_call_arguments.delta"
                        if !self.first =>
                    {
                        self.first = true;
                        became_first = true;
                    }
                    "response.completed" => self.end = true,
                    _ => {}
                },
                Kind::Chat => {}
            }
        }
        became_first
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Extra request headers (`--header name:value`), the same for every target.
static HEADERS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

async fn one(client: &reqwest::Client, t: &Target) -> Sample {
    let started = Instant::now();
    let mut req = client.post(&t.url).header("content-type", "application/json").body(t.body);
    for (name, value) in HEADERS.get().map(Vec::as_slice).unwrap_or_default() {
        req = req.header(name, value);
    }
    if t.kind == Kind::MessagesStream {
        req = req.header("anthropic-version", "2023-06-01");
    }
    let failed = |started: Instant, status: u16| Sample {
        total: started.elapsed(),
        ttft: None,
        ok: false,
        status,
        helix: false,
    };
    let mut res = match req.send().await {
        Ok(res) => res,
        Err(_) => return failed(started, 0),
    };
    let status = res.status().as_u16();
    let status_ok = res.status().is_success();
    if t.kind == Kind::Chat {
        let ok = match res.bytes().await {
            Ok(b) => status_ok && find(&b, b"\"choices\"").is_some(),
            Err(_) => false,
        };
        return Sample { total: started.elapsed(), ttft: None, ok, status, helix: false };
    }
    let mut state = StreamState::default();
    let mut ttft = None;
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => {
                if state.feed(t.kind, &chunk) {
                    ttft = Some(started.elapsed());
                }
            }
            Ok(None) => break,
            Err(_) => return failed(started, status),
        }
    }
    let total = started.elapsed();
    Sample { total, ttft, ok: status_ok && state.first && state.end, status, helix: state.helix }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(label: &str, round: usize, samples: &[Sample], skipped: usize, lags: &mut [u64]) {
    let mut total: Vec<u64> = samples.iter().filter(|s| s.ok).map(|s| s.total.as_nanos() as u64).collect();
    let mut ttft: Vec<u64> =
        samples.iter().filter(|s| s.ok).filter_map(|s| s.ttft).map(|d| d.as_nanos() as u64).collect();
    total.sort_unstable();
    ttft.sort_unstable();
    lags.sort_unstable();
    let errors = samples.iter().filter(|s| !s.ok).count();
    let helix = samples.iter().filter(|s| s.helix).count();
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "ROUND {label} {round} {} {errors} {skipped} {:.1} {:.1} {:.1} {:.1} {:.1} {:.1} {:.1} {helix}",
        samples.len(),
        us(pct(&total, 50.0)),
        us(pct(&total, 90.0)),
        us(pct(&total, 99.0)),
        us(total.last().copied().unwrap_or(0)),
        us(pct(&ttft, 50.0)),
        us(pct(&ttft, 99.0)),
        us(pct(lags, 99.0)),
    );
    if errors > 0 {
        // what the failures were: an HTTP status, `transport` (no answer or a broken body) or
        // `incomplete` (a 2xx stream without its proper end)
        let mut why: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for s in samples.iter().filter(|s| !s.ok) {
            let k = match s.status {
                0 => "transport".to_owned(),
                200..=299 => "incomplete".to_owned(),
                code => code.to_string(),
            };
            *why.entry(k).or_default() += 1;
        }
        let why: Vec<String> = why.into_iter().map(|(k, n)| format!("{k}:{n}")).collect();
        println!("ERRORS {label} {round} {}", why.join(" "));
    }
}

fn kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Samples VmRSS of a pid every 200 ms while `on` is set, keeping the peak.
struct MemWatch {
    pid: u32,
    on: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl MemWatch {
    fn start(pid: u32) -> MemWatch {
        let w = MemWatch {
            pid,
            on: Arc::new(AtomicBool::new(false)),
            peak: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (on, peak, stop) = (Arc::clone(&w.on), Arc::clone(&w.peak), Arc::clone(&w.stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if on.load(Ordering::Relaxed) {
                    peak.fetch_max(kb(pid, "VmRSS"), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        w
    }
}

impl Drop for MemWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Options {
    mode: String,
    rounds: usize,
    requests: usize,
    warmup: usize,
    secs: f64,
    warmup_secs: f64,
    rate: f64,
    max_in_flight: usize,
    pids: HashMap<String, u32>,
    after_round: Option<String>,
    gap: Duration,
    targets: Vec<Target>,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("usage: gateway_client seq|paced [options] TARGET...")?;
    if mode != "seq" && mode != "paced" {
        return Err(format!("unknown mode {mode}"));
    }
    let mut o = Options {
        mode,
        rounds: if cfg!(debug_assertions) { 1 } else { 5 },
        requests: 5000,
        warmup: 500,
        secs: 4.0,
        warmup_secs: 1.0,
        rate: 2000.0,
        max_in_flight: 512,
        pids: HashMap::new(),
        after_round: None,
        gap: Duration::from_millis(300),
        targets: Vec::new(),
    };
    let mut headers = Vec::new();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--rounds" => o.rounds = num(value(&a)?)? as usize,
            "--requests" => o.requests = num(value(&a)?)? as usize,
            "--warmup" => o.warmup = num(value(&a)?)? as usize,
            "--secs" => o.secs = num(value(&a)?)?,
            "--warmup-secs" => o.warmup_secs = num(value(&a)?)?,
            "--rate" => o.rate = num(value(&a)?)?,
            "--max-in-flight" => o.max_in_flight = num(value(&a)?)? as usize,
            "--pid" => {
                let v = value(&a)?;
                let (label, pid) = v.split_once('=').ok_or(format!("--pid label=PID, not {v}"))?;
                o.pids.insert(label.to_owned(), pid.parse().map_err(|e| format!("{pid}: {e}"))?);
            }
            "--after-round-post" => o.after_round = Some(value(&a)?),
            "--header" => {
                let v = value(&a)?;
                let (name, val) = v.split_once(':').ok_or(format!("--header name:value, not {v}"))?;
                headers.push((name.trim().to_owned(), val.trim().to_owned()));
            }
            "--gap-ms" => o.gap = Duration::from_secs_f64(num(value(&a)?)? / 1000.0),
            t => o.targets.push(parse_target(t)?),
        }
    }
    if o.targets.is_empty() {
        return Err("no targets".into());
    }
    let _ = HEADERS.set(headers);
    Ok(o)
}

fn client() -> reqwest::Client {
    client_for(false)
}

/// `fresh`: no connection is kept for reuse, so every request connects anew.
fn client_for(fresh: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(if fresh { 0 } else { usize::MAX })
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// POSTs `--after-round-post` (e.g. the fake's `/_fake/reset`, so its record of requests stays
/// small); a failure is only reported.
async fn after_round(o: &Options) {
    if let Some(url) = &o.after_round
        && let Err(e) = client().post(url).send().await
    {
        eprintln!("gateway_client: POST {url}: {e}");
    }
    // lets what the last target does after its answers (a batch of trace events every 250 ms)
    // settle before the next target is measured
    tokio::time::sleep(o.gap).await;
}

async fn run_seq(o: &Options) {
    // one client (one kept-alive connection) per target, so switching targets never reconnects
    let clients: Vec<reqwest::Client> = o.targets.iter().map(|t| client_for(t.fresh)).collect();
    for (t, c) in o.targets.iter().zip(&clients) {
        for _ in 0..o.warmup {
            one(c, t).await;
        }
    }
    for round in 1..=o.rounds {
        for (t, c) in o.targets.iter().zip(&clients) {
            let mut samples = Vec::with_capacity(o.requests);
            for _ in 0..o.requests {
                samples.push(one(c, t).await);
            }
            report(&t.label, round, &samples, 0, &mut []);
            after_round(o).await;
        }
    }
}

/// Sends `t` at `rate` for `secs`; returns the samples, the requests skipped (too many in flight)
/// and each request's start lag behind its schedule (ns).
async fn paced_phase(
    handle: &tokio::runtime::Handle,
    c: &reqwest::Client,
    t: &Target,
    rate: f64,
    secs: f64,
    max_in_flight: usize,
) -> (Vec<Sample>, usize, Vec<u64>) {
    let n = (rate * secs).round() as usize;
    let samples = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let lags = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let skipped = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let pacer = {
        let (handle, c, t) = (handle.clone(), c.clone(), t.clone());
        let (samples, lags, in_flight, skipped) =
            (Arc::clone(&samples), Arc::clone(&lags), Arc::clone(&in_flight), Arc::clone(&skipped));
        std::thread::spawn(move || {
            let t0 = Instant::now() + Duration::from_millis(5);
            for i in 0..n {
                let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if in_flight.fetch_add(1, Ordering::SeqCst) >= max_in_flight {
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let (c, t, samples, lags, in_flight, done_tx) = (
                    c.clone(),
                    t.clone(),
                    Arc::clone(&samples),
                    Arc::clone(&lags),
                    Arc::clone(&in_flight),
                    done_tx.clone(),
                );
                handle.spawn(async move {
                    let lag = due.elapsed().as_nanos() as u64;
                    let s = one(&c, &t).await;
                    samples.lock().expect("samples").push(s);
                    lags.lock().expect("lags").push(lag);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(done_tx);
                });
            }
            drop(done_tx);
        })
    };
    // every request's task holds a sender: the channel closes when the pacer and all tasks are done
    while done_rx.recv().await.is_some() {}
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    let samples = std::mem::take(&mut *samples.lock().expect("samples"));
    let lags = std::mem::take(&mut *lags.lock().expect("lags"));
    (samples, skipped.load(Ordering::Relaxed), lags)
}

async fn run_paced(o: &Options) {
    let handle = tokio::runtime::Handle::current();
    let clients: Vec<reqwest::Client> = o.targets.iter().map(|t| client_for(t.fresh)).collect();
    let watches: HashMap<String, MemWatch> =
        o.pids.iter().map(|(l, p)| (l.clone(), MemWatch::start(*p))).collect();
    let mut calls: HashMap<String, usize> = HashMap::new();
    if o.warmup_secs > 0.0 {
        for (t, c) in o.targets.iter().zip(&clients) {
            let (s, _, _) = paced_phase(&handle, c, t, o.rate, o.warmup_secs, o.max_in_flight).await;
            *calls.entry(t.label.clone()).or_default() += s.len();
            after_round(o).await;
        }
    }
    for round in 1..=o.rounds {
        for (t, c) in o.targets.iter().zip(&clients) {
            let watch = watches.get(&t.label);
            if let Some(w) = watch {
                w.on.store(true, Ordering::Relaxed);
            }
            let (samples, skipped, mut lags) =
                paced_phase(&handle, c, t, o.rate, o.secs, o.max_in_flight).await;
            *calls.entry(t.label.clone()).or_default() += samples.len();
            report(&t.label, round, &samples, skipped, &mut lags);
            if let Some(w) = watch {
                w.on.store(false, Ordering::Relaxed);
                let rss = kb(w.pid, "VmRSS");
                let peak = w.peak.fetch_max(rss, Ordering::Relaxed).max(rss);
                println!("MEM {} {round} {} {rss} {peak} {}", t.label, calls[&t.label], kb(w.pid, "VmHWM"));
            }
            after_round(o).await;
        }
    }
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gateway_client: {e}");
            std::process::exit(2);
        }
    };
    // one thread of the client's own: the machine's cores are shared with the servers measured
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        if o.mode == "seq" {
            run_seq(&o).await;
        } else {
            run_paced(&o).await;
        }
    });
}
