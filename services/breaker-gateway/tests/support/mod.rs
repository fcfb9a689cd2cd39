//! Real Redis for the breaker tests: the machine's 127.0.0.1:6379 when it answers, otherwise (and for
//! outage tests, always) a private `redis-server` this process starts, owns and kills.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Redis the shared-state tests use; keeps a private server alive when one had to be started.
pub struct TestRedis {
    pub url: String,
    _own: Option<RedisServer>,
}

/// 127.0.0.1:6379 if it answers PING, else a private server on a free port.
pub fn test_redis() -> TestRedis {
    let default = "redis://127.0.0.1:6379".to_string();
    if ping(&default) {
        return TestRedis { url: default, _own: None };
    }
    let server = RedisServer::start(free_port());
    TestRedis { url: server.url(), _own: Some(server) }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

pub fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else { return false };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else { return false };
    if conn.set_read_timeout(Some(Duration::from_millis(500))).is_err() {
        return false;
    }
    redis::cmd("PING").query::<String>(&mut conn).is_ok_and(|pong| pong == "PONG")
}

/// A synchronous connection for inspecting keys.
pub fn connection(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).expect("redis url");
    let conn = client.get_connection_with_timeout(Duration::from_secs(2)).expect("connect to redis");
    conn.set_read_timeout(Some(Duration::from_secs(2))).expect("read timeout");
    conn
}

/// Deletes every key under `prefix` (tests clean up after themselves on the shared server).
pub fn delete_keys(url: &str, prefix: &str) {
    let mut conn = connection(url);
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut conn).expect("list test keys");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(&keys).query(&mut conn).expect("delete test keys");
    }
}

/// A `redis-server` child process without persistence.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(port: u16) -> RedisServer {
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Starts (again) on the same port; panics if it does not answer PING within 10 s.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server on port {} is already running", self.port);
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not installed; install it with `apt-get install redis-server`")
            }
            Err(e) => panic!("cannot start redis-server on port {}: {e}", self.port),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(&self.url()) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server on port {} exited at start: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: connections stay open, nothing answers.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
