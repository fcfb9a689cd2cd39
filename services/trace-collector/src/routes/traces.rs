//! `GET /v1/traces` and `GET /v1/traces/{trace_id}`.

use actix_web::{HttpResponse, web};
use helix_core::trace::{Event, SpanStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::CollectorState;
use crate::error::CollectorError;
use crate::store::{TraceFilter, TraceSummary};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    #[serde(default)]
    pub project: Option<String>,
    /// Traces that have a span in this phase.
    #[serde(default)]
    pub phase: Option<String>,
    /// Traces ending at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    #[serde(default)]
    pub since: Option<String>,
    /// Traces starting before this instant (RFC 3339).
    #[param(format = DateTime)]
    #[serde(default)]
    pub until: Option<String>,
    /// `ok`, `error` or `unset`.
    #[serde(default)]
    pub status: Option<SpanStatus>,
    /// At most this many (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}:[0-9a-f]{32}$")]
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TraceList {
    pub traces: Vec<TraceSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn instant(name: &str, v: &str) -> Result<u64, CollectorError> {
    helix_core::time::parse_rfc3339_nanos(v).ok_or_else(|| {
        CollectorError::InvalidQuery(format!("{name} must be an RFC 3339 date-time, got {v:?}"))
    })
}

/// Cursors are `start:trace_id` of the last trace of the previous page (the sort key).
fn decode_cursor(c: &str) -> Result<(u64, String), CollectorError> {
    let bad =
        || CollectorError::InvalidQuery("invalid cursor: pass next_cursor of the previous page".to_owned());
    let (start, id) = c.split_once(':').ok_or_else(bad)?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad());
    }
    Ok((start.parse().map_err(|_| bad())?, id.to_owned()))
}

/// List traces
///
/// Traces (runs), newest first, with their name, project, phases, span count, status and cost;
/// filtered by project, phase, time range and status; paginated with `cursor`.
#[utoipa::path(
    get,
    path = "/v1/traces",
    tag = "query",
    operation_id = "list_traces",
    params(TraceQuery),
    responses(
        (status = 200, description = "traces, newest first", body = TraceList),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    state: web::Data<CollectorState>,
    query: web::Query<TraceQuery>,
) -> Result<HttpResponse, CollectorError> {
    let mut q = query.into_inner();
    // an empty parameter (`?project=`) means no filter
    for v in [&mut q.project, &mut q.phase] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    let limit =
        helix_http::routes::limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT).map_err(CollectorError::InvalidQuery)?;
    let filter = TraceFilter {
        project: q.project,
        phase: q.phase,
        status: q.status,
        since_unix_nanos: q.since.as_deref().map(|v| instant("since", v)).transpose()?,
        until_unix_nanos: q.until.as_deref().map(|v| instant("until", v)).transpose()?,
    };
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut traces = state.store.traces(&filter, after, limit + 1);
    let next_cursor = if traces.len() > limit {
        traces.truncate(limit);
        traces.last().map(|t| format!("{}:{}", t.start_unix_nanos, t.trace_id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(TraceList { traces, next_cursor }))
}

/// A span and its children.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpanNode {
    pub span: Event,
    /// Start relative to the trace's start, in nanoseconds.
    pub offset_nanos: u64,
    pub duration_nanos: u64,
    #[schema(no_recursion)]
    pub children: Vec<SpanNode>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TraceTree {
    pub summary: TraceSummary,
    /// Root spans (spans whose parent did not arrive are roots too), children in start order.
    pub spans: Vec<SpanNode>,
}

/// Builds the span tree; spans whose parent is missing become roots.
pub fn tree(events: Vec<Event>) -> Vec<SpanNode> {
    let start = events.iter().map(|e| e.start_unix_nanos).min().unwrap_or(0);
    let ids: std::collections::HashSet<String> = events.iter().map(|e| e.span_id.clone()).collect();
    let mut children: std::collections::HashMap<String, Vec<Event>> = std::collections::HashMap::new();
    let mut roots = Vec::new();
    for e in events {
        match e.parent_span_id.clone().filter(|p| ids.contains(p)) {
            Some(p) => children.entry(p).or_default().push(e),
            None => roots.push(e),
        }
    }
    fn build(
        e: Event,
        start: u64,
        children: &mut std::collections::HashMap<String, Vec<Event>>,
        depth: usize,
    ) -> SpanNode {
        let kids = if depth < 512 { children.remove(&e.span_id).unwrap_or_default() } else { Vec::new() };
        SpanNode {
            offset_nanos: e.start_unix_nanos.saturating_sub(start),
            duration_nanos: e.duration_nanos(),
            children: kids.into_iter().map(|k| build(k, start, children, depth + 1)).collect(),
            span: e,
        }
    }
    roots.into_iter().map(|r| build(r, start, &mut children, 0)).collect()
}

/// A trace id in a path must be 32 lowercase hex digits.
pub fn check_trace_id(id: &str) -> Result<(), CollectorError> {
    if helix_core::trace::is_lower_hex(id, 32) {
        Ok(())
    } else {
        Err(CollectorError::Invalid(format!(
            "trace id must be 32 lowercase hex digits, got {:?}",
            id.chars().take(40).collect::<String>()
        )))
    }
}

/// One trace as a span tree
///
/// Every span of the trace, nested under its parent, in start order, with offsets from the
/// trace's start.
#[utoipa::path(
    get,
    path = "/v1/traces/{trace_id}",
    tag = "query",
    operation_id = "get_trace",
    params(("trace_id" = String, Path, description = "32 lowercase hex digits", pattern = "^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "the trace", body = TraceTree),
        (status = 400, description = "not a trace id", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such trace", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(
    state: web::Data<CollectorState>,
    path: web::Path<String>,
) -> Result<HttpResponse, CollectorError> {
    let id = path.into_inner();
    check_trace_id(&id)?;
    let store = state.store.clone();
    let lookup = id.clone();
    let events = web::block(move || store.trace(&lookup)).await??;
    if events.is_empty() {
        return Err(CollectorError::TraceNotFound(id));
    }
    let summary = state.store.summary(&id).ok_or_else(|| CollectorError::TraceNotFound(id.clone()))?;
    Ok(HttpResponse::Ok().json(TraceTree { summary, spans: tree(events) }))
}
