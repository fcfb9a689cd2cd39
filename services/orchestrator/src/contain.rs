//! Process containment: nothing an attempt starts outlives it.
//!
//! A process group is not enough: a command can leave it (`setsid`, a daemonising server), and
//! a group can only be found through its leader, which may be gone (the phase's shell died,
//! its `sleep 37 &` lives on). So each attempt gets a cgroup (v2) of its own, and every command
//! of the attempt (the phase's, its gates') is moved into it before it `exec`s. Membership is
//! inherited and cannot be left without write access to the cgroup tree, so killing the cgroup
//! (`cgroup.kill`) kills everything the attempt spawned, daemons included. A cgroup also
//! outlives a `kill -9` of the orchestrator: the next owner of the run finds it by name
//! (`<run id>+<attempt key>` under a directory per data directory) and kills it before the run
//! continues ([`Containment::sweep`]).
//!
//! Where cgroup v2 cannot be written (not root, no delegation, another OS), containment falls
//! back to what `exec` does without it: the command's process group (killed at the end, and by
//! a next owner through its recorded pgid even when the leader died), with bubblewrap a PID
//! namespace that dies with its first process, and a marker: every command gets
//! `HELIX_CONTAINMENT_ID=<random>` in its environment, which its descendants inherit through
//! `setsid` and double forks, so the processes that left the group are found in
//! `/proc/*/environ` and killed ([`kill_marked`]) at the end of the command and, from the
//! recorded marker, by the next owner. What the fallback cannot catch is a process that left
//! the group *and* cleared its environment outside a PID namespace; [`Containment::kind`] says
//! which applies, and the README's security section documents both.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a kill waits for the cgroup to empty.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Where attempts' cgroups are made, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct Containment {
    /// `<our cgroup>/helix-<hash of the data directory>`.
    base: Option<Arc<PathBuf>>,
}

/// What contains a phase's processes (for logs and the run view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cgroup,
    ProcessGroup,
}

impl Containment {
    /// No cgroups: process groups only.
    pub fn none() -> Containment {
        Containment { base: None }
    }

    /// Cgroups under this process's own cgroup when cgroup v2 is mounted, writable, and a child
    /// process can be moved into a new cgroup (tried once, here); otherwise [`Containment::none`].
    /// `data_dir` names the directory, so orchestrators of different data directories on one
    /// machine never sweep each other's cgroups.
    pub fn detect(data_dir: &Path) -> Containment {
        match try_detect(data_dir) {
            Ok(base) => {
                tracing::info!(cgroup = %base.display(), "phases are contained in cgroups");
                Containment { base: Some(Arc::new(base)) }
            }
            Err(why) => {
                tracing::warn!(reason = %why, "cgroup v2 is not writable here: phases are contained by process groups only");
                Containment::none()
            }
        }
    }

    pub fn kind(&self) -> Kind {
        if self.base.is_some() { Kind::Cgroup } else { Kind::ProcessGroup }
    }

    /// A new (empty) cgroup for one attempt of run `run_id`; `key` tells attempts apart. `None`
    /// without cgroups, or when the directory cannot be made (then only the process group
    /// contains the attempt, as without cgroups).
    pub fn group(&self, run_id: &str, key: &str) -> Option<Arc<Group>> {
        let base = self.base.as_ref()?;
        let dir = base.join(format!("{run_id}+{key}"));
        if dir.exists() {
            kill_dir(&dir);
        }
        if let Err(e) = std::fs::create_dir(&dir) {
            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot create an attempt's cgroup");
            return None;
        }
        match OpenOptions::new().write(true).open(dir.join("cgroup.procs")) {
            Ok(procs) => Some(Arc::new(Group { dir, procs })),
            Err(e) => {
                tracing::warn!(cgroup = %dir.display(), error = %e, "cannot open an attempt's cgroup");
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// Kills and removes every cgroup left by run `run_id` (`None`: by any run) whose owner
    /// died; the caller holds the run's lock, or knows nobody runs anything. Returns how many
    /// held processes.
    pub fn sweep(&self, run_id: Option<&str>) -> usize {
        let Some(base) = &self.base else { return 0 };
        let Ok(entries) = std::fs::read_dir(base.as_path()) else { return 0 };
        let mut killed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((run, _)) = name.split_once('+') else { continue };
            if run_id.is_some_and(|r| r != run) || !e.path().is_dir() {
                continue;
            }
            if kill_dir(&e.path()) {
                killed += 1;
            }
        }
        killed
    }

    /// The run ids that have cgroups left (for [`Containment::sweep`] at start-up, run by run
    /// under each run's lock).
    pub fn runs_with_groups(&self) -> Vec<String> {
        let Some(base) = &self.base else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(base.as_path()) else { return Vec::new() };
        let mut runs: Vec<String> = entries
            .flatten()
            // the cgroup's own files (`cgroup.procs`, `cpu.stat`, ...) are not attempts
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_string_lossy().split_once('+').map(|(r, _)| r.to_owned()))
            .collect();
        runs.sort();
        runs.dedup();
        runs
    }
}

/// One attempt's cgroup. Dropping it kills what is left in it and removes it.
#[derive(Debug)]
pub struct Group {
    dir: PathBuf,
    procs: File,
}

impl Group {
    /// Moves process `pid` into the cgroup (see [`gated`] for doing so before it forks).
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        (&self.procs).write_all(format!("{pid}\n").as_bytes())
    }

    /// Kills every process in the cgroup and waits (bounded) until it is empty.
    pub fn kill(&self) {
        kill_procs(&self.dir);
    }

    /// Whether any process is left in it.
    pub fn is_populated(&self) -> bool {
        populated(&self.dir)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        kill_dir(&self.dir);
    }
}

/// `argv` behind a gate that holds it until it is in its cgroup: `sh` reads one line from its
/// stdin (a pipe), then `exec`s `argv`. The parent moves the shell into the cgroup
/// ([`Group::add`]) and only then writes the line, so not one fork of the command happens
/// outside it (and an `exec` keeps the pid: no extra process stays). A parent that dies before
/// the line leaves the shell at EOF: it exits 125 without running anything. The command's stdin
/// is that pipe, at EOF once the line is read, as `/dev/null` would be.
pub fn gated(argv: Vec<String>) -> Vec<String> {
    let mut out = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        "read -r helix_go || exit 125; unset helix_go; exec \"$@\"".to_owned(),
        "helix-contain".to_owned(),
    ];
    out.extend(argv);
    out
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())
}

/// Kills everything in the cgroup at `dir`: `cgroup.kill` (Linux 5.14+), else SIGKILL to each
/// listed process until none is left (a fork racing the listing is caught by the next round).
fn kill_procs(dir: &Path) -> bool {
    let had = populated(dir);
    if !had {
        return false;
    }
    let killed_all = std::fs::write(dir.join("cgroup.kill"), "1").is_ok();
    let until = Instant::now() + KILL_WAIT;
    while populated(dir) && Instant::now() < until {
        if !killed_all && let Ok(list) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// [`kill_procs`], then removes the (now empty) cgroup. Returns whether it held processes.
fn kill_dir(dir: &Path) -> bool {
    let had = kill_procs(dir);
    // an exiting process can hold the directory for a moment after it left `cgroup.procs`
    let until = Instant::now() + KILL_WAIT;
    while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    had
}

fn try_detect(data_dir: &Path) -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("mountinfo: {e}"))?;
    // fields: id parent major:minor root mount-point options ... - fstype source super-options
    let mount = mounts
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(str::to_owned))?
        })
        .ok_or("no cgroup2 mount")?;
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::")).ok_or("not in a cgroup v2 hierarchy")?;
    let ours = Path::new(&mount).join(path.trim().trim_start_matches('/'));
    let digest = Sha256::digest(
        std::path::absolute(data_dir)
            .unwrap_or_else(|_| data_dir.to_path_buf())
            .as_os_str()
            .as_encoded_bytes(),
    );
    let base = ours.join(format!("helix-{}", &hex::encode(digest)[..16]));
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    // a real move, as an attempt will make one: a process started into a probe cgroup
    let probe = base.join(format!("probe-{}", std::process::id()));
    let _ = std::fs::remove_dir(&probe);
    std::fs::create_dir(&probe).map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
    let result = probe_move(&probe);
    kill_dir(&probe);
    result.map(|()| base)
}

fn probe_move(probe: &Path) -> Result<(), String> {
    let procs = OpenOptions::new()
        .write(true)
        .open(probe.join("cgroup.procs"))
        .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", probe.display()))?;
    let group = Group { dir: probe.to_path_buf(), procs };
    let argv = gated(vec!["cat".to_owned(), "/proc/self/cgroup".to_owned()]);
    let out = run_gated(&group, &argv).map_err(|e| format!("cannot start a process in a new cgroup: {e}"))?;
    // the probe's directory is removed by the caller; the group must not remove it twice
    std::mem::forget(group);
    let name = probe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !String::from_utf8_lossy(&out).contains(&name) {
        return Err("a process could not be moved into a new cgroup".to_owned());
    }
    Ok(())
}

/// Runs gated `argv` in `group` to its end (synchronously); returns its stdout.
fn run_gated(group: &Group, argv: &[String]) -> std::io::Result<Vec<u8>> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let added = child.id();
    let moved = group.add(added);
    let mut stdin = child.stdin.take();
    if moved.is_ok()
        && let Some(s) = stdin.as_mut()
    {
        let _ = s.write_all(b"\n");
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    moved?;
    Ok(out.stdout)
}

/// The environment variable that marks a command's processes (see the module docs).
pub const MARKER_VAR: &str = "HELIX_CONTAINMENT_ID";

/// A fresh marker value for one command.
pub fn new_marker() -> String {
    helix_core::ids::new_span_id()
}

/// Kills (SIGKILL) every process of ours whose environment holds `MARKER_VAR=marker`, again
/// until none is left (a forking daemon may start new ones while it is killed), for at most
/// [`KILL_WAIT`]. Returns how many were killed. Processes of other users cannot be read and are
/// not ours to kill.
pub fn kill_marked(marker: &str) -> usize {
    let entry = format!("{MARKER_VAR}={marker}");
    let me = std::process::id();
    let until = Instant::now() + KILL_WAIT;
    let mut killed = 0;
    loop {
        let found = marked(entry.as_bytes(), me);
        if found.is_empty() {
            return killed;
        }
        for pid in &found {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        killed += found.len();
        if Instant::now() >= until {
            return killed;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Live (not zombie) processes other than `me` whose environment has the entry `entry`.
fn marked(entry: &[u8], me: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| u32::try_from(*pid).is_ok_and(|p| p != me))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry))
                && crate::exec::start_ticks(*pid).is_some()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| !r.trim_start().starts_with('Z')))
    }

    #[test]
    fn a_cgroup_kill_takes_setsid_daemons_and_orphans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Containment::detect(dir.path());
        if c.kind() != Kind::Cgroup {
            eprintln!("cgroup v2 is not writable here; the process-group fallback is tested in exec");
            return;
        }
        let g = c.group("run1", "0-1").expect("group");
        let pidfile = dir.path().join("pids");
        let script = format!(
            "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {0}; (sleep 301 </dev/null >/dev/null 2>&1 &) ; echo done",
            pidfile.display()
        );
        let out = run_gated(&g, &gated(vec!["/bin/sh".into(), "-c".into(), script])).expect("run");
        assert!(String::from_utf8_lossy(&out).contains("done"));
        let daemon: i32 = std::fs::read_to_string(&pidfile).expect("pid").trim().parse().expect("pid");
        assert!(alive(daemon) && g.is_populated(), "the daemon outlived its shell, as daemons do");
        g.kill();
        assert!(!alive(daemon), "the setsid daemon was killed with its cgroup");
        assert!(!g.is_populated());
        drop(g);
        assert!(c.runs_with_groups().is_empty(), "{:?}", c.runs_with_groups());
    }

    #[test]
    fn a_sweep_finds_what_a_dead_owner_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Containment::detect(dir.path());
        if c.kind() != Kind::Cgroup {
            return;
        }
        let g = c.group("run2", "1-2").expect("group");
        let script = "setsid sleep 300 </dev/null >/dev/null 2>&1 &".to_owned();
        run_gated(&g, &gated(vec!["/bin/sh".into(), "-c".into(), script])).expect("run");
        // the owner "dies": its handle is forgotten, the cgroup stays
        std::mem::forget(g);
        let other = c.group("run3", "0-1").expect("group");
        assert_eq!(c.runs_with_groups(), ["run2", "run3"]);
        assert_eq!(c.sweep(Some("run2")), 1);
        assert_eq!(c.runs_with_groups(), ["run3"]);
        drop(other);
        assert_eq!(c.sweep(None), 0);
    }

    #[test]
    fn a_gated_command_does_not_run_without_its_line() {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let argv = gated(vec!["touch".into(), marker.display().to_string()]);
        let status = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).status().expect("run");
        assert_eq!(status.code(), Some(125));
        assert!(!marker.exists());
    }
}
