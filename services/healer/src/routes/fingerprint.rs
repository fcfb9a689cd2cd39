//! `POST /v1/fingerprint`.

use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::HealerError;
use crate::signature;

/// A diagnostic message to fingerprint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FingerprintRequest {
    /// One diagnostic message, e.g. `ModuleNotFoundError: No module named 'yaml'`.
    #[schema(example = "ModuleNotFoundError: No module named 'yaml'", min_length = 1)]
    pub text: String,
}

/// A masked variable part of the message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParamOut {
    /// `uuid`, `timestamp`, `hex`, `quoted`, `path` or `number`.
    #[schema(example = "quoted")]
    pub kind: String,
    #[schema(example = "yaml")]
    pub value: String,
}

/// The fingerprint of the message.
#[derive(Debug, Serialize, ToSchema)]
pub struct FingerprintResponse {
    /// SHA-256 of the version and the template, 64 hex digits.
    #[schema(example = "3f0a…")]
    pub signature: String,
    /// The message with variable parts replaced by `<kind>` placeholders.
    #[schema(example = "ModuleNotFoundError: No module named '<quoted>'")]
    pub template: String,
    pub params: Vec<ParamOut>,
    /// Version of the signature algorithm.
    #[schema(example = "v1")]
    pub version: String,
}

/// Fingerprint a message
///
/// Masks the variable parts of one diagnostic message (paths, line numbers, quoted names,
/// numbers, addresses, ids, timestamps) and hashes the template, so the same root cause gets the
/// same signature on every machine.
#[utoipa::path(
    post,
    path = "/v1/fingerprint",
    tag = "signatures",
    operation_id = "fingerprint",
    security(("bearer" = ["healer:read"])),
    request_body = FingerprintRequest,
    responses(
        (status = 200, description = "the fingerprint", body = FingerprintResponse),
        (status = 400, description = "invalid JSON or a body that does not match the schema", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "body is not application/json", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn fingerprint(body: helix_http::Json<FingerprintRequest>) -> Result<HttpResponse, HealerError> {
    if body.text.is_empty() {
        return Err(HealerError::EmptyText);
    }
    let f = signature::fingerprint(&body.text);
    Ok(HttpResponse::Ok().json(FingerprintResponse {
        signature: f.signature,
        template: f.template,
        params: f.params.into_iter().map(|p| ParamOut { kind: p.kind.to_owned(), value: p.value }).collect(),
        version: f.version.to_owned(),
    }))
}
