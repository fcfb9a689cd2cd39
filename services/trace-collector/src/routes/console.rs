//! `GET /v1/console`, `GET /v1/feed` and the dashboard's deep links: what the console shows
//! beside traces and costs (domain in [`crate::console`]).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::CollectorState;
use crate::error::CollectorError;

/// A trace in the dashboard
///
/// The dashboard opened on one trace: its timeline and span details (a link to share).
#[utoipa::path(
    get,
    path = "/dashboard/traces/{trace_id}",
    tag = "costs",
    operation_id = "dashboard_trace",
    security(()),
    params(("trace_id" = String, Path, description = "32 lowercase hex digits", pattern = "^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "the dashboard page", content_type = "text/html", body = String),
        (status = 400, description = "not a trace id", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn dashboard_trace(path: web::Path<String>) -> Result<HttpResponse, CollectorError> {
    crate::routes::traces::check_trace_id(&path.into_inner())?;
    Ok(super::costs::dashboard().await)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// Runs and signatures of this project only.
    #[serde(default)]
    pub project: Option<String>,
    /// At most this many runs and signatures (default 30, at most 200).
    #[param(minimum = 1, maximum = 200)]
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Console views
///
/// What the dashboard shows beside traces, from the spans the services report: the gateway's
/// circuit breakers (last state of each deployment's), the orchestrator's recent runs with their
/// retries, heals and errors, and the failure signatures healed most often (with the last fix).
/// Callers limited to projects see their projects' runs and signatures, and no circuits.
#[utoipa::path(
    get,
    path = "/v1/console",
    tag = "costs",
    operation_id = "console",
    security(("bearer" = ["traces:read"])),
    params(ConsoleQuery),
    responses(
        (status = 200, description = "circuits, runs, signatures", body = crate::console::ConsoleView),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn console(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<ConsoleQuery>,
) -> Result<HttpResponse, CollectorError> {
    let q = query.into_inner();
    let limited = caller.projects.is_some();
    let project = super::read_scope(&caller, q.project)?;
    let limit = helix_http::routes::limit(q.limit, 30, 200).map_err(CollectorError::InvalidQuery)?;
    let view = state.console.lock().unwrap_or_else(std::sync::PoisonError::into_inner).view(
        project.as_deref(),
        limited,
        limit,
    );
    Ok(HttpResponse::Ok().json(view))
}

const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The `last` of the previous answer; 0 (the default) for the newest entries.
    #[param(minimum = 0, maximum = 9007199254740991_i64)]
    #[serde(default)]
    pub after: Option<u64>,
    #[serde(default)]
    pub project: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Recent spans and anomalies
///
/// The live feed for pages that poll: what was stored after `after` (the newest thousand are
/// kept), answered at once. `GET /v1/stream` carries the same as server-sent events.
#[utoipa::path(
    get,
    path = "/v1/feed",
    tag = "query",
    operation_id = "feed",
    security(("bearer" = ["traces:read"])),
    params(FeedQuery),
    responses(
        (status = 200, description = "entries after `after`, oldest first", body = crate::console::FeedPage),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn feed(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, CollectorError> {
    let q = query.into_inner();
    // sequence numbers stay below 2^53, where JavaScript numbers are exact
    if q.after.is_some_and(|a| a > MAX_SAFE_INTEGER) {
        return Err(CollectorError::InvalidQuery(format!("after must be at most {MAX_SAFE_INTEGER}")));
    }
    let project = super::read_scope(&caller, q.project)?;
    let limit = helix_http::routes::limit(q.limit, 100, 1000).map_err(CollectorError::InvalidQuery)?;
    let page = state.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).after(
        q.after.unwrap_or(0),
        project.as_deref(),
        limit,
    );
    Ok(HttpResponse::Ok().json(page))
}
