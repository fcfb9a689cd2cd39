//! What a service process does first, before it reads anything or starts a thread: keep its
//! secrets out of reach of the phases it will run.
//!
//! A phase runs as the same user as Helix. Without care it could read Helix's secrets where Linux
//! shows them to every process of the user:
//! - `/proc/<helix>/environ`, the environment Helix was started with (API keys, tokens, Redis
//!   passwords). Removing a variable later does not change it: the kernel shows the memory the
//!   environment was passed in. So the process re-executes itself once with only harmless
//!   variables ([`helix_core::env::PUBLIC`]) and receives the rest through an anonymous memory
//!   file (memfd), read into the heap and then emptied. Code that needs a secret reads it with
//!   [`helix_core::env::var`].
//! - `/proc/<helix>/mem` and ptrace: `PR_SET_DUMPABLE = 0` makes them (and `environ`) readable
//!   only by root.
//! - files the service writes: the umask becomes 077, so its data files are 0600 and its
//!   directories 0700 (phases inherit it; their files in the workspace are private too).
//!
//! Root can still read another process's memory; against a phase running as root only a PID
//! namespace helps, which the orchestrator adds with bubblewrap when it is installed.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

/// The variable naming the memfd that carries the environment into the re-executed process.
const ENV_FD: &str = "HELIX_ENV_FD";

/// Moves the environment out of the kernel's copy (re-executing this process when it holds
/// anything not public), then makes the process undumpable and its files private. Returns
/// normally in the re-executed process; an error means isolation is incomplete (the caller warns).
pub fn isolate() -> Result<(), String> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    if let Ok(fd) = std::env::var(ENV_FD) {
        receive(&fd)?;
    } else if std::env::vars_os().any(|(k, _)| !k.to_str().is_some_and(helix_core::env::is_public)) {
        // only returns when the exec failed
        return Err(reexec());
    }
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("cannot make the process undumpable: {e}"))?;
    raise_open_files();
    Ok(())
}

/// Lifts the soft limit of open files to the hard one. The collector keeps two files open per
/// sealed segment (its span index and trace table), a few hundred at ten million traces, beyond
/// the soft limit of 1024 many systems start a process with; the hard limit is what the
/// administrator allows. Phases get their own limits from the orchestrator.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Writes the whole environment into a memfd and re-executes this binary with the public part
/// only. Returns the reason when it could not.
fn reexec() -> String {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let vars: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    // no CLOEXEC: the file must survive the exec; it is emptied right after
    let fd = match memfd_create("helix-env", MFdFlags::empty()) {
        Ok(fd) => fd,
        Err(e) => return format!("cannot create a memfd for the environment: {e}"),
    };
    let mut file = std::fs::File::from(fd);
    let encoded = match serde_json::to_vec(&vars) {
        Ok(b) => b,
        Err(e) => return format!("cannot encode the environment: {e}"),
    };
    if let Err(e) = file.write_all(&encoded).and_then(|()| file.rewind()) {
        return format!("cannot write the environment to a memfd: {e}");
    }
    let raw = file.as_raw_fd();
    // the binary's path, not /proc/self/exe: the process keeps its name (`helix` in ps, pgrep)
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env_clear()
        .envs(vars.iter().filter(|(k, _)| helix_core::env::is_public(k)))
        .env(ENV_FD, raw.to_string());
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    let e = cmd.exec();
    drop(file);
    format!("cannot re-execute with a clean environment: {e}")
}

/// Reads the environment handed over by [`reexec`] and empties the memfd, so a later reader of
/// `/proc/<pid>/fd/N` finds nothing.
fn receive(fd: &str) -> Result<(), String> {
    let n: u32 = fd.trim().parse().map_err(|_| format!("{ENV_FD} is not a file descriptor"))?;
    let path = format!("/proc/self/fd/{n}");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open the handed-over environment: {e}"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| format!("cannot read the handed-over environment: {e}"))?;
    let _ = file.set_len(0);
    let vars: BTreeMap<String, String> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the handed-over environment is not valid: {e}"))?;
    bytes.fill(0);
    helix_core::env::install(vars);
    Ok(())
}
