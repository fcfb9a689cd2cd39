//! `POST /v1/fixes/propose`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::HealerState;
use crate::analyze;
use crate::error::HealerError;
use crate::propose::{self, DiagnosticRef, ProposedFix, WorkspaceFile};

/// At most this many workspace files per request.
const MAX_FILES: usize = 1000;

/// An analysis (or raw output to analyse) and the workspace files fixes may edit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeRequest {
    /// An analysis as `POST /v1/analyze` returned it.
    #[serde(default)]
    pub analysis: Option<AnalysisRef>,
    /// Or raw output to analyse first. The compiler's own suggestions (cargo
    /// `--message-format=json`) are applied only from raw output.
    #[serde(default)]
    pub output: Option<String>,
    /// Tool hint for `output`.
    #[serde(default)]
    pub tool: Option<String>,
    /// Contents of the files fixes may edit (manifests, the files diagnostics point at).
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub files: Vec<WorkspaceFile>,
    /// Paths present in the workspace (contents not needed), to choose the right manifest.
    #[serde(default)]
    pub listing: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AnalysisRef {
    pub diagnostics: Vec<DiagnosticRef>,
    #[serde(default, deserialize_with = "helix_core::json::lenient_int_opt")]
    pub primary: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Proposals {
    /// Fixes, those for the primary diagnostic first. Nothing is applied: the caller applies.
    pub fixes: Vec<ProposedFix>,
}

/// Propose machine-applicable fixes
///
/// Unified diffs (or commands) for the diagnostics of an analysis, computed against the
/// workspace files sent, each with a confidence: `auto` (safe unattended), `suggest` (review
/// first) or `needs_input`. Includes the compiler's MachineApplicable suggestions when raw
/// cargo JSON output is sent. Without `analysis` and `output` there is nothing to fix and the
/// list is empty. The healer never writes to files itself.
#[utoipa::path(
    post,
    path = "/v1/fixes/propose",
    tag = "learning",
    operation_id = "propose_fixes",
    security(("bearer" = ["healer:read"])),
    request_body = ProposeRequest,
    responses(
        (status = 200, description = "proposed fixes, possibly none", body = Proposals),
        (status = 400, description = "invalid JSON or schema mismatch", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "body is not application/json", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn propose(
    state: web::Data<HealerState>,
    body: helix_http::Json<ProposeRequest>,
) -> Result<HttpResponse, HealerError> {
    let req = body.into_inner();
    if req.files.len() > MAX_FILES {
        return Err(HealerError::Invalid(format!("at most {MAX_FILES} files per request")));
    }
    let patterns = state.patterns.clone();
    let fixes = web::block(move || -> Result<Vec<ProposedFix>, HealerError> {
        let (diagnostics, primary): (Vec<DiagnosticRef>, Option<usize>) = match (req.analysis, req.output) {
            (Some(a), _) => (a.diagnostics, a.primary.and_then(|p| usize::try_from(p).ok())),
            (None, Some(output)) => {
                let a = analyze::analyze(
                    &analyze::Request { output: &output, tool: req.tool.as_deref(), ..Default::default() },
                    &patterns,
                );
                let refs = a
                    .diagnostics
                    .iter()
                    .map(|d| DiagnosticRef {
                        signature: d.signature.clone(),
                        params: d.params.clone(),
                        key: d.key.clone(),
                        matches: d
                            .matches
                            .iter()
                            .map(|m| propose::MatchRef { kind: m.kind.clone(), id: m.id.clone() })
                            .collect(),
                        suggestions: d.suggestions.clone(),
                    })
                    .collect();
                (refs, a.primary)
            }
            // nothing to fix: no proposals
            (None, None) => (Vec::new(), None),
        };
        Ok(propose::propose(&diagnostics, primary, &req.files, &req.listing, &patterns))
    })
    .await
    .map_err(|e| HealerError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().json(Proposals { fixes }))
}
