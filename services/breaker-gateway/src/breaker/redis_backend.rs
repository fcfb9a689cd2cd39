//! Breakers shared by all replicas through Redis.
//!
//! Each breaker is four keys, `<prefix>:{<id>}:state|count|time|leases` (the braces are a cluster
//! hash tag, so a breaker's keys share a slot): a hash with the state, consecutive trips, open-until
//! instant and half-open episode counters; the count window as a list of the last N outcomes; the
//! time window as a hash of per-second counters; and the outstanding probe leases as a sorted set
//! scored by expiry. Every operation is one call of `breaker.lua`, which Redis runs atomically:
//! that is what makes "exactly N probes cluster-wide" and "one replica trips, all reject" hold.
//!
//! Time comes from the caller (`now_ms`), not from Redis `TIME`: one clock abstraction serves both
//! backends, which keeps the local fallback and the resynchronisation comparing like with like and
//! lets tests move time. The cost is that replicas' clock skew (NTP keeps it to milliseconds) shifts
//! when a breaker half-opens and where window seconds begin by that much; probe counting and
//! tripping do not depend on clocks.
//!
//! Successful plain calls may be written late, in a batch: [`RedisBackend::apply`] passes the
//! instants of those not yet written (see `facade.rs`) along with the operation, and the script
//! records them first, exactly as a `record` of each would have. That keeps a replica at one
//! round trip per call (the acquire) while calls succeed.
//!
//! Every write refreshes a TTL on all four keys (at least a day, and at least twice the longest
//! open period, time window and probe lease), so breakers of removed deployments disappear; an
//! expired breaker is simply CLOSED with an empty window. Settings travel with each call rather
//! than being stored, so replicas with different settings apply their own.

use std::sync::LazyLock;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script, Value};

use super::backend::{BackendError, BreakerBackend, Change, Step, View};
use super::{Admission, BreakerSettings, Command, Outcome, State, WindowKind};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("breaker.lua")));

const MIN_TTL_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Clone)]
pub struct RedisBackend {
    conn: MultiplexedConnection,
    prefix: String,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// `key_prefix` may end with `:` or not; keys are `<prefix>:{<id>}:<part>`.
    pub fn new(conn: MultiplexedConnection, key_prefix: &str) -> RedisBackend {
        RedisBackend { conn, prefix: key_prefix.trim_end_matches(':').to_string() }
    }

    /// Connects with bounded connect and response times (see [`super::REDIS_CALL_TIMEOUT`]).
    pub async fn connect(
        client: &redis::Client,
        key_prefix: &str,
        connect_timeout: std::time::Duration,
    ) -> Result<RedisBackend, BackendError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(super::REDIS_CALL_TIMEOUT));
        let conn = client.get_multiplexed_async_connection_with_config(&config).await?;
        Ok(RedisBackend::new(conn, key_prefix))
    }

    /// The connection (a cheap handle), for other state the replicas share.
    pub fn connection(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// The key prefix, without a trailing `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// The Redis keys of breaker `id`: state, count window, time window, probe leases.
    pub fn keys(&self, id: &str) -> [String; 4] {
        let base =
            if self.prefix.is_empty() { format!("{{{id}}}") } else { format!("{}:{{{id}}}", self.prefix) };
        ["state", "count", "time", "leases"].map(|part| format!("{base}:{part}"))
    }

    /// Pushes a state this replica reached on its own (while Redis was unreachable) into Redis:
    /// a local OPEN or HALF_OPEN becomes a shared OPEN if Redis says CLOSED (a local HALF_OPEN is
    /// due at once, so the next acquire starts a cluster-wide half-open episode); if Redis is OPEN
    /// too, the later open-until and the higher trip count win; any other shared state is kept.
    pub async fn sync(
        &self,
        id: &str,
        settings: &BreakerSettings,
        local: &View,
        now_ms: u64,
    ) -> Result<Step, BackendError> {
        let extra = [
            local.state.as_str().to_string(),
            local.consecutive_trips.to_string(),
            local.open_until_ms.unwrap_or(0).to_string(),
        ];
        self.run("sync", id, settings, now_ms, &[], &extra).await
    }

    /// `op` (`acquire`, `record`, `peek`, `command` or `flush`, which does nothing else), after
    /// recording the successful plain calls made at the instants `successes` (unix ms, oldest
    /// first) as `record` would have, each in turn.
    pub(crate) async fn apply_with(
        &self,
        op: &str,
        id: &str,
        s: &BreakerSettings,
        now_ms: u64,
        successes: &[u64],
        extra: &[String],
    ) -> Result<Step, BackendError> {
        self.run(op, id, s, now_ms, successes, extra).await
    }

    /// The extra arguments of `record`.
    pub(crate) fn record_args(settings: &BreakerSettings, probe: bool, outcome: Outcome) -> [String; 3] {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        [flag(probe), flag(outcome.failure), flag(settings.is_slow(&outcome))]
    }

    async fn run(
        &self,
        op: &str,
        id: &str,
        s: &BreakerSettings,
        now_ms: u64,
        successes: &[u64],
        extra: &[String],
    ) -> Result<Step, BackendError> {
        let (kind, size) = match s.window {
            WindowKind::Count(_) => ("c", u64::from(s.window_calls())),
            WindowKind::Time(_) => ("t", s.window_secs()),
        };
        let ttl_ms = [
            MIN_TTL_MS,
            s.max_open_ms().saturating_mul(2),
            size.saturating_mul(2000),
            s.lease_ms().saturating_mul(2),
        ]
        .into_iter()
        .max()
        .unwrap_or(MIN_TTL_MS);
        let mut invocation = SCRIPT.prepare_invoke();
        for key in self.keys(id) {
            invocation.key(key);
        }
        invocation
            .arg(op)
            .arg(now_ms)
            .arg(kind)
            .arg(size)
            .arg(threshold_arg(s.failure_rate_threshold))
            .arg(threshold_arg(s.slow_call_rate_threshold))
            .arg(s.effective_minimum_calls())
            .arg(s.open_ms())
            .arg(s.max_open_ms())
            .arg(s.probes())
            .arg(s.lease_ms())
            .arg(ttl_ms)
            .arg(successes.iter().map(u64::to_string).collect::<Vec<_>>().join(","));
        for a in extra {
            invocation.arg(a.as_str());
        }
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
        parse_step(&reply)
    }
}

impl BreakerBackend for RedisBackend {
    async fn acquire(&self, id: &str, settings: &BreakerSettings, now_ms: u64) -> Result<Step, BackendError> {
        self.run("acquire", id, settings, now_ms, &[], &[]).await
    }

    async fn record(
        &self,
        id: &str,
        settings: &BreakerSettings,
        probe: bool,
        outcome: Outcome,
        now_ms: u64,
    ) -> Result<Step, BackendError> {
        let extra = RedisBackend::record_args(settings, probe, outcome);
        self.run("record", id, settings, now_ms, &[], &extra).await
    }

    async fn peek(&self, id: &str, settings: &BreakerSettings, now_ms: u64) -> Result<Step, BackendError> {
        self.run("peek", id, settings, now_ms, &[], &[]).await
    }

    async fn command(
        &self,
        id: &str,
        settings: &BreakerSettings,
        cmd: Command,
        now_ms: u64,
    ) -> Result<Step, BackendError> {
        self.run("command", id, settings, now_ms, &[], &[cmd.as_str().to_string()]).await
    }
}

/// A threshold as Lua's `tonumber` reads it, with the same verdicts as the Rust comparison (NaN and
/// infinity never trip, a negative threshold trips like zero).
fn threshold_arg(t: f64) -> String {
    let t = if t.is_nan() { 1e300 } else { t.clamp(0.0, 1e300) };
    format!("{t:e}")
}

fn parse_step(reply: &[Value]) -> Result<Step, BackendError> {
    let int = |i: usize| -> Result<i64, BackendError> {
        match reply.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            Some(Value::BulkString(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| BackendError::Reply(format!("field {i} is not a number"))),
            other => Err(BackendError::Reply(format!("field {i} is not a number: {other:?}"))),
        }
    };
    let count =
        |i: usize| -> Result<u32, BackendError> { Ok(u32::try_from(int(i)?.max(0)).unwrap_or(u32::MAX)) };
    let text = |i: usize| -> Result<String, BackendError> {
        match reply.get(i) {
            Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            Some(Value::SimpleString(t)) => Ok(t.clone()),
            other => Err(BackendError::Reply(format!("field {i} is not a string: {other:?}"))),
        }
    };
    let state = |i: usize| -> Result<State, BackendError> {
        let t = text(i)?;
        State::parse(&t).ok_or_else(|| BackendError::Reply(format!("unknown state {t:?}")))
    };
    let millis = |i: usize| -> Result<u64, BackendError> { Ok(u64::try_from(int(i)?.max(0)).unwrap_or(0)) };

    let admission = match int(0)? {
        1 => Some(Admission::Allowed { probe: int(1)? == 1 }),
        0 => Some(Admission::Rejected { retry_after: std::time::Duration::from_millis(millis(2)?) }),
        _ => None,
    };
    let view = View {
        state: state(3)?,
        calls: count(4)?,
        failures: count(5)?,
        slow_calls: count(6)?,
        consecutive_trips: count(7)?,
        open_until_ms: Some(millis(8)?).filter(|&ms| ms > 0),
        probes_admitted: count(9)?,
    };
    let n = count(10)? as usize;
    let mut changes = Vec::with_capacity(n);
    for k in 0..n {
        let at = 11 + 3 * k;
        changes.push(Change { from: state(at)?, to: state(at + 1)?, reason: text(at + 2)? });
    }
    Ok(Step { admission, view, changes })
}
