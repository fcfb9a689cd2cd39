//! `GET /v1/costs`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::CollectorState;
use crate::costs::{CostRow, GroupBy};
use crate::error::CollectorError;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CostQuery {
    /// Dimension to group by.
    pub group_by: GroupBy,
    /// Also split each group by `day` or `week`.
    #[serde(default)]
    pub bucket: Option<Bucket>,
    /// Events starting at or after this instant (RFC 3339; whole UTC days).
    #[param(format = DateTime)]
    #[serde(default)]
    pub from: Option<String>,
    /// Events starting before this instant (RFC 3339; whole UTC days).
    #[param(format = DateTime)]
    #[serde(default)]
    pub to: Option<String>,
}

/// Time buckets a cost table can be split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Day,
    Week,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostReport {
    pub group_by: GroupBy,
    /// Groups, most expensive first (`day` and `week`: in time order).
    pub rows: Vec<CostRow>,
    /// Sum over all rows.
    pub total: CostRow,
}

/// Cost attribution
///
/// Sums of cost (`helix.cost_usd`), tokens in and out, LLM and tool calls and the time spent in
/// them, grouped by project, phase, model, domain, day or week, over an optional time range.
#[utoipa::path(
    get,
    path = "/v1/costs",
    tag = "costs",
    operation_id = "costs",
    security(("bearer" = ["traces:read"])),
    params(CostQuery),
    responses(
        (status = 200, description = "the cost table", body = CostReport),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn costs(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<CostQuery>,
) -> Result<HttpResponse, CollectorError> {
    let q = query.into_inner();
    // sums of other dimensions mix projects: a token limited to projects sees its projects' rows
    if caller.projects.is_some() && q.group_by != GroupBy::Project {
        return Err(CollectorError::Forbidden(format!(
            "token {:?} is limited to projects: only group_by=project is available to it",
            &*caller.id
        )));
    }
    let instant = |name: &str, v: &Option<String>| -> Result<Option<u64>, CollectorError> {
        v.as_deref()
            .map(|s| {
                helix_core::time::parse_rfc3339_nanos(s).ok_or_else(|| {
                    CollectorError::InvalidQuery(format!("{name} must be an RFC 3339 date-time, got {s:?}"))
                })
            })
            .transpose()
    };
    let (from, to) = (instant("from", &q.from)?, instant("to", &q.to)?);
    let bucket = q.bucket.map(|b| match b {
        Bucket::Day => GroupBy::Day,
        Bucket::Week => GroupBy::Week,
    });
    let mut rows = state.store.costs(q.group_by, bucket, from, to);
    if caller.projects.is_some() {
        rows.retain(|r| caller.may_access(r.key.split(" / ").next().unwrap_or(&r.key)));
    }
    let mut total = CostRow { key: "total".to_owned(), ..CostRow::default() };
    for r in &rows {
        total.add(r);
    }
    Ok(HttpResponse::Ok().json(CostReport { group_by: q.group_by, rows, total }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnomalyQuery {
    #[serde(default)]
    pub project: Option<String>,
    /// At most this many (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyList {
    /// Newest first.
    pub anomalies: Vec<crate::anomaly::Anomaly>,
}

/// Recent anomalies
///
/// Phases and LLM calls whose duration, cost or tokens were far from their baseline (modified
/// z-score over median and MAD of the recent history of the same project and phase, or model),
/// newest first, each with a readable reason. The flagged spans carry the reason in their
/// `helix.anomaly` attribute.
#[utoipa::path(
    get,
    path = "/v1/anomalies",
    tag = "costs",
    operation_id = "anomalies",
    security(("bearer" = ["traces:read"])),
    params(AnomalyQuery),
    responses(
        (status = 200, description = "recent anomalies", body = AnomalyList),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn anomalies(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<AnomalyQuery>,
) -> Result<HttpResponse, CollectorError> {
    let q = query.into_inner();
    let limit = helix_http::routes::limit(q.limit, 50, 1000).map_err(CollectorError::InvalidQuery)?;
    let project = super::read_scope(&caller, q.project)?;
    let anomalies = state
        .baselines
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .recent(project.as_deref(), limit);
    Ok(HttpResponse::Ok().json(AnomalyList { anomalies }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BaselineList {
    pub baselines: Vec<crate::anomaly::BaselineView>,
}

/// Baselines
///
/// The robust statistics (median, MAD, p95 over the recent history) every phase (per project)
/// and every model is judged against, with the latest value.
#[utoipa::path(
    get,
    path = "/v1/baselines",
    tag = "costs",
    operation_id = "baselines",
    security(("bearer" = ["traces:read"])),
    responses((status = 200, description = "baselines", body = BaselineList))
)]
pub async fn baselines(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
) -> HttpResponse {
    let mut baselines = state.baselines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).list();
    if caller.projects.is_some() {
        // a model's baseline mixes every project's calls: only the caller's phases
        baselines
            .retain(|b| b.kind == "phase" && caller.may_access(b.subject.split(" / ").next().unwrap_or("")));
    }
    HttpResponse::Ok().json(BaselineList { baselines })
}

/// The dashboard page: one self-contained file (no CDN, no external asset), compiled in.
const DASHBOARD: &str = include_str!("../../assets/dashboard.html");

/// Dashboard
///
/// A web page: cost over time by project and by model, phase durations against their
/// baselines, recent anomalies, a live feed, and a trace timeline. Served with everything it
/// needs; it reads this service's API.
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "costs",
    operation_id = "dashboard",
    security(()),
    responses((status = 200, description = "the dashboard page", content_type = "text/html", body = String))
)]
pub async fn dashboard() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(DASHBOARD)
}
