//! Sealed segments: what a full segment keeps on disk beside its records (an `.idx` file of its
//! span positions grouped by trace, and its trace table), how that is written, by the sealer
//! thread or at open, and how a trace's parts are found in it.
//!
//! Separate because sealing is where a segment's share of the index leaves memory: once its
//! files are written, memory keeps a few bytes per trace of it instead of its positions and
//! summaries, and every read of a sealed part goes through these files.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, RwLock};

use super::index::{FastMap, Index, Part, PartialTrace, Pos, PosList, TraceEntry, TraceKey, trace_key};
use super::segment_path;
use crate::store::table::{PartRow, TraceRow, TraceTable};

/// A sealed segment: its span index and its trace table.
#[derive(Debug)]
pub(in crate::store) struct Sealed {
    pub segment: u32,
    pub(super) idx: SegmentIndex,
    pub table: TraceTable,
    /// Its cost sums (JSON cells), subtracted when retention removes it.
    pub(super) costs: Vec<u8>,
}

/// The `.sum` file of a sealed segment, as written before trace tables: read once to build the
/// segment's trace table, then removed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct SegmentSummary {
    pub(super) version: u32,
    pub(super) events: u64,
    pub(super) newest_end: u64,
    /// In trace key order: the order of the runs of the `.idx` file.
    pub(super) traces: Vec<PartialTrace>,
    pub(super) costs: Vec<(crate::costs::GroupBy, String, u64, crate::costs::CostRow)>,
}

pub(super) const SUM_VERSION: u32 = 1;

pub(super) fn sum_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.sum"))
}

impl SegmentSummary {
    pub(super) fn read(dir: &Path, segment: u32) -> Option<SegmentSummary> {
        let data = std::fs::read(sum_path(dir, segment)).ok()?;
        serde_json::from_slice::<SegmentSummary>(&data).ok().filter(|s| s.version == SUM_VERSION)
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
pub(super) fn table_from_summary(
    dir: &Path,
    segment: u32,
    sum: SegmentSummary,
    idx: File,
) -> std::io::Result<Sealed> {
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
pub(super) struct SegmentIndex {
    pub(super) file: File,
}

const IDX_MAGIC: &[u8; 8] = b"HXIDX002";
const IDX_HEADER: u64 = 16;
const IDX_ENTRY: u64 = 44;

pub(super) fn index_path(dir: &Path, n: u32) -> PathBuf {
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
    pub(super) fn open(dir: &Path, segment: u32, expected: u64) -> Option<File> {
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
    pub(super) fn read(&self, first: u32, count: u32) -> std::io::Result<Vec<Pos>> {
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

/// Seals full segments on its own thread, so that writing a segment's `.idx` and `.sum` files
/// (tens of milliseconds with their fsyncs) never stalls the commits of the next segment. Until
/// a segment is sealed its positions stay in memory and reads use them.
pub(super) struct Sealer {
    pub(super) dir: PathBuf,
    pub(super) index: Arc<RwLock<Index>>,
}

impl Sealer {
    pub(super) fn run(self, rx: Receiver<u32>) {
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
                    let _ = std::fs::remove_file(crate::store::table::table_path(&self.dir, segment));
                }
            }
            Err(e) => {
                tracing::error!(segment, error = %e, "cannot write a segment index; keeping it in memory")
            }
        }
    }
}

/// Seals a segment replayed at open: writes its `.idx` file and trace table again.
pub(super) fn seal_at_open(dir: &Path, segment: u32, index: &mut Index) -> std::io::Result<()> {
    let positions = index.live.get(&segment).cloned().unwrap_or_default();
    let part = index.live_sums.get(&segment).cloned().unwrap_or_default();
    let sealed = write_sealed(dir, segment, &positions, &part)?;
    let _ = std::fs::remove_file(sum_path(dir, segment));
    index.seal(sealed);
    Ok(())
}

/// The parts of trace `key` in sealed segments, oldest segment first.
pub(super) fn find_parts(
    sealed: &[Arc<Sealed>],
    key: TraceKey,
) -> std::io::Result<Vec<(TraceRow, Arc<Sealed>)>> {
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
pub(super) fn find_parts_many(
    sealed: &[Arc<Sealed>],
    keys: &[(TraceKey, (u64, u64))],
) -> std::io::Result<Vec<Vec<(TraceRow, Arc<Sealed>)>>> {
    let mut parts: Vec<Vec<(TraceRow, Arc<Sealed>)>> = vec![Vec::new(); keys.len()];
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
