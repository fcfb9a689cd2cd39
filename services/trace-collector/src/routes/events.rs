//! `POST /v1/events`: ingest, durable before the answer.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use helix_core::trace::Event;
use serde::Serialize;
use utoipa::ToSchema;

use crate::CollectorState;
use crate::error::CollectorError;

/// An event that was not stored, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    /// Position in the batch (0-based; for NDJSON, the line among non-empty lines).
    pub index: usize,
    pub reason: String,
}

/// Outcome of an ingest: the accepted events are on disk.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResult {
    /// Valid events: stored now, or already stored before (see `duplicates`).
    pub accepted: usize,
    /// Accepted events whose span (`trace_id`, `span_id`) was already stored: dropped, not stored
    /// twice. A retried batch is therefore safe.
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// Splits a body into events: a JSON array, or NDJSON (one object per line). Each element is parsed and validated on its own, so one bad event does not cost the
/// others.
pub fn parse_batch(body: &[u8], ndjson: bool) -> Result<(Vec<Event>, Vec<Rejected>), CollectorError> {
    parse_batch_as(body, ndjson, &|_| Ok(()))
}

/// [`parse_batch`], each valid event also passing `admit` (the caller's project rules).
pub fn parse_batch_as(
    body: &[u8],
    ndjson: bool,
    admit: &dyn Fn(&mut Event) -> Result<(), String>,
) -> Result<(Vec<Event>, Vec<Rejected>), CollectorError> {
    let text =
        std::str::from_utf8(body).map_err(|e| CollectorError::Invalid(format!("body is not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if !ndjson && !trimmed.starts_with('[') {
        return Err(CollectorError::Invalid(
            "expected a JSON array of events (or send NDJSON as application/x-ndjson)".to_owned(),
        ));
    }
    let items: Vec<Result<serde_json::Value, String>> = if !ndjson {
        match serde_json::from_str::<Vec<serde_json::Value>>(trimmed) {
            Ok(values) => values.into_iter().map(Ok).collect(),
            Err(e) => {
                return Err(CollectorError::Invalid(format!("body is not a JSON array of events: {e}")));
            }
        }
    } else {
        trimmed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
            .collect()
    };
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let parsed = item.and_then(|v| serde_json::from_value::<Event>(v).map_err(|e| e.to_string()));
        // over-long values are cut, not the whole span refused
        match parsed.and_then(|mut e| {
            e.clamp();
            e.validate().and_then(|()| admit(&mut e)).map(|()| e)
        }) {
            Ok(e) => events.push(e),
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    Ok((events, rejected))
}

/// Ingest events
///
/// Accepts a JSON array of events (schema `Event`), or NDJSON (one event per line,
/// `application/x-ndjson`). Invalid events are rejected one by one with their index and reason;
/// the valid ones of the same batch are stored. A 2xx means the accepted events are durable
/// (fsynced). When the disk cannot keep up: 503 with `Retry-After`. Idempotent: a span
/// (`trace_id`, `span_id`) already stored is dropped and counted in `duplicates` (the first copy
/// wins), so retrying a batch that got no answer is safe.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "ingest",
    operation_id = "ingest_events",
    security(("bearer" = ["traces:write"])),
    request_body(content(
        // elements are validated one by one (invalid ones reported, not fatal): any value here
        (Vec<serde_json::Value> = "application/json"),
        (String = "application/x-ndjson")
    )),
    responses(
        (status = 200, description = "accepted events are durable; rejected ones are listed", body = IngestResult),
        (status = 400, description = "the body is not a JSON array or NDJSON", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "neither JSON nor NDJSON", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the disk cannot keep up; retry after `Retry-After` seconds", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn ingest(
    state: web::Data<CollectorState>,
    req: HttpRequest,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    body: web::Bytes,
) -> Result<HttpResponse, CollectorError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !(ct.starts_with("application/json")
        || ct.contains("ndjson")
        || ct.contains("jsonl")
        || ct.contains("+json"))
    {
        return Err(CollectorError::UnsupportedMediaType(
            "send application/json or application/x-ndjson".to_owned(),
        ));
    }
    let ndjson = ct.contains("ndjson") || ct.contains("jsonl");
    let state = state.clone();
    let result = web::block(move || -> Result<IngestResult, CollectorError> {
        let (events, rejected) = parse_batch_as(&body, ndjson, &|e| super::claim(&caller, e))?;
        let accepted = events.len();
        let appended = state.ingest(events)?;
        Ok(IngestResult { accepted, duplicates: appended.duplicates, rejected })
    })
    .await??;
    Ok(HttpResponse::Ok().json(result))
}
