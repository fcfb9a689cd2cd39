//! The embedded event log: segment files of checksummed records, written by one thread with
//! group commit, replayed into an in-memory index at open.
//!
//! Record: one [`helix_wal`] frame holding an event's JSON (checksummed, with a sync marker:
//! damage costs the damaged record only, is kept aside in `quarantine/` and reported; every read
//! verifies the checksum). Segments are `NNNNNNNN.log`, rotated at [`SEGMENT_BYTES`]. Why one writer thread: every concurrent `append` hands its encoded batch to
//! it; the thread writes everything that queued up, fsyncs once, and only then acknowledges all
//! of them, so durability costs one fsync per burst, not per request. Why the index holds
//! positions and not events: events stay on disk; a trace read is a few positioned reads. Why
//! sealed segments keep their per-trace summaries on disk ([`super::table`]): memory then holds
//! only the segment being written and a few bytes per trace of each sealed one, whatever the
//! number of traces stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

use helix_core::trace::{Event, SpanKind, SpanStatus, attr};

use super::table::{PartRow, StartCursor, TraceTable};
use super::{Appended, EventStore, StoreError, TraceFilter, TraceSummary};

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

/// Where a span's record is, and what a span tree needs of it (so a trace read assembles its
/// tree without decoding any span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    offset: u64,
    len: u32,
    span: u64,
    /// 0: no parent.
    parent: u64,
    start: u64,
    end: u64,
}

impl Pos {
    fn of(e: &Event, offset: u64, len: u32) -> Pos {
        let id = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
        Pos {
            offset,
            len,
            span: id(&e.span_id),
            parent: e.parent_span_id.as_deref().map_or(0, id),
            start: e.start_unix_nanos,
            end: e.end_unix_nanos,
        }
    }
}

/// A trace's positions in one unsealed segment: one inline (most traces of a segment have one
/// span there: no allocation of its own), more in a vector.
#[derive(Debug, Clone)]
enum PosList {
    One(Pos),
    Many(Vec<Pos>),
}

impl Default for PosList {
    fn default() -> PosList {
        PosList::Many(Vec::new())
    }
}

impl PosList {
    fn push(&mut self, p: Pos) {
        match self {
            PosList::Many(v) if v.is_empty() => *self = PosList::One(p),
            PosList::One(a) => *self = PosList::Many(vec![*a, p]),
            PosList::Many(v) => v.push(p),
        }
    }

    fn as_slice(&self) -> &[Pos] {
        match self {
            PosList::One(p) => std::slice::from_ref(p),
            PosList::Many(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// The maps looked up for every ingested event: hashbrown with foldhash, several times faster
/// than SipHash for these small keys and still seeded per process.
type FastMap<K, V> = hashbrown::HashMap<K, V>;

/// A trace id as a number: 16 bytes instead of a 32-byte string and its allocation.
pub(super) type TraceKey = u128;

fn trace_key(id: &str) -> TraceKey {
    // ingest only accepts 32 lowercase hex digits; anything else still gets a stable key
    u128::from_str_radix(id, 16).unwrap_or_else(|_| {
        let h = |seed: u64| {
            let mut x = 0xcbf2_9ce4_8422_2325u64 ^ seed;
            for b in id.bytes() {
                x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            x
        };
        (u128::from(h(1)) << 64) | u128::from(h(2))
    })
}

/// A trace's summary over some of its spans: its part in one segment kept in memory while the
/// segment is written, or the merge of all its parts for an answer.
#[derive(Debug, Default, Clone)]
struct TraceEntry {
    spans: u32,
    root_name: Option<Box<str>>,
    first_name: Box<str>,
    project: Option<Arc<str>>,
    run: Option<Box<str>>,
    start: u64,
    end: u64,
    /// Merged over all spans: `error` when any failed.
    status: SpanStatus,
    /// The root span's own status, once a root with a set status arrived: a run that healed a
    /// failed attempt ended well, and its root says so, while the failed attempt's span stays an
    /// error.
    root_status: Option<SpanStatus>,
    phases: Vec<Arc<str>>,
    cost_usd: f64,
}

impl TraceEntry {
    /// The trace's status: its root span's, or merged over its spans while no root arrived.
    fn status(&self) -> SpanStatus {
        self.root_status.unwrap_or(self.status)
    }

    fn add(&mut self, e: &Event, cost_usd: f64, strings: &mut Strings) {
        if self.spans == 0 || e.start_unix_nanos < self.start {
            self.start = e.start_unix_nanos;
            self.first_name = e.name.as_str().into();
        }
        self.end = self.end.max(e.end_unix_nanos);
        self.spans += 1;
        if e.parent_span_id.is_none() || e.kind == SpanKind::Run {
            self.root_name = Some(e.name.as_str().into());
            // an unset root says nothing about the outcome: then the spans' merge decides
            if e.status != SpanStatus::Unset {
                self.root_status = Some(e.status);
            }
        }
        if self.project.is_none() {
            self.project = e.project.as_deref().map(|p| strings.intern(p));
        }
        if self.run.is_none() {
            self.run = e.run.as_deref().map(Into::into);
        }
        if let Some(p) = &e.phase
            && !self.phases.iter().any(|x| **x == **p)
        {
            self.phases.push(strings.intern(p));
        }
        self.status = merge_status(self.status, e.status);
        self.cost_usd += cost_usd;
    }

    fn summary(&self, trace_id: TraceKey) -> TraceSummary {
        TraceSummary {
            trace_id: format!("{trace_id:032x}"),
            name: self.root_name.as_deref().unwrap_or(&self.first_name).to_owned(),
            project: self.project.as_deref().map(str::to_owned),
            run: self.run.as_deref().map(str::to_owned),
            start_unix_nanos: self.start,
            end_unix_nanos: self.end,
            spans: u64::from(self.spans),
            status: self.status(),
            phases: self.phases.iter().map(|p| p.to_string()).collect(),
            cost_usd: self.cost_usd,
        }
    }
}

fn merge_status(a: SpanStatus, b: SpanStatus) -> SpanStatus {
    match (a, b) {
        (SpanStatus::Error, _) | (_, SpanStatus::Error) => SpanStatus::Error,
        (SpanStatus::Ok, _) | (_, SpanStatus::Ok) => SpanStatus::Ok,
        _ => SpanStatus::Unset,
    }
}

/// One trace's part in one sealed segment.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PartialTrace {
    trace_id: String,
    start: u64,
    end: u64,
    spans: u32,
    status: SpanStatus,
    /// Absent in summaries written before it existed.
    #[serde(default)]
    root_status: Option<SpanStatus>,
    cost_usd: f64,
    root_name: Option<String>,
    first_name: String,
    project: Option<String>,
    run: Option<String>,
    phases: Vec<String>,
}

impl PartialTrace {
    fn of(key: TraceKey, t: &TraceEntry) -> PartialTrace {
        PartialTrace {
            trace_id: format!("{key:032x}"),
            start: t.start,
            end: t.end,
            spans: t.spans,
            status: t.status,
            root_status: t.root_status,
            cost_usd: t.cost_usd,
            root_name: t.root_name.as_deref().map(str::to_owned),
            first_name: t.first_name.to_string(),
            project: t.project.as_deref().map(str::to_owned),
            run: t.run.as_deref().map(str::to_owned),
            phases: t.phases.iter().map(|p| p.to_string()).collect(),
        }
    }
}

impl TraceEntry {
    /// Adds another part of the same trace (parts merged in segment order).
    fn merge(&mut self, p: &PartialTrace, strings: &mut Strings) {
        if self.spans == 0 || p.start < self.start {
            self.start = p.start;
            self.first_name = p.first_name.as_str().into();
        }
        self.end = self.end.max(p.end);
        self.spans += p.spans;
        if let Some(r) = &p.root_name {
            self.root_name = Some(r.as_str().into());
        }
        if self.project.is_none() {
            self.project = p.project.as_deref().map(|x| strings.intern(x));
        }
        if self.run.is_none() {
            self.run = p.run.as_deref().map(Into::into);
        }
        for ph in &p.phases {
            if !self.phases.iter().any(|x| **x == **ph) {
                self.phases.push(strings.intern(ph));
            }
        }
        self.status = merge_status(self.status, p.status);
        if p.root_status.is_some() {
            self.root_status = p.root_status;
        }
        self.cost_usd += p.cost_usd;
    }
}

/// The `.sum` file of a sealed segment, as written before trace tables: read once to build the
/// segment's trace table, then removed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SegmentSummary {
    version: u32,
    events: u64,
    newest_end: u64,
    /// In trace key order: the order of the runs of the `.idx` file.
    traces: Vec<PartialTrace>,
    costs: Vec<(crate::costs::GroupBy, String, u64, crate::costs::CostRow)>,
}

const SUM_VERSION: u32 = 1;

fn sum_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.sum"))
}

impl SegmentSummary {
    fn read(dir: &Path, segment: u32) -> Option<SegmentSummary> {
        let data = std::fs::read(sum_path(dir, segment)).ok()?;
        serde_json::from_slice::<SegmentSummary>(&data).ok().filter(|s| s.version == SUM_VERSION)
    }
}

/// Interned project and phase names: a few distinct values shared by every trace.
#[derive(Debug, Default)]
struct Strings(std::collections::HashSet<Arc<str>>);

impl Strings {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(v) = self.0.get(s) {
            return v.clone();
        }
        let v: Arc<str> = s.into();
        self.0.insert(v.clone());
        v
    }
}

/// What a segment not sealed yet holds of each trace (kept in memory until it is sealed).
#[derive(Debug, Default, Clone)]
struct Part {
    traces: FastMap<TraceKey, TraceEntry>,
    /// (part start, trace) of every trace of the part: the newest-first listing's order.
    by_start: BTreeSet<(u64, TraceKey)>,
    costs: crate::costs::CostIndex,
    events: u64,
    newest_end: u64,
}

/// A sealed segment: its span index and its trace table.
#[derive(Debug)]
pub(super) struct Sealed {
    pub segment: u32,
    idx: SegmentIndex,
    pub table: TraceTable,
    /// Its cost sums (JSON cells), subtracted when retention removes it.
    costs: Vec<u8>,
}

#[derive(Debug, Default)]
struct Index {
    strings: Strings,
    /// Positions in the segments not sealed yet (the one being written).
    /// Shared so the sealer reads a full segment's positions without copying them under the lock.
    live: HashMap<u32, Arc<FastMap<TraceKey, PosList>>>,
    /// Per unsealed segment: its trace summaries and cost sums, written to its trace table when
    /// it is sealed. Shared with the sealer like the positions.
    live_sums: HashMap<u32, Arc<Part>>,
    /// Sealed segments, oldest first.
    sealed: BTreeMap<u32, Arc<Sealed>>,
    events: u64,
    costs: crate::costs::CostIndex,
    /// Per segment: newest end time of its events (for retention by age).
    segment_newest: HashMap<u32, u64>,
}

/// What the index derives from an event, computed once although the event is counted twice
/// (in the store's sums and in its segment's).
struct Facts {
    key: TraceKey,
    cost_usd: f64,
    contribution: crate::costs::CostRow,
}

impl Facts {
    fn of(e: &Event) -> Facts {
        Facts {
            key: trace_key(&e.trace_id),
            cost_usd: e.number(attr::HELIX_COST_USD).unwrap_or(0.0),
            contribution: crate::costs::contribution(e),
        }
    }
}

impl Index {
    fn add(&mut self, e: &Event, segment: u32, pos: Pos) {
        let facts = Facts::of(e);
        self.costs.add_contribution(e, &facts.contribution);
        self.events += 1;
        let newest = self.segment_newest.entry(segment).or_default();
        *newest = (*newest).max(e.end_unix_nanos);
        // not shared once the sealer has it: the segment being written is never being sealed
        Arc::make_mut(self.live.entry(segment).or_default()).entry(facts.key).or_default().push(pos);
        let part = Arc::make_mut(self.live_sums.entry(segment).or_default());
        let t = part.traces.entry(facts.key).or_default();
        let before = (t.spans > 0).then_some(t.start);
        t.add(e, facts.cost_usd, &mut self.strings);
        if before != Some(t.start) {
            if let Some(b) = before {
                part.by_start.remove(&(b, facts.key));
            }
            part.by_start.insert((t.start, facts.key));
        }
        part.costs.add_contribution(e, &facts.contribution);
        part.events += 1;
        part.newest_end = part.newest_end.max(e.end_unix_nanos);
    }

    /// Adds a sealed segment read from its files.
    fn add_sealed(&mut self, sealed: Sealed) {
        if let Ok(cells) = serde_json::from_slice(&sealed.costs) {
            self.costs.merge(crate::costs::CostIndex::from_cells(cells));
        }
        self.events += sealed.table.events;
        self.segment_newest.insert(sealed.segment, sealed.table.newest_end);
        self.sealed.insert(sealed.segment, Arc::new(sealed));
    }

    /// Replaces a segment's positions and summaries in memory by its written files.
    fn seal(&mut self, sealed: Sealed) {
        self.live.remove(&sealed.segment);
        self.live_sums.remove(&sealed.segment);
        self.sealed.insert(sealed.segment, Arc::new(sealed));
    }

    /// Traces known (each counted once per segment it has spans in).
    fn trace_parts(&self) -> u64 {
        self.sealed.values().map(|s| s.table.len()).sum::<u64>()
            + self.live_sums.values().map(|p| p.traces.len() as u64).sum::<u64>()
    }
}

/// Writes the `.idx` file and the trace table of a full segment.
fn write_sealed(
    dir: &Path,
    segment: u32,
    positions: &FastMap<TraceKey, PosList>,
    part: &Part,
) -> std::io::Result<Sealed> {
    let file = SegmentIndex::write(dir, segment, positions)?;
    let empty = TraceEntry::default();
    let rows: Vec<(TraceKey, u32, u32, &TraceEntry, Vec<u8>)> = SegmentIndex::runs(positions)
        .into_iter()
        .map(|(key, first, count)| {
            let t = part.traces.get(&key).unwrap_or(&empty);
            (key, first, count, t, serde_json::to_vec(&PartialTrace::of(key, t)).unwrap_or_default())
        })
        .collect();
    let parts = rows.iter().map(|(key, first, count, t, json)| PartRow {
        key: *key,
        start: t.start,
        project: t.project.as_deref(),
        first: *first,
        count: *count,
        summary: json,
    });
    let costs = serde_json::to_vec(&part.costs.to_cells()).map_err(std::io::Error::other)?;
    write_table(dir, segment, &parts.collect::<Vec<_>>(), part.events, part.newest_end, costs, file)
}

/// Builds the trace table of a segment sealed before trace tables existed, from its `.sum` file.
fn table_from_summary(dir: &Path, segment: u32, sum: SegmentSummary, idx: File) -> std::io::Result<Sealed> {
    let jsons: Vec<Vec<u8>> = sum.traces.iter().map(|p| serde_json::to_vec(p).unwrap_or_default()).collect();
    let mut first = 0u32;
    let mut parts = Vec::with_capacity(sum.traces.len());
    for (p, json) in sum.traces.iter().zip(&jsons) {
        parts.push(PartRow {
            key: trace_key(&p.trace_id),
            start: p.start,
            project: p.project.as_deref(),
            first,
            count: p.spans,
            summary: json,
        });
        first = first.saturating_add(p.spans);
    }
    let costs = serde_json::to_vec(&sum.costs).map_err(std::io::Error::other)?;
    let sealed = write_table(dir, segment, &parts, sum.events, sum.newest_end, costs, idx)?;
    let _ = std::fs::remove_file(sum_path(dir, segment));
    Ok(sealed)
}

/// Writes a segment's trace table (recording the segment file's size) next to its `.idx` file.
fn write_table(
    dir: &Path,
    segment: u32,
    parts: &[PartRow<'_>],
    events: u64,
    newest_end: u64,
    costs: Vec<u8>,
    idx: File,
) -> std::io::Result<Sealed> {
    let log_bytes = std::fs::metadata(segment_path(dir, segment))?.len();
    let table = TraceTable::write(dir, segment, parts, events, newest_end, &costs, log_bytes)?;
    Ok(Sealed { segment, idx: SegmentIndex { file: idx }, table, costs })
}

/// The `.idx` file of a sealed segment: every span position of the segment grouped by trace.
///
/// Layout: `HXIDX002 | n_positions: u64 | (offset: u64, len: u32, span: u64, parent: u64,
/// start: u64, end: u64) * n | crc32: u32`, all little endian; a trace's positions are one run,
/// in offset order. It is derived data: a missing or
/// damaged file is rebuilt from its segment at open.
#[derive(Debug)]
struct SegmentIndex {
    file: File,
}

const IDX_MAGIC: &[u8; 8] = b"HXIDX002";
const IDX_HEADER: u64 = 16;
const IDX_ENTRY: u64 = 44;

fn index_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.idx"))
}

impl SegmentIndex {
    /// Writes the `.idx` file of `segment` atomically (temp file, fsync, rename).
    fn write(dir: &Path, segment: u32, positions: &FastMap<TraceKey, PosList>) -> std::io::Result<File> {
        let mut keys: Vec<&TraceKey> = positions.keys().collect();
        keys.sort_unstable();
        let total: usize = positions.values().map(PosList::len).sum();
        let mut buf = Vec::with_capacity(IDX_HEADER as usize + total * IDX_ENTRY as usize + 4);
        buf.extend_from_slice(IDX_MAGIC);
        buf.extend_from_slice(&(total as u64).to_le_bytes());
        for key in keys {
            let mut ps = positions[key].as_slice().to_vec();
            ps.sort_unstable_by_key(|p| p.offset);
            for p in ps {
                buf.extend_from_slice(&p.offset.to_le_bytes());
                buf.extend_from_slice(&p.len.to_le_bytes());
                for v in [p.span, p.parent, p.start, p.end] {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        buf.extend_from_slice(&crc32fast::hash(&buf).to_le_bytes());
        let path = index_path(dir, segment);
        let tmp = path.with_extension("idx.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        File::open(&path)
    }

    /// The runs of the file [`SegmentIndex::write`] writes for `positions`: traces in key order.
    fn runs(positions: &FastMap<TraceKey, PosList>) -> Vec<(TraceKey, u32, u32)> {
        let mut keys: Vec<(&TraceKey, usize)> = positions.iter().map(|(k, v)| (k, v.len())).collect();
        keys.sort_unstable();
        let mut at = 0u32;
        keys.into_iter()
            .map(|(k, n)| {
                let count = u32::try_from(n).unwrap_or(u32::MAX);
                let run = (*k, at, count);
                at = at.saturating_add(count);
                run
            })
            .collect()
    }

    /// Opens an existing `.idx` file when it is intact and covers exactly `expected` positions.
    fn open(dir: &Path, segment: u32, expected: u64) -> Option<File> {
        let path = index_path(dir, segment);
        let data = std::fs::read(&path).ok()?;
        let n = u64::from_le_bytes(data.get(8..16)?.try_into().ok()?);
        let body = data.len().checked_sub(4)?;
        let ok = data.get(..8)? == IDX_MAGIC
            && n == expected
            && body as u64 == IDX_HEADER + n * IDX_ENTRY
            && crc32fast::hash(&data[..body]).to_le_bytes() == data[body..];
        if ok { File::open(&path).ok() } else { None }
    }

    /// The positions of one run.
    fn read(&self, first: u32, count: u32) -> std::io::Result<Vec<Pos>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; count as usize * IDX_ENTRY as usize];
        self.file.read_exact_at(&mut buf, IDX_HEADER + u64::from(first) * IDX_ENTRY)?;
        let u64_at = |c: &[u8], at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&c[at..at + 8]);
            u64::from_le_bytes(b)
        };
        Ok(buf
            .chunks_exact(IDX_ENTRY as usize)
            .map(|c| Pos {
                offset: u64_at(c, 0),
                len: u32::from_le_bytes([c[8], c[9], c[10], c[11]]),
                span: u64_at(c, 12),
                parent: u64_at(c, 20),
                start: u64_at(c, 28),
                end: u64_at(c, 36),
            })
            .collect())
    }
}

struct Batch {
    bytes: Vec<u8>,
    /// (relative offset, length, event) of each record in `bytes`.
    records: Vec<(u64, u32, Event)>,
    ack: std::sync::mpsc::Sender<Done>,
}

/// The writer's answer to one batch. It hands the batch's buffers back so that the appending
/// thread frees them: memory freed on the writer thread but allocated by another goes back to
/// that thread's malloc arena under its lock, and the two threads then contend on every batch
/// (measured: a fifth of the ingest bench's time went to that lock).
struct Done {
    result: Result<(), String>,
    _buffers: (Vec<u8>, Vec<(u64, u32, Event)>),
}

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

/// Replays one segment into `index`, recovering it: damaged records are skipped and
/// quarantined, a trailing part without a valid record is cut. Returns what recovery found.
fn replay(
    path: &Path,
    segment: u32,
    index: &mut Index,
    quarantine: &helix_wal::Quarantine,
    observe_from: (u32, u64),
    observe: &mut dyn FnMut(&Event),
) -> std::io::Result<helix_wal::Recovered> {
    let data = std::fs::read(path)?;
    helix_wal::recover_file(path, &data, MAX_RECORD, quarantine, &mut |offset, len, json| {
        let Ok(event) = serde_json::from_slice::<Event>(json) else { return false };
        index.add(&event, segment, Pos::of(&event, offset, u32::try_from(len).unwrap_or(u32::MAX)));
        if (segment, offset) >= observe_from {
            observe(&event);
        }
        true
    })
}

/// Whether every frame of a segment verifies and there are `events` of them.
fn intact(path: &Path, events: u64) -> std::io::Result<bool> {
    let data = std::fs::read(path)?;
    let mut n = 0u64;
    for item in helix_wal::Scanner::new(&data, MAX_RECORD) {
        match item {
            helix_wal::Item::Record { .. } => n += 1,
            _ => return Ok(false),
        }
    }
    Ok(n == events)
}

/// Every intact event of a segment with its position, read only (damage is skipped; recovery
/// at open is what reports it).
fn scan(path: &Path, each: &mut dyn FnMut(u64, u32, Event)) -> std::io::Result<()> {
    let data = std::fs::read(path)?;
    for item in helix_wal::Scanner::new(&data, MAX_RECORD) {
        if let helix_wal::Item::Record { offset, len, payload } = item
            && let Ok(event) = serde_json::from_slice::<Event>(payload)
        {
            each(offset as u64, u32::try_from(len).unwrap_or(u32::MAX), event);
        }
    }
    Ok(())
}

/// Rewrites a segment of the format before [`helix_wal`] (`len | crc | json` records) in the
/// current one, so that an upgrade keeps the data; its derived files are rebuilt afterwards.
fn migrate_legacy_segment(dir: &Path, segment: u32) -> std::io::Result<bool> {
    let path = segment_path(dir, segment);
    let data = std::fs::read(&path)?;
    if data.is_empty() || data.starts_with(&helix_wal::MAGIC) {
        return Ok(false);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let crc = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
        let end = at + 8 + len as usize;
        if len > MAX_RECORD || end > data.len() || crc32fast::hash(&data[at + 8..end]) != crc {
            break;
        }
        helix_wal::encode(&data[at + 8..end], &mut out);
        at = end;
    }
    if at == 0 {
        // not the old format either: leave it to recovery, which quarantines what it cannot read
        return Ok(false);
    }
    let tmp = path.with_extension("log.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    for derived in [index_path(dir, segment), sum_path(dir, segment)] {
        let _ = std::fs::remove_file(derived);
    }
    tracing::info!(segment = %path.display(), "rewrote an event log segment of the previous format");
    Ok(true)
}

fn pack_end(segment: u32, offset: u64) -> u64 {
    (u64::from(segment) << 40) | (offset & ((1 << 40) - 1))
}

/// A trace with at least this many spans in more than one segment is read by two threads.
const PARALLEL_READ_SPANS: usize = 2_000;

/// Records closer than this are read with one read call (reading the gap is cheaper than a call).
const COALESCE_GAP: u64 = 64 * 1024;

/// Reads the JSON of the records at `positions` (sorted by offset) of one segment, coalescing
/// nearby ones into one read.
fn read_records(
    file: &File,
    segment: u32,
    positions: &[Pos],
    quarantine: &helix_wal::Quarantine,
    out: &mut Vec<super::SpanRecord>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut i = 0;
    while i < positions.len() {
        let from = positions[i].offset;
        let mut j = i + 1;
        let mut to = from + u64::from(positions[i].len);
        while j < positions.len() && positions[j].offset <= to + COALESCE_GAP {
            to = to.max(positions[j].offset + u64::from(positions[j].len));
            j += 1;
        }
        let mut buf = vec![0; usize::try_from(to - from).unwrap_or(0)];
        file.read_exact_at(&mut buf, from)?;
        let buf = bytes::Bytes::from(buf);
        for p in &positions[i..j] {
            let at = usize::try_from(p.offset - from).unwrap_or(0);
            let end = (at + p.len as usize).min(buf.len());
            // the checksum is verified on every read: damage is reported, never served
            if helix_wal::verify(&buf[at..end]).is_some() {
                out.push(super::SpanRecord {
                    span_id: p.span,
                    parent_span_id: (p.parent != 0).then_some(p.parent),
                    start_unix_nanos: p.start,
                    end_unix_nanos: p.end,
                    json: buf.slice(at + helix_wal::HEADER..end),
                });
            } else {
                tracing::error!(
                    segment,
                    offset = p.offset,
                    "a stored event failed its checksum; left out of the answer"
                );
                if let Err(e) = quarantine.keep(&segment_name(segment), p.offset, &buf[at..end]) {
                    tracing::error!(error = %e, "cannot quarantine a damaged event");
                }
            }
        }
        i = j;
    }
    Ok(())
}

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

    /// Traces newest first: the by-start rows of every part, merged lazily (a sealed segment is
    /// only read once the page could still take one of its traces); each trace is listed at the
    /// row of its earliest part, with its summary merged over all its parts.
    fn list(
        &self,
        filter: &TraceFilter,
        after: Option<(u64, TraceKey)>,
        limit: usize,
    ) -> std::io::Result<Vec<TraceSummary>> {
        let (sealed, live) = self.snapshot();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let tag = filter.project.as_deref().map(|p| super::table::project_tag(Some(p)));
        let upper = after.unwrap_or((u64::MAX, TraceKey::MAX));
        let mut lives: Vec<(&Part, std::iter::Peekable<_>)> = live
            .iter()
            .map(|(_, p)| {
                let rows = p.by_start.range(..upper).rev().copied();
                (&**p, rows.peekable())
            })
            .collect();
        let mut pending: Vec<Arc<Sealed>> = sealed.iter().filter(|s| s.table.len() > 0).cloned().collect();
        pending.sort_unstable_by_key(|s| s.table.max_start);
        let mut cursors: Vec<StartCursor> = Vec::new();
        let mut done: hashbrown::HashSet<TraceKey> = hashbrown::HashSet::new();
        loop {
            // the newest row among the sources opened so far
            let mut best: Option<Best> = None;
            for (i, (_, rows)) in lives.iter_mut().enumerate() {
                if let Some(&r) = rows.peek()
                    && best.is_none_or(|(b, _, _)| r > b)
                {
                    best = Some((r, Some(i), None));
                }
            }
            for (i, c) in cursors.iter_mut().enumerate() {
                if let Some(r) = c.peek()?
                    && best.is_none_or(|(b, _, _)| (r.start, r.key) > b)
                {
                    best = Some(((r.start, r.key), None, Some(i)));
                }
            }
            // a segment not opened yet may hold something as new: open it first
            if let Some(next) = pending.last()
                && best.is_none_or(|((start, _), _, _)| next.table.max_start >= start)
            {
                let next = pending.pop().expect("a pending segment");
                cursors.push(StartCursor::new(next, after)?);
                continue;
            }
            let Some(((start, key), live_i, cursor_i)) = best else { break };
            let mismatch = match (live_i, cursor_i) {
                (Some(i), _) => {
                    let (part, rows) = &mut lives[i];
                    rows.next();
                    tag.is_some()
                        && part
                            .traces
                            .get(&key)
                            .and_then(|t| t.project.as_deref())
                            .is_some_and(|p| Some(p) != filter.project.as_deref())
                }
                (None, Some(i)) => {
                    let row = cursors[i].peek()?.expect("the row just seen");
                    cursors[i].pop();
                    tag.is_some_and(|t| row.project != 0 && row.project != t)
                }
                (None, None) => unreachable!("a best row has a source"),
            };
            if mismatch || done.contains(&key) {
                continue;
            }
            let Some(t) = merged(key, &sealed, &live)? else { continue };
            if t.start != start {
                // listed at its earliest part's row
                continue;
            }
            done.insert(key);
            let text = [t.root_name.as_deref().unwrap_or(&t.first_name)]
                .into_iter()
                .chain(t.project.as_deref())
                .chain(t.run.as_deref())
                .chain(t.phases.iter().map(|p| &**p));
            let keep = filter.project.as_ref().is_none_or(|p| t.project.as_deref() == Some(p.as_str()))
                && filter.phase.as_ref().is_none_or(|p| t.phases.iter().any(|x| **x == **p))
                && filter.status.is_none_or(|s| t.status() == s)
                && filter.since_unix_nanos.is_none_or(|s| t.end >= s)
                && filter.until_unix_nanos.is_none_or(|u| t.start < u)
                && (filter.text.is_none() || filter.text_matches(&format!("{key:032x}"), text));
            if keep {
                out.push(t.summary(key));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The unsealed segments' parts, in segment order.
type LiveParts = Vec<(u32, Arc<Part>)>;

/// The newest row seen in a listing step: (start, trace), and which live part or sealed cursor
/// it came from.
type Best = ((u64, TraceKey), Option<usize>, Option<usize>);

/// A trace's summary merged over all its parts (sealed ones oldest first, then the unsealed);
/// `None` when no part is left.
fn merged(
    key: TraceKey,
    sealed: &[Arc<Sealed>],
    live: &[(u32, Arc<Part>)],
) -> std::io::Result<Option<TraceEntry>> {
    let mut strings = Strings::default();
    let mut t = TraceEntry::default();
    for (row, s) in find_parts(sealed, key)? {
        let json = s.table.summary(&row)?;
        let p: PartialTrace = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
        t.merge(&p, &mut strings);
    }
    for (_, part) in live {
        if let Some(e) = part.traces.get(&key) {
            t.merge(&PartialTrace::of(key, e), &mut strings);
        }
    }
    Ok((t.spans > 0).then_some(t))
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
    segment_traces: usize,
    /// The segment holds `segment_traces` traces: the next commit starts a new one.
    full: bool,
    commit_delay: std::time::Duration,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    end: Arc<std::sync::atomic::AtomicU64>,
    current: Arc<std::sync::atomic::AtomicU32>,
    file: File,
    size: u64,
    index: Arc<RwLock<Index>>,
    sealer: std::sync::mpsc::Sender<u32>,
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
            if !self.commit_delay.is_zero() {
                std::thread::sleep(self.commit_delay);
            }
            let result = self.commit(&batches);
            let done: usize = batches.iter().map(|b| b.bytes.len()).sum();
            self.queued.fetch_sub(done, std::sync::atomic::Ordering::AcqRel);
            for Batch { bytes, records, ack } in batches {
                let _ = ack.send(Done { result: result.clone(), _buffers: (bytes, records) });
            }
        }
        let _ = self.file.sync_data();
        // a clean shutdown seals the segment being written, so the next start replays nothing
        if self.size > 0 {
            let _ = self.sealer.send(self.segment);
        }
        // the sealer's channel closes with `self`: it finishes what it was given, then stops
    }

    fn commit(&mut self, batches: &[Batch]) -> Result<(), String> {
        if self.size >= self.segment_bytes || self.full {
            self.full = false;
            // a sealer gone (it cannot panic short of a bug) leaves the positions in memory
            let _ = self.sealer.send(self.segment);
            self.segment += 1;
            self.current.store(self.segment, std::sync::atomic::Ordering::Release);
            let path = segment_path(&self.dir, self.segment);
            self.file =
                OpenOptions::new().create(true).append(true).open(&path).map_err(|e| e.to_string())?;
            self.size = 0;
        }
        let start = self.size;
        // one write call; a lone batch (the common case under light load) is written as it is
        let joined;
        let buf: &[u8] = match batches {
            [one] => &one.bytes,
            _ => {
                joined = batches.iter().map(|b| b.bytes.as_slice()).collect::<Vec<&[u8]>>().concat();
                &joined
            }
        };
        if let Err(e) = self.file.write_all(buf).and_then(|()| self.file.sync_data()) {
            // what was partly written is cut at the next open; nothing was acknowledged
            tracing::error!(error = %e, "event log write failed");
            return Err(e.to_string());
        }
        self.size += buf.len() as u64;
        self.end.store(pack_end(self.segment, self.size), std::sync::atomic::Ordering::Release);
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut base = start;
        for b in batches {
            for (rel, len, e) in &b.records {
                index.add(e, self.segment, Pos::of(e, base + rel, *len));
            }
            base += b.bytes.len() as u64;
        }
        self.full = index.live_sums.get(&self.segment).is_some_and(|p| p.traces.len() >= self.segment_traces);
        Ok(())
    }
}

/// Seals full segments on its own thread, so that writing a segment's `.idx` and `.sum` files
/// (tens of milliseconds with their fsyncs) never stalls the commits of the next segment. Until
/// a segment is sealed its positions stay in memory and reads use them.
struct Sealer {
    dir: PathBuf,
    index: Arc<RwLock<Index>>,
}

impl Sealer {
    fn run(self, rx: Receiver<u32>) {
        while let Ok(segment) = rx.recv() {
            self.seal(segment);
        }
    }

    /// Writes the `.idx` file of a full segment and drops its positions from memory. On failure
    /// the positions stay in memory (reads keep working) and the file is rebuilt at next open.
    fn seal(&self, segment: u32) {
        // the lock only long enough to share the positions and take the sums: the writer is
        // already appending to the next segment and must not wait for this
        let (positions, part) = {
            let index = self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            (
                index.live.get(&segment).cloned().unwrap_or_default(),
                index.live_sums.get(&segment).cloned().unwrap_or_default(),
            )
        };
        match write_sealed(&self.dir, segment, &positions, &part) {
            Ok(sealed) => {
                let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                if index.live.contains_key(&segment) {
                    index.seal(sealed);
                } else {
                    // retention removed the segment meanwhile: its derived files go too
                    drop(index);
                    let _ = std::fs::remove_file(index_path(&self.dir, segment));
                    let _ = std::fs::remove_file(super::table::table_path(&self.dir, segment));
                }
            }
            Err(e) => {
                tracing::error!(segment, error = %e, "cannot write a segment index; keeping it in memory")
            }
        }
    }
}

/// Seals a segment replayed at open: writes its `.idx` file and trace table again.
fn seal_at_open(dir: &Path, segment: u32, index: &mut Index) -> std::io::Result<()> {
    let positions = index.live.get(&segment).cloned().unwrap_or_default();
    let part = index.live_sums.get(&segment).cloned().unwrap_or_default();
    let sealed = write_sealed(dir, segment, &positions, &part)?;
    let _ = std::fs::remove_file(sum_path(dir, segment));
    index.seal(sealed);
    Ok(())
}

/// The parts of trace `key` in sealed segments, oldest segment first.
fn find_parts(
    sealed: &[Arc<Sealed>],
    key: TraceKey,
) -> std::io::Result<Vec<(super::table::TraceRow, Arc<Sealed>)>> {
    let mut parts = Vec::new();
    for s in sealed {
        if let Some(row) = s.table.find(key)? {
            parts.push((row, s.clone()));
        }
    }
    Ok(parts)
}

/// The sealed parts of many traces at once, for the duplicate check: each key comes with the
/// latest start and the earliest end of the spans looked for, and only segments whose span
/// times cover one of them are probed (a span is stored in a segment whose earliest start is
/// at or before its start and whose latest end is at or after its end). New spans, later than
/// everything sealed, so probe no sealed segment at all, and ingest does not slow down with the
/// number of segments. Segment by segment, so each Bloom filter is probed while it is in the
/// cache. Parts per key in segment order.
#[allow(clippy::type_complexity)]
fn find_parts_many(
    sealed: &[Arc<Sealed>],
    keys: &[(TraceKey, (u64, u64))],
) -> std::io::Result<Vec<Vec<(super::table::TraceRow, Arc<Sealed>)>>> {
    let mut parts: Vec<Vec<(super::table::TraceRow, Arc<Sealed>)>> = vec![Vec::new(); keys.len()];
    let mut maybe = Vec::with_capacity(keys.len());
    for s in sealed {
        let t = &s.table;
        maybe.clear();
        maybe.extend(
            keys.iter()
                .enumerate()
                .filter(|(_, (k, (latest_start, earliest_end)))| {
                    *latest_start >= t.min_start && *earliest_end <= t.newest_end && t.may_hold(*k)
                })
                .map(|(i, _)| i),
        );
        for &i in &maybe {
            if let Some(row) = t.find(keys[i].0)? {
                parts[i].push((row, s.clone()));
            }
        }
    }
    Ok(parts)
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
    fn a_trace_has_its_root_spans_status_once_the_root_arrived_across_sealed_segments() {
        let dir = tempfile::tempdir().expect("tmp");
        let small = LogOptions { segment_bytes: 2048, ..LogOptions::default() };
        let with = |mut e: Event, status: SpanStatus| {
            e.status = status;
            e
        };
        let status = |s: &LogStore, filter: &TraceFilter| -> Vec<SpanStatus> {
            s.traces(filter, None, 10).into_iter().map(|t| t.status).collect()
        };
        {
            let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
            // a failed attempt, then many ok spans (sealing segments), no root yet: error
            s.append(vec![with(event(1, 2, Some(1), 100), SpanStatus::Error)]).expect("append");
            for i in 0..30u32 {
                s.append(vec![with(event(1, i + 3, Some(1), 200), SpanStatus::Ok)]).expect("append");
            }
            assert_eq!(status(&s, &TraceFilter::default()), [SpanStatus::Error]);
            // the run healed it: its root ends ok
            s.append(vec![with(event(1, 1, None, 50), SpanStatus::Ok)]).expect("root");
            assert_eq!(status(&s, &TraceFilter::default()), [SpanStatus::Ok]);
        }
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("reopen");
        assert_eq!(status(&s, &TraceFilter::default()), [SpanStatus::Ok]);
        let errors = TraceFilter { status: Some(SpanStatus::Error), ..TraceFilter::default() };
        assert!(status(&s, &errors).is_empty(), "a healed run is not listed as failed");
    }

    #[test]
    fn a_segment_ends_at_its_trace_bound_and_a_clean_close_seals_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let few = LogOptions { segment_traces: 10, ..LogOptions::default() };
        {
            let s = LogStore::open_with(dir.path(), few, &mut |_| {}).expect("open");
            for t in 0..35u32 {
                s.append(vec![event(t + 1, 1, None, u64::from(t))]).expect("append");
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while s.read_index().sealed.len() < 3 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let index = s.read_index();
            assert_eq!(index.sealed.len(), 3, "a new segment every 10 traces");
            assert!(index.live_sums.values().all(|p| p.traces.len() <= 10));
        }
        let mut observed = 0;
        let s = LogStore::open_observed_from(dir.path(), few, Some((u32::MAX, 0)), &mut |_| observed += 1)
            .expect("reopen");
        assert_eq!(s.read_index().sealed.len(), 4, "the last one was sealed at close");
        assert!(s.read_index().live.is_empty(), "nothing replayed");
        assert_eq!(s.len(), 35);
        assert_eq!(s.traces(&TraceFilter::default(), None, 100).len(), 35);
        s.append(vec![event(99, 1, None, 99)]).expect("writing goes on in a new segment");
        assert_eq!(s.summary(&format!("{:032x}", 99)).expect("summary").spans, 1);
        assert_eq!(
            s.append(vec![event(3, 1, None, 2)]).expect("again").duplicates,
            1,
            "sealed spans still count"
        );
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
        let s = LogStore::open_with(
            dir.path(),
            LogOptions { segment_bytes: 2048, ..LogOptions::default() },
            &mut |_| {},
        )
        .expect("open");
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
    fn sealed_segments_keep_positions_on_disk_and_a_damaged_index_is_rebuilt() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = |t: u32| format!("{t:032x}");
        let spans_of = |s: &LogStore, t: u32| {
            s.trace(&id(t)).expect("trace").iter().map(|e| e.span_id.clone()).collect::<Vec<_>>()
        };
        let expected: Vec<Vec<String>>;
        {
            let s = LogStore::open_with(
                dir.path(),
                LogOptions { segment_bytes: 4096, ..LogOptions::default() },
                &mut |_| {},
            )
            .expect("open");
            // three long traces interleaved over many segments
            for i in 0..60u32 {
                let batch = (1..=3).map(|t| event(t, i + 2, Some(1), u64::from(1000 + i))).collect();
                s.append(batch).expect("append");
            }
            s.append(vec![event(1, 1, None, 1), event(2, 1, None, 1), event(3, 1, None, 1)]).expect("root");
            // full segments are sealed in the background, and reads work before and after
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while s.read_index().live.len() > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let index = s.read_index();
            assert!(index.sealed.len() >= 3, "{} sealed segments", index.sealed.len());
            assert_eq!(index.live.len(), 1, "only the segment being written keeps positions in memory");
            drop(index);
            expected = (1..=3).map(|t| spans_of(&s, t)).collect();
            assert_eq!(expected[0].len(), 61);
            assert_eq!(s.summary(&id(2)).expect("summary").spans, 61);
        }
        let idx = index_path(dir.path(), 1);
        assert!(idx.exists());
        // damage one index: it is rebuilt from its segment at open, reads stay the same
        let mut bytes = std::fs::read(&idx).expect("read idx");
        bytes[20] ^= 0xff;
        std::fs::write(&idx, &bytes).expect("damage idx");
        let s = LogStore::open_with(
            dir.path(),
            LogOptions { segment_bytes: 4096, ..LogOptions::default() },
            &mut |_| {},
        )
        .expect("reopen");
        for t in 1..=3 {
            assert_eq!(spans_of(&s, t), expected[t as usize - 1]);
        }
        assert_ne!(std::fs::read(&idx).expect("read idx"), bytes, "the damaged index was rewritten");
        assert_eq!(s.read_index().live.len(), 0, "the last segment was sealed at close: nothing replayed");
    }

    #[test]
    fn a_slow_disk_refuses_appends_beyond_the_queue_bound_and_keeps_what_it_acknowledged() {
        let dir = tempfile::tempdir().expect("tmp");
        let options = LogOptions {
            queue_bytes: 8 * 1024,
            commit_delay: std::time::Duration::from_millis(150),
            ..LogOptions::default()
        };
        let s = Arc::new(LogStore::open_with(dir.path(), options, &mut |_| {}).expect("open"));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..16u32)
            .map(|t| {
                let (s, peak) = (s.clone(), peak.clone());
                std::thread::spawn(move || {
                    let batch: Vec<Event> =
                        (0..10).map(|i| event(t + 1, i + 1, None, u64::from(i))).collect();
                    let r = s.append(batch);
                    peak.fetch_max(
                        s.queued.load(std::sync::atomic::Ordering::Acquire),
                        std::sync::atomic::Ordering::AcqRel,
                    );
                    r
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().expect("join")).collect();
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        let busy = results.iter().filter(|r| matches!(r, Err(StoreError::Busy))).count();
        assert_eq!(accepted + busy, 16, "{results:?}");
        assert!(busy > 0, "a slow disk must push back");
        assert!(accepted > 0);
        // one batch is ~3.5 KiB: the queue never held much more than its bound
        assert!(peak.load(std::sync::atomic::Ordering::Acquire) <= 8 * 1024 + 4096);
        assert_eq!(s.len(), accepted as u64 * 10);
        drop(s);
        assert_eq!(
            LogStore::open(dir.path()).expect("reopen").len(),
            accepted as u64 * 10,
            "acknowledged = durable"
        );
    }

    /// The listing over trace tables against a reference computed from every event: traces
    /// spread over many segments, spans arriving out of order (a later batch with an earlier
    /// start), three projects; every page of a cursor walk, with and without filters, before and
    /// after a reopen and after retention.
    #[test]
    fn the_listing_over_sealed_tables_agrees_with_a_reference_across_pages_filters_and_reopens() {
        let dir = tempfile::tempdir().expect("tmp");
        let small = LogOptions { segment_bytes: 8192, ..LogOptions::default() };
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let projects = ["alpha", "beta", "gamma"];
        let mut all: Vec<Event> = Vec::new();
        let mut span_no: HashMap<u32, u32> = HashMap::new();
        for _ in 0..120 {
            let batch: Vec<Event> = (0..6)
                .map(|_| {
                    let t = next(60) as u32 + 1;
                    let n = span_no.entry(t).or_insert(0);
                    *n += 1;
                    let mut e = event(t, *n, (*n > 1).then_some(1), 10_000 + next(5_000));
                    e.project = Some(projects[(t % 3) as usize].to_owned());
                    e
                })
                .collect();
            all.extend(batch.iter().cloned());
            let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
            s.append(batch).expect("append");
        }
        // reference: per trace its earliest start, span count and project
        let mut reference: HashMap<String, (u64, u64, String)> = HashMap::new();
        for e in &all {
            let r = reference.entry(e.trace_id.clone()).or_insert((
                u64::MAX,
                0,
                e.project.clone().unwrap_or_default(),
            ));
            r.0 = r.0.min(e.start_unix_nanos);
            r.1 += 1;
        }
        let expected = |project: Option<&str>| {
            let mut v: Vec<(u64, String, u64)> = reference
                .iter()
                .filter(|(_, r)| project.is_none_or(|p| r.2 == p))
                .map(|(id, r)| (r.0, id.clone(), r.1))
                .collect();
            v.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
            v
        };
        let walk = |s: &LogStore, project: Option<&str>| {
            let filter = TraceFilter { project: project.map(str::to_owned), ..TraceFilter::default() };
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let page = s.traces(&filter, after.clone(), 7);
                if page.is_empty() {
                    break;
                }
                after = page.last().map(|t| (t.start_unix_nanos, t.trace_id.clone()));
                out.extend(page.into_iter().map(|t| (t.start_unix_nanos, t.trace_id, t.spans)));
            }
            out
        };
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
        assert!(
            s.read_index().sealed.len() >= 5,
            "spread over sealed segments: {}",
            s.read_index().sealed.len()
        );
        for project in [None, Some("beta")] {
            assert_eq!(walk(&s, project), expected(project), "project {project:?}");
        }
        for (id, r) in &reference {
            let sum = s.summary(id).expect("summary");
            assert_eq!(
                (sum.start_unix_nanos, sum.spans, sum.project.as_deref()),
                (r.0, r.1, Some(r.2.as_str()))
            );
        }
        drop(s);
        let s = LogStore::open_observed_from(dir.path(), small, Some((u32::MAX, 0)), &mut |_| {})
            .expect("reopen");
        assert_eq!(walk(&s, None), expected(None), "after a reopen from the tables");
        // retention of the oldest segments: the listing shrinks to what is left, nothing breaks
        let before = s.len();
        assert!(s.retention(None, Some(20_000)).expect("retention") > 0);
        assert!(s.len() < before);
        let left = walk(&s, None);
        assert!(!left.is_empty() && left.windows(2).all(|w| (w[0].0, &w[0].1) > (w[1].0, &w[1].1)));
        assert_eq!(left.iter().map(|t| t.2).sum::<u64>(), s.len(), "every event left is in one listed trace");
    }

    /// A store sealed before trace tables (a `.sum` JSON file per segment) opens without a
    /// replay: each summary file becomes a trace table and is removed.
    #[test]
    fn summary_files_of_the_previous_version_become_trace_tables() {
        let dir = tempfile::tempdir().expect("tmp");
        let small = LogOptions { segment_bytes: 4096, ..LogOptions::default() };
        let view = |s: &LogStore| {
            let list = s.traces(&TraceFilter::default(), None, 100);
            let spans: Vec<usize> =
                (1..=3).map(|t| s.trace(&format!("{t:032x}")).expect("trace").len()).collect();
            (list, s.costs(crate::costs::GroupBy::Project, None, None, None), spans, s.len())
        };
        let before = {
            let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
            for i in 0..30u32 {
                s.append(
                    (1..=3).map(|t| event(t, i + 1, (i > 0).then_some(1), u64::from(100 + i))).collect(),
                )
                .expect("append");
            }
            s.close();
            view(&s)
        };
        // what the previous version wrote for segment 1: its summary, no trace table
        let mut index = Index::default();
        let q = helix_wal::Quarantine::open(&dir.path().join("quarantine"));
        replay(&segment_path(dir.path(), 1), 1, &mut index, &q, (u32::MAX, 0), &mut |_| {}).expect("replay");
        let part = index.live_sums[&1].clone();
        let mut traces: Vec<PartialTrace> =
            part.traces.iter().map(|(k, t)| PartialTrace::of(*k, t)).collect();
        traces.sort_by_key(|p| trace_key(&p.trace_id));
        let sum = SegmentSummary {
            version: SUM_VERSION,
            events: part.events,
            newest_end: part.newest_end,
            traces,
            costs: part.costs.to_cells(),
        };
        std::fs::write(sum_path(dir.path(), 1), serde_json::to_vec(&sum).expect("json")).expect("write");
        std::fs::remove_file(super::super::table::table_path(dir.path(), 1)).expect("remove the table");
        let mut observed = 0;
        let s = LogStore::open_observed_from(dir.path(), small, Some((u32::MAX, 0)), &mut |_| observed += 1)
            .expect("open");
        assert_eq!(observed, 0, "nothing replayed");
        assert_eq!(view(&s), before);
        assert!(TraceTable::open(dir.path(), 1).is_some() && !sum_path(dir.path(), 1).exists());
    }

    #[test]
    fn reopening_reads_sealed_summaries_instead_of_replaying_and_agrees_with_a_full_replay() {
        let dir = tempfile::tempdir().expect("tmp");
        let small = LogOptions { segment_bytes: 4096, ..LogOptions::default() };
        let end;
        {
            let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
            for i in 0..40u32 {
                let batch = (1..=4).map(|t| event(t, i + 2, Some(1), u64::from(1000 + i))).collect();
                s.append(batch).expect("append");
            }
            s.append((1..=4).map(|t| event(t, 1, None, 5)).collect()).expect("roots");
            end = s.end();
        }
        let view = |s: &LogStore| {
            let list = s.traces(&TraceFilter::default(), None, 100);
            let costs = s.costs(crate::costs::GroupBy::Project, None, None, None);
            let spans: Vec<usize> =
                (1..=4).map(|t| s.trace(&format!("{t:032x}")).expect("trace").len()).collect();
            (list, costs, spans, s.len())
        };
        // a full replay (no summaries) is the reference
        let mut observed = 0;
        let full = {
            let s = LogStore::open_with(dir.path(), small, &mut |_| observed += 1).expect("replay");
            view(&s)
        };
        assert_eq!(observed, 164);
        assert_eq!(full.2, [41, 41, 41, 41]);
        // from the saved end: sealed segments come from their summaries, nothing is observed
        let mut observed = 0;
        let fast =
            LogStore::open_observed_from(dir.path(), small, Some(end), &mut |_| observed += 1).expect("open");
        assert_eq!(observed, 0, "nothing stored after the saved position");
        assert_eq!(view(&fast), full);
        drop(fast);
        // a damaged trace table is ignored and rebuilt
        let table = super::super::table::table_path(dir.path(), 2);
        let mut data = std::fs::read(&table).expect("read");
        data[12] ^= 0x10;
        std::fs::write(&table, &data).expect("damage");
        assert!(TraceTable::open(dir.path(), 2).is_none(), "the damage is seen");
        let again = LogStore::open_observed_from(dir.path(), small, Some(end), &mut |_| {}).expect("open");
        assert_eq!(view(&again), full);
        assert!(TraceTable::open(dir.path(), 2).is_some(), "rewritten");
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

    fn stored_spans(s: &LogStore, traces: u32) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for t in 1..=traces {
            for e in s.trace(&format!("{t:032x}")).expect("trace") {
                out.push((t, e.span_id));
            }
        }
        out
    }

    #[test]
    fn every_flipped_byte_of_the_newest_segment_costs_exactly_the_record_it_hit() {
        let dir = tempfile::tempdir().expect("tmp");
        let events: Vec<Event> = (1..=5u32).map(|t| event(t, 1, None, u64::from(t) * 100)).collect();
        {
            let s = LogStore::open(dir.path()).expect("open");
            for e in &events {
                s.append(vec![e.clone()]).expect("append");
            }
        }
        let seg = segment_path(dir.path(), 1);
        let good = std::fs::read(&seg).expect("read");
        let starts: Vec<usize> = helix_wal::Scanner::new(&good, MAX_RECORD)
            .filter_map(|i| match i {
                helix_wal::Item::Record { offset, .. } => Some(offset),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 5);
        for pos in 0..good.len() {
            let hit = starts.iter().rposition(|s| *s <= pos).expect("owner") as u32 + 1;
            let copy = tempfile::tempdir().expect("tmp");
            let mut bad = good.clone();
            bad[pos] ^= 0x10;
            std::fs::write(segment_path(copy.path(), 1), &bad).expect("write");
            let s = LogStore::open(copy.path()).expect("open damaged");
            let expected: Vec<(u32, String)> =
                (1..=5).filter(|t| *t != hit).map(|t| (t, format!("{:016x}", 1))).collect();
            assert_eq!(stored_spans(&s, 5), expected, "byte {pos} (record of trace {hit})");
            assert_eq!(s.len(), 4, "byte {pos}");
            assert_eq!(s.damage().regions, 1, "the damage is reported (byte {pos})");
            // the log goes on after the damage, and the damage is not counted again
            s.append(vec![event(9, 1, None, 900)]).expect("append after damage");
            drop(s);
            let s = LogStore::open(copy.path()).expect("reopen");
            assert_eq!(s.len(), 5, "byte {pos}");
            assert_eq!(s.damage().regions, 1);
        }
    }

    #[test]
    fn a_damaged_record_in_a_sealed_segment_is_never_served() {
        let dir = tempfile::tempdir().expect("tmp");
        let small = LogOptions { segment_bytes: 2048, ..LogOptions::default() };
        {
            let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
            for i in 0..30u32 {
                s.append(vec![event(1, i + 1, None, u64::from(i))]).expect("append");
            }
        }
        // damage one record's payload in the first (sealed) segment, whose index stays intact
        let seg = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&seg).expect("read");
        assert!(super::super::table::table_path(dir.path(), 1).exists());
        data[helix_wal::HEADER + 20] ^= 0x01;
        std::fs::write(&seg, &data).expect("damage");
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("reopen");
        assert_eq!(s.damage().regions, 0, "a sealed segment is not replayed at open");
        let spans = s.trace(&format!("{:032x}", 1)).expect("trace");
        assert_eq!(spans.len(), 29, "the damaged span is left out");
        assert!(spans.iter().all(|e| e.span_id != format!("{:016x}", 1)));
        assert_eq!(s.damage().regions, 1, "and reported");
        let records = s.trace_records(&format!("{:032x}", 1)).expect("records");
        assert!(records.iter().all(|r| std::str::from_utf8(&r.json).is_ok()));
        // the forwarder's reader skips it too, and goes on to everything after it
        let (all, _) = s.read_from((1, 0), 1000).expect("read_from");
        assert_eq!(all.len(), 29);
    }

    #[test]
    fn a_span_sent_again_is_stored_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let small = LogOptions { segment_bytes: 2048, ..LogOptions::default() };
        let batch: Vec<Event> = (1..=4u32).map(|i| event(1, i, (i > 1).then_some(1), u64::from(i))).collect();
        {
            let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
            assert_eq!(s.append(batch.clone()).expect("first"), Appended { stored: 4, duplicates: 0 });
            assert_eq!(s.append(batch.clone()).expect("again"), Appended { stored: 0, duplicates: 4 });
            // a copy inside one batch, and a batch half old, half new
            let mut mixed = vec![event(1, 5, Some(1), 5), event(1, 5, Some(1), 5)];
            mixed.extend(batch.iter().take(2).cloned());
            assert_eq!(s.append(mixed).expect("mixed"), Appended { stored: 1, duplicates: 3 });
            // push the trace's spans into sealed segments, then send them again
            for i in 0..30u32 {
                s.append(vec![event(2, i + 1, None, 100 + u64::from(i))]).expect("filler");
            }
            assert_eq!(s.append(batch.clone()).expect("sealed"), Appended { stored: 0, duplicates: 4 });
            assert_eq!(s.summary(&format!("{:032x}", 1)).expect("summary").spans, 5);
        }
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("reopen");
        assert_eq!(s.append(batch).expect("after reopen"), Appended { stored: 0, duplicates: 4 });
        assert_eq!(s.len(), 35);
        let costs = s.costs(crate::costs::GroupBy::Project, None, None, None);
        assert!((costs[0].cost_usd - 0.25 * 35.0).abs() < 1e-9, "cost counts every span once");
    }

    #[test]
    fn concurrent_copies_of_a_batch_are_stored_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Arc::new(LogStore::open(dir.path()).expect("open"));
        let batch: Vec<Event> = (1..=50u32).map(|i| event(7, i, None, u64::from(i))).collect();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, batch) = (s.clone(), batch.clone());
                std::thread::spawn(move || s.append(batch).expect("append"))
            })
            .collect();
        let results: Vec<Appended> = threads.into_iter().map(|t| t.join().expect("join")).collect();
        assert_eq!(results.iter().map(|r| r.stored).sum::<usize>(), 50, "{results:?}");
        assert_eq!(results.iter().map(|r| r.duplicates).sum::<usize>(), 350);
        assert_eq!(s.len(), 50);
    }

    #[test]
    fn a_segment_of_the_previous_format_is_migrated() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut old = Vec::new();
        for t in 1..=3u32 {
            let json = serde_json::to_vec(&event(t, 1, None, 10)).expect("json");
            old.extend_from_slice(&(json.len() as u32).to_le_bytes());
            old.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
            old.extend_from_slice(&json);
        }
        std::fs::write(segment_path(dir.path(), 1), &old).expect("write");
        let s = LogStore::open(dir.path()).expect("open");
        assert_eq!(s.len(), 3);
        assert_eq!(s.damage().regions, 0);
        assert_eq!(stored_spans(&s, 3).len(), 3);
        s.append(vec![event(4, 1, None, 10)]).expect("append");
        drop(s);
        assert_eq!(LogStore::open(dir.path()).expect("reopen").len(), 4);
    }
}
