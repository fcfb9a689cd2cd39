//! The orchestrator's durable state: what survives a `kill -9` at any moment.
//!
//! A run must be resumable from its last completed phase and any phase replayable with exactly
//! its inputs, so everything a phase leaves behind is written before the run moves on, and
//! written so that a crash mid-write can never leave a state that looks complete but is not:
//!
//! - [`blobs`]: a content-addressed store of file contents, so a checkpoint of a workspace costs
//!   only the files that changed since the previous one.
//! - [`manifest`]: a workspace as a map of paths to digests, taken from and turned back into a
//!   directory, and compared for replay.
//! - [`run`]: a run's directory: descriptor, numbered checkpoints, progress events, and the
//!   file lock that makes one process the owner of a run.
//!
//! Every whole-file write goes through [`atomic_write`] (temp file in the same directory,
//! fsync, rename, fsync of the directory): readers see the old file or the new one, never a
//! mix. All of it is blocking std IO, called from a blocking thread.
//!
//! ```text
//! <root>/blobs/ab/cdef…          file contents by sha256
//! <root>/tmp/                    blobs being written
//! <root>/runs/<run_id>/lock      flock'd by the process that owns the run
//! <root>/runs/<run_id>/run.json  the run's descriptor
//! <root>/runs/<run_id>/checkpoints/000001.json …
//! <root>/runs/<run_id>/events.ndjson
//! ```

pub mod blobs;
pub mod manifest;
pub mod run;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use blobs::{BlobStats, Blobs, Digest, GcReport};
pub use manifest::{
    Change, ChangeKind, Exclude, FileEntry, Manifest, file_diff, materialize, reconcile, snapshot,
    snapshot_with_hint, text_diff,
};
pub use run::{
    CHECKPOINTS_DIR, EVENTS_FILE, Events, LOCK_FILE, RUN_FILE, RunLock, latest_checkpoint, list_checkpoints,
    list_runs, read_checkpoint, read_descriptor, read_events, run_dir,
};

/// Everything that can go wrong with the durable state. Each message names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid json in {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid json on line {line} of {}: {source}", path.display())]
    EventJson {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode json for {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("run {} is owned by another process (lock {} is held)", dir.display(), dir.join(LOCK_FILE).display())]
    Locked { dir: PathBuf },
    #[error("checkpoint {} already exists", path.display())]
    CheckpointExists { path: PathBuf },
    #[error("blob {digest} is missing from {}", path.display())]
    MissingBlob { digest: Digest, path: PathBuf },
    #[error("blob {} is corrupt: {detail}", path.display())]
    CorruptBlob { path: PathBuf, detail: String },
    #[error("{} is not an empty directory; a workspace is materialized only into a fresh one", path.display())]
    NotEmpty { path: PathBuf },
    #[error("unsafe manifest path {path:?}: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("file name {} is not valid utf-8", path.display())]
    NonUtf8Path { path: PathBuf },
    #[error(
        "invalid run id {0:?}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    BadRunId(String),
    #[error("invalid sha256 digest {0:?}")]
    BadDigest(String),
}

/// Maps an io::Error to [`StateError::Io`] naming `path`.
pub(crate) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io { action, path: path.to_path_buf(), source }
}

/// Creates a file that did not exist, in `dir`, named after `stem` and unique to this process and
/// call: `.{stem}.{pid}.{n}.tmp`. The leading dot keeps it out of every listing that matters.
pub(crate) fn create_temp(dir: &Path, stem: &str) -> Result<(PathBuf, File), StateError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{stem}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(file) => return Ok((path, file)),
            // A leftover of a crashed process that had the same pid.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create temp file", &path)(e)),
        }
    }
}

/// Whether a file name is one [`create_temp`] makes.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// fsync of a directory, so a rename or a new entry in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("sync directory", dir))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes` atomically and durably: temp file in the same directory, write,
/// fsync, rename over `path`, fsync of the directory. A crash leaves the old content or the new,
/// plus at worst a stray temp file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = parent_of(path);
    let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let (tmp, mut file) = create_temp(dir, stem)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("rename temp file onto", path)(e));
    }
    sync_dir(dir)
}

/// [`atomic_write`] of `value` as JSON (one line, newline-terminated).
pub fn atomic_write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StateError> {
    let mut bytes = serde_json::to_vec(value)
        .map_err(|source| StateError::Encode { path: path.to_path_buf(), source })?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

/// Reads a JSON file written by [`atomic_write_json`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, StateError> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| StateError::Json { path: path.to_path_buf(), source })
}

/// [`read_json`], with a missing file as None.
pub fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Json { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Doc {
        name: String,
        n: u32,
    }

    #[test]
    fn atomic_json_round_trip_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.json");
        atomic_write_json(&path, &Doc { name: "a".into(), n: 1 }).expect("write");
        atomic_write_json(&path, &Doc { name: "b".into(), n: 2 }).expect("rewrite");
        assert_eq!(read_json::<Doc>(&path).expect("read"), Doc { name: "b".into(), n: 2 });
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert_eq!(names, ["run.json"]);
    }

    #[test]
    fn read_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.json");
        fs::write(&path, "{\"name\": ").expect("write");
        let e = read_json::<Doc>(&path).expect_err("torn json").to_string();
        assert!(e.starts_with("invalid json in ") && e.contains("bad.json"), "{e}");
        let missing = dir.path().join("missing.json");
        assert!(read_json_opt::<Doc>(&missing).expect("missing is none").is_none());
        let e = read_json::<Doc>(&missing).expect_err("missing").to_string();
        assert!(e.starts_with("cannot read ") && e.contains("missing.json"), "{e}");
    }
}
