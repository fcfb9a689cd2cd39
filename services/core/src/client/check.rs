//! The healer's static preflight (`POST /v1/check`), and the one way a workspace directory is
//! read for it: `helix check DIR` and the orchestrator's `preflight` send the same files.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ClientError, ServiceClient, WorkspaceFile};

/// `POST /v1/check`: a workspace's manifests and sources.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CheckRequest {
    pub files: Vec<WorkspaceFile>,
    pub listing: Vec<String>,
    /// Debian packages installed on the machine the run will use, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_packages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// One predicted failure (the healer's `Finding`; the diagnostic is kept whole).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Finding {
    /// `python-import`, `node-import`, `rust-crate`, `c-header`.
    pub check: String,
    pub file: String,
    pub line: usize,
    pub name: String,
    pub reason: String,
    pub other_uses: usize,
    /// As `POST /v1/analyze` returns a diagnostic (`signature`, `category`, `key`, `matches`).
    pub diagnostic: Value,
    pub fixes: Vec<super::ProposedFix>,
}

impl Finding {
    pub fn signature(&self) -> &str {
        self.diagnostic.get("signature").and_then(Value::as_str).unwrap_or("")
    }

    pub fn category(&self) -> &str {
        self.diagnostic.get("category").and_then(Value::as_str).unwrap_or("unknown")
    }
}

/// What the check looked at.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Checked {
    pub files: usize,
    pub imports: usize,
    pub ecosystems: Vec<String>,
    pub skipped: Vec<String>,
}

/// The answer of `POST /v1/check`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub checked: Checked,
}

impl ServiceClient {
    /// `POST /v1/check` on a healer: the failures a run of the workspace would hit.
    pub async fn check(&self, req: &CheckRequest) -> Result<CheckReport, ClientError> {
        self.post_json("/v1/check", req).await
    }
}

/// Files of a workspace the check reads: manifests, build recipes and sources.
const MANIFESTS: &[&str] = &[
    "requirements.txt",
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "Pipfile",
    "environment.yml",
    "environment.yaml",
    "package.json",
    "tsconfig.json",
    "jsconfig.json",
    "Cargo.toml",
    "apt.txt",
    "Aptfile",
    "packages.txt",
    "control",
    "Containerfile",
    ".gitlab-ci.yml",
    ".travis.yml",
];
const SOURCES: &[&str] = &[
    ".py", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts", ".vue", ".svelte", ".rs", ".c",
    ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx",
];
/// Directories that hold no sources of the project (dependencies, builds, caches), and
/// `.venv*`: what the collector does not walk and the check does not read.
const SKIP_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    "target",
    "vendor",
    "third_party",
    "venv",
    ".venv",
    "site-packages",
    "dist",
    "build",
    "__pycache__",
    ".tox",
    ".next",
    "coverage",
    ".mypy_cache",
    ".pytest_cache",
];

/// Whether a directory named `name` holds no sources of the project (see [`SKIP_DIRS`]).
pub fn skipped_dir(name: &str) -> bool {
    SKIP_DIRS.contains(&name) || name.starts_with(".venv")
}

/// Bounds on what [`collect_workspace`] reads.
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceLimits {
    /// Files sent with their contents.
    pub max_files: usize,
    /// Larger files are listed, not sent.
    pub max_file_bytes: u64,
    /// All contents together.
    pub max_total_bytes: u64,
    /// Paths listed (contents not sent).
    pub max_listing: usize,
}

impl Default for WorkspaceLimits {
    fn default() -> WorkspaceLimits {
        WorkspaceLimits {
            max_files: 2000,
            max_file_bytes: 256 * 1024,
            max_total_bytes: 24 * 1024 * 1024,
            max_listing: 20_000,
        }
    }
}

fn wanted(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    MANIFESTS.contains(&name)
        || name.starts_with("requirements") && (name.ends_with(".txt") || name.ends_with(".in"))
        || rel.split('/').rev().nth(1).is_some_and(|d| d.starts_with("requirements"))
            && name.ends_with(".txt")
        || name.starts_with("Dockerfile")
        || name.ends_with(".Dockerfile")
        || rel.starts_with(".github/workflows/")
        || SOURCES.iter().any(|e| name.ends_with(e))
}

/// The files `POST /v1/check` needs from the workspace at `dir`, and the listing of every path
/// (walked without following symbolic links; dependency and build directories skipped).
/// Blocking: call it off the async runtime.
pub fn collect_workspace(dir: &Path, limits: WorkspaceLimits) -> (Vec<WorkspaceFile>, Vec<String>) {
    let mut listing = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if listing.len() >= limits.max_listing {
                break;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            match e.file_type() {
                Ok(t) if t.is_dir() && !skipped_dir(&name) => {
                    stack.push((e.path(), rel));
                }
                Ok(t) if t.is_file() => listing.push(rel),
                _ => {}
            }
        }
    }
    listing.sort();
    let files = select_files(&listing, limits, |rel| {
        let path = dir.join(rel);
        let len = std::fs::metadata(&path).ok()?.len();
        Some((len, move || std::fs::read_to_string(&path).ok()))
    });
    (files, listing)
}

/// The files of `listing` (sorted, relative paths) the check reads, within `limits`: `size`
/// says how large a path is and gives the reader of its text (None: unreadable, left out).
/// For workspaces that are not a directory, such as a checkpoint's manifest.
pub fn select_files<R: FnOnce() -> Option<String>>(
    listing: &[String],
    limits: WorkspaceLimits,
    mut size: impl FnMut(&str) -> Option<(u64, R)>,
) -> Vec<WorkspaceFile> {
    let mut files = Vec::new();
    let mut total = 0u64;
    for rel in listing.iter().filter(|r| wanted(r)) {
        if files.len() >= limits.max_files {
            break;
        }
        let Some((len, read)) = size(rel) else { continue };
        if len > limits.max_file_bytes || total + len > limits.max_total_bytes {
            continue;
        }
        if let Some(content) = read() {
            total += len;
            files.push(WorkspaceFile { path: rel.clone(), content });
        }
    }
    files
}

/// The Debian packages installed here (`dpkg-query`), None where there is no dpkg.
/// Blocking: call it off the async runtime.
pub fn installed_debian_packages() -> Option<Vec<String>> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Status}\n"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| {
                let (name, status) = l.split_once(' ')?;
                (status.trim() == "installed").then(|| name.to_owned())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_manifests_and_sources_not_dependencies() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        for (p, c) in [
            ("requirements.txt", "flask\n"),
            ("app/main.py", "import flask\n"),
            ("node_modules/x/index.js", "require('y')\n"),
            ("README.md", "hello\n"),
            ("docker/Dockerfile", "FROM debian\n"),
            ("big.py", &"#".repeat(300 * 1024)),
        ] {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, c).expect("write");
        }
        let (files, listing) = collect_workspace(root, WorkspaceLimits::default());
        let sent: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(sent, vec!["app/main.py", "docker/Dockerfile", "requirements.txt"]);
        assert_eq!(
            listing,
            vec!["README.md", "app/main.py", "big.py", "docker/Dockerfile", "requirements.txt"]
        );
    }
}
