//! The embedded event log: segment files of checksummed records, written by one thread with
//! group commit, replayed into an in-memory index at open.
//!
//! Record: one [`helix_wal`] frame holding an event's JSON (checksummed, with a sync marker:
//! damage costs the damaged record only, is kept aside in `quarantine/` and reported; every read
//! verifies the checksum). Segments are `NNNNNNNN.log`, rotated at [`SEGMENT_BYTES`].
//!
//! Why one writer thread: every concurrent `append` hands its encoded batch to it; the thread
//! writes everything that queued up, fsyncs once, and only then acknowledges all of them, so
//! durability costs one fsync per burst, not per request. Why the index holds positions and not
//! events: events stay on disk; a trace read is a few positioned reads. Why sealed segments keep
//! their per-trace summaries on disk ([`super::table`]): memory then holds only the segment being
//! written and a few bytes per trace of each sealed one, whatever the number of traces stored.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

use helix_core::trace::Event;

use super::table::TraceTable;
use super::{Appended, EventStore, StoreError, TraceFilter, TraceSummary};

mod index;
mod read;
mod replay;
mod sealed;
mod writer;

pub(super) use index::TraceKey;
use index::{FastMap, Index, Part, Pos, trace_key};
use read::{merged, read_records};
use replay::{intact, migrate_legacy_segment, replay, scan};
pub(super) use sealed::Sealed;
use sealed::{
    Sealer, SegmentIndex, SegmentSummary, find_parts, find_parts_many, index_path, seal_at_open, sum_path,
    table_from_summary,
};
use writer::{Batch, Writer};

/// Segment size at which a new segment file starts.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Traces in a segment at which a new segment file starts. The segment being written keeps its
/// traces' summaries and positions in memory (~0.7 KB a trace when every trace is one call, as
/// under a gateway's load), and sealing it briefly doubles that: 25,000 keeps the part that grows
/// between seals near 20 MB, while a segment of small traces still holds ~16 MB of events, so ten
/// million traces are a few hundred segments.
pub const SEGMENT_TRACES: usize = 25_000;
/// Batches waiting for the writer; beyond this, appends are refused with `Busy` (back-pressure
/// instead of unbounded memory).
const QUEUE_BATCHES: usize = 256;
/// Encoded bytes waiting for the writer; beyond this, appends are refused with `Busy`.
pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// How a [`LogStore`] is opened.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// Segment size at which a new segment file starts.
    pub segment_bytes: u64,
    /// Traces in a segment at which a new one starts: what the segment being written keeps in
    /// memory is bounded by this too, whatever the events' size.
    pub segment_traces: usize,
    /// Bound of the bytes waiting for the writer (the memory back-pressure protects).
    pub queue_bytes: usize,
    /// Extra time every commit takes: simulates a slow disk in tests of back-pressure.
    pub commit_delay: std::time::Duration,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            segment_bytes: SEGMENT_BYTES,
            segment_traces: SEGMENT_TRACES,
            queue_bytes: QUEUE_BYTES,
            commit_delay: std::time::Duration::ZERO,
        }
    }
}
/// Largest record accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_RECORD: u32 = 16 * 1024 * 1024;

/// Span ids of sealed segments' traces, cached per trace: (a hash of the parts read, ids).
type SealedSpans = FastMap<TraceKey, (u64, Arc<hashbrown::HashSet<u64>>)>;

/// See the module docs.
pub struct LogStore {
    dir: PathBuf,
    /// The segment the writer appends to: never removed by retention.
    current: Arc<std::sync::atomic::AtomicU32>,
    tx: Mutex<Option<SyncSender<Batch>>>,
    /// Encoded bytes handed to the writer and not yet committed.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    queue_bytes: usize,
    /// The end of what is committed: segment << 40 | offset.
    end: Arc<std::sync::atomic::AtomicU64>,
    index: Arc<RwLock<Index>>,
    /// Damaged records found at open or on a read, kept aside.
    quarantine: Arc<helix_wal::Quarantine>,
    /// Spans handed to the writer and not yet acknowledged: with the index, what makes a span
    /// arriving twice at the same time stored once.
    pending: Mutex<hashbrown::HashSet<(TraceKey, u64)>>,
    /// Span ids of the sealed parts of recently appended-to traces (read from `.idx` files),
    /// with the number of sealed parts they cover.
    sealed_spans: Mutex<SealedSpans>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Traces whose sealed span ids are cached for duplicate checks; the cache starts over beyond.
const SEALED_SPANS_CACHED: usize = 4096;

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("dir", &self.dir).finish()
    }
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.log"))
}

fn encode(e: &Event, out: &mut Vec<u8>) -> Result<u32, StoreError> {
    let json = serde_json::to_vec(e)?;
    Ok(u32::try_from(helix_wal::encode(&json, out)).unwrap_or(u32::MAX))
}

/// The file name of segment `n` (how the quarantine names where damage was found).
fn segment_name(n: u32) -> String {
    format!("{n:08}.log")
}

fn pack_end(segment: u32, offset: u64) -> u64 {
    (u64::from(segment) << 40) | (offset & ((1 << 40) - 1))
}

/// A trace with at least this many spans in more than one segment is read by two threads.
const PARALLEL_READ_SPANS: usize = 2_000;

impl LogStore {
    /// Opens the log in `dir` (created if missing), replays every segment and cuts a torn tail.
    pub fn open(dir: &Path) -> Result<LogStore, StoreError> {
        LogStore::open_observed_from(dir, LogOptions::default(), Some((u32::MAX, 0)), &mut |_| {})
    }

    /// Opens the log with `options`, showing every stored event to `observe` in storage order (to
    /// rebuild state kept outside the log); tests use small segments and slow disks.
    pub fn open_with(
        dir: &Path,
        options: LogOptions,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<LogStore, StoreError> {
        LogStore::open_observed_from(dir, options, None, observe)
    }

    /// Opens the log; `observe` sees the events stored at or after `observe_from` (a position
    /// from [`LogStore::end`] saved with state rebuilt from events), or every event when `None`.
    /// Sealed segments before it are not read at all: their summaries are enough.
    pub fn open_observed_from(
        dir: &Path,
        options: LogOptions,
        observe_from: Option<(u32, u64)>,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<LogStore, StoreError> {
        let observe_from = observe_from.unwrap_or((0, 0));
        let io = |source| StoreError::Io { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut segments: Vec<u32> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name().to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse().ok())
            })
            .collect();
        segments.sort_unstable();
        let quarantine = Arc::new(helix_wal::Quarantine::open(&dir.join("quarantine")));
        let mut index = Index::default();
        let mut skipped = 0usize;
        let mut last_sealed = false;
        for &s in &segments {
            migrate_legacy_segment(dir, s).map_err(io)?;
        }
        for &s in &segments {
            let path = segment_path(dir, s);
            let last = Some(&s) == segments.last();
            // the last segment has a table too after a clean shutdown (sealed at close): then
            // nothing at all is replayed and writing goes on in a new segment
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let sealed = if let Some((table, costs)) = TraceTable::open(dir, s)
                && (table.log_bytes == size || (table.log_bytes == 0 && !last))
                && let Some(file) = SegmentIndex::open(dir, s, table.events)
                // the newest segment is checked whole (checksums only, no parsing: ~50 ms for
                // 64 MiB), as a replay would: damage there is found, kept aside and reported at
                // start, not only when a read meets it
                && (!last || intact(&path, table.events).map_err(io)?)
            {
                last_sealed |= last;
                Some(Sealed { segment: s, idx: SegmentIndex { file }, table, costs })
            } else if last {
                None
            } else if let Some((sum, file)) = SegmentSummary::read(dir, s)
                .and_then(|sum| SegmentIndex::open(dir, s, sum.events).map(|f| (sum, f)))
            {
                // sealed before trace tables: its summary file becomes one
                Some(table_from_summary(dir, s, sum, file).map_err(io)?)
            } else {
                None
            };
            if let Some(sealed) = sealed {
                // a sealed segment with intact table and index: nothing to replay, unless
                // state kept outside the log (baselines) asks to see its events again
                index.add_sealed(sealed);
                if s >= observe_from.0 {
                    scan(&path, &mut |offset, _, e| {
                        if (s, offset) >= observe_from {
                            observe(&e);
                        }
                    })
                    .map_err(io)?;
                }
                skipped += 1;
                continue;
            }
            replay(&path, s, &mut index, &quarantine, observe_from, observe).map_err(io)?;
            if !last {
                seal_at_open(dir, s, &mut index).map_err(io)?;
            }
        }
        let current = match segments.last() {
            Some(&n) if last_sealed => n + 1,
            Some(&n) => n,
            None => 1,
        };
        let path = segment_path(dir, current);
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        let size = file.seek(SeekFrom::End(0)).map_err(io)?;
        tracing::info!(
            events = index.events,
            trace_parts = index.trace_parts(),
            segments = segments.len(),
            from_summaries = skipped,
            damaged = quarantine.regions(),
            "event log opened"
        );

        let index = Arc::new(RwLock::new(index));
        let (tx, rx) = sync_channel::<Batch>(QUEUE_BATCHES);
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let end = Arc::new(std::sync::atomic::AtomicU64::new(pack_end(current, size)));
        let shared_current = Arc::new(std::sync::atomic::AtomicU32::new(current));
        let (sealer, seal_rx) = std::sync::mpsc::channel();
        let sealer_thread = Sealer { dir: dir.to_path_buf(), index: index.clone() };
        let sealer_handle = std::thread::Builder::new()
            .name("event-log-sealer".to_owned())
            .spawn(move || sealer_thread.run(seal_rx))
            .map_err(io)?;
        let writer = Writer {
            dir: dir.to_path_buf(),
            segment: current,
            segment_bytes: options.segment_bytes,
            segment_traces: options.segment_traces,
            full: false,
            commit_delay: options.commit_delay,
            queued: queued.clone(),
            end: end.clone(),
            current: shared_current.clone(),
            file,
            size,
            index: index.clone(),
            sealer,
        };
        let handle = std::thread::Builder::new()
            .name("event-log-writer".to_owned())
            .spawn(move || {
                writer.run(rx);
                let _ = sealer_handle.join();
            })
            .map_err(io)?;
        Ok(LogStore {
            dir: dir.to_path_buf(),
            current: shared_current,
            tx: Mutex::new(Some(tx)),
            queued,
            queue_bytes: options.queue_bytes,
            end,
            index,
            quarantine,
            pending: Mutex::new(hashbrown::HashSet::new()),
            sealed_spans: Mutex::new(FastMap::new()),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Stops the writer after it finished every queued batch.
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
        if let Some(h) = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = h.join();
        }
    }

    /// Removes whole segments, oldest first: those whose newest event ended before `min_end`,
    /// then more while the log is larger than `max_bytes`. The segment being written is never
    /// removed. The index forgets what was removed (traces left without spans disappear, cost
    /// sums shrink). Returns the number of segments removed.
    fn retention(&self, min_end: Option<u64>, max_bytes: Option<u64>) -> Result<usize, StoreError> {
        let io = |source| StoreError::Io { path: self.dir.display().to_string(), source };
        let current = self.current.load(std::sync::atomic::Ordering::Acquire);
        let mut segments: Vec<(u32, u64)> = std::fs::read_dir(&self.dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n: u32 = e.file_name().to_str()?.strip_suffix(".log")?.parse().ok()?;
                Some((n, e.metadata().ok()?.len()))
            })
            .collect();
        segments.sort_unstable();
        let mut total: u64 = segments.iter().map(|(_, len)| len).sum();
        let mut removed = 0;
        for (n, len) in segments {
            if n >= current {
                break;
            }
            let newest = self.read_index().segment_newest.get(&n).copied().unwrap_or(0);
            let too_old = min_end.is_some_and(|m| newest < m);
            let too_big = max_bytes.is_some_and(|m| total > m);
            if !too_old && !too_big {
                break;
            }
            // forget the segment: its summaries go with its files, its sums are subtracted
            let path = segment_path(&self.dir, n);
            {
                let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(sealed) = index.sealed.remove(&n) {
                    index.events = index.events.saturating_sub(sealed.table.events);
                    if let Ok(cells) = serde_json::from_slice(&sealed.costs) {
                        index.costs.subtract(&crate::costs::CostIndex::from_cells(cells));
                    }
                }
                if let Some(part) = index.live_sums.remove(&n) {
                    index.events = index.events.saturating_sub(part.events);
                    index.costs.subtract(&part.costs);
                }
                index.segment_newest.remove(&n);
                index.live.remove(&n);
            }
            std::fs::remove_file(&path).map_err(io)?;
            for derived in
                [index_path(&self.dir, n), sum_path(&self.dir, n), super::table::table_path(&self.dir, n)]
            {
                match std::fs::remove_file(derived) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
            }
            total = total.saturating_sub(len);
            removed += 1;
            tracing::info!(segment = n, bytes = len, "retention removed a segment");
        }
        Ok(removed)
    }

    /// Reads up to `max` events in storage order from `cursor` (segment, byte offset) and
    /// returns them with the cursor after them. Stops at the end of what is fully written; moves
    /// on to the next segment when one exists. A cursor in a segment retention removed resumes
    /// at the oldest segment left.
    pub fn read_from(&self, cursor: (u32, u64), max: usize) -> Result<(Vec<Event>, (u32, u64)), StoreError> {
        let io = |source| StoreError::Io { path: self.dir.display().to_string(), source };
        let (mut seg, mut off) = cursor;
        let mut out = Vec::new();
        loop {
            // what is committed, read before the file: a segment before the committed end's is
            // complete, and in the end's own segment only what is before it counts (a batch being
            // written is neither read half nor taken for damage)
            let (end_seg, end_off) = self.end();
            let path = segment_path(&self.dir, seg);
            let mut data = match std::fs::read(&path) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // removed by retention (or not yet created): the oldest segment at or after it
                    let next = std::fs::read_dir(&self.dir)
                        .map_err(io)?
                        .filter_map(|e| e.ok())
                        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse::<u32>().ok())
                        .filter(|n| *n > seg)
                        .min();
                    match next {
                        Some(n) => {
                            seg = n;
                            off = 0;
                            continue;
                        }
                        None => return Ok((out, (seg, off))),
                    }
                }
                Err(e) => return Err(io(e)),
            };
            let complete = seg < end_seg;
            if seg == end_seg {
                data.truncate(usize::try_from(end_off).unwrap_or(usize::MAX));
            }
            let mut scanner =
                helix_wal::Scanner::from(&data, usize::try_from(off).unwrap_or(usize::MAX), MAX_RECORD);
            while out.len() < max {
                let before = scanner.offset();
                match scanner.next() {
                    None => break,
                    Some(helix_wal::Item::Record { payload, .. }) => {
                        if let Ok(e) = serde_json::from_slice::<Event>(payload) {
                            out.push(e);
                        }
                    }
                    // damage in what is committed: skipped (recovery at open reports it)
                    Some(helix_wal::Item::Corrupt { .. }) => {}
                    Some(helix_wal::Item::Tail { .. }) if complete => {}
                    Some(helix_wal::Item::Tail { .. }) => {
                        // nothing valid after it yet: wait here for what comes after
                        return Ok((out, (seg, before as u64)));
                    }
                }
            }
            off = scanner.offset() as u64;
            if out.len() >= max || !complete {
                return Ok((out, (seg, off)));
            }
            seg += 1;
            off = 0;
        }
    }

    /// The position after the last committed record: everything stored so far is before it.
    pub fn end(&self) -> (u32, u64) {
        let v = self.end.load(std::sync::atomic::Ordering::Acquire);
        ((v >> 40) as u32, v & ((1 << 40) - 1))
    }

    /// Judges (through `prepare`), encodes and hands `events` to the writer; returns how many
    /// were stored once they are durable.
    fn write(
        &self,
        events: &mut Vec<Event>,
        prepare: &mut dyn FnMut(&mut Vec<Event>),
    ) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        // a queue already over its bound refuses before anything is judged (and learned)
        if self.queued.load(std::sync::atomic::Ordering::Acquire) > self.queue_bytes {
            return Err(StoreError::Busy);
        }
        prepare(events);
        let n = events.len();
        let mut bytes = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        for e in events.drain(..) {
            let rel = bytes.len() as u64;
            let len = encode(&e, &mut bytes)?;
            records.push((rel, len, e));
        }
        let (ack, done) = std::sync::mpsc::channel();
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)?;
        // bounded by bytes, not only batches: one batch alone is always admitted (a body is
        // already limited in size), more only while the queue stays under the bound
        let size = bytes.len();
        let before = self.queued.fetch_add(size, std::sync::atomic::Ordering::AcqRel);
        if before > 0 && before + size > self.queue_bytes {
            self.queued.fetch_sub(size, std::sync::atomic::Ordering::AcqRel);
            return Err(StoreError::Busy);
        }
        match tx.try_send(Batch { bytes, records, ack }) {
            Ok(()) => {}
            Err(e) => {
                self.queued.fetch_sub(size, std::sync::atomic::Ordering::AcqRel);
                return Err(match e {
                    TrySendError::Full(_) => StoreError::Busy,
                    TrySendError::Disconnected(_) => StoreError::Closed,
                });
            }
        }
        match done.recv().map(|d| d.result) {
            Ok(Ok(())) => Ok(n),
            Ok(Err(e)) => {
                Err(StoreError::Io { path: self.dir.display().to_string(), source: std::io::Error::other(e) })
            }
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Splits `events` into the spans not stored yet (claimed as pending: the caller must
    /// [`LogStore::release`] them) and the number of duplicates dropped.
    #[allow(clippy::type_complexity)]
    fn claim(&self, events: Vec<Event>) -> Result<(Vec<Event>, Vec<(TraceKey, u64)>, usize), StoreError> {
        let io = |source| StoreError::Io { path: self.dir.display().to_string(), source };
        let span_of = |e: &Event| u64::from_str_radix(&e.span_id, 16).unwrap_or(0);
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // what the index knows of the traces this batch touches, copied under its lock
        let mut known: FastMap<TraceKey, hashbrown::HashSet<u64>> = FastMap::new();
        let sealed: Vec<Arc<Sealed>> = {
            let index = self.read_index();
            for e in &events {
                let key = trace_key(&e.trace_id);
                if known.contains_key(&key) {
                    continue;
                }
                let mut spans = hashbrown::HashSet::new();
                for traces in index.live.values() {
                    if let Some(ps) = traces.get(&key) {
                        spans.extend(ps.as_slice().iter().map(|p| p.span));
                    }
                }
                known.insert(key, spans);
            }
            index.sealed.values().cloned().collect()
        };
        // the sealed parts of the batch's traces, found through the trace tables (a Bloom filter
        // in memory per segment, one block read where it may hold the trace)
        // per trace, when the batch's spans of it start (latest) and end (earliest): a stored copy
        // of one of them can only be in a segment whose span times cover it
        let mut times: FastMap<TraceKey, (u64, u64)> = FastMap::new();
        for e in &events {
            let t = times.entry(trace_key(&e.trace_id)).or_insert((0, u64::MAX));
            t.0 = t.0.max(e.start_unix_nanos);
            t.1 = t.1.min(e.end_unix_nanos);
        }
        let keys: Vec<(TraceKey, (u64, u64))> =
            known.keys().map(|k| (*k, times.get(k).copied().unwrap_or((u64::MAX, 0)))).collect();
        let mut sealed_parts: Vec<(TraceKey, Vec<(super::table::TraceRow, Arc<Sealed>)>)> = Vec::new();
        for ((key, _), parts) in keys.iter().zip(find_parts_many(&sealed, &keys).map_err(io)?) {
            if !parts.is_empty() {
                sealed_parts.push((*key, parts));
            }
        }
        for (key, parts) in sealed_parts {
            let mut cache = self.sealed_spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // which parts the ids were read from (a later batch may find other ones)
            let which = parts.iter().fold(parts.len() as u64, |h, (_, s)| {
                (h ^ u64::from(s.segment)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            });
            let cached = cache.get(&key).filter(|(w, _)| *w == which).map(|(_, s)| s.clone());
            let ids = match cached {
                Some(ids) => ids,
                None => {
                    let mut ids = hashbrown::HashSet::new();
                    for (row, sealed) in &parts {
                        ids.extend(sealed.idx.read(row.first, row.count).map_err(io)?.iter().map(|p| p.span));
                    }
                    let ids = Arc::new(ids);
                    if cache.len() >= SEALED_SPANS_CACHED {
                        cache.clear();
                    }
                    cache.insert(key, (which, ids.clone()));
                    ids
                }
            };
            if let Some(spans) = known.get_mut(&key) {
                spans.extend(ids.iter().copied());
            }
        }
        let mut fresh = Vec::with_capacity(events.len());
        let mut claimed = Vec::with_capacity(events.len());
        let mut duplicates = 0;
        for e in events {
            let (key, span) = (trace_key(&e.trace_id), span_of(&e));
            // `insert` is false for a span stored, or earlier in this batch
            if pending.contains(&(key, span)) || !known.entry(key).or_default().insert(span) {
                duplicates += 1;
                continue;
            }
            pending.insert((key, span));
            claimed.push((key, span));
            fresh.push(e);
        }
        Ok((fresh, claimed, duplicates))
    }

    /// Forgets claims of [`LogStore::claim`] once their append ended (stored, or failed).
    fn release(&self, claimed: &[(TraceKey, u64)]) {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for claim in claimed {
            pending.remove(claim);
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sealed segments and the unsealed parts, shared (cheap), so that reads run without
    /// the lock.
    fn snapshot(&self) -> (Vec<Arc<Sealed>>, LiveParts) {
        let index = self.read_index();
        let mut live: Vec<(u32, Arc<Part>)> = index.live_sums.iter().map(|(n, p)| (*n, p.clone())).collect();
        live.sort_unstable_by_key(|(n, _)| *n);
        (index.sealed.values().cloned().collect(), live)
    }
}

/// The unsealed segments' parts, in segment order.
type LiveParts = Vec<(u32, Arc<Part>)>;

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventStore for LogStore {
    fn append_prepared(
        &self,
        events: Vec<Event>,
        prepare: &mut dyn FnMut(&mut Vec<Event>),
    ) -> Result<Appended, StoreError> {
        let (mut events, claimed, duplicates) = self.claim(events)?;
        let result = self.write(&mut events, prepare);
        self.release(&claimed);
        result.map(|stored| Appended { stored, duplicates })
    }

    fn damage(&self) -> super::Damage {
        super::Damage { regions: self.quarantine.regions(), bytes: self.quarantine.bytes() }
    }

    fn trace_records(&self, trace_id: &str) -> Result<Vec<super::SpanRecord>, StoreError> {
        let io = |source| StoreError::Io { path: self.dir.display().to_string(), source };
        let key = trace_key(trace_id);
        // under the lock only cheap copies; reads happen after it is released
        let mut by_segment: Vec<(u32, Vec<Pos>)> = Vec::new();
        let sealed: Vec<Arc<Sealed>> = {
            let index = self.read_index();
            for (segment, traces) in &index.live {
                if let Some(ps) = traces.get(&key) {
                    by_segment.push((*segment, ps.as_slice().to_vec()));
                }
            }
            index.sealed.values().cloned().collect()
        };
        for (row, s) in find_parts(&sealed, key).map_err(io)? {
            by_segment.push((s.segment, s.idx.read(row.first, row.count).map_err(io)?));
        }
        let total: usize = by_segment.iter().map(|(_, p)| p.len()).sum();
        let read = |part: Vec<(u32, Vec<Pos>)>| -> std::io::Result<Vec<super::SpanRecord>> {
            let mut records = Vec::with_capacity(part.iter().map(|(_, p)| p.len()).sum());
            for (segment, mut positions) in part {
                positions.sort_unstable_by_key(|p| p.offset);
                let file = File::open(segment_path(&self.dir, segment))?;
                read_records(&file, segment, &positions, &self.quarantine, &mut records)?;
            }
            Ok(records)
        };
        if total < PARALLEL_READ_SPANS || by_segment.len() < 2 {
            return read(by_segment).map_err(io);
        }
        // a long trace spread over many segments: two threads, each reading half of its spans
        // (a read is a thousand small page-cache copies, not disk-bound)
        let (mut left, mut right, mut left_n) = (Vec::new(), Vec::new(), 0);
        for part in by_segment {
            if left_n < total / 2 {
                left_n += part.1.len();
                left.push(part);
            } else {
                right.push(part);
            }
        }
        let (mut records, rest) = std::thread::scope(|scope| {
            let other = scope.spawn(|| read(right));
            let mine = read(left);
            (mine, other.join().unwrap_or_else(|_| Err(std::io::Error::other("trace read thread panicked"))))
        });
        if let Ok(r) = records.as_mut() {
            r.extend(rest.map_err(io)?);
        }
        records.map_err(io)
    }

    fn traces(&self, filter: &TraceFilter, after: Option<(u64, String)>, limit: usize) -> Vec<TraceSummary> {
        match self.list(filter, after.map(|(s, id)| (s, trace_key(&id))), limit) {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "cannot list traces");
                Vec::new()
            }
        }
    }

    fn costs(
        &self,
        group_by: crate::costs::GroupBy,
        bucket: Option<crate::costs::GroupBy>,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Vec<crate::costs::CostRow> {
        self.read_index().costs.query(group_by, bucket, from, to)
    }

    fn enforce_retention(&self, min_end: Option<u64>, max_bytes: Option<u64>) -> Result<usize, StoreError> {
        self.retention(min_end, max_bytes)
    }

    fn summary(&self, trace_id: &str) -> Option<TraceSummary> {
        let key = trace_key(trace_id);
        let (sealed, live) = self.snapshot();
        match merged(key, &sealed, &live) {
            Ok(t) => t.map(|t| t.summary(key)),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a trace summary");
                None
            }
        }
    }

    fn len(&self) -> u64 {
        self.read_index().events
    }

    fn end(&self) -> (u32, u64) {
        LogStore::end(self)
    }
}

#[cfg(test)]
mod tests;
