//! Paths stay where they belong: client paths under the configured roots, writes inside the
//! workspace.
//!
//! Two different threats:
//! - **Clients name paths on the orchestrator's machine** (`pipeline_path`, `workdir`). Without a
//!   bound, the API reads any file the service can (`/proc/self/environ`, `/etc/shadow`) and
//!   copies any directory into its store. [`Roots`] bounds them: the path, with symlinks
//!   resolved, must lie under a configured root. A path outside is refused before anything
//!   looks at it, so the answer tells nothing about what exists there.
//! - **Phases shape the workspace** the orchestrator later writes into (an LLM phase's `output`).
//!   A phase may leave a symlink where a file or directory is expected, dangling or pointing
//!   anywhere. [`write_in`] walks the path one component at a time from an open directory
//!   (`openat` with `O_NOFOLLOW`), so no component, existing or not, can lead out.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};

/// Directories client paths must lie in, canonical.
#[derive(Debug, Clone)]
pub struct Roots {
    roots: Vec<PathBuf>,
}

/// Why a client path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    #[error("{what} {path:?} is outside the directories this orchestrator serves (orchestrator.roots)")]
    Outside { what: &'static str, path: String },
    #[error("{what} {path:?} does not exist")]
    Missing { what: &'static str, path: String },
}

/// `path` made absolute against `cwd` with `.` and `..` folded, without touching the disk.
fn lexical(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

impl Roots {
    /// The configured roots, or `cwd` when none are configured. Roots that do not exist are
    /// kept as written (nothing can be under them until they do).
    pub fn new(configured: &[PathBuf], cwd: &Path) -> Roots {
        let list: Vec<PathBuf> =
            if configured.is_empty() { vec![cwd.to_path_buf()] } else { configured.to_vec() };
        let roots = list
            .iter()
            .map(|r| {
                let abs = lexical(r, cwd);
                abs.canonicalize().unwrap_or(abs)
            })
            .collect();
        Roots { roots }
    }

    pub fn list(&self) -> &[PathBuf] {
        &self.roots
    }

    fn contains(&self, p: &Path) -> bool {
        self.roots.iter().any(|r| p.starts_with(r))
    }

    /// The canonical form of `raw` (relative to `cwd`) when it lies under a root, symlinks
    /// resolved. A path whose written form is already outside is refused without a look at the
    /// disk; one that exists only through a symlink leading out is refused too.
    pub fn resolve(&self, what: &'static str, raw: &str, cwd: &Path) -> Result<PathBuf, PathRefused> {
        let outside = || PathRefused::Outside { what, path: raw.chars().take(300).collect() };
        if raw.is_empty() || raw.contains('\0') {
            return Err(outside());
        }
        let written = lexical(Path::new(raw), cwd);
        if !self.contains(&written) {
            return Err(outside());
        }
        let real = written
            .canonicalize()
            .map_err(|_| PathRefused::Missing { what, path: raw.chars().take(300).collect() })?;
        if !self.contains(&real) {
            return Err(outside());
        }
        Ok(real)
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Why [`write_in`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Path(String),
    #[error("{component:?} is a symbolic link or not a directory; writes never follow links")]
    Link { component: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Opens the file `rel` names under `root` with `flags` (and `mode` when it creates it),
/// walking its directories without following a symlink, `..` or an absolute component;
/// `create_dirs` makes missing directories (0700) on the way.
fn open_in(
    root: &Path,
    rel: &str,
    create_dirs: bool,
    flags: OFlag,
    mode: Mode,
) -> Result<std::fs::File, WriteError> {
    crate::gates::check_relative_path(rel).map_err(WriteError::Path)?;
    let parts: Vec<&std::ffi::OsStr> = Path::new(rel)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(WriteError::Path("the path names no file".to_owned()));
    };
    let link = |name: &std::ffi::OsStr| WriteError::Link { component: name.to_string_lossy().into_owned() };
    let mut dir: OwnedFd = open(root, dir_flags(), Mode::empty()).map_err(io)?;
    for name in dirs {
        dir = match openat(&dir, *name, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create_dirs => {
                match mkdirat(&dir, *name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io(e).into()),
                }
                openat(&dir, *name, dir_flags(), Mode::empty()).map_err(|e| match e {
                    Errno::ELOOP | Errno::ENOTDIR => link(name),
                    e => io(e).into(),
                })?
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(link(name)),
            Err(e) => return Err(io(e).into()),
        };
    }
    let fd =
        openat(&dir, *last, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, mode).map_err(|e| match e {
            Errno::ELOOP => link(last),
            e => io(e).into(),
        })?;
    Ok(std::fs::File::from(fd))
}

/// Writes `bytes` to `root/rel` (mode 0600, replacing a regular file), creating missing
/// directories (0700) on the way; no component may be a symlink, `..` or absolute.
pub fn write_in(root: &Path, rel: &str, bytes: &[u8]) -> Result<(), WriteError> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC;
    let mut file = open_in(root, rel, true, flags, Mode::from_bits_truncate(0o600))?;
    file.write_all(bytes)?;
    Ok(())
}

/// Reads at most `max` bytes of `root/rel` as UTF-8, following no symlink on the way (a
/// workspace link to a file outside must not bring that file into a prompt).
pub fn read_in(root: &Path, rel: &str, max: u64) -> Result<String, WriteError> {
    use std::io::Read;
    let file = open_in(root, rel, false, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())?;
    if !file.metadata()?.is_file() {
        return Err(WriteError::Path(format!("{rel} is not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| WriteError::Path(format!("{rel} is not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn reads_follow_no_link() {
        let base = tempfile::tempdir().expect("tmp");
        let ws = base.path().join("ws");
        std::fs::create_dir_all(ws.join("src")).expect("mkdir");
        std::fs::write(ws.join("src/a.py"), "print(1)\n").expect("write");
        std::fs::write(base.path().join("secret"), "s3cret").expect("write");
        symlink(base.path().join("secret"), ws.join("src/link.py")).expect("symlink");
        symlink(base.path(), ws.join("up")).expect("symlink");
        assert_eq!(read_in(&ws, "src/a.py", 1024).expect("read"), "print(1)\n");
        assert_eq!(read_in(&ws, "src/a.py", 3).expect("bounded"), "pri");
        assert!(matches!(read_in(&ws, "src/link.py", 1024), Err(WriteError::Link { .. })));
        assert!(matches!(read_in(&ws, "up/secret", 1024), Err(WriteError::Link { .. })));
        assert!(read_in(&ws, "../secret", 1024).is_err());
        assert!(read_in(&ws, "src", 1024).is_err(), "a directory");
    }

    #[test]
    fn client_paths_must_lie_under_a_root() {
        let base = tempfile::tempdir().expect("tmp");
        let root = base.path().join("projects");
        std::fs::create_dir_all(root.join("app")).expect("mkdir");
        std::fs::write(root.join("app/pipeline.toml"), "name = \"x\"").expect("write");
        let outside = base.path().join("secret.txt");
        std::fs::write(&outside, "s3cret").expect("write");
        symlink(&outside, root.join("app/link.toml")).expect("symlink");
        let roots = Roots::new(std::slice::from_ref(&root), Path::new("/"));
        let real = root.canonicalize().expect("canonical");
        assert_eq!(
            roots.resolve("pipeline_path", "app/pipeline.toml", &root),
            Ok(real.join("app/pipeline.toml"))
        );
        assert!(roots.resolve("workdir", root.join("app").to_str().expect("utf8"), &root).is_ok());
        for raw in [
            "/proc/self/environ",
            "/etc/shadow",
            "../secret.txt",
            "app/../../secret.txt",
            "app/link.toml",
            "",
        ] {
            let e = roots.resolve("pipeline_path", raw, &root).expect_err(raw);
            assert!(matches!(e, PathRefused::Outside { .. }), "{raw}: {e}");
        }
        // outside and missing look the same; inside and missing is a 404
        let e = roots.resolve("pipeline_path", "/nonexistent/x.toml", &root).expect_err("outside");
        assert!(matches!(e, PathRefused::Outside { .. }));
        let e = roots.resolve("pipeline_path", "app/missing.toml", &root).expect_err("missing");
        assert!(matches!(e, PathRefused::Missing { .. }));
        // no roots configured: the working directory
        let roots = Roots::new(&[], &root);
        assert!(roots.resolve("workdir", "app", &root).is_ok());
        assert!(roots.resolve("workdir", "/tmp", &root).is_err());
    }

    #[test]
    fn writes_never_follow_a_symlink_anywhere_on_the_path() {
        let base = tempfile::tempdir().expect("tmp");
        let ws = base.path().join("ws");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(&ws).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        symlink(&outside, ws.join("dirlink")).expect("symlink");
        symlink(outside.join("new.txt"), ws.join("dangling.txt")).expect("symlink");
        std::fs::write(outside.join("victim.txt"), "original").expect("write");
        symlink(outside.join("victim.txt"), ws.join("filelink.txt")).expect("symlink");
        for rel in ["dirlink/summary.json", "dangling.txt", "filelink.txt", "dirlink"] {
            let e = write_in(&ws, rel, b"pwned").expect_err(rel);
            assert!(matches!(e, WriteError::Link { .. }), "{rel}: {e}");
        }
        assert!(!outside.join("summary.json").exists() && !outside.join("new.txt").exists());
        assert_eq!(std::fs::read_to_string(outside.join("victim.txt")).expect("read"), "original");
        for rel in ["../x", "/etc/x", ""] {
            assert!(matches!(write_in(&ws, rel, b"x"), Err(WriteError::Path(_))), "{rel}");
        }
        // ordinary writes work, create directories, replace files, and are private
        write_in(&ws, "out/deep/summary.json", b"{}").expect("write");
        write_in(&ws, "out/deep/summary.json", b"{\"a\":1}").expect("rewrite");
        assert_eq!(std::fs::read_to_string(ws.join("out/deep/summary.json")).expect("read"), "{\"a\":1}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ws.join("out/deep/summary.json")).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}
