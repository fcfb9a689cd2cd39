//! Two breaker-gateway replicas sharing their circuit breakers through a real Redis, over real HTTP.
//!
//! The facade-level tests (services/breaker-gateway/tests/breaker_redis.rs) prove the sharing rules;
//! these prove the wiring end to end: what one replica learns from its upstream changes where the
//! other replica sends its next call, half-open probes are counted cluster-wide, and a Redis outage
//! under traffic costs no request and heals by itself.
//!
//! Each replica is the gateway service alone (its own data directory, port 0). Breaker keys live
//! under a prefix of their own per test and are deleted at the end. The outage test kills only a
//! `redis-server` it started itself on a free port, never the machine's 6379.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use helix::stack::Stack;
use helix_core::ServiceKind;
use helix_core::gateway_config::{
    BreakerGatewayConfig, DeploymentConfig, GatewayKeyConfig, ModelChainConfig, ProviderKind,
};
use helix_tests::fake_provider::{FakeProvider, Mode};
use helix_tests::{get_json, test_config};
use serde_json::{Value, json};

/// Every request of these tests ends within this (a hung gateway fails the test).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

const FIRST_MODEL: &str = "m-first";
const SECOND_MODEL: &str = "m-second";

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(CALL_TIMEOUT).build().expect("client")
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A key prefix no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("helix-test-gwredis-{test}-{}-{}-{n}", std::process::id(), unix_ms())
}

// ---------------------------------------------------------------------------------------------
// Redis: raw RESP over loopback (this crate has no Redis client), and a private server

/// Sends one command and returns the first line of the reply (`+PONG`, `:1`, `-ERR ...`).
fn redis_command(port: u16, args: &[&str]) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(1000))).ok()?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.write_all(out.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with(b"\r\n") {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(reply).ok().map(|r| r.lines().next().unwrap_or_default().to_owned())
}

fn ping(port: u16) -> bool {
    redis_command(port, &["PING"]).as_deref() == Some("+PONG")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A `redis-server` child without persistence; killed on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    /// Starts (again) on the same port; panics if it does not answer PING within 10 s.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server on port {} is already running", self.port);
        let port = self.port.to_string();
        let spawned = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not installed; install it with `apt-get install redis-server`")
            }
            Err(e) => panic!("cannot start redis-server on port {}: {e}", self.port),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server on port {} exited at start: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING in 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: an outage, not a shutdown. Waits until the process is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The Redis a test shares state through: the machine's 6379 when it answers, else a private
/// server. Deletes the test's keys when dropped (also when the test failed).
struct SharedRedis {
    port: u16,
    prefix: String,
    _own: Option<RedisServer>,
}

impl SharedRedis {
    fn new(test: &str) -> SharedRedis {
        let prefix = unique_prefix(test);
        if ping(6379) {
            return SharedRedis { port: 6379, prefix, _own: None };
        }
        let server = RedisServer::start(free_port());
        SharedRedis { port: server.port, prefix, _own: Some(server) }
    }

    fn private(test: &str) -> (SharedRedis, u16) {
        let server = RedisServer::start(free_port());
        let port = server.port;
        // the test kills and restarts it through `server_mut`
        (SharedRedis { port, prefix: unique_prefix(test), _own: Some(server) }, port)
    }

    fn server_mut(&mut self) -> &mut RedisServer {
        self._own.as_mut().expect("a private redis-server")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for SharedRedis {
    fn drop(&mut self) {
        const DELETE: &str =
            "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1";
        let pattern = format!("{}*", self.prefix);
        let _ = redis_command(self.port, &["EVAL", DELETE, "0", &pattern]);
    }
}

// ---------------------------------------------------------------------------------------------
// Gateways

/// One gateway replica: the breaker-gateway service alone, on port 0 with its own data directory.
struct Gateway {
    stack: Option<Stack>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(redis: &SharedRedis, adjust: impl FnOnce(&mut BreakerGatewayConfig)) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = test_config(dir.path());
        let gw = &mut cfg.breaker_gateway;
        gw.max_retries = 0;
        gw.retry_base_backoff_ms = 10;
        gw.redis_url = Some(redis.url());
        gw.redis_key_prefix = redis.prefix.clone();
        adjust(gw);
        let stack = Stack::start(&cfg, &[ServiceKind::BreakerGateway]).await.expect("gateway starts");
        let url = stack.url(ServiceKind::BreakerGateway).expect("gateway runs");
        Gateway { stack: Some(stack), url, _dir: dir }
    }

    async fn stop(mut self) {
        if let Some(stack) = self.stack.take() {
            stack.stop().await.expect("clean stop");
        }
    }

    async fn chat(&self, http: &reqwest::Client, model: &str, text: &str) -> reqwest::Response {
        let body = json!({ "model": model, "messages": [{ "role": "user", "content": text }] });
        http.post(format!("{}/v1/chat/completions", self.url)).json(&body).send().await.expect("send")
    }

    async fn circuits(&self, http: &reqwest::Client) -> Value {
        get_json(http, &format!("{}/v1/circuits", self.url)).await
    }

    async fn circuit(&self, http: &reqwest::Client, id: &str) -> Value {
        let list = self.circuits(http).await;
        list["circuits"]
            .as_array()
            .expect("circuits")
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no circuit {id}: {list}"))
    }

    /// The status of the `redis` check of `GET /ready`.
    async fn redis_check(&self, http: &reqwest::Client) -> String {
        let ready = get_json(http, &format!("{}/ready", self.url)).await;
        let checks = ready["checks"].as_array().expect("checks");
        let check = checks.iter().find(|c| c["name"] == "redis").expect("redis check");
        check["status"].as_str().expect("status").to_owned()
    }

    async fn wait_redis_connected(&self, http: &reqwest::Client, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let list = self.circuits(http).await;
            if list["redis"]["connected"] == true && self.redis_check(http).await == "ok" {
                return;
            }
            assert!(Instant::now() < deadline, "{}: redis not connected within {within:?}: {list}", self.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn deployment(id: &str, fake: &FakeProvider, model: &str) -> DeploymentConfig {
    DeploymentConfig {
        id: id.to_owned(),
        provider: ProviderKind::Openai,
        base_url: fake.url(),
        model: model.to_owned(),
        api_key_env: None,
        max_in_flight: None,
        breaker: None,
        responses_api: false,
    }
}

/// Deployments `first` (upstream model [`FIRST_MODEL`]) and `second` ([`SECOND_MODEL`]) at `fake`,
/// chained as model `smart`, with a small breaker that opens after two failures.
fn two_deployments(gw: &mut BreakerGatewayConfig, fake: &FakeProvider, open_secs: u64, probes: u32) {
    gw.deployments = vec![deployment("first", fake, FIRST_MODEL), deployment("second", fake, SECOND_MODEL)];
    gw.models = vec![ModelChainConfig {
        name: "smart".to_owned(),
        chain: vec!["first".to_owned(), "second".to_owned()],
    }];
    gw.breaker.window_size = 4;
    gw.breaker.minimum_calls = 2;
    gw.breaker.failure_rate_threshold = 50.0;
    gw.breaker.open_secs = open_secs;
    gw.breaker.max_open_secs = open_secs.max(60);
    gw.breaker.half_open_probes = probes;
}

/// Two replicas with [`two_deployments`] on `redis`, both connected to it.
async fn two_replicas(
    redis: &SharedRedis,
    fake: &FakeProvider,
    open_secs: u64,
    probes: u32,
    http: &reqwest::Client,
) -> (Gateway, Gateway) {
    replica_pair(redis, |gw| two_deployments(gw, fake, open_secs, probes), http).await
}

/// Two replicas configured by `adjust`, both connected to `redis`.
async fn replica_pair(
    redis: &SharedRedis,
    adjust: impl Fn(&mut BreakerGatewayConfig),
    http: &reqwest::Client,
) -> (Gateway, Gateway) {
    let a = Gateway::start(redis, &adjust).await;
    let b = Gateway::start(redis, &adjust).await;
    for gw in [&a, &b] {
        gw.wait_redis_connected(http, Duration::from_secs(5)).await;
    }
    (a, b)
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn first_model_calls(fake: &FakeProvider) -> usize {
    fake.requests_to("/v1/chat/completions").iter().filter(|r| r.model() == Some(FIRST_MODEL)).count()
}

/// Fails `first` through `gw` (its upstream answers 500) until that replica reports it open.
async fn trip_first(gw: &Gateway, http: &reqwest::Client, fake: &FakeProvider) -> Value {
    fake.script_for_model(FIRST_MODEL, std::iter::repeat_n(Mode::status(500), 4));
    for i in 0..4 {
        let res = gw.chat(http, "first", &format!("fail {i}")).await;
        assert!(res.status().is_server_error(), "a failing upstream is not a success: {}", res.status());
        let c = gw.circuit(http, "first").await;
        if c["state"] == "open" {
            assert_eq!(c["shared"], true, "the trip went through redis: {c}");
            fake.reset();
            return c;
        }
    }
    panic!("first did not open after 4 failures: {}", gw.circuit(http, "first").await);
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_breaker_tripped_through_one_replica_makes_the_other_fail_over_at_once() {
    let redis = SharedRedis::new("trip");
    let fake = FakeProvider::start().await;
    let http = http();
    let (a, b) = two_replicas(&redis, &fake, 30, 1, &http).await;
    // b has seen first closed before the trip (its local mirror is not what makes it fail over)
    let res = b.chat(&http, "smart", "before").await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("first"));
    assert_eq!(b.circuit(&http, "first").await["state"], "closed");

    let tripped = trip_first(&a, &http, &fake).await;
    assert!(tripped["next_half_open_unix_ms"].as_u64().is_some_and(|t| t > unix_ms()), "{tripped}");

    let seen_by_b = b.circuit(&http, "first").await;
    assert_eq!(seen_by_b["state"], "open", "b sees a's trip: {seen_by_b}");
    assert_eq!(seen_by_b["shared"], true, "{seen_by_b}");
    assert_eq!(seen_by_b["next_half_open_unix_ms"], tripped["next_half_open_unix_ms"], "{seen_by_b}");

    // fail-over without a wait: b sends nothing to the open deployment (counted below), and each
    // call is bounded by the client's timeout
    for i in 0..3 {
        let res = b.chat(&http, "smart", &format!("after {i}")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("second"));
        assert_eq!(header(&res, "x-helix-fallback-from").as_deref(), Some("first"));
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["choices"][0]["message"]["content"], format!("echo: after {i}"), "{body}");
    }
    assert_eq!(first_model_calls(&fake), 0, "b sent nothing to the open deployment");
    let second: Vec<_> = fake.requests().into_iter().filter(|r| r.model() == Some(SECOND_MODEL)).collect();
    assert_eq!(second.len(), 3);
    // a, which tripped it, falls over the same way
    let res = a.chat(&http, "smart", "via a").await;
    assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("second"));
    assert_eq!(first_model_calls(&fake), 0);

    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn half_open_admits_the_configured_probes_across_both_replicas() {
    const PROBES: u32 = 2;
    const CALLS_PER_REPLICA: usize = 4;
    let redis = SharedRedis::new("probes");
    let fake = FakeProvider::start().await;
    let http = http();
    let (a, b) = two_replicas(&redis, &fake, 1, PROBES, &http).await;
    let tripped = trip_first(&a, &http, &fake).await;
    assert_eq!(b.circuit(&http, "first").await["state"], "open");

    // probes answer slowly so every call of the burst is decided while they are still in flight
    fake.script_for_model(FIRST_MODEL, std::iter::repeat_n(Mode::SlowFirstByte { ms: 1_500 }, 8));
    let half_open_at = tripped["next_half_open_unix_ms"].as_u64().expect("open until");
    let wait = half_open_at.saturating_sub(unix_ms()) + 100;
    assert!(wait < 5_000, "open_secs is 1: {tripped}");
    tokio::time::sleep(Duration::from_millis(wait)).await;

    let calls = (0..CALLS_PER_REPLICA * 2).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        let http = http.clone();
        async move {
            let res = gw.chat(&http, "smart", &format!("burst {i}")).await;
            assert_eq!(res.status(), 200, "call {i}");
            let served = header(&res, "x-helix-deployment").expect("x-helix-deployment");
            let from = header(&res, "x-helix-fallback-from");
            (served, from)
        }
    });
    let answers = futures_util::future::join_all(calls).await;

    let probes: Vec<_> = answers.iter().filter(|(served, _)| served == "first").collect();
    let fell_back: Vec<_> = answers.iter().filter(|(served, _)| served == "second").collect();
    assert_eq!(probes.len(), PROBES as usize, "{answers:?}");
    assert!(probes.iter().all(|(_, from)| from.is_none()), "{answers:?}");
    assert_eq!(fell_back.len(), CALLS_PER_REPLICA * 2 - PROBES as usize, "{answers:?}");
    assert!(fell_back.iter().all(|(_, from)| from.as_deref() == Some("first")), "{answers:?}");
    assert_eq!(first_model_calls(&fake), PROBES as usize, "only the probes reached first's upstream");

    // the successful probes closed it for everyone
    for gw in [&a, &b] {
        let c = gw.circuit(&http, "first").await;
        assert_eq!(c["state"], "closed", "{c}");
    }

    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

/// Waits until `gw` reports `id` half-open-able (its open time is over), within `within`.
async fn wait_open_time_over(gw: &Gateway, http: &reqwest::Client, id: &str, within: Duration) {
    let c = gw.circuit(http, id).await;
    let until = c["next_half_open_unix_ms"].as_u64().unwrap_or_else(|| panic!("not open: {c}"));
    let wait = Duration::from_millis(until.saturating_sub(unix_ms()) + 100);
    assert!(wait < within, "open for longer than {within:?}: {c}");
    tokio::time::sleep(wait).await;
}

#[tokio::test]
async fn a_revoked_key_seen_by_one_replica_opens_the_breaker_for_both() {
    let redis = SharedRedis::new("revoked");
    let fake = FakeProvider::start().await;
    let http = http();
    let (a, b) = two_replicas(&redis, &fake, 30, 1, &http).await;
    // first's key is refused: every client still gets an answer, from second, and the refusals
    // are failures of first's (shared) breaker
    fake.script_for_model(FIRST_MODEL, std::iter::repeat_n(Mode::status(401), 4));
    let mut opened = false;
    for i in 0..4 {
        let res = a.chat(&http, "smart", &format!("revoked {i}")).await;
        assert_eq!(res.status(), 200, "client {i} got the healthy deployment's answer");
        assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("second"));
        if a.circuit(&http, "first").await["state"] == "open" {
            opened = true;
            break;
        }
    }
    assert!(opened, "401s open the breaker: {}", a.circuit(&http, "first").await);
    let seen_by_b = b.circuit(&http, "first").await;
    assert_eq!(seen_by_b["state"], "open", "b sees it: {seen_by_b}");
    let before = first_model_calls(&fake);
    for i in 0..3 {
        let res = b.chat(&http, "smart", &format!("via b {i}")).await;
        assert_eq!(header(&res, "x-helix-deployment").as_deref(), Some("second"));
    }
    assert_eq!(first_model_calls(&fake), before, "b sends nothing to the broken deployment");

    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_client_error_answering_a_probe_leaves_the_shared_breaker_open() {
    let redis = SharedRedis::new("probe400");
    let fake = FakeProvider::start().await;
    let http = http();
    let (a, b) = two_replicas(&redis, &fake, 1, 1, &http).await;
    trip_first(&a, &http, &fake).await;
    wait_open_time_over(&b, &http, "first", Duration::from_secs(10)).await;

    // b's probe gets a 400: the client's answer, but no proof that first is healthy
    fake.script_for_model(FIRST_MODEL, [Mode::status(400)]);
    let res = b.chat(&http, "first", "probe").await;
    assert_eq!(res.status(), 400, "the client gets its answer");
    for gw in [&a, &b] {
        let c = gw.circuit(&http, "first").await;
        assert_ne!(c["state"], "closed", "a 400 probe closes nothing: {c}");
    }
    // a healthy answer to the next probe, through a, closes it for both
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        wait_open_time_over(&a, &http, "first", Duration::from_secs(30)).await;
        let res = a.chat(&http, "first", "healthy probe").await;
        if res.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no probe was admitted: {}", res.status());
    }
    for gw in [&a, &b] {
        let c = gw.circuit(&http, "first").await;
        assert_eq!(c["state"], "closed", "{c}");
    }

    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_redis_outage_under_traffic_fails_no_request_and_heals() {
    const TASKS: usize = 4;
    const CALLS_PER_TASK: usize = 50;
    const PACE: Duration = Duration::from_millis(60);
    let (mut redis, port) = SharedRedis::private("outage");
    let fake = FakeProvider::start().await;
    let setup = |gw: &mut BreakerGatewayConfig| {
        gw.deployments = vec![deployment("only", &fake, FIRST_MODEL)];
    };
    let a = Arc::new(Gateway::start(&redis, setup).await);
    let b = Arc::new(Gateway::start(&redis, setup).await);
    let http = http();
    for gw in [&a, &b] {
        gw.wait_redis_connected(&http, Duration::from_secs(5)).await;
    }

    let origin = Instant::now();
    let since = move || origin.elapsed().as_millis() as u64;
    let stop_polling = Arc::new(AtomicBool::new(false));
    // per replica: the first and last time (ms since origin) /ready said redis was degraded
    let pollers: Vec<_> = [&a, &b]
        .into_iter()
        .map(|gw| {
            let (gw, http, stop) = (Arc::clone(gw), http.clone(), Arc::clone(&stop_polling));
            tokio::spawn(async move {
                let mut degraded: Option<(u64, u64)> = None;
                while !stop.load(Ordering::Relaxed) {
                    if gw.redis_check(&http).await == "degraded" {
                        let now = since();
                        degraded = Some(degraded.map_or((now, now), |(first, _)| (first, now)));
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                degraded
            })
        })
        .collect();

    let traffic: Vec<_> = (0..TASKS)
        .map(|t| {
            let (a, b, http) = (Arc::clone(&a), Arc::clone(&b), http.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..CALLS_PER_TASK {
                    let gw = if (t + i) % 2 == 0 { &a } else { &b };
                    let started = since();
                    let res = gw.chat(&http, "only", &format!("task {t} call {i}")).await;
                    let status = res.status().as_u16();
                    let body = res.text().await.unwrap_or_default();
                    outcomes.push((started, since(), status, body));
                    tokio::time::sleep(PACE).await;
                }
                outcomes
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = since();
    redis.server_mut().kill();
    assert!(!ping(port), "the private redis-server is down");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let restarted_at = since();
    redis.server_mut().restart();

    let mut outcomes = Vec::new();
    for task in traffic {
        outcomes.extend(task.await.expect("traffic task"));
    }
    let traffic_ended = since();
    assert_eq!(outcomes.len(), TASKS * CALLS_PER_TASK);
    let failed: Vec<_> = outcomes.iter().filter(|(_, _, status, _)| *status != 200).collect();
    assert!(failed.is_empty(), "{} calls failed: {failed:?}", failed.len());
    assert!(
        outcomes.iter().all(|(_, _, _, body)| body.contains("echo: task ")),
        "every answer is the upstream's"
    );
    let during_outage =
        outcomes.iter().filter(|(start, _, _, _)| (killed_at..restarted_at).contains(start)).count();
    assert!(during_outage >= TASKS, "traffic ran through the outage: {during_outage} calls");
    assert!(traffic_ended > restarted_at, "traffic ran past the restart");

    // both replicas reconnect (and resync) by themselves
    for gw in [&a, &b] {
        gw.wait_redis_connected(&http, Duration::from_secs(10)).await;
    }
    stop_polling.store(true, Ordering::Relaxed);
    for (name, poller) in ["a", "b"].into_iter().zip(pollers) {
        let degraded = poller.await.expect("poller");
        let (first, last) =
            degraded.unwrap_or_else(|| panic!("{name}: /ready never reported redis degraded"));
        assert!(first >= killed_at, "{name}: degraded at {first} ms, before the kill at {killed_at} ms");
        assert!(last < restarted_at + 10_000, "{name}: still degraded at {last} ms");
    }
    for gw in [&a, &b] {
        let ready = get_json(&http, &format!("{}/ready", gw.url)).await;
        let redis_ok = ready["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["name"] == "redis" && c["status"] == "ok");
        assert!(redis_ok, "{ready}");
    }

    // state is shared again: an operator command on a reaches b through the restarted redis
    let res = http.post(format!("{}/v1/circuits/only/force-open", a.url)).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let c = b.circuit(&http, "only").await;
    assert_eq!((c["state"].as_str(), c["shared"].as_bool()), (Some("forced_open"), Some(true)), "{c}");

    for gw in [a, b] {
        let gw = Arc::try_unwrap(gw).ok().expect("no other handle");
        gw.stop().await;
    }
    fake.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Budgets and bulkheads shared by the replicas (accounting::shared)

/// Two replicas with one deployment `only` and the gateway key `key` of project `shared`.
async fn replicas_with_project(
    redis: &SharedRedis,
    fake: &FakeProvider,
    key_env: &str,
    budget: Option<f64>,
    max_in_flight: Option<u32>,
    http: &reqwest::Client,
) -> (Gateway, Gateway) {
    let adjust = |gw: &mut BreakerGatewayConfig| {
        gw.deployments = vec![deployment("only", fake, FIRST_MODEL)];
        gw.keys = vec![GatewayKeyConfig {
            key_env: key_env.to_owned(),
            project: "shared".to_owned(),
            daily_budget_usd: budget,
            max_in_flight,
        }];
        // 3 words in, 4 out ("echo: call number N"): 0.000 043 USD a call
        gw.prices = vec![super::gateway::price(FIRST_MODEL, 1.0, 10.0)];
    };
    replica_pair(redis, adjust, http).await
}

async fn keyed_chat(gw: &Gateway, http: &reqwest::Client, key: &str, text: &str) -> reqwest::Response {
    let body = json!({ "model": "only", "messages": [{ "role": "user", "content": text }] });
    http.post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn two_replicas_enforce_one_daily_budget() {
    let redis = SharedRedis::new("budget");
    let fake = FakeProvider::start().await;
    let http = http();
    let (key_env, key) = super::gateway::existing_vars(1)[0].clone();
    // 0.0001 USD: the third call (0.000 129 spent) crosses it, the fourth is refused
    let (a, b) = replicas_with_project(&redis, &fake, &key_env, Some(0.000_1), None, &http).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let gw = if i % 2 == 0 { &a } else { &b };
        statuses.push(keyed_chat(gw, &http, &key, &format!("call number {i}")).await.status().as_u16());
    }
    // each replica alone would have let three through (six in all)
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429], "one budget for both replicas");
    assert_eq!(fake.request_count(), 3, "refused calls never reach the upstream");
    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn two_replicas_admit_one_max_in_flight_and_give_the_slots_back() {
    let redis = SharedRedis::new("inflight");
    let fake = FakeProvider::start().await;
    let http = http();
    let (key_env, key) = super::gateway::existing_vars(1)[0].clone();
    let (a, b) = replicas_with_project(&redis, &fake, &key_env, None, Some(2), &http).await;
    // six slow calls at once, three through each replica: two slots for the project in all
    let slow = Mode::SlowFirstByte { ms: 4_000 }.header_value();
    let body = json!({ "model": "only", "messages": [{ "role": "user", "content": "slow call" }] });
    let calls = (0..6).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        http.post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .header(helix_tests::fake_provider::MODE_HEADER, slow.clone())
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("send").status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 2, "two in flight across both: {statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 4, "{statuses:?}");
    assert_eq!(fake.request_count(), 2);
    // the slots came back (in the background, right after each call): both replicas serve again
    for gw in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res = keyed_chat(gw, &http, &key, "after the flood").await;
            if res.status() == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "the slots were not given back: {}", res.status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    a.stop().await;
    b.stop().await;
    fake.stop().await;
}
