//! Workspaces as manifests: every file's path, digest, size and mode, the contents living in
//! [`Blobs`]. A checkpoint stores the manifest, not the files, and every phase, retry and replay
//! starts from a fresh copy made by [`materialize`], so nothing a phase does can reach the state
//! another attempt starts from.
//!
//! Taking a snapshot is the per-phase cost of checkpoints, so [`snapshot_with_hint`] skips
//! re-hashing a file whose size and mtime equal the previous manifest's entry, as git's index
//! does. Like git it guards against "racily clean" files: an entry is trusted only when its mtime
//! is more than [`RACY_WINDOW`] older than the moment the previous snapshot began, since a write
//! in the same timestamp granule as the hashing could otherwise go unseen. [`materialize`]
//! restores mtimes, so a workspace made from a checkpoint is recognised as unchanged.
//!
//! Not kept: empty directories, ownership, timestamps other than mtime, special files (fifos,
//! sockets, devices: skipped with a warning). Symbolic links are recorded with their target and
//! never followed: nothing outside the workspace is read into the store. File names must be
//! UTF-8 (a snapshot of anything else fails, rather than silently leaving the file out).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use super::blobs::{Blobs, Digest};
use super::{StateError, io_err};

/// How far back from the previous snapshot's start an mtime must be for its entry to be
/// trusted without re-hashing (coarse filesystems have 1 or 2 s timestamps).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Digest of the content (of the link target for a symbolic link).
    pub sha256: Digest,
    pub size: u64,
    /// Permission bits (`0o755`, `0o644`, …).
    pub mode: u32,
    /// Modification time in ns since the Unix epoch, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
    /// Target of a symbolic link; None for a regular file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl FileEntry {
    /// Same content, mode and link target: what counts for a diff (mtimes do not).
    pub fn same_as(&self, other: &FileEntry) -> bool {
        self.sha256 == other.sha256
            && self.size == other.size
            && self.mode == other.mode
            && self.link == other.link
    }
}

/// The files of a workspace by relative, `/`-separated path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, FileEntry>,
    /// When the snapshot began, in ns since the Unix epoch (0: unknown, no entry is trusted).
    #[serde(default)]
    pub taken_at_ns: u64,
}

/// How a path differs between two manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Modified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

impl Manifest {
    /// What changed from `self` to `newer`, by path order. Content, mode and link target count;
    /// mtimes do not.
    pub fn diff(&self, newer: &Manifest) -> Vec<Change> {
        let mut changes: Vec<Change> = Vec::new();
        for (path, entry) in &self.files {
            match newer.files.get(path) {
                None => changes.push(Change { path: path.clone(), kind: ChangeKind::Removed }),
                Some(now) if !entry.same_as(now) => {
                    changes.push(Change { path: path.clone(), kind: ChangeKind::Modified })
                }
                Some(_) => {}
            }
        }
        for path in newer.files.keys().filter(|p| !self.files.contains_key(*p)) {
            changes.push(Change { path: path.clone(), kind: ChangeKind::Added });
        }
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        changes
    }

    /// Digests of the stored contents (links excluded): the live set for [`Blobs::gc`].
    pub fn digests(&self) -> impl Iterator<Item = Digest> + '_ {
        self.files.values().filter(|e| e.link.is_none()).map(|e| e.sha256)
    }

    /// Total size of the regular files.
    pub fn total_size(&self) -> u64 {
        self.files.values().filter(|e| e.link.is_none()).map(|e| e.size).sum()
    }
}

/// Which paths a snapshot leaves out, gitignore-like:
/// - `name/` excludes directories with that name at any depth (`node_modules/`, `.git/`);
/// - `name` (no `/`) excludes files and directories with that name at any depth (`*.pyc`);
/// - a pattern with a `/` before its end (or a leading `/`) is anchored at the workspace root
///   (`/build/`, `out/tmp`).
///
/// `*` matches any run of characters except `/`, `?` one character. `**` is not supported.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    dir_only: bool,
    anchored: bool,
}

impl Exclude {
    pub fn none() -> Exclude {
        Exclude::default()
    }

    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Exclude {
        let rules = patterns
            .iter()
            .filter_map(|p| {
                let p = p.as_ref().trim();
                let (p, dir_only) = match p.strip_suffix('/') {
                    Some(rest) => (rest, true),
                    None => (p, false),
                };
                let (p, leading) = match p.strip_prefix('/') {
                    Some(rest) => (rest, true),
                    None => (p, false),
                };
                (!p.is_empty()).then(|| Rule {
                    pattern: p.to_owned(),
                    dir_only,
                    anchored: leading || p.contains('/'),
                })
            })
            .collect();
        Exclude { rules }
    }

    /// Whether `rel` (relative, `/`-separated) is left out.
    pub fn matches(&self, rel: &str, is_dir: bool) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.rules.iter().any(|r| {
            (is_dir || !r.dir_only)
                && glob(r.pattern.as_bytes(), if r.anchored { rel } else { name }.as_bytes())
        })
    }
}

/// `*` (not across `/`) and `?` wildcard match of the whole `text`.
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && ((pat[p] == b'?' && text[t] != b'/') || (pat[p] == text[t] && pat[p] != b'*')) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star.filter(|&(_, st)| text[st] != b'/') {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

fn nanos_since_epoch(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().and_then(|d| u64::try_from(d.as_nanos()).ok())
}

/// [`snapshot_with_hint`] without a previous manifest: every file is hashed.
pub fn snapshot(workspace: &Path, blobs: &Blobs, exclude: &Exclude) -> Result<Manifest, StateError> {
    snapshot_with_hint(workspace, blobs, exclude, None)
}

/// Records every file of `workspace` (except what `exclude` leaves out) and stores the contents
/// the store lacks. A file whose size and mtime equal its entry in `prev`, old enough to be
/// trusted (see the module docs) and whose blob is still stored, is not read at all.
pub fn snapshot_with_hint(
    workspace: &Path,
    blobs: &Blobs,
    exclude: &Exclude,
    prev: Option<&Manifest>,
) -> Result<Manifest, StateError> {
    let taken_at_ns = nanos_since_epoch(SystemTime::now()).unwrap_or(0);
    let trusted_before = prev.map_or(0, |m| m.taken_at_ns.saturating_sub(RACY_WINDOW.as_nanos() as u64));
    let mut files = BTreeMap::new();
    let mut pending: Vec<(PathBuf, String)> = vec![(workspace.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let path = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| StateError::NonUtf8Path { path: path.clone() })?;
            let rel = if rel_dir.is_empty() { name } else { format!("{rel_dir}/{name}") };
            let meta = entry.metadata().map_err(io_err("stat", &path))?;
            let kind = meta.file_type();
            if exclude.matches(&rel, kind.is_dir()) {
                continue;
            }
            if kind.is_dir() {
                pending.push((path, rel));
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err("read link", &path))?;
                let target = target
                    .into_os_string()
                    .into_string()
                    .map_err(|_| StateError::NonUtf8Path { path: path.clone() })?;
                let entry = FileEntry {
                    sha256: Digest::of_bytes(target.as_bytes()),
                    size: target.len() as u64,
                    mode: 0o777,
                    mtime_ns: None,
                    link: Some(target),
                };
                files.insert(rel, entry);
            } else if kind.is_file() {
                let size = meta.len();
                let mtime_ns = meta.modified().ok().and_then(nanos_since_epoch);
                // the owner's bits only: what Helix stores and writes back is private (0600/0700)
                let mode = meta.permissions().mode() & 0o700;
                let known = prev.and_then(|m| m.files.get(&rel)).filter(|e| {
                    e.link.is_none()
                        && e.size == size
                        && e.mtime_ns.is_some()
                        && e.mtime_ns == mtime_ns
                        && e.mtime_ns < Some(trusted_before)
                        && blobs.contains(&e.sha256)
                });
                let sha256 = match known {
                    Some(e) => e.sha256,
                    None => blobs.put_file(&path)?,
                };
                files.insert(rel, FileEntry { sha256, size, mode, mtime_ns, link: None });
            } else {
                tracing::warn!(path = %path.display(), "special file left out of the workspace snapshot");
            }
        }
    }
    Ok(Manifest { files, taken_at_ns })
}

/// Checks that a manifest path stays inside the workspace it is materialized into.
fn check_rel_path(rel: &str) -> Result<(), StateError> {
    let bad = |reason| Err(StateError::UnsafePath { path: rel.to_owned(), reason });
    if rel.is_empty() {
        return bad("empty path");
    }
    if rel.starts_with('/') {
        return bad("absolute path");
    }
    if rel.contains('\0') {
        return bad("nul byte");
    }
    for part in rel.split('/') {
        match part {
            "" => return bad("empty path component"),
            "." | ".." => return bad("'.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// Creates `dest` (which must not exist, or be an empty directory) with exactly the files of
/// `manifest`: contents copied from the store (never linked: phases modify their files), modes
/// and mtimes restored, symbolic links recreated. Paths that would leave `dest` are rejected
/// before anything is written, and links are created last, so no file is written through one.
pub fn materialize(manifest: &Manifest, blobs: &Blobs, dest: &Path) -> Result<(), StateError> {
    for (rel, entry) in &manifest.files {
        check_rel_path(rel)?;
        // A path below another entry would be written through it (a link, or a file as a dir).
        let mut prefix = rel.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if manifest.files.contains_key(parent) {
                return Err(StateError::UnsafePath {
                    path: rel.clone(),
                    reason: "a parent is a file or link",
                });
            }
            prefix = parent;
        }
        if entry.link.is_none() {
            blobs.get(&entry.sha256)?;
        }
    }
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(StateError::NotEmpty { path: dest.to_path_buf() });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(io_err("create directory", dest))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(StateError::NotEmpty { path: dest.to_path_buf() });
        }
        Err(e) => return Err(io_err("list", dest)(e)),
    }
    write_entries(manifest, blobs, dest)
}

/// Writes every entry of `manifest` into `dest`, where none of them exists yet.
fn write_entries(manifest: &Manifest, blobs: &Blobs, dest: &Path) -> Result<(), StateError> {
    let mut made_dir: Option<PathBuf> = None;
    let mut ensure_parent = |path: &Path| -> Result<(), StateError> {
        let parent = path.parent().unwrap_or(dest);
        if made_dir.as_deref() != Some(parent) {
            fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
            made_dir = Some(parent.to_path_buf());
        }
        Ok(())
    };
    for (rel, entry) in manifest.files.iter().filter(|(_, e)| e.link.is_none()) {
        let path = dest.join(rel);
        ensure_parent(&path)?;
        let src_path = blobs.get(&entry.sha256)?;
        let mut src = File::open(&src_path).map_err(io_err("open", &src_path))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let copied = io::copy(&mut src, &mut out).map_err(io_err("write", &path))?;
        if copied != entry.size {
            return Err(StateError::CorruptBlob {
                path: src_path,
                detail: format!("{copied} bytes where the manifest says {}", entry.size),
            });
        }
        if let Some(ns) = entry.mtime_ns {
            out.set_modified(UNIX_EPOCH + Duration::from_nanos(ns)).map_err(io_err("set mtime of", &path))?;
        }
        out.set_permissions(fs::Permissions::from_mode(entry.mode & 0o777))
            .map_err(io_err("set mode of", &path))?;
    }
    for (rel, entry) in &manifest.files {
        if let Some(target) = &entry.link {
            let path = dest.join(rel);
            ensure_parent(&path)?;
            std::os::unix::fs::symlink(target, &path).map_err(io_err("create link", &path))?;
        }
    }
    Ok(())
}

/// Makes `dir`, a workspace that was just snapshotted as `manifest` (the directory of the phase
/// that produced a checkpoint), hold exactly `manifest` again: paths the manifest lacks
/// (excluded directories, special files) are removed, entries whose type, size, mode or mtime
/// differ are rewritten from the store, missing ones written. The next phase then starts in
/// that directory instead of a fresh copy of every file; the result is the same as
/// [`materialize`]. Returns how many entries were (re)written.
pub fn reconcile(manifest: &Manifest, blobs: &Blobs, dir: &Path) -> Result<usize, StateError> {
    for rel in manifest.files.keys() {
        check_rel_path(rel)?;
    }
    let mut intact: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = pending.pop() {
        for item in fs::read_dir(&d).map_err(io_err("list", &d))? {
            let item = item.map_err(io_err("list", &d))?;
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                let p = item.path();
                fs::remove_file(&p).or_else(|_| fs::remove_dir_all(&p)).map_err(io_err("remove", &p))?;
                continue;
            };
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let path = item.path();
            let kind = item.file_type().map_err(io_err("stat", &path))?;
            if kind.is_dir() {
                let below = format!("{rel}/");
                if manifest.files.range(below.clone()..).next().is_some_and(|(k, _)| k.starts_with(&below)) {
                    pending.push((path, rel));
                } else {
                    fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
                }
                continue;
            }
            let keep = match manifest.files.get_key_value(&rel) {
                Some((key, e)) => {
                    let same = match &e.link {
                        Some(target) => {
                            kind.is_symlink()
                                && fs::read_link(&path).ok().and_then(|t| t.to_str().map(|t| t == target))
                                    == Some(true)
                        }
                        None => {
                            let meta = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
                            kind.is_file()
                                && meta.len() == e.size
                                && meta.permissions().mode() & 0o777 == e.mode & 0o777
                                && e.mtime_ns.is_some()
                                && meta.modified().ok().and_then(nanos_since_epoch) == e.mtime_ns
                        }
                    };
                    same.then_some(key.as_str())
                }
                None => None,
            };
            match keep {
                Some(key) => {
                    intact.insert(key);
                }
                None => fs::remove_file(&path).map_err(io_err("remove", &path))?,
            }
        }
    }
    let missing = Manifest {
        files: manifest
            .files
            .iter()
            .filter(|(k, _)| !intact.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        taken_at_ns: manifest.taken_at_ns,
    };
    write_entries(&missing, blobs, dir)?;
    Ok(missing.files.len())
}

/// Unified line diff (hunks with 3 lines of context, no file header) turning `old` into `new`;
/// empty when they are equal.
pub fn text_diff(old: &str, new: &str) -> String {
    TextDiff::from_lines(old, new).unified_diff().context_radius(3).to_string()
}

/// [`text_diff`] with the `--- a/path` / `+++ b/path` header `patch -p1` expects; empty when
/// equal.
pub fn file_diff(path: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }

    fn chmod(root: &Path, rel: &str, mode: u32) {
        fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Sets a file's mtime `secs` seconds into the past, as a file untouched since then.
    fn age(root: &Path, rel: &str, secs: u64) {
        File::options()
            .write(true)
            .open(root.join(rel))
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(secs)))
            .expect("set mtime");
    }

    fn sample_workspace(root: &Path) {
        write(root, "README.md", b"# demo\n");
        write(root, "src/main.py", b"print('hi')\n");
        write(root, "src/pkg/deep/mod.py", b"X = 1\n");
        write(root, "bin/run.sh", b"#!/bin/sh\necho run\n");
        chmod(root, "bin/run.sh", 0o755);
        write(root, "empty.txt", b"");
        write(root, "node_modules/left/index.js", b"module.exports = 1\n");
        write(root, ".git/HEAD", b"ref: refs/heads/main\n");
        write(root, "cache.pyc", b"\x00\x01");
        symlink("src/main.py", root.join("main-link")).expect("symlink");
    }

    fn state(dir: &Path) -> Blobs {
        Blobs::open(&dir.join("state")).expect("open").without_sync()
    }

    #[test]
    fn exclude_patterns_follow_gitignore_conventions() {
        let ex = Exclude::new(&["node_modules/", ".git/", "*.pyc", "/build/", "out/tmp", ""]);
        assert!(ex.matches("node_modules", true));
        assert!(ex.matches("a/b/node_modules", true));
        assert!(!ex.matches("node_modules", false), "dir-only rule");
        assert!(ex.matches("x/y.pyc", false));
        assert!(ex.matches("y.pyc", true));
        assert!(!ex.matches("y.pyc.txt", false));
        assert!(ex.matches("build", true));
        assert!(!ex.matches("src/build", true), "anchored at the root");
        assert!(ex.matches("out/tmp", false));
        assert!(!ex.matches("a/out/tmp", false));
        assert!(!Exclude::none().matches("anything", true));
        assert!(glob(b"a*c", b"abbbc") && !glob(b"a*c", b"ab/c") && glob(b"a?c", b"abc"));
        assert!(glob(b"*", b"") && !glob(b"?", b"") && glob(b"**x", b"yx"));
    }

    #[test]
    fn snapshot_records_nested_files_modes_links_and_honours_excludes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        sample_workspace(&ws);
        let blobs = state(dir.path());
        let m = snapshot(&ws, &blobs, &Exclude::new(&["node_modules/", ".git/", "*.pyc"])).expect("snapshot");
        let paths: Vec<&str> = m.files.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            ["README.md", "bin/run.sh", "empty.txt", "main-link", "src/main.py", "src/pkg/deep/mod.py"]
        );
        assert_eq!(m.files["bin/run.sh"].mode, 0o700, "the owner's bits only");
        assert_eq!(m.files["README.md"].mode & 0o111, 0);
        assert_eq!(m.files["src/pkg/deep/mod.py"].sha256, Digest::of_bytes(b"X = 1\n"));
        assert_eq!(m.files["src/pkg/deep/mod.py"].size, 6);
        assert_eq!(m.files["main-link"].link.as_deref(), Some("src/main.py"));
        assert_eq!(blobs.stats().blobs_written, 5, "the link target is not a blob");
        assert_eq!(m.digests().count(), 5);
        assert_eq!(m.total_size(), 7 + 19 + 12 + 6);
        let json = serde_json::to_string(&m).expect("json");
        assert_eq!(serde_json::from_str::<Manifest>(&json).expect("parse"), m);
    }

    #[test]
    fn reconcile_turns_a_used_workspace_back_into_its_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        sample_workspace(&src);
        let blobs = state(dir.path());
        let m = snapshot(&src, &blobs, &Exclude::new(&["cache/"])).expect("snapshot");
        // a phase's workspace is materialized from the manifest
        let ws = dir.path().join("ws");
        materialize(&m, &blobs, &ws).expect("materialize");
        // what a phase or gate may leave behind: excluded and extra paths, a changed file
        fs::create_dir_all(ws.join("cache/deep")).expect("mkdir");
        fs::write(ws.join("cache/deep/x.pyc"), b"junk").expect("write");
        fs::write(ws.join("stray.txt"), b"stray").expect("write");
        let (changed, _) = m.files.iter().find(|(_, e)| e.link.is_none()).expect("a file");
        fs::write(ws.join(changed), b"different content").expect("write");
        let rewritten = reconcile(&m, &blobs, &ws).expect("reconcile");
        assert_eq!(rewritten, 1, "only the changed file is written again");
        assert!(!ws.join("cache").exists() && !ws.join("stray.txt").exists());
        let again = snapshot(&ws, &blobs, &Exclude::none()).expect("snapshot");
        assert!(m.diff(&again).is_empty(), "{:?}", m.diff(&again));
        let fresh = dir.path().join("fresh");
        materialize(&m, &blobs, &fresh).expect("materialize");
        for rel in m.files.keys() {
            assert_eq!(
                fs::symlink_metadata(ws.join(rel)).is_ok(),
                fs::symlink_metadata(fresh.join(rel)).is_ok()
            );
        }
    }

    #[test]
    fn materialize_reproduces_the_workspace_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        sample_workspace(&ws);
        let blobs = state(dir.path());
        let m = snapshot(&ws, &blobs, &Exclude::none()).expect("snapshot");
        let copy = dir.path().join("copy");
        materialize(&m, &blobs, &copy).expect("materialize");
        for (rel, entry) in &m.files {
            let (a, b) = (ws.join(rel), copy.join(rel));
            if let Some(target) = &entry.link {
                assert_eq!(fs::read_link(&b).expect("link").to_str(), Some(target.as_str()));
                continue;
            }
            assert_eq!(fs::read(&a).expect("original"), fs::read(&b).expect("copy"), "{rel}");
            let (ma, mb) = (fs::metadata(&a).expect("stat"), fs::metadata(&b).expect("stat"));
            // the owner's bits, nothing for group and others
            assert_eq!(ma.permissions().mode() & 0o700, mb.permissions().mode() & 0o777, "{rel}");
            assert_eq!(ma.modified().expect("mtime"), mb.modified().expect("mtime"), "{rel}");
        }
        // Copies, not links to the store: editing the copy leaves the blob intact.
        fs::write(copy.join("src/main.py"), b"changed").expect("edit copy");
        blobs.verify(&m.files["src/main.py"].sha256).expect("blob untouched");
        // The copy snapshots to the same manifest.
        let again = snapshot(&copy, &blobs, &Exclude::none()).expect("snapshot copy");
        assert_eq!(m.diff(&again), [Change { path: "src/main.py".into(), kind: ChangeKind::Modified }]);
    }

    #[test]
    fn materialize_only_into_a_fresh_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        write(&ws, "a.txt", b"a");
        let blobs = state(dir.path());
        let m = snapshot(&ws, &blobs, &Exclude::none()).expect("snapshot");
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).expect("mkdir");
        materialize(&m, &blobs, &empty).expect("an empty directory is fine");
        let e = materialize(&m, &blobs, &empty).expect_err("not empty any more").to_string();
        assert!(e.contains("is not an empty directory"), "{e}");
        let e = materialize(&m, &blobs, &ws.join("a.txt")).expect_err("a file").to_string();
        assert!(e.contains("a.txt"), "{e}");
    }

    #[test]
    fn materialize_rejects_paths_escaping_the_destination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = state(dir.path());
        let sha256 = blobs.put_bytes(b"x").expect("put");
        let file = FileEntry { sha256, size: 1, mode: 0o644, mtime_ns: None, link: None };
        let link = |t: &str| FileEntry {
            sha256: Digest::of_bytes(t.as_bytes()),
            size: t.len() as u64,
            mode: 0o777,
            mtime_ns: None,
            link: Some(t.to_owned()),
        };
        let cases: Vec<Vec<(&str, FileEntry)>> = vec![
            vec![("../escape", file.clone())],
            vec![("/etc/passwd", file.clone())],
            vec![("a/./b", file.clone())],
            vec![("a//b", file.clone())],
            vec![("", file.clone())],
            vec![("out", link(&dir.path().display().to_string())), ("out/victim", file.clone())],
            vec![("a", file.clone()), ("a/b", file.clone())],
        ];
        for (i, files) in cases.into_iter().enumerate() {
            let m = Manifest {
                files: files.into_iter().map(|(p, e)| (p.to_owned(), e)).collect(),
                taken_at_ns: 0,
            };
            let dest = dir.path().join(format!("dest{i}"));
            let e = materialize(&m, &blobs, &dest).expect_err("unsafe path");
            assert!(matches!(e, StateError::UnsafePath { .. }), "case {i}: {e}");
            assert!(!dest.exists(), "case {i}: nothing written");
        }
        assert!(!dir.path().join("victim").exists());
    }

    #[test]
    fn materialize_reports_a_missing_blob_before_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = state(dir.path());
        let gone = Digest::of_bytes(b"never stored");
        let mut m = Manifest::default();
        m.files.insert(
            "f".into(),
            FileEntry { sha256: gone, size: 12, mode: 0o644, mtime_ns: None, link: None },
        );
        let dest = dir.path().join("dest");
        assert!(matches!(materialize(&m, &blobs, &dest), Err(StateError::MissingBlob { .. })));
        assert!(!dest.exists());
    }

    #[test]
    fn unchanged_files_are_neither_copied_nor_rehashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        for i in 0..50 {
            write(&ws, &format!("d{}/f{i}.txt", i % 5), format!("file {i}\n").as_bytes());
            age(&ws, &format!("d{}/f{i}.txt", i % 5), 60);
        }
        let blobs = state(dir.path());
        let first = snapshot(&ws, &blobs, &Exclude::none()).expect("snapshot");
        assert_eq!(blobs.stats().blobs_written, 50);

        // Without a hint: everything hashed again, nothing copied again.
        let hashed = blobs.stats().bytes_hashed;
        let second = snapshot(&ws, &blobs, &Exclude::none()).expect("snapshot");
        assert_eq!(blobs.stats().blobs_written, 50);
        assert_eq!(blobs.stats().bytes_hashed - hashed, first.total_size());
        assert!(first.diff(&second).is_empty());

        // With a hint: only the changed and added files are read.
        write(&ws, "d1/f1.txt", b"changed content\n");
        write(&ws, "new.txt", b"new\n");
        fs::remove_file(ws.join("d2/f2.txt")).expect("remove");
        chmod(&ws, "d3/f3.txt", 0o755);
        let hashed = blobs.stats().bytes_hashed;
        let third = snapshot_with_hint(&ws, &blobs, &Exclude::none(), Some(&second)).expect("snapshot");
        let read = blobs.stats().bytes_hashed - hashed;
        // Each new file is hashed, then hashed again while copied.
        assert_eq!(read, 2 * (16 + 4), "only the two new contents were read");
        assert_eq!(blobs.stats().blobs_written, 52);
        assert_eq!(
            second.diff(&third),
            [
                Change { path: "d1/f1.txt".into(), kind: ChangeKind::Modified },
                Change { path: "d2/f2.txt".into(), kind: ChangeKind::Removed },
                Change { path: "d3/f3.txt".into(), kind: ChangeKind::Modified },
                Change { path: "new.txt".into(), kind: ChangeKind::Added },
            ]
        );
        assert_eq!(third.files["d3/f3.txt"].mode, 0o700);
    }

    #[test]
    fn a_recent_mtime_is_not_trusted_even_when_size_and_mtime_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        write(&ws, "f.txt", b"aaaa");
        let blobs = state(dir.path());
        let first = snapshot(&ws, &blobs, &Exclude::none()).expect("snapshot");
        // Same size, same mtime, different content: what a write within one timestamp granule
        // of the snapshot looks like.
        let mtime = fs::metadata(ws.join("f.txt")).and_then(|m| m.modified()).expect("mtime");
        write(&ws, "f.txt", b"bbbb");
        File::options()
            .write(true)
            .open(ws.join("f.txt"))
            .and_then(|f| f.set_modified(mtime))
            .expect("mtime");
        let second = snapshot_with_hint(&ws, &blobs, &Exclude::none(), Some(&first)).expect("snapshot");
        assert_eq!(second.files["f.txt"].sha256, Digest::of_bytes(b"bbbb"));
    }

    #[test]
    fn a_hint_whose_blob_was_collected_is_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        write(&ws, "f.txt", b"content");
        age(&ws, "f.txt", 60);
        let blobs = state(dir.path());
        let first = snapshot(&ws, &blobs, &Exclude::none()).expect("snapshot");
        blobs.gc(std::iter::empty()).expect("gc everything");
        let second = snapshot_with_hint(&ws, &blobs, &Exclude::none(), Some(&first)).expect("snapshot");
        blobs.verify(&second.files["f.txt"].sha256).expect("stored again");
    }

    #[test]
    fn a_materialized_workspace_is_recognised_as_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        for i in 0..20 {
            write(&ws, &format!("f{i}"), format!("{i}").as_bytes());
            age(&ws, &format!("f{i}"), 60);
        }
        let blobs = state(dir.path());
        let m = snapshot(&ws, &blobs, &Exclude::none()).expect("snapshot");
        let next = dir.path().join("next");
        materialize(&m, &blobs, &next).expect("materialize");
        let hashed = blobs.stats().bytes_hashed;
        let again = snapshot_with_hint(&next, &blobs, &Exclude::none(), Some(&m)).expect("snapshot");
        assert_eq!(blobs.stats().bytes_hashed, hashed, "nothing re-read");
        assert!(m.diff(&again).is_empty());
    }

    #[test]
    fn diff_reports_added_removed_and_modified_in_path_order() {
        let entry = |c: &[u8], mode| FileEntry {
            sha256: Digest::of_bytes(c),
            size: c.len() as u64,
            mode,
            mtime_ns: Some(1),
            link: None,
        };
        let old = Manifest {
            files: [("a", entry(b"1", 0o644)), ("b", entry(b"2", 0o644)), ("c", entry(b"3", 0o644))]
                .into_iter()
                .map(|(p, e)| (p.to_owned(), e))
                .collect(),
            taken_at_ns: 1,
        };
        let mut new = old.clone();
        new.files.remove("a");
        new.files.insert("b".into(), entry(b"2", 0o755));
        new.files.insert("d".into(), entry(b"4", 0o644));
        new.files.get_mut("c").expect("c").mtime_ns = Some(99);
        let kinds: Vec<(String, ChangeKind)> = old.diff(&new).into_iter().map(|c| (c.path, c.kind)).collect();
        let expected = [("a", ChangeKind::Removed), ("b", ChangeKind::Modified), ("d", ChangeKind::Added)];
        assert_eq!(kinds, expected.map(|(p, k)| (p.to_owned(), k)));
        assert!(old.diff(&old).is_empty());
        assert_eq!(serde_json::to_value(ChangeKind::Added).expect("json"), "added");
    }

    #[test]
    fn text_diffs_are_unified() {
        assert_eq!(text_diff("a\nb\n", "a\nb\n"), "");
        let d = text_diff("one\ntwo\nthree\n", "one\n2\nthree\n");
        assert_eq!(d, "@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n");
        let f = file_diff("src/x.py", "a\n", "b\n");
        assert!(f.starts_with("--- a/src/x.py\n+++ b/src/x.py\n@@ -1 +1 @@\n-a\n+b\n"), "{f}");
        assert_eq!(file_diff("x", "same", "same"), "");
    }
}
