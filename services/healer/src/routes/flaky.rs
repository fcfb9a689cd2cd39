//! `POST /v1/flaky` (a test failed, then passed on a re-run) and `GET /v1/flaky` (a project's
//! flaky tests). See [`crate::flaky`].

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::HealerState;
use crate::error::HealerError;
use crate::flaky::{FlakyRecord, FlakyTest};

/// Longest test id accepted.
/// Longest test id accepted, in characters (the schema's `maxLength`).
const MAX_TEST_ID: usize = 250;
/// Longest runner or phase name, in characters.
pub(crate) const MAX_NAME: usize = 64;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A test that failed and then passed when re-run alone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlakyReport {
    /// The test as its runner names it (one line, at most 1,000 bytes).
    #[schema(
        example = "tests/test_api.py::test_timeout",
        min_length = 1,
        max_length = 250,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub test: String,
    /// `pytest`, `cargo`, `go`, `jest`, `vitest`, or another runner's name.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub runner: Option<String>,
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

/// The recorded report: the test's signature.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlakyRecorded {
    pub signature: String,
    pub test: String,
    /// Times it was reported flaky in the project, this one included.
    pub times: u32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FlakyQuery {
    /// The project (default: the token's only project, else `default`).
    pub project: Option<String>,
    /// At most this many tests (default 100, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A project's flaky tests.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlakyList {
    pub tests: Vec<FlakyTest>,
}

/// One line of 1 to `max` characters, not only white space (what the schemas say).
pub(crate) fn one_line(what: &str, v: &str, max: usize) -> Result<(), HealerError> {
    if v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(HealerError::Invalid(format!("{what} must be one line of 1 to {max} characters")));
    }
    Ok(())
}

/// Report a flaky test
///
/// Records that the test failed and then passed on a re-run in isolation (the orchestrator
/// reports it). On disk (fsynced) before the 201. The test's signature is derived from its id.
#[utoipa::path(
    post,
    path = "/v1/flaky",
    tag = "learning",
    operation_id = "report_flaky",
    security(("bearer" = ["healer:write"])),
    request_body = FlakyReport,
    responses(
        (status = 201, description = "recorded", body = FlakyRecorded),
        (status = 400, description = "invalid JSON, an empty or multi-line test id", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "body is not application/json", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn report(
    state: web::Data<HealerState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    body: helix_http::Json<FlakyReport>,
) -> Result<HttpResponse, HealerError> {
    let req = body.into_inner();
    one_line("test", &req.test, MAX_TEST_ID)?;
    for (what, v) in [("runner", &req.runner), ("phase", &req.phase)] {
        if let Some(v) = v {
            one_line(what, v, MAX_NAME)?;
        }
    }
    let project = state.project_of(&caller, req.project)?;
    let record = FlakyRecord {
        signature: crate::flaky::signature(&req.test),
        test: req.test,
        runner: req.runner,
        project: Some(project.clone()),
        phase: req.phase,
        at_ms: helix_core::time::now_ms(),
        reported_by: Some(caller.id.to_string()),
    };
    let store = state.store.clone();
    let stored = record.clone();
    web::block(move || store.record_flaky(&stored))
        .await
        .map_err(|e| HealerError::Internal(e.to_string()))??;
    let times = state
        .store
        .flaky(&project, MAX_LIMIT)
        .into_iter()
        .find(|t| t.test == record.test)
        .map_or(1, |t| t.times);
    Ok(HttpResponse::Created().json(FlakyRecorded { signature: record.signature, test: record.test, times }))
}

/// A project's flaky tests
///
/// Every test reported flaky in the project, most often flaky first: what the orchestrator
/// re-runs at once when it fails again.
#[utoipa::path(
    get,
    path = "/v1/flaky",
    tag = "learning",
    operation_id = "list_flaky",
    security(("bearer" = ["healer:read"])),
    params(FlakyQuery),
    responses(
        (status = 200, description = "the project's flaky tests", body = FlakyList),
        (status = 400, description = "limit out of range, or an unknown parameter", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    state: web::Data<HealerState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<FlakyQuery>,
) -> Result<HttpResponse, HealerError> {
    let q = query.into_inner();
    let limit =
        helix_http::routes::limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT).map_err(HealerError::InvalidQuery)?;
    let project = state.project_of(&caller, q.project)?;
    Ok(HttpResponse::Ok().json(FlakyList { tests: state.store.flaky(&project, limit) }))
}
