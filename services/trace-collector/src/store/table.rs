//! The trace table of a sealed segment (`NNNNNNNN.trt`): what the segment holds of each trace,
//! on disk, so that memory does not grow with the number of traces stored.
//!
//! Why: a summary per trace in memory cost ~0.5 KB each (558 MB at 1M traces). Here memory keeps,
//! per sealed segment, a Bloom filter of its trace ids (10 bits a trace) and every 64th key of its
//! key table (1/4 byte a trace): a lookup checks the filters and reads one block of one table per
//! segment that has the trace. The newest-first listing walks each segment's by-start table from
//! its newest end, and only segments whose newest start can still make the page are read.
//!
//! Layout (little endian):
//! ```text
//! head:   "HXTRT001" | n | events | newest_end | min_start | max_start | bloom_words | sparse_len
//!         | costs_len | keys_off | starts_off | sums_off | log_bytes  (12 × u64 after the magic)
//!         | bloom (bloom_words × u64) | sparse keys (sparse_len × u128) | costs (JSON) | crc32(head)
//! keys:   n × { key u128 | idx_first u32 | idx_count u32 | sum_off u64 | sum_len u32 | crc32 }
//!         sorted by key
//! starts: n × { start u64 | key u128 | project u32 | crc32 }  sorted newest first (start, key)
//! sums:   one helix-wal frame of JSON per trace part
//! ```
//! The head is verified when the file is opened (a damaged head: the table is rebuilt from the
//! segment); every row carries its own checksum and every summary is a checksummed frame, both
//! verified on each read, so damage is never served. Derived data, like the `.idx` file.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::log::TraceKey;
use crate::import::fmix64;

const MAGIC: &[u8; 8] = b"HXTRT001";
const HEAD_FIELDS: usize = 12;
const HEAD_FIXED: usize = 8 + HEAD_FIELDS * 8;
const KEY_ROW: u64 = 40;
const START_ROW: u64 = 32;
/// Every this many keys one stays in memory.
const SPARSE: u64 = 64;
/// Bloom filter bits per trace and probes (≈ 1% false positives).
const BLOOM_BITS: u64 = 10;
const BLOOM_PROBES: u64 = 7;
/// Rows of the by-start table read at once.
const START_BLOCK: u64 = 256;

pub(super) fn table_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.trt"))
}

/// Where a trace's part of a segment is: its run of the `.idx` file and its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TraceRow {
    pub first: u32,
    pub count: u32,
    sum_off: u64,
    sum_len: u32,
}

/// One entry of the by-start table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StartRow {
    pub start: u64,
    pub key: TraceKey,
    /// [`project_tag`] of the part's project (0: none).
    pub project: u32,
}

/// What is written for one trace of a segment.
pub(super) struct PartRow<'a> {
    pub key: TraceKey,
    pub start: u64,
    pub project: Option<&'a str>,
    pub first: u32,
    pub count: u32,
    /// The part's summary, JSON.
    pub summary: &'a [u8],
}

/// A short tag of a project name, to skip other projects' rows without reading their summaries.
pub(super) fn project_tag(project: Option<&str>) -> u32 {
    project.map_or(0, |p| {
        let mut h: u32 = 0x811c_9dc5;
        for b in p.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        h.max(1)
    })
}

fn probes(key: TraceKey, bits: u64) -> impl Iterator<Item = u64> {
    let h1 = fmix64(key as u64 ^ 0x9e37_79b9_7f4a_7c15);
    let h2 = fmix64((key >> 64) as u64 ^ h1) | 1;
    (0..BLOOM_PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

/// An open trace table: the head in memory, the rows on disk.
#[derive(Debug)]
pub(super) struct TraceTable {
    file: File,
    n: u64,
    pub events: u64,
    /// The latest end of any span in the segment.
    pub newest_end: u64,
    /// The earliest start of any span in the segment (of its trace parts: a part starts at its
    /// earliest span). With `newest_end` it bounds where a span can be stored.
    pub min_start: u64,
    pub max_start: u64,
    /// The size of the segment file the table was made from.
    pub log_bytes: u64,
    keys_off: u64,
    starts_off: u64,
    sums_off: u64,
    bloom: Vec<u64>,
    sparse: Vec<TraceKey>,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u128_at(b: &[u8], at: usize) -> u128 {
    let mut x = [0u8; 16];
    x.copy_from_slice(&b[at..at + 16]);
    u128::from_le_bytes(x)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

impl TraceTable {
    /// Writes the table of `segment` atomically (temp file, fsync, rename) and opens it. `parts`
    /// must be in key order (the order of the `.idx` runs).
    pub fn write(
        dir: &Path,
        segment: u32,
        parts: &[PartRow<'_>],
        events: u64,
        newest_end: u64,
        costs_json: &[u8],
        log_bytes: u64,
    ) -> std::io::Result<TraceTable> {
        let n = parts.len() as u64;
        let bits = (n * BLOOM_BITS).max(64);
        let words = bits.div_ceil(64);
        let mut bloom = vec![0u64; words as usize];
        let bits = words * 64;
        for p in parts {
            for b in probes(p.key, bits) {
                bloom[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        let sparse: Vec<TraceKey> = parts.iter().step_by(SPARSE as usize).map(|p| p.key).collect();
        let (min_start, max_start) =
            parts.iter().fold((u64::MAX, 0u64), |(lo, hi), p| (lo.min(p.start), hi.max(p.start)));
        let min_start = if parts.is_empty() { 0 } else { min_start };

        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        let head_len = HEAD_FIXED as u64 + words * 8 + sparse.len() as u64 * 16 + costs_json.len() as u64 + 4;
        let keys_off = head_len;
        let starts_off = keys_off + n * KEY_ROW;
        let sums_off = starts_off + n * START_ROW;
        for v in [
            n,
            events,
            newest_end,
            min_start,
            max_start,
            words,
            sparse.len() as u64,
            costs_json.len() as u64,
            keys_off,
            starts_off,
            sums_off,
            log_bytes,
        ] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        for w in &bloom {
            head.extend_from_slice(&w.to_le_bytes());
        }
        for k in &sparse {
            head.extend_from_slice(&k.to_le_bytes());
        }
        head.extend_from_slice(costs_json);
        head.extend_from_slice(&crc32fast::hash(&head).to_le_bytes());

        let mut sums = Vec::new();
        let mut keys = Vec::with_capacity((n * KEY_ROW) as usize);
        for p in parts {
            let off = sums.len() as u64;
            let len = helix_wal::encode(p.summary, &mut sums);
            let at = keys.len();
            keys.extend_from_slice(&p.key.to_le_bytes());
            keys.extend_from_slice(&p.first.to_le_bytes());
            keys.extend_from_slice(&p.count.to_le_bytes());
            keys.extend_from_slice(&off.to_le_bytes());
            keys.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
            let crc = crc32fast::hash(&keys[at..]);
            keys.extend_from_slice(&crc.to_le_bytes());
        }
        let mut order: Vec<&PartRow<'_>> = parts.iter().collect();
        order.sort_unstable_by_key(|p| std::cmp::Reverse((p.start, p.key)));
        let mut starts = Vec::with_capacity((n * START_ROW) as usize);
        for p in order {
            let at = starts.len();
            starts.extend_from_slice(&p.start.to_le_bytes());
            starts.extend_from_slice(&p.key.to_le_bytes());
            starts.extend_from_slice(&project_tag(p.project).to_le_bytes());
            let crc = crc32fast::hash(&starts[at..]);
            starts.extend_from_slice(&crc.to_le_bytes());
        }
        let path = table_path(dir, segment);
        let tmp = path.with_extension("trt.tmp");
        {
            let mut f = std::io::BufWriter::new(File::create(&tmp)?);
            f.write_all(&head)?;
            f.write_all(&keys)?;
            f.write_all(&starts)?;
            f.write_all(&sums)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let table = TraceTable {
            file: File::open(&path)?,
            n,
            events,
            newest_end,
            min_start,
            max_start,
            log_bytes,
            keys_off,
            starts_off,
            sums_off,
            bloom,
            sparse,
        };
        Ok(table)
    }

    /// Opens an existing table when its head is intact; returns it with its cost cells (JSON).
    pub fn open(dir: &Path, segment: u32) -> Option<(TraceTable, Vec<u8>)> {
        let file = File::open(table_path(dir, segment)).ok()?;
        let mut fixed = vec![0u8; HEAD_FIXED];
        file.read_exact_at(&mut fixed, 0).ok()?;
        if &fixed[..8] != MAGIC {
            return None;
        }
        let field = |i: usize| u64_at(&fixed, 8 + i * 8);
        let (n, events, newest_end, min_start, max_start) =
            (field(0), field(1), field(2), field(3), field(4));
        let (words, sparse_len, costs_len) = (field(5), field(6), field(7));
        let (keys_off, starts_off, sums_off, log_bytes) = (field(8), field(9), field(10), field(11));
        let rest = words.checked_mul(8)?.checked_add(sparse_len.checked_mul(16)?)?.checked_add(costs_len)?;
        let head_len = (HEAD_FIXED as u64).checked_add(rest)?.checked_add(4)?;
        let file_len = file.metadata().ok()?.len();
        if head_len != keys_off
            || starts_off != keys_off.checked_add(n.checked_mul(KEY_ROW)?)?
            || sums_off != starts_off.checked_add(n.checked_mul(START_ROW)?)?
            || sums_off > file_len
            || sparse_len != n.div_ceil(SPARSE)
            || words == 0
        {
            return None;
        }
        let mut head = vec![0u8; usize::try_from(head_len).ok()?];
        file.read_exact_at(&mut head, 0).ok()?;
        let body = head.len() - 4;
        if crc32fast::hash(&head[..body]) != u32_at(&head, body) {
            return None;
        }
        let mut at = HEAD_FIXED;
        let bloom = (0..words).map(|i| u64_at(&head, at + i as usize * 8)).collect();
        at += words as usize * 8;
        let sparse = (0..sparse_len).map(|i| u128_at(&head, at + i as usize * 16)).collect();
        at += sparse_len as usize * 16;
        let costs = head[at..at + costs_len as usize].to_vec();
        Some((
            TraceTable {
                file,
                n,
                events,
                newest_end,
                min_start,
                max_start,
                log_bytes,
                keys_off,
                starts_off,
                sums_off,
                bloom,
                sparse,
            },
            costs,
        ))
    }

    /// Traces in this table.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether the Bloom filter admits `key` (no false negatives; about 1% false positives).
    pub fn may_hold(&self, key: TraceKey) -> bool {
        if self.n == 0 {
            return false;
        }
        let bits = self.bloom.len() as u64 * 64;
        probes(key, bits).all(|b| self.bloom[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }

    /// Where `key`'s part is, if this segment has one.
    pub fn find(&self, key: TraceKey) -> std::io::Result<Option<TraceRow>> {
        if self.n == 0 || !self.may_hold(key) {
            return Ok(None);
        }
        // the block of keys that would hold it
        let block = match self.sparse.partition_point(|k| *k <= key) {
            0 => return Ok(None),
            b => (b - 1) as u64,
        };
        let first = block * SPARSE;
        let count = SPARSE.min(self.n - first);
        let mut buf = vec![0u8; (count * KEY_ROW) as usize];
        self.file.read_exact_at(&mut buf, self.keys_off + first * KEY_ROW)?;
        let rows: Vec<&[u8]> = buf.chunks_exact(KEY_ROW as usize).collect();
        let i = rows.partition_point(|r| u128_at(r, 0) < key);
        let Some(r) = rows.get(i).filter(|r| u128_at(r, 0) == key) else { return Ok(None) };
        if crc32fast::hash(&r[..36]) != u32_at(r, 36) {
            return Err(bad("a trace table row failed its checksum"));
        }
        Ok(Some(TraceRow {
            first: u32_at(r, 16),
            count: u32_at(r, 20),
            sum_off: u64_at(r, 24),
            sum_len: u32_at(r, 32),
        }))
    }

    /// The summary (JSON) of a part [`TraceTable::find`] found.
    pub fn summary(&self, row: &TraceRow) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; row.sum_len as usize];
        self.file.read_exact_at(&mut buf, self.sums_off + row.sum_off)?;
        match helix_wal::verify(&buf) {
            Some(json) => Ok(json.to_vec()),
            None => Err(bad("a trace summary failed its checksum")),
        }
    }

    fn start_rows(&self, from: u64, count: u64) -> std::io::Result<Vec<StartRow>> {
        let count = count.min(self.n.saturating_sub(from));
        let mut buf = vec![0u8; (count * START_ROW) as usize];
        self.file.read_exact_at(&mut buf, self.starts_off + from * START_ROW)?;
        buf.chunks_exact(START_ROW as usize)
            .map(|r| {
                if crc32fast::hash(&r[..28]) != u32_at(r, 28) {
                    return Err(bad("a trace table row failed its checksum"));
                }
                Ok(StartRow { start: u64_at(r, 0), key: u128_at(r, 8), project: u32_at(r, 24) })
            })
            .collect()
    }

    /// The index of the first by-start row before `after` (newest first), by binary search.
    fn start_position(&self, after: Option<(u64, TraceKey)>) -> std::io::Result<u64> {
        let Some(after) = after else { return Ok(0) };
        let (mut lo, mut hi) = (0u64, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let r = self.start_rows(mid, 1)?[0];
            if (r.start, r.key) >= after {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// Walks one table's by-start rows, newest first, a block at a time.
pub(super) struct StartCursor {
    table: std::sync::Arc<super::log::Sealed>,
    next: u64,
    buf: std::collections::VecDeque<StartRow>,
}

impl StartCursor {
    pub fn new(
        table: std::sync::Arc<super::log::Sealed>,
        after: Option<(u64, TraceKey)>,
    ) -> std::io::Result<StartCursor> {
        let next = table.table.start_position(after)?;
        Ok(StartCursor { table, next, buf: std::collections::VecDeque::new() })
    }

    pub fn peek(&mut self) -> std::io::Result<Option<StartRow>> {
        if self.buf.is_empty() && self.next < self.table.table.n {
            let rows = self.table.table.start_rows(self.next, START_BLOCK)?;
            self.next += rows.len() as u64;
            self.buf.extend(rows);
        }
        Ok(self.buf.front().copied())
    }

    pub fn pop(&mut self) {
        self.buf.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_found_listed_newest_first_and_damage_is_detected() {
        let dir = tempfile::tempdir().expect("tmp");
        let names = ["a", "b"];
        let summaries: Vec<Vec<u8>> = (0..1000u128).map(|i| format!("{{\"i\":{i}}}").into_bytes()).collect();
        let parts: Vec<PartRow<'_>> = (0..1000u128)
            .map(|i| PartRow {
                key: i * 7919,
                start: 1_000 + (i as u64 * 37) % 1000,
                project: Some(names[(i % 2) as usize]),
                first: i as u32 * 3,
                count: 3,
                summary: &summaries[i as usize],
            })
            .collect();
        let t = TraceTable::write(dir.path(), 1, &parts, 3000, 99, b"[]", 0).expect("write");
        let (t2, costs) = TraceTable::open(dir.path(), 1).expect("open");
        assert_eq!((t2.len(), t2.events, costs.as_slice()), (1000, 3000, &b"[]"[..]));
        for p in &parts {
            let row = t2.find(p.key).expect("read").expect("found");
            assert_eq!((row.first, row.count), (p.first, 3));
            assert_eq!(t2.summary(&row).expect("summary"), p.summary);
        }
        let misses = (0..1000u128).filter(|i| t.find(i * 7919 + 1).expect("read").is_some()).count();
        assert_eq!(misses, 0, "absent keys are not found");
        let rows = t2.start_rows(0, 2000).expect("rows");
        assert!(rows.windows(2).all(|w| (w[0].start, w[0].key) > (w[1].start, w[1].key)), "newest first");
        let pos = t2.start_position(Some((rows[10].start, rows[10].key))).expect("pos");
        assert_eq!(pos, 11);
        assert_eq!(rows[0].project, project_tag(Some(if (rows[0].key / 7919) % 2 == 0 { "a" } else { "b" })));
        // a flipped byte in a row is an error, never a wrong answer
        let path = table_path(dir.path(), 1);
        let mut data = std::fs::read(&path).expect("read");
        data[t2.keys_off as usize + 20] ^= 0x40;
        std::fs::write(&path, &data).expect("write");
        let (t3, _) = TraceTable::open(dir.path(), 1).expect("the head is intact");
        assert!(t3.find(parts[0].key).is_err());
        // a damaged head is refused (the table is then rebuilt from its segment)
        data[HEAD_FIXED + 3] ^= 1;
        std::fs::write(&path, &data).expect("write");
        assert!(TraceTable::open(dir.path(), 1).is_none());
    }
}
