//! Applying the healer's fixes: unified diffs (the healer's `diff::unified`, `git diff`) applied
//! to a phase workspace.
//!
//! A fix is applied unattended, so it must either apply exactly as its author saw the files or
//! not at all. Context and removed lines are compared byte for byte (fuzz 0); only the position
//! may move (a hunk is searched nearest its stated line first, as `patch` does with an offset),
//! and a hunk with less context on one side than the other is anchored to that end of the file.
//! Every hunk of every file is checked in memory before anything is written; then each file is
//! staged as a temporary file beside it and renamed over it, so a crash leaves each file either
//! old or new, never half written, and a patch that does not apply leaves the workspace
//! untouched.
//!
//! Paths come from a remote service and are treated as hostile: absolute paths, `..`, `.git` and
//! any symlink on the way (which would edit a file the diff does not name, possibly outside the
//! workspace) are refused. Renames, copies and binary patches are refused rather than silently
//! skipped; mode changes are ignored.
//!
//! Blocking (file reads, writes and fsync): call from a blocking thread.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("line {line} of the patch: {message}")]
    Parse { line: usize, message: String },
    #[error("path {path:?} is refused: {reason}")]
    UnsafePath { path: String, reason: String },
    #[error("{path}: {message}")]
    Unsupported { path: String, message: String },
    #[error("{path}: no such file")]
    Missing { path: String },
    #[error("{path}: the patch creates it, but it already exists")]
    Exists { path: String },
    #[error("{path}: hunk {hunk} does not apply (expected at line {line})")]
    Mismatch { path: String, hunk: usize, line: usize },
    #[error("{path}: the patch deletes it, but it has more content than the patch removes")]
    NotEmpty { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Context,
    Remove,
    Add,
}

#[derive(Debug)]
struct Hunk {
    old_start: usize,
    old_len: usize,
    /// Each line with its `\n`, unless `\ No newline at end of file` followed it.
    lines: Vec<(Mark, Vec<u8>)>,
}

impl Hunk {
    fn old_lines(&self) -> Vec<&[u8]> {
        self.lines.iter().filter(|(m, _)| *m != Mark::Add).map(|(_, l)| l.as_slice()).collect()
    }

    fn new_lines(&self) -> impl Iterator<Item = &[u8]> {
        self.lines.iter().filter(|(m, _)| *m != Mark::Remove).map(|(_, l)| l.as_slice())
    }

    /// Context lines before the first change and after the last.
    fn context(&self) -> (usize, usize) {
        let lead = self.lines.iter().take_while(|(m, _)| *m == Mark::Context).count();
        let trail = self.lines.iter().rev().take_while(|(m, _)| *m == Mark::Context).count();
        (lead, trail)
    }
}

#[derive(Debug)]
struct FilePatch {
    /// `None`: `/dev/null` (the file is created).
    old: Option<String>,
    /// `None`: `/dev/null` (the file is deleted).
    new: Option<String>,
    hunks: Vec<Hunk>,
}

impl FilePatch {
    fn path(&self) -> &str {
        self.new.as_deref().or(self.old.as_deref()).unwrap_or_default()
    }
}

/// Applies `patch` to the files under `dir`; answers the files it changed (created, modified or
/// deleted), as the patch names them, in its order. Nothing is written unless every hunk of
/// every file applies.
pub fn apply(dir: &Path, patch: &str) -> Result<Vec<String>, PatchError> {
    let (planned, touched) = plan(dir, patch)?;
    commit(planned)?;
    Ok(touched)
}

/// Whether `patch` would apply to the files under `dir` (nothing is written); the files it
/// would change.
pub fn check(dir: &Path, patch: &str) -> Result<Vec<String>, PatchError> {
    plan(dir, patch).map(|(_, touched)| touched)
}

type Planned = BTreeMap<String, (PathBuf, Option<Vec<u8>>)>;

fn plan(dir: &Path, patch: &str) -> Result<(Planned, Vec<String>), PatchError> {
    let files = parse(patch)?;
    // path → planned content (None: absent), in memory until every file has applied
    let mut planned: BTreeMap<String, (PathBuf, Option<Vec<u8>>)> = BTreeMap::new();
    let mut touched: Vec<String> = Vec::new();
    for f in &files {
        if let (Some(old), Some(new)) = (&f.old, &f.new)
            && old != new
        {
            return Err(PatchError::Unsupported {
                path: new.clone(),
                message: format!("renames are not supported (from {old:?})"),
            });
        }
        let rel = f.path().to_owned();
        let target = resolve(dir, &rel)?;
        let current = match planned.get(&rel) {
            Some((_, content)) => content.clone(),
            None => read_existing(&target, &rel)?,
        };
        let original = match (&f.old, current) {
            (None, Some(c)) if !c.is_empty() => return Err(PatchError::Exists { path: rel }),
            (None, _) => Vec::new(),
            (Some(_), None) => return Err(PatchError::Missing { path: rel }),
            (Some(_), Some(c)) => c,
        };
        let result = apply_hunks(&rel, &original, &f.hunks)?;
        let result = match &f.new {
            None if !result.is_empty() => return Err(PatchError::NotEmpty { path: rel }),
            None => None,
            Some(_) => Some(result),
        };
        if !touched.contains(&rel) {
            touched.push(rel.clone());
        }
        planned.insert(rel, (target, result));
    }
    Ok((planned, touched))
}

/// The file's bytes, `None` when it does not exist; a directory or special file is an error.
fn read_existing(target: &Path, rel: &str) -> Result<Option<Vec<u8>>, PatchError> {
    let io = |source| PatchError::Io { path: rel.to_owned(), source };
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
        Ok(m) if !m.is_file() => {
            Err(PatchError::UnsafePath { path: rel.to_owned(), reason: "not a regular file".to_owned() })
        }
        Ok(_) => fs::read(target).map(Some).map_err(io),
    }
}

/// `dir/rel`, when `rel` is a plain relative path whose existing parts under `dir` are real
/// directories (no symlink, no `..`, not absolute, not into `.git`).
fn resolve(dir: &Path, rel: &str) -> Result<PathBuf, PatchError> {
    let refuse = |reason: &str| PatchError::UnsafePath { path: rel.to_owned(), reason: reason.to_owned() };
    if rel.is_empty() || rel.contains('\0') {
        return Err(refuse("empty or with a NUL byte"));
    }
    let mut out = dir.to_path_buf();
    let mut any = false;
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(name) if name == ".git" => return Err(refuse("inside .git")),
            Component::Normal(name) => {
                out.push(name);
                any = true;
                match fs::symlink_metadata(&out) {
                    Ok(m) if m.file_type().is_symlink() => return Err(refuse("it goes through a symlink")),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(PatchError::Io { path: rel.to_owned(), source: e }),
                }
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("it contains ..")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("it is absolute")),
        }
    }
    if !any {
        return Err(refuse("it names no file"));
    }
    Ok(out)
}

/// The hunks applied to `original`, in order; each must match exactly at or near its line.
fn apply_hunks(path: &str, original: &[u8], hunks: &[Hunk]) -> Result<Vec<u8>, PatchError> {
    let lines: Vec<&[u8]> = original.split_inclusive(|b| *b == b'\n').collect();
    let mut out = Vec::with_capacity(original.len());
    let mut cursor = 0usize;
    let mut offset = 0isize;
    for (n, h) in hunks.iter().enumerate() {
        let old = h.old_lines();
        // where the hunk says it goes, 0-based (a hunk without old lines goes after line `start`)
        let stated = if h.old_len == 0 { h.old_start } else { h.old_start.saturating_sub(1) };
        let expected = (stated as isize + offset).max(0) as usize;
        let found = locate(&lines, &old, h, expected, cursor).ok_or(PatchError::Mismatch {
            path: path.to_owned(),
            hunk: n + 1,
            line: expected + 1,
        })?;
        offset = found as isize - stated as isize;
        for l in &lines[cursor..found] {
            out.extend_from_slice(l);
        }
        for l in h.new_lines() {
            out.extend_from_slice(l);
        }
        cursor = found + old.len();
    }
    for l in &lines[cursor..] {
        out.extend_from_slice(l);
    }
    Ok(out)
}

/// The position (at or after `from`) where `old` matches, nearest `expected`, later first on a
/// tie. A hunk with less leading than trailing context was cut by the start of the file and must
/// match there; less trailing than leading, at the end. A hunk without context has nothing to
/// find it by: only its stated position counts.
fn locate(lines: &[&[u8]], old: &[&[u8]], h: &Hunk, expected: usize, from: usize) -> Option<usize> {
    let fits = |p: usize| p >= from && p + old.len() <= lines.len() && lines[p..p + old.len()] == *old;
    let (lead, trail) = h.context();
    let last = lines.len().checked_sub(old.len())?;
    if lead < trail {
        return fits(0).then_some(0);
    }
    if trail < lead {
        return fits(last).then_some(last);
    }
    if lead == 0 {
        return fits(expected).then_some(expected);
    }
    let far = last.saturating_sub(expected).max(expected.saturating_sub(from));
    (0..=far).find_map(|d| {
        let ahead = expected + d;
        if ahead <= last && fits(ahead) {
            return Some(ahead);
        }
        let back = expected.checked_sub(d)?;
        (d > 0 && fits(back)).then_some(back)
    })
}

/// Stages every new content as a temporary file beside its target (nothing is replaced if one
/// cannot be written), then renames them over the targets and removes deleted files.
fn commit(planned: BTreeMap<String, (PathBuf, Option<Vec<u8>>)>) -> Result<(), PatchError> {
    let mut staged: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    let mut deletes: Vec<(String, PathBuf)> = Vec::new();
    let unstage = |staged: &[(String, PathBuf, PathBuf)]| {
        for (_, tmp, _) in staged {
            let _ = fs::remove_file(tmp);
        }
    };
    for (rel, (target, content)) in planned {
        let Some(content) = content else {
            if target.exists() {
                deletes.push((rel, target));
            }
            continue;
        };
        match stage(&target, &content) {
            Ok(tmp) => staged.push((rel, tmp, target)),
            Err(source) => {
                unstage(&staged);
                return Err(PatchError::Io { path: rel, source });
            }
        }
    }
    for (i, (rel, tmp, target)) in staged.iter().enumerate() {
        if let Err(source) = fs::rename(tmp, target) {
            unstage(&staged[i..]);
            return Err(PatchError::Io { path: rel.clone(), source });
        }
    }
    for (rel, target) in deletes {
        fs::remove_file(&target).map_err(|source| PatchError::Io { path: rel, source })?;
    }
    Ok(())
}

/// Writes `content` to a new temporary file in `target`'s directory (created if missing), with
/// `target`'s permissions when it exists, synced.
fn stage(target: &Path, content: &[u8]) -> std::io::Result<PathBuf> {
    let parent = target.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    fs::create_dir_all(parent)?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.helix-patch", uuid::Uuid::new_v4().simple()));
    match write_new(&tmp, content, target) {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_new(tmp: &Path, content: &[u8], like: &Path) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).open(tmp)?;
    f.write_all(content)?;
    if let Ok(m) = fs::metadata(like) {
        f.set_permissions(m.permissions())?;
    }
    f.sync_all()
}

fn parse(patch: &str) -> Result<Vec<FilePatch>, PatchError> {
    let lines: Vec<&str> = patch.split_inclusive('\n').collect();
    let err = |i: usize, message: &str| PatchError::Parse { line: i + 1, message: message.to_owned() };
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        for refused in ["rename from ", "copy from ", "Binary files ", "GIT binary patch"] {
            if line.starts_with(refused) {
                return Err(PatchError::Unsupported {
                    path: format!("line {} of the patch", i + 1),
                    message: format!("{} is not supported", refused.trim()),
                });
            }
        }
        let next = lines.get(i + 1).copied().unwrap_or_default();
        if !(line.starts_with("--- ") && next.starts_with("+++ ")) {
            i += 1; // `diff --git`, `index`, mode lines, commit messages
            continue;
        }
        let old = header_path(&line[4..], "a/").map_err(|m| err(i, &m))?;
        let new = header_path(&next[4..], "b/").map_err(|m| err(i + 1, &m))?;
        if old.is_none() && new.is_none() {
            return Err(err(i, "both sides are /dev/null"));
        }
        i += 2;
        let mut hunks = Vec::new();
        while i < lines.len() && lines[i].starts_with("@@ ") {
            let (old_start, old_len, new_len) =
                hunk_header(lines[i]).ok_or_else(|| err(i, "bad hunk header"))?;
            i += 1;
            let (mut need_old, mut need_new) = (old_len, new_len);
            let mut body: Vec<(Mark, Vec<u8>)> = Vec::new();
            while need_old > 0 || need_new > 0 {
                let Some(l) = lines.get(i) else {
                    return Err(err(i, "the patch ends inside a hunk"));
                };
                let (mark, text) = match l.as_bytes().first() {
                    Some(b' ') => (Mark::Context, &l[1..]),
                    Some(b'-') => (Mark::Remove, &l[1..]),
                    Some(b'+') => (Mark::Add, &l[1..]),
                    Some(b'\\') => {
                        no_newline(&mut body).map_err(|m| err(i, m))?;
                        i += 1;
                        continue;
                    }
                    // an empty context line whose space was stripped by an editor or mailer
                    Some(b'\n' | b'\r') => (Mark::Context, *l),
                    _ => return Err(err(i, "unexpected line inside a hunk")),
                };
                let slot = match mark {
                    Mark::Context => need_old.min(need_new),
                    Mark::Remove => need_old,
                    Mark::Add => need_new,
                };
                if slot == 0 {
                    return Err(err(i, "the hunk has more lines than its header says"));
                }
                if mark != Mark::Add {
                    need_old -= 1;
                }
                if mark != Mark::Remove {
                    need_new -= 1;
                }
                let mut text = text.as_bytes().to_vec();
                if !text.ends_with(b"\n") {
                    text.push(b'\n'); // the patch's own last line; the marker decides
                }
                body.push((mark, text));
                i += 1;
            }
            if lines.get(i).is_some_and(|l| l.starts_with('\\')) {
                no_newline(&mut body).map_err(|m| err(i, m))?;
                i += 1;
            }
            hunks.push(Hunk { old_start, old_len, lines: body });
        }
        if hunks.is_empty() {
            return Err(err(i, "a file header without hunks"));
        }
        files.push(FilePatch { old, new, hunks });
    }
    if files.is_empty() {
        return Err(PatchError::Parse {
            line: lines.len(),
            message: "no file changes in the patch".to_owned(),
        });
    }
    Ok(files)
}

/// `\ No newline at end of file`: the line before has no `\n`.
fn no_newline(body: &mut [(Mark, Vec<u8>)]) -> Result<(), &'static str> {
    let (_, last) = body.last_mut().ok_or("a no-newline marker before any line")?;
    last.pop();
    Ok(())
}

/// The path of a `---`/`+++` header (`None` for `/dev/null`), without its `a/`/`b/` prefix, a
/// trailing timestamp (after a tab) or C-style quotes.
fn header_path(raw: &str, prefix: &str) -> Result<Option<String>, String> {
    let raw = raw.trim_end_matches(['\n', '\r']);
    let raw = raw.split('\t').next().unwrap_or_default();
    let path = if raw.starts_with('"') { unquote(raw)? } else { raw.trim_end().to_owned() };
    if path == "/dev/null" {
        return Ok(None);
    }
    Ok(Some(path.strip_prefix(prefix).map(str::to_owned).unwrap_or(path)))
}

/// A path git quoted: `"..."` with backslash escapes and octal bytes.
fn unquote(raw: &str) -> Result<String, String> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| format!("unterminated quoted path {raw:?}"))?;
    let mut out = Vec::new();
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = bytes.next().ok_or("a path ending in a backslash")?;
        out.push(match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'"' | b'\\' => e,
            b'0'..=b'7' => {
                let d = |b: Option<u8>| b.filter(|b| (b'0'..=b'7').contains(b)).map(|b| b - b'0');
                let (d2, d3) = (d(bytes.next()), d(bytes.next()));
                let (Some(d2), Some(d3)) = (d2, d3) else { return Err("a bad octal escape".to_owned()) };
                ((e - b'0') << 6) | (d2 << 3) | d3
            }
            _ => return Err(format!("unknown escape \\{}", e as char)),
        });
    }
    String::from_utf8(out).map_err(|_| "a path that is not UTF-8".to_owned())
}

/// `@@ -l[,s] +l[,s] @@ ...` → (old start, old length, new length).
fn hunk_header(line: &str) -> Option<(usize, usize, usize)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(usize, usize)> {
        match r.split_once(',') {
            Some((s, l)) => Some((s.parse().ok()?, l.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (old_start, old_len) = range(old)?;
    let (_, new_len) = range(new)?;
    Some((old_start, old_len, new_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, content: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, content).expect("write");
    }

    fn read(dir: &Path, rel: &str) -> String {
        fs::read_to_string(dir.join(rel)).expect("read")
    }

    /// Every file under `dir` with its content, to show nothing changed.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.clone(), fs::read(&p).unwrap_or_default()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn creates_a_file_from_dev_null() {
        let dir = tempfile::tempdir().expect("tmp");
        // the healer's `unified("requirements.txt", "", "PyYAML\n", true)`
        let patch = "--- /dev/null\n+++ b/requirements.txt\n@@ -0,0 +1,1 @@\n+PyYAML\n";
        assert_eq!(apply(dir.path(), patch).expect("applies"), ["requirements.txt"]);
        assert_eq!(read(dir.path(), "requirements.txt"), "PyYAML\n");
        // again: the file exists now
        assert!(matches!(apply(dir.path(), patch), Err(PatchError::Exists { .. })));
        // into a directory that does not exist yet
        let nested = "--- /dev/null\n+++ b/src/pkg/new.py\n@@ -0,0 +1,2 @@\n+import os\n+print(os.name)\n";
        apply(dir.path(), nested).expect("nested");
        assert_eq!(read(dir.path(), "src/pkg/new.py"), "import os\nprint(os.name)\n");
    }

    #[test]
    fn appends_to_requirements_with_and_without_a_final_newline() {
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "requirements.txt", "flask==3.0.0\n");
        // the healer's `unified("requirements.txt", "flask==3.0.0\n", "flask==3.0.0\nPyYAML\n", false)`
        let patch =
            "--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1,1 +1,2 @@\n flask==3.0.0\n+PyYAML\n";
        assert_eq!(apply(dir.path(), patch).expect("applies"), ["requirements.txt"]);
        assert_eq!(read(dir.path(), "requirements.txt"), "flask==3.0.0\nPyYAML\n");

        write(dir.path(), "r.txt", "flask");
        // the healer's `unified("r.txt", "flask", "flask\nPyYAML\n", false)`
        let patch = "--- a/r.txt\n+++ b/r.txt\n@@ -1,1 +1,2 @@\n-flask\n\\ No newline at end of file\n+flask\n+PyYAML\n";
        apply(dir.path(), patch).expect("applies");
        assert_eq!(read(dir.path(), "r.txt"), "flask\nPyYAML\n");
        // the same patch needs the line without its newline: now it does not apply
        assert!(matches!(apply(dir.path(), patch), Err(PatchError::Mismatch { hunk: 1, .. })));
    }

    #[test]
    fn a_change_at_the_end_is_anchored_there() {
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "requirements.txt", "flask==3.0.0\nrequests\n");
        // made against a file that ended after flask: appending there would be a guess
        let patch =
            "--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1,1 +1,2 @@\n flask==3.0.0\n+PyYAML\n";
        let e = apply(dir.path(), patch).expect_err("not at the end");
        assert!(matches!(e, PatchError::Mismatch { .. }), "{e}");
        assert_eq!(read(dir.path(), "requirements.txt"), "flask==3.0.0\nrequests\n");
    }

    fn numbered(n: usize) -> String {
        (1..=n).map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn modifies_the_middle_of_a_file_at_an_offset() {
        let dir = tempfile::tempdir().expect("tmp");
        let base = numbered(20);
        let edited = base.replace("line 10\n", "line ten\n").replace("line 16\n", "line 16\nline 16b\n");
        // a git-style patch with two hunks, made against `base`
        let patch = "diff --git a/src/app.py b/src/app.py\nindex 1111111..2222222 100644\n\
             --- a/src/app.py\n+++ b/src/app.py\n\
             @@ -7,7 +7,7 @@ def main():\n line 7\n line 8\n line 9\n-line 10\n+line ten\n line 11\n line 12\n line 13\n\
             @@ -14,6 +14,7 @@\n line 14\n line 15\n line 16\n+line 16b\n line 17\n line 18\n line 19\n";
        // the workspace gained three lines at the top since
        write(dir.path(), "src/app.py", &format!("# a\n# b\n# c\n{base}"));
        assert_eq!(apply(dir.path(), patch).expect("applies at an offset"), ["src/app.py"]);
        assert_eq!(read(dir.path(), "src/app.py"), format!("# a\n# b\n# c\n{edited}"));

        // and without the offset, the same patch gives the edited file exactly
        write(dir.path(), "src/app.py", &base);
        apply(dir.path(), patch).expect("applies in place");
        assert_eq!(read(dir.path(), "src/app.py"), edited);
    }

    #[test]
    fn deletes_a_file_that_matches_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "old.cfg", "a\nb\n");
        let patch = "--- a/old.cfg\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n";
        write(dir.path(), "old.cfg", "a\nb\nc\n");
        assert!(matches!(apply(dir.path(), patch), Err(PatchError::NotEmpty { .. })));
        write(dir.path(), "old.cfg", "a\nb\n");
        assert_eq!(apply(dir.path(), patch).expect("deletes"), ["old.cfg"]);
        assert!(!dir.path().join("old.cfg").exists());
        assert!(matches!(apply(dir.path(), patch), Err(PatchError::Missing { .. })));
    }

    #[test]
    fn mismatched_context_changes_nothing_in_any_file() {
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "a.txt", "one\ntwo\nthree\n");
        write(dir.path(), "b.txt", "alpha\nbeta\ngamma\n");
        let before = snapshot(dir.path());
        // the first file applies, the second's context differs in one byte
        let patch = "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n\
                     --- a/b.txt\n+++ b/b.txt\n@@ -1,3 +1,3 @@\n alpha\n-beta\n+BETA\n gamma \n";
        let e = apply(dir.path(), patch).expect_err("second file mismatches");
        assert!(matches!(&e, PatchError::Mismatch { path, hunk: 1, line: 1 } if path == "b.txt"), "{e}");
        assert_eq!(snapshot(dir.path()), before, "all or nothing");

        let fixed = patch.replace("gamma \n", "gamma\n");
        assert_eq!(apply(dir.path(), &fixed).expect("applies"), ["a.txt", "b.txt"]);
        assert_eq!(
            (read(dir.path(), "a.txt"), read(dir.path(), "b.txt")),
            ("one\nTWO\nthree\n".to_owned(), "alpha\nBETA\ngamma\n".to_owned())
        );
        let names: Vec<_> =
            fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn hostile_paths_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("outside");
        write(outside.path(), "victim.txt", "safe\n");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        std::os::unix::fs::symlink(outside.path().join("victim.txt"), dir.path().join("file-link"))
            .expect("symlink");
        let create = |p: &str| format!("--- /dev/null\n+++ b/{p}\n@@ -0,0 +1,1 @@\n+pwned\n");
        let modify = |p: &str| format!("--- a/{p}\n+++ b/{p}\n@@ -1,1 +1,1 @@\n-safe\n+pwned\n");
        let absolute = format!("{}/x.txt", outside.path().display());
        for patch in [
            create("../escape.txt"),
            create("ok/../../escape.txt"),
            create(".git/hooks/pre-commit"),
            "--- /dev/null\n+++ /etc/x.txt\n@@ -0,0 +1,1 @@\n+pwned\n".to_owned(),
            format!("--- /dev/null\n+++ {absolute}\n@@ -0,0 +1,1 @@\n+pwned\n"),
            modify("link/victim.txt"),
            modify("file-link"),
        ] {
            let e = apply(dir.path(), &patch).expect_err("refused");
            assert!(matches!(e, PatchError::UnsafePath { .. }), "{patch}: {e}");
        }
        assert_eq!(read(outside.path(), "victim.txt"), "safe\n");
        assert!(
            !outside.path().join("x.txt").exists()
                && !dir.path().parent().expect("p").join("escape.txt").exists()
        );
    }

    #[test]
    fn malformed_and_unsupported_patches_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "a.txt", "one\n");
        let cases = [
            ("", "no file changes"),
            ("just text\n", "no file changes"),
            ("--- a/a.txt\n+++ b/a.txt\n", "without hunks"),
            ("--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n", "ends inside a hunk"),
            ("--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n*one\n", "unexpected line"),
            ("--- a/a.txt\n+++ b/a.txt\n@@ -x +1 @@\n-one\n+two\n", "bad hunk header"),
            (
                "diff --git a/a.txt b/b.txt\nsimilarity index 100%\nrename from a.txt\nrename to b.txt\n",
                "rename",
            ),
            ("--- a/a.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-one\n+two\n", "renames"),
            ("Binary files a/x.png and b/x.png differ\n", "Binary files"),
        ];
        for (patch, says) in cases {
            let e = apply(dir.path(), patch).expect_err(patch);
            assert!(e.to_string().contains(says), "{patch:?}: {e}");
        }
        assert_eq!(read(dir.path(), "a.txt"), "one\n");
    }

    #[test]
    fn quoted_and_timestamped_headers_and_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "my file.sh", "echo a\n");
        fs::set_permissions(dir.path().join("my file.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
        let patch = "--- \"a/my file.sh\"\t2026-01-01 00:00:00\n+++ b/my file.sh\t2026-01-01 00:00:01\n@@ -1 +1 @@\n-echo a\n+echo b\n";
        assert_eq!(apply(dir.path(), patch).expect("applies"), ["my file.sh"]);
        assert_eq!(read(dir.path(), "my file.sh"), "echo b\n");
        let mode = fs::metadata(dir.path().join("my file.sh")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "the executable bit survives");
        assert_eq!(unquote("\"caf\\303\\251\\t\\\"x\\\"\""), Ok("café\t\"x\"".to_owned()));
    }

    #[test]
    fn patches_made_by_gnu_diff_reproduce_the_new_file() {
        let base = numbered(40);
        let many = base
            .replace("line 5\n", "line five\n")
            .replace("line 20\nline 21\n", "")
            .replace("line 35\n", "line 35\nnew a\nnew b\n");
        let cases = [
            (base.as_str(), many.as_str()),
            ("flask", "flask\nPyYAML\n"),
            ("a\nb\nc\n", "a\nb\nC"),
            ("", "first\nsecond\n"),
            ("only\nlines\n", ""),
            ("x\r\ny\r\n", "x\r\nY\r\n"),
        ];
        for (old, new) in cases {
            let dir = tempfile::tempdir().expect("tmp");
            let (o, n) = (dir.path().join("old"), dir.path().join("new"));
            fs::write(&o, old).expect("old");
            fs::write(&n, new).expect("new");
            let out = std::process::Command::new("diff")
                .args(["-u", "--label", "a/f.txt", "--label", "b/f.txt"])
                .arg(&o)
                .arg(&n)
                .output()
                .expect("run diff");
            assert_eq!(out.status.code(), Some(1), "the files differ");
            let patch = String::from_utf8(out.stdout).expect("utf-8 diff");
            let ws = dir.path().join("ws");
            write(&ws, "f.txt", old);
            assert_eq!(apply(&ws, &patch).expect(&patch), ["f.txt"]);
            assert_eq!(read(&ws, "f.txt"), new, "{patch}");
        }
    }

    #[test]
    fn two_hunks_must_not_overlap_or_go_backwards() {
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "f.txt", &numbered(10));
        // the second hunk's context lies before the first's end
        let patch = "--- a/f.txt\n+++ b/f.txt\n@@ -4,3 +4,3 @@\n line 4\n-line 5\n+five\n line 6\n\
                     @@ -2,3 +2,3 @@\n line 2\n-line 3\n+three\n line 4\n";
        let e = apply(dir.path(), patch).expect_err("out of order");
        assert!(matches!(e, PatchError::Mismatch { hunk: 2, .. }), "{e}");
        assert_eq!(read(dir.path(), "f.txt"), numbered(10));
    }
}
