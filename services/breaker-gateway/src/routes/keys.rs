//! `POST /v1/keys`, `GET /v1/keys/{id}`, `DELETE /v1/keys/{id}`: keys minted for agents (see
//! [`crate::minting`]).

use actix_web::{HttpResponse, web};
use helix_http::access::{Access, Caller};

use crate::GatewayState;
use crate::accounting::KeyUsage;
use crate::error::GatewayError;
use crate::minting::{MintRequest, MintedKey};

/// Mint a key for an agent
///
/// A key narrower than the caller's own: it may only call models, for one project the caller may
/// bill to, until it expires, and once its `max_cost_usd` is spent every further call gets 429
/// `budget_exceeded` (with `x-should-retry: false`). The orchestrator mints one per agent
/// attempt. The key is in this answer only. Keys live in this gateway process's memory.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "mint_key",
    security(("bearer" = ["llm"])),
    request_body = MintRequest,
    responses(
        (status = 201, description = "the key, shown once", body = MintedKey),
        (status = 400, description = "an invalid cap, lifetime or project name", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 403, description = "a project the caller may not bill to, or a minted key asking", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "body is not application/json", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 429, description = "as many keys exist as the gateway keeps", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn mint(
    state: web::Data<GatewayState>,
    access: web::Data<Access>,
    Caller(caller): Caller,
    body: helix_http::Json<MintRequest>,
) -> Result<HttpResponse, GatewayError> {
    let key = state.mint_key(&access.authenticator, &caller, &body.into_inner())?;
    Ok(HttpResponse::Created().json(key))
}

/// What a minted key has spent
#[utoipa::path(
    get,
    path = "/v1/keys/{id}",
    tag = "keys",
    operation_id = "key_usage",
    security(("bearer" = ["llm"])),
    params(("id" = String, Path, description = "the key's id (not the key)")),
    responses(
        (status = 200, description = "its cap and what it spent", body = KeyUsage),
        (status = 404, description = "no such key minted by the caller", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn usage(
    state: web::Data<GatewayState>,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    Ok(HttpResponse::Ok().json(state.key_usage(&caller, &id)?))
}

/// Revoke a minted key
///
/// From now on the key is refused (401). Answers what it had spent.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    operation_id = "revoke_key",
    security(("bearer" = ["llm"])),
    params(("id" = String, Path, description = "the key's id (not the key)")),
    responses(
        (status = 200, description = "revoked; what it had spent", body = KeyUsage),
        (status = 404, description = "no such key minted by the caller", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn revoke(
    state: web::Data<GatewayState>,
    access: web::Data<Access>,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    Ok(HttpResponse::Ok().json(state.revoke_key(&access.authenticator, &caller, &id)?))
}
