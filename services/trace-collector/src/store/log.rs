//! The embedded event log: segment files of checksummed records, written by one thread with
//! group commit, replayed into an in-memory index at open.
//!
//! Record: `len: u32 LE | crc32(json): u32 LE | json`. Segments are `NNNNNNNN.log`, rotated at
//! [`SEGMENT_BYTES`]. Why one writer thread: every concurrent `append` hands its encoded batch to
//! it; the thread writes everything that queued up, fsyncs once, and only then acknowledges all
//! of them, so durability costs one fsync per burst, not per request. Why the index holds
//! positions and not events: events stay on disk; a trace read is a few positioned reads.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

use helix_core::trace::{Event, SpanKind, SpanStatus, attr};

use super::{EventStore, StoreError, TraceFilter, TraceSummary};

/// Segment size at which a new segment file starts.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Batches waiting for the writer; beyond this, appends are refused with `Busy` (back-pressure
/// instead of unbounded memory).
const QUEUE_BATCHES: usize = 256;
/// Largest record accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_RECORD: u32 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
struct Pos {
    segment: u32,
    offset: u64,
    len: u32,
}

#[derive(Debug, Default)]
struct TraceEntry {
    positions: Vec<Pos>,
    root_name: Option<String>,
    first_name: String,
    project: Option<String>,
    run: Option<String>,
    start: u64,
    end: u64,
    status: SpanStatus,
    phases: Vec<String>,
    cost_usd: f64,
}

impl TraceEntry {
    fn add(&mut self, e: &Event, pos: Pos) {
        if self.positions.is_empty() || e.start_unix_nanos < self.start {
            self.start = e.start_unix_nanos;
            self.first_name.clone_from(&e.name);
        }
        self.end = self.end.max(e.end_unix_nanos);
        self.positions.push(pos);
        if e.parent_span_id.is_none() || e.kind == SpanKind::Run {
            self.root_name = Some(e.name.clone());
        }
        if self.project.is_none() {
            self.project.clone_from(&e.project);
        }
        if self.run.is_none() {
            self.run.clone_from(&e.run);
        }
        if let Some(p) = &e.phase
            && !self.phases.contains(p)
        {
            self.phases.push(p.clone());
        }
        self.status = match (self.status, e.status) {
            (SpanStatus::Error, _) | (_, SpanStatus::Error) => SpanStatus::Error,
            (SpanStatus::Ok, _) | (_, SpanStatus::Ok) => SpanStatus::Ok,
            _ => SpanStatus::Unset,
        };
        self.cost_usd += e.number(attr::HELIX_COST_USD).unwrap_or(0.0);
    }

    fn summary(&self, trace_id: &str) -> TraceSummary {
        TraceSummary {
            trace_id: trace_id.to_owned(),
            name: self.root_name.clone().unwrap_or_else(|| self.first_name.clone()),
            project: self.project.clone(),
            run: self.run.clone(),
            start_unix_nanos: self.start,
            end_unix_nanos: self.end,
            spans: self.positions.len() as u64,
            status: self.status,
            phases: self.phases.clone(),
            cost_usd: self.cost_usd,
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    traces: HashMap<String, TraceEntry>,
    events: u64,
    costs: crate::costs::CostIndex,
    /// Per segment: newest end time of its events (for retention by age).
    segment_newest: HashMap<u32, u64>,
}

struct Batch {
    bytes: Vec<u8>,
    /// (relative offset, length, event) of each record in `bytes`.
    records: Vec<(u64, u32, Event)>,
    ack: std::sync::mpsc::Sender<Result<(), String>>,
}

/// See the module docs.
pub struct LogStore {
    dir: PathBuf,
    /// The segment the writer appends to: never removed by retention.
    current: Arc<std::sync::atomic::AtomicU32>,
    tx: Mutex<Option<SyncSender<Batch>>>,
    index: Arc<RwLock<Index>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

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
    let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(len + 8)
}

/// Replays one segment; returns the length of its valid prefix.
fn replay(
    path: &Path,
    segment: u32,
    index: &mut Index,
    observe: &mut dyn FnMut(&Event),
) -> std::io::Result<u64> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let crc = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
        let end = at + 8 + len as usize;
        if len > MAX_RECORD || end > data.len() || crc32fast::hash(&data[at + 8..end]) != crc {
            break;
        }
        let Ok(event) = serde_json::from_slice::<Event>(&data[at + 8..end]) else { break };
        let pos = Pos { segment, offset: at as u64, len: len + 8 };
        index.traces.entry(event.trace_id.clone()).or_default().add(&event, pos);
        index.costs.add(&event);
        index.events += 1;
        let newest = index.segment_newest.entry(segment).or_default();
        *newest = (*newest).max(event.end_unix_nanos);
        observe(&event);
        at = end;
    }
    Ok(at as u64)
}

impl LogStore {
    /// Opens the log in `dir` (created if missing), replays every segment and cuts a torn tail.
    pub fn open(dir: &Path) -> Result<LogStore, StoreError> {
        LogStore::open_observed(dir, &mut |_| {})
    }

    /// [`LogStore::open`], showing every stored event to `observe` in storage order (to rebuild
    /// state kept outside the log, such as baselines).
    pub fn open_observed(dir: &Path, observe: &mut dyn FnMut(&Event)) -> Result<LogStore, StoreError> {
        LogStore::open_with(dir, SEGMENT_BYTES, observe)
    }

    /// [`LogStore::open_observed`] with another segment size (tests use small segments).
    pub fn open_with(
        dir: &Path,
        segment_bytes: u64,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<LogStore, StoreError> {
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
        let mut index = Index::default();
        for &s in &segments {
            let path = segment_path(dir, s);
            let valid = replay(&path, s, &mut index, observe).map_err(io)?;
            let actual = std::fs::metadata(&path).map_err(io)?.len();
            if valid < actual {
                tracing::warn!(segment = %path.display(), kept = valid, dropped = actual - valid, "cutting a torn or corrupt tail of the event log");
                let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
                f.set_len(valid).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
        }
        let current = segments.last().copied().unwrap_or(1);
        let path = segment_path(dir, current);
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        let size = file.seek(SeekFrom::End(0)).map_err(io)?;
        tracing::info!(events = index.events, traces = index.traces.len(), "event log opened");

        let index = Arc::new(RwLock::new(index));
        let (tx, rx) = sync_channel::<Batch>(QUEUE_BATCHES);
        let shared_current = Arc::new(std::sync::atomic::AtomicU32::new(current));
        let writer = Writer {
            dir: dir.to_path_buf(),
            segment: current,
            segment_bytes,
            current: shared_current.clone(),
            file,
            size,
            index: index.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("event-log-writer".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(LogStore {
            dir: dir.to_path_buf(),
            current: shared_current,
            tx: Mutex::new(Some(tx)),
            index,
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
            // forget the segment's events before the file goes: read them once more
            let path = segment_path(&self.dir, n);
            let mut gone = Index::default();
            replay(&path, n, &mut gone, &mut |_| {}).map_err(io)?;
            {
                let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (trace_id, entry) in gone.traces {
                    if let Some(t) = index.traces.get_mut(&trace_id) {
                        t.positions.retain(|p| p.segment != n);
                        if t.positions.is_empty() {
                            index.traces.remove(&trace_id);
                        }
                    }
                    index.events = index.events.saturating_sub(entry.positions.len() as u64);
                }
                index.costs.subtract(&gone.costs);
                index.segment_newest.remove(&n);
            }
            std::fs::remove_file(&path).map_err(io)?;
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
            let path = segment_path(&self.dir, seg);
            let data = match std::fs::read(&path) {
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
            let mut at = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
            while out.len() < max && at + 8 <= data.len() {
                let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                let crc = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
                let end = at + 8 + len as usize;
                if len > MAX_RECORD || end > data.len() || crc32fast::hash(&data[at + 8..end]) != crc {
                    break; // not fully written yet
                }
                if let Ok(e) = serde_json::from_slice::<Event>(&data[at + 8..end]) {
                    out.push(e);
                }
                at = end;
            }
            off = at as u64;
            let current = self.current.load(std::sync::atomic::Ordering::Acquire);
            if out.len() >= max || seg >= current || at < data.len() {
                return Ok((out, (seg, off)));
            }
            seg += 1;
            off = 0;
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    dir: PathBuf,
    segment: u32,
    segment_bytes: u64,
    current: Arc<std::sync::atomic::AtomicU32>,
    file: File,
    size: u64,
    index: Arc<RwLock<Index>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Batch>) {
        while let Ok(first) = rx.recv() {
            let mut batches = vec![first];
            while let Ok(more) = rx.try_recv() {
                batches.push(more);
                if batches.len() >= 512 {
                    break;
                }
            }
            let result = self.commit(&batches);
            for b in batches {
                let _ = b.ack.send(result.clone());
            }
        }
        let _ = self.file.sync_data();
    }

    fn commit(&mut self, batches: &[Batch]) -> Result<(), String> {
        if self.size >= self.segment_bytes {
            self.segment += 1;
            self.current.store(self.segment, std::sync::atomic::Ordering::Release);
            let path = segment_path(&self.dir, self.segment);
            self.file =
                OpenOptions::new().create(true).append(true).open(&path).map_err(|e| e.to_string())?;
            self.size = 0;
        }
        let start = self.size;
        let mut buf = Vec::with_capacity(batches.iter().map(|b| b.bytes.len()).sum());
        for b in batches {
            buf.extend_from_slice(&b.bytes);
        }
        if let Err(e) = self.file.write_all(&buf).and_then(|()| self.file.sync_data()) {
            // what was partly written is cut at the next open; nothing was acknowledged
            tracing::error!(error = %e, "event log write failed");
            return Err(e.to_string());
        }
        self.size += buf.len() as u64;
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut base = start;
        for b in batches {
            for (rel, len, e) in &b.records {
                let pos = Pos { segment: self.segment, offset: base + rel, len: *len };
                index.traces.entry(e.trace_id.clone()).or_default().add(e, pos);
                index.costs.add(e);
                index.events += 1;
                let newest = index.segment_newest.entry(self.segment).or_default();
                *newest = (*newest).max(e.end_unix_nanos);
            }
            base += b.bytes.len() as u64;
        }
        Ok(())
    }
}

impl EventStore for LogStore {
    fn append(&self, events: Vec<Event>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        for e in events {
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
        match tx.try_send(Batch { bytes, records, ack }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
        }
        match done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                Err(StoreError::Io { path: self.dir.display().to_string(), source: std::io::Error::other(e) })
            }
            Err(_) => Err(StoreError::Closed),
        }
    }

    fn trace(&self, trace_id: &str) -> Result<Vec<Event>, StoreError> {
        let positions = match self.read_index().traces.get(trace_id) {
            Some(t) => t.positions.clone(),
            None => return Ok(Vec::new()),
        };
        let io = |source| StoreError::Io { path: self.dir.display().to_string(), source };
        let mut events = Vec::with_capacity(positions.len());
        let mut files: HashMap<u32, File> = HashMap::new();
        let mut buf = Vec::new();
        for p in positions {
            let file = match files.entry(p.segment) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(File::open(segment_path(&self.dir, p.segment)).map_err(io)?)
                }
            };
            buf.resize(p.len as usize, 0);
            file.seek(SeekFrom::Start(p.offset)).map_err(io)?;
            file.read_exact(&mut buf).map_err(io)?;
            if let Ok(e) = serde_json::from_slice::<Event>(&buf[8..]) {
                events.push(e);
            }
        }
        events.sort_by(|a, b| {
            a.start_unix_nanos.cmp(&b.start_unix_nanos).then_with(|| a.span_id.cmp(&b.span_id))
        });
        Ok(events)
    }

    fn traces(&self, filter: &TraceFilter, after: Option<(u64, String)>, limit: usize) -> Vec<TraceSummary> {
        let index = self.read_index();
        let mut hits: Vec<(&String, &TraceEntry)> = index
            .traces
            .iter()
            .filter(|(_, t)| filter.project.as_ref().is_none_or(|p| t.project.as_ref() == Some(p)))
            .filter(|(_, t)| filter.phase.as_ref().is_none_or(|p| t.phases.contains(p)))
            .filter(|(_, t)| filter.status.is_none_or(|s| t.status == s))
            .filter(|(_, t)| filter.since_unix_nanos.is_none_or(|s| t.end >= s))
            .filter(|(_, t)| filter.until_unix_nanos.is_none_or(|u| t.start < u))
            .filter(|(id, t)| {
                after.as_ref().is_none_or(|(s, aid)| (t.start, id.as_str()) < (*s, aid.as_str()))
            })
            .collect();
        hits.sort_by(|a, b| (b.1.start, b.0).cmp(&(a.1.start, a.0)));
        hits.into_iter().take(limit).map(|(id, t)| t.summary(id)).collect()
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
        self.read_index().traces.get(trace_id).map(|t| t.summary(trace_id))
    }

    fn len(&self) -> u64 {
        self.read_index().events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event(trace: u32, span: u32, parent: Option<u32>, start: u64) -> Event {
        serde_json::from_value(serde_json::json!({
            "trace_id": format!("{trace:032x}"),
            "span_id": format!("{span:016x}"),
            "parent_span_id": parent.map(|p| format!("{p:016x}")),
            "name": format!("span {span}"),
            "kind": if parent.is_none() { "run" } else { "tool_call" },
            "start_unix_nanos": start,
            "end_unix_nanos": start + 10,
            "project": "p",
            "phase": "build",
            "attributes": {"helix.cost_usd": 0.25}
        }))
        .expect("event")
    }

    #[test]
    fn appends_reads_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = LogStore::open(dir.path()).expect("open");
            s.append(vec![event(1, 1, None, 100), event(1, 2, Some(1), 110)]).expect("append");
            s.append(vec![event(2, 1, None, 200)]).expect("append");
            assert_eq!(s.len(), 3);
            let t = s.trace(&format!("{:032x}", 1)).expect("trace");
            assert_eq!(t.len(), 2);
            assert_eq!(t[0].span_id, format!("{:016x}", 1));
        }
        let s = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(s.len(), 3);
        let list = s.traces(&TraceFilter::default(), None, 10);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].trace_id, format!("{:032x}", 2), "newest first");
        assert_eq!(list[1].spans, 2);
        assert!((list[1].cost_usd - 0.5).abs() < 1e-9);
        let page =
            s.traces(&TraceFilter::default(), Some((list[0].start_unix_nanos, list[0].trace_id.clone())), 10);
        assert_eq!(page.len(), 1);
    }

    #[test]
    fn torn_tail_is_cut_and_acknowledged_events_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = LogStore::open(dir.path()).expect("open");
            s.append(vec![event(1, 1, None, 100), event(1, 2, Some(1), 110)]).expect("append");
        }
        let seg = segment_path(dir.path(), 1);
        let good = std::fs::metadata(&seg).expect("meta").len();
        let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']).expect("torn write");
        drop(f);
        let s = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(s.len(), 2);
        assert_eq!(std::fs::metadata(&seg).expect("meta").len(), good);
        s.append(vec![event(1, 3, Some(1), 120)]).expect("append after recovery");
        drop(s);
        assert_eq!(LogStore::open(dir.path()).expect("reopen").len(), 3);
    }

    #[test]
    fn retention_removes_old_and_excess_segments_but_never_the_current_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = LogStore::open_with(dir.path(), 2048, &mut |_| {}).expect("open");
        for t in 1..=20u32 {
            // one trace per batch, times growing with t; each batch ~600 bytes
            s.append(vec![
                event(t, 1, None, u64::from(t) * 1000),
                event(t, 2, Some(1), u64::from(t) * 1000 + 1),
            ])
            .expect("append");
        }
        let segments = || std::fs::read_dir(dir.path()).expect("dir").count();
        let before = segments();
        assert!(before >= 4, "{before} segments");
        assert_eq!(s.len(), 40);
        // by age: everything that ended before trace 10's time goes
        let removed = s.retention(Some(10_000), None).expect("retention");
        assert!(removed >= 1);
        assert!(s.trace(&format!("{:032x}", 1)).expect("trace").is_empty(), "old trace gone");
        assert_eq!(s.trace(&format!("{:032x}", 20)).expect("trace").len(), 2, "new trace kept");
        assert!(s.len() < 40);
        // by size: down to about one segment, but the current one stays
        s.retention(None, Some(1)).expect("retention");
        assert!(segments() >= 1);
        assert_eq!(s.trace(&format!("{:032x}", 20)).expect("trace").len(), 2);
        let costs = s.costs(crate::costs::GroupBy::Project, None, None, None);
        let stored = s.len() as f64;
        assert!((costs[0].cost_usd - 0.25 * stored).abs() < 1e-9, "cost sums follow what is stored");
        drop(s);
        let reopened = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.trace(&format!("{:032x}", 20)).expect("trace").len(), 2);
    }

    #[test]
    fn concurrent_appends_share_fsyncs_and_all_land() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Arc::new(LogStore::open(dir.path()).expect("open"));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..50u32 {
                        s.append(vec![event(t + 1, i + 1, None, u64::from(i))]).expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(s.len(), 400);
        assert_eq!(s.trace(&format!("{:032x}", 3)).expect("trace").len(), 50);
    }
}
