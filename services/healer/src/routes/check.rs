//! `POST /v1/check`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::HealerState;
use crate::analyze::Analysis;
use crate::check::{self, CheckReport, Environment};
use crate::error::HealerError;
use crate::propose::WorkspaceFile;

/// At most this many workspace files per request.
const MAX_FILES: usize = 5000;

/// A workspace to check before anything runs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The workspace's manifests and sources (paths relative to its root).
    #[schema(max_items = 5000)]
    pub files: Vec<WorkspaceFile>,
    /// Further paths present in the workspace (contents not needed): local modules and headers.
    #[serde(default)]
    pub listing: Vec<String>,
    /// Debian packages installed on the machine the run will use (`dpkg-query -W -f
    /// '${Package}\n'`). Without it, `#include`s are checked only against the system packages
    /// the workspace's build recipes install.
    #[serde(default)]
    pub installed_packages: Option<Vec<String>>,
    /// The project (its learned fixes join the findings).
    #[serde(default)]
    pub project: Option<String>,
}

/// Predict a run's failures from its files
///
/// Static preflight: compares what the sources use with what the manifests declare, and
/// reports each use nothing provides as the failure a run would hit, analysed as `POST
/// /v1/analyze` would analyse that failure (same signature, category, matches) with the fixes
/// `POST /v1/fixes/propose` would propose. Checked: Python imports against `requirements*.txt`,
/// `pyproject.toml`, `setup.cfg`, `setup.py`, `Pipfile`, `environment.yml`; JS/TS imports
/// against `package.json`; Rust `use` / `extern crate` against `Cargo.toml`; C/C++
/// `#include`s of headers from a known `-dev` package against the declared or installed
/// system packages. An ecosystem without a manifest is listed in `checked.skipped`, not
/// guessed. Source lines over 4096 bytes are not scanned; at most 100 findings.
#[utoipa::path(
    post,
    path = "/v1/check",
    tag = "analysis",
    operation_id = "check",
    security(("bearer" = ["healer:read"])),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "the predicted failures, possibly none", body = CheckReport),
        (status = 400, description = "invalid JSON, a schema mismatch or too many files", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "body is not application/json", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn check(
    state: web::Data<HealerState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    body: helix_http::Json<CheckRequest>,
) -> Result<HttpResponse, HealerError> {
    let req = body.into_inner();
    if req.files.len() > MAX_FILES {
        return Err(HealerError::Invalid(format!("at most {MAX_FILES} files per request")));
    }
    let project = state.project_of(&caller, req.project)?;
    let scope = state.fix_scope(&project);
    let patterns = state.patterns.clone();
    let store = state.store.clone();
    let index = state.index.clone();
    let report = web::block(move || {
        let env = Environment { installed_packages: req.installed_packages };
        let mut report = check::check(&req.files, &req.listing, &env, &patterns);
        // what was learned about these signatures joins them, as in an analysis
        let mut analysis = Analysis {
            diagnostics: report.findings.iter().map(|f| f.diagnostic.clone()).collect(),
            primary: None,
        };
        crate::knowledge::enrich(&mut analysis, &*store, &index, &patterns, &scope);
        for (f, d) in report.findings.iter_mut().zip(analysis.diagnostics) {
            f.diagnostic = d;
        }
        report
    })
    .await
    .map_err(|e| HealerError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(report))
}
