//! Trace events sent to the trace-collector in the background: the one batching emitter every
//! service uses.
//!
//! Reporting must never cost the work it reports anything: [`Emitter::emit`] only appends to a
//! bounded in-memory queue and returns. A worker on its own thread (with its own small tokio
//! runtime, so it works whatever runtime, or none, the caller has) POSTs the queue to
//! `{collector_url}/v1/events` as JSON arrays of up to [`BATCH`] events, every [`SEND_EVERY`] or
//! as soon as a full batch is waiting. When the collector cannot take a batch (connection
//! refused, timeout, 408, 429, 5xx, including its 503 back-pressure answer) the same batch is
//! retried with exponential backoff (honouring `Retry-After`) while new events keep queueing;
//! events are dropped, and counted, only when the queue holds `capacity` events or
//! [`MAX_QUEUED_BYTES`] of them, the batch in flight included. Memory is therefore bounded and a
//! collector that is down for a while loses nothing as long as the queue has room. Events wait
//! already encoded (one allocation each, a third of the size of the `Event` they came from), and
//! when the queue is full [`Emitter::emit_json_with`] does not even build them. A 413 splits the
//! batch in halves; any other 4xx cannot succeed on retry, so its events are counted as dropped.
//! Events the collector rejects one by one (invalid) are counted as `rejected`; [`Emitter::emit`]
//! validates first, so those are bugs. When the collector requires tokens, the emitter sends the
//! one it was given (`Authorization: Bearer`).
//!
//! The breaker-gateway (one span per proxied call), the orchestrator (runs, phases, attempts,
//! gates) and the healer (audit records) each hold one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::auth::Secret;
use crate::trace::Event;

/// Most events in one POST.
pub const BATCH: usize = 500;
/// A partial batch waits at most this long.
pub const SEND_EVERY: Duration = Duration::from_millis(250);
/// Most bytes of encoded events waiting, the batch in flight included (an llm_call span is about
/// 700 bytes, so some 6,000 of them): what a collector outage may cost in memory.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const POST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The handle a service emits through; clones share one queue and one worker. Dropping the last
/// clone stops the worker without sending what waits: call [`Emitter::flush`] first.
#[derive(Debug, Clone)]
pub struct Emitter {
    owner: Arc<Owner>,
}

/// Stops the worker when the last [`Emitter`] clone is dropped.
#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
        self.0.urgent.notify_one();
        self.0.ready.notify_one();
    }
}

impl Emitter {
    /// Starts the worker sending to `{collector_url}/v1/events`, with room for `capacity` events
    /// (for example 10 000) and at most [`MAX_QUEUED_BYTES`] of them.
    pub fn spawn(collector_url: String, capacity: usize) -> Emitter {
        Emitter::spawn_with_token(collector_url, capacity, None)
    }

    /// The emitter of a service that calls the collector through `client` (its URL and token).
    pub fn for_client(client: &crate::client::ServiceClient, capacity: usize) -> Emitter {
        Emitter::spawn_with_token(client.base_url().to_owned(), capacity, client.token().cloned())
    }

    /// [`Emitter::spawn`], sending `token` (a Helix token with `traces:write`) with every batch.
    pub fn spawn_with_token(collector_url: String, capacity: usize, token: Option<Secret>) -> Emitter {
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
        Emitter { owner: Arc::new(Owner(shared)) }
    }

    fn shared(&self) -> &Shared {
        &self.owner.0
    }

    /// Queues `event`. Never blocks (beyond a short lock) and never fails: when the queue is full
    /// the event is dropped and counted, when it is invalid it is counted as rejected.
    pub fn emit(&self, event: Event) {
        if let Err(reason) = event.validate() {
            self.shared().rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%reason, name = %event.name, "invalid trace event not emitted");
            return;
        }
        let encoded = match serde_json::to_vec(&event) {
            Ok(e) => e.into_boxed_slice(),
            Err(e) => {
                self.shared().rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, name = %event.name, "trace event not encodable");
                return;
            }
        };
        drop(event);
        self.push(encoded);
    }

    fn push(&self, encoded: Box<[u8]>) {
        let mut q = self.shared().queue();
        if !self.shared().room(&q, encoded.len()) {
            drop(q);
            self.shared().dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes += encoded.len();
        q.events.push_back(encoded);
        let full = q.events.len() >= BATCH;
        drop(q);
        if full {
            self.shared().ready.notify_one();
        }
    }

    /// Queues the event `encode` writes as JSON (for example [`llm_call_json`]), which it only
    /// does when the queue has room. The caller vouches that it is a valid [`Event`]: it is not
    /// checked here (the collector still does).
    pub fn emit_json_with(&self, encode: impl FnOnce() -> Vec<u8>) {
        if !self.shared().room(&self.shared().queue(), 0) {
            self.shared().dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.push(encode().into_boxed_slice());
    }

    pub fn stats(&self) -> EmitterStats {
        let s = self.shared();
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
        self.shared().flushing.fetch_add(1, Ordering::AcqRel);
        self.shared().urgent.notify_one();
        let drained = loop {
            if self.shared().queued() == 0 {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(10))).await;
        };
        self.shared().flushing.fetch_sub(1, Ordering::AcqRel);
        drained
    }
}

async fn run(shared: Arc<Shared>, url: String, token: Option<Secret>) {
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
    token: Option<&Secret>,
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
    token: Option<&Secret>,
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
