//! Daily spend per project, in USD, per UTC day.
//!
//! A budget is checked before a call and charged after it, once its usage is known: the cost of
//! a call cannot be known in advance, so the call that crosses the budget completes and the next
//! one is refused. Days roll over at UTC midnight, the same for every replica and every operator.
//!
//! The ledger lives in memory (checks and charges only take a short lock, so they are safe to call
//! on the async runtime) and is persisted so that a restart does not hand out a spent budget
//! again: a background thread rewrites a small JSON file atomically (temporary file, fsync,
//! rename, fsync of the directory) at most once a second, and only when something changed. A
//! crash can therefore lose at most the last second of charges; dropping [`Budgets`] (or calling
//! [`Budgets::persist`]) writes the rest. Each replica keeps its own ledger: with several
//! replicas, a project can spend up to its budget at each.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys::Project;

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;
/// How often changes are written at most.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// A project has spent its budget for today.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("daily budget of {budget_usd} usd is spent ({spent_usd:.6} usd); it resets at {}", helix_core::time::rfc3339_ms(i64::try_from(*resets_at_unix_ms).unwrap_or(i64::MAX)))]
pub struct BudgetExceeded {
    pub spent_usd: f64,
    pub budget_usd: f64,
    /// The next UTC midnight.
    pub resets_at_unix_ms: u64,
}

impl BudgetExceeded {
    /// Refused once `spent_usd` has reached `budget_usd` (wherever the spend was counted).
    pub fn check(budget_usd: f64, spent_usd: f64, now_ms: u64) -> Result<(), BudgetExceeded> {
        if spent_usd >= budget_usd {
            return Err(BudgetExceeded {
                spent_usd,
                budget_usd,
                resets_at_unix_ms: (now_ms / DAY_MS + 1).saturating_mul(DAY_MS),
            });
        }
        Ok(())
    }
}

/// What is on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    /// Days since the Unix epoch (UTC) the spend is of.
    day: u64,
    /// Project → USD spent that day.
    spent: HashMap<String, f64>,
}

#[derive(Debug, Default)]
struct State {
    ledger: Ledger,
    dirty: bool,
}

impl State {
    /// Starts a new day when `day` is later than the ledger's. A clock that went back a little
    /// keeps counting into the current day rather than reopening a finished one.
    fn roll(&mut self, day: u64) {
        if day > self.ledger.day {
            self.ledger = Ledger { day, spent: HashMap::new() };
            self.dirty = true;
        }
    }
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    state: Mutex<State>,
    /// Serializes writers so an older snapshot never replaces a newer one.
    write: Mutex<()>,
}

impl Inner {
    fn persist(&self) -> std::io::Result<()> {
        let _writing = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !s.dirty {
                return Ok(());
            }
            s.dirty = false;
            serde_json::to_vec(&s.ledger).map_err(std::io::Error::other)?
        };
        let written = write_atomically(&self.path, &bytes);
        if written.is_err() {
            // try again next time
            self.state.lock().unwrap_or_else(PoisonError::into_inner).dirty = true;
        }
        written
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // the rename itself is durable only once the directory is
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The spend ledger of every project.
#[derive(Debug)]
pub struct Budgets {
    inner: Arc<Inner>,
    stop: Option<mpsc::Sender<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Budgets {
    /// Loads the ledger at `path` (absent: nothing spent yet) and starts the thread that
    /// persists it. Blocking file IO: call it at start-up, not on the async runtime.
    pub fn open(path: &Path) -> std::io::Result<Budgets> {
        let ledger = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Ledger>(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("budget ledger {} is not readable: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot read budget ledger {}: {e}", path.display()),
                ));
            }
        };
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            state: Mutex::new(State { ledger, dirty: false }),
            write: Mutex::new(()),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let worker = inner.clone();
        let writer = std::thread::Builder::new().name("budget-ledger".to_owned()).spawn(move || {
            loop {
                let last = match stopped.recv_timeout(PERSIST_EVERY) {
                    Err(RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                };
                if let Err(e) = worker.persist() {
                    tracing::error!(error = %e, path = %worker.path.display(), "cannot persist the budget ledger");
                }
                if last {
                    return;
                }
            }
        })?;
        Ok(Budgets { inner, stop: Some(stop), writer: Some(writer) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `project` may make another call today: refused once today's spend has reached its
    /// budget (a budget of 0 refuses everything). Projects without a budget always pass.
    pub fn check(&self, project: &Project, now_ms: u64) -> Result<(), BudgetExceeded> {
        let Some(budget_usd) = project.daily_budget_usd else { return Ok(()) };
        BudgetExceeded::check(budget_usd, self.spent_today(&project.name, now_ms), now_ms)
    }

    /// Adds `usd` to today's spend of `project`. Amounts that are not finite and positive are
    /// ignored: a refund or a NaN would corrupt the ledger for the rest of the day.
    pub fn charge(&self, project: &str, usd: f64, now_ms: u64) {
        if !(usd.is_finite() && usd > 0.0) {
            return;
        }
        let mut s = self.state();
        s.roll(now_ms / DAY_MS);
        *s.ledger.spent.entry(project.to_owned()).or_insert(0.0) += usd;
        s.dirty = true;
    }

    /// USD `project` has spent on the UTC day of `now_ms`.
    pub fn spent_today(&self, project: &str, now_ms: u64) -> f64 {
        let mut s = self.state();
        s.roll(now_ms / DAY_MS);
        s.ledger.spent.get(project).copied().unwrap_or(0.0)
    }

    /// Writes pending changes now (blocking file IO; the background thread does this every
    /// second anyway). For shutdown and tests.
    pub fn persist(&self) -> std::io::Result<()> {
        self.inner.persist()
    }
}

impl Drop for Budgets {
    /// Stops the writer after a last write (blocks for that write).
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-14T23:59:59.000Z
    const LATE: u64 = 1_773_532_799_000;

    fn project(name: &str, budget: Option<f64>) -> Project {
        Project { name: Arc::from(name), daily_budget_usd: budget, max_in_flight: None }
    }

    #[test]
    fn check_refuses_once_the_budget_is_spent_and_says_when_it_resets() {
        let dir = tempfile::tempdir().expect("tmp");
        let b = Budgets::open(&dir.path().join("budgets.json")).expect("open");
        let p = project("shop", Some(1.0));
        assert_eq!(b.check(&p, LATE), Ok(()));
        b.charge("shop", 0.6, LATE);
        assert_eq!(b.check(&p, LATE), Ok(()), "0.6 of 1.0 spent");
        b.charge("shop", 0.6, LATE);
        let e = b.check(&p, LATE).expect_err("1.2 of 1.0 spent");
        assert!((e.spent_usd - 1.2).abs() < 1e-9);
        assert_eq!(e.budget_usd, 1.0);
        assert_eq!(e.resets_at_unix_ms, LATE + 1_000, "next UTC midnight");
        let m = e.to_string();
        assert!(m.contains("2026-03-15T00:00:00.000Z"), "{m}");
        // other projects and projects without a budget are not affected
        assert_eq!(b.check(&project("other", Some(1.0)), LATE), Ok(()));
        b.charge("free", 1e6, LATE);
        assert_eq!(b.check(&project("free", None), LATE), Ok(()));
        assert!(b.check(&project("zero", Some(0.0)), LATE).is_err(), "a budget of 0 refuses");
        // nonsense amounts are ignored
        for bad in [f64::NAN, f64::INFINITY, -5.0, 0.0] {
            b.charge("shop", bad, LATE);
        }
        assert!((b.spent_today("shop", LATE) - 1.2).abs() < 1e-9);
    }

    #[test]
    fn spend_rolls_over_at_utc_midnight() {
        let dir = tempfile::tempdir().expect("tmp");
        let b = Budgets::open(&dir.path().join("budgets.json")).expect("open");
        let p = project("shop", Some(1.0));
        b.charge("shop", 2.0, LATE);
        assert!(b.check(&p, LATE + 999).is_err(), "23:59:59.999 is still the same day");
        assert_eq!(b.check(&p, LATE + 1_000), Ok(()), "midnight starts a new day");
        assert_eq!(b.spent_today("shop", LATE + 1_000), 0.0);
        b.charge("shop", 0.25, LATE + 2_000);
        // a clock a little behind counts into the current day instead of reopening yesterday
        assert_eq!(b.spent_today("shop", LATE), 0.25);
        assert_eq!(b.spent_today("shop", LATE + DAY_MS * 3), 0.0);
    }

    #[test]
    fn spend_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("budgets.json");
        {
            let b = Budgets::open(&path).expect("open");
            b.charge("shop", 0.75, LATE);
            b.charge("lab", 0.5, LATE);
        } // dropping writes what is pending
        let b = Budgets::open(&path).expect("reopen");
        assert_eq!(b.spent_today("shop", LATE), 0.75);
        assert_eq!(b.spent_today("lab", LATE), 0.5);
        assert!(b.check(&project("shop", Some(0.7)), LATE).is_err(), "a restart does not reset");
        assert_eq!(b.spent_today("shop", LATE + DAY_MS), 0.0, "but the next day does");
        assert!(!dir.path().join("budgets.json.tmp").exists(), "the temporary file was renamed");
    }

    #[test]
    fn the_background_writer_persists_without_a_drop() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("budgets.json");
        let b = Budgets::open(&path).expect("open");
        b.charge("shop", 0.5, LATE);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let on_disk = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("shop") || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let ledger: Ledger = serde_json::from_str(&on_disk).expect("a ledger was written within seconds");
        assert_eq!(ledger.spent.get("shop"), Some(&0.5));
        assert_eq!(ledger.day, LATE / DAY_MS);
        drop(b);
    }

    #[test]
    fn a_corrupt_ledger_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("budgets.json");
        std::fs::write(&path, b"{not json").expect("write");
        let e = Budgets::open(&path).expect_err("corrupt");
        assert!(e.to_string().contains("budgets.json"), "{e}");
    }

    #[test]
    fn concurrent_charges_are_all_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("budgets.json");
        let b = Arc::new(Budgets::open(&path).expect("open"));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        b.charge("shop", 0.001, LATE);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!((b.spent_today("shop", LATE) - 8.0).abs() < 1e-6, "{}", b.spent_today("shop", LATE));
        b.persist().expect("persist");
        let on_disk: Ledger = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert!((on_disk.spent["shop"] - 8.0).abs() < 1e-6);
    }
}
