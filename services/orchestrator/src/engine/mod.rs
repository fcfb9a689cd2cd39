//! The run engine: executes pipelines phase by phase, writes a checkpoint after every phase,
//! resumes interrupted runs, replays phases, plans dry runs, and heals failed attempts through
//! the healer.
//!
//! Why it is shaped like this:
//! - **A checkpoint is the only truth.** Everything a later step needs (the workspace as a
//!   manifest, phase records with their exact inputs, variables, attempt counters) is in the
//!   latest checkpoint; memory only mirrors it. A `kill -9` at any moment therefore loses at most
//!   the phase in progress, which restarts from its input checkpoint on resume.
//! - **A phase never runs in the state it could corrupt.** Each attempt gets a fresh directory
//!   materialised from the input manifest (plus the healer's patches applied so far), so a
//!   retry, a resume or a replay starts from exactly the same files.
//! - **One owner per run.** A process owns a run through its file lock ([`RunLock`]) for as
//!   long as it executes it; a second process (or a second resume) is refused, not interleaved.
//! - **Degrade, do not stop.** Without a healer, failures are retried plainly; without a
//!   collector, trace events are dropped and counted; an open circuit at the gateway is waited
//!   out instead of retried into.

mod agent;
mod drive;
mod escalation;
mod flakes;
mod journal;
mod llm;
mod plan;
mod repair;
mod replay;
pub mod takeover;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use helix_core::client::ServiceClient;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::checkpoint::{self, Blobs, Manifest, RunLock, StateError};
use crate::emit::Emitter;
use crate::exec::{Cancel, Outcome};
use crate::gates::GateResult;
use crate::pipeline::{Pipeline, PipelineError};
use crate::token::ResumeToken;

pub use plan::{Plan, PlannedPhase};
pub use replay::{FileChange, ReplayReport};

/// In a run's directory while a phase command runs: its process group (see
/// [`crate::exec::GroupRecord`]).
pub(crate) const GROUP_FILE: &str = "running.group";

/// Settings of the engine (from `[orchestrator]` in the configuration).
/// Longest a resume waits for a run that shows its final status to let go of its lock.
const FINISHING_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Runs of one project executing at once; more are refused (429).
    pub max_runs_per_project: usize,
    /// Runs executing at once over all projects; more are refused (429).
    pub max_runs: usize,
    /// First backoff before retrying a transient failure; doubles per attempt.
    pub retry_backoff: Duration,
    /// Called (POST, JSON) when a run needs a human or is escalated.
    pub escalation_webhook: Option<String>,
    /// Gateway key sent with LLM phases (`Authorization: Bearer`).
    pub gateway_key: Option<String>,
    /// Files and directories never copied into checkpoints (`.git/`, `node_modules/`, ...).
    pub exclude: Vec<String>,
    /// How phase commands are isolated.
    pub sandbox: crate::exec::Sandbox,
    /// rlimits of phase processes unless the pipeline or phase sets its own.
    pub rlimits: crate::exec::Rlimits,
    /// Wall-clock limit of a phase that sets no `timeout`.
    pub phase_timeout: Duration,
    /// Where pipeline secrets come from besides the environment.
    pub secrets_file: Option<PathBuf>,
    /// What contains each attempt's processes (cgroups where available).
    pub containment: crate::contain::Containment,
}

impl Default for EngineSettings {
    fn default() -> EngineSettings {
        EngineSettings {
            max_runs_per_project: 4,
            max_runs: 16,
            retry_backoff: Duration::from_secs(1),
            escalation_webhook: None,
            gateway_key: None,
            exclude: vec![".git/".to_owned(), ".helix/".to_owned(), "__pycache__/".to_owned()],
            sandbox: crate::exec::Sandbox::none(),
            rlimits: crate::exec::Rlimits::default(),
            phase_timeout: Duration::from_secs(3600),
            secrets_file: None,
            containment: crate::contain::Containment::none(),
        }
    }
}

/// The services the engine calls.
#[derive(Debug, Clone)]
pub struct Clients {
    pub healer: ServiceClient,
    pub collector: ServiceClient,
    /// With a timeout long enough for LLM answers.
    pub gateway: ServiceClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// A phase failed for good: attempts exhausted and no healing left.
    NeedsHuman,
    /// A security failure: stopped at once.
    Escalated,
    Cancelled,
    /// Its owner stopped (crash, kill, shutdown) while it was running; resumable.
    Interrupted,
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Running | RunStatus::Interrupted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Passed,
    PassedWithWarnings,
    Failed,
    NeedsHuman,
    Escalated,
    Cancelled,
    /// An attempt its orchestrator never finished (crash, kill -9): counts as a failed one.
    Interrupted,
}

/// The run's descriptor (`run.json`): what does not change while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub project: String,
    pub pipeline: Pipeline,
    pub pipeline_fingerprint: String,
    /// The directory the initial workspace was taken from.
    pub source_dir: Option<String>,
    pub trace_id: String,
    /// The run span's id: every phase span is its child.
    pub span_id: String,
    pub created_at: String,
    /// The run and checkpoint this one was forked from (`from_checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<Lineage>,
}

/// Where a forked run (or a replay) comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lineage {
    pub run: String,
    pub checkpoint: u32,
    /// The original run's trace (the fork's trace links to it).
    pub trace_id: String,
}

/// What the healer made of a failed attempt, and what was done about it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealRecord {
    /// `transient`, `deterministic`, `environment`, `security`, `timeout`, `interrupted`, or
    /// `unknown` (no healer).
    pub failure_class: String,
    pub signature: Option<String>,
    pub message: Option<String>,
    /// `retry_backoff`, `retry_with_hints`, `fix_applied`, `escalate`, `give_up`.
    pub action: String,
    pub backoff_ms: Option<u64>,
    pub hints: Option<String>,
    /// Where the hints came from: `hint:<signature>` (the healer's history of it),
    /// `pattern:<id>`, a proposal's source, or `failure` (the failure's own message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hint_ids: Vec<String>,
    /// The fix applied before the next attempt.
    pub fix: Option<AppliedFix>,
    /// The LLM repair asked for (`[phase.repair]`), when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub repair: Option<repair::RepairRecord>,
    /// The success path this step followed (the healer's most successful one for the
    /// signature in this project and phase), when one decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<String>>,
}

impl HealRecord {
    /// This healing as a step of a success path (see the healer's `paths`).
    pub fn step(&self) -> Option<String> {
        match self.action.as_str() {
            "fix_applied" => {
                let fix = self.fix.as_ref();
                let learned = fix.is_some_and(|f| f.source.starts_with("learned"));
                let origin = fix.and_then(|f| f.origin.clone()).unwrap_or_else(|| "healer".to_owned());
                Some(if learned { "fix:learned".to_owned() } else { format!("fix:{origin}") })
            }
            "retry_with_hints" => Some("hint".to_owned()),
            "retry_backoff" if self.failure_class == "flaky" => Some("flaky".to_owned()),
            "retry_backoff" => Some("backoff".to_owned()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedFix {
    pub signature: String,
    pub description: String,
    pub source: String,
    pub patch: String,
    pub files: Vec<String>,
    /// Who came up with it, as the healer records it (`healer`, `llm_repair`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The diagnostic's key it was made for (what a learned patch is re-based on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An LLM phase's exchange: what was sent and answered, for replays from the recording.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LlmExchange {
    pub model: String,
    /// The request bodies sent (one per ask).
    #[schema(value_type = Vec<Object>)]
    pub requests: Vec<serde_json::Value>,
    /// The answers' texts, in order.
    pub answers: Vec<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub deployment: Option<String>,
    /// Schema validation errors of each rejected answer.
    pub rejections: Vec<Vec<String>>,
}

/// What the agent of an agent phase's attempt did, as its stream and the gateway told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentReport {
    /// `claude-code`, `codex` or `generic`.
    pub profile: String,
    /// The program started.
    pub program: String,
    /// The stream format it printed (`claude-code`, `codex`), when it printed one.
    pub format: Option<String>,
    /// The agent's session or thread id.
    pub session: Option<String>,
    pub model: Option<String>,
    pub turns: u32,
    pub tool_calls: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// What the gateway metered on the attempt's key: the attempt's cost.
    pub cost_usd: f64,
    /// What the agent said it cost (Claude Code computes its own).
    pub reported_cost_usd: Option<f64>,
    /// The attempt's cap: what was left of the phase's `max_cost_usd`.
    pub max_cost_usd: Option<f64>,
    /// Stopped by its budget (the gateway refused a call), not crashed.
    pub budget_exceeded: bool,
    /// The agent's own final message.
    pub final_text: Option<String>,
    /// The agent said it failed, and why.
    pub error: Option<String>,
    /// Lines of its stream that were not understood.
    pub skipped_lines: u64,
}

impl AgentReport {
    /// Takes what the stream said.
    fn absorb(&mut self, o: &crate::agent::stream::Outcome) {
        self.format = o.format.map(|f| f.name().to_owned());
        self.session.clone_from(&o.session);
        self.model.clone_from(&o.model);
        self.turns = o.turns;
        self.tool_calls = o.tool_calls;
        self.input_tokens = o.tokens.input;
        self.output_tokens = o.tokens.output;
        self.cache_read_tokens = o.tokens.cache_read;
        self.cache_write_tokens = o.tokens.cache_write;
        self.reported_cost_usd = o.reported_cost_usd;
        self.budget_exceeded |= o.budget_exceeded;
        self.final_text = o.final_text.as_deref().map(|t| drive::tail(t, 16 * 1024));
        self.error.clone_from(&o.error);
        self.skipped_lines = o.skipped_lines;
    }
}

/// One attempt of a phase.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub n: u32,
    pub started_at: String,
    pub duration_ms: u64,
    /// The environment the phase got (variables, env, `HELIX_HINTS`), recorded for replay.
    pub env: BTreeMap<String, String>,
    /// The command as run (rendered), for command phases.
    pub command: Option<String>,
    /// The rendered prompt, for LLM phases.
    pub prompt: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<Outcome>,
    pub llm: Option<LlmExchange>,
    /// For agent phases: what the agent did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentReport>,
    #[schema(value_type = Vec<Object>)]
    pub gates: Vec<GateResult>,
    pub status: PhaseStatus,
    /// Patches applied to the workspace before this attempt ran (healer fixes).
    pub patches: Vec<String>,
    pub heal: Option<HealRecord>,
    /// Why it could not run at all (bad template, command not found, ...).
    pub error: Option<String>,
    /// Workspace files matching the phase's `inputs` when it started.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Workspace files matching its `outputs` when it passed (each declared glob must match).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Why the attempt ran in simplified mode (`[phase.simplified]`): a pass is then
    /// `passed_with_warnings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// A phase as it ended (or failed for good).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhaseRecord {
    pub index: usize,
    pub name: String,
    pub kind: String,
    pub status: PhaseStatus,
    pub attempts: Vec<Attempt>,
    /// The checkpoint whose workspace the phase started from (its input checkpoint).
    pub input_checkpoint: u32,
    /// The checkpoint written with the workspace it left (for a passed phase).
    pub output_checkpoint: Option<u32>,
    pub started_at: String,
    pub duration_ms: u64,
    pub cost_usd: f64,
}

/// A checkpoint: the whole state of a run after a phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u32,
    pub status: RunStatus,
    /// The phase to run next (== number of phases when the run is complete).
    pub next_phase: usize,
    /// The workspace after the phases completed so far.
    pub manifest: Manifest,
    /// Completed phases, in order.
    pub phases: Vec<PhaseRecord>,
    /// The phase that ended the run unsuccessfully, if any.
    pub failed: Option<PhaseRecord>,
    /// `phases.NAME.output` values for later prompts.
    pub outputs: BTreeMap<String, String>,
    /// Attempts made per phase name, over every session of the run (a resume starts a failed
    /// phase's attempts afresh; this keeps the whole count).
    #[serde(default)]
    pub attempt_counters: BTreeMap<String, u32>,
    pub cost_usd: f64,
    pub written_at: String,
    /// Why the run stopped, for humans.
    pub reason: Option<String>,
    /// Answers to decision gates, by `PHASE/GATE`, given with resumes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decisions: BTreeMap<String, String>,
}

/// A progress event of a run (`events.ndjson`, `GET /v1/runs/{id}/events`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunEvent {
    pub run_id: String,
    pub at: String,
    /// `run_started`, `phase_started`, `attempt_started`, `attempt_finished`, `gate`, `heal`,
    /// `fix_applied`, `phase_finished`, `checkpoint`, `escalation`, `run_finished`.
    pub kind: String,
    pub phase: Option<String>,
    pub attempt: Option<u32>,
    pub message: String,
    pub cost_usd: Option<f64>,
    pub status: Option<String>,
    /// On `checkpoint` events: its number (with the run id, what a resume token names).
    pub checkpoint: Option<u32>,
    /// On `checkpoint` events: the token that resumes from it.
    pub resume_token: Option<String>,
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    pub project: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub trace_id: String,
    pub created_at: String,
    /// Resumes the run from its latest checkpoint.
    pub resume_token: Option<String>,
    pub checkpoint: u32,
    pub next_phase: usize,
    pub phases_total: usize,
    pub cost_usd: f64,
    pub reason: Option<String>,
    /// The final workspace, once the run succeeded.
    pub workspace: Option<String>,
    pub phases: Vec<PhaseRecord>,
    pub failed: Option<PhaseRecord>,
    /// Checkpoint numbers written so far.
    pub checkpoints: Vec<u32>,
    /// The run and checkpoint this run was forked from.
    pub forked_from: Option<Lineage>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("no run {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("run {0} is already running")]
    Busy(String),
    /// The run's state does not allow it (not running, already succeeded, not run that far).
    #[error("{0}")]
    Conflict(String),
    #[error("project {project} already has {limit} runs executing")]
    ProjectFull { project: String, limit: usize },
    #[error("{limit} runs are executing, as many as this orchestrator runs at once (orchestrator.max_runs)")]
    AllFull { limit: usize },
    #[error("{0}")]
    Token(#[from] crate::token::TokenError),
    /// A resume token that names an older checkpoint than the run's latest.
    #[error(
        "the token names checkpoint {given} of run {run}, but the run has since reached checkpoint {latest}: \
         resume with the latest token ({token}), or fork from checkpoint {given} with from_checkpoint = {given} \
         (`helix resume --from-checkpoint {given}`), which starts a new run"
    )]
    Stale { run: String, given: u32, latest: u32, token: String },
    #[error("{0}")]
    Internal(String),
}

/// What starts a run.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub pipeline: Pipeline,
    pub project: String,
    /// The initial workspace (copied into the run's first checkpoint); none: empty.
    pub source_dir: Option<PathBuf>,
}

struct Active {
    cancel: Cancel,
    events: broadcast::Sender<RunEvent>,
}

/// See the module docs.
pub struct Engine {
    root: PathBuf,
    blobs: Arc<Blobs>,
    clients: Clients,
    emitter: Emitter,
    pub(crate) settings: EngineSettings,
    active: Mutex<HashMap<String, Arc<Active>>>,
    running_per_project: Mutex<HashMap<String, usize>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Set by [`Engine::shutdown`]: no run is started or taken over any more.
    stopping: std::sync::atomic::AtomicBool,
    settled: takeover::Settled,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("root", &self.root).finish()
    }
}

pub(crate) fn now_rfc3339() -> String {
    helix_core::time::rfc3339_ms(helix_core::time::now_ms())
}

pub(crate) fn now_nanos() -> u64 {
    u64::try_from(helix_core::time::now_ms()).unwrap_or(0) * 1_000_000
}

/// Runs blocking file work (fsync, hashing, copying) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| EngineError::Internal(format!("blocking task: {e}")))?
}

impl Engine {
    /// Opens the engine's state under `root` (`<data_dir>/orchestrator`). Runs that were running
    /// when their owner died are reported as interrupted until resumed.
    pub fn open(
        root: &Path,
        clients: Clients,
        emitter: Emitter,
        settings: EngineSettings,
    ) -> Result<Engine, EngineError> {
        let blobs = Blobs::open(root)?;
        std::fs::create_dir_all(root.join("runs"))
            .map_err(|e| EngineError::Internal(format!("cannot create {}: {e}", root.display())))?;
        // phase commands whose orchestrator died (kill -9) keep running until someone kills
        // them: whoever opens the state next does, for every run nobody owns
        for id in checkpoint::run::list_runs(root).unwrap_or_default() {
            let Ok(dir) = checkpoint::run::run_dir(root, &id) else { continue };
            if dir.join(GROUP_FILE).exists()
                && let Ok(_lock) = RunLock::acquire(&dir)
                && crate::exec::reap(&dir.join(GROUP_FILE))
            {
                tracing::warn!(run = %id, "killed the process group an interrupted attempt left running");
            }
        }
        // and whatever left that group (setsid daemons, orphans) is still in the attempt's cgroup
        for id in settings.containment.runs_with_groups() {
            let owned = checkpoint::run::run_dir(root, &id).ok().and_then(|d| RunLock::acquire(&d).ok());
            if (owned.is_some() || !crate::token::is_valid_run_id(&id))
                && settings.containment.sweep(Some(&id)) > 0
            {
                tracing::warn!(run = %id, "killed the processes an interrupted attempt left in its cgroup");
            }
        }
        Ok(Engine {
            root: root.to_path_buf(),
            blobs: Arc::new(blobs),
            clients,
            emitter,
            settings,
            active: Mutex::new(HashMap::new()),
            running_per_project: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            settled: takeover::Settled::default(),
        })
    }

    fn run_dir(&self, id: &str) -> Result<PathBuf, EngineError> {
        if !crate::token::is_valid_run_id(id) {
            return Err(EngineError::NotFound(id.to_owned()));
        }
        Ok(checkpoint::run::run_dir(&self.root, id)?)
    }

    /// Starts a run in the background; returns its view right after the first checkpoint.
    pub async fn start(self: &Arc<Engine>, req: StartRequest) -> Result<RunView, EngineError> {
        // a secret nobody can provide fails every attempt: refuse the run instead
        let mut named: Vec<String> = Vec::new();
        for i in 0..req.pipeline.phases.len() {
            named.extend(req.pipeline.secrets_for(i));
        }
        crate::secrets::resolve(&named, self.settings.secrets_file.as_deref())
            .map_err(EngineError::Invalid)?;
        let id = uuid::Uuid::new_v4().to_string();
        self.take_slot(&req.project)?;
        let record = RunRecord {
            id: id.clone(),
            project: req.project.clone(),
            pipeline_fingerprint: req.pipeline.fingerprint(),
            pipeline: req.pipeline,
            source_dir: req.source_dir.as_ref().map(|p| p.display().to_string()),
            trace_id: helix_core::ids::new_trace_id(),
            span_id: helix_core::ids::new_span_id(),
            created_at: now_rfc3339(),
            forked_from: None,
        };
        let dir = self.run_dir(&id)?;
        let blobs = self.blobs.clone();
        let exclude = checkpoint::Exclude::new(&self.settings.exclude);
        let source = req.source_dir.clone();
        let rec = record.clone();
        let (lock, first) = blocking(move || {
            let lock = RunLock::acquire(&dir)?;
            lock.write_descriptor(&rec)?;
            let manifest = match &source {
                Some(src) => checkpoint::snapshot(src, &blobs, &exclude)?,
                None => Manifest::default(),
            };
            let cp = Checkpoint {
                seq: 1,
                status: RunStatus::Running,
                next_phase: 0,
                manifest,
                phases: Vec::new(),
                failed: None,
                outputs: BTreeMap::new(),
                attempt_counters: BTreeMap::new(),
                cost_usd: 0.0,
                written_at: now_rfc3339(),
                reason: None,
                decisions: BTreeMap::new(),
            };
            lock.write_checkpoint(1, &cp)?;
            Ok((lock, cp))
        })
        .await
        .inspect_err(|_| self.release_slot(&req.project))?;
        self.spawn_drive(record, lock, first, true);
        self.view(&id).await
    }

    /// Resumes a run from the checkpoint its token names (normally its latest): the phase that
    /// was interrupted or failed starts again from its input checkpoint.
    pub async fn resume(
        self: &Arc<Engine>,
        token: &str,
        decision: Option<String>,
    ) -> Result<RunView, EngineError> {
        let token = ResumeToken::parse(token)?;
        self.resume_at(token.run_id(), Some(token.seq()), decision).await
    }

    /// Resumes run `id` from its latest checkpoint (or `seq`); `decision` answers the decision
    /// gate the run stopped at.
    pub async fn resume_at(
        self: &Arc<Engine>,
        id: &str,
        seq: Option<u32>,
        decision: Option<String>,
    ) -> Result<RunView, EngineError> {
        let dir = self.run_dir(id)?;
        if !dir.join(checkpoint::run::RUN_FILE).exists() {
            return Err(EngineError::NotFound(id.to_owned()));
        }
        if self.active_run(id).is_some() {
            // A run whose final checkpoint is written shows its final status, and must act like
            // it: it only has its last events to record before it lets go. Wait for that
            // (bounded) instead of calling it busy.
            let finishing = {
                let dir = dir.clone();
                blocking(move || {
                    Ok(checkpoint::run::latest_checkpoint::<Checkpoint>(&dir)?
                        .is_some_and(|(_, cp)| cp.status != RunStatus::Running))
                })
                .await
                .unwrap_or(false)
            };
            let until = std::time::Instant::now() + FINISHING_WAIT;
            while finishing && self.active_run(id).is_some() && std::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if self.active_run(id).is_some() {
                return Err(EngineError::Busy(id.to_owned()));
            }
        }
        let record: RunRecord = checkpoint::read_json(&dir.join(checkpoint::run::RUN_FILE))?;
        self.take_slot(&record.project)?;
        let project = record.project.clone();
        let id_owned = id.to_owned();
        let containment = self.settings.containment.clone();
        let (lock, cp) = blocking(move || {
            // a reader (a view checking whether another process owns the run) may hold the lock
            // for an instant: retry briefly before calling the run busy
            let mut tries = 0;
            let lock = loop {
                match RunLock::acquire(&dir) {
                    Ok(l) => break l,
                    Err(StateError::Locked { .. }) if tries < 20 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(StateError::Locked { .. }) => return Err(EngineError::Busy(id_owned.clone())),
                    Err(e) => return Err(e.into()),
                }
            };
            // a phase command left running by an owner that died (kill -9) must not run twice
            if crate::exec::reap(&dir.join(GROUP_FILE)) {
                tracing::warn!(run = %id_owned, "killed the process group an interrupted attempt left running");
            }
            if containment.sweep(Some(&id_owned)) > 0 {
                tracing::warn!(run = %id_owned, "killed the processes an interrupted attempt left in its cgroup");
            }
            let latest = checkpoint::run::latest_checkpoint::<Checkpoint>(&dir)?
                .ok_or_else(|| EngineError::Invalid(format!("run {id_owned} has no checkpoint")))?;
            let latest_status = latest.1.status;
            // a stale token must not reopen a run that has since succeeded
            if latest_status == RunStatus::Succeeded {
                return Err(EngineError::Conflict(format!(
                    "run {id_owned} already succeeded; nothing to resume"
                )));
            }
            // a run continues from its latest checkpoint only: an older one would redo
            // completed phases (deploys, paid LLM calls); going back is a fork, asked for
            if let Some(s) = seq
                && s != latest.0
            {
                if checkpoint::run::read_checkpoint::<Checkpoint>(&dir, s).is_err() {
                    return Err(EngineError::NotFound(format!("checkpoint {s} of run {id_owned}")));
                }
                return Err(EngineError::Stale {
                    run: id_owned.clone(),
                    given: s,
                    latest: latest.0,
                    token: ResumeToken::new(id_owned.clone(), latest.0)?.encode(),
                });
            }
            let mut cp = latest.1;
            if let Some(answer) = decision {
                // the decision gate the run stopped at: the failed phase's last attempt's
                let pending = cp.failed.as_ref().and_then(|f| {
                    let last = f.attempts.last()?;
                    let g = last.gates.iter().find(|g| g.kind == "decision" && !g.passed)?;
                    Some(format!("{}/{}", f.name, g.name))
                });
                let Some(key) = pending else {
                    return Err(EngineError::Conflict(format!("run {id_owned} waits for no decision")));
                };
                cp.decisions.insert(key, answer);
            }
            if matches!(latest_status, RunStatus::NeedsHuman | RunStatus::Escalated | RunStatus::Cancelled) {
                // stopped on purpose: a person resuming asks for fresh attempts of the phase
                journal::append(&dir, &journal::Entry::Reset { phase: cp.next_phase }, true)
                    .map_err(|e| EngineError::Internal(format!("cannot write the attempt journal: {e}")))?;
            }
            cp.seq = lock.next_seq()?;
            cp.status = RunStatus::Running;
            cp.failed = None;
            cp.reason = None;
            cp.written_at = now_rfc3339();
            lock.write_checkpoint(cp.seq, &cp)?;
            Ok((lock, cp))
        })
        .await
        .inspect_err(|_| self.release_slot(&project))?;
        self.spawn_drive(record, lock, cp, false);
        self.view(id).await
    }

    /// Forks run `id` at its checkpoint `seq`: a new run (new id, new trace) that starts from that
    /// checkpoint's workspace and phase, with its lineage recorded. The original is untouched.
    pub async fn fork(self: &Arc<Engine>, id: &str, seq: u32) -> Result<RunView, EngineError> {
        let dir = self.run_dir(id)?;
        let Some(parent) = checkpoint::run::read_descriptor::<RunRecord>(&dir)? else {
            return Err(EngineError::NotFound(id.to_owned()));
        };
        let from: Checkpoint = checkpoint::run::read_checkpoint(&dir, seq)
            .map_err(|_| EngineError::NotFound(format!("checkpoint {seq} of run {id}")))?;
        if from.next_phase >= parent.pipeline.phases.len() {
            return Err(EngineError::Conflict(format!(
                "checkpoint {seq} of run {id} is after its last phase; nothing to run from it"
            )));
        }
        let new_id = uuid::Uuid::new_v4().to_string();
        self.take_slot(&parent.project)?;
        let record = RunRecord {
            id: new_id.clone(),
            project: parent.project.clone(),
            pipeline_fingerprint: parent.pipeline_fingerprint.clone(),
            pipeline: parent.pipeline.clone(),
            source_dir: parent.source_dir.clone(),
            trace_id: helix_core::ids::new_trace_id(),
            span_id: helix_core::ids::new_span_id(),
            created_at: now_rfc3339(),
            forked_from: Some(Lineage {
                run: id.to_owned(),
                checkpoint: seq,
                trace_id: parent.trace_id.clone(),
            }),
        };
        let new_dir = self.run_dir(&new_id)?;
        let rec = record.clone();
        let project = parent.project.clone();
        let (lock, cp) = blocking(move || {
            let lock = RunLock::acquire(&new_dir)?;
            lock.write_descriptor(&rec)?;
            let cp = Checkpoint {
                seq: 1,
                status: RunStatus::Running,
                failed: None,
                reason: None,
                written_at: now_rfc3339(),
                ..from
            };
            lock.write_checkpoint(1, &cp)?;
            Ok((lock, cp))
        })
        .await
        .inspect_err(|_| self.release_slot(&project))?;
        self.spawn_drive(record, lock, cp, true);
        self.view(&new_id).await
    }

    /// Cancels a running run: its command is killed, the run ends `cancelled` (resumable).
    pub fn cancel(&self, id: &str) -> Result<(), EngineError> {
        match self.active_run(id) {
            Some(a) => {
                a.cancel.cancel();
                Ok(())
            }
            None => {
                let dir = self.run_dir(id)?;
                if dir.join(checkpoint::run::RUN_FILE).exists() {
                    Err(EngineError::Conflict(format!("run {id} is not running")))
                } else {
                    Err(EngineError::NotFound(id.to_owned()))
                }
            }
        }
    }

    fn active_run(&self, id: &str) -> Option<Arc<Active>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// Live events of a running run (none when it is not running here).
    pub fn subscribe(&self, id: &str) -> Option<broadcast::Receiver<RunEvent>> {
        self.active_run(id).map(|a| a.events.subscribe())
    }

    /// Recorded events of run `id` from line `from`.
    pub async fn events(&self, id: &str, from: usize) -> Result<(Vec<RunEvent>, usize), EngineError> {
        let dir = self.run_dir(id)?;
        if !dir.join(checkpoint::run::RUN_FILE).exists() {
            return Err(EngineError::NotFound(id.to_owned()));
        }
        blocking(move || {
            let ev = checkpoint::run::read_events::<RunEvent>(&dir, from)?;
            Ok((ev.events, ev.next_line))
        })
        .await
    }

    /// The run no longer executes here: forgets it and frees its bulkhead slot (once, whoever
    /// calls first: the drive as it ends, or its task's cleanup after a panic).
    pub(crate) fn finish_run(&self, id: &str, project: &str) {
        let was_active = self.active.lock().unwrap_or_else(PoisonError::into_inner).remove(id).is_some();
        if was_active {
            self.release_slot(project);
        }
    }

    /// Bulkhead: counts a run of `project` as executing, or refuses it; the drive task releases.
    fn take_slot(&self, project: &str) -> Result<(), EngineError> {
        let mut running = self.running_per_project.lock().unwrap_or_else(PoisonError::into_inner);
        // the global bound first: a new project name must not get around it
        let total: usize = running.values().sum();
        if total >= self.settings.max_runs {
            return Err(EngineError::AllFull { limit: self.settings.max_runs });
        }
        let n = running.entry(project.to_owned()).or_default();
        if *n >= self.settings.max_runs_per_project {
            return Err(EngineError::ProjectFull {
                project: project.to_owned(),
                limit: self.settings.max_runs_per_project,
            });
        }
        *n += 1;
        Ok(())
    }

    fn release_slot(&self, project: &str) {
        let mut running = self.running_per_project.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = running.get_mut(project) {
            *n = n.saturating_sub(1);
        }
    }

    fn spawn_drive(self: &Arc<Engine>, record: RunRecord, lock: RunLock, cp: Checkpoint, fresh: bool) {
        let (events, _) = broadcast::channel(1024);
        let active = Arc::new(Active { cancel: Cancel::new(), events });
        self.active.lock().unwrap_or_else(PoisonError::into_inner).insert(record.id.clone(), active.clone());
        let engine = self.clone();
        let handle = tokio::spawn(async move {
            let id = record.id.clone();
            let project = record.project.clone();
            // a panic in one run must not take the service or other runs down
            let run = drive::Driver::new(engine.clone(), record, lock, active.clone(), fresh);
            let result = tokio::spawn(run.drive(cp)).await;
            if let Err(e) = result {
                tracing::error!(run = %id, error = %e, "run task failed; the run stays resumable");
            }
            engine.finish_run(&id, &project);
        });
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// Waits until run `id` is no longer executing here (tests, the CLI's local mode).
    pub async fn wait(&self, id: &str) {
        while self.active_run(id).is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels every run and waits for them to write their checkpoints (shutdown).
    pub async fn shutdown(&self, grace: Duration) {
        // runs this replica stops are left to whoever takes them over, never to itself
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
        let active: Vec<Arc<Active>> =
            self.active.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for a in &active {
            a.cancel.cancel();
        }
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = tokio::time::timeout(grace, futures_util::future::join_all(tasks)).await;
        self.emitter.flush(Duration::from_secs(2)).await;
    }

    /// One run as the API shows it.
    pub async fn view(&self, id: &str) -> Result<RunView, EngineError> {
        let dir = self.run_dir(id)?;
        let running_here = self.active_run(id).is_some();
        let id_owned = id.to_owned();
        blocking(move || {
            let Some(record) = checkpoint::run::read_descriptor::<RunRecord>(&dir)? else {
                return Err(EngineError::NotFound(id_owned));
            };
            let checkpoints = checkpoint::run::list_checkpoints(&dir)?;
            let (seq, cp) = checkpoint::run::latest_checkpoint::<Checkpoint>(&dir)?
                .ok_or_else(|| EngineError::Invalid(format!("run {id_owned} has no checkpoint")))?;
            let mut status = cp.status;
            if status == RunStatus::Running && !running_here && !owned_elsewhere(&dir) {
                status = RunStatus::Interrupted;
            }
            let resume_token = (status != RunStatus::Succeeded)
                .then(|| ResumeToken::new(record.id.clone(), seq).ok().map(|t| t.encode()))
                .flatten();
            let workspace = dir.join("workspace");
            Ok(RunView {
                id: record.id,
                project: record.project,
                pipeline: record.pipeline.name.clone(),
                status,
                trace_id: record.trace_id,
                created_at: record.created_at,
                resume_token,
                checkpoint: seq,
                next_phase: cp.next_phase,
                phases_total: record.pipeline.phases.len(),
                cost_usd: cp.cost_usd,
                reason: cp.reason,
                // absolute: the data directory may be relative to where the service started
                workspace: (status == RunStatus::Succeeded && workspace.is_dir())
                    .then(|| std::path::absolute(&workspace).unwrap_or(workspace).display().to_string()),
                phases: cp.phases,
                failed: cp.failed,
                checkpoints,
                forked_from: record.forked_from,
            })
        })
        .await
    }

    /// Records an operator action (run cancelled, resumed, replayed) as an audit span.
    pub fn audit(&self, action: &str, actor: &str, run_id: &str, project: &str) {
        self.emitter.emit(helix_core::trace::audit_event(action, actor, run_id, Some(project)));
    }

    /// Every run, newest first, optionally of one project, of the projects `visible` admits.
    pub async fn list(
        &self,
        project: Option<&str>,
        visible: &(dyn Fn(&str) -> bool + Send + Sync),
        limit: usize,
    ) -> Result<Vec<RunView>, EngineError> {
        let root = self.root.clone();
        let ids = blocking(move || Ok(checkpoint::run::list_runs(&root)?)).await?;
        let mut views = Vec::new();
        for id in ids {
            match self.view(&id).await {
                Ok(v) if project.is_none_or(|p| v.project == p) && visible(&v.project) => views.push(v),
                Ok(_) => {}
                Err(e) => tracing::warn!(run = %id, error = %e, "skipping an unreadable run"),
            }
        }
        views.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        views.truncate(limit);
        Ok(views)
    }

    /// Plans `pipeline` without executing anything (dry run).
    pub async fn plan(&self, pipeline: &Pipeline, project: &str) -> Plan {
        plan::plan(self, pipeline, project).await
    }

    /// Re-runs phase `index` of run `id` with exactly its recorded inputs in a separate workspace
    /// and reports how its outputs differ from the recorded run.
    pub async fn replay(&self, id: &str, index: usize, recorded: bool) -> Result<ReplayReport, EngineError> {
        replay::replay(self, id, index, recorded).await
    }
}

/// Whether another process holds the run's lock (a run it is executing).
fn owned_elsewhere(dir: &Path) -> bool {
    match RunLock::acquire(dir) {
        Ok(_lock) => false,
        Err(StateError::Locked { .. }) => true,
        Err(_) => false,
    }
}
