//! Running a command phase (or a command gate) as a child process that cannot outlive its budget.
//!
//! A phase is untrusted work: it may hang, stop printing, fork helpers that keep pipes open, or
//! print gigabytes. So every command runs in its own process group, and every way of ending it
//! early (timeout, stall, cancel) kills the whole group, not just the direct child; leftovers of
//! a command that exited normally are killed too, so no phase leaves processes behind. Output is
//! kept bounded (head and tail, the middle counted), because the interesting lines of a failure
//! are the first error and the last summary.
//!
//! Arguments are never interpreted by a shell unless the pipeline asked for one (`shell = true`),
//! and then the pipeline's variables reach the script as environment variables, never spliced
//! into its text, so values containing `;`, `$(...)` or quotes stay data.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// Variables of the orchestrator's own environment that a command inherits; everything else
/// (API keys, `HELIX_*` settings) stays out of phases. `LC_*` variables are inherited too.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "GOPATH",
    "GOCACHE",
    "GOMODCACHE",
    "JAVA_HOME",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
];

/// How long to keep reading the pipes after the process group was killed or the command ended;
/// only a process that left the group (setsid) can hold them open longer.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What to run: an argument vector (no shell involved) or a shell script run by `sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandSpec {
    Argv(Vec<String>),
    Shell(String),
}

impl CommandSpec {
    /// The program that will be executed (for messages).
    pub fn program(&self) -> &str {
        match self {
            CommandSpec::Argv(argv) => argv.first().map(String::as_str).unwrap_or(""),
            CommandSpec::Shell(_) => "sh",
        }
    }

    /// A one-line rendering for logs and plans; not meant to be re-parsed.
    pub fn display(&self) -> String {
        match self {
            CommandSpec::Argv(argv) => argv
                .iter()
                .map(|a| {
                    if !a.is_empty()
                        && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
                    {
                        a.clone()
                    } else {
                        format!("'{}'", a.replace('\'', r"'\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
            CommandSpec::Shell(script) => format!("sh -c {script:?}"),
        }
    }
}

/// Bounds of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit; the process group is killed when it is reached.
    pub timeout: Option<Duration>,
    /// Longest time without any output (stdout or stderr) before the group is killed.
    pub stall_timeout: Option<Duration>,
    /// Bytes of combined output kept (half from the start, half from the end).
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { timeout: None, stall_timeout: None, max_output_bytes: 1024 * 1024 }
    }
}

/// A cancellation signal shared between the runner and the executions it started.
#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Cancel {
    fn default() -> Cancel {
        Cancel::new()
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel { tx: Arc::new(watch::channel(false).0) }
    }

    /// Asks every execution holding this signal to stop (kills their process groups).
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once [`Cancel::cancel`] was called (at once if it already was).
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Exit code when the process exited on its own.
    pub exit_code: Option<i32>,
    /// Signal number when it was killed by one (by us or anything else).
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stalled: bool,
    pub cancelled: bool,
    /// Combined stdout and stderr in arrival order, possibly cut in the middle.
    pub output: String,
    /// Bytes of output dropped from the middle.
    pub output_truncated: u64,
    #[serde(rename = "duration_ms", with = "duration_ms")]
    pub duration: Duration,
}

impl Outcome {
    /// Exited on its own with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.stalled && !self.cancelled
    }

    /// A short human description: `exit code 1`, `timed out after 10s`, ...
    pub fn describe(&self) -> String {
        if self.timed_out {
            format!("timed out after {:.1}s", self.duration.as_secs_f64())
        } else if self.stalled {
            format!("stalled (no output) and was killed after {:.1}s", self.duration.as_secs_f64())
        } else if self.cancelled {
            "cancelled".to_owned()
        } else if let Some(code) = self.exit_code {
            format!("exit code {code}")
        } else if let Some(sig) = self.signal {
            format!("killed by signal {sig}")
        } else {
            "ended without exit status".to_owned()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("empty command")]
    Empty,
    #[error("command not found: {program}")]
    NotFound { program: String },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("working directory {dir} does not exist or is not a directory")]
    Cwd { dir: String },
    #[error("waiting for {program} failed: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// The environment a command sees: the inherited allow-list of the current process, then `env`.
pub fn command_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| INHERITED_ENV.contains(&k.as_str()) || k.starts_with("LC_"))
        .collect();
    out.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Runs `spec` in `cwd` with `env` added to the inherited allow-list (see [`INHERITED_ENV`]),
/// within `limits`, until it ends or `cancel` fires. Every early end kills the process group.
pub async fn run(
    spec: &CommandSpec,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    cancel: &Cancel,
) -> Result<Outcome, ExecError> {
    run_tracked(spec, cwd, env, limits, cancel, None).await
}

/// A running command's process group, as recorded in a file while it runs: if the orchestrator
/// dies (`kill -9`), nothing kills the group, so the next owner of the run reads this and does
/// ([`reap`]) before starting the phase again. The start time (clock ticks since boot, from
/// `/proc/PID/stat`) tells the group's leader from a later process that reused its pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub pgid: i32,
    pub start_ticks: u64,
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot; None for
/// no such process, or a zombie (dead, waiting for its parent to reap it).
fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: count after the last ')'
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    if rest.next()? == "Z" {
        return None;
    }
    rest.nth(18)?.parse().ok()
}

/// Kills the process group recorded in `file` if its leader is still the process that was
/// recorded, waits (bounded) until it is gone, and removes the file. Returns whether it killed.
pub fn reap(file: &Path) -> bool {
    let Some(rec) = std::fs::read(file).ok().and_then(|b| serde_json::from_slice::<GroupRecord>(&b).ok())
    else {
        let _ = std::fs::remove_file(file);
        return false;
    };
    let alive = start_ticks(rec.pgid) == Some(rec.start_ticks);
    if alive {
        let _ = killpg(Pid::from_raw(rec.pgid), Signal::SIGKILL);
        let until = Instant::now() + Duration::from_secs(2);
        while start_ticks(rec.pgid) == Some(rec.start_ticks) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_file(file);
    alive
}

/// [`run`], recording the command's process group in `group_file` while it runs (see
/// [`GroupRecord`]).
pub async fn run_tracked(
    spec: &CommandSpec,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    cancel: &Cancel,
    group_file: Option<&Path>,
) -> Result<Outcome, ExecError> {
    let (program, args): (&str, Vec<&str>) = match spec {
        CommandSpec::Argv(argv) => match argv.split_first() {
            Some((p, rest)) if !p.is_empty() => (p, rest.iter().map(String::as_str).collect()),
            _ => return Err(ExecError::Empty),
        },
        CommandSpec::Shell(script) => ("sh", vec!["-c", script]),
    };
    if !cwd.is_dir() {
        return Err(ExecError::Cwd { dir: cwd.display().to_string() });
    }
    let mut cmd = Command::new(program);
    cmd.args(&args)
        .current_dir(cwd)
        .env_clear()
        .envs(command_env(env))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ExecError::NotFound { program: program.to_owned() },
        _ => ExecError::Spawn { program: program.to_owned(), source },
    })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    if let (Some(file), Some(pid)) = (group_file, pgid) {
        // best effort: without the record a crash leaves the group running, as before
        if let Some(start_ticks) = start_ticks(pid.as_raw()) {
            let rec = GroupRecord { pgid: pid.as_raw(), start_ticks };
            if let Ok(bytes) = serde_json::to_vec(&rec) {
                let _ = std::fs::write(file, bytes);
            }
        }
    }

    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, tx.clone()));
    }
    drop(tx);

    let mut output = BoundedOutput::new(limits.max_output_bytes);
    let mut last_output = Instant::now();
    let deadline = limits.timeout.map(|t| start + t);
    let (mut timed_out, mut stalled, mut cancelled) = (false, false, false);
    let mut pipes_open = true;

    let status = loop {
        let stall_at = limits.stall_timeout.map(|s| last_output + s);
        tokio::select! {
            chunk = rx.recv(), if pipes_open => match chunk {
                Some(bytes) => {
                    last_output = Instant::now();
                    output.push(&bytes);
                }
                None => pipes_open = false,
            },
            status = child.wait() => break status,
            _ = sleep_until(deadline) => {
                timed_out = true;
                kill_group(pgid);
                break child.wait().await;
            }
            _ = sleep_until(stall_at) => {
                stalled = true;
                kill_group(pgid);
                break child.wait().await;
            }
            _ = cancel.cancelled() => {
                cancelled = true;
                kill_group(pgid);
                break child.wait().await;
            }
        }
    };
    let status = status.map_err(|source| ExecError::Wait { program: program.to_owned(), source })?;
    // Whatever the command left running in its group goes with it.
    kill_group(pgid);
    if let Some(file) = group_file {
        let _ = std::fs::remove_file(file);
    }
    let drain_until = tokio::time::Instant::now() + DRAIN_GRACE;
    while pipes_open {
        match tokio::time::timeout_at(drain_until, rx.recv()).await {
            Ok(Some(bytes)) => output.push(&bytes),
            Ok(None) | Err(_) => pipes_open = false,
        }
    }

    use std::os::unix::process::ExitStatusExt;
    let (text, truncated) = output.finish();
    Ok(Outcome {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        stalled,
        cancelled,
        output: text,
        output_truncated: truncated,
        duration: start.elapsed(),
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn kill_group(pgid: Option<Pid>) {
    if let Some(pgid) = pgid {
        // ESRCH (group already gone) is the normal case after a clean exit.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

async fn pump(mut reader: impl tokio::io::AsyncRead + Unpin, tx: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Combined output with a fixed budget: the first half is kept as it comes, then a rolling tail.
struct BoundedOutput {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    dropped: u64,
}

impl BoundedOutput {
    fn new(max: usize) -> BoundedOutput {
        let head_cap = max / 2;
        BoundedOutput {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            head_cap,
            tail_cap: max - head_cap,
            dropped: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let n = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.len() >= self.tail_cap {
            self.dropped += (self.tail.len() + bytes.len() - self.tail_cap) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(bytes);
    }

    fn finish(self) -> (String, u64) {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!("\n[... {} bytes of output omitted ...]\n", self.dropped));
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        text.push_str(&String::from_utf8_lossy(&tail));
        (text, self.dropped)
    }
}

/// Serde helper: a [`Duration`] as whole milliseconds.
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }

    /// The same for `Option<Duration>`.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reap_kills_a_recorded_group_its_owner_left_behind_and_only_that() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("running.group");
        // what an orchestrator killed with -9 leaves: a phase's group still running, and its record
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .process_group(0)
            .spawn()
            .expect("spawn");
        let pgid = child.id() as i32;
        let rec = GroupRecord { pgid, start_ticks: start_ticks(pgid).expect("stat") };
        std::fs::write(&file, serde_json::to_vec(&rec).expect("json")).expect("write");
        assert!(reap(&file), "the recorded group was alive");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "killed, not finished: {status:?}");
        assert!(!file.exists());
        // a record whose process is gone (or whose pid was reused) kills nothing
        let stale = GroupRecord { pgid, start_ticks: rec.start_ticks + 1 };
        std::fs::write(&file, serde_json::to_vec(&stale).expect("json")).expect("write");
        assert!(!reap(&file));
        assert!(!file.exists());
    }

    fn argv(args: &[&str]) -> CommandSpec {
        CommandSpec::Argv(args.iter().map(|s| s.to_string()).collect())
    }

    async fn go(spec: CommandSpec, env: &[(&str, &str)], limits: Limits) -> Outcome {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        run(&spec, dir.path(), &env, &limits, &Cancel::new()).await.expect("run")
    }

    fn pid_alive(pid: i32) -> bool {
        // A zombie still has a /proc entry; its state letter is Z.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn exit_codes_and_output_are_reported() {
        let ok = go(argv(&["sh", "-c", "echo out; echo err >&2"]), &[], Limits::default()).await;
        assert_eq!(ok.exit_code, Some(0));
        assert!(ok.success());
        assert!(ok.output.contains("out\n") && ok.output.contains("err\n"), "{}", ok.output);
        let failed = go(argv(&["sh", "-c", "exit 3"]), &[], Limits::default()).await;
        assert_eq!(failed.exit_code, Some(3));
        assert!(!failed.success());
        assert_eq!(failed.describe(), "exit code 3");
        let f = go(argv(&["false"]), &[], Limits::default()).await;
        assert_eq!(f.exit_code, Some(1));
    }

    #[tokio::test]
    async fn argv_is_passed_literally() {
        let hostile = "a b; echo pwned $(id) `id` $HOME 'q\"\n";
        let out =
            go(argv(&["printf", "%s|", hostile, "$VAR"]), &[("VAR", "expanded")], Limits::default()).await;
        assert_eq!(out.output, format!("{hostile}|$VAR|"));
    }

    #[tokio::test]
    async fn shell_gets_variables_from_the_environment() {
        let out = go(
            CommandSpec::Shell("printf '%s' \"$NAME\"".into()),
            &[("NAME", "x; echo injected")],
            Limits::default(),
        )
        .await;
        assert_eq!(out.output, "x; echo injected");
    }

    #[tokio::test]
    async fn environment_is_an_allow_list_plus_the_given_env() {
        let env: BTreeMap<String, String> = [("PHASE_VAR".to_owned(), "1".to_owned())].into();
        let seen = command_env(&env);
        assert_eq!(seen.get("PHASE_VAR").map(String::as_str), Some("1"));
        assert!(seen.contains_key("PATH"));
        assert!(
            seen.keys()
                .all(|k| k == "PHASE_VAR" || INHERITED_ENV.contains(&k.as_str()) || k.starts_with("LC_"))
        );
        let out = go(argv(&["sh", "-c", "env"]), &[("PHASE_VAR", "1")], Limits::default()).await;
        assert!(out.output.lines().any(|l| l == "PHASE_VAR=1"), "{}", out.output);
        assert!(out.output.lines().any(|l| l.starts_with("PATH=")), "{}", out.output);
        assert!(!out.output.contains("CARGO_PKG_NAME="), "{}", out.output);
    }

    #[tokio::test]
    async fn command_not_found_names_the_program() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = run(
            &argv(&["helix-no-such-program"]),
            dir.path(),
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
        )
        .await
        .expect_err("missing program");
        assert_eq!(err.to_string(), "command not found: helix-no-such-program");
        let err = run(&argv(&[]), dir.path(), &BTreeMap::new(), &Limits::default(), &Cancel::new())
            .await
            .expect_err("empty");
        assert!(matches!(err, ExecError::Empty));
        let err = run(
            &argv(&["true"]),
            &dir.path().join("nope"),
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
        )
        .await
        .expect_err("cwd");
        assert!(matches!(err, ExecError::Cwd { .. }), "{err}");
    }

    #[tokio::test]
    async fn timeout_kills() {
        let limits = Limits { timeout: Some(Duration::from_millis(300)), ..Limits::default() };
        let out = go(argv(&["sleep", "30"]), &[], limits).await;
        assert!(out.timed_out && !out.stalled);
        assert_eq!(out.signal, Some(9));
        assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
        assert!(out.describe().starts_with("timed out"));
    }

    #[tokio::test]
    async fn stall_kills_a_silent_process_but_not_a_chatty_one() {
        let limits = Limits { stall_timeout: Some(Duration::from_millis(400)), ..Limits::default() };
        let out = go(argv(&["sh", "-c", "echo started; sleep 30"]), &[], limits).await;
        assert!(out.stalled && !out.timed_out);
        assert!(out.output.contains("started"));
        assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);

        // Prints every 100 ms for 0.8 s: never silent for 400 ms, so it completes.
        let chatty = go(
            CommandSpec::Shell("for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.1; done".into()),
            &[],
            limits,
        )
        .await;
        assert!(!chatty.stalled, "{chatty:?}");
        assert_eq!(chatty.exit_code, Some(0));
    }

    #[tokio::test]
    async fn the_whole_process_group_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits { timeout: Some(Duration::from_millis(500)), ..Limits::default() };
        // The grandchild writes its pid, then the shell waits on it.
        let spec = CommandSpec::Shell("sleep 30 & echo $! > grandchild.pid; wait".into());
        let out = run(&spec, dir.path(), &BTreeMap::new(), &limits, &Cancel::new()).await.expect("run");
        assert!(out.timed_out);
        assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
        let pid: i32 = std::fs::read_to_string(dir.path().join("grandchild.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let gone = async {
            while pid_alive(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(3), gone).await.expect("grandchild still alive");
    }

    #[tokio::test]
    async fn background_leftovers_do_not_keep_the_phase_running() {
        // The shell exits at once; its background child holds stdout open and must not survive.
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits { timeout: Some(Duration::from_secs(10)), ..Limits::default() };
        let spec = CommandSpec::Shell("sleep 30 & echo $! > bg.pid; echo done".into());
        let out = run(&spec, dir.path(), &BTreeMap::new(), &limits, &Cancel::new()).await.expect("run");
        assert_eq!(out.exit_code, Some(0));
        assert!(out.output.contains("done"));
        assert!(out.duration < DRAIN_GRACE, "{:?}", out.duration);
        let pid: i32 =
            std::fs::read_to_string(dir.path().join("bg.pid")).expect("pid").trim().parse().expect("pid");
        let gone = async {
            while pid_alive(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(3), gone).await.expect("background process still alive");
    }

    #[tokio::test]
    async fn cancel_kills() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c2.cancel();
        });
        let out = run(&argv(&["sleep", "30"]), dir.path(), &BTreeMap::new(), &Limits::default(), &cancel)
            .await
            .expect("run");
        assert!(out.cancelled && cancel.is_cancelled());
        assert!(out.duration < Duration::from_secs(5));
        // An already cancelled signal stops a new command at once.
        let out = run(&argv(&["sleep", "30"]), dir.path(), &BTreeMap::new(), &Limits::default(), &cancel)
            .await
            .expect("run");
        assert!(out.cancelled);
    }

    #[tokio::test]
    async fn big_output_keeps_head_and_tail() {
        let limits = Limits { max_output_bytes: 1000, ..Limits::default() };
        // 20,000 numbered lines, about 110 KB.
        let out = go(CommandSpec::Shell("seq -f 'line %g' 1 20000; echo LAST".into()), &[], limits).await;
        assert_eq!(out.exit_code, Some(0));
        assert!(out.output.starts_with("line 1\nline 2\n"), "{}", &out.output[..50]);
        assert!(out.output.ends_with("line 20000\nLAST\n"));
        assert!(out.output_truncated > 100_000, "{}", out.output_truncated);
        assert!(out.output.contains("bytes of output omitted"));
        assert!(out.output.len() < 1100);
        let total: u64 = (1..=20000u64).map(|i| format!("line {i}\n").len() as u64).sum::<u64>() + 5;
        assert_eq!(out.output_truncated, total - 1000);
    }

    #[test]
    fn bounded_output_keeps_everything_under_the_limit() {
        let mut b = BoundedOutput::new(10);
        b.push(b"abc");
        b.push(b"defg");
        assert_eq!(b.finish(), ("abcdefg".to_owned(), 0));
        let mut b = BoundedOutput::new(10);
        for chunk in [&b"01234"[..], b"56", b"789", b"ABCDEFGH"] {
            b.push(chunk);
        }
        let (text, dropped) = b.finish();
        assert_eq!(dropped, 8);
        assert!(text.starts_with("01234\n[... 8 bytes") && text.ends_with("DEFGH"), "{text}");
    }

    #[test]
    fn outcome_round_trips_through_json() {
        let o = Outcome {
            exit_code: Some(1),
            signal: None,
            timed_out: false,
            stalled: false,
            cancelled: false,
            output: "x".into(),
            output_truncated: 0,
            duration: Duration::from_millis(1500),
        };
        let json = serde_json::to_value(&o).expect("json");
        assert_eq!(json["duration_ms"], 1500);
        assert_eq!(serde_json::from_value::<Outcome>(json).expect("back"), o);
        assert_eq!(argv(&["pytest", "-k", "a b"]).display(), "pytest -k 'a b'");
    }
}
