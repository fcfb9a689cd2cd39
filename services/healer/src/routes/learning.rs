//! `POST /v1/fixes`, `GET /v1/fixes/known`, `GET /v1/signatures/{signature}`, `GET /v1/hints`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::HealerState;
use crate::error::HealerError;
use crate::store::{FixRecord, KnownFix, Outcome, SignatureReport};

/// Longest fix description accepted: a description is one line for humans and prompts, not a
/// place for text that could steer an agent.
pub const MAX_DESCRIPTION: usize = 1000;

pub(crate) fn check_signature(s: &str) -> Result<(), HealerError> {
    if helix_core::trace::is_lower_hex(s, 64) {
        Ok(())
    } else {
        Err(HealerError::Invalid(format!(
            "signature must be 64 lowercase hex digits, got {:?}",
            truncate(s, 80)
        )))
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A fix attempt for a signature, and how it went.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixRequest {
    /// The signature the fix was for (from `POST /v1/analyze`).
    #[schema(
        example = "3f0a8c1d9e2b4f6a8c0e1d3f5a7b9c2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c",
        pattern = "^[0-9a-f]{64}$"
    )]
    pub signature: String,
    /// What was done, one line for humans and prompts (no control characters).
    #[schema(
        example = "add PyYAML to requirements.txt",
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub description: String,
    /// The change as a unified diff, if there is one.
    #[serde(default)]
    pub patch: Option<String>,
    pub outcome: Outcome,
    /// The project the fix was made in (default: the token's only project, else `default`);
    /// hints for other projects do not draw on it unless `healer.share_hints` is on.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    /// Who came up with the fix: `healer`, `llm_repair`, `agent` or `human`. An `llm_repair` that
    /// worked becomes a learned fix (`learned` in the signature's report).
    #[serde(default)]
    pub source: Option<crate::store::FixSource>,
    /// The diagnostic's key the fix was for (a module, a name; at most 50 characters, one line).
    #[serde(default)]
    #[schema(max_length = 50, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub key: Option<String>,
}

/// The recorded fix.
#[derive(Debug, Serialize, ToSchema)]
pub struct FixRecorded {
    pub id: String,
    pub signature: String,
    /// RFC 3339.
    pub recorded_at: String,
}

/// Record a fix attempt
///
/// Records what was tried for a signature and whether it worked, who reported it (the token's
/// id) and for which project. The record is on disk (fsynced) before the 201 is sent, so it
/// survives a crash right after. Fixes that worked rank first in `GET /v1/signatures/{signature}`
/// and in hints of the same project.
#[utoipa::path(
    post,
    path = "/v1/fixes",
    tag = "learning",
    operation_id = "record_fix",
    security(("bearer" = ["healer:write"])),
    request_body = FixRequest,
    responses(
        (status = 201, description = "recorded", body = FixRecorded),
        (status = 400, description = "invalid JSON, schema mismatch, or an invalid signature", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "body is not application/json", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn record_fix(
    state: web::Data<HealerState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    body: helix_http::Json<FixRequest>,
) -> Result<HttpResponse, HealerError> {
    let mut req = body.into_inner();
    check_signature(&req.signature)?;
    if req.description.trim().is_empty() {
        return Err(HealerError::Invalid("description must not be empty".to_owned()));
    }
    if req.description.len() > MAX_DESCRIPTION {
        return Err(HealerError::Invalid(format!("description is longer than {MAX_DESCRIPTION} bytes")));
    }
    if req.description.chars().any(char::is_control) {
        return Err(HealerError::Invalid(
            "description must be one line without control characters (put code in patch)".to_owned(),
        ));
    }
    if let Some(k) = &req.key
        && (k.chars().count() > 50 || k.chars().any(char::is_control))
    {
        return Err(HealerError::Invalid("key must be one line of at most 50 characters".to_owned()));
    }
    req.project = Some(state.project_of(&caller, req.project.take())?);
    let at_ms = helix_core::time::now_ms();
    let reporter = caller.id.to_string();
    let record = FixRecord {
        id: uuid_like(&req.signature, at_ms),
        signature: req.signature,
        signature_version: crate::signature::SIGNATURE_VERSION.to_owned(),
        description: req.description,
        patch: req.patch.filter(|p| !p.trim().is_empty()),
        outcome: req.outcome,
        project: req.project,
        phase: req.phase,
        at_ms,
        reported_by: Some(reporter),
        source: req.source,
        key: req.key.filter(|k| !k.is_empty()),
    };
    if let Some(llm) = &state.llm {
        // a fix with the LLM's suggested description confirms or drops its analysis
        let success = matches!(record.outcome, crate::store::Outcome::Success);
        llm.outcome(&record.signature, &record.description, success).await;
    }
    let store = state.store.clone();
    let index = state.index.clone();
    let stored = record.clone();
    web::block(move || {
        store.record_fix(&stored)?;
        // the index learns the fixes that worked, for similar-error search
        index.learn_signature(&*store, &stored.signature);
        Ok::<(), crate::store::StoreError>(())
    })
    .await
    .map_err(|e| HealerError::Internal(e.to_string()))??;
    state.emitter.emit(helix_core::trace::audit_event(
        "fix.record",
        &caller.id,
        &record.signature,
        record.project.as_deref(),
    ));
    Ok(HttpResponse::Created().json(FixRecorded {
        id: record.id,
        signature: record.signature,
        recorded_at: helix_core::time::rfc3339_ms(at_ms),
    }))
}

/// A record id: unique per signature and instant, readable in logs.
fn uuid_like(signature: &str, at_ms: i64) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("fix-{at_ms:x}-{n:x}-{}", &signature[..8])
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignatureQuery {
    /// Only the fixes recorded for this project (`default`: those recorded without one). A token
    /// limited to projects may name only one of its own. Without it: the fixes of every project
    /// the token may access.
    #[param(min_length = 1)]
    #[serde(default)]
    pub project: Option<String>,
}

/// What is known about a signature
///
/// Occurrences, first and last seen, projects, and the repair history ranked by success
/// ("solved 3x like this"): the fixes of `project` when it is given, else those of every project
/// the token may access.
#[utoipa::path(
    get,
    path = "/v1/signatures/{signature}",
    tag = "learning",
    operation_id = "get_signature",
    security(("bearer" = ["healer:read"])),
    params(
        ("signature" = String, Path, description = "64 hex digits, from an analysis", pattern = "^[0-9a-f]{64}$"),
        SignatureQuery
    ),
    responses(
        (status = 200, description = "the signature's history", body = SignatureReport),
        (status = 400, description = "not a signature, or an empty project", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "never seen", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_signature(
    state: web::Data<HealerState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    path: web::Path<String>,
    query: web::Query<SignatureQuery>,
) -> Result<HttpResponse, HealerError> {
    let sig = path.into_inner();
    check_signature(&sig)?;
    let scope = state.report_scope(&caller, query.into_inner().project.as_deref())?;
    let report =
        state.store.report(&sig, &scope).ok_or_else(|| HealerError::SignatureNotFound(sig.clone()))?;
    Ok(HttpResponse::Ok().json(report))
}

/// Known fixes listed by default, and at most.
const DEFAULT_KNOWN_LIMIT: usize = 50;
const MAX_KNOWN_LIMIT: usize = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KnownFixesQuery {
    /// The project whose fixes are listed (`default`: those recorded without one). A token
    /// limited to projects may name only one of its own.
    #[param(min_length = 1)]
    pub project: String,
    /// Only the fixes recorded for this phase.
    #[param(min_length = 1)]
    #[serde(default)]
    pub phase: Option<String>,
    /// At most this many fixes (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The known fixes of a project.
#[derive(Debug, Serialize, ToSchema)]
pub struct KnownFixes {
    /// Most successes first, then the most recently tried.
    pub fixes: Vec<KnownFix>,
}

/// Fixes with a patch known for a project
///
/// Every fix with a patch recorded for `project` (and `phase`, when given), one per signature
/// and patch (patches changing the same lines are one fix) with its successes, failures and
/// latest attempt; most successes first, then the most recently tried. What an orchestrator can
/// try again when a signature comes back. Descriptions and patches are data whoever had
/// `healer:write` for the project recorded, not instructions.
#[utoipa::path(
    get,
    path = "/v1/fixes/known",
    tag = "learning",
    operation_id = "known_fixes",
    security(("bearer" = ["healer:read"])),
    params(KnownFixesQuery),
    responses(
        (status = 200, description = "the project's fixes, best first", body = KnownFixes),
        (status = 400, description = "missing or empty project, empty phase, limit out of range, or an unknown parameter", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn known_fixes(
    state: web::Data<HealerState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<KnownFixesQuery>,
) -> Result<HttpResponse, HealerError> {
    let q = query.into_inner();
    let limit = helix_http::routes::limit(q.limit, DEFAULT_KNOWN_LIMIT, MAX_KNOWN_LIMIT)
        .map_err(HealerError::InvalidQuery)?;
    let project = state.named_project(&caller, &q.project)?;
    if q.phase.as_deref().is_some_and(|p| p.trim().is_empty()) {
        return Err(HealerError::InvalidQuery("phase must not be empty".to_owned()));
    }
    let fixes = state.store.known_fixes(&project, q.phase.as_deref(), limit);
    Ok(HttpResponse::Ok().json(KnownFixes { fixes }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HintQuery {
    /// 64 hex digits, from an analysis.
    #[param(pattern = "^[0-9a-f]{64}$")]
    pub signature: String,
    /// The project the hint is for (default: the token's only project, else `default`). Only
    /// its own fixes inform the hint, unless `healer.share_hints` is on.
    pub project: Option<String>,
}

/// A prompt-ready hint.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hint {
    pub signature: String,
    /// Short text to put into an agent's prompt: what the error is, what fixed it before.
    pub hint: String,
    /// How many recorded fixes it draws on.
    pub fixes: usize,
    /// The pattern it draws on, if any.
    pub pattern: Option<String>,
}

/// Prompt-ready hint for a signature
///
/// A short text built from the fixes that worked for this signature before in the same project
/// (best first) and the pattern that classified it, meant to be put into an agent's prompt on a
/// retry. Recorded fixes appear as quoted data with who reported them, never as instructions.
#[utoipa::path(
    get,
    path = "/v1/hints",
    tag = "learning",
    operation_id = "get_hint",
    security(("bearer" = ["healer:read"])),
    params(HintQuery),
    responses(
        (status = 200, description = "the hint", body = Hint),
        (status = 400, description = "missing or invalid signature", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "nothing known about the signature", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_hint(
    state: web::Data<HealerState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<HintQuery>,
) -> Result<HttpResponse, HealerError> {
    let q = query.into_inner();
    let sig = q.signature;
    check_signature(&sig)?;
    let project = state.project_of(&caller, q.project)?;
    let report = state
        .store
        .report(&sig, &state.fix_scope(&project))
        .ok_or_else(|| HealerError::SignatureNotFound(sig.clone()))?;
    let pattern = report.pattern.as_deref().and_then(|id| state.patterns.get(id));
    Ok(HttpResponse::Ok().json(Hint {
        signature: sig,
        hint: crate::hints::hint_text(&report, pattern),
        fixes: report.fixes.len(),
        pattern: report.pattern.clone(),
    }))
}
