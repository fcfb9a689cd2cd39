//! Budgets and project bulkheads shared by the replicas through Redis (with `redis_url` set).
//!
//! Without Redis each replica keeps its own ledger and counters ([`super::budget`],
//! [`super::bulkhead`]). With it, Redis holds, under the breakers' key prefix:
//!
//! - `<prefix>:budget:<day>:{<project>}`: USD the project spent on that UTC day (days since the
//!   epoch), a float kept with `INCRBYFLOAT`, expiring two days later. A check reads it; a charge
//!   adds to it before the call's answer is sent, so the next call on any replica sees it. N
//!   replicas then enforce one daily budget, with the rule one replica has: the call that crosses
//!   the budget completes, the next one is refused.
//! - `<prefix>:inflight:{project:<project>}`: for a project with its own `max_in_flight`, its
//!   calls in flight, a sorted set of leases (`<replica>:<n>`) scored by their expiry. Taking a
//!   slot is one script (drop expired leases, count, add) that Redis runs atomically, so N
//!   replicas admit at most `max_in_flight` calls together. A lease is given back when its call ends (its stream included); the lease of a
//!   replica that died expires after the longest a call may take (`total_timeout_ms`, plus a
//!   margin), so a crash cannot keep a slot for good.
//!
//! The link is the breakers' ([`Breakers::shared_redis`]): one connection and one outage state
//! for everything shared. While Redis is away every replica falls back to its own ledger and
//! counters (a project can then spend its budget and fill its bulkhead at each replica), and the
//! charges made meanwhile are added to the shared ledger with the next charge once Redis is back.
//! Every Redis call is bounded by [`crate::breaker::REDIS_CALL_TIMEOUT`]; a failure marks the link down rather
//! than failing the request. A project without a budget costs no budget round trip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use redis::Script;

use super::budget::DAY_MS;
use crate::breaker::{BackendError, Breakers, RedisBackend, bounded};

/// Takes a slot: KEYS[1] the lease set; ARGV now, expiry, limit, member, key TTL (ms).
static ENTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
",
    )
});

/// How long after the longest call a dead replica's lease still holds its slot.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The shared half of budgets and bulkheads.
#[derive(Debug)]
pub struct Shared {
    breakers: Breakers,
    /// This process among the replicas (lease names).
    replica: String,
    next_lease: AtomicU64,
    lease: Duration,
    /// Charges Redis has not taken yet (it was away), by (day, project).
    unsynced: Mutex<HashMap<(u64, String), f64>>,
}

/// A slot of a shared bulkhead; dropping it gives the slot back (in the background, on the
/// runtime it is dropped on; without one, the lease expires).
#[derive(Debug)]
#[must_use = "the slot is given back as soon as the lease is dropped"]
pub struct Lease {
    breakers: Breakers,
    key: String,
    member: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (breakers, key, member) =
            (self.breakers.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.member));
        runtime.spawn(async move {
            let Some((generation, backend)) = breakers.shared_redis() else { return };
            let mut conn = backend.connection();
            let call = async {
                let _: i64 = redis::cmd("ZREM").arg(&key).arg(&member).query_async(&mut conn).await?;
                Ok::<_, BackendError>(())
            };
            if let Err(e) = bounded(call).await {
                breakers.shared_redis_failed(generation, &e);
            }
        });
    }
}

/// What a shared bulkhead said.
#[derive(Debug)]
pub enum Entry {
    /// Admitted: hold the lease for the call.
    Admitted(Lease),
    /// All `limit` slots are taken across the replicas.
    Full,
    /// Redis is not in use (not configured, or away): the caller counts locally.
    Local,
}

impl Shared {
    /// `longest_call` bounds how long a lease may outlive a replica that died with it.
    pub fn new(breakers: Breakers, longest_call: Duration) -> Shared {
        Shared {
            breakers,
            replica: uuid::Uuid::new_v4().simple().to_string(),
            next_lease: AtomicU64::new(0),
            lease: longest_call + LEASE_MARGIN,
            unsynced: Mutex::new(HashMap::new()),
        }
    }

    /// USD `project` spent on `day` across the replicas; `None` when Redis is not in use (the
    /// caller reads its own ledger).
    pub async fn spent(&self, project: &str, day: u64) -> Option<f64> {
        let (generation, backend) = self.breakers.shared_redis()?;
        let mut conn = backend.connection();
        let key = budget_key(&backend, day, project);
        let call = async {
            let v: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            Ok::<_, BackendError>(v)
        };
        match bounded(call).await {
            Ok(v) => Some(v.and_then(|s| s.parse::<f64>().ok()).filter(|x| x.is_finite()).unwrap_or(0.0)),
            Err(e) => {
                self.breakers.shared_redis_failed(generation, &e);
                None
            }
        }
    }

    /// Adds `usd` to `project`'s spend on `day` in Redis, with what earlier charges could not
    /// write; kept for later when Redis is away. Nothing to do without Redis configured, or for
    /// an amount that is not finite and positive (see [`super::Budgets::charge`]).
    pub async fn charge(&self, project: &str, usd: f64, day: u64) {
        if !(usd.is_finite() && usd > 0.0 && self.breakers.redis_status().configured) {
            return;
        }
        let link = self.breakers.shared_redis();
        let mut pending: Vec<((u64, String), f64)> = {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
            *unsynced.entry((day, project.to_owned())).or_insert(0.0) += usd;
            // charges of days that are over no longer decide anything
            unsynced.retain(|(d, _), _| d + 1 >= day);
            if link.is_none() {
                return;
            }
            unsynced.drain().collect()
        };
        let Some((generation, backend)) = link else { return };
        let mut conn = backend.connection();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for ((d, p), usd) in &pending {
            let key = budget_key(&backend, *d, p);
            pipe.cmd("INCRBYFLOAT").arg(&key).arg(usd.to_string()).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(2 * DAY_MS).ignore();
        }
        let call = async {
            let () = pipe.query_async(&mut conn).await?;
            Ok::<_, BackendError>(())
        };
        if let Err(e) = bounded(call).await {
            // not known to be written: kept (a timeout after Redis applied it counts it twice,
            // which errs on the side of the budget)
            self.breakers.shared_redis_failed(generation, &e);
            self.keep(std::mem::take(&mut pending));
        }
    }

    fn keep(&self, pending: Vec<((u64, String), f64)>) {
        let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        for (k, usd) in pending {
            *unsynced.entry(k).or_insert(0.0) += usd;
        }
    }

    /// One of `limit` slots of `key` (e.g. `project:x`) across the replicas.
    pub async fn try_enter(&self, key: &str, limit: u32) -> Entry {
        let Some((generation, backend)) = self.breakers.shared_redis() else { return Entry::Local };
        let now = helix_core::time::now_ms().max(0);
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4);
        let set = format!("{}:inflight:{{{key}}}", backend.prefix());
        let member = format!("{}:{}", self.replica, self.next_lease.fetch_add(1, Ordering::Relaxed));
        let mut conn = backend.connection();
        let call = async {
            let admitted: i64 = ENTER
                .key(&set)
                .arg(now)
                .arg(now.saturating_add(lease_ms))
                .arg(limit)
                .arg(&member)
                .arg(lease_ms.saturating_mul(2))
                .invoke_async(&mut conn)
                .await?;
            Ok::<_, BackendError>(admitted)
        };
        match bounded(call).await {
            Ok(1) => Entry::Admitted(Lease { breakers: self.breakers.clone(), key: set, member }),
            Ok(_) => Entry::Full,
            Err(e) => {
                self.breakers.shared_redis_failed(generation, &e);
                Entry::Local
            }
        }
    }
}

fn budget_key(backend: &RedisBackend, day: u64, project: &str) -> String {
    format!("{}:budget:{day}:{{{project}}}", backend.prefix())
}
