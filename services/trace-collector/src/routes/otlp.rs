//! `POST /v1/traces`, `/v1/logs` and `/v1/metrics` (OTLP/HTTP receivers), `GET /v1/traces/{trace_id}/otlp`, and
//! `POST /v1/import/claude-stream-json`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::CollectorState;
use crate::error::CollectorError;
use crate::routes::events::Rejected;
use crate::signals::Signal;
use crate::{import, otlp};

fn content_type(req: &HttpRequest) -> String {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

/// Receive OTLP traces
///
/// The OTLP/HTTP trace endpoint: point any OpenTelemetry SDK or collector's OTLP/HTTP exporter
/// at this service (`OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:7701`). Protobuf
/// (`application/x-protobuf`, the SDK default) or JSON (`application/json`); the answer has the
/// request's encoding. Invalid spans are rejected one by one (OTLP partial success); the valid
/// ones are durable when the 200 is sent.
#[utoipa::path(
    post,
    path = "/v1/traces",
    tag = "ingest",
    operation_id = "otlp_traces",
    security(("bearer" = ["traces:write"])),
    request_body(content(
        (std::collections::HashMap<String, serde_json::Value> = "application/json"),
        (Vec<u8> = "application/x-protobuf")
    )),
    responses(
        (status = 200, description = "ExportTraceServiceResponse (partial success names the rejected spans)", content(
            (serde_json::Value = "application/json"),
            (Vec<u8> = "application/x-protobuf")
        )),
        (status = 400, description = "the body is not an OTLP trace export request", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `trace_collector.otlp_max_body_bytes` (64 MiB by default) after decompression", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "neither protobuf nor JSON", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the disk cannot keep up; retry after `Retry-After` seconds", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn receive(
    state: web::Data<CollectorState>,
    req: HttpRequest,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    body: web::Bytes,
) -> Result<HttpResponse, CollectorError> {
    receive_signal(state, req, caller, body, None).await
}

/// Receive OTLP logs
///
/// The OTLP/HTTP logs endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:7701` sends here
/// too). Every log record becomes an event of the trace format: Claude Code's events
/// (`CLAUDE_CODE_ENABLE_TELEMETRY=1`) become LLM calls with tokens and cost (`api_request`) and
/// tool calls (`tool_result`) of one trace per session; other records are events of no length in
/// their span's trace, or their session's. Records sent again are stored once. Protobuf or JSON;
/// invalid records are rejected one by one (OTLP partial success).
#[utoipa::path(
    post,
    path = "/v1/logs",
    tag = "ingest",
    operation_id = "otlp_logs",
    security(("bearer" = ["traces:write"])),
    request_body(content(
        (std::collections::HashMap<String, serde_json::Value> = "application/json"),
        (Vec<u8> = "application/x-protobuf")
    )),
    responses(
        (status = 200, description = "ExportLogsServiceResponse (partial success counts the rejected records)", content(
            (serde_json::Value = "application/json"),
            (Vec<u8> = "application/x-protobuf")
        )),
        (status = 400, description = "the body is not an OTLP logs export request", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `trace_collector.otlp_max_body_bytes` (64 MiB by default) after decompression", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "neither protobuf nor JSON", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the disk cannot keep up; retry after `Retry-After` seconds", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn receive_logs(
    state: web::Data<CollectorState>,
    req: HttpRequest,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    body: web::Bytes,
) -> Result<HttpResponse, CollectorError> {
    receive_signal(state, req, caller, body, Some(Signal::Logs)).await
}

/// Receive OTLP metrics
///
/// The OTLP/HTTP metrics endpoint. Every data point (gauge, sum, histogram, summary) becomes an
/// event of no length named after its metric, with `metric.value` (or count, sum, min, max),
/// unit and temporality, in its session's trace. Points sent again are stored once. Metric values
/// are not counted as cost: Claude Code reports the same cost in its `api_request` log events,
/// which the cost table counts.
#[utoipa::path(
    post,
    path = "/v1/metrics",
    tag = "ingest",
    operation_id = "otlp_metrics",
    security(("bearer" = ["traces:write"])),
    request_body(content(
        (std::collections::HashMap<String, serde_json::Value> = "application/json"),
        (Vec<u8> = "application/x-protobuf")
    )),
    responses(
        (status = 200, description = "ExportMetricsServiceResponse (partial success counts the rejected points)", content(
            (serde_json::Value = "application/json"),
            (Vec<u8> = "application/x-protobuf")
        )),
        (status = 400, description = "the body is not an OTLP metrics export request", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `trace_collector.otlp_max_body_bytes` (64 MiB by default) after decompression", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "neither protobuf nor JSON", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the disk cannot keep up; retry after `Retry-After` seconds", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn receive_metrics(
    state: web::Data<CollectorState>,
    req: HttpRequest,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    body: web::Bytes,
) -> Result<HttpResponse, CollectorError> {
    receive_signal(state, req, caller, body, Some(Signal::Metrics)).await
}

/// The three OTLP receivers: decode (traces when `signal` is none), claim, ingest, answer in the
/// request's encoding.
async fn receive_signal(
    state: web::Data<CollectorState>,
    req: HttpRequest,
    caller: helix_core::auth::Principal,
    body: web::Bytes,
    signal: Option<Signal>,
) -> Result<HttpResponse, CollectorError> {
    let ct = content_type(&req);
    let protobuf = ct.starts_with("application/x-protobuf") || ct.starts_with("application/protobuf");
    if !protobuf && !ct.starts_with("application/json") {
        return Err(CollectorError::UnsupportedMediaType(
            "send application/x-protobuf or application/json".to_owned(),
        ));
    }
    let state = state.clone();
    let (what, item) = match signal {
        None => ("trace", "span"),
        Some(Signal::Logs) => ("logs", Signal::Logs.item()),
        Some(Signal::Metrics) => ("metrics", Signal::Metrics.item()),
    };
    let (rejected, message) = web::block(move || -> Result<(usize, String), CollectorError> {
        let decoded = match (signal, protobuf) {
            (None, true) => otlp::decode_protobuf(&body),
            (None, false) => otlp::decode_json(&body),
            (Some(s), true) => s.decode_protobuf(&body),
            (Some(s), false) => s.decode_json(&body),
        }
        .map_err(|e| CollectorError::Invalid(format!("not an OTLP {what} export request: {e}")))?;
        let mut events = Vec::with_capacity(decoded.len());
        let mut reasons = Vec::new();
        for (i, d) in decoded.into_iter().enumerate() {
            match d.and_then(|mut e| super::claim(&caller, &mut e).map(|()| e)) {
                Ok(e) => events.push(e),
                Err(r) => reasons.push(format!("{item} {i}: {r}")),
            }
        }
        state.ingest(events)?;
        Ok((reasons.len(), reasons.into_iter().take(10).collect::<Vec<_>>().join("; ")))
    })
    .await??;
    Ok(match (signal, protobuf) {
        (None, true) => HttpResponse::Ok()
            .content_type("application/x-protobuf")
            .body(otlp::export_response_protobuf(rejected, &message)),
        (None, false) => HttpResponse::Ok().json(otlp::export_response_json(rejected, &message)),
        (Some(s), true) => HttpResponse::Ok()
            .content_type("application/x-protobuf")
            .body(s.response_protobuf(rejected, &message)),
        (Some(s), false) => HttpResponse::Ok().json(s.response_json(rejected, &message)),
    })
}

/// One trace as OTLP JSON
///
/// The trace as an OTLP `ExportTraceServiceRequest` in JSON, ready for any OTLP consumer.
#[utoipa::path(
    get,
    path = "/v1/traces/{trace_id}/otlp",
    tag = "query",
    operation_id = "get_trace_otlp",
    security(("bearer" = ["traces:read"])),
    params(("trace_id" = String, Path, description = "32 lowercase hex digits", pattern = "^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "OTLP JSON", body = serde_json::Value),
        (status = 400, description = "not a trace id", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such trace", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_otlp(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, CollectorError> {
    let id = path.into_inner();
    crate::routes::traces::check_trace_id(&id)?;
    crate::routes::traces::check_visible(&state, &caller, &id)?;
    let store = state.store.clone();
    let lookup = id.clone();
    let events = web::block(move || store.trace(&lookup)).await??;
    if events.is_empty() {
        return Err(CollectorError::TraceNotFound(id));
    }
    Ok(HttpResponse::Ok().json(otlp::to_otlp_json(&events)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Project of the imported trace.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub run: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    /// Spans the transcript yielded.
    pub accepted: usize,
    /// Of those, spans already stored by an earlier import of the same lines, not stored again.
    pub duplicates: usize,
    /// Traces created or extended (one per session).
    pub trace_ids: Vec<String>,
    /// Lines not imported: `index` is the 1-based line number.
    pub skipped: Vec<Rejected>,
}

/// Import a Claude Code transcript
///
/// Turns the output of `claude -p --output-format stream-json --verbose` into a trace: a run span
/// per session, an LLM call span per assistant message (with token usage), a tool call span per
/// tool use (with argument and result summaries), total cost on the root. Idempotent: importing
/// the same transcript again gives the same ids (keyed by session id and message, tool use or
/// line), and spans already stored are dropped (`duplicates`), so spans and cost count once. A
/// transcript that grew since adds its new spans; spans stored before keep their first copy.
#[utoipa::path(
    post,
    path = "/v1/import/claude-stream-json",
    tag = "ingest",
    operation_id = "import_claude_stream_json",
    security(("bearer" = ["traces:write"])),
    params(ImportQuery),
    request_body(description = "the transcript, one JSON object per line", content(
        (String = "application/x-ndjson"),
        (String = "text/plain")
    )),
    responses(
        (status = 200, description = "imported; the events are durable", body = ImportResult),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "not NDJSON or text", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the disk cannot keep up; retry after `Retry-After` seconds", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn import_claude(
    state: web::Data<CollectorState>,
    req: HttpRequest,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<ImportQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, CollectorError> {
    let ct = content_type(&req);
    if !(ct.contains("ndjson") || ct.contains("jsonl") || ct.starts_with("text/plain")) {
        return Err(CollectorError::UnsupportedMediaType(
            "send the transcript as application/x-ndjson or text/plain".to_owned(),
        ));
    }
    let mut q = query.into_inner();
    if caller.projects.is_some() {
        q.project = super::read_scope(&caller, q.project.take())?;
    }
    let state = state.clone();
    let result = web::block(move || -> Result<ImportResult, CollectorError> {
        let text = String::from_utf8_lossy(&body);
        let opts =
            import::ImportOptions { project: q.project, phase: q.phase, run: q.run, start_unix_nanos: None };
        let imported = import::import_claude_stream_json(&text, &opts);
        let mut trace_ids: Vec<String> = imported.events.iter().map(|e| e.trace_id.clone()).collect();
        trace_ids.sort();
        trace_ids.dedup();
        let accepted = imported.events.len();
        let appended = state.ingest(imported.events)?;
        Ok(ImportResult {
            accepted,
            duplicates: appended.duplicates,
            trace_ids,
            skipped: imported.skipped.into_iter().map(|(index, reason)| Rejected { index, reason }).collect(),
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(result))
}
