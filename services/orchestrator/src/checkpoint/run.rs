//! A run's directory: its descriptor, numbered checkpoints and progress events, owned by one
//! process at a time.
//!
//! Ownership is an advisory lock (`flock`) on `lock`, held by [`RunLock`] for as long as a process
//! executes the run. A lock *file* whose existence means "taken" would outlive a `kill -9` and
//! block every resume; a file lock dies with its process, so resuming after a crash just works,
//! while two orchestrators resuming the same run at once cannot both write it. Writes take a
//! `&RunLock`, so the type system keeps unlocked writers out; reads need no lock, since every
//! file is replaced atomically and the events file only grows by whole lines.
//!
//! Checkpoints are immutable once written and numbered by `seq`; numbers need not be contiguous
//! (a checkpoint damaged by a crash is skipped by [`latest_checkpoint`] and its number is never
//! reused, see [`RunLock::next_seq`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StateError, atomic_write_json, io_err, is_temp_name, read_json, read_json_opt, sync_dir};
use crate::token::is_valid_run_id;

/// The run's descriptor, inside the run directory.
pub const RUN_FILE: &str = "run.json";
/// The file whose `flock` makes a process the owner of the run.
pub const LOCK_FILE: &str = "lock";
/// Directory of the numbered checkpoints, `000001.json` …
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Progress events, one JSON object per line.
pub const EVENTS_FILE: &str = "events.ndjson";

/// The directory of run `run_id` under state directory `root`. Run ids come from users (in
/// resume tokens and URLs), so they are checked to be plain names before becoming a path.
pub fn run_dir(root: &Path, run_id: &str) -> Result<PathBuf, StateError> {
    if !is_valid_run_id(run_id) {
        return Err(StateError::BadRunId(run_id.to_owned()));
    }
    Ok(root.join("runs").join(run_id))
}

/// Ids of the runs under `root`, sorted.
pub fn list_runs(root: &Path) -> Result<Vec<String>, StateError> {
    let runs = root.join("runs");
    let entries = match fs::read_dir(&runs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &runs)(e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", &runs))?;
        if let Ok(name) = entry.file_name().into_string()
            && is_valid_run_id(&name)
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

fn checkpoint_path(run_dir: &Path, seq: u32) -> PathBuf {
    run_dir.join(CHECKPOINTS_DIR).join(format!("{seq:06}.json"))
}

fn parse_checkpoint_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The sequence numbers of a run's checkpoint files, ascending (whether or not they parse).
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<u32>, StateError> {
    let dir = run_dir.join(CHECKPOINTS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &dir)(e)),
    };
    let mut seqs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", &dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_checkpoint_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// One checkpoint; an error when it is missing or does not parse.
pub fn read_checkpoint<T: DeserializeOwned>(run_dir: &Path, seq: u32) -> Result<T, StateError> {
    read_json(&checkpoint_path(run_dir, seq))
}

/// The checkpoint with the highest number that parses. A damaged one (possible only after a
/// crash of the machine before its data reached the disk, or by outside hands) is logged and
/// passed over for the one before it.
pub fn latest_checkpoint<T: DeserializeOwned>(run_dir: &Path) -> Result<Option<(u32, T)>, StateError> {
    for seq in list_checkpoints(run_dir)?.into_iter().rev() {
        match read_checkpoint(run_dir, seq) {
            Ok(value) => return Ok(Some((seq, value))),
            Err(e @ StateError::Json { .. }) => {
                tracing::warn!(error = %e, seq, "damaged checkpoint skipped");
            }
            Err(StateError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The run's descriptor (`run.json`), None before it is written.
pub fn read_descriptor<T: DeserializeOwned>(run_dir: &Path) -> Result<Option<T>, StateError> {
    read_json_opt(&run_dir.join(RUN_FILE))
}

/// Events read by [`read_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events<T> {
    pub events: Vec<T>,
    /// The line to read from next time.
    pub next_line: usize,
}

/// The events of lines `from_line..` (0-based) of the run's events file. A last line without
/// its newline is being written or was torn by a crash: it is not returned (and not counted), so
/// reading again from `next_line` picks it up once complete.
pub fn read_events<T: DeserializeOwned>(run_dir: &Path, from_line: usize) -> Result<Events<T>, StateError> {
    let path = run_dir.join(EVENTS_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Events { events: Vec::new(), next_line: from_line });
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut events = Vec::new();
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        reader.read_until(b'\n', &mut line).map_err(io_err("read", &path))?;
        if line.last() != Some(&b'\n') {
            break;
        }
        if n >= from_line && !line.trim_ascii().is_empty() {
            let event = serde_json::from_slice(&line).map_err(|source| StateError::EventJson {
                path: path.clone(),
                line: n + 1,
                source,
            })?;
            events.push(event);
        }
        n += 1;
    }
    Ok(Events { events, next_line: n.max(from_line) })
}

/// Ownership of a run by this process: the only way to write its files. Released when dropped,
/// or when the process dies however it dies.
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    _lock: File,
    events: Mutex<Option<File>>,
}

impl RunLock {
    /// Takes ownership of the run in `run_dir` (created when missing), or fails at once with
    /// [`StateError::Locked`] when another process (or another `RunLock` of this one) owns it.
    pub fn acquire(run_dir: &Path) -> Result<RunLock, StateError> {
        RunLock::open(run_dir, false)
    }

    /// [`RunLock::acquire`], waiting for the current owner to let go.
    pub fn acquire_wait(run_dir: &Path) -> Result<RunLock, StateError> {
        RunLock::open(run_dir, true)
    }

    fn open(run_dir: &Path, wait: bool) -> Result<RunLock, StateError> {
        let checkpoints = run_dir.join(CHECKPOINTS_DIR);
        if !checkpoints.is_dir() {
            fs::create_dir_all(&checkpoints).map_err(io_err("create directory", &checkpoints))?;
            sync_dir(run_dir)?;
            if let Some(parent) = run_dir.parent() {
                sync_dir(parent)?;
            }
        }
        let lock_path = run_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        if wait {
            lock.lock().map_err(io_err("lock", &lock_path))?;
        } else {
            match lock.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(StateError::Locked { dir: run_dir.to_path_buf() });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
            }
        }
        // Owners only from here on: temp files are leftovers of a crashed owner.
        for dir in [run_dir, &checkpoints] {
            for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
                let entry = entry.map_err(io_err("list", dir))?;
                if entry.file_name().to_str().is_some_and(is_temp_name) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(RunLock { dir: run_dir.to_path_buf(), _lock: lock, events: Mutex::new(None) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The number for the next checkpoint: one past the highest file, damaged ones included.
    pub fn next_seq(&self) -> Result<u32, StateError> {
        Ok(list_checkpoints(&self.dir)?.last().map_or(1, |s| s.saturating_add(1)))
    }

    /// Writes checkpoint `seq` atomically and durably; an existing checkpoint is never replaced.
    pub fn write_checkpoint<T: Serialize + ?Sized>(
        &self,
        seq: u32,
        value: &T,
    ) -> Result<PathBuf, StateError> {
        let path = checkpoint_path(&self.dir, seq);
        if path.exists() {
            return Err(StateError::CheckpointExists { path });
        }
        atomic_write_json(&path, value)?;
        Ok(path)
    }

    /// Writes the run's descriptor (`run.json`) atomically.
    pub fn write_descriptor<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), StateError> {
        atomic_write_json(&self.dir.join(RUN_FILE), value)
    }

    /// Appends one event as a line of JSON, fsynced when `sync` (events that matter after a
    /// crash; progress ticks need not be).
    pub fn append_event<T: Serialize + ?Sized>(&self, event: &T, sync: bool) -> Result<(), StateError> {
        let path = self.dir.join(EVENTS_FILE);
        let mut line =
            serde_json::to_vec(event).map_err(|source| StateError::Encode { path: path.clone(), source })?;
        line.push(b'\n');
        let mut guard = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let file = match &mut *guard {
            Some(file) => file,
            slot @ None => slot.insert(open_events(&path)?),
        };
        // One write of the whole line: with O_APPEND a reader sees it whole or not at all.
        file.write_all(&line).map_err(io_err("append to", &path))?;
        if sync {
            file.sync_data().map_err(io_err("sync", &path))?;
        }
        Ok(())
    }
}

/// Opens the events file for appending, first cutting a torn last line a crash left, so the
/// next event starts on a line of its own.
fn open_events(path: &Path) -> Result<File, StateError> {
    let file =
        OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start).map_err(io_err("read", path))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep < len {
        tracing::warn!(path = %path.display(), bytes = len - keep, "torn last event line cut");
        file.set_len(keep).map_err(io_err("truncate", path))?;
        file.sync_data().map_err(io_err("sync", path))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::{BTreeMap, BTreeSet};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Cp {
        phase: u32,
        writer: u32,
        note: String,
    }

    fn cp(phase: u32) -> Cp {
        Cp { phase, writer: 0, note: format!("after phase {phase}") }
    }

    #[test]
    fn run_ids_are_plain_names() {
        let root = Path::new("/state");
        assert_eq!(run_dir(root, "r-1").expect("valid"), Path::new("/state/runs/r-1"));
        for bad in ["", "..", "../x", "a/b", ".hidden", "x\0", &"a".repeat(65)] {
            let e = run_dir(root, bad).expect_err("rejected");
            assert!(matches!(e, StateError::BadRunId(_)), "{bad:?}");
        }
    }

    #[test]
    fn checkpoints_round_trip_and_latest_is_the_highest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = run_dir(dir.path(), "r1").expect("run dir");
        assert!(latest_checkpoint::<Cp>(&run).expect("none yet").is_none());
        let lock = RunLock::acquire(&run).expect("own");
        lock.write_descriptor(&serde_json::json!({"pipeline": "demo"})).expect("descriptor");
        for seq in [1, 2, 10] {
            assert_eq!(lock.next_seq().expect("next"), if seq == 10 { 3 } else { seq });
            let path = lock.write_checkpoint(seq, &cp(seq)).expect("write");
            assert!(path.ends_with(format!("checkpoints/{seq:06}.json")));
        }
        assert_eq!(list_checkpoints(&run).expect("list"), [1, 2, 10]);
        assert_eq!(latest_checkpoint::<Cp>(&run).expect("latest"), Some((10, cp(10))));
        assert_eq!(read_checkpoint::<Cp>(&run, 2).expect("read"), cp(2));
        let e = lock.write_checkpoint(2, &cp(99)).expect_err("immutable").to_string();
        assert!(e.contains("000002.json already exists"), "{e}");
        assert_eq!(read_checkpoint::<Cp>(&run, 2).expect("read"), cp(2));
        let desc: Option<serde_json::Value> = read_descriptor(&run).expect("descriptor");
        assert_eq!(desc, Some(serde_json::json!({"pipeline": "demo"})));
        assert_eq!(list_runs(dir.path()).expect("runs"), ["r1"]);
    }

    #[test]
    fn crash_leftovers_are_ignored_and_cleaned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = run_dir(dir.path(), "crashed").expect("run dir");
        let lock = RunLock::acquire(&run).expect("own");
        lock.write_checkpoint(1, &cp(1)).expect("write");
        lock.write_checkpoint(2, &cp(2)).expect("write");
        drop(lock);
        // What a crash can leave: a temp file with garbage, a truncated checkpoint.
        let cps = run.join(CHECKPOINTS_DIR);
        fs::write(cps.join(".000003.json.4242.0.tmp"), b"\x00\x17garbage").expect("temp");
        let whole = serde_json::to_vec(&cp(3)).expect("json");
        fs::write(cps.join("000003.json"), &whole[..whole.len() / 2]).expect("torn");
        fs::write(cps.join("notes.txt"), b"not a checkpoint").expect("other file");
        assert_eq!(latest_checkpoint::<Cp>(&run).expect("latest"), Some((2, cp(2))));
        assert!(read_checkpoint::<Cp>(&run, 3).is_err());

        let lock = RunLock::acquire(&run).expect("own again");
        assert!(!cps.join(".000003.json.4242.0.tmp").exists(), "temp leftovers removed by the new owner");
        assert_eq!(lock.next_seq().expect("next"), 4, "a damaged number is not reused");
        lock.write_checkpoint(4, &cp(4)).expect("write");
        assert_eq!(latest_checkpoint::<Cp>(&run).expect("latest"), Some((4, cp(4))));

        fs::write(cps.join("000005.json"), b"").expect("empty checkpoint");
        assert_eq!(latest_checkpoint::<Cp>(&run).expect("latest").map(|(s, _)| s), Some(4));
    }

    #[test]
    fn a_second_owner_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = run_dir(dir.path(), "busy").expect("run dir");
        let first = RunLock::acquire(&run).expect("own");
        let e = RunLock::acquire(&run).expect_err("taken").to_string();
        assert!(e.contains("owned by another process") && e.contains("busy"), "{e}");
        let waiter = {
            let run = run.clone();
            std::thread::spawn(move || RunLock::acquire_wait(&run).map(|l| l.next_seq()))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "waits while the run is owned");
        first.write_checkpoint(1, &cp(1)).expect("write");
        drop(first);
        let next = waiter.join().expect("thread").expect("own after release").expect("next");
        assert_eq!(next, 2);
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Written {
        writer: u32,
        i: u32,
        seq: u32,
        payload: Vec<String>,
    }

    /// 8 threads, 2 per run, each writing 50 checkpoints numbered from what it reads under the
    /// lock, while readers poll: without exclusion two writers would pick the same number.
    #[test]
    fn concurrent_writers_lose_and_corrupt_nothing() {
        const RUNS: u32 = 4;
        const WRITERS: u32 = 8;
        const EACH: u32 = 50;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..RUNS)
            .map(|r| {
                let (run, done) = (run_dir(&root, &format!("run-{r}")).expect("dir"), done.clone());
                std::thread::spawn(move || {
                    let mut last = 0;
                    let mut polls = 0;
                    while !done.load(Ordering::Relaxed) {
                        // A reader never sees a partial checkpoint: every listed one parses.
                        for seq in list_checkpoints(&run).expect("list") {
                            read_checkpoint::<Written>(&run, seq).expect("every listed checkpoint parses");
                        }
                        if let Some((seq, w)) = latest_checkpoint::<Written>(&run).expect("latest") {
                            assert!(seq >= last && w.seq == seq);
                            last = seq;
                        }
                        polls += 1;
                    }
                    polls
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let run = run_dir(&root, &format!("run-{}", w % RUNS)).expect("dir");
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let lock = RunLock::acquire_wait(&run).expect("own");
                        let seq = lock.next_seq().expect("next");
                        let payload = (0..20).map(|k| format!("writer {w} item {i} line {k}")).collect();
                        lock.write_checkpoint(seq, &Written { writer: w, i, seq, payload }).expect("write");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().expect("reader") > 0);
        }
        for r in 0..RUNS {
            let run = run_dir(&root, &format!("run-{r}")).expect("dir");
            let seqs = list_checkpoints(&run).expect("list");
            assert_eq!(seqs, (1..=2 * EACH).collect::<Vec<_>>(), "run {r}: none lost, none doubled");
            let mut seen: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
            for seq in seqs {
                let w: Written = read_checkpoint(&run, seq).expect("parses");
                assert_eq!(w.seq, seq);
                assert_eq!(w.writer % RUNS, r);
                assert!(seen.entry(w.writer).or_default().insert(w.i));
            }
            assert!(seen.values().all(|is| is.len() == EACH as usize), "run {r}: every write kept");
            assert_eq!(latest_checkpoint::<Written>(&run).expect("latest").map(|(s, _)| s), Some(2 * EACH));
            let leftovers: Vec<_> = fs::read_dir(run.join(CHECKPOINTS_DIR))
                .expect("list")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| is_temp_name(n))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    const FLOCK_CHILD: &str = r#"
import fcntl, sys
f = open(sys.argv[1], "a+")
if sys.argv[2] == "try":
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(3)
    sys.exit(0)
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"#;

    fn flock_child(lock: &Path, mode: &str) -> Command {
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(FLOCK_CHILD).arg(lock).arg(mode);
        cmd
    }

    #[test]
    fn the_lock_excludes_other_processes_and_dies_with_its_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = run_dir(dir.path(), "shared").expect("run dir");
        let lock_path = run.join(LOCK_FILE);

        // We own the run: another process cannot take it.
        let ours = RunLock::acquire(&run).expect("own");
        let status = flock_child(&lock_path, "try").status().expect("python3");
        assert_eq!(status.code(), Some(3), "another process must not get the lock");
        drop(ours);
        let status = flock_child(&lock_path, "try").status().expect("python3");
        assert_eq!(status.code(), Some(0), "free after release");

        // Another process owns it: we cannot take it, until it exits.
        let mut child = flock_child(&lock_path, "hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "locked");
        assert!(matches!(RunLock::acquire(&run), Err(StateError::Locked { .. })));
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success());
        drop(RunLock::acquire(&run).expect("own after the other process exited"));

        // An owner killed with SIGKILL releases it too.
        let mut child = flock_child(&lock_path, "hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "locked");
        assert!(matches!(RunLock::acquire(&run), Err(StateError::Locked { .. })));
        child.kill().expect("kill -9");
        child.wait().expect("wait");
        RunLock::acquire(&run).expect("own after the owner was killed");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ev {
        n: u32,
        text: String,
    }

    fn ev(n: u32) -> Ev {
        Ev { n, text: format!("event {n}; with \"quotes\"\nand a newline") }
    }

    #[test]
    fn events_append_and_read_from_a_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = run_dir(dir.path(), "ev").expect("run dir");
        assert_eq!(read_events::<Ev>(&run, 0).expect("none"), Events { events: vec![], next_line: 0 });
        let lock = RunLock::acquire(&run).expect("own");
        for n in 0..5 {
            lock.append_event(&ev(n), n % 2 == 0).expect("append");
        }
        let all = read_events::<Ev>(&run, 0).expect("read");
        assert_eq!(all.events, (0..5).map(ev).collect::<Vec<_>>());
        assert_eq!(all.next_line, 5);
        let tail = read_events::<Ev>(&run, 3).expect("read");
        assert_eq!(tail.events, [ev(3), ev(4)]);
        assert_eq!(read_events::<Ev>(&run, 9).expect("past the end").next_line, 9);
    }

    #[test]
    fn a_torn_event_line_is_skipped_then_cut_by_the_next_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = run_dir(dir.path(), "torn").expect("run dir");
        let lock = RunLock::acquire(&run).expect("own");
        lock.append_event(&ev(0), true).expect("append");
        lock.append_event(&ev(1), true).expect("append");
        drop(lock);
        let path = run.join(EVENTS_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(br#"{"n":2,"te"#).expect("torn write");
        drop(f);
        let read = read_events::<Ev>(&run, 0).expect("torn tail tolerated");
        assert_eq!((read.events.len(), read.next_line), (2, 2));

        let lock = RunLock::acquire(&run).expect("own again");
        lock.append_event(&ev(2), true).expect("append");
        let read = read_events::<Ev>(&run, 0).expect("read");
        assert_eq!(read.events, [ev(0), ev(1), ev(2)]);

        // Damage in the middle is an error naming the line, not silently skipped.
        let text = fs::read_to_string(&path).expect("read");
        fs::write(&path, text.replacen("{\"n\":1", "{\"n\":x", 1)).expect("damage");
        let e = read_events::<Ev>(&run, 0).expect_err("damaged").to_string();
        assert!(e.contains("line 2 of") && e.contains(EVENTS_FILE), "{e}");
    }
}
