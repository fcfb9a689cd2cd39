//! `GET /v1/circuits`, the operator commands on one breaker, and `GET /metrics`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::GatewayState;
use crate::breaker::{Command, RedisStatus, Snapshot};
use crate::error::GatewayError;

/// Every deployment's breaker, and the link to Redis that shares them. Never holds keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct CircuitList {
    /// In the order the deployments are configured.
    pub circuits: Vec<Snapshot>,
    pub redis: RedisStatus,
}

/// List circuit breakers
///
/// Each deployment's breaker (state, the evidence it is judged on, when an open one admits its
/// first probe) and whether the state is shared through Redis.
#[utoipa::path(
    get,
    path = "/v1/circuits",
    tag = "circuits",
    operation_id = "list_circuits",
    security(("bearer" = ["ops:read"])),
    responses((status = 200, description = "every deployment's breaker", body = CircuitList))
)]
pub async fn list(state: web::Data<GatewayState>) -> HttpResponse {
    let breakers = &state.proxy.breakers;
    HttpResponse::Ok()
        .json(CircuitList { circuits: breakers.snapshots().await, redis: breakers.redis_status() })
}

/// Runs an operator command on a breaker, and records who did it (an audit span).
async fn command(
    state: &GatewayState,
    caller: &helix_core::auth::Principal,
    id: String,
    cmd: Command,
) -> Result<HttpResponse, GatewayError> {
    let action = match cmd {
        Command::Reset => "breaker.reset",
        Command::ForceOpen => "breaker.force_open",
        Command::Disable => "breaker.disable",
    };
    let snapshot = state
        .proxy
        .breakers
        .command(&id, cmd)
        .await
        .ok_or_else(|| GatewayError::UnknownDeployment(id.clone()))?;
    state.emitter.emit(helix_core::trace::audit_event(action, &caller.id, &id, None));
    Ok(HttpResponse::Ok().json(snapshot))
}

/// Reset a circuit breaker
///
/// Back to closed, with an empty window and no consecutive trips; also ends `force-open` and
/// `disable`. Cluster-wide when Redis is configured.
#[utoipa::path(
    post,
    path = "/v1/circuits/{id}/reset",
    tag = "circuits",
    operation_id = "reset_circuit",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "deployment id")),
    responses(
        (status = 200, description = "the breaker after the command", body = Snapshot),
        (status = 404, description = "no deployment with this id", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn reset(
    state: web::Data<GatewayState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    command(&state, &caller, id.into_inner(), Command::Reset).await
}

/// Force a circuit breaker open
///
/// Rejects every call to the deployment (its chains fall back) until a reset.
#[utoipa::path(
    post,
    path = "/v1/circuits/{id}/force-open",
    tag = "circuits",
    operation_id = "force_open_circuit",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "deployment id")),
    responses(
        (status = 200, description = "the breaker after the command", body = Snapshot),
        (status = 404, description = "no deployment with this id", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn force_open(
    state: web::Data<GatewayState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    command(&state, &caller, id.into_inner(), Command::ForceOpen).await
}

/// Disable a circuit breaker
///
/// Admits every call to the deployment and records nothing until a reset.
#[utoipa::path(
    post,
    path = "/v1/circuits/{id}/disable",
    tag = "circuits",
    operation_id = "disable_circuit",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "deployment id")),
    responses(
        (status = 200, description = "the breaker after the command", body = Snapshot),
        (status = 404, description = "no deployment with this id", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn disable(
    state: web::Data<GatewayState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    command(&state, &caller, id.into_inner(), Command::Disable).await
}

/// Prometheus metrics
///
/// Requests, upstream calls and their durations, retries, fallbacks, refusals, tokens, cost,
/// breaker states, calls in flight and the trace emitter's counters, in the Prometheus text
/// format 0.0.4.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "circuits",
    operation_id = "metrics",
    security(("bearer" = ["ops:read"])),
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String))
)]
pub async fn metrics(state: web::Data<GatewayState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.render_metrics().await)
}
