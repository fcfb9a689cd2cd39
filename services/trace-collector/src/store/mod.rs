//! Event storage: the seam between the collector's domain and its disk.
//!
//! [`log::LogStore`] is the embedded backend: an append-only, segmented, checksummed log with
//! group commit (one fsync acknowledges every batch that arrived meanwhile), recovered at open
//! (damaged records skipped and quarantined, a torn tail cut), and an in-memory index from trace
//! id to record positions.
//!
//! **Ingest is idempotent.** A span is identified by `(trace_id, span_id)`. A span already stored
//! (or being stored by a concurrent request) is dropped, not stored again: the first copy wins,
//! and a client that retries a batch it got no answer for, or a transcript imported twice, counts
//! once in listings, costs and baselines. Dropped copies are counted ([`Appended::duplicates`]).

pub mod log;
mod table;

use helix_core::trace::{Event, SpanStatus};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event log {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the event log writer has stopped")]
    Closed,
    #[error("the event log is busy; retry shortly")]
    Busy,
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A stored span as its JSON (an [`Event`]) and what a span tree needs of it, read from the
/// index rather than decoded.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The span id's 16 hex digits as a number.
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// A slice of the buffer the span was read with (a trace read makes no copy per span).
    pub json: bytes::Bytes,
}

/// One trace in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TraceSummary {
    pub trace_id: String,
    /// Name of the root span (or of the earliest span when no root arrived yet).
    pub name: String,
    pub project: Option<String>,
    pub run: Option<String>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub spans: u64,
    /// The root span's status once it arrived with one set (a run that healed a failure is
    /// `ok`); before that, or for an unset root, `error` when any span failed, else `ok` when
    /// any succeeded, else `unset`.
    pub status: SpanStatus,
    /// Phases seen, in order of first appearance.
    pub phases: Vec<String>,
    /// Sum of `helix.cost_usd`.
    pub cost_usd: f64,
}

/// Filters of `GET /v1/traces`.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    pub project: Option<String>,
    pub phase: Option<String>,
    pub status: Option<SpanStatus>,
    /// Traces that end at or after this instant.
    pub since_unix_nanos: Option<u64>,
    /// Traces that start before this instant.
    pub until_unix_nanos: Option<u64>,
    /// Traces whose name, id, project, run or a phase contains this (lowercase) text.
    pub text: Option<String>,
}

impl TraceFilter {
    /// Whether a trace's texts match [`TraceFilter::text`].
    pub fn text_matches<'a>(&self, id: &str, texts: impl IntoIterator<Item = &'a str>) -> bool {
        let Some(needle) = self.text.as_deref() else { return true };
        id.starts_with(needle) || texts.into_iter().any(|t| t.to_lowercase().contains(needle))
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    /// Events written (durable when the append returned).
    pub stored: usize,
    /// Events dropped because a span with the same `(trace_id, span_id)` was already stored.
    pub duplicates: usize,
}

/// Damage found in the store: records that failed their checksums, kept aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Damage {
    pub regions: u64,
    pub bytes: u64,
}

/// The storage seam.
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Appends valid events; returns once they are on disk (fsynced). Spans already stored are
    /// dropped (see the module docs).
    fn append(&self, events: Vec<Event>) -> Result<Appended, StoreError> {
        self.append_prepared(events, &mut |_| {})
    }
    /// [`EventStore::append`], showing the events that will be written (duplicates removed) to
    /// `prepare` first, which may change them (mark anomalies) and sees each span once.
    fn append_prepared(
        &self,
        events: Vec<Event>,
        prepare: &mut dyn FnMut(&mut Vec<Event>),
    ) -> Result<Appended, StoreError>;
    /// Damaged records found so far (at open and on reads).
    fn damage(&self) -> Damage {
        Damage::default()
    }
    /// Every stored span of a trace, in start order.
    fn trace(&self, trace_id: &str) -> Result<Vec<Event>, StoreError> {
        let mut events: Vec<Event> = self
            .trace_records(trace_id)?
            .iter()
            .filter_map(|r| serde_json::from_slice::<Event>(&r.json).ok())
            .collect();
        events.sort_by(|a, b| {
            a.start_unix_nanos.cmp(&b.start_unix_nanos).then_with(|| a.span_id.cmp(&b.span_id))
        });
        Ok(events)
    }
    /// Every stored span of a trace as its stored JSON (an [`Event`]), in no particular order:
    /// for answers that pass spans through without decoding them.
    fn trace_records(&self, trace_id: &str) -> Result<Vec<SpanRecord>, StoreError>;
    /// Cost attribution over events starting in `[from, to)`.
    fn costs(
        &self,
        group_by: crate::costs::GroupBy,
        bucket: Option<crate::costs::GroupBy>,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Vec<crate::costs::CostRow>;
    /// The summary of one trace.
    fn summary(&self, trace_id: &str) -> Option<TraceSummary>;
    /// Traces matching `filter`, newest first, after `after` (a (start, trace id) cursor).
    fn traces(&self, filter: &TraceFilter, after: Option<(u64, String)>, limit: usize) -> Vec<TraceSummary>;
    /// Removes the oldest data: events that ended before `min_end`, and more while the store is
    /// larger than `max_bytes`. Returns how many storage units (segments) were removed.
    fn enforce_retention(&self, min_end: Option<u64>, max_bytes: Option<u64>) -> Result<usize, StoreError>;
    /// The position after everything stored so far (saved with state rebuilt from events, so
    /// that a restart replays only what came after it).
    fn end(&self) -> (u32, u64);
    /// Number of events stored.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
