//! Where breaker state lives. Both backends apply the same rules (see the module docs of
//! `breaker`); they differ in who sees the state: this process, or every replica using one Redis.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::machine::Machine;
use super::{Admission, BreakerSettings, Command, Outcome, Snapshot, State, rate};

/// Storage and rules of breakers. Every operation is atomic per breaker and takes the time from the
/// caller, so that tests (and replicas sharing Redis) agree on one clock.
pub trait BreakerBackend: Send + Sync {
    /// May a call go to `id` now? Moves OPEN to HALF_OPEN when due and counts probes.
    fn acquire(
        &self,
        id: &str,
        settings: &BreakerSettings,
        now_ms: u64,
    ) -> impl Future<Output = Result<Step, BackendError>> + Send;

    /// Records the outcome of a call admitted by `acquire`.
    fn record(
        &self,
        id: &str,
        settings: &BreakerSettings,
        probe: bool,
        outcome: Outcome,
        now_ms: u64,
    ) -> impl Future<Output = Result<Step, BackendError>> + Send;

    /// The breaker at `now_ms`, changing nothing.
    fn peek(
        &self,
        id: &str,
        settings: &BreakerSettings,
        now_ms: u64,
    ) -> impl Future<Output = Result<Step, BackendError>> + Send;

    fn command(
        &self,
        id: &str,
        settings: &BreakerSettings,
        cmd: Command,
        now_ms: u64,
    ) -> impl Future<Output = Result<Step, BackendError>> + Send;
}

/// The result of one operation: the admission (for `acquire`), the breaker afterwards, and the
/// state changes the operation caused.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub admission: Option<Admission>,
    pub view: View,
    pub changes: Vec<Change>,
}

/// A breaker's state without its id; see [`Snapshot`] for the meaning of the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub state: State,
    pub calls: u32,
    pub failures: u32,
    pub slow_calls: u32,
    pub consecutive_trips: u32,
    /// Set only while OPEN.
    pub open_until_ms: Option<u64>,
    pub probes_admitted: u32,
}

impl View {
    pub fn snapshot(&self, id: &str, shared: bool) -> Snapshot {
        Snapshot {
            id: id.to_string(),
            state: self.state,
            calls: self.calls,
            failures: self.failures,
            slow_calls: self.slow_calls,
            failure_rate: rate(self.failures, self.calls),
            slow_call_rate: rate(self.slow_calls, self.calls),
            consecutive_trips: self.consecutive_trips,
            next_half_open_unix_ms: self.open_until_ms,
            probes_admitted: self.probes_admitted,
            shared,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub from: State,
    pub to: State,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from the breaker script: {0}")]
    Reply(String),
}

/// Breakers of this process only: the single-replica store and the fallback while Redis is away.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    machines: Mutex<HashMap<String, Machine>>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Machine>> {
        // A panic while holding the lock cannot leave a machine half-updated in a way that matters
        // more than refusing all further calls would.
        self.machines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with<R>(&self, id: &str, settings: &BreakerSettings, f: impl FnOnce(&mut Machine) -> R) -> R {
        let mut machines = self.lock();
        if let Some(machine) = machines.get_mut(id) {
            return f(machine);
        }
        f(machines.entry(id.to_string()).or_insert_with(|| Machine::new(settings)))
    }

    pub fn acquire_now(&self, id: &str, settings: &BreakerSettings, now_ms: u64) -> Step {
        self.with(id, settings, |m| m.acquire(settings, now_ms))
    }

    pub fn record_now(
        &self,
        id: &str,
        settings: &BreakerSettings,
        probe: bool,
        outcome: Outcome,
        now_ms: u64,
    ) -> Step {
        self.with(id, settings, |m| m.record(settings, probe, outcome, now_ms))
    }

    pub fn peek_now(&self, id: &str, settings: &BreakerSettings, now_ms: u64) -> Step {
        let machines = self.lock();
        let view = match machines.get(id) {
            Some(m) => m.view(settings, now_ms),
            None => Machine::new(settings).view(settings, now_ms),
        };
        Step { admission: None, view, changes: Vec::new() }
    }

    pub fn command_now(&self, id: &str, settings: &BreakerSettings, cmd: Command, now_ms: u64) -> Step {
        self.with(id, settings, |m| m.command(settings, cmd, now_ms))
    }

    /// Mirrors a state read from Redis (see [`Machine::adopt`]).
    pub(crate) fn adopt(&self, id: &str, settings: &BreakerSettings, view: &View) {
        self.with(id, settings, |m| m.adopt(view));
    }

    pub(crate) fn clear_window(&self, id: &str, settings: &BreakerSettings) {
        self.with(id, settings, Machine::clear_window);
    }
}

impl BreakerBackend for MemoryBackend {
    async fn acquire(&self, id: &str, settings: &BreakerSettings, now_ms: u64) -> Result<Step, BackendError> {
        Ok(self.acquire_now(id, settings, now_ms))
    }

    async fn record(
        &self,
        id: &str,
        settings: &BreakerSettings,
        probe: bool,
        outcome: Outcome,
        now_ms: u64,
    ) -> Result<Step, BackendError> {
        Ok(self.record_now(id, settings, probe, outcome, now_ms))
    }

    async fn peek(&self, id: &str, settings: &BreakerSettings, now_ms: u64) -> Result<Step, BackendError> {
        Ok(self.peek_now(id, settings, now_ms))
    }

    async fn command(
        &self,
        id: &str,
        settings: &BreakerSettings,
        cmd: Command,
        now_ms: u64,
    ) -> Result<Step, BackendError> {
        Ok(self.command_now(id, settings, cmd, now_ms))
    }
}
