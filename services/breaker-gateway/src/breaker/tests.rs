//! The state machine in process memory, driven through the facade with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;

const T0: u64 = 1_700_000_000_000;
const ID: &str = "deployment-a";

fn ok() -> Outcome {
    Outcome { failure: false, duration: Duration::from_millis(100) }
}

fn fail() -> Outcome {
    Outcome { failure: true, duration: Duration::from_millis(100) }
}

fn settings() -> BreakerSettings {
    BreakerSettings {
        window: WindowKind::Count(10),
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 100.0,
        slow_call_duration: Duration::from_secs(2),
        minimum_calls: 5,
        open_duration: Duration::from_secs(10),
        max_open_duration: Duration::from_secs(35),
        half_open_probes: 3,
        probe_lease: None,
        probe_wait: None,
    }
}

fn breakers(s: BreakerSettings) -> (Breakers, ManualClock) {
    let clock = ManualClock::new(T0);
    let b =
        Breakers::with_clock(vec![(ID.to_string(), s)], None, "test".to_string(), Arc::new(clock.clone()));
    (b, clock)
}

/// Acquires and, if admitted, records `outcome`; returns the admission.
async fn call(b: &Breakers, outcome: Outcome) -> Admission {
    let admission = b.acquire(ID).await;
    if let Admission::Allowed { probe } = admission {
        b.record(ID, probe, outcome).await;
    }
    admission
}

async fn snap(b: &Breakers) -> Snapshot {
    b.snapshot(ID).await.expect("known id")
}

async fn state(b: &Breakers) -> State {
    snap(b).await.state
}

/// Trips a breaker with settings() through five failures.
async fn trip(b: &Breakers) {
    for _ in 0..5 {
        call(b, fail()).await;
    }
    assert_eq!(state(b).await, State::Open);
}

/// Acquires until `n` probes are out (after the open period has elapsed).
async fn take_probes(b: &Breakers, n: usize) {
    for i in 0..n {
        assert_eq!(b.acquire(ID).await, Admission::Allowed { probe: true }, "probe {i}");
    }
}

#[tokio::test]
async fn no_trip_before_minimum_calls() {
    let (b, _) = breakers(settings());
    for _ in 0..4 {
        assert!(call(&b, fail()).await.is_allowed());
    }
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.failures, s.failure_rate), (State::Closed, 4, 4, 100.0));
    call(&b, fail()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.consecutive_trips), (State::Open, 1));
    assert!(!b.acquire(ID).await.is_allowed());
}

#[tokio::test]
async fn trips_at_the_threshold_not_below_it() {
    let (b, _) = breakers(BreakerSettings { minimum_calls: 10, ..settings() });
    for _ in 0..6 {
        call(&b, ok()).await;
    }
    for _ in 0..4 {
        call(&b, fail()).await;
    }
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.failures, s.failure_rate), (State::Closed, 10, 4, 40.0));
    // The oldest success slides out: 5 of 10 failed, exactly the threshold.
    call(&b, fail()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.failures), (State::Open, 10, 5));
}

#[tokio::test]
async fn minimum_calls_is_capped_at_a_count_window_size() {
    let (b, _) = breakers(BreakerSettings { window: WindowKind::Count(3), minimum_calls: 10, ..settings() });
    for _ in 0..3 {
        call(&b, fail()).await;
    }
    assert_eq!(state(&b).await, State::Open);
}

#[tokio::test]
async fn slow_calls_trip_on_the_slow_call_rate() {
    let (b, _) = breakers(BreakerSettings { slow_call_rate_threshold: 60.0, ..settings() });
    let slow = Outcome { failure: false, duration: Duration::from_secs(2) };
    let almost = Outcome { failure: false, duration: Duration::from_millis(1999) };
    for _ in 0..2 {
        call(&b, almost).await;
    }
    for _ in 0..2 {
        call(&b, slow).await;
    }
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.slow_calls, s.failures), (State::Closed, 4, 2, 0));
    call(&b, slow).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.slow_calls, s.slow_call_rate), (State::Open, 3, 60.0));
}

#[tokio::test]
async fn a_zero_rate_never_trips_even_with_a_zero_threshold() {
    let (b, _) = breakers(BreakerSettings { failure_rate_threshold: 0.0, ..settings() });
    for _ in 0..10 {
        call(&b, ok()).await;
    }
    assert_eq!(state(&b).await, State::Closed);
    call(&b, fail()).await;
    assert_eq!(state(&b).await, State::Open);
}

#[tokio::test]
async fn the_count_window_keeps_only_the_last_n_calls() {
    let s = BreakerSettings {
        window: WindowKind::Count(4),
        minimum_calls: 4,
        failure_rate_threshold: 75.0,
        ..settings()
    };
    let (b, _) = breakers(s);
    call(&b, fail()).await;
    call(&b, fail()).await;
    for _ in 0..4 {
        call(&b, ok()).await;
    }
    // Two failures ever more than the window shows: they slid out.
    call(&b, fail()).await;
    call(&b, fail()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.failures), (State::Closed, 4, 2));
    call(&b, fail()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.failures), (State::Open, 4, 3));
}

#[tokio::test]
async fn the_time_window_keeps_only_the_last_n_seconds() {
    let s =
        BreakerSettings { window: WindowKind::Time(Duration::from_secs(10)), minimum_calls: 3, ..settings() };
    let (b, clock) = breakers(s);
    call(&b, fail()).await;
    call(&b, fail()).await;
    clock.advance(Duration::from_millis(9_999));
    // Still second T0+9: both failures are in the window of seconds T0 .. T0+9.
    assert_eq!(snap(&b).await.calls, 2);
    clock.advance(Duration::from_millis(1));
    // Second T0+10: the failures of second T0 slid out.
    let s = snap(&b).await;
    assert_eq!((s.calls, s.failures), (0, 0));
    call(&b, ok()).await;
    call(&b, ok()).await;
    call(&b, fail()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.failures), (State::Closed, 3, 1));
    call(&b, fail()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.failures), (State::Open, 4, 2));
}

#[tokio::test]
async fn open_time_doubles_per_consecutive_trip_up_to_the_cap() {
    let (b, clock) = breakers(settings());
    trip(&b).await;
    let mut expected_open = Vec::new();
    for _ in 0..4 {
        let s = snap(&b).await;
        let open_for = s.next_half_open_unix_ms.expect("open") - clock.now_ms();
        expected_open.push((s.consecutive_trips, open_for));
        assert_eq!(b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_millis(open_for) });
        clock.advance(Duration::from_millis(open_for - 1));
        assert!(!b.acquire(ID).await.is_allowed(), "one millisecond early");
        clock.advance(Duration::from_millis(1));
        take_probes(&b, 3).await;
        for _ in 0..3 {
            b.record(ID, true, fail()).await;
        }
    }
    assert_eq!(expected_open, vec![(1, 10_000), (2, 20_000), (3, 35_000), (4, 35_000)]);
}

#[tokio::test]
async fn half_open_admits_exactly_the_configured_probes() {
    let (b, clock) = breakers(settings());
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    // All three out: the next admission waits for the oldest lease (60 s by default).
    assert_eq!(b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(60) });
    clock.advance(Duration::from_secs(1));
    assert_eq!(b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(59) });
    let s = snap(&b).await;
    assert_eq!((s.state, s.probes_admitted, s.calls), (State::HalfOpen, 3, 0));
    // A completed probe does not free a slot: the episode has exactly three.
    b.record(ID, true, ok()).await;
    assert!(!b.acquire(ID).await.is_allowed());
    assert_eq!(snap(&b).await.calls, 1);
}

#[tokio::test]
async fn successful_probes_close_the_breaker_and_forget_the_past() {
    let (b, clock) = breakers(settings());
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    b.record(ID, true, ok()).await;
    b.record(ID, true, ok()).await;
    assert_eq!(state(&b).await, State::HalfOpen);
    b.record(ID, true, ok()).await;
    let s = snap(&b).await;
    assert_eq!(
        (s.state, s.calls, s.consecutive_trips, s.next_half_open_unix_ms),
        (State::Closed, 0, 0, None)
    );
    assert_eq!(b.acquire(ID).await, Admission::Allowed { probe: false });
    // The next trip needs minimum_calls again and opens for the base duration.
    for _ in 0..4 {
        call(&b, fail()).await;
    }
    assert_eq!(state(&b).await, State::Closed);
    call(&b, fail()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.consecutive_trips), (State::Open, 1));
    assert_eq!(s.next_half_open_unix_ms, Some(clock.now_ms() + 10_000));
}

#[tokio::test]
async fn a_minority_of_failed_probes_still_closes() {
    let (b, clock) = breakers(settings());
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    b.record(ID, true, fail()).await;
    b.record(ID, true, ok()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.failures), (State::HalfOpen, 2, 1));
    b.record(ID, true, ok()).await;
    assert_eq!(state(&b).await, State::Closed);
}

#[tokio::test]
async fn failing_probes_reopen_as_soon_as_the_verdict_is_certain() {
    let (b, clock) = breakers(settings());
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    b.record(ID, true, fail()).await;
    assert_eq!(state(&b).await, State::HalfOpen, "1 of 3 is below 50%");
    b.record(ID, true, fail()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.consecutive_trips), (State::Open, 2), "2 of 3 reach 50% whatever the third does");
    assert_eq!(s.next_half_open_unix_ms, Some(clock.now_ms() + 20_000));
    // The third probe's late success belongs to a finished episode.
    b.record(ID, true, ok()).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.consecutive_trips), (State::Open, 2));
}

#[tokio::test]
async fn slow_probes_reopen() {
    let (b, clock) = breakers(BreakerSettings { slow_call_rate_threshold: 50.0, ..settings() });
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    let slow = Outcome { failure: false, duration: Duration::from_secs(3) };
    b.record(ID, true, slow).await;
    b.record(ID, true, slow).await;
    assert_eq!(state(&b).await, State::Open);
}

#[tokio::test]
async fn an_unreported_probe_expires_as_a_failure() {
    let (b, clock) = breakers(settings());
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    b.record(ID, true, ok()).await;
    // Two callers crashed. Their leases (max(2 s, 60 s)) run out; looking changes nothing...
    clock.advance(Duration::from_secs(60));
    assert_eq!(state(&b).await, State::HalfOpen);
    // ...the next acquire settles them: 2 of 3 failed, open again for twice as long.
    assert_eq!(b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(20) });
    let s = snap(&b).await;
    assert_eq!((s.state, s.consecutive_trips), (State::Open, 2));
    // A report arriving after its lease expired is ignored.
    b.record(ID, true, ok()).await;
    assert_eq!(snap(&b).await.consecutive_trips, 2);
}

#[tokio::test]
async fn one_expired_lease_among_good_probes_still_closes() {
    let (b, clock) = breakers(BreakerSettings { probe_lease: Some(Duration::from_secs(5)), ..settings() });
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    clock.advance(Duration::from_millis(4_999));
    b.record(ID, true, ok()).await;
    b.record(ID, true, ok()).await;
    assert_eq!(state(&b).await, State::HalfOpen);
    clock.advance(Duration::from_millis(1));
    b.record(ID, false, ok()).await;
    assert_eq!(state(&b).await, State::Closed, "1 expired of 3 is below 50%");
}

#[tokio::test]
async fn forced_open_rejects_until_reset() {
    let (b, clock) = breakers(settings());
    let s = b.command(ID, Command::ForceOpen).await.expect("known id");
    assert_eq!(s.state, State::ForcedOpen);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(10) });
    b.record(ID, false, fail()).await;
    assert_eq!(snap(&b).await.calls, 0);
    let s = b.command(ID, Command::Reset).await.expect("known id");
    assert_eq!(s.state, State::Closed);
    assert_eq!(b.acquire(ID).await, Admission::Allowed { probe: false });
}

#[tokio::test]
async fn disabled_admits_everything_and_records_nothing() {
    let (b, _) = breakers(settings());
    trip(&b).await;
    b.command(ID, Command::Disable).await;
    for _ in 0..20 {
        assert_eq!(call(&b, fail()).await, Admission::Allowed { probe: false });
    }
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls), (State::Disabled, 5), "the window is as it was when disabled");
    b.command(ID, Command::Reset).await;
    let s = snap(&b).await;
    assert_eq!((s.state, s.calls, s.consecutive_trips), (State::Closed, 0, 0));
}

#[tokio::test]
async fn reset_closes_an_open_breaker_and_clears_its_history() {
    let (b, _) = breakers(settings());
    trip(&b).await;
    let s = b.command(ID, Command::Reset).await.expect("known id");
    assert_eq!(
        (s.state, s.calls, s.consecutive_trips, s.next_half_open_unix_ms),
        (State::Closed, 0, 0, None)
    );
    for _ in 0..4 {
        call(&b, fail()).await;
    }
    assert_eq!(state(&b).await, State::Closed);
}

#[tokio::test]
async fn outcomes_of_calls_admitted_before_a_trip_are_ignored() {
    let (b, clock) = breakers(settings());
    let late: Vec<Admission> = futures_util::future::join_all((0..3).map(|_| b.acquire(ID))).await;
    assert!(late.iter().all(|a| *a == Admission::Allowed { probe: false }));
    trip(&b).await;
    for _ in 0..3 {
        b.record(ID, false, ok()).await;
    }
    assert_eq!(snap(&b).await.calls, 5);
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 1).await;
    b.record(ID, false, ok()).await;
    assert_eq!(snap(&b).await.calls, 0, "non-probe outcomes are not probe results");
}

#[tokio::test]
async fn transitions_are_broadcast_with_reasons() {
    let (b, clock) = breakers(settings());
    let mut rx = b.subscribe();
    trip(&b).await;
    let t = rx.try_recv().expect("trip");
    assert_eq!((t.id.as_str(), t.from, t.to, t.at_unix_ms), (ID, State::Closed, State::Open, T0));
    assert!(t.reason.starts_with("failure rate 100.0% >= 50.0% over 5 calls"), "{}", t.reason);
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    let t = rx.try_recv().expect("half-open");
    assert_eq!((t.from, t.to, t.at_unix_ms), (State::Open, State::HalfOpen, T0 + 10_000));
    for _ in 0..3 {
        b.record(ID, true, ok()).await;
    }
    let t = rx.try_recv().expect("close");
    assert_eq!((t.from, t.to, t.reason.as_str()), (State::HalfOpen, State::Closed, "probes succeeded"));
    b.command(ID, Command::Reset).await;
    assert!(rx.try_recv().is_err(), "a reset of a closed breaker changes no state");
}

#[tokio::test]
async fn unknown_ids_are_admitted_and_not_tracked() {
    let (b, _) = breakers(settings());
    assert_eq!(b.acquire("nope").await, Admission::Allowed { probe: false });
    b.record("nope", false, fail()).await;
    assert_eq!(b.snapshot("nope").await, None);
    assert_eq!(b.command("nope", Command::ForceOpen).await, None);
    let all = b.snapshots().await;
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].id.as_str(), all[0].shared), (ID, false));
}

#[tokio::test]
async fn zero_probes_means_one() {
    let (b, clock) = breakers(BreakerSettings { half_open_probes: 0, ..settings() });
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 1).await;
    assert!(!b.acquire(ID).await.is_allowed());
    b.record(ID, true, ok()).await;
    assert_eq!(state(&b).await, State::Closed);
}

#[tokio::test]
async fn without_redis_the_status_says_so() {
    let (b, _) = breakers(settings());
    assert_eq!(b.redis_status(), RedisStatus { configured: false, connected: false, last_error: None });
    assert!(!b.wait_connected(Duration::from_millis(50)).await);
}

#[tokio::test]
async fn an_invalid_redis_url_is_reported_without_its_password() {
    let b = Breakers::new(
        vec![(ID.to_string(), settings())],
        Some("redis://admin:pw-s3cret@[::1".to_string()),
        "t".to_string(),
    );
    let status = b.redis_status();
    assert!(status.configured && !status.connected);
    let error = status.last_error.expect("parse error kept");
    assert!(error.starts_with("invalid redis url"), "{error}");
    assert!(!error.contains("pw-s3cret") && !format!("{b:?}").contains("pw-s3cret"), "{error} / {b:?}");
    for _ in 0..5 {
        call(&b, fail()).await;
    }
    let s = snap(&b).await;
    assert_eq!((s.state, s.shared), (State::Open, false));
}

#[test]
fn open_time_arithmetic_saturates() {
    let s = settings();
    assert_eq!(s.open_ms_for(0), 10_000);
    assert_eq!(s.open_ms_for(1), 10_000);
    assert_eq!(s.open_ms_for(2), 20_000);
    assert_eq!(s.open_ms_for(u32::MAX), 35_000);
    let inverted = BreakerSettings { max_open_duration: Duration::from_secs(1), ..settings() };
    assert_eq!(inverted.open_ms_for(3), 10_000, "a cap below the base is the base");
}

#[test]
fn snapshots_serialize_states_in_snake_case() {
    let view = View {
        state: State::HalfOpen,
        calls: 2,
        failures: 1,
        slow_calls: 0,
        consecutive_trips: 1,
        open_until_ms: None,
        probes_admitted: 2,
    };
    let json = serde_json::to_value(view.snapshot("d", true)).expect("serializes");
    assert_eq!(json["state"], "half_open");
    assert_eq!(json["failure_rate"], 50.0);
    assert_eq!(json["next_half_open_unix_ms"], serde_json::Value::Null);
    for st in [State::Closed, State::Open, State::HalfOpen, State::ForcedOpen, State::Disabled] {
        assert_eq!(serde_json::to_value(st).expect("serializes"), st.as_str());
        assert_eq!(State::parse(st.as_str()), Some(st));
    }
}

#[tokio::test]
async fn a_caller_waiting_on_probes_is_told_to_look_again_within_the_probe_wait() {
    let s = BreakerSettings {
        probe_lease: Some(Duration::from_secs(600)),
        probe_wait: Some(Duration::from_secs(5)),
        ..settings()
    };
    let (b, clock) = breakers(s);
    trip(&b).await;
    clock.advance(Duration::from_secs(10));
    take_probes(&b, 3).await;
    assert_eq!(b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(5) });
    // while open, the open period says when (not capped)
    let (b, _) = breakers(BreakerSettings { open_duration: Duration::from_secs(30), ..s_open() });
    trip(&b).await;
    assert_eq!(b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(30) });
}

fn s_open() -> BreakerSettings {
    BreakerSettings { probe_wait: Some(Duration::from_secs(5)), ..settings() }
}
