//! The distributed backend: the learning records of every replica in one PostgreSQL table,
//! `healer_records`, whose `seq` column is the change sequence every replica tails.
//!
//! Why a record table and not one row per signature: each replica answers from the same
//! in-memory state the embedded [`super::LogStore`] keeps (reports, known fixes and the
//! similar-error index stay memory-fast, so analysis latency does not depend on the database),
//! and that state is exactly the replay of the table in `seq` order. A replica stays in sync by
//! reading the rows after the last `seq` it applied ([`LearningStore::sync`], every
//! [`SYNC_EVERY`]), its own rows included: one code path, so two replicas that applied the same
//! rows hold the same state. What other replicas wrote (rows of another `origin`) also goes to
//! this replica's search index; every path that applies rows hands that on, none drops it.
//!
//! Invariants:
//! - Writers take one transaction-scoped advisory lock ([`WRITE_LOCK`]) around their inserts, so
//!   rows become visible in `seq` order and a tailer reading `seq > last` never skips a row
//!   committed late with a smaller `seq`. Writes are rare (a fix, a path; occurrences in one
//!   batch per replica and second), so serialising them costs nothing measurable.
//! - A fix, a path and a flaky report are committed before the call returns (so before the
//!   2xx); occurrences are statistics, buffered and inserted by [`LearningStore::flush`]. While
//!   the database is down, writes answer [`StoreError::Unavailable`] (a 503) and buffered
//!   occurrences wait (at most [`MAX_BUFFERED`]); nothing acknowledged is lost.
//! - Retention and compaction run under the same lock on a caught-up state: forgetting deletes
//!   the signature's rows and appends a `forget` row (so the other replicas forget it too);
//!   compaction replaces a signature's rows by one snapshot row holding its whole state.
//! - Migrations are numbered, run at start-up in one transaction under their own advisory lock,
//!   and recorded in `helix_migrations`; a replica never runs a half-applied schema.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::{Client, NoTls};
use serde::{Deserialize, Serialize};

use super::{
    Changes, FixRecord, FixScope, KnownFix, LearningStore, Occurrence, Record, Retention, SigSnapshot,
    SigState, SignatureReport, SignatureStatus, StoreError, apply, build_report, collect_known_fixes,
};

/// How often a replica reads the rows other replicas wrote.
pub const SYNC_EVERY: Duration = Duration::from_millis(200);
/// Occurrences kept while the database cannot take them; beyond this the oldest are dropped
/// (they are statistics) and counted.
const MAX_BUFFERED: usize = 100_000;
/// Rows read per round trip when replaying or tailing.
const PAGE: i64 = 5_000;
/// A signature with more rows than this is compacted into one snapshot row.
const COMPACT_ABOVE: i64 = 64;
/// The advisory lock every writer holds while inserting (an arbitrary constant: "helix-hl").
const WRITE_LOCK: i64 = 0x6865_6c69_782d_686c;
/// The advisory lock migrations run under ("helix-mg").
const MIGRATION_LOCK: i64 = 0x6865_6c69_782d_6d67;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows in the order given, marked with the writer's origin.
const INSERT_ROWS: &str = "INSERT INTO healer_records (signature, record, origin)
    SELECT s, b, $3 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(s, b, n) ORDER BY n";

/// The healer's schema, in order; each runs once, in a transaction.
const MIGRATIONS: &[&str] = &["CREATE TABLE healer_records (
        seq BIGSERIAL PRIMARY KEY,
        signature TEXT NOT NULL,
        record TEXT NOT NULL,
        origin TEXT NOT NULL DEFAULT '',
        written_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX healer_records_signature ON healer_records (signature, seq);"];

/// A row of `healer_records`: one of the embedded log's records, or what the embedded log
/// does by rewriting itself (forgetting).
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Row {
    Record(Box<Record>),
    Forget(Forget),
}

#[derive(Debug, Serialize, Deserialize)]
struct Forget {
    forget: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    sigs: HashMap<String, SigState>,
    /// The last `seq` applied.
    last_seq: i64,
    /// Signatures this replica saw but whose occurrences are not applied yet (buffered, or
    /// written and not tailed): known, for [`LearningStore::status`], so repeats within the
    /// flush window do not count as first sightings (each would be indexed again).
    seen_here: std::collections::HashSet<String>,
}

/// See the module docs.
pub struct PgStore {
    url: String,
    /// This process's mark on the rows it writes: their signatures are already in this
    /// replica's search index (the request that wrote them put them there), so applying them
    /// does not index them again.
    origin: String,
    /// One connection for writes and one for tailing, each reconnected when it broke.
    writer: Mutex<Option<Client>>,
    reader: Mutex<Option<Client>>,
    state: Mutex<State>,
    buffered: Mutex<Vec<Occurrence>>,
    dropped: std::sync::atomic::AtomicU64,
    /// Whether the last round trip worked (readiness).
    reachable: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Changes applied outside [`LearningStore::sync`] (the replay at open, the catch-up of
    /// retention): handed out by the next sync, so the caller indexes them.
    pending: Mutex<Changes>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the URL: it may hold a password
        f.debug_struct("PgStore").field("reachable", &self.reachable.load(Ordering::Relaxed)).finish()
    }
}

impl Drop for PgStore {
    /// A client says goodbye to the server with a blocking call, which must not run on an async
    /// thread (the store is dropped when the service stops there).
    fn drop(&mut self) {
        let clients: Vec<Client> = [&self.writer, &self.reader]
            .into_iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take())
            .collect();
        off_runtime(move || drop(clients));
    }
}

/// Runs `f` where a blocking database client may run: the `postgres` client drives its own
/// runtime, which cannot start on a thread that is inside one (start-up runs there).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A database error as the operator should read it: no URL, no password.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("database: {} ({})", db.message(), db.code().code()),
        None if e.is_closed() => "database: connection closed".to_owned(),
        None => {
            let mut out = format!("database: {e}");
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                out.push_str(": ");
                out.push_str(&s.to_string());
                source = s.source();
            }
            out
        }
    }
}

fn connect(url: &str) -> Result<Client, String> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| describe(&e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("helix-healer");
    }
    config.connect(NoTls).map_err(|e| describe(&e))
}

fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS helix_migrations (
            component TEXT NOT NULL,
            version INT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (component, version)
        )",
    )?;
    let applied: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM helix_migrations WHERE component = 'healer'", &[])?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        if version <= applied {
            continue;
        }
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO helix_migrations (component, version) VALUES ('healer', $1)", &[&version])?;
        tracing::info!(version, "healer database migrated");
    }
    tx.commit()
}

impl PgStore {
    /// Connects to `url`, runs the migrations and replays the table.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        off_runtime(|| {
            let mut writer = connect(url).map_err(StoreError::Unavailable)?;
            migrate(&mut writer).map_err(|e| StoreError::Unavailable(describe(&e)))?;
            let reader = connect(url).map_err(StoreError::Unavailable)?;
            let store = PgStore {
                url: url.to_owned(),
                origin: helix_core::ids::new_trace_id(),
                writer: Mutex::new(Some(writer)),
                reader: Mutex::new(Some(reader)),
                state: Mutex::new(State::default()),
                buffered: Mutex::new(Vec::new()),
                dropped: std::sync::atomic::AtomicU64::new(0),
                reachable: AtomicBool::new(true),
                last_error: Mutex::new(None),
                pending: Mutex::new(Changes::default()),
            };
            let replayed = store.sync_now()?;
            store.defer(replayed);
            Ok(store)
        })
    }

    fn defer(&self, mut changes: Changes) {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.indexed.append(&mut changes.indexed);
        pending.forgotten.append(&mut changes.forgotten);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note(&self, result: Result<(), &str>) {
        let was = self.reachable.swap(result.is_ok(), Ordering::AcqRel);
        let mut last = self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(()) => {
                if !was {
                    tracing::info!("healer database reachable again");
                }
                *last = None;
            }
            Err(e) => {
                if was {
                    tracing::error!(error = e, "healer database unreachable");
                }
                *last = Some(e.to_owned());
            }
        }
    }

    /// Runs `f` on the connection in `slot`, connecting first when there is none; a
    /// connection that broke is dropped, so the next call reconnects.
    fn with<T>(
        &self,
        slot: &Mutex<Option<Client>>,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError>
    where
        T: Send,
    {
        let result = off_runtime(|| {
            let mut guard = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if guard.as_ref().is_none_or(Client::is_closed) {
                *guard = Some(connect(&self.url)?);
            }
            let Some(client) = guard.as_mut() else { return Err("database: no connection".to_owned()) };
            f(client).map_err(|e| {
                let broken = e.as_db_error().is_none();
                if broken {
                    *guard = None;
                }
                describe(&e)
            })
        });
        match result {
            Ok(v) => {
                self.note(Ok(()));
                Ok(v)
            }
            Err(e) => {
                self.note(Err(&e));
                Err(StoreError::Unavailable(e))
            }
        }
    }

    /// Inserts `rows` (signature, encoded row) under the write lock, in one transaction.
    fn insert(&self, rows: &[(String, String)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (sigs, bodies): (Vec<&str>, Vec<&str>) =
            rows.iter().map(|(s, b)| (s.as_str(), b.as_str())).unzip();
        self.with(&self.writer, |c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            tx.execute(INSERT_ROWS, &[&sigs, &bodies, &self.origin])?;
            tx.commit()
        })
        .map(|_| ())
    }

    /// Writes one record, then applies everything up to it (read-your-writes, when the
    /// database still answers).
    fn append(&self, record: Record) -> Result<(), StoreError> {
        let signature = record_signature(&record).to_owned();
        let body = serde_json::to_string(&record)?;
        self.insert(&[(signature.clone(), body)])?;
        // committed: from here the write has happened whatever follows. Catching up makes it
        // visible here at once; if that fails, the sync thread applies it shortly, and the
        // caller must not be told the write failed (a retry would record it twice).
        match self.sync_now() {
            // other replicas' rows caught up on the way still go to the search index
            Ok(caught_up) => self.defer(caught_up),
            Err(e) => {
                tracing::warn!(error = %e, "a recorded write is applied by the next sync");
                // the request could not index it from here: the sync that applies it does
                self.defer(Changes { indexed: vec![signature], forgotten: Vec::new() });
            }
        }
        Ok(())
    }

    /// Applies the rows after the last one applied; what changed, for the search index.
    fn sync_now(&self) -> Result<Changes, StoreError> {
        let mut changes = Changes::default();
        loop {
            let after = self.state().last_seq;
            let rows: Vec<(i64, String, bool)> = self.with(&self.reader, |c| {
                let rows = c.query(
                    "SELECT seq, record, origin = $3 FROM healer_records WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &PAGE, &self.origin],
                )?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
            })?;
            let full = rows.len() as i64 == PAGE;
            apply_rows(&mut self.state(), rows, &mut changes);
            if !full {
                break;
            }
        }
        changes.indexed.sort();
        changes.indexed.dedup();
        let forgotten: HashSet<&String> = changes.forgotten.iter().collect();
        changes.indexed.retain(|s| !forgotten.contains(s));
        Ok(changes)
    }

    /// The compaction step of retention: signatures with many rows get one snapshot row.
    fn compact(&self) -> Result<(), StoreError> {
        let heavy: Vec<String> = self.with(&self.writer, |c| {
            let rows = c.query(
                "SELECT signature FROM healer_records WHERE signature <> '' GROUP BY signature HAVING count(*) > $1 LIMIT 1000",
                &[&COMPACT_ABOVE],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        // forget rows only matter to replicas that have not tailed them yet
        self.with(&self.writer, |c| {
            c.execute(
                "DELETE FROM healer_records WHERE signature = '' AND written_at < now() - interval '1 hour'",
                &[],
            )
        })?;
        if heavy.is_empty() {
            return Ok(());
        }
        self.locked_rewrite(|state| {
            let mut rows = Vec::new();
            for s in &heavy {
                if let Some(st) = state.sigs.get(s) {
                    let snapshot = SigSnapshot { signature: s.clone(), state: st.clone() };
                    rows.push((s.clone(), serde_json::to_string(&Record::Signature(Box::new(snapshot)))?));
                }
            }
            Ok((heavy.clone(), rows))
        })?;
        Ok(())
    }

    /// Under the write lock, on a state caught up with every committed row: `plan` names the
    /// signatures whose rows are deleted and the rows written in their place.
    fn locked_rewrite(
        &self,
        plan: impl FnOnce(&State) -> Result<(Vec<String>, Vec<(String, String)>), StoreError> + Send,
    ) -> Result<Vec<String>, StoreError> {
        let result = off_runtime(|| -> Result<Vec<String>, StoreError> {
            let mut writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let result = (|| {
                if writer.as_ref().is_none_or(Client::is_closed) {
                    *writer = Some(connect(&self.url).map_err(StoreError::Unavailable)?);
                }
                let Some(client) = writer.as_mut() else {
                    return Err(StoreError::Unavailable("database: no connection".to_owned()));
                };
                let db = |e: postgres::Error| StoreError::Unavailable(describe(&e));
                let mut tx = client.transaction().map_err(db)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).map_err(db)?;
                // nobody writes now: catch up through this transaction, then plan on that state
                let after = self.state().last_seq;
                let rows = tx
                    .query(
                        "SELECT seq, record, origin = $2 FROM healer_records WHERE seq > $1 ORDER BY seq",
                        &[&after, &self.origin],
                    )
                    .map_err(db)?;
                let rows = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
                // what this catches up must still reach the search index: the next sync hands it out
                let mut caught_up = Changes::default();
                apply_rows(&mut self.state(), rows, &mut caught_up);
                self.defer(caught_up);
                let (delete, write) = plan(&self.state())?;
                if delete.is_empty() && write.is_empty() {
                    tx.commit().map_err(db)?;
                    return Ok(delete);
                }
                let max_seq = self.state().last_seq;
                tx.execute(
                    "DELETE FROM healer_records WHERE signature = ANY($1) AND seq <= $2",
                    &[&delete, &max_seq],
                )
                .map_err(db)?;
                let (sigs, bodies): (Vec<&str>, Vec<&str>) =
                    write.iter().map(|(s, b)| (s.as_str(), b.as_str())).unzip();
                tx.execute(INSERT_ROWS, &[&sigs, &bodies, &self.origin]).map_err(db)?;
                tx.commit().map_err(db)?;
                Ok(delete)
            })();
            if matches!(result, Err(StoreError::Unavailable(_))) {
                *writer = None;
            }
            result
        });
        match &result {
            Err(StoreError::Unavailable(e)) => self.note(Err(e)),
            Ok(_) => self.note(Ok(())),
            Err(_) => {}
        }
        result
    }
}

/// Applies `rows` (seq, body, written by this process) in order, skipping those already applied
/// (two syncs of one replica may overlap); notes what the search index must learn: what other
/// replicas wrote (this one's writes were indexed by the requests that made them).
fn apply_rows(state: &mut State, rows: Vec<(i64, String, bool)>, changes: &mut Changes) {
    for (seq, body, own) in rows {
        if seq <= state.last_seq {
            continue;
        }
        state.last_seq = seq;
        match serde_json::from_str::<Row>(&body) {
            Ok(Row::Forget(f)) => {
                for s in f.forget {
                    if state.sigs.remove(&s).is_some() {
                        changes.forgotten.push(s);
                    }
                }
            }
            Ok(Row::Record(record)) => {
                let record = *record;
                let signature = record_signature(&record).to_owned();
                state.seen_here.remove(&signature);
                let first = !state.sigs.contains_key(&signature);
                let index = !own && (first || !matches!(record, Record::Occurrence(_)));
                apply(&mut state.sigs, record);
                if index {
                    changes.indexed.push(signature);
                }
            }
            // a row of a newer version, or damaged by hand: skipped, never fatal
            Err(e) => tracing::warn!(seq, error = %e, "unreadable healer record skipped"),
        }
    }
}

fn record_signature(record: &Record) -> &str {
    match record {
        Record::Occurrence(o) => &o.signature,
        Record::Fix(f) => &f.signature,
        Record::Flaky(f) => &f.signature,
        Record::Path(p) => &p.signature,
        Record::Signature(s) => &s.signature,
    }
}

impl LearningStore for PgStore {
    fn record_occurrences(&self, occurrences: &[Occurrence]) -> Result<(), StoreError> {
        {
            let mut state = self.state();
            for o in occurrences {
                if !state.sigs.contains_key(&o.signature) && state.seen_here.len() < MAX_BUFFERED {
                    state.seen_here.insert(o.signature.clone());
                }
            }
        }
        let mut buf = self.buffered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        buf.extend_from_slice(occurrences);
        if buf.len() > MAX_BUFFERED {
            let excess = buf.len() - MAX_BUFFERED;
            buf.drain(..excess);
            self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn record_fix(&self, fix: &FixRecord) -> Result<(), StoreError> {
        self.append(Record::Fix(fix.clone()))
    }

    fn report(&self, signature: &str, scope: &FixScope) -> Option<SignatureReport> {
        let state = self.state();
        state.sigs.get(signature).map(|s| build_report(signature, s, scope))
    }

    fn known_fixes(&self, project: &str, phase: Option<&str>, limit: usize) -> Vec<KnownFix> {
        collect_known_fixes(&self.state().sigs, project, phase, limit)
    }

    fn status(&self, signature: &str) -> SignatureStatus {
        let state = self.state();
        match state.sigs.get(signature) {
            Some(s) => SignatureStatus { known: true, solved: s.solved() },
            None => SignatureStatus { known: state.seen_here.contains(signature), solved: false },
        }
    }

    fn record_path(&self, record: &crate::paths::PathRecord) -> Result<(), StoreError> {
        self.append(Record::Path(record.clone()))
    }

    fn record_flaky(&self, record: &crate::flaky::FlakyRecord) -> Result<(), StoreError> {
        self.append(Record::Flaky(record.clone()))
    }

    fn flaky(&self, project: &str, limit: usize) -> Vec<crate::flaky::FlakyTest> {
        let state = self.state();
        crate::flaky::collect(state.sigs.values().flat_map(|s| s.flaky.iter()), project, limit)
    }

    /// Inserts the buffered occurrences; on failure they stay buffered for the next flush.
    fn flush(&self) -> Result<(), StoreError> {
        let pending =
            std::mem::take(&mut *self.buffered.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if pending.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(pending.len());
        for o in &pending {
            rows.push((o.signature.clone(), serde_json::to_string(&Record::Occurrence(o.clone()))?));
        }
        if let Err(e) = self.insert(&rows) {
            let mut buf = self.buffered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let newer = std::mem::replace(&mut *buf, pending);
            buf.extend(newer);
            return Err(e);
        }
        Ok(())
    }

    fn signatures(&self) -> usize {
        self.state().sigs.len()
    }

    fn enforce_retention(&self, now_ms: i64, retention: &Retention) -> Result<Vec<String>, StoreError> {
        let retention = *retention;
        let forgotten = self.locked_rewrite(move |state| {
            let doomed = super::doomed(&state.sigs, now_ms, &retention);
            if doomed.is_empty() {
                return Ok((Vec::new(), Vec::new()));
            }
            let row = serde_json::to_string(&Row::Forget(Forget { forget: doomed.clone() }))?;
            Ok((doomed, vec![(String::new(), row)]))
        })?;
        self.compact()?;
        // the forget row is applied like any other (and forgets here too)
        let mut changes = self.sync_now()?;
        let mut all: Vec<String> = forgotten;
        all.append(&mut changes.forgotten);
        self.defer(changes);
        all.sort();
        all.dedup();
        Ok(all)
    }

    fn sync(&self) -> Result<Changes, StoreError> {
        let fresh = self.sync_now()?;
        self.defer(fresh);
        let mut changes =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        changes.indexed.sort();
        changes.indexed.dedup();
        // a signature forgotten after it was indexed is not indexed again
        let forgotten: HashSet<&String> = changes.forgotten.iter().collect();
        changes.indexed.retain(|s| !forgotten.contains(s));
        Ok(changes)
    }

    fn backend(&self) -> Option<super::BackendHealth> {
        let buffered = self.buffered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        Some(super::BackendHealth {
            reachable: self.reachable.load(Ordering::Acquire),
            detail: self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            buffered: buffered as u64,
            dropped: self.dropped.load(Ordering::Relaxed),
        })
    }
}
