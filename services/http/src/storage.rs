//! The data directory every service keeps its files in.

use std::path::{Path, PathBuf};

use helix_core::{Check, CheckStatus};

/// Creates `dir` (and parents, 0700) and proves it is writable by creating and removing a probe
/// file. Called once at start-up, so a read-only or missing volume stops the service with a clear
/// message instead of failing the first request that writes. `dir` is made 0700: what Helix
/// keeps (runs, traces, fixes, tokens) is its user's alone.
pub fn prepare_data_dir(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| with_path(e, "cannot create data directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| with_path(e, "cannot make the data directory private", dir))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"helix").map_err(|e| with_path(e, "data directory is not writable", dir))?;
    std::fs::remove_file(&probe).map_err(|e| with_path(e, "data directory is not writable", dir))?;
    Ok(dir.to_path_buf())
}

fn with_path(e: std::io::Error, what: &str, dir: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display()))
}

/// The readiness check of a data directory: it must still exist and be a directory.
pub async fn data_dir_check(dir: PathBuf) -> Check {
    match tokio::fs::metadata(&dir).await {
        Ok(m) if m.is_dir() => Check::new("data_dir", CheckStatus::Ok, dir.display().to_string()),
        Ok(_) => Check::new("data_dir", CheckStatus::Down, format!("{} is not a directory", dir.display())),
        Err(e) => Check::new("data_dir", CheckStatus::Down, format!("{}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prepare_creates_and_check_reports() {
        let tmp = std::env::temp_dir().join(format!("helix-storage-test-{}", std::process::id()));
        let dir = tmp.join("a/b");
        prepare_data_dir(&dir).expect("prepare");
        assert_eq!(data_dir_check(dir.clone()).await.status, CheckStatus::Ok);
        std::fs::remove_dir_all(&tmp).expect("cleanup");
        assert_eq!(data_dir_check(dir).await.status, CheckStatus::Down);
    }

    #[test]
    fn prepare_names_the_path_when_it_fails() {
        let file = std::env::temp_dir().join(format!("helix-storage-file-{}", std::process::id()));
        std::fs::write(&file, b"x").expect("write");
        let err = prepare_data_dir(&file.join("sub")).expect_err("a file is in the way");
        assert!(err.to_string().contains(&file.display().to_string()), "{err}");
        std::fs::remove_file(&file).expect("cleanup");
    }
}
