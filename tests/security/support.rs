//! What every security test needs: the real `helix up` (the binary users run) on free loopback
//! ports in a directory of its own, a plain HTTP client, and a scripted stand-in for an upstream
//! LLM provider (the outside world; the only double these tests use).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const HELIX: &str = env!("CARGO_BIN_EXE_helix");

/// How long a condition (a run finishing, a span arriving) may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A value nobody else has: planted secrets are found (or not) by it.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}{:08x}", std::process::id(), rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// `helix` with none of the caller's `HELIX_*` settings.
pub fn helix(cwd: &Path) -> Command {
    let mut cmd = Command::new(HELIX);
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("HELIX_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// How to start `helix up`.
#[derive(Default)]
pub struct Options {
    /// `helix.toml` in its working directory.
    pub config: String,
    /// Its environment (besides the inherited one, minus `HELIX_*`).
    pub env: Vec<(String, String)>,
    /// Extra arguments (`--host 0.0.0.0`).
    pub args: Vec<String>,
}

/// `helix up` on free ports, working in (and with its data under) a fresh directory; killed when
/// dropped.
pub struct Up {
    child: Child,
    urls: BTreeMap<String, String>,
    pub dir: tempfile::TempDir,
    stderr: PathBuf,
}

impl Up {
    pub fn start(opts: Options) -> Up {
        let dir = tempfile::tempdir().expect("tmp");
        match Up::try_start(dir, opts) {
            Ok(up) => up,
            Err((out, _)) => panic!("helix up did not start: {out}"),
        }
    }

    /// Starts it, or returns its stderr when it exited instead.
    pub fn try_start(dir: tempfile::TempDir, opts: Options) -> Result<Up, (String, tempfile::TempDir)> {
        std::fs::write(dir.path().join("helix.toml"), &opts.config).expect("config");
        let stderr = dir.path().join("helix.stderr");
        let mut cmd = helix(dir.path());
        cmd.arg("up")
            .args(["--data-dir", "data"])
            .args(["--orchestrator-port", "0", "--trace-collector-port", "0"])
            .args(["--breaker-gateway-port", "0", "--healer-port", "0"])
            .args(&opts.args)
            .env("HELIX_ORCHESTRATOR__RETRY_BACKOFF_MS", "20")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn helix up");
        let stdout = child.stdout.take().expect("stdout");
        let mut urls = BTreeMap::new();
        let mut started = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("press Ctrl-C") {
                started = true;
                break;
            }
            let mut words = line.split_whitespace();
            if let (Some(name), Some(url)) = (words.next(), words.next())
                && url.starts_with("http://")
            {
                urls.insert(name.to_owned(), url.to_owned());
            }
        }
        if !started {
            let _ = child.wait();
            return Err((std::fs::read_to_string(&stderr).unwrap_or_default(), dir));
        }
        Ok(Up { child, urls, dir, stderr })
    }

    pub fn url(&self, service: &str) -> &str {
        self.urls
            .get(service)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {service} in {:?}", self.urls))
    }

    /// Host and port of a service (for Host and Origin headers).
    pub fn authority(&self, service: &str) -> String {
        self.url(service).trim_start_matches("http://").to_owned()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `POST /v1/runs` on the orchestrator with `body`, as `token`.
    pub async fn start_run(&self, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = http().post(format!("{}/v1/runs", self.url("orchestrator"))).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("send")
    }

    /// Waits until run `id` has a final status; returns its view.
    pub async fn wait_final(&self, token: Option<&str>, id: &str) -> Value {
        let start = Instant::now();
        loop {
            let mut req = http().get(format!("{}/v1/runs/{id}", self.url("orchestrator")));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let v: Value = req.send().await.expect("send").json().await.expect("json");
            if v["status"].as_str().is_some_and(|s| s != "running") {
                return v;
            }
            assert!(start.elapsed() < DEADLINE, "run {id} did not finish: {v:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `pipeline` (TOML text) with the test's directory as workdir and waits for its end.
    pub async fn run(&self, token: Option<&str>, pipeline: &str) -> Value {
        let res = self
            .start_run(token, json!({"pipeline": pipeline, "workdir": self.dir.path().join("work")}))
            .await;
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, 201, "{body:#}");
        let id = body["id"].as_str().expect("id").to_owned();
        self.wait_final(token, &id).await
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that follows no redirects and uses no proxy.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().expect("client")
}

/// The output of attempts of a run view's phases (recorded and failed), concatenated.
pub fn outputs(run: &Value) -> String {
    let mut out = String::new();
    for p in run["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(run["failed"].as_object().map(|_| &run["failed"]))
    {
        for a in p["attempts"].as_array().into_iter().flatten() {
            out.push_str(a["outcome"]["output"].as_str().unwrap_or_default());
            out.push_str(a["error"].as_str().unwrap_or_default());
        }
    }
    out
}

/// One request the fake upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// A loopback HTTP server standing in for an LLM provider: answers every request with `status`
/// and `body`, and records what it got.
pub struct Upstream {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
}

impl Upstream {
    /// An OpenAI-compatible provider whose chat completions answer `text`.
    pub fn openai_answering(text: &str) -> Upstream {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        });
        Upstream::start(200, body.to_string())
    }

    pub fn start(status: u16, body: String) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (s, c) = (seen.clone(), count.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (s, c, body) = (s.clone(), c.clone(), body.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let mut headers = Vec::new();
                        let mut length = 0usize;
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                                if k == "content-length" {
                                    length = v.parse().unwrap_or(0);
                                }
                                headers.push((k, v));
                            }
                        }
                        let mut buf = vec![0u8; length];
                        if reader.read_exact(&mut buf).is_err() {
                            return;
                        }
                        c.fetch_add(1, Ordering::SeqCst);
                        s.lock().expect("seen").push(Seen { path, headers });
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Upstream { url, seen, count }
    }

    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// The `[breaker_gateway]` tables of one OpenAI-compatible deployment at `url`, model `smart`.
pub fn gateway_config(url: &str, key_env: Option<&str>) -> String {
    let key = key_env.map(|k| format!("api_key_env = \"{k}\"\n")).unwrap_or_default();
    format!(
        "[[breaker_gateway.deployments]]\nid = \"up\"\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"gpt-test\"\n{key}\
         [[breaker_gateway.models]]\nname = \"smart\"\nchain = [\"up\"]\n"
    )
}

/// Every file under `dir` (symlinks not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let t = e.file_type().expect("type");
            if t.is_dir() {
                pending.push(e.path());
            }
            out.push(e.path());
        }
    }
    out
}

/// Whether any file under `dir` holds `needle`.
pub fn found_under(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            p.is_file()
                && std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}
