//! `POST /v1/paths`: a success path (see [`crate::paths`]).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::HealerState;
use crate::error::HealerError;
use crate::paths::PathRecord;

/// The healing actions that got a signature's failure to pass, in order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PathReport {
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub signature: String,
    /// One step per failed attempt before the pass: `fix:<source>`, `hint`, `repair`,
    /// `backoff`, `flaky` (1 to 16 steps of letters, digits and `_-:.`).
    #[schema(example = json!(["fix:healer", "hint"]), schema_with = steps_schema)]
    pub steps: Vec<String>,
    /// The project (default: the token's only project, else `default`).
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub phase: Option<String>,
}

fn steps_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z0-9_:.-]{1,80}$")))
        .min_items(Some(1))
        .max_items(Some(crate::paths::MAX_STEPS))
        .build()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PathRecorded {
    pub signature: String,
    /// Times this path has healed the signature in the project, this one included.
    pub successes: u32,
}

/// Record a success path
///
/// Which sequence of healing actions got a failure to pass. Ranked in
/// `GET /v1/signatures/{signature}` (`paths`); the orchestrator starts with the first step of the
/// most successful one.
#[utoipa::path(
    post,
    path = "/v1/paths",
    tag = "learning",
    operation_id = "record_path",
    security(("bearer" = ["healer:write"])),
    request_body = PathReport,
    responses(
        (status = 201, description = "recorded", body = PathRecorded),
        (status = 400, description = "an invalid signature, steps or phase", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "body is not application/json", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn record(
    state: web::Data<HealerState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    body: helix_http::Json<PathReport>,
) -> Result<HttpResponse, HealerError> {
    let req = body.into_inner();
    super::learning::check_signature(&req.signature)?;
    crate::paths::check_steps(&req.steps).map_err(HealerError::Invalid)?;
    if let Some(p) = &req.phase {
        super::flaky::one_line("phase", p, super::flaky::MAX_NAME)?;
    }
    let project = state.project_of(&caller, req.project)?;
    let record = PathRecord {
        signature: req.signature,
        steps: req.steps,
        project: Some(project.clone()),
        phase: req.phase,
        at_ms: helix_core::time::now_ms(),
    };
    let store = state.store.clone();
    let stored = record.clone();
    web::block(move || store.record_path(&stored))
        .await
        .map_err(|e| HealerError::Internal(e.to_string()))??;
    let successes = state
        .store
        .report(&record.signature, &crate::store::FixScope::project(&project))
        .and_then(|r| r.paths.into_iter().find(|p| p.steps == record.steps))
        .map_or(1, |p| p.successes);
    Ok(HttpResponse::Created().json(PathRecorded { signature: record.signature, successes }))
}
