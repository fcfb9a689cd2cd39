//! `POST /v1/analyze`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::HealerState;
use crate::analyze::{self, Analysis};
use crate::error::HealerError;
use crate::store::Occurrence;

/// Raw output of a failed command, and what is known about it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// The command's stdout and stderr, as printed (ANSI colours are fine).
    #[schema(
        example = "Traceback (most recent call last):\n  File \"app.py\", line 1, in <module>\n    import yaml\nModuleNotFoundError: No module named 'yaml'\n"
    )]
    pub output: String,
    /// Which tool printed it, if known (`python`, `cargo`, `tsc`, ...): a hint, not a filter.
    #[serde(default)]
    pub tool: Option<String>,
    /// The command that ran.
    #[serde(default)]
    pub command: Option<String>,
    /// Its exit code; with a non-zero code and no recognisable error, the last line is reported.
    #[serde(default, deserialize_with = "helix_core::json::lenient_int_opt")]
    pub exit_code: Option<i32>,
    /// The project this output belongs to (recorded with the signatures seen).
    #[serde(default)]
    pub project: Option<String>,
}

/// For a `text/plain` body: what the JSON body's other fields carry.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeQuery {
    /// Tool hint (text bodies only).
    #[serde(default)]
    pub tool: Option<String>,
    /// The command that ran (text bodies only).
    #[serde(default)]
    pub command: Option<String>,
    /// Its exit code (text bodies only).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Project (text bodies only).
    #[serde(default)]
    pub project: Option<String>,
}

/// Analyse tool output
///
/// Splits the output into diagnostics, fingerprints each into a stable signature, classifies it
/// (category, failure class, key parameter) against the pattern base, and picks the root cause
/// as `primary`. Empty output gives no diagnostics. The body is either the JSON request, or the
/// raw output itself as `text/plain` (invalid UTF-8 is decoded lossily; the other fields go in
/// the query string): `curl --data-binary @build.log -H 'content-type: text/plain'`.
#[utoipa::path(
    post,
    path = "/v1/analyze",
    tag = "analysis",
    operation_id = "analyze",
    security(("bearer" = ["healer:read"])),
    params(AnalyzeQuery),
    request_body(content(
        (AnalyzeRequest = "application/json"),
        (String = "text/plain")
    )),
    responses(
        (status = 200, description = "the diagnostics found, and the root cause", body = Analysis),
        (status = 400, description = "invalid JSON or a body that does not match the schema", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "body is not application/json", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn analyze(
    state: web::Data<HealerState>,
    http: HttpRequest,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<AnalyzeQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, HealerError> {
    let content_type = http
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let req = if content_type.starts_with("application/json") || content_type.contains("+json") {
        helix_http::json::from_object_slice::<AnalyzeRequest>(&body).map_err(HealerError::Body)?
    } else if content_type.starts_with("text/plain") || content_type.starts_with("application/octet-stream") {
        let q = query.into_inner();
        AnalyzeRequest {
            output: String::from_utf8_lossy(&body).into_owned(),
            tool: q.tool,
            command: q.command,
            exit_code: q.exit_code,
            project: q.project,
        }
    } else {
        return Err(HealerError::Body(helix_http::ProblemError::new(
            helix_core::ErrorCode::UnsupportedMediaType,
            "send application/json or the raw output as text/plain",
        )));
    };
    let mut req = req;
    req.project = Some(state.project_of(&caller, req.project.take())?);
    let scope = state.fix_scope(req.project.as_deref().unwrap_or(crate::store::DEFAULT_PROJECT));
    let patterns = state.patterns.clone();
    let store = state.store.clone();
    let index = state.index.clone();
    // the LLM analysis needs the output after the blocking analysis has it
    let output = if state.llm.is_some() { req.output.clone() } else { String::new() };
    let project = req.project.clone();
    // CPU-bound work and the log append stay off the async runtime
    let analysis = web::block(move || {
        let mut analysis = analyze::analyze(
            &analyze::Request {
                output: &req.output,
                tool: req.tool.as_deref(),
                command: req.command.as_deref(),
                exit_code: req.exit_code,
            },
            &patterns,
        );
        // first sightings go into the similar-error index
        for d in &analysis.diagnostics {
            if !store.status(&d.signature).known
                && let Err(e) = index.upsert_signature(&d.signature, &d.template, &d.tool, d.category, &[])
            {
                tracing::warn!(error = %e, "cannot index a new signature");
            }
        }
        crate::knowledge::enrich(&mut analysis, &*store, &index, &patterns, &scope);
        let at_ms = helix_core::time::now_ms();
        let seen: Vec<Occurrence> = analysis
            .diagnostics
            .iter()
            .map(|d| Occurrence {
                signature: d.signature.clone(),
                signature_version: d.signature_version.clone(),
                template: d.template.clone(),
                category: d.category,
                tool: d.tool.clone(),
                pattern: d.matches.first().map(|m| m.id.clone()),
                project: req.project.clone(),
                at_ms,
            })
            .collect();
        // statistics must not fail the analysis: log and answer
        if let Err(e) = store.record_occurrences(&seen) {
            tracing::error!(error = %e, "cannot record occurrences");
        }
        analysis
    })
    .await
    .map_err(|e| HealerError::Internal(e.to_string()))?;
    let mut analysis = analysis;
    // what stays unknown: the LLM's analysis, when one is configured (cached by signature)
    if let Some(llm) = &state.llm
        && let Some(p) = analysis.primary
        && analysis.diagnostics[p].category == crate::model::Category::Unknown
        && let Some(v) = llm.verdict(&analysis.diagnostics[p], &output, project.as_deref()).await
    {
        crate::llm::apply(&mut analysis.diagnostics[p], &v);
    }
    Ok(HttpResponse::Ok().json(analysis))
}
