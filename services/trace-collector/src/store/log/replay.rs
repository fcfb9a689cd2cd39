//! What open reads of the segment files before the store starts: a segment of the previous
//! format rewritten in the current one, a segment without intact derived files replayed into the
//! index with recovery (damage skipped and quarantined, a torn tail cut), the newest sealed
//! segment verified, and sealed segments scanned for the events an observer asks to see again.
//!
//! Separate because all of it runs only at open, one segment file at a time, before the writer
//! and the sealer start.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use helix_core::trace::Event;

use super::index::{Index, Pos};
use super::sealed::{index_path, sum_path};
use super::{MAX_RECORD, segment_path};

/// Replays one segment into `index`, recovering it: damaged records are skipped and
/// quarantined, a trailing part without a valid record is cut. Returns what recovery found.
pub(super) fn replay(
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
pub(super) fn intact(path: &Path, events: u64) -> std::io::Result<bool> {
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
pub(super) fn scan(path: &Path, each: &mut dyn FnMut(u64, u32, Event)) -> std::io::Result<()> {
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
pub(super) fn migrate_legacy_segment(dir: &Path, segment: u32) -> std::io::Result<bool> {
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
