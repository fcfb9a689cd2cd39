//! The orchestrator's trace events, sent to the trace-collector in the background.
//!
//! A run must never wait for, or fail because of, its own reporting: [`Emitter::emit`] only
//! appends to a bounded in-memory queue. A tokio task POSTs the queue to the collector's
//! `/v1/events` (through [`ServiceClient::post_events`]) in batches of up to [`BATCH`] events,
//! every [`SEND_EVERY`] or as soon as a full batch waits. While the collector is down or busy
//! (unreachable, timeout, 408, 429, 5xx, its 503 back-pressure) the same batch is retried with
//! exponential backoff, honouring `Retry-After`, and new events keep queueing; they are dropped,
//! and counted, only once `capacity` events wait (the batch in flight included). So memory is
//! bounded, and a collector that is down for a while loses nothing as long as the queue has room.
//! A 413 splits the batch; another 4xx cannot succeed on retry and its events count as dropped.
//! This is the gateway's emitter again (services cannot share code but through `helix-core`),
//! on the caller's tokio runtime rather than a thread of its own: the orchestrator always has one.
//!
//! [`SpanBuilder`] makes the events: it clips what could make an event invalid (over-long names,
//! nested attribute values, an end before the start), so a span built from untrusted text (a
//! phase name, a command's error) is still stored.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use helix_core::client::{ClientError, ServiceClient};
use helix_core::trace::{
    Event, MAX_ATTRIBUTE_BYTES, MAX_ATTRIBUTES, MAX_NAME, SCHEMA_VERSION, SpanKind, SpanStatus,
};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Most events in one POST.
pub const BATCH: usize = 500;
/// A partial batch waits at most this long.
pub const SEND_EVERY: Duration = Duration::from_millis(200);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest status message kept.
const MAX_STATUS_MESSAGE: usize = 4096;

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
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    queue: Mutex<VecDeque<Event>>,
    /// Events taken by the worker and not yet settled; they count against `capacity`.
    in_flight: AtomicUsize,
    sent: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    failed_posts: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// A full batch waits, someone flushes, or the emitter stops.
    wake: Notify,
    flushing: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queued(&self) -> usize {
        let q = self.queue();
        q.len() + self.in_flight.load(Ordering::Acquire)
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = e;
    }

    fn take_batch(&self) -> Vec<Event> {
        let mut q = self.queue();
        let n = q.len().min(BATCH);
        // under the queue lock, so `emit` never sees the batch in neither place
        self.in_flight.fetch_add(n, Ordering::AcqRel);
        q.drain(..n).collect()
    }

    fn settle(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Stops the worker when the last [`Emitter`] clone is dropped.
#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

/// The handle runs emit through; clones share one queue and one worker. Dropping the last clone
/// (or [`Emitter::close`]) stops the worker without sending what waits: [`Emitter::flush`] first.
#[derive(Debug, Clone)]
pub struct Emitter {
    owner: Arc<Owner>,
}

impl Emitter {
    /// Starts the worker on the current tokio runtime (panics outside one, as `tokio::spawn`
    /// does), sending to `collector` with room for `capacity` events (for example 10 000).
    /// Each POST is bounded by 10 s, whatever `collector`'s own timeout. The handle ends when
    /// the emitter stops.
    pub fn start(collector: ServiceClient, capacity: usize) -> (Emitter, JoinHandle<()>) {
        let shared = Arc::new(Shared {
            capacity: capacity.max(1),
            queue: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed_posts: AtomicU64::new(0),
            last_error: Mutex::new(None),
            wake: Notify::new(),
            flushing: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let handle = tokio::spawn(run(shared.clone(), collector.with_timeout(POST_TIMEOUT)));
        (Emitter { owner: Arc::new(Owner(shared)) }, handle)
    }

    fn shared(&self) -> &Shared {
        &self.owner.0
    }

    /// Queues `event`. Never blocks (beyond a short lock) and never fails: when the queue is
    /// full the event is dropped and counted, when it is invalid it is counted as rejected.
    pub fn emit(&self, event: Event) {
        let s = self.shared();
        if let Err(reason) = event.validate() {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%reason, name = %event.name, "invalid trace event not emitted");
            return;
        }
        let mut q = s.queue();
        if q.len() + s.in_flight.load(Ordering::Acquire) >= s.capacity {
            drop(q);
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(event);
        let full = q.len() >= BATCH;
        drop(q);
        if full {
            s.wake.notify_one();
        }
    }

    /// Events lost so far (queue full, or refused for good by the collector).
    pub fn dropped(&self) -> u64 {
        self.shared().dropped.load(Ordering::Relaxed)
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
        }
    }

    /// Sends what waits without waiting for the timer, and waits until nothing is queued or
    /// `timeout` has passed; `true` when everything was settled (stored, or dropped for good).
    /// A collector's `Retry-After` is still honoured. For shutdown and tests.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let s = self.shared();
        let deadline = Instant::now() + timeout;
        s.flushing.fetch_add(1, Ordering::AcqRel);
        s.wake.notify_one();
        let drained = loop {
            if s.queued() == 0 {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(5))).await;
        };
        s.flushing.fetch_sub(1, Ordering::AcqRel);
        drained
    }

    /// Stops the worker now (every clone); what waits is not sent. Later events only queue.
    pub fn close(&self) {
        let s = self.shared();
        s.stop.store(true, Ordering::Release);
        s.wake.notify_one();
    }
}

async fn run(shared: Arc<Shared>, collector: ServiceClient) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + SEND_EVERY, SEND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let waiting = shared.queue().len();
        // a partial batch waits for the timer, unless someone is flushing
        if waiting < BATCH && !(waiting > 0 && shared.flushing.load(Ordering::Acquire) > 0) {
            tokio::select! {
                _ = tick.tick() => {}
                () = shared.wake.notified() => {}
            }
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
        }
        let batch = shared.take_batch();
        if !batch.is_empty() && !deliver(&shared, &collector, batch).await {
            return;
        }
    }
}

/// Sends `batch` until it is stored or cannot be; `false` when the emitter stopped meanwhile.
async fn deliver(shared: &Shared, collector: &ServiceClient, batch: Vec<Event>) -> bool {
    let mut pending = vec![batch];
    let mut backoff = FIRST_BACKOFF;
    while let Some(batch) = pending.pop() {
        let n = batch.len();
        loop {
            match collector.post_events(&batch).await {
                Ok(answer) => {
                    let accepted = answer.get("accepted").and_then(Value::as_u64).unwrap_or(n as u64);
                    let rejected = answer.get("rejected").and_then(Value::as_array).map_or(0, Vec::len);
                    shared.sent.fetch_add(accepted, Ordering::Relaxed);
                    if rejected > 0 {
                        shared.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
                        tracing::warn!(count = rejected, answer = %answer, "the trace-collector rejected events");
                    }
                    shared.set_error(None);
                    shared.settle(n);
                    backoff = FIRST_BACKOFF;
                    break;
                }
                // stored, but not the usual answer
                Err(ClientError::Decode { .. }) => {
                    shared.sent.fetch_add(n as u64, Ordering::Relaxed);
                    shared.settle(n);
                    break;
                }
                Err(e) if e.status() == Some(413) && n > 1 => {
                    let mut first = batch;
                    let second = first.split_off(n / 2);
                    // both halves stay in flight; the first goes first
                    pending.push(second);
                    pending.push(first);
                    break;
                }
                Err(e) if e.is_transient() => {
                    shared.failed_posts.fetch_add(1, Ordering::Relaxed);
                    let wait = e.retry_after().map_or(backoff, |a| a.min(MAX_RETRY_AFTER).max(backoff));
                    shared.set_error(Some(e.to_string()));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // only a stop cuts the wait: a flush must not override back-pressure
                    let until = tokio::time::Instant::now() + wait;
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(until) => break,
                            () = shared.wake.notified() => {}
                        }
                        if shared.stop.load(Ordering::Acquire) {
                            return false;
                        }
                    }
                }
                Err(e) => {
                    shared.failed_posts.fetch_add(1, Ordering::Relaxed);
                    shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(error = %e, count = n, "trace events dropped");
                    shared.set_error(Some(e.to_string()));
                    shared.settle(n);
                    break;
                }
            }
        }
    }
    true
}

/// Now, in Unix nanoseconds (the trace schema's times).
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Builds one span as an [`Event`] that passes [`Event::validate`] whenever its ids are valid
/// (see [`helix_core::ids`]): names are clipped, `null` attributes skipped, nested ones stored
/// as their JSON text, long strings clipped, an end before the start moved to the start.
#[derive(Debug, Clone)]
pub struct SpanBuilder {
    event: Event,
}

impl SpanBuilder {
    pub fn new(trace_id: &str, span_id: &str, name: &str, kind: SpanKind) -> SpanBuilder {
        SpanBuilder {
            event: Event {
                schema_version: SCHEMA_VERSION,
                trace_id: trace_id.to_owned(),
                span_id: span_id.to_owned(),
                parent_span_id: None,
                name: name.to_owned(),
                kind,
                start_unix_nanos: 0,
                end_unix_nanos: 0,
                status: SpanStatus::Unset,
                status_message: None,
                project: None,
                phase: None,
                run: None,
                domain: None,
                attributes: Default::default(),
            },
        }
    }

    /// The parent span (`None`: a root).
    pub fn parent(mut self, parent_span_id: Option<&str>) -> SpanBuilder {
        self.event.parent_span_id = parent_span_id.map(str::to_owned);
        self
    }

    /// Start and end, Unix nanoseconds.
    pub fn times(mut self, start_unix_nanos: u64, end_unix_nanos: u64) -> SpanBuilder {
        self.event.start_unix_nanos = start_unix_nanos;
        self.event.end_unix_nanos = end_unix_nanos;
        self
    }

    pub fn status(mut self, status: SpanStatus, message: Option<&str>) -> SpanBuilder {
        self.event.status = status;
        self.event.status_message = message.map(|m| clip(m, MAX_STATUS_MESSAGE).to_owned());
        self
    }

    pub fn project(mut self, project: &str) -> SpanBuilder {
        self.event.project = Some(project.to_owned());
        self
    }

    pub fn phase(mut self, phase: &str) -> SpanBuilder {
        self.event.phase = Some(phase.to_owned());
        self
    }

    /// A readable run name (the trace id identifies the run).
    pub fn run(mut self, run: &str) -> SpanBuilder {
        self.event.run = Some(run.to_owned());
        self
    }

    pub fn attr(mut self, key: &str, value: impl Into<Value>) -> SpanBuilder {
        if let Some(v) = attribute(value.into()) {
            self.event.attributes.insert(key.to_owned(), v);
        }
        self
    }

    pub fn attributes(mut self, attributes: serde_json::Map<String, Value>) -> SpanBuilder {
        for (k, v) in attributes {
            if let Some(v) = attribute(v) {
                self.event.attributes.insert(k, v);
            }
        }
        self
    }

    pub fn build(self) -> Event {
        let mut e = self.event;
        e.name = clip(&e.name, MAX_NAME).to_owned();
        if e.name.trim().is_empty() {
            e.name = "span".to_owned();
        }
        for field in [&mut e.project, &mut e.phase, &mut e.run] {
            if let Some(v) = field.as_mut() {
                v.truncate(clip(v, MAX_NAME).len());
            }
        }
        if e.parent_span_id.as_deref() == Some(e.span_id.as_str()) {
            e.parent_span_id = None;
        }
        e.end_unix_nanos = e.end_unix_nanos.max(e.start_unix_nanos);
        while e.attributes.len() > MAX_ATTRIBUTES {
            e.attributes.pop_last();
        }
        e
    }
}

/// An attribute value the schema takes: scalars and arrays of scalars as they are (strings
/// clipped), anything else as its JSON text; `None` for null.
fn attribute(v: Value) -> Option<Value> {
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    Some(match v {
        Value::Null => return None,
        Value::String(s) => Value::String(clip(&s, MAX_ATTRIBUTE_BYTES).to_owned()),
        Value::Number(_) | Value::Bool(_) => v,
        Value::Array(items) if items.iter().all(scalar) => Value::Array(
            items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Value::String(clip(&s, MAX_ATTRIBUTE_BYTES).to_owned()),
                    i => i,
                })
                .collect(),
        ),
        other => Value::String(clip(&other.to_string(), MAX_ATTRIBUTE_BYTES).to_owned()),
    })
}

/// `s` cut to at most `max` bytes at a character boundary.
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

#[cfg(test)]
mod tests {
    //! The emitter against a loopback HTTP/1.1 receiver that records what it is sent (the
    //! orchestrator cannot link the trace-collector; the end-to-end tests live in `tests/`).

    use std::collections::HashSet;

    use helix_core::ids::{new_span_id, new_trace_id};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A port nothing listens on (bound and released; another process could take it, unlikely).
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        l.local_addr().expect("addr").port()
    }

    fn client(port: u16) -> ServiceClient {
        ServiceClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).expect("client")
    }

    /// One POST the receiver saw: its events and the status it answered.
    #[derive(Debug, Clone)]
    struct Post {
        events: Vec<Event>,
        status: u16,
        at: Instant,
    }

    /// Answers `POST /v1/events` as the collector documents it, with scripted statuses first
    /// (status, Retry-After), then 200 with `{"accepted": n, "rejected": []}`.
    struct Receiver {
        posts: Arc<Mutex<Vec<Post>>>,
    }

    impl Receiver {
        async fn start(port: u16, script: Vec<(u16, Option<u64>)>) -> Receiver {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
            let posts = Arc::new(Mutex::new(Vec::new()));
            let script = Arc::new(Mutex::new(VecDeque::from(script)));
            let log = posts.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else { return };
                    let (log, script) = (log.clone(), script.clone());
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 16384];
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
                        let events: Vec<Event> =
                            serde_json::from_slice(&buf[head_end..head_end + length]).expect("event array");
                        let (status, retry) =
                            script.lock().expect("script").pop_front().unwrap_or((200, None));
                        let body = if status == 200 {
                            json!({"accepted": events.len(), "rejected": []})
                        } else {
                            json!({"type": "urn:helix:error:unavailable", "title": "t", "status": status,
                                   "detail": "scripted", "code": "unavailable"})
                        }
                        .to_string();
                        log.lock().expect("log").push(Post { events, status, at: Instant::now() });
                        let retry = retry.map(|s| format!("retry-after: {s}\r\n")).unwrap_or_default();
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{retry}\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(answer.as_bytes()).await;
                        let _ = sock.shutdown().await;
                    });
                }
            });
            Receiver { posts }
        }

        fn posts(&self) -> Vec<Post> {
            self.posts.lock().expect("posts").clone()
        }

        /// Span ids stored (answered 200), each once.
        fn stored(&self) -> HashSet<String> {
            let mut ids = HashSet::new();
            for p in self.posts().into_iter().filter(|p| p.status == 200) {
                for e in p.events {
                    assert!(ids.insert(e.span_id.clone()), "stored twice: {}", e.span_id);
                }
            }
            ids
        }
    }

    fn spans(n: usize) -> Vec<Event> {
        let trace = new_trace_id();
        let root = new_span_id();
        (0..n)
            .map(|i| {
                SpanBuilder::new(&trace, &new_span_id(), &format!("phase p{i}"), SpanKind::Phase)
                    .parent(Some(&root))
                    .times(1_000 + i as u64, 2_000 + i as u64)
                    .project("shop")
                    .phase(&format!("p{i}"))
                    .build()
            })
            .collect()
    }

    #[tokio::test]
    async fn nothing_is_lost_while_the_collector_is_down_within_capacity() {
        let port = free_port();
        let (emitter, worker) = Emitter::start(client(port), 1_000);
        let events = spans(700);
        let ids: HashSet<String> = events.iter().map(|e| e.span_id.clone()).collect();
        for e in events {
            emitter.emit(e);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let stats = emitter.stats();
        assert!(stats.failed_posts >= 1 && stats.sent == 0, "{stats:?}");
        assert_eq!((stats.queued, stats.dropped), (700, 0), "{stats:?}");
        assert!(stats.last_error.as_deref().is_some_and(|e| e.contains("cannot reach")), "{stats:?}");

        let receiver = Receiver::start(port, vec![]).await;
        assert!(emitter.flush(Duration::from_secs(10)).await, "{:?}", emitter.stats());
        assert_eq!(receiver.stored(), ids);
        assert!(receiver.posts().iter().all(|p| p.events.len() <= BATCH));
        let stats = emitter.stats();
        assert_eq!((stats.sent, stats.dropped, stats.queued, stats.last_error), (700, 0, 0, None));

        drop(emitter);
        tokio::time::timeout(Duration::from_secs(2), worker).await.expect("worker ends").expect("no panic");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        let port = free_port();
        let (emitter, _worker) = Emitter::start(client(port), 50);
        let started = Instant::now();
        for e in spans(80) {
            emitter.emit(e);
        }
        assert!(started.elapsed() < Duration::from_millis(500), "emit never waits");
        assert_eq!(emitter.dropped(), 30);
        // the batch in flight still counts against the capacity
        tokio::time::sleep(Duration::from_millis(300)).await;
        emitter.emit(spans(1).remove(0));
        assert_eq!((emitter.dropped(), emitter.stats().queued), (31, 50));

        let receiver = Receiver::start(port, vec![]).await;
        assert!(emitter.flush(Duration::from_secs(10)).await);
        assert_eq!(receiver.stored().len(), 50);
        assert_eq!(emitter.stats().sent, 50);
    }

    #[tokio::test]
    async fn partial_batches_go_on_the_timer_and_full_ones_at_once() {
        let port = free_port();
        let receiver = Receiver::start(port, vec![]).await;
        let (emitter, _worker) = Emitter::start(client(port), 10_000);
        for e in spans(3) {
            emitter.emit(e);
        }
        let sent = Instant::now();
        let deadline = sent + Duration::from_secs(2);
        while receiver.posts().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let posts = receiver.posts();
        assert_eq!(
            posts.iter().map(|p| p.events.len()).collect::<Vec<_>>(),
            [3],
            "one batch, no flush needed"
        );
        assert!(posts[0].at - sent <= SEND_EVERY + Duration::from_millis(500), "{:?}", posts[0].at - sent);

        for e in spans(1_200) {
            emitter.emit(e);
        }
        assert!(emitter.flush(Duration::from_secs(10)).await);
        let sizes: Vec<usize> = receiver.posts().iter().skip(1).map(|p| p.events.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 1_200);
        assert!(sizes.iter().all(|n| *n <= BATCH) && sizes.contains(&BATCH), "{sizes:?}");
    }

    #[tokio::test]
    async fn back_pressure_is_honoured_and_refusals_are_counted() {
        let port = free_port();
        let receiver = Receiver::start(port, vec![(503, Some(1)), (413, None), (400, None)]).await;
        let (emitter, _worker) = Emitter::start(client(port), 10_000);
        for e in spans(10) {
            emitter.emit(e);
        }
        assert!(emitter.flush(Duration::from_secs(10)).await, "{:?}", emitter.stats());
        let posts = receiver.posts();
        let shape: Vec<(usize, u16)> = posts.iter().map(|p| (p.events.len(), p.status)).collect();
        // 503: the same batch again after Retry-After; 413: split; 400: that half is dropped
        assert_eq!(shape, [(10, 503), (10, 413), (5, 400), (5, 200)], "{shape:?}");
        assert!(posts[1].at - posts[0].at >= Duration::from_millis(950), "{:?}", posts[1].at - posts[0].at);
        let stats = emitter.stats();
        assert_eq!((stats.sent, stats.dropped, stats.failed_posts, stats.queued), (5, 5, 2, 0), "{stats:?}");

        let mut invalid = spans(1).remove(0);
        invalid.trace_id = "0".repeat(32);
        emitter.emit(invalid);
        assert_eq!((emitter.stats().rejected, emitter.stats().queued), (1, 0));
    }

    #[test]
    fn spans_are_valid_whatever_their_text() {
        let (trace, span, parent) = (new_trace_id(), new_span_id(), new_span_id());
        let long = "é".repeat(MAX_NAME);
        let mut attrs = serde_json::Map::new();
        attrs.insert("helix.attempt".to_owned(), json!(2));
        attrs.insert("nested".to_owned(), json!({"a": [1, {"b": null}]}));
        attrs.insert("none".to_owned(), Value::Null);
        attrs.insert("list".to_owned(), json!(["a", 1, true]));
        let e = SpanBuilder::new(&trace, &span, &long, SpanKind::Heal)
            .parent(Some(&parent))
            .times(2_000, 1_000)
            .status(SpanStatus::Error, Some("exit 1"))
            .project(&long)
            .phase("test")
            .run("r1")
            .attr("helix.big", "x".repeat(MAX_ATTRIBUTE_BYTES + 10))
            .attributes(attrs)
            .build();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(
            (e.trace_id.as_str(), e.parent_span_id.as_deref()),
            (trace.as_str(), Some(parent.as_str()))
        );
        assert!(e.name.len() <= MAX_NAME && e.name.starts_with('é'));
        assert_eq!((e.start_unix_nanos, e.end_unix_nanos), (2_000, 2_000));
        assert_eq!(
            (e.status, e.status_message.as_deref(), e.phase.as_deref()),
            (SpanStatus::Error, Some("exit 1"), Some("test"))
        );
        assert_eq!(e.attributes["nested"], json!(r#"{"a":[1,{"b":null}]}"#));
        assert_eq!(e.attributes["list"], json!(["a", 1, true]));
        assert_eq!(e.number("helix.attempt"), Some(2.0));
        assert!(!e.attributes.contains_key("none"));
        assert_eq!(e.text("helix.big").map(str::len), Some(MAX_ATTRIBUTE_BYTES));

        let root = SpanBuilder::new(&trace, &span, " ", SpanKind::Run).parent(Some(&span)).build();
        assert_eq!((root.name.as_str(), root.parent_span_id.as_deref()), ("span", None));
        assert_eq!(root.validate(), Ok(()));
        let ts = now_unix_nanos();
        assert!(ts > 1_700_000_000_000_000_000, "{ts}");
    }
}
