//! The `helix` binary as a user runs it: start-up on defaults, config errors, JSON logs,
//! SIGTERM, `helix openapi --check`, `helix config`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HELIX: &str = env!("CARGO_BIN_EXE_helix");

/// A `helix` command with no `HELIX_*` variables from the developer's environment.
fn helix(cwd: &Path) -> Command {
    let mut cmd = Command::new(HELIX);
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("HELIX_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Reads the start-up banner from stdout: service name → base URL.
fn read_banner(child: &mut Child) -> BTreeMap<String, String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut urls = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.starts_with("press Ctrl-C") {
            break;
        }
        let mut words = line.split_whitespace();
        if let (Some(name), Some(url)) = (words.next(), words.next())
            && url.starts_with("http://")
        {
            urls.insert(name.to_owned(), url.to_owned());
        }
    }
    urls
}

/// `helix serve SERVICE` on a free port, stderr discarded: the child and the service's URL.
fn serve(cwd: &Path, service: &str) -> (Child, String) {
    let mut child = helix(cwd)
        .args(["serve", service, &format!("--{service}-port"), "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let url = read_banner(&mut child).get(service).expect("url").clone();
    (child, url)
}

/// A child killed when dropped, so that a failing assertion leaves no `helix up` holding the
/// default ports for the next test.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // a child already waited for is not signalled again (std keeps its status)
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("helix did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().expect("piped stderr").read_to_string(&mut s).expect("read stderr");
    s
}

#[tokio::test]
async fn up_on_defaults_serves_all_four_on_their_ports_and_stops_on_sigterm() {
    for port in 7700..=7703 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: stop the helix running there before this test"
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Running(
        helix(dir.path())
            .arg("up")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn helix up"),
    );
    let urls = read_banner(&mut child);
    let want: BTreeMap<String, String> =
        [("orchestrator", 7700), ("trace-collector", 7701), ("breaker-gateway", 7702), ("healer", 7703)]
            .into_iter()
            .map(|(n, p)| (n.to_owned(), format!("http://127.0.0.1:{p}")))
            .collect();
    assert_eq!(urls, want);

    let http = reqwest::Client::new();
    for (name, url) in &urls {
        let res = http.get(format!("{url}/health")).send().await.expect("health");
        assert_eq!(res.status(), 200, "{name}");
        let res = http.get(format!("{url}/swagger-ui/")).send().await.expect("swagger");
        assert_eq!(res.status(), 200, "{name}");
        let served: serde_json::Value =
            http.get(format!("{url}/openapi.json")).send().await.expect("doc").json().await.expect("json");
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../openapi/{name}.json"));
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(committed).expect("committed")).expect("json");
        assert_eq!(served, committed, "{name}");
        // embedded default: data under ./.helix/<service>
        assert!(dir.path().join(".helix").join(name).is_dir(), "{name}");
    }

    sigterm(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("SIGTERM") && stderr.contains("shutdown complete"), "{stderr}");
    for port in 7700..=7703 {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "{port} still open");
    }
}

#[test]
fn bad_config_file_stops_start_up_naming_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "host = \"127.0.0.1\"\n\nhealer_prot = 7703\n").expect("write");
    let out = helix(dir.path()).args(["up", "--config"]).arg(&cfg).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("healer_prot") && stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");

    // the implicit ./helix.toml is read too, and a bad value is named
    std::fs::write(dir.path().join("helix.toml"), "log_format = \"xml\"\n").expect("write");
    let out = helix(dir.path()).arg("up").output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("log_format") || stderr.contains("line 1"), "{stderr}");
    assert!(stderr.contains("xml"), "{stderr}");

    // a missing explicit file is an error, not a silent fallback to defaults
    let out = helix(dir.path()).args(["up", "--config", "nope.toml"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}

#[test]
fn bad_environment_value_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = helix(dir.path()).arg("up").env("HELIX_HEALER_PORT", "lots").output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HELIX_HEALER_PORT"), "{stderr}");
}

#[test]
fn config_shows_precedence_of_file_env_and_flags() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("helix.toml"),
        "healer_port = 1\ntrace_collector_port = 2\nbreaker_gateway_port = 3\n",
    )
    .expect("write");
    let out = helix(dir.path())
        .args(["config", "--breaker-gateway-port", "33"])
        .env("HELIX_TRACE_COLLECTOR_PORT", "22")
        .env("HELIX_BREAKER_GATEWAY_PORT", "333")
        .env("HELIX_RUNTIME", "/usr/lib/helix-editor")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("healer_port = 1\n"), "{stdout}");
    assert!(stdout.contains("trace_collector_port = 22\n"), "{stdout}");
    assert!(stdout.contains("breaker_gateway_port = 33\n"), "{stdout}");
    // another program's HELIX_ variable is a warning, not a failure
    assert!(String::from_utf8_lossy(&out.stderr).contains("HELIX_RUNTIME"));
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = helix(dir.path())
        .args(["serve", "healer", "--healer-port", "0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let urls = read_banner(&mut child);
    let url = urls.get("healer").expect("healer url").clone();
    assert_eq!(urls.len(), 1, "{urls:?}");
    let res = reqwest::Client::new()
        .post(format!("{url}/v1/fingerprint"))
        .header("x-request-id", "json-log-test-1")
        .json(&serde_json::json!({"text": "boom"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    sigterm(&child);
    assert!(wait_with_timeout(&mut child, Duration::from_secs(15)).success());
    let stderr = stderr_of(&mut child);
    let mut found = false;
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["span"]["request_id"] == "json-log-test-1" && v["status"] == 200 {
            found = true;
        }
    }
    assert!(found, "no access log line with the request id in:\n{stderr}");
}

#[test]
fn openapi_check_passes_on_the_committed_documents_and_fails_on_a_stale_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = helix(&root).args(["openapi", "--check"]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = tempfile::tempdir().expect("tmp");
    let out = helix(dir.path()).args(["openapi", "--write", "--dir", "specs"]).output().expect("run");
    assert!(out.status.success());
    for name in ["orchestrator", "trace-collector", "breaker-gateway", "healer"] {
        assert!(dir.path().join("specs").join(format!("{name}.json")).is_file());
    }
    std::fs::write(dir.path().join("specs/healer.json"), "{}").expect("write");
    let out = helix(dir.path()).args(["openapi", "--check", "--dir", "specs"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("healer.json"));
}

#[tokio::test]
async fn an_acknowledged_fix_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let spawn = || {
        helix(dir.path())
            .args(["serve", "healer", "--healer-port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let mut child = spawn();
    let url = read_banner(&mut child).get("healer").expect("url").clone();
    let http = reqwest::Client::new();
    let sig = "ab".repeat(32);
    let mut acked = 0;
    for i in 0..20 {
        let res = http
            .post(format!("{url}/v1/fixes"))
            .json(&serde_json::json!({"signature": sig, "description": format!("attempt {i}"), "outcome": "success"}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 201);
        acked += 1;
    }
    // no graceful shutdown: the process dies right after the last 201
    child.kill().expect("kill -9");
    child.wait().expect("reap");

    let mut child = spawn();
    let url = read_banner(&mut child).get("healer").expect("url").clone();
    let report: serde_json::Value = http
        .get(format!("{url}/v1/signatures/{sig}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(report["fixes"].as_array().expect("fixes").len(), acked, "{report}");
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[test]
fn heal_reports_the_root_cause_from_a_file_stdin_or_a_command() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("build.log");
    std::fs::write(&log, "a.c: In function ‘f’:\na.c:2:10: fatal error: zlib.h: No such file or directory\n    2 | #include <zlib.h>\ncompilation terminated.\n").expect("write");
    let out = helix(dir.path()).args(["heal"]).arg(&log).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "errors found");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("root cause: fatal error: zlib.h: No such file or directory"), "{report}");
    assert!(report.contains("missing_dependency") && report.contains("zlib1g-dev"), "{report}");

    let out = helix(dir.path()).args(["heal", "--json"]).arg(&log).output().expect("run");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["diagnostics"][json["primary"].as_u64().expect("primary") as usize]["key"], "zlib.h");

    // invalid UTF-8 on stdin is decoded lossily, not refused
    let mut child = helix(dir.path())
        .args(["heal", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"\xff\xfe bash: line 1: helmfile: command not found\n").expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(String::from_utf8_lossy(&out.stdout).contains("command_not_found"));

    // a failing command is run, passed through, analysed; its exit code is kept
    let out = helix(dir.path())
        .args(["heal", "--", "sh", "-c", "echo 'bash: line 1: terraform: command not found' >&2; exit 127"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("terraform: command not found"), "passed through");
    assert!(String::from_utf8_lossy(&out.stdout).contains("key       terraform"));
    let out = helix(dir.path()).args(["heal", "--", "true"]).output().expect("run");
    assert!(out.status.success() && out.stdout.is_empty());
}

#[test]
fn patterns_lint_and_search() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = helix(&root).args(["patterns", "lint"]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("all valid"));

    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("bad.toml"), "ecosystem = \"x\"\n[[patterns]]\nid = \"x.a\"\ntitle = \"t\"\nmatch = '(oops'\ncategory = \"unknown\"\nexplanation = \"e\"\n").expect("write");
    let out = helix(dir.path()).args(["patterns", "lint", "."]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:5"), "{err}");

    let out = helix(dir.path()).args(["patterns", "search", "rate", "limit"]).output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("llm.rate-limit"));
}

#[test]
fn mine_prints_a_template_per_input_line_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "Connection from 10.0.0.1 port 5512 closed\nuser alice logged in\nConnection from 10.0.0.7 port 6001 closed\nuser bob logged in\n",
    )
    .expect("write");
    let out = helix(dir.path()).arg("mine").arg(&log).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (id, t) = l.split_once('\t').expect("id<TAB>template");
            (id.to_owned(), t.to_owned())
        })
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], lines[2], "same event, same template");
    assert_ne!(lines[0].0, lines[1].0);
    assert!(lines[0].1.contains("Connection from <*>"), "{lines:?}");
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9_under_load() {
    let dir = tempfile::tempdir().expect("tmp");
    let spawn = || {
        helix(dir.path())
            .args(["serve", "trace-collector", "--trace-collector-port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let mut child = spawn();
    let url = read_banner(&mut child).get("trace-collector").expect("url").clone();
    // 8 writers post batches of 50 spans (one trace per batch) until the process dies
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let (url, acked) = (url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for b in 0..400u32 {
                let trace = w * 10_000 + b + 1;
                let batch: Vec<serde_json::Value> = (1..=50u32)
                    .map(|s| {
                        serde_json::json!({
                            "trace_id": format!("{trace:032x}"), "span_id": format!("{s:016x}"),
                            "name": "load", "kind": "other",
                            "start_unix_nanos": 1_764_000_000_000_000_000u64 + u64::from(s),
                            "end_unix_nanos": 1_764_000_000_000_000_100u64 + u64::from(s)
                        })
                    })
                    .collect();
                match http.post(format!("{url}/v1/events")).json(&batch).send().await {
                    Ok(res) if res.status() == 200 => acked.lock().expect("lock").push(trace),
                    _ => return,
                }
            }
        }));
    }
    // kill while the load runs: once a fair number of batches were acknowledged (waiting for a
    // count, not a fixed time, keeps this meaningful on a slow or busy machine)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 10, "the load ran ({} batches acknowledged)", acked.len());

    let mut child = spawn();
    let url = read_banner(&mut child).get("trace-collector").expect("url").clone();
    let http = reqwest::Client::new();
    for trace in &acked {
        let t: serde_json::Value = http
            .get(format!("{url}/v1/traces/{trace:032x}"))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(t["summary"]["spans"], 50, "acknowledged trace {trace} incomplete: {t}");
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn trace_import_sends_a_claude_transcript_to_the_collector() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, url) = serve(dir.path(), "trace-collector");
    let transcript = dir.path().join("session.jsonl");
    std::fs::write(
        &transcript,
        [
            r#"{"type":"system","subtype":"init","session_id":"s-42","model":"claude-sonnet-4-5","tools":["Bash"]}"#,
            r#"{"type":"assistant","session_id":"s-42","message":{"id":"m1","model":"claude-sonnet-4-5","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":10,"output_tokens":5}}}"#,
            r#"{"type":"user","session_id":"s-42","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"a b","is_error":false}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":1000,"num_turns":1,"session_id":"s-42","total_cost_usd":0.5}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    let out = helix(dir.path())
        .args(["trace", "import"])
        .arg(&transcript)
        .args(["--project", "demo", "--url", &url])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let trace_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace "))
        .and_then(|l| l.split(':').next())
        .expect("trace id")
        .to_owned();
    let t: serde_json::Value =
        reqwest::get(format!("{url}/v1/traces/{trace_id}")).await.expect("get").json().await.expect("json");
    assert_eq!(t["summary"]["project"], "demo");
    assert!(t["summary"]["spans"].as_u64().expect("spans") >= 3, "{t}");
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn trace_shows_a_span_tree_by_trace_id_or_project() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, url) = serve(dir.path(), "trace-collector");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let t0 = 1_764_082_800_000_000_000u64;
    let ms = 1_000_000u64;
    let span = |id: u64, parent: Option<u64>, name: &str, kind: &str, (start, end): (u64, u64)| {
        let mut e = serde_json::json!({
            "trace_id": trace, "span_id": format!("{id:016x}"), "name": name, "kind": kind,
            "start_unix_nanos": t0 + start * ms, "end_unix_nanos": t0 + end * ms,
            "status": "ok", "project": "shop-cli"
        });
        if let Some(p) = parent {
            e["parent_span_id"] = serde_json::json!(format!("{p:016x}"));
        }
        e
    };
    let mut phase = span(2, Some(1), "phase development", "phase", (0, 3000));
    phase["phase"] = serde_json::json!("development");
    let mut tool = span(3, Some(2), "execute_tool bash", "tool_call", (250, 1250));
    tool["phase"] = serde_json::json!("development");
    tool["status"] = serde_json::json!("error");
    tool["status_message"] = serde_json::json!("exit code 101");
    tool["attributes"] = serde_json::json!({
        "gen_ai.tool.name": "bash", "helix.tool.arguments": "cargo test", "helix.tool.result": "1 failed"
    });
    let mut llm = span(4, Some(2), "chat claude", "llm_call", (1500, 2500));
    llm["phase"] = serde_json::json!("development");
    llm["attributes"] = serde_json::json!({
        "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 2048,
        "gen_ai.usage.output_tokens": 512, "helix.cost_usd": 0.0125
    });
    let batch = vec![span(1, None, "run shop", "run", (0, 3000)), phase, tool, llm];
    let res =
        reqwest::Client::new().post(format!("{url}/v1/events")).json(&batch).send().await.expect("send");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());

    let run = |args: &[&str]| {
        let out = helix(dir.path()).arg("trace").args(args).args(["--url", &url]).output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // by trace id
    let (code, by_id, err) = run(&[trace]);
    assert_eq!(code, Some(0), "{err}");
    assert!(by_id.starts_with(&format!("trace {trace}  run shop")), "{by_id}");
    assert!(
        by_id.contains("  +0.250s   1.000s ✗    ├─ tool bash  cargo test  → 1 failed  ✗ exit code 101"),
        "{by_id}"
    );
    assert!(by_id.contains("llm claude-sonnet-4-5  2,048 in / 512 out tokens  $0.0125"), "{by_id}");
    assert!(
        by_id.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["development", "3.000s", "1", "1", "1", "2,048", "512", "$0.0125"]),
        "{by_id}"
    );
    assert!(by_id.lines().any(|l| l.starts_with("total ")), "{by_id}");
    assert!(!by_id.contains('\x1b'), "no colours on a pipe");

    // by project: its newest trace, the same tree; `show` says the same
    let (code, by_project, err) = run(&["shop-cli"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(by_project, by_id);
    assert_eq!(run(&["show", "shop-cli"]).1, by_id);

    // --phase, --json
    let (code, filtered, _) = run(&[trace, "--phase", "development"]);
    assert_eq!(code, Some(0));
    assert!(filtered.contains("run shop") && filtered.contains("tool bash"), "{filtered}");
    let (code, json, err) = run(&["shop-cli", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(json["summary"]["trace_id"], trace);
    assert_eq!(json["spans"][0]["children"][0]["children"].as_array().map(Vec::len), Some(2));

    // errors: one line, exit 1
    for (args, want) in [
        (vec!["ffffffffffffffffffffffffffffffff"], "no trace ffffffffffffffffffffffffffffffff"),
        (vec!["no-such-project"], "project \"no-such-project\" has no traces"),
        (vec![trace, "--phase", "deploy"], "has no phase \"deploy\""),
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(1), "{args:?}: {out}{err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
    child.kill().expect("kill");
    child.wait().expect("reap");

    let (code, _, err) = run(&[trace]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: cannot reach the trace-collector at"), "{err}");
}

#[tokio::test]
async fn costs_prints_the_table_by_project_and_day() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, url) = serve(dir.path(), "trace-collector");
    let events: Vec<serde_json::Value> = [("webshop", 0u64, 1.25), ("billing", 1, 0.5), ("webshop", 1, 0.25)]
        .iter()
        .enumerate()
        .map(|(i, (project, day, cost))| {
            serde_json::json!({
                "trace_id": format!("{:032x}", i + 1), "span_id": format!("{:016x}", i + 1),
                "name": "chat", "kind": "llm_call", "project": project,
                "start_unix_nanos": 1_764_028_800_000_000_000u64 + day * 86_400_000_000_000,
                "end_unix_nanos": 1_764_028_800_000_000_000u64 + day * 86_400_000_000_000 + 1_000_000_000,
                "attributes": {"gen_ai.request.model": "m", "helix.cost_usd": cost, "gen_ai.usage.input_tokens": 100}
            })
        })
        .collect();
    let res =
        reqwest::Client::new().post(format!("{url}/v1/events")).json(&events).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let out = helix(dir.path())
        .args(["costs", "--by", "project", "--bucket", "day", "--url", &url])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[1].starts_with("webshop") && lines[1].contains("2025-11-25") && lines[1].contains("$1.2500"),
        "{table}"
    );
    assert!(lines.last().expect("total").starts_with("total") && table.contains("$2.0000"), "{table}");
    let out = helix(dir.path()).args(["costs", "--by", "planet", "--url", &url]).output().expect("run");
    assert!(!out.status.success());
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn trace_follow_prints_spans_as_they_arrive() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut collector, url) = serve(dir.path(), "trace-collector");
    let mut follower = helix(dir.path())
        .args(["trace", "livefeed", "--follow", "--url", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn follower");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("first line");
    assert!(first.contains("waiting for spans of project livefeed"), "{first}");
    // the follower subscribes before it prints anything: nothing stored from here on is missed
    let event = serde_json::json!([{
        "trace_id": format!("{:032x}", 0xfeed), "span_id": format!("{:016x}", 1), "name": "execute_tool bash",
        "kind": "tool_call", "project": "livefeed", "start_unix_nanos": 1_764_000_000_000_000_000u64,
        "end_unix_nanos": 1_764_000_000_500_000_000u64, "attributes": {"gen_ai.tool.name": "bash"}
    }]);
    let res =
        reqwest::Client::new().post(format!("{url}/v1/events")).json(&event).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let line = rx.recv_timeout(Duration::from_secs(10)).expect("a span line");
    assert!(line.starts_with(&format!("{:032x}", 0xfeed)[..8]) && line.contains("bash"), "{line}");
    follower.kill().expect("kill");
    follower.wait().expect("reap");
    collector.kill().expect("kill");
    collector.wait().expect("reap");
}
