//! The breakers the gateway calls, and the policy for when Redis is away.
//!
//! Without a Redis URL every breaker lives in this process. With one, Redis is the source of truth
//! while it answers, and a Redis problem must never fail or stall a request:
//!
//! - Every Redis call is bounded by [`REDIS_CALL_TIMEOUT`] (and the connection's own response
//!   timeout). A call that errs or times out marks the link down (`redis_status().connected ==
//!   false`, `last_error` set) and the same operation is answered from local state at once. While
//!   the link is down no request touches Redis; a background task reconnects with backoff
//!   (100 ms doubling to 2 s). While up, that task PINGs every second, so an idle replica notices
//!   an outage too.
//! - Local state is not cold: every answer from Redis is mirrored into the local machine (state,
//!   consecutive trips, open-until; not the window), so a replica that loses Redis carries on from
//!   the last shared state it saw — a deployment that was OPEN stays OPEN. While down, the local
//!   machine runs the full rules on this replica's own calls (its window starts empty; a mirrored
//!   HALF_OPEN starts a fresh local episode).
//! - On reconnect, before requests use Redis again, every breaker this replica touched while down
//!   is resynchronised: an operator command given here during the outage is replayed (the last
//!   one), then a local trip is pushed ([`RedisBackend::sync`]: local OPEN/HALF_OPEN over shared
//!   CLOSED becomes shared OPEN; both OPEN keeps the later open-until and the higher trip count;
//!   shared HALF_OPEN or operator states are kept). Local windows are then discarded, not merged:
//!   other replicas' calls are not in them. Breakers touched between that pass and going live are
//!   resynchronised once more right after. A call that timed out may still have been applied in
//!   Redis; that ambiguity is accepted.
//! - Each replica broadcasts the transitions its own calls caused (including local ones while
//!   down); resynchronisation broadcasts nothing, since those changes were already announced here.
//! - One round trip per call: a call needs Redis before it goes upstream (the acquire: another
//!   replica may have tripped the breaker a moment ago, and half-open probes are counted there),
//!   but its outcome, when it is a plain success reported through [`Breakers::report`], waits and
//!   rides along with this replica's next Redis call for that breaker, which records it first,
//!   exactly as a `record` would have; a background flush writes what no call took within
//!   [`LATE_SUCCESS_FLUSH`]. Failures, slow calls and probes are written at once (they can change
//!   the state), carrying the waiting successes with them. The price: other replicas count this
//!   replica's successes up to that much later, so while both fail and succeed their windows can
//!   lack a few fresh successes (a trip a few milliseconds early at worst); waiting successes are
//!   lost if Redis goes away before they are written, which only thins the shared window.
//!
//! `Breakers::new` does no IO. The reconnect task is spawned on the Tokio runtime current at `new`
//! (or at the first call, if `new` ran outside one) and respawned by the next call if that runtime
//! went away; it holds only a weak reference, so dropping the last `Breakers` ends it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use super::backend::{BackendError, BreakerBackend, Change, MemoryBackend, Step};
use super::clock::{Clock, SystemClock};
use super::redis_backend::RedisBackend;
use super::{Admission, BreakerSettings, Command, Outcome, RedisStatus, Snapshot, State, Transition};

/// Upper bound of every Redis call made on behalf of a request.
pub const REDIS_CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// A success reported through [`Breakers::report`] reaches Redis at most this long after, when no
/// call of the same breaker carried it earlier.
pub const LATE_SUCCESS_FLUSH: Duration = Duration::from_millis(5);
/// Successes waiting per breaker beyond which they are flushed at once.
const LATE_SUCCESS_MAX: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// While connected the reconnect task PINGs this often (and notices that all `Breakers` were dropped).
const IDLE_CHECK: Duration = Duration::from_secs(1);
const EVENTS_CAPACITY: usize = 1024;

/// The circuit breakers of all deployments. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Breakers {
    inner: Arc<Inner>,
}

struct Inner {
    order: Vec<String>,
    settings: HashMap<String, BreakerSettings>,
    memory: MemoryBackend,
    link: Option<Link>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Transition>,
}

struct Link {
    /// None when the URL did not parse: configured, never connected.
    client: Option<redis::Client>,
    prefix: String,
    /// Credentials from the URL, scrubbed from every error message we keep or log.
    secrets: Vec<String>,
    state: Mutex<LinkState>,
    /// Breakers operated on locally since the link went down, with the last operator command.
    dirty: Mutex<HashMap<String, Option<Command>>>,
    wake: Arc<Notify>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// Plain successes not yet written, per breaker (see the module docs).
    late: Mutex<HashMap<String, Late>>,
}

#[derive(Debug, Default)]
struct Late {
    /// Their instants (unix ms, the breaker's clock), oldest first.
    at: Vec<u64>,
    /// When the oldest of them was reported (monotonic).
    since: Option<std::time::Instant>,
    /// A flush task is watching this breaker.
    armed: bool,
}

#[derive(Default)]
struct LinkState {
    /// The connection in use and its generation (so a failure of an old connection cannot take
    /// down a newer one).
    live: Option<(u64, RedisBackend)>,
    generation: u64,
    last_error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Acquire,
    Record {
        probe: bool,
        outcome: Outcome,
    },
    Peek,
    Command(Command),
    /// Writes the late successes, nothing else.
    Flush,
}

impl Breakers {
    /// Breakers for `deployments`, shared through Redis at `redis_url` if given, under keys
    /// starting with `key_prefix` (e.g. `helix:breaker`). Does no IO.
    pub fn new(
        deployments: Vec<(String, BreakerSettings)>,
        redis_url: Option<String>,
        key_prefix: String,
    ) -> Breakers {
        Breakers::with_clock(deployments, redis_url, key_prefix, Arc::new(SystemClock))
    }

    /// As [`Breakers::new`], reading time from `clock` (tests move a [`super::ManualClock`]).
    pub fn with_clock(
        deployments: Vec<(String, BreakerSettings)>,
        redis_url: Option<String>,
        key_prefix: String,
        clock: Arc<dyn Clock>,
    ) -> Breakers {
        let mut order = Vec::with_capacity(deployments.len());
        let mut settings = HashMap::with_capacity(deployments.len());
        for (id, s) in deployments {
            if settings.insert(id.clone(), s).is_none() {
                order.push(id);
            }
        }
        let link = redis_url.map(|url| {
            let secrets = url_secrets(&url);
            let (client, last_error) = match redis::Client::open(url.as_str()) {
                Ok(client) => (Some(client), None),
                Err(e) => (None, Some(redact(&format!("invalid redis url: {e}"), &secrets))),
            };
            Link {
                client,
                prefix: key_prefix,
                secrets,
                state: Mutex::new(LinkState { last_error, ..LinkState::default() }),
                dirty: Mutex::new(HashMap::new()),
                wake: Arc::new(Notify::new()),
                supervisor: Mutex::new(None),
                late: Mutex::new(HashMap::new()),
            }
        });
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        let inner = Arc::new(Inner { order, settings, memory: MemoryBackend::new(), link, clock, events });
        inner.ensure_supervisor();
        Breakers { inner }
    }

    /// May a call go to deployment `id` now? Unknown ids are admitted.
    pub async fn acquire(&self, id: &str) -> Admission {
        let free = Admission::Allowed { probe: false };
        let Some(s) = self.inner.settings.get(id) else { return free };
        let step = self.inner.execute(id, s, Op::Acquire).await.0;
        match step.admission.unwrap_or(free) {
            // waiting on probes: bounded, whatever the leases say (see BreakerSettings::probe_wait)
            Admission::Rejected { retry_after } if step.view.state == State::HalfOpen => {
                Admission::Rejected { retry_after: s.probe_wait.map_or(retry_after, |w| retry_after.min(w)) }
            }
            other => other,
        }
    }

    /// Reports the outcome of a call `acquire` admitted; `probe` as `acquire` returned it.
    pub async fn record(&self, id: &str, probe: bool, outcome: Outcome) {
        if let Some(s) = self.inner.settings.get(id) {
            self.inner.execute(id, s, Op::Record { probe, outcome }).await;
        }
    }

    /// As [`Breakers::record`], for the request path: with Redis, a plain success is not written
    /// at once but with this replica's next Redis call for the breaker, or within
    /// [`LATE_SUCCESS_FLUSH`] (see the module docs), so that a successful call costs one round
    /// trip; anything else is recorded at once.
    pub async fn report(&self, id: &str, probe: bool, outcome: Outcome) {
        let Some(s) = self.inner.settings.get(id) else { return };
        if !probe && !outcome.failure && !s.is_slow(&outcome) && self.inner.defer(id) {
            return;
        }
        self.inner.execute(id, s, Op::Record { probe, outcome }).await;
    }

    pub async fn snapshot(&self, id: &str) -> Option<Snapshot> {
        let s = self.inner.settings.get(id)?;
        let (step, shared) = self.inner.execute(id, s, Op::Peek).await;
        Some(step.view.snapshot(id, shared))
    }

    /// All breakers, in the order the deployments were given.
    pub async fn snapshots(&self) -> Vec<Snapshot> {
        let mut out = Vec::with_capacity(self.inner.order.len());
        for id in &self.inner.order {
            if let Some(snapshot) = self.snapshot(id).await {
                out.push(snapshot);
            }
        }
        out
    }

    /// Applies an operator command; None for an unknown id.
    pub async fn command(&self, id: &str, cmd: Command) -> Option<Snapshot> {
        let s = self.inner.settings.get(id)?;
        let (step, shared) = self.inner.execute(id, s, Op::Command(cmd)).await;
        Some(step.view.snapshot(id, shared))
    }

    /// The live Redis link, for the other state replicas share (budgets, bulkheads: see
    /// `accounting::shared`); `None` while Redis is away or not configured. Whoever uses it
    /// reports a failed call with [`Breakers::shared_redis_failed`], so that one outage is one
    /// state for everything shared.
    pub fn shared_redis(&self) -> Option<(u64, RedisBackend)> {
        self.inner.link.as_ref()?.live()
    }

    /// A call on the link of generation `generation` failed: the link is down (the supervisor
    /// reconnects it) unless a newer one is already up.
    pub fn shared_redis_failed(&self, generation: u64, e: &BackendError) {
        if let Some(link) = &self.inner.link {
            link.mark_down(generation, e);
        }
    }

    pub fn redis_status(&self) -> RedisStatus {
        match &self.inner.link {
            None => RedisStatus { configured: false, connected: false, last_error: None },
            Some(link) => {
                let st = lock(&link.state);
                RedisStatus {
                    configured: true,
                    connected: st.live.is_some(),
                    last_error: st.last_error.clone(),
                }
            }
        }
    }

    /// Waits until Redis is connected (and resynchronised), at most `within`; false if it is not
    /// (or no Redis is configured). For startup and tests; requests never need to wait.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        if self.inner.link.is_none() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.inner.ensure_supervisor();
            if self.redis_status().connected {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// State changes caused by this replica's calls, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.inner.events.subscribe()
    }

    /// The deployment ids, in the order given.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.inner.order.iter().map(String::as_str)
    }

    pub fn settings(&self, id: &str) -> Option<&BreakerSettings> {
        self.inner.settings.get(id)
    }
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("deployments", &self.inner.order)
            .field("redis", &self.redis_status())
            .finish()
    }
}

impl Inner {
    async fn execute(self: &Arc<Inner>, id: &str, s: &BreakerSettings, op: Op) -> (Step, bool) {
        if let Some(link) = &self.link {
            self.ensure_supervisor();
            if let Some((generation, backend)) = link.live() {
                let now = self.clock.now_ms();
                let late = link.take_late(id);
                match bounded(apply(&backend, op, id, s, now, &late)).await {
                    Ok(step) => {
                        self.memory.adopt(id, s, &step.view);
                        self.emit(id, now, &step.changes);
                        return (step, true);
                    }
                    Err(e) => link.mark_down(generation, &e),
                }
            }
            match op {
                Op::Peek | Op::Flush => {}
                Op::Command(cmd) => link.mark_dirty(id, Some(cmd)),
                Op::Acquire | Op::Record { .. } => link.mark_dirty(id, None),
            }
        }
        let now = self.clock.now_ms();
        let step = match op {
            Op::Acquire => self.memory.acquire_now(id, s, now),
            Op::Record { probe, outcome } => self.memory.record_now(id, s, probe, outcome, now),
            Op::Peek | Op::Flush => self.memory.peek_now(id, s, now),
            Op::Command(cmd) => self.memory.command_now(id, s, cmd, now),
        };
        self.emit(id, now, &step.changes);
        (step, false)
    }

    /// Keeps a plain success of `id` to be written later; false when Redis is not in use (the
    /// caller records it at once, locally).
    fn defer(self: &Arc<Inner>, id: &str) -> bool {
        let Some(link) = &self.link else { return false };
        if link.live().is_none() {
            return false;
        }
        // the flush needs a runtime; without one the success is recorded at once
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return false };
        let now = self.clock.now_ms();
        let (arm, full) = {
            let mut late = lock(&link.late);
            let entry = match late.get_mut(id) {
                Some(entry) => entry,
                None => late.entry(id.to_owned()).or_default(),
            };
            entry.at.push(now);
            entry.since.get_or_insert_with(std::time::Instant::now);
            let arm = !entry.armed;
            entry.armed = true;
            (arm, entry.at.len() >= LATE_SUCCESS_MAX)
        };
        if arm {
            runtime.spawn(flush_late(Arc::downgrade(self), id.to_owned()));
        }
        if full {
            let weak = Arc::downgrade(self);
            let id = id.to_owned();
            runtime.spawn(async move {
                if let Some(inner) = weak.upgrade()
                    && let Some(s) = inner.settings.get(&id)
                {
                    inner.execute(&id, s, Op::Flush).await;
                }
            });
        }
        true
    }

    fn emit(&self, id: &str, now: u64, changes: &[Change]) {
        for c in changes {
            tracing::info!(breaker = id, from = %c.from, to = %c.to, reason = %c.reason, "breaker transition");
            // No subscriber is fine: transitions are also in the log line above.
            let _ = self.events.send(Transition {
                id: id.to_string(),
                from: c.from,
                to: c.to,
                at_unix_ms: now,
                reason: c.reason.clone(),
            });
        }
    }

    fn ensure_supervisor(self: &Arc<Inner>) {
        let Some(link) = &self.link else { return };
        if link.client.is_none() {
            return;
        }
        let mut slot = lock(&link.supervisor);
        if slot.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        *slot = Some(runtime.spawn(supervise(Arc::downgrade(self))));
    }

    async fn reconnect(&self, link: &Link) -> Result<(), BackendError> {
        let Some(client) = &link.client else { return Ok(()) };
        let backend = tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            RedisBackend::connect(client, &link.prefix, CONNECT_TIMEOUT),
        )
        .await
        .map_err(|_| BackendError::Timeout(CONNECT_TIMEOUT * 2))??;
        bounded(backend.ping()).await?;
        self.resync(link, &backend).await?;
        let generation = link.set_live(backend.clone());
        tracing::info!("redis connected, breakers shared");
        if let Err(e) = self.resync(link, &backend).await {
            link.mark_down(generation, &e);
        }
        Ok(())
    }

    async fn resync(&self, link: &Link, backend: &RedisBackend) -> Result<(), BackendError> {
        let pending: Vec<(String, Option<Command>)> = lock(&link.dirty).drain().collect();
        let mut rest = pending.into_iter();
        while let Some((id, cmd)) = rest.next() {
            if let Err(e) = self.resync_one(backend, &id, cmd).await {
                for (id, cmd) in std::iter::once((id, cmd)).chain(rest) {
                    link.mark_dirty(&id, cmd);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    async fn resync_one(
        &self,
        backend: &RedisBackend,
        id: &str,
        cmd: Option<Command>,
    ) -> Result<(), BackendError> {
        let Some(s) = self.settings.get(id) else { return Ok(()) };
        let now = self.clock.now_ms();
        if let Some(cmd) = cmd {
            bounded(backend.command(id, s, cmd, now)).await?;
        }
        let local = self.memory.peek_now(id, s, now).view;
        let step = bounded(backend.sync(id, s, &local, now)).await?;
        self.memory.adopt(id, s, &step.view);
        self.memory.clear_window(id, s);
        Ok(())
    }
}

/// Writes the late successes of breaker `id` that no call took within [`LATE_SUCCESS_FLUSH`]; one
/// task per breaker at a time, ending when none are waiting.
async fn flush_late(weak: Weak<Inner>, id: String) {
    loop {
        let wait = {
            let Some(inner) = weak.upgrade() else { return };
            let Some(link) = &inner.link else { return };
            let mut late = lock(&link.late);
            let Some(entry) = late.get_mut(&id) else { return };
            match entry.since {
                Some(since) => LATE_SUCCESS_FLUSH.saturating_sub(since.elapsed()),
                None => {
                    entry.armed = false;
                    return;
                }
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            continue;
        }
        let Some(inner) = weak.upgrade() else { return };
        let Some(s) = inner.settings.get(&id) else { return };
        inner.execute(&id, s, Op::Flush).await;
        // Redis took them, or is away and they are lost with it: either way they are done
        if let Some(link) = &inner.link
            && let Some(entry) = lock(&link.late).get_mut(&id)
            && entry.since.is_some_and(|t| t.elapsed() >= LATE_SUCCESS_FLUSH)
        {
            entry.at.clear();
            entry.since = None;
        }
    }
}

/// Keeps the link up: reconnects (and resynchronises) while it is down; while it is up, PINGs every
/// [`IDLE_CHECK`] so that an outage is noticed (and reported) even without traffic.
async fn supervise(weak: Weak<Inner>) {
    let mut backoff = RETRY_MIN;
    loop {
        let wake = {
            let Some(inner) = weak.upgrade() else { return };
            let Some(link) = inner.link.as_ref() else { return };
            if let Some((generation, backend)) = link.live() {
                backoff = RETRY_MIN;
                if let Err(e) = bounded(backend.ping()).await {
                    link.mark_down(generation, &e);
                    continue;
                }
                Some(link.wake.clone())
            } else {
                match inner.reconnect(link).await {
                    Ok(()) => continue,
                    Err(e) => {
                        link.note_error(&e);
                        None
                    }
                }
            }
        };
        match wake {
            Some(wake) => {
                let _ = tokio::time::timeout(IDLE_CHECK, wake.notified()).await;
            }
            None => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

impl Link {
    fn live(&self) -> Option<(u64, RedisBackend)> {
        lock(&self.state).live.clone()
    }

    fn set_live(&self, backend: RedisBackend) -> u64 {
        let mut st = lock(&self.state);
        st.generation += 1;
        st.live = Some((st.generation, backend));
        st.generation
    }

    fn mark_down(&self, generation: u64, e: &BackendError) {
        let message = redact(&e.to_string(), &self.secrets);
        let mut st = lock(&self.state);
        if st.live.as_ref().is_some_and(|(g, _)| *g == generation) {
            st.live = None;
            tracing::warn!(error = %message, "redis unreachable, breakers fall back to local state");
            self.wake.notify_one();
            // successes not written are lost with the link (see the module docs)
            for entry in lock(&self.late).values_mut() {
                entry.at.clear();
                entry.since = None;
            }
        }
        st.last_error = Some(message);
    }

    fn note_error(&self, e: &BackendError) {
        let message = redact(&e.to_string(), &self.secrets);
        tracing::debug!(error = %message, "redis reconnect failed");
        lock(&self.state).last_error = Some(message);
    }

    /// The late successes of `id`, taken to be written with the next call.
    fn take_late(&self, id: &str) -> Vec<u64> {
        let mut late = lock(&self.late);
        match late.get_mut(id) {
            Some(entry) => {
                entry.since = None;
                std::mem::take(&mut entry.at)
            }
            None => Vec::new(),
        }
    }

    fn mark_dirty(&self, id: &str, cmd: Option<Command>) {
        let mut dirty = lock(&self.dirty);
        let entry = dirty.entry(id.to_string()).or_insert(None);
        if cmd.is_some() {
            *entry = cmd;
        }
    }
}

/// `op` in Redis, the late successes `late` recorded first.
async fn apply(
    backend: &RedisBackend,
    op: Op,
    id: &str,
    s: &BreakerSettings,
    now: u64,
    late: &[u64],
) -> Result<Step, BackendError> {
    match op {
        Op::Acquire => backend.apply_with("acquire", id, s, now, late, &[]).await,
        Op::Record { probe, outcome } => {
            let extra = RedisBackend::record_args(s, probe, outcome);
            backend.apply_with("record", id, s, now, late, &extra).await
        }
        Op::Peek => backend.apply_with("peek", id, s, now, late, &[]).await,
        Op::Command(cmd) => {
            backend.apply_with("command", id, s, now, late, &[cmd.as_str().to_string()]).await
        }
        Op::Flush => backend.apply_with("flush", id, s, now, late, &[]).await,
    }
}

/// `call` bounded by [`REDIS_CALL_TIMEOUT`] (a timeout is an error like any other).
pub(crate) async fn bounded<T>(
    call: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    tokio::time::timeout(REDIS_CALL_TIMEOUT, call)
        .await
        .map_err(|_| BackendError::Timeout(REDIS_CALL_TIMEOUT))?
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The credentials in a Redis URL (`redis://user:password@host`, `?password=`), raw and
/// percent-decoded, longest first so that a password containing the user name is scrubbed whole.
fn url_secrets(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let mut parts = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        parts.push(userinfo.to_string());
        match userinfo.split_once(':') {
            Some((user, password)) => {
                parts.push(password.to_string());
                // A very short user name would scrub unrelated letters; it is not the secret part.
                if user.len() >= 4 {
                    parts.push(user.to_string());
                }
            }
            None => parts.push(userinfo.to_string()),
        }
    }
    if let Some((_, query)) = rest.split_once('?') {
        for pair in query.split('&') {
            if let Some(("password" | "pass" | "user" | "username", value)) = pair.split_once('=') {
                parts.push(value.to_string());
            }
        }
    }
    let mut secrets: Vec<String> = Vec::new();
    for p in parts {
        for candidate in [percent_decode(&p), p] {
            if !candidate.is_empty() && !secrets.contains(&candidate) {
                secrets.push(candidate);
            }
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_string(), |m, secret| m.replace(secret.as_str(), "***"))
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn secrets_of_a_url_are_found_and_scrubbed() {
        let secrets = url_secrets("redis://alice:p%40ss@127.0.0.1:6379/0?password=other");
        for s in ["alice:p%40ss", "p%40ss", "p@ss", "alice", "other"] {
            assert!(secrets.contains(&s.to_string()), "{s} missing from {secrets:?}");
        }
        let scrubbed = redact("auth failed for alice with p@ss (alice:p%40ss), other", &secrets);
        assert_eq!(scrubbed, "auth failed for *** with *** (***), ***");
        assert!(url_secrets("redis://127.0.0.1:6379").is_empty());
        assert_eq!(url_secrets("redis://:hunter2@h"), vec![":hunter2".to_string(), "hunter2".to_string()]);
    }
}
