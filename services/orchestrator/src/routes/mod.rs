//! Thin HTTP handlers over the [`crate::engine`].

use std::path::PathBuf;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use crate::OrchestratorState;
use crate::engine::{Plan, ReplayReport, RunEvent, RunView, StartRequest};
use crate::error::OrchestratorError;
use crate::pipeline::Pipeline;
use helix_core::auth::Principal;
use helix_http::access::Caller;

/// Keep-alive comment interval of the event stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A run to start (or plan).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The pipeline as TOML text (`pipeline.toml`); or give `pipeline_path`.
    #[schema(
        example = "name = \"demo\"\n[[phase]]\nname = \"hello\"\nkind = \"command\"\nrun = [\"echo\", \"hello\"]\n"
    )]
    pub pipeline: Option<String>,
    /// Path of a pipeline file on the orchestrator's machine.
    pub pipeline_path: Option<String>,
    /// The project the run belongs to (traces, costs, baselines, bulkheads).
    #[serde(default)]
    pub project: Option<String>,
    /// The directory the initial workspace is copied from; default: the pipeline file's
    /// directory, or an empty workspace for an inline pipeline.
    pub workdir: Option<String>,
    /// Resolve and describe the run without executing anything.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only runs of this project.
    pub project: Option<String>,
    /// At most this many runs (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunView>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRun {
    /// A token of the run. It must name the run's latest checkpoint (the one every resume
    /// continues from); an older one answers 409 with the latest token, unless
    /// `from_checkpoint` asks for a fork.
    #[schema(pattern = "^\\s*[hH][xX][rR]_[a-zA-Z2-7]+\\s*$")]
    pub token: Option<String>,
    /// Fork: start a new run (new id, new trace, lineage in `forked_from`) from this checkpoint
    /// of the run, leaving the run itself as it is. Completed phases after it run again.
    #[schema(minimum = 1)]
    pub from_checkpoint: Option<u32>,
    /// The answer to the decision gate the run stopped at (1 to 4000 bytes); the gate passes with
    /// it and it is recorded in the run (`decisions`).
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S")]
    pub decision: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    /// LLM phases answer from the recorded responses instead of calling the gateway.
    #[serde(default)]
    pub recorded: bool,
}

/// One server-sent event of `GET /v1/runs/{id}/events`: `event` is the RunEvent's kind, `data`
/// the RunEvent as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    pub status: String,
}

fn problem_of(e: crate::engine::EngineError) -> OrchestratorError {
    OrchestratorError::Engine(e)
}

fn load_pipeline(
    state: &OrchestratorState,
    body: &StartRun,
) -> Result<(Pipeline, Option<PathBuf>), OrchestratorError> {
    let cwd = state.cwd();
    // paths clients name stay under the roots, checked before anything is read
    let workdir = match &body.workdir {
        Some(w) => Some(state.roots.resolve("workdir", w, &cwd)?),
        None => None,
    };
    match (&body.pipeline, &body.pipeline_path) {
        (Some(text), None) => {
            let p = match &workdir {
                Some(dir) => Pipeline::parse_in(text, dir),
                None => Pipeline::parse(text),
            }
            .map_err(|e| problem_of(e.into()))?;
            Ok((p, workdir))
        }
        (None, Some(path)) => {
            let path = state.roots.resolve("pipeline_path", path, &cwd)?;
            if !path.is_file() {
                return Err(OrchestratorError::NotFound(format!("no pipeline file {}", path.display())));
            }
            let p = Pipeline::load(&path).map_err(|e| problem_of(e.into()))?;
            let dir = workdir.or_else(|| path.parent().map(std::path::Path::to_path_buf));
            Ok((p, dir))
        }
        (Some(_), Some(_)) => {
            Err(OrchestratorError::Invalid("give either pipeline or pipeline_path, not both".to_owned()))
        }
        (None, None) => {
            Err(OrchestratorError::Invalid("missing pipeline (TOML text) or pipeline_path".to_owned()))
        }
    }
}

/// The run, when the caller may see its project; otherwise it does not exist for them.
async fn visible_run(
    state: &OrchestratorState,
    caller: &Principal,
    id: &str,
) -> Result<RunView, OrchestratorError> {
    let view = state.engine.view(id).await.map_err(problem_of)?;
    if caller.may_access(&view.project) {
        Ok(view)
    } else {
        Err(OrchestratorError::NotFound(format!("no run {id}")))
    }
}

/// Start a run
///
/// Validates the pipeline (errors name the line and key), snapshots the initial workspace as
/// checkpoint 1 and starts executing in the background; answers at once with the run and its
/// resume token. With `dry_run: true` nothing is executed or written: the answer is the plan
/// (every phase resolved, in order, with a cost estimate from the collector's baselines).
#[utoipa::path(
    post,
    path = "/v1/runs",
    tag = "runs",
    operation_id = "start_run",
    security(("bearer" = ["runs:write"])),
    request_body = StartRun,
    responses(
        (status = 201, description = "the run, started", body = RunView),
        (status = 200, description = "dry run: the plan", body = Plan),
        (status = 400, description = "invalid pipeline (the detail names line and key) or request", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token lacks `runs:write` or may not use the project (`forbidden`), or pipeline_path or workdir lies outside `orchestrator.roots` (`path_not_allowed`)", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "pipeline_path or workdir does not exist", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 413, description = "body too large", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 429, description = "the project has too many runs executing", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn start(
    state: web::Data<OrchestratorState>,
    Caller(caller): Caller,
    body: web::Json<StartRun>,
) -> Result<HttpResponse, OrchestratorError> {
    let body = body.into_inner();
    let project = body
        .project
        .clone()
        .filter(|p| !p.trim().is_empty())
        .or_else(|| caller.sole_project().map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned());
    caller.check_project(&project).map_err(OrchestratorError::Forbidden)?;
    let (pipeline, dir) = load_pipeline(&state, &body)?;
    if body.dry_run {
        let plan = state.engine.plan(&pipeline, &project).await;
        return Ok(HttpResponse::Ok().json(plan));
    }
    if let Some(d) = &dir
        && !d.is_dir()
    {
        return Err(OrchestratorError::NotFound(format!("workdir {} is not a directory", d.display())));
    }
    let view =
        state.engine.start(StartRequest { pipeline, project, source_dir: dir }).await.map_err(problem_of)?;
    Ok(HttpResponse::Created().json(view))
}

/// List runs
///
/// Newest first, with their status (`interrupted`: its process stopped while it ran; resume
/// it) and resume tokens.
#[utoipa::path(
    get,
    path = "/v1/runs",
    tag = "runs",
    operation_id = "list_runs",
    security(("bearer" = ["runs:read"])),
    params(ListQuery),
    responses(
        (status = 200, description = "runs", body = RunList),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    state: web::Data<OrchestratorState>,
    Caller(caller): Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, OrchestratorError> {
    let q = query.into_inner();
    let limit = helix_http::routes::limit(q.limit, 50, 1000).map_err(OrchestratorError::InvalidQuery)?;
    let visible = move |p: &str| caller.may_access(p);
    let runs = state.engine.list(q.project.as_deref(), &visible, limit).await.map_err(problem_of)?;
    Ok(HttpResponse::Ok().json(RunList { runs }))
}

/// One run
///
/// Its phases with every attempt (command, environment, outcome, gates, healing), its
/// checkpoints and its resume token.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    tag = "runs",
    operation_id = "get_run",
    security(("bearer" = ["runs:read"])),
    params(("id" = String, Path, description = "run id")),
    responses(
        (status = 200, description = "the run", body = RunView),
        (status = 404, description = "no such run", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(
    state: web::Data<OrchestratorState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, OrchestratorError> {
    let view = visible_run(&state, &caller, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Cancel a run
///
/// Kills the running command; the run ends `cancelled` with a checkpoint and can be resumed.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/cancel",
    tag = "runs",
    operation_id = "cancel_run",
    security(("bearer" = ["runs:write"])),
    params(("id" = String, Path, description = "run id")),
    responses(
        (status = 202, description = "cancelling", body = Accepted),
        (status = 409, description = "the run is not running", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn cancel(
    state: web::Data<OrchestratorState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, OrchestratorError> {
    let id = path.into_inner();
    let view = visible_run(&state, &caller, &id).await?;
    state.engine.cancel(&id).map_err(problem_of)?;
    state.engine.audit("run.cancel", &caller.id, &id, &view.project);
    Ok(HttpResponse::Accepted().json(Accepted { id, status: "cancelling".to_owned() }))
}

/// Resume a run
///
/// Continues from the latest checkpoint: the phase that was interrupted or failed starts again
/// from its input checkpoint; completed phases are not redone. Attempts interrupted by a crash
/// count against the phase's retries. A `token` naming an older checkpoint answers 409 with the
/// latest token (`resume_token`); `from_checkpoint` forks a new run from an older checkpoint.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/resume",
    tag = "runs",
    operation_id = "resume_run",
    security(("bearer" = ["runs:write"])),
    params(("id" = String, Path, description = "run id")),
    request_body(content = Option<ResumeRun>, description = "optional: a resume token"),
    responses(
        (status = 202, description = "resumed (or, with `from_checkpoint`, the forked run)", body = RunView),
        (status = 400, description = "invalid body", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run, or the token names no checkpoint of it (damaged, mistyped, another run's)", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the run is running, or already succeeded, or the token names an older checkpoint than the latest (the answer's `resume_token` names the latest), or a `decision` is given that the run does not wait for", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn resume(
    state: web::Data<OrchestratorState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    body: Option<web::Json<ResumeRun>>,
) -> Result<HttpResponse, OrchestratorError> {
    let id = path.into_inner();
    let before = visible_run(&state, &caller, &id).await?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    if let Some(d) = &body.decision
        && (d.trim().is_empty() || d.chars().count() > 1000)
    {
        return Err(OrchestratorError::Invalid(
            "decision must be 1 to 1000 characters, not only white space".to_owned(),
        ));
    }
    if body.decision.is_some() && body.from_checkpoint.is_some() {
        // a fork starts from a checkpoint that asked nothing yet
        return Err(OrchestratorError::Engine(crate::engine::EngineError::Conflict(
            "a decision answers the run itself, not a fork".to_owned(),
        )));
    }
    let decision = body.decision;
    let token = body.token;
    if let Some(seq) = body.from_checkpoint {
        if let Some(t) = &token
            && crate::token::ResumeToken::parse(t).map(|p| p.run_id() != id).unwrap_or(true)
        {
            return Err(OrchestratorError::NotFound(format!(
                "the token does not name a checkpoint of run {id}"
            )));
        }
        let view = state.engine.fork(&id, seq).await.map_err(problem_of)?;
        state.engine.audit("run.fork", &caller.id, &view.id, &before.project);
        return Ok(HttpResponse::Accepted().json(view));
    }
    let view = match token {
        Some(t) => {
            // a token that names no checkpoint of this run (damaged, mistyped, another run's)
            let parsed = crate::token::ResumeToken::parse(&t)
                .map_err(|e| OrchestratorError::NotFound(format!("no checkpoint for this token: {e}")))?;
            if parsed.run_id() != id {
                return Err(OrchestratorError::NotFound(format!(
                    "the token is for run {}, not {id}",
                    parsed.run_id()
                )));
            }
            state.engine.resume(&t, decision).await
        }
        None => state.engine.resume_at(&id, None, decision).await,
    }
    .map_err(problem_of)?;
    state.engine.audit("run.resume", &caller.id, &id, &before.project);
    Ok(HttpResponse::Accepted().json(view))
}

/// Replay a phase
///
/// Re-runs phase `phase` (its name, or its 0-based index) of the run with exactly its recorded
/// inputs in a separate workspace, and reports how its outputs differ from the recorded ones.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/phases/{phase}/replay",
    tag = "runs",
    operation_id = "replay_phase",
    security(("bearer" = ["runs:write"])),
    params(("id" = String, Path, description = "run id"), ("phase" = String, Path, description = "phase name or 0-based index"), ReplayQuery),
    responses(
        (status = 200, description = "the replay", body = ReplayReport),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run or phase", body = helix_core::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the phase has not run yet", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn replay(
    state: web::Data<OrchestratorState>,
    Caller(caller): Caller,
    path: web::Path<(String, String)>,
    query: web::Query<ReplayQuery>,
) -> Result<HttpResponse, OrchestratorError> {
    let (id, phase) = path.into_inner();
    let view = visible_run(&state, &caller, &id).await?;
    state.engine.audit("run.replay", &caller.id, &id, &view.project);
    let index = match phase.parse::<usize>() {
        Ok(i) => i,
        Err(_) => view
            .phases
            .iter()
            .chain(view.failed.iter())
            .find(|p| p.name == phase)
            .map(|p| p.index)
            .ok_or_else(|| {
                OrchestratorError::NotFound(format!("run {id} has no recorded phase {phase:?}"))
            })?,
    };
    let report = state.engine.replay(&id, index, query.recorded).await.map_err(problem_of)?;
    Ok(HttpResponse::Ok().json(report))
}

fn sse(ev: &RunEvent) -> web::Bytes {
    let data = serde_json::to_string(ev).unwrap_or_else(|_| "{}".to_owned());
    web::Bytes::from(format!("event: {}\ndata: {data}\n\n", ev.kind))
}

/// Run events
///
/// Server-sent events: every recorded event of the run (`run_started`, `phase_started`,
/// `attempt_started`, `gate`, `heal`, `fix_applied`, `phase_finished`, `checkpoint`,
/// `escalation`, `run_finished`), then live ones while it runs; the stream ends after
/// `run_finished` (or at once for a run not running).
#[utoipa::path(
    get,
    path = "/v1/runs/{id}/events",
    tag = "runs",
    operation_id = "run_events",
    security(("bearer" = ["runs:read"])),
    params(("id" = String, Path, description = "run id")),
    responses(
        (status = 200, description = "an SSE stream of RunEvent JSON objects", content_type = "text/event-stream", body = SseEvent),
        (status = 404, description = "no such run", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn events(
    state: web::Data<OrchestratorState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, OrchestratorError> {
    let id = path.into_inner();
    visible_run(&state, &caller, &id).await?;
    // subscribe first, then read what is recorded: nothing falls between the two
    let live = state.engine.subscribe(&id);
    let (recorded, _) = state.engine.events(&id, 0).await.map_err(problem_of)?;
    let finished = recorded.iter().rev().find(|e| e.kind == "run_finished" || e.kind.starts_with("run_"));
    let already_done = live.is_none() || finished.is_some_and(|e| e.kind == "run_finished");
    // an event written before the read and broadcast after the subscription comes twice
    let seen: std::collections::HashSet<String> =
        recorded.iter().rev().take(256).filter_map(|e| serde_json::to_string(e).ok()).collect();
    let head: Vec<Result<web::Bytes, actix_web::Error>> =
        std::iter::once(Ok(web::Bytes::from_static(b": helix run events\n\n")))
            .chain(recorded.iter().map(|e| Ok(sse(e))))
            .collect();
    let tail = match (live, already_done) {
        (Some(rx), false) => Some(rx),
        _ => None,
    };
    let body = stream::iter(head).chain(stream::unfold((tail, seen), |(rx, seen)| async move {
        let mut rx = rx?;
        loop {
            match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                Err(_) => return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), (Some(rx), seen))),
                Ok(Ok(ev)) => {
                    if serde_json::to_string(&ev).is_ok_and(|s| seen.contains(&s)) {
                        continue;
                    }
                    let last = ev.kind == "run_finished";
                    let bytes = sse(&ev);
                    return Some((Ok(bytes), (if last { None } else { Some(rx) }, seen)));
                }
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    let note = format!("event: lagged\ndata: {{\"missed\": {n}}}\n\n");
                    return Some((Ok(web::Bytes::from(note)), (Some(rx), seen)));
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
