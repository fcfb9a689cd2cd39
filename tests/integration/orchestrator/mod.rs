//! The orchestrator end to end: all four services in-process on port 0, pipelines started over
//! real HTTP, real child processes as phases, the real healer deciding what to do with failures,
//! the real trace-collector receiving the spans. Nothing reaches the network: "installing" a
//! package is simulated by the healing fixture, and the LLM provider is the scripted fake.
//!
//! Files a phase must not touch or that must survive a retry (counters, flags, markers) live in
//! a scratch directory outside the run's workspace, named to the pipeline through a variable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use helix_core::gateway_config::{ModelChainConfig, ProviderKind};
use helix_core::{HelixConfig, ServiceKind};
use helix_tests::fake_provider::FakeProvider;
use helix_tests::{Helix, expect_problem, get_json};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod agents;
mod flaky;
mod paths;
mod preflight;
mod promises;
mod repair;
mod runs;

/// Longest a test run may take before the test fails (runs here take well under a few seconds).
const RUN_DEADLINE: Duration = Duration::from_secs(60);

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("client")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/orchestrator").join(name)
}

/// `s` as a TOML basic string (JSON string escapes are valid TOML escapes).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

fn path_str(p: &Path) -> String {
    toml_str(p.to_str().expect("utf-8 path"))
}

/// The 1-based line of `text` that contains `needle` first.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).expect("needle in text")
}

/// Helix with the orchestrator's backoff shortened, and an HTTP client.
struct Orch {
    helix: Helix,
    url: String,
    http: reqwest::Client,
}

impl Orch {
    async fn start() -> Orch {
        Orch::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut HelixConfig)) -> Orch {
        let helix = Helix::start_with(|c| {
            c.orchestrator.retry_backoff_ms = 20;
            adjust(c);
        })
        .await;
        let url = helix.url(ServiceKind::Orchestrator);
        Orch { helix, url, http: http() }
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.url)).json(body).send().await.expect("send")
    }

    /// POST /v1/runs, expecting 201; the run's view.
    async fn start_run(&self, body: Value) -> Value {
        let res = self.post("/v1/runs", &body).await;
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        assert_eq!(status, 201, "start run: {text}");
        let view: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(view["checkpoints"], json!([1]), "{view:#}");
        assert!(view["resume_token"].as_str().is_some_and(|t| !t.is_empty()), "{view:#}");
        view
    }

    /// Starts an inline pipeline (empty workspace unless `workdir`) and waits for its end.
    async fn run_inline(&self, pipeline: &str, project: &str, workdir: Option<&Path>) -> Value {
        let mut body = json!({"pipeline": pipeline, "project": project});
        if let Some(dir) = workdir {
            body["workdir"] = json!(dir);
        }
        let view = self.start_run(body).await;
        self.wait_final(id_of(&view)).await
    }

    async fn view(&self, id: &str) -> Value {
        let res = self.http.get(format!("{}/v1/runs/{id}", self.url)).send().await.expect("send");
        assert_eq!(res.status(), 200, "GET run {id}");
        res.json().await.expect("json")
    }

    /// Polls the run until `done` says so (deadline: [`RUN_DEADLINE`]).
    async fn wait_until(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let view = self.view(id).await;
            if done(&view) {
                return view;
            }
            assert!(start.elapsed() < RUN_DEADLINE, "run {id}: no {what} within {RUN_DEADLINE:?}: {view:#}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn wait_final(&self, id: &str) -> Value {
        self.wait_until(id, "final status", |v| {
            matches!(v["status"].as_str(), Some("succeeded" | "needs_human" | "escalated" | "cancelled"))
        })
        .await
    }

    /// POST right after a run reached a final status. The status comes from the run's last
    /// checkpoint; the engine lets the run go (its lock and project slot) right after recording
    /// `run_finished`, a few milliseconds later — before any escalation webhook is called
    /// (`a_run_that_shows_needs_human_can_be_resumed_at_once`). In that window a resume answers
    /// 409, a cancel 202 and a new run of a full project 429; this retries while the answer is
    /// `busy`, for at most 20 s.
    async fn post_after_final(&self, path: &str, body: &Value, busy: u16) -> reqwest::Response {
        let start = Instant::now();
        loop {
            let res = self.post(path, body).await;
            if res.status().as_u16() != busy || start.elapsed() > Duration::from_secs(20) {
                return res;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The run's recorded events as SSE text (the stream ends at once for a finished run).
    async fn events(&self, id: &str) -> String {
        let res = self.http.get(format!("{}/v1/runs/{id}/events", self.url)).send().await.expect("send");
        assert_eq!(res.status(), 200);
        res.text().await.expect("events")
    }

    /// The run's directory under the orchestrator's data directory.
    fn run_dir(&self, id: &str) -> PathBuf {
        self.helix.config.data_dir.join("orchestrator").join("runs").join(id)
    }
}

fn id_of(view: &Value) -> &str {
    view["id"].as_str().expect("run id")
}

fn attempts(phase: &Value) -> &Vec<Value> {
    phase["attempts"].as_array().expect("attempts")
}

fn workspace(view: &Value) -> PathBuf {
    PathBuf::from(view["workspace"].as_str().unwrap_or_else(|| panic!("no workspace: {view:#}")))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The gate of an attempt by kind (the first one) or by name.
fn gate<'a>(attempt: &'a Value, kind_or_name: &str) -> &'a Value {
    attempt["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["kind"] == kind_or_name || g["name"] == kind_or_name)
        .unwrap_or_else(|| panic!("no gate {kind_or_name}: {attempt:#}"))
}

/// Every span of a trace tree, depth first.
fn flatten(nodes: &Value, out: &mut Vec<Value>) {
    for node in nodes.as_array().into_iter().flatten() {
        out.push(node["span"].clone());
        flatten(&node["children"], out);
    }
}

/// A loopback HTTP listener standing in for an escalation webhook: every POSTed JSON body is
/// sent to the receiver, and answered 200 after `delay`.
async fn webhook(delay: Duration) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        let body =
                            serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                        let _ = tx.send(body);
                        tokio::time::sleep(delay).await;
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

/// An LLM phase whose answer must satisfy a JSON Schema. The fake provider answers
/// `"echo: " + <last user message>`, and the orchestrator takes the first fenced JSON block of
/// an answer. So the prompt carries a fenced JSON object that violates the schema (its extra
/// property is a number), whose property *name* is itself a fenced valid answer (`\u0060` is a
/// backtick, so the outer fence stays intact). The validation error names that property, the
/// re-ask quotes the error, the fake echoes the re-ask, and the second answer's first fenced
/// block is `{"verdict": "ok"}`: one rejection, then a valid answer.
const LLM_PIPELINE: &str = r#"name = "verdict"

[[phase]]
name = "judge"
kind = "llm"
model = "smart"
prompt = '''Give the verdict as JSON, like this:
```json
{"verdict": "ok", "\u0060\u0060\u0060json {\"verdict\": \"ok\"} \u0060\u0060\u0060": 1}
```'''
schema = { type = "object", required = ["verdict"], properties = { verdict = { enum = ["ok", "fail"] } }, additionalProperties = { type = "string" } }
output = "verdict.json"
"#;

/// The gateway serves model `smart` from the fake provider at `fake_url` (one OpenAI-protocol
/// deployment, `fake-openai`, calling `gpt-4o`).
fn serve_smart_from(gw: &mut helix_core::gateway_config::BreakerGatewayConfig, fake_url: String) {
    helix_tests::serve_from_fake(gw, fake_url, "smart", "gpt-4o");
}
