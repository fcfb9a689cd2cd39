//! `helix plan`, `run`, `runs`, `resume`, `replay` as a user runs them: the real binary against a
//! real `helix up` (its own data directory, free ports), with pipelines of `sh`, `true` and
//! `false` phases. Nothing here needs the network.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

/// `helix up` on free ports with its data in `data`; killed when dropped.
struct Up {
    child: Child,
    url: String,
}

impl Up {
    fn start(data: &Path) -> Up {
        std::fs::create_dir_all(data).expect("mkdir data");
        let mut child = helix(data)
            .arg("up")
            .arg("--data-dir")
            .arg(data)
            .args(["--orchestrator-port", "0", "--trace-collector-port", "0"])
            .args(["--breaker-gateway-port", "0", "--healer-port", "0"])
            .env("HELIX_ORCHESTRATOR__RETRY_BACKOFF_MS", "50")
            // the test's pipelines and workdirs live next to the data directory
            .env("HELIX_ORCHESTRATOR__ROOTS", data.parent().unwrap_or(data))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn helix up");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut url = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if line.starts_with("press Ctrl-C") {
                break;
            }
            let mut words = line.split_whitespace();
            if words.next() == Some("orchestrator") {
                url = words.next().map(str::to_owned);
            }
        }
        Up { child, url: url.expect("the banner names the orchestrator's URL") }
    }

    /// `helix ARGS --url URL` in `cwd`.
    fn cli(&self, cwd: &Path, args: &[&str]) -> Output {
        helix(cwd).args(args).args(["--url", &self.url]).output().expect("run helix")
    }

    /// `GET /v1/runs/{id}`.
    async fn run_json(&self, id: &str) -> serde_json::Value {
        let res = reqwest::get(format!("{}/v1/runs/{id}", self.url)).await.expect("get run");
        assert_eq!(res.status(), 200);
        res.json().await.expect("run json")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit code, stdout and stderr, for assertion messages.
fn show(o: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}--- stderr\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// The word after `prefix` in `s` (a run id, a token, a path).
fn word_after(s: &str, prefix: &str) -> String {
    let at = s.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in\n{s}"));
    s[at + prefix.len()..].split_whitespace().next().unwrap_or_default().trim_matches('`').to_owned()
}

fn write_pipeline(dir: &Path, toml: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, toml).expect("write pipeline");
    path
}

const DEMO: &str = r#"name = "demo"

[[phase]]
name = "write"
kind = "command"
run = ["sh", "-c", "echo hello > out.txt"]
[[phase.gate]]
name = "out written"
kind = "files_exist"
paths = ["out.txt"]
non_empty = true

[[phase]]
name = "append"
kind = "command"
run = ["sh", "-c", "cat out.txt && echo world >> out.txt"]
"#;

#[tokio::test]
async fn plan_executes_nothing_then_run_succeeds_is_listed_and_replays_identically() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = Up::start(&tmp.path().join("data"));
    let project = tmp.path().join("project");
    let pipeline = write_pipeline(&project, DEMO);
    let file = pipeline.to_str().expect("utf-8 path");

    // plan: both phases, executes nothing
    let out = up.cli(tmp.path(), &["plan", file, "--project", "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let plan = text(&out.stdout);
    assert!(plan.starts_with("plan demo · project shop · 2 phases"), "{plan}");
    for row in ["0  write   command  sh -c 'echo hello > out.txt'", "1  append  command  sh -c 'cat out.txt"]
    {
        assert!(plan.contains(row), "no {row:?} in\n{plan}");
    }
    assert!(
        plan.contains("gate: out written (files_exist") && plan.contains("nothing was executed"),
        "{plan}"
    );
    assert!(!project.join("out.txt").exists(), "a plan must not run the phases");
    let out = up.cli(tmp.path(), &["runs", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("runs json");
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(0), "a plan starts no run: {list}");
    let out = up.cli(tmp.path(), &["plan", file, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    assert_eq!(json["phases"][1]["name"], "append", "{json}");

    // run: follows to the end, prints the workspace
    let out = up.cli(tmp.path(), &["run", file, "--project", "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = text(&out.stdout);
    let id = word_after(&stdout, "run ");
    assert!(stdout.contains("resume token hxr_"), "{stdout}");
    for line in ["write         #1  attempt 1 of write", "append        #1  phase append passed", "succeeded"]
    {
        assert!(stdout.contains(line), "no {line:?} in\n{stdout}");
    }
    let workspace = PathBuf::from(word_after(&stdout, "\nworkspace "));
    assert_eq!(std::fs::read_to_string(workspace.join("out.txt")).expect("out.txt"), "hello\nworld\n");
    assert!(!project.join("out.txt").exists(), "phases run in their own workspace, not in the source");

    // runs: listed as succeeded
    let out = up.cli(tmp.path(), &["runs", "--json", "--project", "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("runs json");
    assert_eq!(list["runs"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["runs"][0]["status"], "succeeded", "{list}");
    let out = up.cli(tmp.path(), &["runs"]);
    let table = text(&out.stdout);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with(&id[..8]) && l.contains("succeeded")),
        "{table}"
    );

    // replay by index and by name, naming the run by the start of its id: identical
    for phase in ["0", "append"] {
        let out = up.cli(tmp.path(), &["replay", &id[..8], "--phase", phase]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let report = text(&out.stdout);
        assert!(report.contains("result: identical to the recording"), "{report}");
    }
    let out = up.cli(tmp.path(), &["replay", &id, "--phase", "nope"]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stderr).contains("nope"), "{}", show(&out));
}

#[test]
fn invalid_pipeline_exits_2_naming_the_line_and_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = Up::start(&tmp.path().join("data"));
    let pipeline = write_pipeline(
        &tmp.path().join("bad"),
        "name = \"bad\"\n\n[[phase]]\nname = \"x\"\nkind = \"command\"\nrun = [\"true\"]\nretires = 0\n",
    );
    let file = pipeline.to_str().expect("utf-8 path");
    for cmd in ["run", "plan"] {
        let out = up.cli(tmp.path(), &[cmd, file]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", show(&out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("line 7") && stderr.contains("retires"), "{cmd}: {stderr}");
    }
    let out = up.cli(tmp.path(), &["run", "missing.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("missing.toml"), "{}", show(&out));
}

#[tokio::test]
async fn failed_run_exits_1_with_a_token_and_resume_runs_only_the_failed_phase_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let up = Up::start(&tmp.path().join("data"));
    let pipeline = write_pipeline(
        &tmp.path().join("fails"),
        "name = \"fails\"\n\n[[phase]]\nname = \"fine\"\nkind = \"command\"\nrun = [\"true\"]\n\n\
         [[phase]]\nname = \"broken\"\nkind = \"command\"\nrun = [\"false\"]\nretries = 0\n",
    );
    let out = up.cli(tmp.path(), &["run", pipeline.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = text(&out.stdout);
    let id = word_after(&stdout, "run ");
    assert!(stdout.contains("needs_human · 1/2 phases"), "{stdout}");
    let token = word_after(&stdout, "resume with: helix resume ");
    assert!(token.starts_with("hxr_"), "{stdout}");

    let before = up.run_json(&id).await;
    let checkpoints = before["checkpoints"].as_array().map_or(0, Vec::len);
    let started = before["failed"]["attempts"][0]["started_at"].as_str().expect("attempt").to_owned();

    // nothing was fixed: it runs again and fails again
    let out = up.cli(tmp.path(), &["resume", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("resumed run {id}")), "{stdout}");
    assert!(stdout.contains("broken        #1  attempt 1 of broken"), "{stdout}");
    assert!(
        !stdout.contains("attempt 1 of fine"),
        "a completed phase is not redone, nor its events shown:\n{stdout}"
    );
    // the first session's end is not shown again: one run_finished line
    assert_eq!(stdout.matches("needs_human: phase broken failed").count(), 1, "{stdout}");
    let again = word_after(&stdout, "resume with: helix resume ");
    assert!(again.starts_with("hxr_") && again != token, "a newer checkpoint, a newer token:\n{stdout}");

    let after = up.run_json(&id).await;
    assert_eq!(after["status"], "needs_human", "{after}");
    assert!(after["checkpoints"].as_array().map_or(0, Vec::len) > checkpoints, "{after}");
    let restarted = after["failed"]["attempts"][0]["started_at"].as_str().expect("attempt");
    assert!(restarted > started.as_str(), "the failed phase ran again: {started} then {restarted}");

    // replaying the failed phase fails as recorded: exit 1
    let out = up.cli(tmp.path(), &["replay", &id, "--phase", "broken"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stdout).contains("result: the phase failed"), "{}", show(&out));

    // a mistyped token is refused locally
    let mut bad = token.clone();
    bad.pop();
    let out = up.cli(tmp.path(), &["resume", &bad]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("damaged or mistyped"), "{}", show(&out));
}

#[test]
fn a_killed_orchestrator_ends_the_follow_with_exit_2_and_the_token_that_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let mut up = Up::start(&data);
    let pipeline = write_pipeline(
        &tmp.path().join("slow"),
        "name = \"slow\"\n\n[[phase]]\nname = \"first\"\nkind = \"command\"\nrun = [\"sh\", \"-c\", \"echo 1 > one\"]\n\n\
         [[phase]]\nname = \"second\"\nkind = \"command\"\nrun = [\"sleep\", \"2\"]\n",
    );
    let mut follow = helix(tmp.path())
        .args(["run", pipeline.to_str().expect("utf-8 path"), "--url", &up.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helix run");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("attempt 1 of second") {
            break;
        }
    }
    assert!(seen.contains("attempt 1 of second"), "{seen}");
    up.child.kill().expect("kill -9 the orchestrator");
    let _ = up.child.wait();

    let start = Instant::now();
    let status = loop {
        if let Some(s) = follow.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "helix run did not notice");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follow.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(stderr.contains("lost the orchestrator"), "{stderr}");
    let token = word_after(&stderr, "helix resume ");

    // a new orchestrator on the same data resumes from the checkpoint after `first`
    let up = Up::start(&data);
    let out = up.cli(tmp.path(), &["resume", &token]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("at phase 2/2") && !stdout.contains("attempt 1 of first"), "{stdout}");
    let workspace = PathBuf::from(word_after(&stdout, "\nworkspace "));
    assert_eq!(std::fs::read_to_string(workspace.join("one")).expect("one"), "1\n");
}
