//! The read side: a trace's records read from its segments (nearby records with one read call,
//! every checksum verified), and the newest-first listing and trace summaries merged over each
//! trace's sealed and unsealed parts.
//!
//! Separate because reads run without the index lock: they work on positions copied and parts
//! shared out of the index, so a long read holds up neither ingest nor sealing.

use std::fs::File;
use std::sync::Arc;

use super::index::{Part, PartialTrace, Pos, Strings, TraceEntry, TraceKey};
use super::sealed::{Sealed, find_parts};
use super::{LogStore, segment_name};
use crate::store::table::StartCursor;
use crate::store::{SpanRecord, TraceFilter, TraceSummary};

/// Records closer than this are read with one read call (reading the gap is cheaper than a call).
const COALESCE_GAP: u64 = 64 * 1024;

/// Reads the JSON of the records at `positions` (sorted by offset) of one segment, coalescing
/// nearby ones into one read.
pub(super) fn read_records(
    file: &File,
    segment: u32,
    positions: &[Pos],
    quarantine: &helix_wal::Quarantine,
    out: &mut Vec<SpanRecord>,
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
                out.push(SpanRecord {
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
    /// Traces newest first: the by-start rows of every part, merged lazily (a sealed segment is
    /// only read once the page could still take one of its traces); each trace is listed at the
    /// row of its earliest part, with its summary merged over all its parts.
    pub(super) fn list(
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
        let tag = filter.project.as_deref().map(|p| crate::store::table::project_tag(Some(p)));
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

/// The newest row seen in a listing step: (start, trace), and which live part or sealed cursor
/// it came from.
type Best = ((u64, TraceKey), Option<usize>, Option<usize>);

/// A trace's summary merged over all its parts (sealed ones oldest first, then the unsealed);
/// `None` when no part is left.
pub(super) fn merged(
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
