//! The in-memory index: where every span's record is in the segments not sealed yet and what
//! each trace's spans there sum up to, which segments are sealed, and the store's event count
//! and cost sums.
//!
//! Separate because it is plain data behind the store's lock, without I/O: the writer adds every
//! committed event to it, the sealer swaps a full segment's positions and summaries for its
//! files, and reads copy or share what they need out of it before they touch a file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use helix_core::trace::{Event, SpanKind, SpanStatus, attr};

use super::sealed::Sealed;
use crate::store::TraceSummary;

/// Where a span's record is, and what a span tree needs of it (so a trace read assembles its
/// tree without decoding any span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) span: u64,
    /// 0: no parent.
    pub(super) parent: u64,
    pub(super) start: u64,
    pub(super) end: u64,
}

impl Pos {
    pub(super) fn of(e: &Event, offset: u64, len: u32) -> Pos {
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
pub(super) enum PosList {
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

    pub(super) fn as_slice(&self) -> &[Pos] {
        match self {
            PosList::One(p) => std::slice::from_ref(p),
            PosList::Many(v) => v,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// The maps looked up for every ingested event: hashbrown with foldhash, several times faster
/// than SipHash for these small keys and still seeded per process.
pub(super) type FastMap<K, V> = hashbrown::HashMap<K, V>;

/// A trace id as a number: 16 bytes instead of a 32-byte string and its allocation.
pub(in crate::store) type TraceKey = u128;

pub(super) fn trace_key(id: &str) -> TraceKey {
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
pub(super) struct TraceEntry {
    pub(super) spans: u32,
    pub(super) root_name: Option<Box<str>>,
    pub(super) first_name: Box<str>,
    pub(super) project: Option<Arc<str>>,
    pub(super) run: Option<Box<str>>,
    pub(super) start: u64,
    pub(super) end: u64,
    /// Merged over all spans: `error` when any failed.
    status: SpanStatus,
    /// The root span's own status, once a root with a set status arrived: a run that healed a
    /// failed attempt ended well, and its root says so, while the failed attempt's span stays an
    /// error.
    root_status: Option<SpanStatus>,
    pub(super) phases: Vec<Arc<str>>,
    cost_usd: f64,
}

impl TraceEntry {
    /// The trace's status: its root span's, or merged over its spans while no root arrived.
    pub(super) fn status(&self) -> SpanStatus {
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

    pub(super) fn summary(&self, trace_id: TraceKey) -> TraceSummary {
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
pub(super) struct PartialTrace {
    pub(super) trace_id: String,
    pub(super) start: u64,
    end: u64,
    pub(super) spans: u32,
    status: SpanStatus,
    /// Absent in summaries written before it existed.
    #[serde(default)]
    root_status: Option<SpanStatus>,
    cost_usd: f64,
    root_name: Option<String>,
    first_name: String,
    pub(super) project: Option<String>,
    run: Option<String>,
    phases: Vec<String>,
}

impl PartialTrace {
    pub(super) fn of(key: TraceKey, t: &TraceEntry) -> PartialTrace {
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
    pub(super) fn merge(&mut self, p: &PartialTrace, strings: &mut Strings) {
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

/// Interned project and phase names: a few distinct values shared by every trace.
#[derive(Debug, Default)]
pub(super) struct Strings(std::collections::HashSet<Arc<str>>);

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
pub(super) struct Part {
    pub(super) traces: FastMap<TraceKey, TraceEntry>,
    /// (part start, trace) of every trace of the part: the newest-first listing's order.
    pub(super) by_start: BTreeSet<(u64, TraceKey)>,
    pub(super) costs: crate::costs::CostIndex,
    pub(super) events: u64,
    pub(super) newest_end: u64,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    strings: Strings,
    /// Positions in the segments not sealed yet (the one being written).
    /// Shared so the sealer reads a full segment's positions without copying them under the lock.
    pub(super) live: HashMap<u32, Arc<FastMap<TraceKey, PosList>>>,
    /// Per unsealed segment: its trace summaries and cost sums, written to its trace table when
    /// it is sealed. Shared with the sealer like the positions.
    pub(super) live_sums: HashMap<u32, Arc<Part>>,
    /// Sealed segments, oldest first.
    pub(super) sealed: BTreeMap<u32, Arc<Sealed>>,
    pub(super) events: u64,
    pub(super) costs: crate::costs::CostIndex,
    /// Per segment: newest end time of its events (for retention by age).
    pub(super) segment_newest: HashMap<u32, u64>,
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
    pub(super) fn add(&mut self, e: &Event, segment: u32, pos: Pos) {
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
    pub(super) fn add_sealed(&mut self, sealed: Sealed) {
        if let Ok(cells) = serde_json::from_slice(&sealed.costs) {
            self.costs.merge(crate::costs::CostIndex::from_cells(cells));
        }
        self.events += sealed.table.events;
        self.segment_newest.insert(sealed.segment, sealed.table.newest_end);
        self.sealed.insert(sealed.segment, Arc::new(sealed));
    }

    /// Replaces a segment's positions and summaries in memory by its written files.
    pub(super) fn seal(&mut self, sealed: Sealed) {
        self.live.remove(&sealed.segment);
        self.live_sums.remove(&sealed.segment);
        self.sealed.insert(sealed.segment, Arc::new(sealed));
    }

    /// Traces known (each counted once per segment it has spans in).
    pub(super) fn trace_parts(&self) -> u64 {
        self.sealed.values().map(|s| s.table.len()).sum::<u64>()
            + self.live_sums.values().map(|p| p.traces.len() as u64).sum::<u64>()
    }
}
