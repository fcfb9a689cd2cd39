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
    /// Traces whose name, project, run or a phase contains this text (any case), or whose id
    /// starts with it.
    #[param(max_length = 200)]
    #[serde(default)]
    pub q: Option<String>,
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
/// filtered by project, phase, time range, status and text (`q`); paginated with `cursor`.
#[utoipa::path(
    get,
    path = "/v1/traces",
    tag = "query",
    operation_id = "list_traces",
    security(("bearer" = ["traces:read"])),
    params(TraceQuery),
    responses(
        (status = 200, description = "traces, newest first", body = TraceList),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<TraceQuery>,
) -> Result<HttpResponse, CollectorError> {
    let mut q = query.into_inner();
    // an empty parameter (`?project=`) means no filter
    for v in [&mut q.project, &mut q.phase] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    q.project = super::read_scope(&caller, q.project.take())?;
    let limit =
        helix_http::routes::limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT).map_err(CollectorError::InvalidQuery)?;
    let filter = TraceFilter {
        project: q.project,
        phase: q.phase,
        status: q.status,
        since_unix_nanos: q.since.as_deref().map(|v| instant("since", v)).transpose()?,
        until_unix_nanos: q.until.as_deref().map(|v| instant("until", v)).transpose()?,
        text: match q.q.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) if t.chars().count() > 200 => {
                return Err(CollectorError::InvalidQuery("q must be at most 200 characters".to_owned()));
            }
            Some(t) => Some(t.to_lowercase()),
        },
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

/// The `spans` array of a [`TraceTree`] written straight from the stored JSON of each span: the
/// same document as decoding every span into [`SpanNode`]s and encoding them, without decoding
/// and encoding megabytes of JSON (the ids and times the tree needs come from the index).
pub fn tree_json(records: &[crate::store::SpanRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.json.len() + 96).sum::<usize>() + 2);
    write_tree_json(records, &mut out);
    out
}

/// [`tree_json`] appended to `out` (the answer's buffer: megabytes are not copied once more).
pub fn write_tree_json(records: &[crate::store::SpanRecord], out: &mut Vec<u8>) {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_unstable_by_key(|i| (records[*i].start_unix_nanos, records[*i].span_id, *i));
    let start = records.iter().map(|r| r.start_unix_nanos).min().unwrap_or(0);
    let ids: hashbrown::HashSet<u64> = records.iter().map(|r| r.span_id).collect();
    let mut children: hashbrown::HashMap<u64, Vec<usize>> = hashbrown::HashMap::new();
    let mut roots = Vec::new();
    for &i in &order {
        match records[i].parent_span_id.filter(|p| ids.contains(p)) {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    fn write(
        out: &mut Vec<u8>,
        i: usize,
        records: &[crate::store::SpanRecord],
        children: &mut hashbrown::HashMap<u64, Vec<usize>>,
        start: u64,
        depth: usize,
    ) {
        let r = &records[i];
        out.extend_from_slice(b"{\"span\":");
        out.extend_from_slice(&r.json);
        let offset = r.start_unix_nanos.saturating_sub(start);
        let duration = r.end_unix_nanos.saturating_sub(r.start_unix_nanos);
        // itoa, not `write!`: formatting machinery per number was a tenth of a 10k-span read
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b",\"offset_nanos\":");
        out.extend_from_slice(n.format(offset).as_bytes());
        out.extend_from_slice(b",\"duration_nanos\":");
        out.extend_from_slice(n.format(duration).as_bytes());
        out.extend_from_slice(b",\"children\":[");
        let kids = if depth < 512 { children.remove(&r.span_id).unwrap_or_default() } else { Vec::new() };
        for (n, k) in kids.into_iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write(out, k, records, children, start, depth + 1);
        }
        out.extend_from_slice(b"]}");
    }
    out.reserve(records.iter().map(|r| r.json.len() + 96).sum::<usize>() + 2);
    out.push(b'[');
    for (n, r) in roots.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write(out, r, records, &mut children, start, 0);
    }
    out.push(b']');
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

/// A trace of a project the caller may not see does not exist for it (404).
pub fn check_visible(
    state: &CollectorState,
    caller: &helix_core::auth::Principal,
    id: &str,
) -> Result<(), CollectorError> {
    if caller.projects.is_none() {
        return Ok(());
    }
    match state.store.summary(id) {
        Some(s) if s.project.as_deref().is_some_and(|p| caller.may_access(p)) => Ok(()),
        _ => Err(CollectorError::TraceNotFound(id.to_owned())),
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
    security(("bearer" = ["traces:read"])),
    params(("trace_id" = String, Path, description = "32 lowercase hex digits", pattern = "^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "the trace", body = TraceTree),
        (status = 400, description = "not a trace id", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such trace", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, CollectorError> {
    let id = path.into_inner();
    check_trace_id(&id)?;
    check_visible(&state, &caller, &id)?;
    let store = state.store.clone();
    let lookup = id.clone();
    // reading and assembling megabytes of JSON is blocking work
    let body = web::block(move || -> Result<Option<Vec<u8>>, crate::store::StoreError> {
        let records = store.trace_records(&lookup)?;
        let Some(summary) = store.summary(&lookup).filter(|_| !records.is_empty()) else { return Ok(None) };
        let mut body = b"{\"summary\":".to_vec();
        serde_json::to_writer(&mut body, &summary)?;
        body.extend_from_slice(b",\"spans\":");
        write_tree_json(&records, &mut body);
        body.push(b'}');
        Ok(Some(body))
    })
    .await??;
    let body = body.ok_or(CollectorError::TraceNotFound(id))?;
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the span tree built from decoded events (spans whose parent is missing
    /// become roots).
    fn tree(events: Vec<Event>) -> Vec<SpanNode> {
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

    #[test]
    fn the_tree_written_from_stored_json_equals_the_decoded_tree() {
        let mut events = Vec::new();
        // a root, children out of order, a grandchild, an orphan whose parent never arrived
        for (span, parent, start) in [
            (1u32, None, 100u64),
            (3, Some(1u32), 300),
            (2, Some(1), 200),
            (4, Some(2), 250),
            (5, Some(9), 50),
        ] {
            events.push(
                serde_json::from_value::<Event>(serde_json::json!({
                    "trace_id": format!("{:032x}", 7), "span_id": format!("{span:016x}"),
                    "parent_span_id": parent.map(|p| format!("{p:016x}")), "name": format!("s{span}"),
                    "kind": "tool_call", "start_unix_nanos": start, "end_unix_nanos": start + 10 + u64::from(span),
                    "attributes": {"gen_ai.tool.name": "Bash", "x": [1, {"y": "z"}]}
                }))
                .expect("event"),
            );
        }
        let id = |s: &str| u64::from_str_radix(s, 16).expect("hex");
        let records: Vec<crate::store::SpanRecord> = events
            .iter()
            .map(|e| crate::store::SpanRecord {
                span_id: id(&e.span_id),
                parent_span_id: e.parent_span_id.as_deref().map(id),
                start_unix_nanos: e.start_unix_nanos,
                end_unix_nanos: e.end_unix_nanos,
                json: serde_json::to_vec(e).expect("json").into(),
            })
            .collect();
        let fast: serde_json::Value = serde_json::from_slice(&tree_json(&records)).expect("valid json");
        // the decoded path: spans in start order, as `EventStore::trace` returns them
        events.sort_by_key(|e| e.start_unix_nanos);
        let slow = serde_json::to_value(tree(events)).expect("json");
        assert_eq!(fast, slow);
        assert_eq!(fast.as_array().map(Vec::len), Some(2), "the orphan is a root");
    }
}
