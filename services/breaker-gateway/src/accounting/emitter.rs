//! Trace events of proxied calls, sent to the trace-collector in the background.
//!
//! Reporting must never cost a call anything: [`Emitter::emit`] only appends to a bounded
//! in-memory queue and returns. A worker on its own thread (with its own small tokio runtime, so
//! it works whatever runtime, or none, the caller has) POSTs the queue to
//! `{collector_url}/v1/events` as JSON arrays of up to [`BATCH`] events, every
//! [`SEND_EVERY`] or as soon as a full batch is waiting. When the collector cannot take a batch
//! (connection refused, timeout, 408, 429, 5xx, including its 503 back-pressure answer) the same
//! batch is retried with exponential backoff (honouring `Retry-After`) while new events keep
//! queueing; events are dropped, and counted, only when the queue holds `capacity` events or
//! [`MAX_QUEUED_BYTES`] of them, the batch in flight included. Memory is therefore bounded and a
//! collector that is down for a while loses nothing as long as the queue has room. Events wait
//! already encoded (one allocation each, a third of the size of the `Event` they came from), and
//! when the queue is full [`Emitter::emit_with`] does not even build them. A 413 splits the batch in halves; any other 4xx
//! cannot succeed on retry, so its events are counted as dropped. Events the collector rejects one
//! by one (invalid) are counted as `rejected`; [`Emitter::emit`] validates first, so those are
//! bugs.
//!
//! [`llm_call_event`] builds the span of one proxied call with the OpenTelemetry GenAI attribute
//! names, in the client's trace when it sent a W3C `traceparent`. [`circuit_event`] records a
//! breaker transition as a span of kind `circuit`. Events carry model names, counts, ids and
//! statuses only: never API keys, prompts or completions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use helix_core::gateway_config::ProviderKind;
use helix_core::trace::{Event, SCHEMA_VERSION, SpanKind, SpanStatus, attr, is_lower_hex};
use serde::Serialize;
use serde_json::Value;

use crate::breaker::Change;
use crate::protocol::Protocol;
use crate::protocol::usage::Usage;

/// Most events in one POST.
pub const BATCH: usize = 500;
/// A partial batch waits at most this long.
pub const SEND_EVERY: Duration = Duration::from_millis(500);
/// Most bytes of encoded events waiting, the batch in flight included (an llm_call span is about
/// 700 bytes, so some 6,000 of them): what a collector outage may cost in memory.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Attribute names of the gateway's spans that [`attr`] does not have.
pub mod names {
    /// OpenTelemetry GenAI: input tokens written to the provider's prompt cache.
    pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
    /// OpenTelemetry HTTP: the upstream's status code.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub const DEPLOYMENT: &str = "helix.gateway.deployment";
    /// The deployment the call fell back from.
    pub const FALLBACK_FROM: &str = "helix.gateway.fallback_from";
    /// Attempts made on the deployment that answered (1 without retries).
    pub const ATTEMPTS: &str = "helix.gateway.attempts";
    pub const STREAMING: &str = "helix.gateway.streaming";
    /// The protocol the client spoke (`openai` or `anthropic`).
    pub const CLIENT_PROTOCOL: &str = "helix.gateway.client_protocol";
    pub const CIRCUIT_FROM: &str = "helix.circuit.from";
    pub const CIRCUIT_TO: &str = "helix.circuit.to";
    pub const CIRCUIT_REASON: &str = "helix.circuit.reason";
}

/// What the emitter has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EmitterStats {
    /// Events the collector stored.
    pub sent: u64,
    /// Events lost: the queue was full, or the collector refused a batch for good.
    pub dropped: u64,
    /// Events found invalid (by [`Emitter::emit`] or by the collector).
    pub rejected: u64,
    /// POSTs that failed (each retry counts).
    pub failed_posts: u64,
    /// Events waiting, the batch in flight included.
    pub queued: u64,
    /// The latest failure; cleared by the next success.
    pub last_error: Option<String>,
    /// Whether the latest POST reached the collector (false until one has).
    pub connected: bool,
}

/// Encoded events waiting, and their size.
#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<Box<[u8]>>,
    bytes: usize,
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    max_bytes: usize,
    queue: Mutex<Queue>,
    /// Events taken by the worker and not yet settled; counts against `capacity`.
    in_flight: AtomicUsize,
    /// Their bytes; count against `max_bytes`.
    in_flight_bytes: AtomicUsize,
    sent: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    failed_posts: AtomicU64,
    last_error: Mutex<Option<String>>,
    connected: AtomicBool,
    /// A full batch is waiting.
    ready: tokio::sync::Notify,
    /// Flush or stop: do not wait for the timer (a stop also ends a backoff).
    urgent: tokio::sync::Notify,
    flushing: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queued(&self) -> usize {
        let q = self.queue();
        q.events.len() + self.in_flight.load(Ordering::Acquire)
    }

    /// Whether `q` has room for one more event of `bytes`.
    fn room(&self, q: &Queue, bytes: usize) -> bool {
        q.events.len() + self.in_flight.load(Ordering::Acquire) < self.capacity
            && q.bytes + self.in_flight_bytes.load(Ordering::Acquire) + bytes <= self.max_bytes
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = e;
    }

    fn take_batch(&self) -> Vec<Box<[u8]>> {
        let mut q = self.queue();
        let n = q.events.len().min(BATCH);
        let batch: Vec<Box<[u8]>> = q.events.drain(..n).collect();
        let bytes = encoded_len(&batch);
        q.bytes -= bytes;
        // under the queue lock, so `emit` never sees the batch in neither place
        self.in_flight.fetch_add(n, Ordering::AcqRel);
        self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel);
        batch
    }

    /// The events of `batch`, taken by [`Shared::take_batch`], are sent or dropped for good.
    fn settle(&self, batch: &[Box<[u8]>]) {
        self.in_flight.fetch_sub(batch.len(), Ordering::AcqRel);
        self.in_flight_bytes.fetch_sub(encoded_len(batch), Ordering::AcqRel);
    }
}

fn encoded_len(batch: &[Box<[u8]>]) -> usize {
    batch.iter().map(|e| e.len()).sum()
}

/// `[e1,e2,...]`: the events are JSON already.
fn json_array(batch: &[Box<[u8]>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(encoded_len(batch) + batch.len() + 2);
    body.push(b'[');
    for (i, e) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.push(b']');
    body
}

/// The handle the gateway emits through. Dropping it stops the worker; call
/// [`Emitter::flush`] first to send what is queued.
#[derive(Debug)]
pub struct Emitter {
    shared: Arc<Shared>,
}

impl Emitter {
    /// Starts the worker sending to `{collector_url}/v1/events`, with room for `capacity` events
    /// (for example 10 000) and at most [`MAX_QUEUED_BYTES`] of them.
    pub fn spawn(collector_url: String, capacity: usize) -> Emitter {
        Emitter::spawn_with_token(collector_url, capacity, None)
    }

    /// [`Emitter::spawn`], sending `token` (a Helix token with `traces:write`) with every batch.
    pub fn spawn_with_token(
        collector_url: String,
        capacity: usize,
        token: Option<helix_core::auth::Secret>,
    ) -> Emitter {
        let shared = Arc::new(Shared {
            capacity: capacity.max(1),
            max_bytes: MAX_QUEUED_BYTES,
            queue: Mutex::new(Queue::default()),
            in_flight: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed_posts: AtomicU64::new(0),
            last_error: Mutex::new(None),
            connected: AtomicBool::new(false),
            ready: tokio::sync::Notify::new(),
            urgent: tokio::sync::Notify::new(),
            flushing: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let url = format!("{}/v1/events", collector_url.trim_end_matches('/'));
        let worker = shared.clone();
        let spawned = std::thread::Builder::new().name("trace-emitter".to_owned()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(run(worker, url, token)),
                Err(e) => worker.set_error(Some(format!("cannot start the trace emitter: {e}"))),
            }
        });
        if let Err(e) = spawned {
            // events then fill the queue and are counted as dropped: visible, never fatal
            shared.set_error(Some(format!("cannot start the trace emitter: {e}")));
        }
        Emitter { shared }
    }

    /// Queues `event`. Never blocks (beyond a short lock) and never fails: when the queue is full
    /// the event is dropped and counted, when it is invalid it is counted as rejected.
    pub fn emit(&self, event: Event) {
        if let Err(reason) = event.validate() {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%reason, name = %event.name, "invalid trace event not emitted");
            return;
        }
        let encoded = match serde_json::to_vec(&event) {
            Ok(e) => e.into_boxed_slice(),
            Err(e) => {
                self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, name = %event.name, "trace event not encodable");
                return;
            }
        };
        drop(event);
        self.push(encoded);
    }

    fn push(&self, encoded: Box<[u8]>) {
        let mut q = self.shared.queue();
        if !self.shared.room(&q, encoded.len()) {
            drop(q);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes += encoded.len();
        q.events.push_back(encoded);
        let full = q.events.len() >= BATCH;
        drop(q);
        if full {
            self.shared.ready.notify_one();
        }
    }

    /// Queues the event `encode` writes as JSON (for example [`llm_call_json`]), which it only
    /// does when the queue has room. The caller vouches that it is a valid [`Event`]: it is not
    /// checked here (the collector still does).
    pub fn emit_json_with(&self, encode: impl FnOnce() -> Vec<u8>) {
        if !self.shared.room(&self.shared.queue(), 0) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.push(encode().into_boxed_slice());
    }

    pub fn stats(&self) -> EmitterStats {
        let s = &self.shared;
        EmitterStats {
            sent: s.sent.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            failed_posts: s.failed_posts.load(Ordering::Relaxed),
            queued: s.queued() as u64,
            last_error: s.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Sends what is queued without waiting for the timer, and waits until nothing is queued or
    /// `within` has passed; `true` when everything queued was settled (sent, or dropped for good).
    /// For shutdown and tests; needs a tokio runtime (any flavour).
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        self.shared.flushing.fetch_add(1, Ordering::AcqRel);
        self.shared.urgent.notify_one();
        let drained = loop {
            if self.shared.queued() == 0 {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(10))).await;
        };
        self.shared.flushing.fetch_sub(1, Ordering::AcqRel);
        drained
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.urgent.notify_one();
        self.shared.ready.notify_one();
    }
}

async fn run(shared: Arc<Shared>, url: String, token: Option<helix_core::auth::Secret>) {
    let client =
        match reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(POST_TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                shared.set_error(Some(format!("cannot build the trace emitter's http client: {e}")));
                return;
            }
        };
    // the first partial batch also waits: events emitted right after start go out together
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + SEND_EVERY, SEND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let waiting = shared.queue().events.len();
        // a partial batch waits for the timer, unless someone is flushing
        if waiting < BATCH && !(waiting > 0 && shared.flushing.load(Ordering::Acquire) > 0) {
            tokio::select! {
                _ = tick.tick() => {}
                () = shared.ready.notified() => {}
                () = shared.urgent.notified() => {}
            }
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
        }
        let batch = shared.take_batch();
        if !batch.is_empty() {
            deliver(&shared, &client, &url, token.as_ref(), batch).await;
        }
    }
}

/// What one POST came to.
enum Posted {
    Stored { accepted: u64, rejected: Vec<String> },
    Retry { error: String, after: Option<Duration> },
    TooLarge,
    Refused { error: String },
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&helix_core::auth::Secret>,
    body: bytes::Bytes,
    count: usize,
) -> Posted {
    let mut req = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t.expose());
    }
    let sent = req.send().await;
    let res = match sent {
        Ok(r) => r,
        Err(e) => return Posted::Retry { error: describe(e.without_url()), after: None },
    };
    let status = res.status();
    if status.is_success() {
        #[derive(serde::Deserialize)]
        struct Answer {
            accepted: u64,
            #[serde(default)]
            rejected: Vec<Rejected>,
        }
        #[derive(serde::Deserialize)]
        struct Rejected {
            reason: String,
        }
        return match res.json::<Answer>().await {
            Ok(a) => Posted::Stored {
                accepted: a.accepted,
                rejected: a.rejected.into_iter().map(|r| r.reason).collect(),
            },
            // stored (2xx) but not the usual answer: count the batch as stored
            Err(_) => Posted::Stored { accepted: count as u64, rejected: Vec::new() },
        };
    }
    let after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    let error = format!("the trace-collector answered {status}");
    match status.as_u16() {
        408 | 429 | 500..=599 => Posted::Retry { error, after },
        413 => Posted::TooLarge,
        _ => Posted::Refused { error },
    }
}

/// A reqwest error with its causes, without the URL (it could carry credentials).
fn describe(e: reqwest::Error) -> String {
    let mut out = format!("cannot reach the trace-collector: {}", e.to_string().trim());
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Sends `batch` until it is stored or cannot be; retries wait with backoff.
async fn deliver(
    shared: &Shared,
    client: &reqwest::Client,
    url: &str,
    token: Option<&helix_core::auth::Secret>,
    batch: Vec<Box<[u8]>>,
) {
    let mut pending = vec![batch];
    let mut backoff = FIRST_BACKOFF;
    while let Some(batch) = pending.pop() {
        let n = batch.len();
        let body = bytes::Bytes::from(json_array(&batch));
        loop {
            match post(client, url, token, body.clone(), n).await {
                Posted::Stored { accepted, rejected } => {
                    shared.sent.fetch_add(accepted, Ordering::Relaxed);
                    shared.connected.store(true, Ordering::Relaxed);
                    if let Some(first) = rejected.first() {
                        shared.rejected.fetch_add(rejected.len() as u64, Ordering::Relaxed);
                        tracing::warn!(count = rejected.len(), reason = %first, "the trace-collector rejected events");
                    }
                    shared.set_error(None);
                    shared.settle(&batch);
                    backoff = FIRST_BACKOFF;
                    break;
                }
                Posted::TooLarge if n > 1 => {
                    shared.connected.store(true, Ordering::Relaxed);
                    let mut first = batch;
                    let second = first.split_off(n / 2);
                    // the halves stay in flight; the second is sent after the first
                    pending.push(second);
                    pending.push(first);
                    break;
                }
                Posted::TooLarge => {
                    shared.failed_posts.fetch_add(1, Ordering::Relaxed);
                    shared.connected.store(true, Ordering::Relaxed);
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    shared.set_error(Some(
                        "the trace-collector refused a single event as too large".to_owned(),
                    ));
                    shared.settle(&batch);
                    break;
                }
                Posted::Refused { error } => {
                    shared.failed_posts.fetch_add(1, Ordering::Relaxed);
                    shared.connected.store(true, Ordering::Relaxed);
                    shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(%error, count = n, "trace events dropped");
                    shared.set_error(Some(error));
                    shared.settle(&batch);
                    break;
                }
                Posted::Retry { error, after } => {
                    shared.failed_posts.fetch_add(1, Ordering::Relaxed);
                    shared.connected.store(false, Ordering::Relaxed);
                    shared.set_error(Some(error));
                    let wait = after.map_or(backoff, |a| a.max(backoff));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // only a stop cuts the wait: a flush must not override the collector's
                    // back-pressure
                    let until = tokio::time::Instant::now() + wait;
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(until) => break,
                            () = shared.urgent.notified() => {}
                        }
                        if shared.stop.load(Ordering::Acquire) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A new random trace id (32 lowercase hex digits, never all zero).
pub fn new_trace_id() -> String {
    let id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
    format!("{:032x}", id.max(1))
}

/// A new random span id (16 lowercase hex digits, never all zero).
pub fn new_span_id() -> String {
    format!("{:016x}", random_u64().max(1))
}

/// Random numbers for trace and span ids: SplitMix64 per thread, seeded from the operating
/// system once. Every call took two `getrandom` system calls before (one per id); ids need to be
/// unique and unpredictable enough not to collide, not secret, and SplitMix64 never repeats an
/// output within its 2^64 period.
fn random_u64() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(uuid::Uuid::new_v4().as_u128() as u64);
    }
    STATE.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// Where one proxied call sits in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    /// The client's span, from its `traceparent`.
    pub parent_span_id: Option<String>,
    /// The gateway's span for this call (fresh).
    pub span_id: String,
    /// The client's trace flags (`01` = sampled); a new trace is sampled.
    pub flags: u8,
}

impl TraceContext {
    /// The context of a call whose request had `traceparent` (W3C Trace Context) with this value;
    /// a new trace when it is absent or invalid.
    pub fn from_traceparent(header: Option<&str>) -> TraceContext {
        match header.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => {
                TraceContext { trace_id, parent_span_id: Some(parent), span_id: new_span_id(), flags }
            }
            None => TraceContext::new_root(),
        }
    }

    pub fn new_root() -> TraceContext {
        TraceContext { trace_id: new_trace_id(), parent_span_id: None, span_id: new_span_id(), flags: 1 }
    }

    /// A `traceparent` naming the gateway's span as parent, to pass on to the upstream.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// Parses `version-traceid-parentid-flags` (W3C Trace Context): lowercase hex, ids not all
/// zero, version `ff` invalid, version `00` exactly four fields, later versions may append fields.
pub fn parse_traceparent(value: &str) -> Option<(String, String, u8)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    let hex_id = |s: &str, len: usize| is_lower_hex(s, len) && s.bytes().any(|b| b != b'0');
    if !is_lower_hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    if !hex_id(trace, 32) || !hex_id(parent, 16) || !is_lower_hex(flags, 2) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace.to_owned(), parent.to_owned(), flags))
}

/// `s` cut to at most `max` bytes at a character boundary (event names and model names come
/// from clients; an over-long one must not make the whole event invalid).
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest model name kept in a span.
const MAX_MODEL: usize = 256;

/// One proxied call, as [`llm_call_event`] reports it.
#[derive(Debug, Clone)]
pub struct LlmCall<'a> {
    pub trace: &'a TraceContext,
    pub project: &'a str,
    pub client_protocol: Protocol,
    /// The model the client asked for.
    pub request_model: &'a str,
    /// The provider of the deployment that answered (or was tried last).
    pub provider: ProviderKind,
    /// The model the upstream reported (else the deployment's model).
    pub response_model: Option<&'a str>,
    pub deployment_id: &'a str,
    /// The deployment the call fell back from, when it did.
    pub fallback_from: Option<&'a str>,
    pub attempts: u32,
    /// The upstream's status; `None` when no answer came (connect error, timeout).
    pub status_code: Option<u16>,
    /// Why the call failed, briefly (no prompt, no key, no upstream body).
    pub error: Option<&'a str>,
    pub streaming: bool,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

fn provider_name(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
    }
}

/// The span of one proxied call: name `chat {model}`, kind `llm_call`, OpenTelemetry GenAI
/// attributes. Following OpenTelemetry, `gen_ai.usage.input_tokens` counts all input tokens,
/// cached ones included; the cache reads and writes are also given alone (as the trace-collector's
/// transcript importer does, so both sources sum the same way). Status `ok` for a 2xx answer
/// without error, else `error`.
pub fn llm_call_event(call: &LlmCall<'_>) -> Event {
    let request_model = clip(call.request_model, MAX_MODEL);
    let mut a = std::collections::BTreeMap::<String, Value>::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_owned(), v);
    };
    put(attr::GEN_AI_OPERATION_NAME, "chat".into());
    put(attr::GEN_AI_PROVIDER_NAME, provider_name(call.provider).into());
    put(attr::GEN_AI_REQUEST_MODEL, request_model.into());
    if let Some(m) = call.response_model {
        put(attr::GEN_AI_RESPONSE_MODEL, clip(m, MAX_MODEL).into());
    }
    if let Some(u) = call.usage {
        put(attr::GEN_AI_USAGE_INPUT_TOKENS, u.total_input_tokens().into());
        put(attr::GEN_AI_USAGE_OUTPUT_TOKENS, u.output_tokens.into());
        put(attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, u.cache_read_tokens.into());
        put(names::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, u.cache_write_tokens.into());
    }
    if let Some(c) = call.cost_usd.filter(|c| c.is_finite()) {
        put(attr::HELIX_COST_USD, c.into());
    }
    put(names::DEPLOYMENT, call.deployment_id.into());
    if let Some(f) = call.fallback_from {
        put(names::FALLBACK_FROM, f.into());
    }
    put(names::ATTEMPTS, call.attempts.into());
    if let Some(s) = call.status_code {
        put(names::HTTP_RESPONSE_STATUS_CODE, s.into());
    }
    put(names::STREAMING, call.streaming.into());
    put(names::CLIENT_PROTOCOL, call.client_protocol.as_str().into());
    let (ok, status_message) = call_status(call);
    let status_message = status_message.map(std::borrow::Cow::into_owned);
    Event {
        schema_version: SCHEMA_VERSION,
        trace_id: call.trace.trace_id.clone(),
        span_id: call.trace.span_id.clone(),
        parent_span_id: call.trace.parent_span_id.clone(),
        name: format!("chat {request_model}"),
        kind: SpanKind::LlmCall,
        start_unix_nanos: call.start_unix_nanos,
        end_unix_nanos: call.end_unix_nanos.max(call.start_unix_nanos),
        status: if ok { SpanStatus::Ok } else { SpanStatus::Error },
        status_message,
        project: Some(clip(call.project, helix_core::trace::MAX_NAME).to_owned()),
        phase: None,
        run: None,
        domain: None,
        attributes: a,
    }
}

/// Whether the call succeeded, and if not why (the span's status and status message).
fn call_status<'a>(call: &LlmCall<'a>) -> (bool, Option<std::borrow::Cow<'a, str>>) {
    let ok = call.error.is_none() && call.status_code.is_some_and(|s| (200..300).contains(&s));
    let message = match (call.error, call.status_code) {
        _ if ok => None,
        (Some(e), _) => Some(clip(e, 1024).into()),
        (None, Some(s)) => Some(format!("upstream answered {s}").into()),
        (None, None) => Some("no answer from the upstream".into()),
    };
    (ok, message)
}

/// [`llm_call_event`] as the JSON the collector receives, written without building the
/// [`Event`] (its map of attributes costs a dozen allocations, and encoding it again later as
/// much): the same document, key for key (tested), for a fraction of the cost on the request path.
/// Valid by construction: ids come from [`TraceContext`], names and the project are clipped.
pub fn llm_call_json(call: &LlmCall<'_>) -> Vec<u8> {
    use serde::ser::SerializeMap;

    struct Attributes<'a, 'b>(&'a LlmCall<'b>);

    impl Serialize for Attributes<'_, '_> {
        // keys in the order a `BTreeMap` (the `Event`'s attributes) writes them does not matter to
        // a JSON reader; these follow `llm_call_event`
        fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            let call = self.0;
            let mut m = ser.serialize_map(None)?;
            m.serialize_entry(attr::GEN_AI_OPERATION_NAME, "chat")?;
            m.serialize_entry(attr::GEN_AI_PROVIDER_NAME, provider_name(call.provider))?;
            m.serialize_entry(attr::GEN_AI_REQUEST_MODEL, clip(call.request_model, MAX_MODEL))?;
            if let Some(model) = call.response_model {
                m.serialize_entry(attr::GEN_AI_RESPONSE_MODEL, clip(model, MAX_MODEL))?;
            }
            if let Some(u) = call.usage {
                m.serialize_entry(attr::GEN_AI_USAGE_INPUT_TOKENS, &u.total_input_tokens())?;
                m.serialize_entry(attr::GEN_AI_USAGE_OUTPUT_TOKENS, &u.output_tokens)?;
                m.serialize_entry(attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, &u.cache_read_tokens)?;
                m.serialize_entry(names::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, &u.cache_write_tokens)?;
            }
            if let Some(c) = call.cost_usd.filter(|c| c.is_finite()) {
                m.serialize_entry(attr::HELIX_COST_USD, &c)?;
            }
            m.serialize_entry(names::DEPLOYMENT, call.deployment_id)?;
            if let Some(f) = call.fallback_from {
                m.serialize_entry(names::FALLBACK_FROM, f)?;
            }
            m.serialize_entry(names::ATTEMPTS, &call.attempts)?;
            if let Some(s) = call.status_code {
                m.serialize_entry(names::HTTP_RESPONSE_STATUS_CODE, &s)?;
            }
            m.serialize_entry(names::STREAMING, &call.streaming)?;
            m.serialize_entry(names::CLIENT_PROTOCOL, call.client_protocol.as_str())?;
            m.end()
        }
    }

    /// The fields of [`Event`], borrowed; `phase`, `run` and `domain` are never set here.
    #[derive(Serialize)]
    struct Span<'a, 'b> {
        schema_version: u32,
        trace_id: &'a str,
        span_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        parent_span_id: Option<&'a str>,
        name: &'a str,
        kind: SpanKind,
        start_unix_nanos: u64,
        end_unix_nanos: u64,
        status: SpanStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        status_message: Option<&'a str>,
        project: &'a str,
        attributes: Attributes<'a, 'b>,
    }

    let (ok, status_message) = call_status(call);
    let name = format!("chat {}", clip(call.request_model, MAX_MODEL));
    let span = Span {
        schema_version: SCHEMA_VERSION,
        trace_id: &call.trace.trace_id,
        span_id: &call.trace.span_id,
        parent_span_id: call.trace.parent_span_id.as_deref(),
        name: &name,
        kind: SpanKind::LlmCall,
        start_unix_nanos: call.start_unix_nanos,
        end_unix_nanos: call.end_unix_nanos.max(call.start_unix_nanos),
        status: if ok { SpanStatus::Ok } else { SpanStatus::Error },
        status_message: status_message.as_deref(),
        project: clip(call.project, helix_core::trace::MAX_NAME),
        attributes: Attributes(call),
    };
    let mut out = Vec::with_capacity(768);
    // writing to a Vec cannot fail, and every field serialises
    let _ = serde_json::to_writer(&mut out, &span);
    out
}

/// A breaker transition of `deployment` at `at_unix_nanos`, as a zero-length span of kind
/// `circuit` (the schema has one for exactly this). When a call's outcome caused it, pass that
/// call's context: the span joins the call's trace as a child of the call's span. Otherwise it
/// is a trace of its own.
pub fn circuit_event(
    deployment: &str,
    change: &Change,
    at_unix_nanos: u64,
    caused_by: Option<&TraceContext>,
) -> Event {
    let (trace_id, parent_span_id) = match caused_by {
        Some(t) => (t.trace_id.clone(), Some(t.span_id.clone())),
        None => (new_trace_id(), None),
    };
    let mut attributes = std::collections::BTreeMap::<String, Value>::new();
    attributes.insert(names::DEPLOYMENT.to_owned(), deployment.into());
    attributes.insert(names::CIRCUIT_FROM.to_owned(), change.from.as_str().into());
    attributes.insert(names::CIRCUIT_TO.to_owned(), change.to.as_str().into());
    attributes.insert(names::CIRCUIT_REASON.to_owned(), clip(&change.reason, 1024).into());
    Event {
        schema_version: SCHEMA_VERSION,
        trace_id,
        span_id: new_span_id(),
        parent_span_id,
        name: clip(&format!("circuit {deployment} {}", change.to.as_str()), helix_core::trace::MAX_NAME)
            .to_owned(),
        kind: SpanKind::Circuit,
        start_unix_nanos: at_unix_nanos,
        end_unix_nanos: at_unix_nanos,
        status: SpanStatus::Unset,
        status_message: None,
        project: None,
        phase: None,
        run: None,
        domain: None,
        attributes,
    }
}

#[cfg(test)]
mod tests;
