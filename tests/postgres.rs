//! PostgreSQL for tests: a database of its own per test on the machine's server, or a private
//! server in a temp directory for tests that must stop it.
//!
//! The machine's server (127.0.0.1:5432, trust auth; `HELIX_TEST_POSTGRES_URL` names another
//! admin URL) is never stopped: tests that restart PostgreSQL start their own with Debian's
//! `initdb` and `pg_ctl` on a free port. The blocking `postgres` client runs on a thread of its
//! own, so these helpers work inside async tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn admin_url() -> String {
    std::env::var("HELIX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs SQL statements on `url`, on a thread of its own; the error as text.
pub fn execute(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || -> Result<(), String> {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        c.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the postgres thread panicked".to_owned())?
}

/// Runs one query on `url` and returns its first column of every row, as text.
pub fn query_strings(url: &str, sql: &str) -> Result<Vec<String>, String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || -> Result<Vec<String>, String> {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        let rows = c.simple_query(&sql).map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or_default().to_owned()),
                _ => None,
            })
            .collect())
    })
    .join()
    .map_err(|_| "the postgres thread panicked".to_owned())?
}

fn unique_name(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let clean: String = test.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("helix_test_{clean}_{}_{ms}_{n}", std::process::id())
}

/// A database of its own on the machine's server, dropped when this is dropped.
pub struct TestDatabase {
    admin: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create(test: &str) -> TestDatabase {
        let admin = admin_url();
        let name = unique_name(test);
        execute(&admin, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!("cannot create a test database on {admin} (PostgreSQL must run there, see README): {e}")
        });
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        TestDatabase { admin, name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = execute(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Debian's PostgreSQL server programs (`/usr/lib/postgresql/<version>/bin`), newest version.
fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("pg_ctl").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect("PostgreSQL's server programs (Debian package postgresql) are installed")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// PostgreSQL refuses to run as root: as root, the private server runs as `postgres`.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL server of the test's own, in a temp directory on a free port; stopped (fast) on
/// drop.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let bin = server_bin();
        let dir = tempfile::Builder::new().prefix("helix-pg-").tempdir().expect("temp dir");
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(ok.is_ok_and(|s| s.success()), "chown the private PostgreSQL directory");
        }
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let pg = PrivatePostgres { bin, dir, port };
        pg.start_server();
        pg
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn start_server(&self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &options, "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        let deadline = Instant::now() + Duration::from_secs(60);
        while execute(&self.url("postgres"), "SELECT 1").is_err() {
            assert!(Instant::now() < deadline, "the private PostgreSQL did not take connections");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server at once (`-m immediate`: as a crash would, connections cut).
    pub fn stop_server(&self) {
        let data = self.dir.path().join("data");
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop_server();
    }
}
