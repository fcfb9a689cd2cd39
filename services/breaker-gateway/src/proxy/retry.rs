//! How far a call may go beyond its first attempt: the retry budget shared by retries and
//! fallbacks, and how long to wait before a retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use helix_core::gateway_config::BreakerGatewayConfig;

use super::Failure;

/// Extra upstream attempts (retries and fallbacks) always allowed at once, whatever the budget.
pub const MIN_RETRY_CONCURRENCY: u32 = 3;

/// Retries and fallbacks may add at most `share` of the traffic: every call earns `share`
/// tokens, an extra attempt spends one (bounded, so a quiet period cannot save up for a storm);
/// beyond the tokens, up to [`MIN_RETRY_CONCURRENCY`] extra attempts may run at once.
#[derive(Debug)]
pub(super) struct RetryBudget {
    share: f64,
    /// Tokens × 1000.
    milli: AtomicU64,
    /// Extra attempts admitted by the floor and still running.
    floor_in_use: Arc<AtomicU32>,
}

/// An extra attempt admitted by the floor: frees its place when dropped.
pub(super) struct FloorSlot(Arc<AtomicU32>);

impl Drop for FloorSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RetryBudget {
    const CAP_MILLI: u64 = 10_000;

    pub(super) fn new(share: f64) -> RetryBudget {
        RetryBudget {
            share,
            milli: AtomicU64::new(RetryBudget::CAP_MILLI / 2),
            floor_in_use: Arc::new(AtomicU32::new(0)),
        }
    }

    /// May one more upstream attempt be made? A token, or else a place of the floor (held by
    /// the returned slot while the attempt runs).
    pub(super) fn admit(&self) -> Option<Option<FloorSlot>> {
        if self.spend() {
            return Some(None);
        }
        self.floor_in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MIN_RETRY_CONCURRENCY).then_some(n + 1)
            })
            .ok()
            .map(|_| Some(FloorSlot(self.floor_in_use.clone())))
    }

    pub(super) fn earn(&self) {
        let add = (self.share * 1000.0) as u64;
        let _ = self
            .milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some((v + add).min(Self::CAP_MILLI)));
    }

    pub(super) fn spend(&self) -> bool {
        self.milli.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1000)).is_ok()
    }
}

/// How long to wait before retrying: the upstream's own hint when it gave one
/// (`retry-after-ms`, `retry-after`, `x-ratelimit-reset-*`), else exponential backoff with full
/// jitter.
/// How long the upstream asked to wait (`retry-after-ms`, `retry-after` in seconds, OpenAI's
/// reset hints), if it said.
pub(super) fn upstream_retry_after(f: &Failure) -> Option<Duration> {
    let Failure::Status(_, headers, _) = f else { return None };
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_millis(ms.max(0.0) as u64));
    }
    if let Some(s) = get("retry-after").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_millis((s.max(0.0) * 1000.0) as u64));
    }
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .into_iter()
        .find_map(|name| get(name).and_then(|v| parse_reset(&v)))
}

/// The wait before retrying the same deployment: the upstream's hint when it gave one, else
/// exponential backoff with full jitter. `None` when the hint is longer than
/// `retry_max_backoff_ms`: then the deployment is not waited for.
pub(super) fn retry_wait(f: &Failure, attempt: u32, cfg: &BreakerGatewayConfig) -> Option<Duration> {
    let cap = Duration::from_millis(cfg.retry_max_backoff_ms);
    if let Some(hint) = upstream_retry_after(f) {
        return (hint <= cap).then_some(hint);
    }
    let base = cfg.retry_base_backoff_ms.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let ceiling = base.min(cfg.retry_max_backoff_ms).max(1);
    Some(Duration::from_millis(jitter(ceiling)))
}

/// OpenAI's reset hints look like `1s`, `6m0s`, `120ms`.
pub(super) fn parse_reset(v: &str) -> Option<Duration> {
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|m| Duration::from_millis(m as u64));
    }
    let mut total = 0.0;
    let mut num = String::new();
    for c in v.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'h' | 'm' | 's' => {
                let n: f64 = num.parse().ok()?;
                num.clear();
                total += n * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
            }
            _ => return None,
        }
    }
    num.is_empty().then(|| Duration::from_millis((total * 1000.0) as u64))
}

/// A uniformly random number of milliseconds in `[0, ceiling]` (full jitter).
pub(super) fn jitter(ceiling: u64) -> u64 {
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    r % (ceiling + 1)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn reset_hints_parse() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("120ms"), Some(Duration::from_millis(120)));
        assert_eq!(parse_reset("soon"), None);
    }

    #[test]
    fn retry_waits_honour_hints_then_back_off_with_jitter() {
        let cfg = BreakerGatewayConfig::default();
        let status = |h: &[(&str, &str)]| {
            Failure::Status(
                429,
                h.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                Bytes::new(),
            )
        };
        assert_eq!(
            retry_wait(&status(&[("retry-after-ms", "250")]), 1, &cfg),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_wait(&status(&[("retry-after", "2")]), 1, &cfg), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_wait(&status(&[("retry-after", "3600")]), 1, &cfg),
            None,
            "longer than the backoff cap: not waited for"
        );
        for attempt in 1..6 {
            let w = retry_wait(&Failure::Transport(String::new()), attempt, &cfg).expect("backoff");
            assert!(w <= Duration::from_millis(200 << (attempt - 1)), "{w:?}");
        }
    }

    #[test]
    fn the_retry_budget_caps_retries_at_a_share_of_traffic() {
        let b = RetryBudget { milli: AtomicU64::new(0), ..RetryBudget::new(0.2) };
        let mut retries = 0;
        for _ in 0..100 {
            b.earn();
            if b.spend() {
                retries += 1;
            }
        }
        assert_eq!(retries, 20);
        // beyond the tokens, the floor: MIN_RETRY_CONCURRENCY at once, freed when they end
        let slots: Vec<_> = (0..MIN_RETRY_CONCURRENCY).map(|_| b.admit().expect("floor")).collect();
        assert!(slots.iter().all(Option::is_some), "no token left: floor places");
        assert!(b.admit().is_none(), "the floor is full");
        drop(slots);
        assert!(b.admit().is_some(), "a place came free");
    }
}
