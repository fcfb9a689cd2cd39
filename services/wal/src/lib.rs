//! The record log format every Helix store writes: the trace-collector's event segments and the
//! healer's learning log. One format, one implementation, so that both recover the same way.
//!
//! # Frame
//!
//! `magic: 4 | len: u32 LE | header crc: u32 LE | payload crc: u32 LE | payload: len bytes`
//!
//! * The **magic** ([`MAGIC`]) starts with `0xF7`, a byte that never occurs in UTF-8 (and so in
//!   no JSON payload): after damage, scanning for it finds the next frame and nothing inside a
//!   payload. A payload that happens to contain it is no danger either: a candidate frame must
//!   also pass both checksums.
//! * The **header crc** covers magic and length. Why a checksum of its own: without it a damaged
//!   length of the last record looks exactly like a torn write (a record running past the end of
//!   the file), and acknowledged data would be cut silently. With it, a frame that runs past the
//!   end with an intact header is a torn tail, and anything else is corruption.
//! * The **payload crc** is CRC-32 (IEEE) of the payload, checked at recovery and on every read.
//!
//! # Recovery ([`Scanner`], [`recover_file`])
//!
//! A frame that fails its checks is skipped by scanning forward for the next valid frame, so one
//! damaged record costs that record and nothing after it. The skipped bytes are copied into a
//! [`Quarantine`] directory (one file per damaged region, named after its file and offset, so a
//! region found again at the next open is not counted twice) and counted; services report the
//! count in `/ready` (degraded) and `/metrics`. A damaged region in the middle of a file stays
//! where it is (positions of the records after it stay valid); a trailing part that holds no
//! valid frame is cut, after being quarantined when it is corruption rather than a torn write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// First bytes of every frame.
pub const MAGIC: [u8; 4] = [0xF7, b'H', b'X', b'1'];
/// Bytes before the payload.
pub const HEADER: usize = 16;

/// Appends one frame holding `payload` to `out`; returns the frame's length.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> usize {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&header_crc(len).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    HEADER + payload.len()
}

/// The frame of `payload`, as a new buffer.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    encode(payload, &mut out);
    out
}

fn header_crc(len: u32) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&MAGIC);
    h.update(&len.to_le_bytes());
    h.finalize()
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// What the bytes at the start of a slice are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid frame of `len` bytes with its payload.
    Frame { payload: &'a [u8], len: usize },
    /// The start of a frame whose header is intact (or cut short) and whose end lies past the
    /// end of the slice: a torn write, or one still being written.
    Incomplete,
    /// Not a valid frame.
    Bad,
}

/// Decodes the frame at the start of `data`; payloads over `max_payload` bytes are [`Decoded::Bad`]
/// (a damaged length must not make a reader allocate gigabytes).
pub fn decode(data: &[u8], max_payload: u32) -> Decoded<'_> {
    if data.len() < HEADER {
        // cut inside the header: a torn write when what is there is a frame's beginning
        let magic = data.len().min(MAGIC.len());
        return if data[..magic] == MAGIC[..magic] { Decoded::Incomplete } else { Decoded::Bad };
    }
    if data[..4] != MAGIC {
        return Decoded::Bad;
    }
    let len = u32_at(data, 4);
    if u32_at(data, 8) != header_crc(len) || len > max_payload {
        return Decoded::Bad;
    }
    let end = HEADER + len as usize;
    if end > data.len() {
        return Decoded::Incomplete;
    }
    let payload = &data[HEADER..end];
    if crc32fast::hash(payload) != u32_at(data, 12) {
        return Decoded::Bad;
    }
    Decoded::Frame { payload, len: end }
}

/// The payload of `frame` when it is exactly one intact frame: for positioned reads, which know
/// where a record is and must still never serve damaged bytes.
pub fn verify(frame: &[u8]) -> Option<&[u8]> {
    match decode(frame, u32::MAX) {
        Decoded::Frame { payload, len } if len == frame.len() => Some(payload),
        _ => None,
    }
}

/// One thing a [`Scanner`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A valid frame at `offset` (`len` bytes, header included).
    Record { offset: usize, len: usize, payload: &'a [u8] },
    /// Damaged bytes at `offset` followed by a valid frame: skipped.
    Corrupt { offset: usize, len: usize },
    /// The last part of the data, holding no valid frame: a torn write when `torn`, else damage.
    /// Nothing follows it.
    Tail { offset: usize, len: usize, torn: bool },
}

/// Walks the frames of a buffer, skipping damage; see the module docs. Linear in the data
/// (plus the checksums of candidate frames while resynchronising, which only damage pays).
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    data: &'a [u8],
    at: usize,
    max_payload: u32,
}

impl<'a> Scanner<'a> {
    pub fn new(data: &'a [u8], max_payload: u32) -> Scanner<'a> {
        Scanner { data, at: 0, max_payload }
    }

    /// Starts at `offset` (a record boundary from an earlier scan).
    pub fn from(data: &'a [u8], offset: usize, max_payload: u32) -> Scanner<'a> {
        Scanner { data, at: offset.min(data.len()), max_payload }
    }

    /// Where the scan is: after the last item returned.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// The offset of the next valid frame after `from`, if any.
    fn resync(&self, from: usize) -> Option<usize> {
        let mut at = from;
        while at < self.data.len() {
            let found = memchr::memmem::find(&self.data[at..], &MAGIC)?;
            let candidate = at + found;
            if matches!(decode(&self.data[candidate..], self.max_payload), Decoded::Frame { .. }) {
                return Some(candidate);
            }
            at = candidate + 1;
        }
        None
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        let start = self.at;
        if start >= self.data.len() {
            return None;
        }
        let decoded = decode(&self.data[start..], self.max_payload);
        if let Decoded::Frame { payload, len } = decoded {
            self.at = start + len;
            return Some(Item::Record { offset: start, len, payload });
        }
        match self.resync(start + 1) {
            Some(next) => {
                self.at = next;
                Some(Item::Corrupt { offset: start, len: next - start })
            }
            None => {
                self.at = self.data.len();
                Some(Item::Tail {
                    offset: start,
                    len: self.data.len() - start,
                    torn: decoded == Decoded::Incomplete,
                })
            }
        }
    }
}

/// Damaged bytes kept aside: a directory with one file per damaged region.
#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
    regions: AtomicU64,
    bytes: AtomicU64,
}

impl Quarantine {
    /// Opens (creating lazily) the quarantine at `dir` and counts what it already holds: damage
    /// stays reported until someone has looked at it and removed the files.
    pub fn open(dir: &Path) -> Quarantine {
        let (mut regions, mut bytes) = (0, 0);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_str().is_some_and(|n| n.ends_with(".bad")) {
                    regions += 1;
                    bytes += e.metadata().map_or(0, |m| m.len());
                }
            }
        }
        Quarantine { dir: dir.to_path_buf(), regions: AtomicU64::new(regions), bytes: AtomicU64::new(bytes) }
    }

    /// Keeps `data`, found damaged at `offset` of the file named `source`. The same region kept
    /// again (found at a later open or read) is counted once.
    pub fn keep(&self, source: &str, offset: u64, data: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{source}@{offset}.bad"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(data)?;
                f.sync_all()?;
                self.regions.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Damaged regions kept.
    pub fn regions(&self) -> u64 {
        self.regions.load(Ordering::Relaxed)
    }

    /// Bytes kept.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What [`recover_file`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Valid records (those the caller accepted).
    pub records: u64,
    /// Damaged regions skipped or cut (records the caller refused included).
    pub corrupt_regions: u64,
    pub corrupt_bytes: u64,
    /// Bytes of a torn last write that were cut.
    pub torn_bytes: u64,
    /// The file's length after recovery: where appending goes on.
    pub len: u64,
}

/// Scans the file at `path` (`data` is its content), shows every valid payload to `accept` with
/// its offset and frame length, quarantines damage, and cuts a trailing part that holds no valid
/// frame. `accept` returns false for a payload it cannot use (e.g. a checksummed record that is
/// not the JSON it should be): that frame counts as damage too.
pub fn recover_file(
    path: &Path,
    data: &[u8],
    max_payload: u32,
    quarantine: &Quarantine,
    accept: &mut dyn FnMut(u64, usize, &[u8]) -> bool,
) -> std::io::Result<Recovered> {
    let source = path.file_name().and_then(|n| n.to_str()).unwrap_or("log").to_owned();
    let mut out = Recovered { len: data.len() as u64, ..Recovered::default() };
    let damaged = |offset: usize, len: usize, out: &mut Recovered| -> std::io::Result<()> {
        out.corrupt_regions += 1;
        out.corrupt_bytes += len as u64;
        quarantine.keep(&source, offset as u64, &data[offset..offset + len])
    };
    for item in Scanner::new(data, max_payload) {
        match item {
            Item::Record { offset, len, payload } => {
                if accept(offset as u64, len, payload) {
                    out.records += 1;
                } else {
                    damaged(offset, len, &mut out)?;
                }
            }
            Item::Corrupt { offset, len } => damaged(offset, len, &mut out)?,
            Item::Tail { offset, len, torn } => {
                if torn {
                    out.torn_bytes = len as u64;
                } else {
                    damaged(offset, len, &mut out)?;
                }
                let f = std::fs::OpenOptions::new().write(true).open(path)?;
                f.set_len(offset as u64)?;
                f.sync_all()?;
                out.len = offset as u64;
            }
        }
    }
    if out.corrupt_regions > 0 || out.torn_bytes > 0 {
        tracing::warn!(
            path = %path.display(),
            corrupt_regions = out.corrupt_regions,
            corrupt_bytes = out.corrupt_bytes,
            torn_bytes = out.torn_bytes,
            quarantine = %quarantine.dir().display(),
            "recovered a damaged log: damaged records were skipped and kept aside, the rest kept"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(payloads: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for p in payloads {
            starts.push(out.len());
            encode(p, &mut out);
        }
        (out, starts)
    }

    fn records(data: &[u8]) -> Vec<Vec<u8>> {
        Scanner::new(data, 1 << 20)
            .filter_map(|i| match i {
                Item::Record { payload, .. } => Some(payload.to_vec()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn frames_round_trip_and_verify() {
        let (data, starts) = log_of(&[b"{\"a\":1}", b"", b"{\"b\":2}"]);
        assert_eq!(records(&data), [b"{\"a\":1}".to_vec(), Vec::new(), b"{\"b\":2}".to_vec()]);
        assert_eq!(verify(&data[starts[2]..]), Some(&b"{\"b\":2}"[..]));
        assert_eq!(verify(&data[starts[0]..starts[1]]), Some(&b"{\"a\":1}"[..]));
        assert_eq!(verify(&data[starts[0]..starts[1] + 1]), None, "exactly one frame");
    }

    #[test]
    fn every_flipped_byte_costs_exactly_the_record_it_hit() {
        let payloads: Vec<Vec<u8>> = (0..6)
            .map(|i| format!("{{\"record\":{i},\"text\":\"{}\"}}", "x".repeat(i * 7)).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let (data, starts) = log_of(&refs);
        let owner = |pos: usize| starts.iter().rposition(|s| *s <= pos).expect("owner");
        for pos in 0..data.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = data.clone();
                bad[pos] ^= flip;
                let hit = owner(pos);
                let expected: Vec<Vec<u8>> =
                    payloads.iter().enumerate().filter(|(i, _)| *i != hit).map(|(_, p)| p.clone()).collect();
                assert_eq!(records(&bad), expected, "byte {pos} ^ {flip:#x} (record {hit})");
                let items: Vec<Item> = Scanner::new(&bad, 1 << 20).collect();
                let damage = items.iter().filter(|i| !matches!(i, Item::Record { .. })).count();
                assert_eq!(damage, 1, "one damaged region for byte {pos}: {items:?}");
                assert!(
                    !items.iter().any(|i| matches!(i, Item::Tail { torn: true, .. })),
                    "damage is never mistaken for a torn write (byte {pos})"
                );
            }
        }
    }

    #[test]
    fn a_torn_tail_is_told_apart_from_damage() {
        let (data, starts) = log_of(&[b"one", b"two", b"three"]);
        for cut in starts[2] + 1..data.len() {
            let items: Vec<Item> = Scanner::new(&data[..cut], 1 << 20).collect();
            assert_eq!(items.len(), 3, "{items:?}");
            assert_eq!(items[2], Item::Tail { offset: starts[2], len: cut - starts[2], torn: true });
        }
        // garbage after the last record is damage, not a torn write
        let mut junk = data.clone();
        junk.extend_from_slice(b"garbage");
        assert!(matches!(Scanner::new(&junk, 1 << 20).last(), Some(Item::Tail { torn: false, .. })));
    }

    #[test]
    fn recovery_quarantines_damage_once_and_cuts_the_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("seg.log");
        let (mut data, starts) = log_of(&[b"one", b"two", b"three", b"four"]);
        data[starts[1] + HEADER] ^= 0x20; // "two" damaged
        data.truncate(data.len() - 2); // "four" torn
        std::fs::write(&path, &data).expect("write");
        let q = Quarantine::open(&dir.path().join("quarantine"));
        let mut seen = Vec::new();
        let r = recover_file(&path, &data, 1 << 20, &q, &mut |_, _, p| {
            seen.push(p.to_vec());
            p != b"three"
        })
        .expect("recover");
        assert_eq!(seen, [b"one".to_vec(), b"three".to_vec()]);
        assert_eq!((r.records, r.corrupt_regions), (1, 2), "a refused payload is damage too");
        assert_eq!(r.len, starts[3] as u64);
        assert!(r.torn_bytes > 0);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), starts[3] as u64, "torn tail cut");
        assert_eq!(q.regions(), 2);
        // the same damage found again is not counted again, also by a new process
        let data = std::fs::read(&path).expect("read");
        recover_file(&path, &data, 1 << 20, &q, &mut |_, _, _| true).expect("again");
        assert_eq!(q.regions(), 2);
        assert_eq!(Quarantine::open(&dir.path().join("quarantine")).regions(), 2);
    }

    #[test]
    fn adversarial_magic_runs_stay_linear_enough() {
        // a buffer full of magics with huge claimed lengths: every candidate fails its header crc
        let mut data = Vec::new();
        for _ in 0..100_000 {
            data.extend_from_slice(&MAGIC);
            data.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        let items: Vec<Item> = Scanner::new(&data, 1 << 20).collect();
        assert_eq!(items.len(), 1);
    }
}
