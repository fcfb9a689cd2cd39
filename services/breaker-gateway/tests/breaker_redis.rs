//! Breakers shared through a real Redis: two `Breakers` are two gateway replicas. Time is a shared
//! manual clock (both replicas read the same instant), so no test sleeps through an open period.

mod support;

use std::sync::Arc;
use std::time::Duration;

use helix_breaker_gateway::breaker::{
    Admission, BreakerBackend, BreakerSettings, Breakers, Clock, Command, ManualClock, MemoryBackend,
    Outcome, RedisBackend, State, Step, Transition, WindowKind,
};
use support::{RedisServer, TestRedis, free_port, test_redis};
use tokio::sync::broadcast;

const T0: u64 = 1_700_000_000_000;
const ID: &str = "deployment-a";
/// "Does not hang": far above the 250 ms bound of a Redis call, far below a stalled request.
const PROMPT: Duration = Duration::from_secs(30);

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

/// Two replicas on one Redis under a key prefix of their own; deletes its keys when dropped.
struct Replicas {
    a: Breakers,
    b: Breakers,
    clock: ManualClock,
    prefix: String,
    url: String,
    _redis: Option<TestRedis>,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        if support::ping(&self.url) {
            support::delete_keys(&self.url, &self.prefix);
        }
    }
}

fn prefix() -> String {
    format!("helix-test:{}", uuid::Uuid::new_v4())
}

fn replica(url: &str, prefix: &str, clock: &ManualClock, s: BreakerSettings) -> Breakers {
    Breakers::with_clock(
        vec![(ID.to_string(), s)],
        Some(url.to_string()),
        prefix.to_string(),
        Arc::new(clock.clone()),
    )
}

async fn replicas_on(url: String, redis: Option<TestRedis>, s: BreakerSettings) -> Replicas {
    let clock = ManualClock::new(T0);
    let prefix = prefix();
    let a = replica(&url, &prefix, &clock, s.clone());
    let b = replica(&url, &prefix, &clock, s);
    assert!(a.wait_connected(Duration::from_secs(5)).await, "replica a: {:?}", a.redis_status());
    assert!(b.wait_connected(Duration::from_secs(5)).await, "replica b: {:?}", b.redis_status());
    Replicas { a, b, clock, prefix, url, _redis: redis }
}

async fn replicas(s: BreakerSettings) -> Replicas {
    let redis = test_redis();
    replicas_on(redis.url.clone(), Some(redis), s).await
}

async fn call(b: &Breakers, outcome: Outcome) -> Admission {
    let admission = b.acquire(ID).await;
    if let Admission::Allowed { probe } = admission {
        b.record(ID, probe, outcome).await;
    }
    admission
}

async fn state(b: &Breakers) -> State {
    b.snapshot(ID).await.expect("known id").state
}

fn drain(rx: &mut broadcast::Receiver<Transition>) -> Vec<(State, State)> {
    std::iter::from_fn(|| rx.try_recv().ok()).map(|t| (t.from, t.to)).collect()
}

/// Runs `f` and fails the test if it hangs (every Redis call is bounded at 250 ms, so a call that
/// waits out a dead Redis would take far longer than [`PROMPT`]; how long it takes on a busy
/// machine belongs in benchmarks).
async fn promptly<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PROMPT, f).await.unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn failures_recorded_through_one_replica_trip_the_other() {
    let r = replicas(settings()).await;
    let (mut events_a, mut events_b) = (r.a.subscribe(), r.b.subscribe());
    // The window is shared: four failures from two replicas are four calls.
    for replica in [&r.a, &r.b, &r.a, &r.b] {
        call(replica, fail()).await;
    }
    let s = r.b.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.calls, s.failures, s.shared), (State::Closed, 4, 4, true));
    call(&r.a, fail()).await;
    assert_eq!(r.b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(10) });
    let s = r.b.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.consecutive_trips, s.shared), (State::Open, 1, true));
    assert_eq!(s.next_half_open_unix_ms, Some(T0 + 10_000));
    // The replica whose call tripped the breaker announces it; the other only observes it.
    assert_eq!(drain(&mut events_a), vec![(State::Closed, State::Open)]);
    assert_eq!(drain(&mut events_b), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_configured_probes_are_admitted_cluster_wide() {
    let r = replicas(settings()).await;
    let (mut events_a, mut events_b) = (r.a.subscribe(), r.b.subscribe());
    for _ in 0..5 {
        call(&r.a, fail()).await;
    }
    // Three rounds of failing probes (open 10 s, 20 s, 35 s capped), then a round that closes.
    for (round, open_ms) in [10_000u64, 20_000, 35_000, 35_000].into_iter().enumerate() {
        let s = r.a.snapshot(ID).await.expect("known id");
        assert_eq!(s.next_half_open_unix_ms, Some(r.clock.now_ms() + open_ms), "round {round}");
        r.clock.advance(Duration::from_millis(open_ms));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let replica = if i % 2 == 0 { r.a.clone() } else { r.b.clone() };
                tokio::spawn(async move { replica.acquire(ID).await })
            })
            .collect();
        let mut probes = 0;
        for task in tasks {
            match task.await.expect("acquire task") {
                Admission::Allowed { probe: true } => probes += 1,
                Admission::Allowed { probe: false } => panic!("round {round}: a plain call was admitted"),
                Admission::Rejected { .. } => {}
            }
        }
        assert_eq!(probes, 3, "round {round}: probes admitted across both replicas");
        for replica in [&r.a, &r.b] {
            let s = replica.snapshot(ID).await.expect("known id");
            assert_eq!((s.state, s.probes_admitted, s.shared), (State::HalfOpen, 3, true), "round {round}");
        }
        let mut announced = drain(&mut events_a);
        announced.extend(drain(&mut events_b));
        let half_opened = announced.iter().filter(|t| **t == (State::Open, State::HalfOpen)).count();
        assert_eq!(half_opened, 1, "round {round}: one replica moved the breaker to half-open");
        let outcome = if round < 3 { fail() } else { ok() };
        r.a.record(ID, true, outcome).await;
        r.b.record(ID, true, outcome).await;
        r.a.record(ID, true, outcome).await;
    }
    for replica in [&r.a, &r.b] {
        let s = replica.snapshot(ID).await.expect("known id");
        assert_eq!((s.state, s.consecutive_trips, s.calls), (State::Closed, 0, 0));
    }
}

#[tokio::test]
async fn operator_commands_through_one_replica_are_seen_by_the_other() {
    let r = replicas(settings()).await;
    for _ in 0..5 {
        call(&r.a, fail()).await;
    }
    let s = r.b.command(ID, Command::Reset).await.expect("known id");
    assert_eq!((s.state, s.calls, s.consecutive_trips, s.shared), (State::Closed, 0, 0, true));
    assert_eq!(r.a.acquire(ID).await, Admission::Allowed { probe: false });
    assert_eq!(state(&r.a).await, State::Closed);

    r.a.command(ID, Command::ForceOpen).await;
    r.clock.advance(Duration::from_secs(3600));
    assert_eq!(r.b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(10) });

    r.b.command(ID, Command::Disable).await;
    for _ in 0..10 {
        assert_eq!(call(&r.a, fail()).await, Admission::Allowed { probe: false });
    }
    let s = r.b.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.calls), (State::Disabled, 0));
}

#[tokio::test]
async fn an_unreported_probe_expires_cluster_wide() {
    let r = replicas(settings()).await;
    for _ in 0..5 {
        call(&r.a, fail()).await;
    }
    r.clock.advance(Duration::from_secs(10));
    for _ in 0..3 {
        assert_eq!(r.a.acquire(ID).await, Admission::Allowed { probe: true });
    }
    // Replica a crashes with its probes out. The leases (60 s) run out; b settles them on its
    // next acquire: three failed probes, open again for twice as long.
    assert_eq!(r.b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(60) });
    r.clock.advance(Duration::from_secs(60));
    assert_eq!(r.b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(20) });
    let s = r.b.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.consecutive_trips), (State::Open, 2));
}

#[tokio::test]
async fn the_time_window_is_shared_and_slides() {
    let s =
        BreakerSettings { window: WindowKind::Time(Duration::from_secs(10)), minimum_calls: 3, ..settings() };
    let r = replicas(s).await;
    call(&r.a, fail()).await;
    call(&r.b, fail()).await;
    assert_eq!(r.a.snapshot(ID).await.expect("known id").calls, 2);
    r.clock.advance(Duration::from_secs(10));
    assert_eq!(r.a.snapshot(ID).await.expect("known id").calls, 0);
    call(&r.a, ok()).await;
    call(&r.b, ok()).await;
    call(&r.a, fail()).await;
    assert_eq!(state(&r.b).await, State::Closed, "1 of 3: the old failures slid out");
    call(&r.b, fail()).await;
    assert_eq!(state(&r.a).await, State::Open);
}

#[tokio::test]
async fn keys_live_under_the_prefix_and_expire() {
    let r = replicas(settings()).await;
    for _ in 0..5 {
        call(&r.a, fail()).await;
    }
    r.clock.advance(Duration::from_secs(10));
    r.a.acquire(ID).await;
    let mut conn = support::connection(&r.url);
    let mut keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}*", r.prefix)).query(&mut conn).expect("keys");
    keys.sort();
    let base = format!("{}:{{{ID}}}", r.prefix);
    assert_eq!(keys, vec![format!("{base}:count"), format!("{base}:leases"), format!("{base}:state")]);
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).expect("pttl");
        assert!((23 * 3_600_000..=24 * 3_600_000).contains(&ttl), "{key} ttl {ttl}");
    }
}

/// A tiny deterministic generator, so a failing sequence can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The Lua script and the in-memory machine must agree call for call: the same pseudo-random
/// sequence goes to both and every result (admission, state, counts, transitions and their
/// reasons) is compared.
#[tokio::test]
async fn redis_and_memory_agree_call_for_call() {
    let redis = test_redis();
    let client = redis::Client::open(redis.url.as_str()).expect("redis url");
    let prefix = prefix();
    let shared = RedisBackend::connect(&client, &prefix, Duration::from_secs(2)).await.expect("connect");
    let base = BreakerSettings {
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 60.0,
        slow_call_duration: Duration::from_millis(1000),
        minimum_calls: 4,
        open_duration: Duration::from_millis(2000),
        max_open_duration: Duration::from_millis(9000),
        half_open_probes: 2,
        probe_lease: Some(Duration::from_millis(5000)),
        ..BreakerSettings::default()
    };
    let kinds = [WindowKind::Count(6), WindowKind::Time(Duration::from_secs(5))];
    let mut seen = std::collections::HashSet::new();
    for (k, window) in kinds.into_iter().enumerate() {
        let s = BreakerSettings { window, ..base.clone() };
        let id = format!("parity-{k}");
        let local = MemoryBackend::new();
        let mut rng = Lcg(42 + k as u64);
        let mut now = T0 + 123;
        let mut outstanding: Vec<bool> = Vec::new();
        for step in 0..1500 {
            now += rng.below(1500);
            let (what, a, b): (String, Step, Step) = match rng.below(100) {
                0..45 => {
                    let a = local.acquire(&id, &s, now).await.expect("memory");
                    let b = shared.acquire(&id, &s, now).await.expect("redis");
                    if let Some(Admission::Allowed { probe }) = a.admission {
                        outstanding.push(probe);
                    }
                    ("acquire".into(), a, b)
                }
                45..92 => {
                    let probe = if outstanding.is_empty() {
                        false
                    } else {
                        outstanding.swap_remove(rng.below(outstanding.len() as u64) as usize)
                    };
                    let outcome = Outcome {
                        failure: rng.below(100) < 45,
                        duration: Duration::from_millis(rng.below(1400)),
                    };
                    let a = local.record(&id, &s, probe, outcome, now).await.expect("memory");
                    let b = shared.record(&id, &s, probe, outcome, now).await.expect("redis");
                    (format!("record probe={probe} {outcome:?}"), a, b)
                }
                92..98 => {
                    let a = local.peek(&id, &s, now).await.expect("memory");
                    let b = shared.peek(&id, &s, now).await.expect("redis");
                    ("peek".into(), a, b)
                }
                r => {
                    let cmd = match (r, rng.below(2)) {
                        (98, _) => Command::ForceOpen,
                        (_, 0) => Command::Disable,
                        _ => Command::Reset,
                    };
                    let a = local.command(&id, &s, cmd, now).await.expect("memory");
                    let b = shared.command(&id, &s, cmd, now).await.expect("redis");
                    (format!("{cmd:?}"), a, b)
                }
            };
            assert_eq!(a, b, "window {window:?}, step {step} ({what}) at {now}: memory vs redis");
            for c in &a.changes {
                seen.insert((c.from, c.to));
            }
            // An operator state would stall the sequence; reset it after a few calls.
            if matches!(a.view.state, State::ForcedOpen | State::Disabled) && rng.below(5) == 0 {
                local.command(&id, &s, Command::Reset, now).await.expect("memory");
                shared.command(&id, &s, Command::Reset, now).await.expect("redis");
            }
        }
    }
    // The sequence must actually have exercised the machine.
    for t in [
        (State::Closed, State::Open),
        (State::Open, State::HalfOpen),
        (State::HalfOpen, State::Open),
        (State::HalfOpen, State::Closed),
    ] {
        assert!(seen.contains(&t), "transition {t:?} never happened; seen {seen:?}");
    }
    support::delete_keys(&redis.url, &prefix);
}

#[tokio::test]
async fn an_outage_falls_back_to_local_state_and_resynchronises() {
    let mut server = RedisServer::start(free_port());
    let r = replicas_on(server.url(), None, settings()).await;
    let mut events_a = r.a.subscribe();
    call(&r.a, fail()).await;
    call(&r.b, fail()).await;

    server.kill();
    // Replica a keeps answering from local state; its window starts empty, so five failures.
    for i in 0..5 {
        let admission = promptly(&format!("acquire {i}"), r.a.acquire(ID)).await;
        assert_eq!(admission, Admission::Allowed { probe: false });
        promptly(&format!("record {i}"), r.a.record(ID, false, fail())).await;
    }
    let status = r.a.redis_status();
    assert!(status.configured && !status.connected, "{status:?}");
    assert!(status.last_error.is_some(), "{status:?}");
    let s = promptly("snapshot", r.a.snapshot(ID)).await.expect("known id");
    assert_eq!((s.state, s.shared, s.consecutive_trips), (State::Open, false, 1));
    let tripped_until = s.next_half_open_unix_ms.expect("open");
    assert_eq!(drain(&mut events_a), vec![(State::Closed, State::Open)], "local trips are announced too");
    assert!(!promptly("acquire after trip", r.a.acquire(ID)).await.is_allowed());
    // Replica b, also cut off, has only its own (clean) local state.
    assert!(promptly("acquire on b", r.b.acquire(ID)).await.is_allowed());
    assert!(!r.b.redis_status().connected);

    // Redis comes back empty (no persistence): a pushes its trip, b then sees it.
    server.restart();
    assert!(r.a.wait_connected(Duration::from_secs(15)).await, "a: {:?}", r.a.redis_status());
    assert!(r.b.wait_connected(Duration::from_secs(15)).await, "b: {:?}", r.b.redis_status());
    let s = r.b.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.shared, s.consecutive_trips), (State::Open, true, 1));
    assert_eq!(s.next_half_open_unix_ms, Some(tripped_until));
    assert!(!r.b.acquire(ID).await.is_allowed());
    assert_eq!(drain(&mut events_a), vec![], "resynchronising announces nothing new");
    // And the shared breaker carries on: half-open and probes through both replicas.
    r.clock.advance(Duration::from_secs(10));
    assert_eq!(r.b.acquire(ID).await, Admission::Allowed { probe: true });
    let s = r.a.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.probes_admitted, s.shared), (State::HalfOpen, 1, true));
}

#[tokio::test]
async fn a_replica_keeps_the_last_shared_state_and_replays_operator_commands() {
    let mut server = RedisServer::start(free_port());
    let r = replicas_on(server.url(), None, settings()).await;
    for _ in 0..5 {
        call(&r.b, fail()).await;
    }
    // a has seen the shared trip once...
    assert!(!r.a.acquire(ID).await.is_allowed());
    server.kill();
    // ...and keeps rejecting without Redis, until the open period it saw has passed.
    assert_eq!(
        promptly("acquire", r.a.acquire(ID)).await,
        Admission::Rejected { retry_after: Duration::from_secs(10) }
    );
    assert!(!r.a.redis_status().connected);
    assert!(!promptly("acquire on b", r.b.acquire(ID)).await.is_allowed(), "b too kept the shared trip");
    r.clock.advance(Duration::from_secs(10));
    assert_eq!(promptly("local probe", r.a.acquire(ID)).await, Admission::Allowed { probe: true });
    // An operator forces the breaker open through a while Redis is down.
    let s = promptly("command", r.a.command(ID, Command::ForceOpen)).await.expect("known id");
    assert_eq!((s.state, s.shared), (State::ForcedOpen, false));

    server.restart();
    assert!(r.a.wait_connected(Duration::from_secs(15)).await, "a: {:?}", r.a.redis_status());
    assert!(r.b.wait_connected(Duration::from_secs(15)).await, "b: {:?}", r.b.redis_status());
    let s = r.b.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.shared), (State::ForcedOpen, true), "the command was replayed");
    assert_eq!(r.b.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(10) });
}

#[tokio::test]
async fn a_frozen_redis_bounds_each_call_and_is_rejoined_when_it_thaws() {
    let server = RedisServer::start(free_port());
    let r = replicas_on(server.url(), None, settings()).await;
    call(&r.a, fail()).await;
    server.signal("STOP");
    // Connections stay open but nothing answers: the first call waits out the 250 ms bound, the
    // rest go straight to local state.
    for i in 0..5 {
        promptly(&format!("call {i}"), call(&r.a, fail())).await;
    }
    assert!(!r.a.redis_status().connected);
    let s = r.a.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.shared), (State::Open, false));
    server.signal("CONT");
    assert!(r.a.wait_connected(Duration::from_secs(15)).await, "a: {:?}", r.a.redis_status());
    // b's health check may have noticed the freeze as well.
    assert!(r.b.wait_connected(Duration::from_secs(15)).await, "b: {:?}", r.b.redis_status());
    let s = r.b.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.shared), (State::Open, true));
}

#[tokio::test]
async fn an_unreachable_redis_never_blocks_and_never_leaks_its_password() {
    let port = free_port();
    let clock = ManualClock::new(T0);
    let b = Breakers::with_clock(
        vec![(ID.to_string(), settings())],
        Some(format!("redis://helix:sup3r-secret@127.0.0.1:{port}")),
        prefix(),
        Arc::new(clock),
    );
    for i in 0..5 {
        promptly(&format!("call {i}"), call(&b, fail())).await;
    }
    assert!(!b.acquire(ID).await.is_allowed());
    assert!(!b.wait_connected(Duration::from_millis(300)).await);
    let status = b.redis_status();
    let error = status.last_error.clone().expect("the connect error is kept");
    assert!(!status.connected && !error.is_empty(), "{status:?}");
    assert!(!error.contains("sup3r-secret") && !format!("{b:?}").contains("sup3r-secret"), "{error}");

    // A real server that rejects the credentials: the error names the problem, not the password.
    let redis = test_redis();
    let with_password = redis.url.replacen("redis://", "redis://helix:sup3r-secret@", 1);
    let b = Breakers::new(vec![(ID.to_string(), settings())], Some(with_password), prefix());
    assert!(!b.wait_connected(Duration::from_millis(500)).await);
    let error = b.redis_status().last_error.expect("auth error kept");
    assert!(!error.contains("sup3r-secret"), "{error}");
}

/// A call as the proxy makes it: its outcome through `report`, which may write a success late.
async fn proxied(b: &Breakers, outcome: Outcome) -> Admission {
    let admission = b.acquire(ID).await;
    if let Admission::Allowed { probe } = admission {
        b.report(ID, probe, outcome).await;
    }
    admission
}

#[tokio::test]
async fn late_successes_are_written_with_the_next_call_or_soon_after_and_count_like_records() {
    let r = replicas(settings()).await;
    for _ in 0..3 {
        proxied(&r.a, ok()).await;
    }
    // a's own next Redis call carries them: read-your-writes
    let s = r.a.snapshot(ID).await.expect("known id");
    assert_eq!((s.state, s.calls, s.failures, s.shared), (State::Closed, 3, 0, true));
    // one more, then nothing from a: the background flush writes it for b to see
    proxied(&r.a, ok()).await;
    let seen = promptly("the late flush", async {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if r.b.snapshot(ID).await.expect("known id").calls == 4 {
                break;
            }
        }
    });
    seen.await;
    // a failure is written at once
    proxied(&r.a, fail()).await;
    assert_eq!(r.b.snapshot(ID).await.expect("known id").failures, 1);

    // A late success can trip the breaker, like a recorded one, when it brings the window to
    // the minimum number of calls: fresh breakers, three failures, then two successes.
    let r = replicas(settings()).await;
    let mut events = r.a.subscribe();
    for _ in 0..3 {
        proxied(&r.b, fail()).await;
    }
    proxied(&r.a, ok()).await;
    proxied(&r.a, ok()).await;
    // 3 failures of 5 calls: a's next acquire writes the successes first, trips, and is refused
    assert_eq!(r.a.acquire(ID).await, Admission::Rejected { retry_after: Duration::from_secs(10) });
    assert_eq!(drain(&mut events), vec![(State::Closed, State::Open)], "the replica whose write tripped it");
    assert_eq!(state(&r.b).await, State::Open);
}

#[tokio::test]
async fn a_successful_call_costs_one_redis_round_trip() {
    let server = RedisServer::start(free_port());
    let r = replicas_on(server.url(), None, settings()).await;
    let mut conn = support::connection(&server.url());
    let calls = |conn: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(conn).expect("info");
        // evalsha (and eval / script load, if the script had to be loaded) are the breaker's calls
        info.lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
            .sum()
    };
    proxied(&r.a, ok()).await; // loads the script
    let before = calls(&mut conn);
    const N: u64 = 200;
    for _ in 0..N {
        assert!(proxied(&r.a, ok()).await.is_allowed());
    }
    let s = r.a.snapshot(ID).await.expect("known id");
    let used = calls(&mut conn) - before;
    assert_eq!(s.calls, 10, "a full window of successes");
    // N acquires (each carrying the success before it) and the snapshot; a slow machine may
    // have needed a background flush now and then
    assert!(used <= N + 1 + N / 10, "{used} breaker calls for {N} proxied calls");
    // with record instead of report it is two per call
    let before = calls(&mut conn);
    for _ in 0..N {
        call(&r.a, ok()).await;
    }
    assert_eq!(calls(&mut conn) - before, 2 * N);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

#[test]
fn breakers_built_outside_a_runtime_connect_on_first_use() {
    let redis = test_redis();
    let prefix = prefix();
    let b = Breakers::new(vec![(ID.to_string(), settings())], Some(redis.url.clone()), prefix.clone());
    assert!(!b.redis_status().connected, "new() does no IO");
    runtime().block_on(async {
        assert!(b.wait_connected(Duration::from_secs(5)).await, "{:?}", b.redis_status());
        call(&b, fail()).await;
        let s = b.snapshot(ID).await.expect("known id");
        assert_eq!((s.calls, s.shared), (1, true));
    });
    support::delete_keys(&redis.url, &prefix);
}

#[test]
fn breakers_outlive_the_runtime_they_were_built_in() {
    let redis = test_redis();
    let prefix = prefix();
    let first = runtime();
    let b = first.block_on(async {
        let b = Breakers::new(vec![(ID.to_string(), settings())], Some(redis.url.clone()), prefix.clone());
        assert!(b.wait_connected(Duration::from_secs(5)).await, "{:?}", b.redis_status());
        b
    });
    // The reconnect task and the connection's driver die with their runtime.
    drop(first);
    runtime().block_on(async {
        for i in 0..5 {
            promptly(&format!("call {i}"), call(&b, fail())).await;
        }
        // The dead connection was noticed and the calls fell back (on this single-threaded
        // runtime the respawned reconnect task cannot run before the loop yields)...
        assert!(!b.redis_status().connected, "{:?}", b.redis_status());
        // ...then the task, respawned here, reconnected and pushed the local trip.
        assert!(b.wait_connected(Duration::from_secs(5)).await, "{:?}", b.redis_status());
        let s = b.snapshot(ID).await.expect("known id");
        assert_eq!((s.state, s.shared), (State::Open, true));
    });
    support::delete_keys(&redis.url, &prefix);
}
