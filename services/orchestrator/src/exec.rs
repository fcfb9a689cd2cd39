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
//!
//! What a command may reach is bounded by its [`Jail`]: the environment is an allow-list plus
//! what the pipeline gives it (secrets only at spawn, never recorded, and masked in the output
//! it prints); rlimits bound CPU time, address space, file size and processes (through
//! util-linux's `prlimit`); and with bubblewrap ([`Sandbox`]) the command runs in its own PID
//! namespace (it sees no other process, so no other `/proc/PID/environ`; when it ends or is
//! killed, everything it started dies with the namespace, daemons included) with Helix's data
//! directory hidden except for its own workspace.

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

/// Resource limits of each process of a command (rlimits); `None`: not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rlimits {
    /// CPU seconds (RLIMIT_CPU).
    pub cpu_secs: Option<u64>,
    /// Address space in bytes (RLIMIT_AS).
    pub address_space_bytes: Option<u64>,
    /// Largest file in bytes (RLIMIT_FSIZE).
    pub file_size_bytes: Option<u64>,
    /// Processes of the user (RLIMIT_NPROC).
    pub processes: Option<u64>,
}

impl Rlimits {
    /// The limits of `[orchestrator.limits]` (0: none).
    pub fn from_config(c: &helix_core::config::PhaseLimitsConfig) -> Rlimits {
        let some = |v: u64| (v > 0).then_some(v);
        Rlimits {
            cpu_secs: some(c.cpu_secs),
            address_space_bytes: some(c.address_space_bytes),
            file_size_bytes: some(c.file_size_bytes),
            processes: some(c.processes),
        }
    }

    /// `over`'s limits where it sets them, these elsewhere.
    pub fn overlaid(self, over: Rlimits) -> Rlimits {
        Rlimits {
            cpu_secs: over.cpu_secs.or(self.cpu_secs),
            address_space_bytes: over.address_space_bytes.or(self.address_space_bytes),
            file_size_bytes: over.file_size_bytes.or(self.file_size_bytes),
            processes: over.processes.or(self.processes),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Rlimits::default()
    }

    /// `prlimit` options setting these limits (soft and hard).
    fn prlimit_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, v) in [
            ("--cpu", self.cpu_secs),
            ("--as", self.address_space_bytes),
            ("--fsize", self.file_size_bytes),
            ("--nproc", self.processes),
        ] {
            if let Some(v) = v {
                args.push(format!("{flag}={v}"));
            }
        }
        args
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

/// How commands are isolated, decided once when the orchestrator starts (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    inner: Arc<SandboxInner>,
}

#[derive(Debug, Default)]
struct SandboxInner {
    /// bubblewrap, when it is used.
    bwrap: Option<std::path::PathBuf>,
    /// util-linux's prlimit, when it is installed.
    prlimit: Option<std::path::PathBuf>,
    /// Directories replaced by an empty tmpfs inside the sandbox (Helix's data).
    hide_dirs: Vec<std::path::PathBuf>,
    /// Files replaced by an empty file inside the sandbox (token and secrets files).
    hide_files: Vec<std::path::PathBuf>,
}

/// A program on `PATH`.
fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = helix_core::env::var("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Whether bubblewrap can make a PID namespace here (containers may forbid it).
fn bwrap_works(bwrap: &Path) -> Result<(), String> {
    let out = std::process::Command::new(bwrap)
        .args([
            "--die-with-parent",
            "--unshare-pid",
            "--bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--",
            "true",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().chars().take(300).collect())
    }
}

impl Sandbox {
    /// No namespaces (rlimits still apply when prlimit is installed).
    pub fn none() -> Sandbox {
        Sandbox {
            inner: Arc::new(SandboxInner { prlimit: find_program("prlimit"), ..SandboxInner::default() }),
        }
    }

    /// The sandbox `mode` asks for, hiding `hide_dirs` (Helix's data directory; the command's
    /// own working directory stays visible) and `hide_files`. `auto` falls back to none when
    /// bubblewrap is missing or cannot run here; `bwrap` then fails.
    pub fn detect(
        mode: helix_core::config::SandboxMode,
        hide_dirs: Vec<std::path::PathBuf>,
        hide_files: Vec<std::path::PathBuf>,
    ) -> Result<Sandbox, String> {
        use helix_core::config::SandboxMode;
        let prlimit = find_program("prlimit");
        if prlimit.is_none() {
            tracing::warn!("prlimit (util-linux) is not installed: phases run without rlimits");
        }
        let bwrap = match mode {
            SandboxMode::None => None,
            SandboxMode::Auto | SandboxMode::Bwrap => {
                match find_program("bwrap") {
                    Some(b) => match bwrap_works(&b) {
                        Ok(()) => Some(b),
                        Err(e) if mode == SandboxMode::Bwrap => {
                            return Err(format!("bubblewrap cannot run here: {e}"));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "bubblewrap cannot run here: phases run without a PID namespace");
                            None
                        }
                    },
                    None if mode == SandboxMode::Bwrap => {
                        return Err("orchestrator.sandbox = \"bwrap\" but bwrap is not installed (Debian: bubblewrap)".to_owned());
                    }
                    None => {
                        tracing::warn!(
                            "bubblewrap is not installed: phases run without a PID namespace (Debian: apt-get install bubblewrap)"
                        );
                        None
                    }
                }
            }
        };
        let canonical = |p: std::path::PathBuf| p.canonicalize().unwrap_or(p);
        Ok(Sandbox {
            inner: Arc::new(SandboxInner {
                bwrap,
                prlimit,
                hide_dirs: hide_dirs.into_iter().map(canonical).collect(),
                hide_files: hide_files.into_iter().filter(|f| f.is_file()).map(canonical).collect(),
            }),
        })
    }

    /// Whether commands get their own PID namespace.
    pub fn is_namespaced(&self) -> bool {
        self.inner.bwrap.is_some()
    }

    /// `argv` wrapped in the sandbox and the rlimits, to run in `cwd`.
    fn wrap(
        &self,
        argv: Vec<String>,
        cwd: &Path,
        rlimits: &Rlimits,
        binds: &[std::path::PathBuf],
    ) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(bwrap) = &self.inner.bwrap {
            let cwd = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
            let s = |p: &Path| p.display().to_string();
            out.push(s(bwrap));
            out.extend(
                [
                    "--die-with-parent",
                    "--unshare-pid",
                    "--unshare-ipc",
                    "--new-session",
                    "--bind",
                    "/",
                    "/",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                ]
                .map(str::to_owned),
            );
            for d in &self.inner.hide_dirs {
                out.extend(["--tmpfs".to_owned(), s(d)]);
            }
            for f in &self.inner.hide_files {
                out.extend(["--ro-bind".to_owned(), "/dev/null".to_owned(), s(f)]);
            }
            if self.inner.hide_dirs.iter().any(|d| cwd.starts_with(d)) {
                out.extend(["--bind".to_owned(), s(&cwd), s(&cwd)]);
            }
            for b in binds {
                let b = b.canonicalize().unwrap_or_else(|_| b.clone());
                if self.inner.hide_dirs.iter().any(|d| b.starts_with(d)) {
                    out.extend(["--bind".to_owned(), s(&b), s(&b)]);
                }
            }
            out.extend(["--chdir".to_owned(), s(&cwd), "--".to_owned()]);
        }
        if let Some(prlimit) = self.inner.prlimit.as_ref().filter(|_| !rlimits.is_empty()) {
            out.push(prlimit.display().to_string());
            out.extend(rlimits.prlimit_args());
            out.push("--".to_owned());
        }
        out.extend(argv);
        out
    }
}

/// Everything that bounds what a command can reach, besides time and output (see [`Limits`]).
#[derive(Debug, Clone, Default)]
pub struct Jail {
    pub sandbox: Sandbox,
    /// Per-process resource limits.
    pub rlimits: Rlimits,
    /// Added to the command's environment when it starts; never recorded.
    pub secrets: BTreeMap<String, String>,
    /// Masks the secrets' values in what the command prints.
    pub masker: helix_core::redact::Masker,
    /// The attempt's cgroup (see [`crate::contain`]): every command joins it before it starts
    /// and everything in it is killed when the command ends.
    pub cgroup: Option<Arc<crate::contain::Group>>,
    /// Directories the command may write besides its workspace, visible inside the sandbox
    /// even where they lie under a hidden directory (an agent's scratch home).
    pub binds: Vec<std::path::PathBuf>,
}

impl Jail {
    /// A jail with `rlimits` and `secrets`, the secrets masked in the output.
    pub fn new(sandbox: Sandbox, rlimits: Rlimits, secrets: BTreeMap<String, String>) -> Jail {
        let masker = helix_core::redact::Masker::new(secrets.values());
        Jail { sandbox, rlimits, secrets, masker, cgroup: None, binds: Vec::new() }
    }

    /// This jail, its commands contained in `cgroup`.
    pub fn contained(mut self, cgroup: Option<Arc<crate::contain::Group>>) -> Jail {
        self.cgroup = cgroup;
        self
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
    /// Gate patterns matched against the whole output (kept or not) and their first hits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scanned: Vec<(String, Option<crate::scan::Hit>)>,
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
    let mut out: BTreeMap<String, String> = helix_core::env::vars()
        .into_iter()
        .filter(|(k, _)| INHERITED_ENV.contains(&k.as_str()) || k.starts_with("LC_"))
        .collect();
    out.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Runs `spec` in `cwd` with `env` added to the inherited allow-list (see [`INHERITED_ENV`]),
/// within `limits`, until it ends or `cancel` fires. Every early end kills the process group.
/// No sandbox, no secrets: see [`run_jailed`].
pub async fn run(
    spec: &CommandSpec,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    cancel: &Cancel,
) -> Result<Outcome, ExecError> {
    run_jailed(spec, cwd, env, limits, cancel, None, &Jail::default()).await
}

/// A running command's process group, as recorded in a file while it runs: if the orchestrator
/// dies (`kill -9`), nothing kills the group, so the next owner of the run reads this and does
/// ([`reap`]) before starting the phase again. The start time (clock ticks since boot, from
/// `/proc/PID/stat`) tells the group's leader from a later process that reused its pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub pgid: i32,
    pub start_ticks: u64,
    /// The command's containment marker ([`crate::contain::MARKER_VAR`]); absent in records
    /// written before it existed.
    #[serde(default)]
    pub marker: Option<String>,
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot; None for
/// no such process, or a zombie (dead, waiting for its parent to reap it).
pub(crate) fn start_ticks(pid: i32) -> Option<u64> {
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
    // The leader may have died while its children live on (a shell killed, its `sleep &`
    // orphaned): the group lives as long as any member does, and the kernel does not hand out a
    // pid that is still some group's id, so members that started after the leader are ours.
    // what left the group (a `setsid` daemon) still carries the command's marker
    let marked = rec.marker.as_deref().map_or(0, crate::contain::kill_marked);
    let alive = marked > 0
        || start_ticks(rec.pgid) == Some(rec.start_ticks)
        || group_members(rec.pgid, rec.start_ticks) > 0;
    if alive {
        let _ = killpg(Pid::from_raw(rec.pgid), Signal::SIGKILL);
        let until = Instant::now() + Duration::from_secs(2);
        while (start_ticks(rec.pgid) == Some(rec.start_ticks) || group_members(rec.pgid, rec.start_ticks) > 0)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_file(file);
    alive
}

/// Live (not zombie) processes of process group `pgid` that started at or after `since` (clock
/// ticks since boot).
fn group_members(pgid: i32, since: u64) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let Some(close) = stat.rfind(')') else { return false };
            // after the name: state ppid pgrp session ... starttime (field 22)
            let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            rest.first().is_some_and(|s| *s != "Z")
                && rest.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
                && rest.get(19).and_then(|t| t.parse::<u64>().ok()).is_some_and(|t| t >= since)
        })
        .count()
}

/// Whether `program` can be started: a path to an executable file, or a name on `PATH`. Checked
/// before a sandbox or prlimit wraps it, so "command not found" names the program, not bwrap.
fn resolvable(program: &str, cwd: &Path, env: &BTreeMap<String, String>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return executable(&cwd.join(program));
    }
    let path = env.get("PATH").cloned().unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned());
    std::env::split_paths(&path).any(|d| executable(&d.join(program)))
}

/// [`run`] in `jail`, recording the command's process group in `group_file` while it runs (see
/// [`GroupRecord`]).
pub async fn run_jailed(
    spec: &CommandSpec,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    cancel: &Cancel,
    group_file: Option<&Path>,
    jail: &Jail,
) -> Result<Outcome, ExecError> {
    run_scanning(spec, cwd, env, limits, cancel, group_file, jail, &[]).await
}

/// [`run_jailed`], matching `patterns` against the whole output as it streams (see
/// [`crate::scan`]): the first hit of each is in [`Outcome::scanned`], even where the kept
/// output was cut.
#[allow(clippy::too_many_arguments)]
pub async fn run_scanning(
    spec: &CommandSpec,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    cancel: &Cancel,
    group_file: Option<&Path>,
    jail: &Jail,
    patterns: &[String],
) -> Result<Outcome, ExecError> {
    run_observed(spec, cwd, env, limits, cancel, group_file, jail, patterns, None).await
}

/// Longest stdout line handed to a line observer; the rest of a longer line is dropped (an
/// agent's JSON event is a few KB; a line of megabytes is output, not an event).
pub const MAX_OBSERVED_LINE: usize = 1 << 20;

/// [`run_scanning`], also handing each line of the command's **stdout** (not stderr), with
/// secrets masked, to `on_line` as it arrives: how an agent phase follows its agent's event
/// stream live. A line longer than [`MAX_OBSERVED_LINE`] is cut there; a last line without a
/// newline is handed over when the command ends.
#[allow(clippy::too_many_arguments)]
pub async fn run_observed(
    spec: &CommandSpec,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    cancel: &Cancel,
    group_file: Option<&Path>,
    jail: &Jail,
    patterns: &[String],
    mut on_line: Option<&mut (dyn FnMut(&str) + Send)>,
) -> Result<Outcome, ExecError> {
    let argv: Vec<String> = match spec {
        CommandSpec::Argv(argv) => match argv.first() {
            Some(p) if !p.is_empty() => argv.clone(),
            _ => return Err(ExecError::Empty),
        },
        CommandSpec::Shell(script) => vec!["sh".to_owned(), "-c".to_owned(), script.clone()],
    };
    let program = argv[0].clone();
    if !cwd.is_dir() {
        return Err(ExecError::Cwd { dir: cwd.display().to_string() });
    }
    let mut full_env = command_env(env);
    full_env.extend(jail.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    // inherited by everything the command starts, `setsid` daemons included: what left the
    // process group is still found by it (see crate::contain)
    let marker = crate::contain::new_marker();
    full_env.insert(crate::contain::MARKER_VAR.to_owned(), marker.clone());
    if !resolvable(&program, cwd, &full_env) {
        return Err(ExecError::NotFound { program });
    }
    let mut wrapped = jail.sandbox.wrap(argv, cwd, &jail.rlimits, &jail.binds);
    if jail.cgroup.is_some() {
        wrapped = crate::contain::gated(wrapped);
    }
    let mut cmd = Command::new(&wrapped[0]);
    cmd.args(&wrapped[1..])
        .current_dir(cwd)
        .env_clear()
        .envs(full_env)
        .stdin(if jail.cgroup.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ExecError::NotFound { program: program.clone() },
        _ => ExecError::Spawn { program: program.clone(), source },
    })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    if let (Some(g), Some(pid)) = (&jail.cgroup, child.id()) {
        // the gate (see contain::gated) holds the command until it is in the attempt's cgroup
        if let Err(e) = g.add(pid) {
            tracing::warn!(error = %e, "cannot move a phase command into its cgroup; its process group contains it");
        }
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(b"\n").await;
        }
    }
    if let (Some(file), Some(pid)) = (group_file, pgid) {
        // best effort: without the record a crash leaves the group running, as before
        if let Some(start_ticks) = start_ticks(pid.as_raw()) {
            let rec = GroupRecord { pgid: pid.as_raw(), start_ticks, marker: Some(marker.clone()) };
            if let Ok(bytes) = serde_json::to_vec(&rec) {
                let _ = std::fs::write(file, bytes);
            }
        }
    }

    let (tx, mut rx) = mpsc::channel::<(bool, Vec<u8>)>(64);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, true, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, false, tx.clone()));
    }
    drop(tx);
    let mut lines = LineSplitter::default();
    let mut observe = |stdout: bool, bytes: &[u8], lines: &mut LineSplitter| {
        if let (true, Some(f)) = (stdout, on_line.as_deref_mut()) {
            lines.push(bytes, |line| f(&jail.masker.mask(&String::from_utf8_lossy(line))));
        }
    };

    let mut output = BoundedOutput::new(limits.max_output_bytes);
    let mut scan = crate::scan::OutputScan::new(patterns);
    // secrets are masked before anything of the output is kept
    let mut masker = helix_core::redact::StreamMasker::new(jail.masker.clone());
    let mut last_output = Instant::now();
    let deadline = limits.timeout.map(|t| start + t);
    let (mut timed_out, mut stalled, mut cancelled) = (false, false, false);
    let mut pipes_open = true;

    let status = loop {
        let stall_at = limits.stall_timeout.map(|s| last_output + s);
        tokio::select! {
            chunk = rx.recv(), if pipes_open => match chunk {
                Some((stdout, bytes)) => {
                    last_output = Instant::now();
                    observe(stdout, &bytes, &mut lines);
                    let masked = masker.push(&bytes);
                    scan.push(&masked);
                    output.push(&masked);
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
    let status = status.map_err(|source| ExecError::Wait { program: program.clone(), source })?;
    // Whatever the command left running goes with it: its group, and everything in its cgroup
    // (processes that left the group, orphans of a dead leader).
    kill_group(pgid);
    if let Some(g) = jail.cgroup.clone() {
        let _ = tokio::task::spawn_blocking(move || g.kill()).await;
    } else {
        let _ = tokio::task::spawn_blocking(move || crate::contain::kill_marked(&marker)).await;
    }
    if let Some(file) = group_file {
        let _ = std::fs::remove_file(file);
    }
    let drain_until = tokio::time::Instant::now() + DRAIN_GRACE;
    while pipes_open {
        match tokio::time::timeout_at(drain_until, rx.recv()).await {
            Ok(Some((stdout, bytes))) => {
                observe(stdout, &bytes, &mut lines);
                let masked = masker.push(&bytes);
                scan.push(&masked);
                output.push(&masked);
            }
            Ok(None) | Err(_) => pipes_open = false,
        }
    }
    if let Some(f) = on_line {
        lines.finish(|line| f(&jail.masker.mask(&String::from_utf8_lossy(line))));
    }
    let rest = masker.finish();
    scan.push(&rest);
    output.push(&rest);

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
        scanned: if scan.is_empty() { Vec::new() } else { scan.finish() },
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

async fn pump(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    stdout: bool,
    tx: mpsc::Sender<(bool, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send((stdout, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Splits a byte stream into lines, each at most [`MAX_OBSERVED_LINE`] bytes (the rest of a longer
/// line is dropped), so memory stays bounded whatever the command prints.
#[derive(Debug, Default)]
struct LineSplitter {
    partial: Vec<u8>,
    /// The current line passed the bound: drop bytes until its newline.
    overlong: bool,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            self.take(&bytes[..nl]);
            let line = std::mem::take(&mut self.partial);
            emit(line.strip_suffix(b"\r").unwrap_or(&line));
            self.overlong = false;
            bytes = &bytes[nl + 1..];
        }
        self.take(bytes);
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        let room = MAX_OBSERVED_LINE - self.partial.len();
        if bytes.len() > room {
            self.partial.extend_from_slice(&bytes[..room]);
            self.overlong = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    fn finish(self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
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

    /// Without a cgroup, a `setsid` daemon leaves the process group; its inherited marker still
    /// finds it when the command ends.
    #[tokio::test]
    async fn without_a_cgroup_a_setsid_daemon_is_killed_when_its_command_ends() {
        let dir = tempfile::tempdir().expect("tmp");
        let pidfile = dir.path().join("daemon.pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 37' </dev/null >/dev/null 2>&1 & \
             while [ ! -s {} ]; do sleep 0.01; done; echo started",
            pidfile.display(),
            pidfile.display()
        );
        let out = run(
            &CommandSpec::Shell(script),
            dir.path(),
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
        )
        .await
        .expect("run");
        assert_eq!(out.exit_code, Some(0), "{out:?}");
        let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid").trim().parse().expect("pid");
        let gone = std::time::Instant::now();
        while start_ticks(pid).is_some() && gone.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(start_ticks(pid).is_none(), "the setsid daemon {pid} outlived its command");
    }

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
        let rec = GroupRecord { pgid, start_ticks: start_ticks(pgid).expect("stat"), marker: None };
        std::fs::write(&file, serde_json::to_vec(&rec).expect("json")).expect("write");
        assert!(reap(&file), "the recorded group was alive");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "killed, not finished: {status:?}");
        assert!(!file.exists());
        // a record whose process is gone (or whose pid was reused) kills nothing
        let stale = GroupRecord { pgid, start_ticks: rec.start_ticks + 1, marker: None };
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
        let out = go(argv(&["sleep", "600"]), &[], limits).await;
        assert!(out.timed_out && !out.stalled);
        assert_eq!(out.signal, Some(9));
        // it would sleep ten minutes: ending far earlier is the kill at work
        assert!(out.duration < Duration::from_secs(120), "{:?}", out.duration);
        assert!(out.describe().starts_with("timed out"));
    }

    #[tokio::test]
    async fn stall_kills_a_silent_process_but_not_a_chatty_one() {
        let limits = Limits { stall_timeout: Some(Duration::from_millis(400)), ..Limits::default() };
        let out = go(argv(&["sh", "-c", "echo started; sleep 600"]), &[], limits).await;
        assert!(out.stalled && !out.timed_out);
        assert!(out.output.contains("started"));
        assert!(out.duration < Duration::from_secs(120), "{:?}", out.duration);

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
        let spec = CommandSpec::Shell("sleep 600 & echo $! > grandchild.pid; wait".into());
        let out = run(&spec, dir.path(), &BTreeMap::new(), &limits, &Cancel::new()).await.expect("run");
        assert!(out.timed_out);
        assert!(out.duration < Duration::from_secs(120), "{:?}", out.duration);
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
        tokio::time::timeout(Duration::from_secs(30), gone).await.expect("grandchild still alive");
    }

    #[tokio::test]
    async fn background_leftovers_do_not_keep_the_phase_running() {
        // The shell exits at once; its background child holds stdout open and must not survive.
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits { timeout: Some(Duration::from_secs(10)), ..Limits::default() };
        let spec = CommandSpec::Shell("sleep 600 & echo $! > bg.pid; echo done".into());
        let out = run(&spec, dir.path(), &BTreeMap::new(), &limits, &Cancel::new()).await.expect("run");
        assert_eq!(out.exit_code, Some(0));
        assert!(out.output.contains("done"));
        let pid: i32 =
            std::fs::read_to_string(dir.path().join("bg.pid")).expect("pid").trim().parse().expect("pid");
        let gone = async {
            while pid_alive(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), gone).await.expect("background process still alive");
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
        let out = run(&argv(&["sleep", "600"]), dir.path(), &BTreeMap::new(), &Limits::default(), &cancel)
            .await
            .expect("run");
        assert!(out.cancelled && cancel.is_cancelled());
        assert!(out.duration < Duration::from_secs(120));
        // An already cancelled signal stops a new command at once.
        let out = run(&argv(&["sleep", "30"]), dir.path(), &BTreeMap::new(), &Limits::default(), &cancel)
            .await
            .expect("run");
        assert!(out.cancelled);
    }

    /// bubblewrap, which `tests/run` installs (Debian package bubblewrap).
    fn bwrap_sandbox(hide: Vec<std::path::PathBuf>) -> Sandbox {
        Sandbox::detect(helix_core::config::SandboxMode::Bwrap, hide, Vec::new())
            .expect("the sandbox tests need bubblewrap: apt-get install bubblewrap (tests/run installs it)")
    }

    #[tokio::test]
    async fn secrets_reach_the_command_and_are_masked_in_its_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = "s3cr3t-value-0123456789";
        let jail = Jail::new(
            Sandbox::none(),
            Rlimits::default(),
            [("API_TOKEN".to_owned(), secret.to_owned())].into(),
        );
        // printed whole, in pieces (split across writes) and on stderr
        let script = "echo \"token=$API_TOKEN\"; printf '%s' \"$API_TOKEN\" | head -c 7; sleep 0.1; printf '%s\\n' \"$API_TOKEN\" | tail -c +8; echo \"$API_TOKEN\" >&2";
        let out = run_jailed(
            &CommandSpec::Shell(script.into()),
            dir.path(),
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
            None,
            &jail,
        )
        .await
        .expect("run");
        assert!(!out.output.contains(secret) && !out.output.contains("0123456789"), "{}", out.output);
        assert!(out.output.contains("token=***"), "{}", out.output);
        assert_eq!(out.output.matches("***").count(), 3, "{}", out.output);
    }

    #[tokio::test]
    async fn stdout_lines_reach_the_observer_live_masked_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = "s3cr3t-value-0123456789";
        let jail = Jail::new(
            Sandbox::none(),
            Rlimits::default(),
            [("API_TOKEN".to_owned(), secret.to_owned())].into(),
        );
        // a line split across writes, stderr (not observed), CRLF, an overlong line, a last
        // line without its newline
        let script = format!(
            "printf '{{\"a\":'; sleep 0.1; echo '1}}'; echo err >&2; printf 'key=%s\\r\\n' \"$API_TOKEN\"; \
             head -c {} /dev/zero | tr '\\0' x; echo; printf 'last'",
            MAX_OBSERVED_LINE + 10
        );
        let mut seen: Vec<String> = Vec::new();
        let mut on_line = |l: &str| seen.push(l.to_owned());
        let out = run_observed(
            &CommandSpec::Shell(script),
            dir.path(),
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
            None,
            &jail,
            &[],
            Some(&mut on_line),
        )
        .await
        .expect("run");
        assert_eq!(out.exit_code, Some(0), "{out:?}");
        assert_eq!(seen.len(), 4, "{:?}", seen.iter().map(|l| l.len()).collect::<Vec<_>>());
        assert_eq!(seen[0], "{\"a\":1}");
        assert_eq!(seen[1], "key=***");
        assert_eq!(seen[2].len(), MAX_OBSERVED_LINE);
        assert_eq!(seen[3], "last");
        assert!(out.output.contains("err"), "stderr is still in the output");
    }

    #[tokio::test]
    async fn rlimits_apply_to_every_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Rlimits {
            cpu_secs: Some(77),
            address_space_bytes: Some(8 << 30),
            file_size_bytes: Some(1 << 20),
            processes: None,
        };
        let jail = Jail::new(Sandbox::none(), limits, BTreeMap::new());
        let out = run_jailed(
            &CommandSpec::Shell("ulimit -t; ulimit -v; ulimit -f".into()),
            dir.path(),
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
            None,
            &jail,
        )
        .await
        .expect("run");
        // dash reports -f in 512-byte blocks
        assert_eq!(out.output, format!("77\n{}\n{}\n", 8u64 << 20, (1u64 << 20) / 512), "{}", out.output);
        // a file larger than the limit cannot be written
        let out = run_jailed(
            &CommandSpec::Shell("head -c 2000000 /dev/zero > big".into()),
            dir.path(),
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
            None,
            &jail,
        )
        .await
        .expect("run");
        assert!(!out.success(), "{out:?}");
        assert!(std::fs::metadata(dir.path().join("big")).map(|m| m.len()).unwrap_or(0) <= 1 << 20);
    }

    #[tokio::test]
    async fn in_the_sandbox_no_other_process_and_no_hidden_file_is_visible_and_nothing_survives() {
        let base = tempfile::tempdir().expect("tempdir");
        let data = base.path().join("data");
        let ws = data.join("runs/r1/work");
        std::fs::create_dir_all(&ws).expect("mkdir");
        std::fs::write(data.join("local-token"), "hxt_secret").expect("write");
        let jail = Jail::new(bwrap_sandbox(vec![data.clone()]), Rlimits::default(), BTreeMap::new());
        let script = "ls /proc | grep -c '^[0-9]'; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c CARGO_MANIFEST_DIR; \
                      cat ../../../local-token 2>&1 | head -c 40; echo; echo ok > written; setsid sleep 317 & echo $! > ../daemon.pid";
        let out = run_jailed(
            &CommandSpec::Shell(script.into()),
            &ws,
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
            None,
            &jail,
        )
        .await
        .expect("run");
        let lines: Vec<&str> = out.output.lines().collect();
        let visible: u32 = lines[0].trim().parse().expect("count");
        assert!(visible <= 6, "only the sandbox's own processes: {}", out.output);
        assert_eq!(lines[1].trim(), "0", "no other process's environment: {}", out.output);
        assert!(!out.output.contains("hxt_secret"), "{}", out.output);
        assert_eq!(std::fs::read_to_string(ws.join("written")).expect("the workspace is writable"), "ok\n");
        assert!(
            std::fs::read_to_string(data.join("local-token")).is_ok_and(|t| t == "hxt_secret"),
            "untouched"
        );
        // the daemon's pid is of the namespace; none of the host's processes runs `sleep 317`
        // started by this test once the command has ended (a duration no other test uses: the
        // containment tests run `sleep 300` daemons at the same time and kill them later)
        let alive = std::fs::read_dir("/proc")
            .expect("proc")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .any(|c| c.starts_with(b"sleep\x00317\x00"));
        assert!(!alive, "a setsid daemon outlived its phase");
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

    #[tokio::test]
    async fn gate_patterns_see_the_middle_of_an_output_the_kept_copy_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 3 MB of lines with one ERROR in the middle; 1 MiB is kept
        let script = "i=0; while [ $i -lt 3 ]; do yes 'all fine here' | head -c 1000000; \
                      if [ $i -eq 1 ]; then echo; echo 'ERROR: the middle'; fi; i=$((i+1)); done";
        let patterns = vec!["ERROR".to_owned(), "nowhere".to_owned()];
        let out = run_scanning(
            &CommandSpec::Shell(script.into()),
            dir.path(),
            &BTreeMap::new(),
            &Limits::default(),
            &Cancel::new(),
            None,
            &Jail::default(),
            &patterns,
        )
        .await
        .expect("run");
        assert!(out.output_truncated > 0 && !out.output.contains("ERROR"), "the kept copy is cut");
        assert_eq!(out.scanned.len(), 2);
        let hit = out.scanned[0].1.as_ref().expect("the ERROR line was seen");
        assert_eq!(hit.line, "ERROR: the middle");
        assert!(hit.line_no > 140_000, "{hit:?}");
        assert_eq!(out.scanned[1].1, None);
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
            scanned: vec![("E".into(), Some(crate::scan::Hit { line_no: 3, line: "E!".into() }))],
        };
        let json = serde_json::to_value(&o).expect("json");
        assert_eq!(json["duration_ms"], 1500);
        assert_eq!(serde_json::from_value::<Outcome>(json).expect("back"), o);
        assert_eq!(argv(&["pytest", "-k", "a b"]).display(), "pytest -k 'a b'");
    }
}
