//! `GET /metrics`: the collector's counters in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};

use crate::CollectorState;

/// Prometheus metrics
///
/// Events stored, duplicate spans dropped, damaged records kept aside (a non-zero value means
/// the event log found records that failed their checksums), and the OTLP forwarder's counters,
/// in the Prometheus text format 0.0.4.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ingest",
    operation_id = "collector_metrics",
    security(("bearer" = ["ops:read"])),
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String))
)]
pub async fn metrics(state: web::Data<CollectorState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(render(&state))
}

/// The metrics text.
pub fn render(state: &CollectorState) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let damage = state.store.damage();
    metric("helix_collector_events_stored", "gauge", "Events in the event log.", state.store.len());
    metric(
        "helix_collector_duplicate_spans_total",
        "counter",
        "Spans dropped because the same (trace_id, span_id) was already stored.",
        state.duplicates.load(Ordering::Relaxed),
    );
    metric(
        "helix_collector_damaged_records",
        "gauge",
        "Damaged regions of the event log that failed their checksums, kept in events/quarantine/.",
        damage.regions,
    );
    metric("helix_collector_damaged_bytes", "gauge", "Bytes kept in events/quarantine/.", damage.bytes);
    if let Some(x) = &state.export {
        metric(
            "helix_collector_export_forwarded_spans_total",
            "counter",
            "Spans the OTLP receiver accepted.",
            x.forwarded.load(Ordering::Relaxed),
        );
        metric(
            "helix_collector_export_dead_lettered_spans_total",
            "counter",
            "Spans the OTLP receiver refused for good (written to export.deadletter.ndjson).",
            x.dead_lettered.load(Ordering::Relaxed),
        );
        metric(
            "helix_collector_export_retries_total",
            "counter",
            "Forwarding requests retried (connection failures, 429, 502, 503, 504).",
            x.retries.load(Ordering::Relaxed),
        );
        metric(
            "helix_collector_export_splits_total",
            "counter",
            "Batches split in halves after a 413.",
            x.splits.load(Ordering::Relaxed),
        );
    }
    out
}
