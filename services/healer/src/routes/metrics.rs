//! `GET /metrics`: the healer's counters in the Prometheus text format.

use std::fmt::Write;

use actix_web::{HttpResponse, web};

use crate::HealerState;

/// Prometheus metrics
///
/// Signatures known, patterns loaded, and damaged records of the learning log kept aside (a
/// non-zero value means records failed their checksums at start-up); with `database_url`,
/// whether PostgreSQL answers and how many occurrences wait for it. In the Prometheus text
/// format 0.0.4.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "learning",
    operation_id = "healer_metrics",
    security(("bearer" = ["ops:read"])),
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String))
)]
pub async fn metrics(state: web::Data<HealerState>) -> HttpResponse {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    let (regions, bytes) = state.store.damage();
    metric(
        "helix_healer_signatures",
        "Signatures the learning store knows.",
        state.store.signatures() as u64,
    );
    metric("helix_healer_patterns", "Patterns loaded.", state.patterns.len() as u64);
    metric(
        "helix_healer_damaged_records",
        "Damaged regions of the learning log that failed their checksums, kept in learning.quarantine/.",
        regions,
    );
    metric("helix_healer_damaged_bytes", "Bytes kept in learning.quarantine/.", bytes);
    if let Some(db) = state.store.backend() {
        metric(
            "helix_healer_database_up",
            "1 when the last PostgreSQL round trip worked.",
            u64::from(db.reachable),
        );
        metric(
            "helix_healer_database_buffered_occurrences",
            "Occurrences waiting for PostgreSQL.",
            db.buffered,
        );
        metric(
            "helix_healer_database_dropped_occurrences",
            "Occurrences dropped because too many waited for PostgreSQL.",
            db.dropped,
        );
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(out)
}
