//! Circuit breakers per deployment, optionally shared by all gateway replicas through Redis.
//!
//! Why breakers: an upstream deployment that fails or crawls should stop receiving traffic quickly
//! (so requests fall back to another deployment instead of waiting on a dead one) and be tried again
//! carefully (a few probes) once it may have recovered. The semantics follow resilience4j's
//! `CircuitBreaker` and Envoy's outlier detection:
//!
//! - **CLOSED** admits everything and records outcomes in a sliding window (the last N calls, or the
//!   last N seconds in one-second buckets). Once the window holds at least `minimum_calls` (for a
//!   count window at most N) and its failure rate or slow-call rate is at or above its threshold, the
//!   breaker trips. A rate of zero never trips, whatever the threshold.
//! - **OPEN** rejects everything for `open_duration × 2^(consecutive_trips-1)`, capped at
//!   `max_open_duration`, so a deployment that keeps failing is probed less and less often.
//! - **HALF_OPEN** starts with the first acquire after the open period and admits exactly
//!   `half_open_probes` probes per episode (cluster-wide when shared). When all probes have
//!   completed and neither rate is at or above its threshold the breaker closes (window cleared,
//!   trips reset). It re-opens, with one more consecutive trip, as soon as the probes that failed (or
//!   were slow) make that threshold certain, even if others are still in flight: waiting could not
//!   change the verdict, only delay it. Outcomes of calls admitted while CLOSED that arrive while
//!   the breaker is not CLOSED are ignored, as are probe outcomes outside their episode.
//! - A probe that never reports (its caller crashed) must not wedge the breaker: every admitted
//!   probe holds a lease (`probe_lease`, default `max(slow_call_duration, 60 s)`); a lease that
//!   expires counts as a failed probe and a later report for it is ignored. Probes are
//!   interchangeable, so a report settles the oldest outstanding lease.
//! - **FORCED_OPEN** and **DISABLED** are operator states (reject everything / admit everything and
//!   record nothing) until a reset.
//!
//! Storage sits behind [`BreakerBackend`]: [`MemoryBackend`] for a single replica and as the
//! fallback, [`RedisBackend`] for state shared by replicas (see `redis_backend.rs` for the keys and
//! the atomicity). [`Breakers`] is the facade the gateway calls; it decides which backend answers
//! and keeps a Redis outage from failing or stalling any request (see `facade.rs`).

mod backend;
mod clock;
mod facade;
mod machine;
mod redis_backend;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

pub use backend::{BackendError, BreakerBackend, Change, MemoryBackend, Step, View};
pub use clock::{Clock, ManualClock, SystemClock};
pub(crate) use facade::bounded;
pub use facade::{Breakers, REDIS_CALL_TIMEOUT};
pub use redis_backend::RedisBackend;

/// Which calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last N calls.
    Count(u32),
    /// The calls of the last N seconds (whole seconds, one bucket each; at least one).
    Time(Duration),
}

/// How one breaker judges its deployment. Plain data: the gateway maps its configuration onto it.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    pub window: WindowKind,
    /// Percent; the breaker trips when the failure rate is at or above it.
    pub failure_rate_threshold: f64,
    /// Percent; the breaker trips when the slow-call rate is at or above it.
    pub slow_call_rate_threshold: f64,
    /// A call lasting at least this long is slow.
    pub slow_call_duration: Duration,
    /// No trip before the window holds this many calls (capped at N for a count window).
    pub minimum_calls: u32,
    /// How long the first trip stays open.
    pub open_duration: Duration,
    /// Each consecutive trip doubles the open time, up to this.
    pub max_open_duration: Duration,
    /// Calls admitted per half-open episode, cluster-wide when shared (at least one).
    pub half_open_probes: u32,
    /// How long an admitted probe may stay unreported before it counts as failed;
    /// `None` means `max(slow_call_duration, 60 s)`. Set it to at least the upstream timeout, or a
    /// long streaming probe is judged failed while it is still running.
    pub probe_lease: Option<Duration>,
    /// The longest `retry_after` told to a caller while every probe is out (the lease can be as
    /// long as the longest call; a waiting client should look again much sooner, when the probe
    /// has likely said how the deployment is). `None`: the time until the oldest lease expires.
    pub probe_wait: Option<Duration>,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window: WindowKind::Count(20),
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: Duration::from_secs(30),
            minimum_calls: 10,
            open_duration: Duration::from_secs(30),
            max_open_duration: Duration::from_secs(300),
            half_open_probes: 3,
            probe_lease: None,
            probe_wait: None,
        }
    }
}

impl BreakerSettings {
    /// Calls needed in the window before it may trip (a count window can never hold more than N).
    pub(crate) fn effective_minimum_calls(&self) -> u32 {
        let min = self.minimum_calls.max(1);
        match self.window {
            WindowKind::Count(n) => min.min(n.max(1)),
            WindowKind::Time(_) => min,
        }
    }

    pub(crate) fn probes(&self) -> u32 {
        self.half_open_probes.max(1)
    }

    pub(crate) fn open_ms(&self) -> u64 {
        millis(self.open_duration)
    }

    pub(crate) fn max_open_ms(&self) -> u64 {
        millis(self.max_open_duration).max(self.open_ms())
    }

    /// Open time of the `trips`-th consecutive trip.
    pub(crate) fn open_ms_for(&self, trips: u32) -> u64 {
        let doublings = trips.saturating_sub(1).min(63);
        self.open_ms().saturating_mul(1u64 << doublings).min(self.max_open_ms())
    }

    pub(crate) fn lease_ms(&self) -> u64 {
        millis(self.probe_lease.unwrap_or(self.slow_call_duration.max(Duration::from_secs(60)))).max(1)
    }

    /// Seconds covered by a time window (at least one).
    pub(crate) fn window_secs(&self) -> u64 {
        match self.window {
            WindowKind::Count(_) => 0,
            WindowKind::Time(d) => d.as_secs().max(1),
        }
    }

    pub(crate) fn window_calls(&self) -> u32 {
        match self.window {
            WindowKind::Count(n) => n.max(1),
            WindowKind::Time(_) => 0,
        }
    }

    pub(crate) fn is_slow(&self, outcome: &Outcome) -> bool {
        outcome.duration >= self.slow_call_duration
    }

    /// Whether `failures`/`slow` out of `calls` reach a threshold; a rate of zero never does.
    pub(crate) fn rates_reached(&self, calls: u32, failures: u32, slow: u32) -> Option<String> {
        if calls == 0 {
            return None;
        }
        let failure_rate = rate(failures, calls);
        let slow_rate = rate(slow, calls);
        if failures > 0 && failure_rate >= self.failure_rate_threshold {
            Some(format!(
                "failure rate {failure_rate:.1}% >= {:.1}% over {calls} calls",
                self.failure_rate_threshold
            ))
        } else if slow > 0 && slow_rate >= self.slow_call_rate_threshold {
            Some(format!(
                "slow call rate {slow_rate:.1}% >= {:.1}% over {calls} calls",
                self.slow_call_rate_threshold
            ))
        } else {
            None
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Percent of `part` in `whole`, computed the same way in Rust and in the Lua script so both
/// backends reach the same verdicts.
pub(crate) fn rate(part: u32, whole: u32) -> f64 {
    if whole == 0 { 0.0 } else { f64::from(part) * 100.0 / f64::from(whole) }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
    ForcedOpen,
    Disabled,
}

impl State {
    /// The spelling used in JSON and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "closed" => State::Closed,
            "open" => State::Open,
            "half_open" => State::HalfOpen,
            "forced_open" => State::ForcedOpen,
            "disabled" => State::Disabled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to "may I call this deployment now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; report the outcome with `record(id, probe, ..)`.
    Allowed { probe: bool },
    /// Do not call; the breaker may admit again after `retry_after` (for a forced-open breaker:
    /// `open_duration`, since only an operator ends that state).
    Rejected { retry_after: Duration },
}

impl Admission {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Admission::Allowed { .. })
    }
}

/// Operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Back to CLOSED with an empty window and no consecutive trips.
    Reset,
    /// Reject everything until a reset.
    ForceOpen,
    /// Admit everything and record nothing until a reset.
    Disable,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Reset => "reset",
            Command::ForceOpen => "force_open",
            Command::Disable => "disable",
        }
    }
}

/// What a call did, as classified by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub failure: bool,
    pub duration: Duration,
}

/// A breaker as seen now.
///
/// `calls`, `failures` and `slow_calls` describe the evidence the state is judged on: the window
/// while CLOSED (and, as it was when it tripped, while OPEN), the completed probes of the current
/// episode while HALF_OPEN.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Snapshot {
    pub id: String,
    pub state: State,
    pub calls: u32,
    pub failures: u32,
    pub slow_calls: u32,
    /// Percent.
    pub failure_rate: f64,
    /// Percent.
    pub slow_call_rate: f64,
    pub consecutive_trips: u32,
    /// When an OPEN breaker admits its first probe.
    pub next_half_open_unix_ms: Option<u64>,
    /// Probes admitted in the current half-open episode.
    pub probes_admitted: u32,
    /// Whether this came from Redis (false: this replica's local state).
    pub shared: bool,
}

/// A state change, for trace events. Each replica broadcasts the changes its own calls caused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Transition {
    pub id: String,
    pub from: State,
    pub to: State,
    pub at_unix_ms: u64,
    pub reason: String,
}

/// Health of the Redis link, for readiness and the operator API. Never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RedisStatus {
    pub configured: bool,
    pub connected: bool,
    pub last_error: Option<String>,
}
