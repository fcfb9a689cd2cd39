//! `helix run`, `helix plan`, `helix runs`, `helix resume`, `helix replay`, `helix cancel`: the
//! orchestrator's runs API in the terminal.
//!
//! Why a client of the service and not the engine in-process: a run belongs to the orchestrator
//! (`helix up`), which owns its lock, checkpoints and healing. The command line only starts,
//! follows and reports, so closing the terminal never stops a run, and an orchestrator that went
//! away is told apart from a run that failed: exit 2 and the resume token, instead of 1.
//!
//! Exit codes, for scripts: 0 the run succeeded (replay: identical to the recording); 1 it ended
//! without success (replay: outputs differ, or the phase failed); 2 it could not start or its end
//! was not seen (invalid pipeline, orchestrator unreachable or gone mid-run).
//!
//! Following a run reads `GET /v1/runs/{id}/events`, which replays every recorded event of the
//! run from its very start, earlier sessions included. Before a resume, the recorded events are
//! therefore counted (the stream of a run that is not running ends after them) and that many are
//! skipped afterwards, so only the new session is shown and an old `run_finished` is not taken
//! for the end.
//!
//! The renderers ([`Progress`], [`render_plan`], [`render_runs`], [`render_replay`]) are pure
//! functions of the API's JSON, unit-tested without a server.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use futures_util::StreamExt as _;
use helix_core::client::{ClientError, ServiceClient, encode_query};
use helix_orchestrator::token::{PREFIX, ResumeToken};
use serde::Deserialize;
use serde_json::{Value, json};

/// Bound of quick calls (start, list, resume, cancel).
const QUICK: Duration = Duration::from_secs(60);
/// Bound of a replay: it runs a whole phase again.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest action shown in a plan's table, in characters.
const ACTION_CHARS: usize = 48;

/// The run ended without success (or a replay differs).
const EXIT_FAILED: u8 = 1;
/// The run could not start, or its end was not seen.
const EXIT_UNKNOWN: u8 = 2;

// --- the API's answers, as this command reads them (only what it shows; all defaulted) ---

/// `RunView` of the orchestrator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    pub id: String,
    pub project: String,
    pub pipeline: String,
    pub status: String,
    pub trace_id: String,
    pub created_at: String,
    pub resume_token: Option<String>,
    pub checkpoint: u32,
    pub next_phase: usize,
    pub phases_total: usize,
    pub cost_usd: f64,
    pub reason: Option<String>,
    pub workspace: Option<String>,
}

/// `RunEvent` of the orchestrator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EventView {
    pub at: String,
    pub kind: String,
    pub phase: Option<String>,
    pub attempt: Option<u32>,
    pub message: String,
    pub cost_usd: Option<f64>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct PlanView {
    pipeline: String,
    project: String,
    fingerprint: String,
    phases: Vec<PlannedView>,
    estimated_cost_usd: f64,
    estimated_duration_secs: f64,
    baselines_available: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct PlannedView {
    index: usize,
    name: String,
    kind: String,
    action: String,
    model: Option<String>,
    max_attempts: u32,
    gates: Vec<String>,
    estimated_cost_usd: Option<f64>,
    estimated_duration_secs: Option<f64>,
    problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ReplayView {
    run_id: String,
    phase: String,
    index: usize,
    workspace: String,
    recorded: bool,
    passed: bool,
    exit_code: Option<i32>,
    gates: Vec<GateView>,
    changes: Vec<ChangeView>,
    same_output: bool,
    duration_ms: u64,
    replay_id: String,
    trace_id: String,
    output_diff: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct GateView {
    name: String,
    passed: bool,
    severity: String,
    detail: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ChangeView {
    path: String,
    change: String,
    diff: Option<String>,
}

// --- talking to the orchestrator ---

/// The orchestrator at a base URL.
struct Orchestrator {
    url: String,
    client: ServiceClient,
}

impl Orchestrator {
    fn new(url: &str) -> anyhow::Result<Orchestrator> {
        let client = crate::client::client(url, QUICK)?;
        Ok(Orchestrator { url: client.base_url().to_owned(), client })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.client.get_json_value(path).await.map_err(|e| self.explain(e))
    }

    async fn post(&self, path: &str, body: Option<&Value>, timeout: Duration) -> Result<Value, ClientError> {
        self.client.post_json_value(path, body, Some(timeout)).await
    }

    /// One run, by its full id.
    async fn run(&self, id: &str) -> anyhow::Result<(RunSummary, Value)> {
        let raw = self.get(&format!("/v1/runs/{}", encode_query(id))).await?;
        let run = RunSummary::deserialize(&raw).context("unexpected run JSON")?;
        Ok((run, raw))
    }

    /// A run named by its id, a unique prefix of it (as `helix runs` shows), or a resume token.
    async fn resolve(&self, name: &str) -> anyhow::Result<String> {
        let name = name.trim();
        if name.is_empty() {
            return Err(anyhow!("name a run: its id (or the start of it) or a resume token"));
        }
        if is_token(name) {
            return Ok(ResumeToken::parse(name)?.run_id().to_owned());
        }
        match self.client.get_json_value(&format!("/v1/runs/{}", encode_query(name))).await {
            Ok(_) => return Ok(name.to_owned()),
            Err(ClientError::Status { status: 404, .. }) => {}
            Err(e) => return Err(self.explain(e)),
        }
        let list = self.get("/v1/runs?limit=1000").await?;
        let ids: Vec<&str> = list["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str())
            .filter(|id| id.starts_with(name))
            .collect();
        match ids.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(anyhow!("no run {name} at {}", self.url)),
            more => {
                Err(anyhow!("{name} names {} runs: {}; give more of the id", more.len(), more.join(", ")))
            }
        }
    }

    fn explain(&self, e: ClientError) -> anyhow::Error {
        match e {
            ClientError::Transport { message, .. } => anyhow!(
                "cannot reach the orchestrator at {} (start it with `helix up`, or pass --url): {message}",
                self.url
            ),
            ClientError::Status { status, detail, .. } | ClientError::Busy { status, detail, .. } => {
                anyhow!("the orchestrator answered {status}: {detail}")
            }
            e => anyhow!("{e}"),
        }
    }
}

fn is_token(s: &str) -> bool {
    s.trim().get(..PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

fn unknown(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(EXIT_UNKNOWN)
}

fn absolute(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The body of `POST /v1/runs` for a pipeline file.
fn start_body(
    file: &Path,
    project: Option<&str>,
    workdir: Option<&Path>,
    dry_run: bool,
) -> anyhow::Result<Value> {
    let path = absolute(file, "pipeline file")?;
    if !path.is_file() {
        return Err(anyhow!("{} is not a file", path.display()));
    }
    // checked here first: the orchestrator does not quote files it reads for a client
    helix_orchestrator::pipeline::Pipeline::load_verbose(&path)
        .map_err(|e| anyhow!("invalid pipeline: {e}"))?;
    let mut body = json!({"pipeline_path": path.display().to_string(), "dry_run": dry_run});
    if let Some(p) = project {
        body["project"] = json!(p);
    }
    if !dry_run {
        let dir = match workdir {
            Some(d) => absolute(d, "workdir")?,
            None => path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/")),
        };
        body["workdir"] = json!(dir.display().to_string());
    }
    Ok(body)
}

/// The answer to a start or plan that was refused: an invalid pipeline is the user's to fix.
fn refused(orch: &Orchestrator, e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Status { status: 400, detail, .. } => {
            // the detail names the file, the line and the key
            anyhow!("invalid pipeline: {}", detail.trim_end_matches(" (invalid_pipeline)"))
        }
        e => orch.explain(e),
    }
}

/// `helix run PIPELINE.toml`: starts the run, prints its id and resume token, then follows it.
pub async fn run(
    url: &str,
    file: &Path,
    project: Option<&str>,
    workdir: Option<&Path>,
    detach: bool,
    json: bool,
) -> ExitCode {
    let started = async {
        let orch = Orchestrator::new(url)?;
        let body = start_body(file, project, workdir, false)?;
        let raw = orch.post("/v1/runs", Some(&body), QUICK).await.map_err(|e| refused(&orch, e))?;
        let run = RunSummary::deserialize(&raw).context("unexpected run JSON")?;
        anyhow::Ok((orch, run, raw))
    };
    let (orch, run, raw) = match started.await {
        Ok(s) => s,
        Err(e) => return unknown(&e),
    };
    if json {
        if detach {
            println!("{raw}");
            return ExitCode::SUCCESS;
        }
    } else {
        println!(
            "run {}  pipeline {} ({} phases)  project {}",
            run.id, run.pipeline, run.phases_total, run.project
        );
        if let Some(t) = &run.resume_token {
            println!(
                "resume token {t} (names checkpoint {}; each checkpoint prints the next)",
                run.checkpoint
            );
        }
        println!("trace {}  (helix trace {})", run.trace_id, run.trace_id);
        if detach {
            println!("follow it with `helix runs`; stop it with `helix cancel {}`", short(&run.id));
            return ExitCode::SUCCESS;
        }
    }
    let progress = Progress::new(run.phases_total, 0, 0.0);
    follow(&orch, &run, 0, progress, json).await
}

/// `helix resume TOKEN` (or a run id: from its latest checkpoint), then follows the run.
pub async fn resume(
    url: &str,
    target: &str,
    from_checkpoint: Option<u32>,
    decision: Option<String>,
    json: bool,
) -> ExitCode {
    let resumed = async {
        let orch = Orchestrator::new(url)?;
        let target = target.trim();
        let (id, token) = if is_token(target) {
            let t = ResumeToken::parse(target)?;
            (t.run_id().to_owned(), Some(target.to_owned()))
        } else {
            (orch.resolve(target).await?, None)
        };
        let (before, _) = orch.run(&id).await?;
        if let Some(seq) = from_checkpoint {
            let body = json!({"token": token, "from_checkpoint": seq});
            let raw = orch
                .post(&format!("/v1/runs/{}/resume", encode_query(&id)), Some(&body), QUICK)
                .await
                .map_err(|e| orch.explain(e))?;
            let run = RunSummary::deserialize(&raw).context("unexpected run JSON")?;
            if !json {
                println!("forked run {id} at checkpoint {seq} into a new run:");
            }
            return anyhow::Ok((orch, run, 0));
        }
        if before.status == "running" {
            return Err(anyhow!("run {id} is running; nothing to resume"));
        }
        // the stream of a run that is not running ends after its recorded events
        let skip = tokio::time::timeout(QUICK, count_events(&orch, &id))
            .await
            .map_err(|_| anyhow!("run {id} is running (its events do not end); nothing to resume"))??;
        let mut body = json!({"token": token});
        if let Some(d) = &decision {
            body["decision"] = json!(d);
        }
        let raw = orch
            .post(&format!("/v1/runs/{}/resume", encode_query(&id)), Some(&body), QUICK)
            .await
            .map_err(|e| orch.explain(e))?;
        let run = RunSummary::deserialize(&raw).context("unexpected run JSON")?;
        anyhow::Ok((orch, run, skip))
    };
    let (orch, run, skip) = match resumed.await {
        Ok(r) => r,
        Err(e) => return unknown(&e),
    };
    if !json {
        println!(
            "resumed run {}  pipeline {} at phase {}/{}  project {}",
            run.id,
            run.pipeline,
            (run.next_phase + 1).min(run.phases_total),
            run.phases_total,
            run.project
        );
        if let Some(t) = &run.resume_token {
            println!("resume token {t} (names checkpoint {})", run.checkpoint);
        }
    }
    let progress = Progress::new(run.phases_total, run.next_phase, run.cost_usd);
    follow(&orch, &run, skip, progress, json).await
}

/// How many events run `id` has recorded (its stream must end: the run is not running).
async fn count_events(orch: &Orchestrator, id: &str) -> anyhow::Result<usize> {
    let path = format!("/v1/runs/{}/events", encode_query(id));
    let feed = orch.client.sse(&path).await.map_err(|e| orch.explain(e))?;
    let mut feed = std::pin::pin!(feed);
    let mut n = 0;
    while let Some(item) = feed.next().await {
        let (event, _) = item.map_err(|e| orch.explain(e))?;
        if event != "lagged" {
            n += 1;
        }
    }
    Ok(n)
}

/// The terminal's status line: redrawn under the event lines, on a terminal only.
struct StatusLine {
    on: bool,
    shown: bool,
}

impl StatusLine {
    fn clear(&mut self) {
        if self.shown {
            print!("\r\x1b[2K");
            self.shown = false;
        }
    }

    fn draw(&mut self, text: &str) {
        if self.on {
            print!("\r\x1b[2K{text}");
            let _ = std::io::stdout().flush();
            self.shown = true;
        }
    }
}

/// Follows run `run` from its event stream (skipping the first `skip` events), then reports how
/// it ended; the exit code says how (see the module docs).
async fn follow(
    orch: &Orchestrator,
    run: &RunSummary,
    skip: usize,
    mut progress: Progress,
    json: bool,
) -> ExitCode {
    let path = format!("/v1/runs/{}/events", encode_query(&run.id));
    let mut status = StatusLine { on: !json && std::io::stdout().is_terminal(), shown: false };
    let mut broken: Option<String> = None;
    match orch.client.sse(&path).await {
        Err(e) => broken = Some(e.to_string()),
        Ok(feed) => {
            let mut feed = std::pin::pin!(feed);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut seen = 0usize;
            loop {
                let item = tokio::select! {
                    item = feed.next() => item,
                    _ = tick.tick() => {
                        if status.on {
                            status.draw(&progress.status_line(helix_core::time::now_ms()));
                        }
                        continue;
                    }
                };
                let Some(item) = item else { break };
                let (event, data) = match item {
                    Ok(x) => x,
                    Err(e) => {
                        broken = Some(e.to_string());
                        break;
                    }
                };
                if event == "lagged" {
                    let missed = serde_json::from_str::<Value>(&data).ok().map(|v| v["missed"].clone());
                    status.clear();
                    if !json {
                        println!("(missed {} events)", missed.unwrap_or(Value::Null));
                    }
                    continue;
                }
                seen += 1;
                if seen <= skip {
                    continue;
                }
                let Ok(ev) = serde_json::from_str::<EventView>(&data) else { continue };
                let line = progress.apply(&ev);
                status.clear();
                if json {
                    println!("{data}");
                } else {
                    println!("{line}");
                }
                if ev.kind == "run_finished" {
                    break;
                }
                status.draw(&progress.status_line(helix_core::time::now_ms()));
            }
        }
    }
    status.clear();
    let _ = std::io::stdout().flush();
    let latest_token = || {
        progress
            .checkpoint
            .and_then(|seq| ResumeToken::new(run.id.clone(), seq).ok())
            .map(|t| t.encode())
            .or_else(|| run.resume_token.clone())
            .unwrap_or_default()
    };
    let (end, raw) = match orch.run(&run.id).await {
        Ok(r) => r,
        Err(e) => {
            let why = broken.unwrap_or_else(|| format!("{e:#}"));
            eprintln!("error: lost the orchestrator at {} while following run {}: {why}", orch.url, run.id);
            eprintln!("when it runs again, resume the run with: helix resume {}", latest_token());
            return ExitCode::from(EXIT_UNKNOWN);
        }
    };
    if json {
        println!("{raw}");
    } else {
        print!("{}", render_end(&end, progress.elapsed_ms(helix_core::time::now_ms())));
    }
    match end.status.as_str() {
        "succeeded" => ExitCode::SUCCESS,
        "running" | "interrupted" => {
            if let Some(b) = broken {
                eprintln!("error: the event stream broke: {b}");
            }
            ExitCode::from(EXIT_UNKNOWN)
        }
        _ => ExitCode::from(EXIT_FAILED),
    }
}

/// `helix plan PIPELINE.toml`: the dry run.
pub async fn plan(url: &str, file: &Path, project: Option<&str>, json: bool) -> ExitCode {
    let planned = async {
        let orch = Orchestrator::new(url)?;
        let body = start_body(file, project, None, true)?;
        orch.post("/v1/runs", Some(&body), QUICK).await.map_err(|e| refused(&orch, e))
    };
    match planned.await {
        Ok(plan) if json => {
            println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(plan) => match render_plan(&plan) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => unknown(&anyhow!(e)),
        },
        Err(e) => unknown(&e),
    }
}

/// `helix runs`: the table of runs, newest first.
pub async fn runs(url: &str, project: Option<&str>, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    let orch = Orchestrator::new(url)?;
    let mut path = format!("/v1/runs?limit={limit}");
    if let Some(p) = project {
        path.push_str(&format!("&project={}", encode_query(p)));
    }
    let list = orch.get(&path).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", render_runs(&list).map_err(anyhow::Error::msg)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `helix replay RUN --phase NAME_OR_INDEX`: exit 0 when identical to the recording.
pub async fn replay(
    url: &str,
    run: &str,
    phase: &str,
    recorded: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let orch = Orchestrator::new(url)?;
    let id = orch.resolve(run).await?;
    let path = format!(
        "/v1/runs/{}/phases/{}/replay?recorded={recorded}",
        encode_query(&id),
        encode_query(phase.trim())
    );
    let report = orch.post(&path, None, REPLAY_TIMEOUT).await.map_err(|e| orch.explain(e))?;
    let view = ReplayView::deserialize(&report).context("unexpected replay JSON")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_replay(&view));
    }
    Ok(if view.identical() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

/// `helix cancel RUN`.
pub async fn cancel(url: &str, run: &str) -> anyhow::Result<ExitCode> {
    let orch = Orchestrator::new(url)?;
    let id = orch.resolve(run).await?;
    orch.post(&format!("/v1/runs/{}/cancel", encode_query(&id)), None, QUICK)
        .await
        .map_err(|e| orch.explain(e))?;
    println!("cancelling run {id}; it stops with a checkpoint and can be resumed");
    Ok(ExitCode::SUCCESS)
}

// --- rendering (pure) ---

/// What a follower knows of a run from its events so far: it makes each event's line and the
/// status line (phase i/n, attempt, elapsed, cost so far).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    start_ms: Option<i64>,
    phases_total: usize,
    /// Phases completed before this session started.
    phases_before: usize,
    phases_started: usize,
    phase: Option<String>,
    attempt: Option<u32>,
    /// Cost as of the latest checkpoint (cumulative over the run).
    checkpoint_cost: f64,
    cost_usd: f64,
    /// The latest checkpoint seen, for a resume token when the orchestrator goes away.
    pub checkpoint: Option<u32>,
}

impl Progress {
    /// A run of `phases_total` phases, `phases_before` of them done, `cost_usd` spent so far.
    pub fn new(phases_total: usize, phases_before: usize, cost_usd: f64) -> Progress {
        Progress { phases_total, phases_before, checkpoint_cost: cost_usd, cost_usd, ..Progress::default() }
    }

    /// Takes one event into account; returns its line: elapsed time since the first event,
    /// phase, attempt and the message.
    pub fn apply(&mut self, ev: &EventView) -> String {
        let at = at_ms(&ev.at);
        if self.start_ms.is_none() {
            self.start_ms = at;
        }
        match ev.kind.as_str() {
            "phase_started" => {
                self.phases_started += 1;
                self.phase = ev.phase.clone();
                self.attempt = None;
            }
            "attempt_started" => self.attempt = ev.attempt,
            "phase_finished" => self.cost_usd = self.checkpoint_cost + ev.cost_usd.unwrap_or(0.0),
            "checkpoint" => {
                if let Some(c) = ev.cost_usd {
                    self.checkpoint_cost = c;
                    self.cost_usd = c;
                }
                self.checkpoint = checkpoint_seq(&ev.message).or(self.checkpoint);
            }
            "run_finished" => {
                if let Some(c) = ev.cost_usd {
                    self.cost_usd = c;
                }
            }
            _ => {}
        }
        let elapsed = match (at, self.start_ms) {
            (Some(a), Some(s)) => format!("+{}", seconds(a.saturating_sub(s))),
            _ => String::new(),
        };
        let phase = ev.phase.as_deref().unwrap_or("-");
        let attempt = ev.attempt.map(|n| format!("#{n}")).unwrap_or_default();
        format!("{elapsed:>9}  {phase:<12} {attempt:>3}  {}", ev.message.trim_end())
    }

    /// Milliseconds since the first event, at `now_ms`.
    pub fn elapsed_ms(&self, now_ms: i64) -> Option<i64> {
        self.start_ms.map(|s| now_ms.saturating_sub(s).max(0))
    }

    /// `phase 2/3 test · attempt 1 · 4.2s · $0.0100`.
    pub fn status_line(&self, now_ms: i64) -> String {
        let mut parts = Vec::new();
        match &self.phase {
            Some(name) => {
                let i = (self.phases_before + self.phases_started).min(self.phases_total.max(1));
                parts.push(format!("phase {i}/{} {name}", self.phases_total));
            }
            None => parts.push("starting".to_owned()),
        }
        if let Some(n) = self.attempt {
            parts.push(format!("attempt {n}"));
        }
        parts.push(seconds(self.elapsed_ms(now_ms).unwrap_or(0)));
        parts.push(format!("${:.4}", self.cost_usd));
        format!("▸ {}", parts.join(" · "))
    }
}

/// The `N` of a checkpoint event's `checkpoint N written`.
fn checkpoint_seq(message: &str) -> Option<u32> {
    message.strip_prefix("checkpoint ")?.split_whitespace().next()?.parse().ok()
}

fn at_ms(at: &str) -> Option<i64> {
    helix_core::time::parse_rfc3339_nanos(at).and_then(|n| i64::try_from(n / 1_000_000).ok())
}

/// `1.250s`, `2m05.3s`.
fn seconds(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    } else {
        format!("{}m{:02}.{}s", ms / 60_000, ms % 60_000 / 1000, ms % 1000 / 100)
    }
}

/// A run's end: status, cost, and the workspace or the reason and how to resume.
pub fn render_end(run: &RunSummary, elapsed_ms: Option<i64>) -> String {
    let mut out = String::new();
    let mut facts = vec![run.status.clone()];
    facts.push(format!("{}/{} phases", run.next_phase.min(run.phases_total), run.phases_total));
    if let Some(ms) = elapsed_ms {
        facts.push(seconds(ms));
    }
    facts.push(format!("${:.4}", run.cost_usd));
    let _ = writeln!(out, "{}", facts.join(" · "));
    if run.status == "succeeded" {
        if let Some(w) = &run.workspace {
            let _ = writeln!(out, "workspace {w}");
        }
    } else {
        if let Some(reason) = run.reason.as_deref().filter(|r| !r.is_empty()) {
            let _ = writeln!(out, "reason: {reason}");
        }
        if let Some(t) = &run.resume_token {
            let _ = writeln!(out, "resume with: helix resume {t}");
        }
    }
    out
}

/// The first 8 characters of a run id (what `helix runs` shows; any unique prefix names a run).
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// One line, at most `max` characters, cut with `…`.
fn cut(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut c: String = flat.chars().take(max.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

/// Columns separated by two spaces, each as wide as its widest cell; `right` aligns right.
fn table(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            if i > 0 {
                l.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            }
        }
        let mut l = l.trim_end().to_owned();
        l.push('\n');
        l
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |c| format!("${:.4}", c + 0.0))
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| seconds((s * 1000.0) as i64))
}

/// A dry run's answer (`Plan`) as a table, the gates and problems per phase, and the totals.
pub fn render_plan(plan: &Value) -> Result<String, String> {
    if !plan.get("phases").is_some_and(Value::is_array) {
        return Err("unexpected plan JSON: no phases".to_owned());
    }
    let p = PlanView::deserialize(plan).map_err(|e| format!("unexpected plan JSON: {e}"))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan {} · project {} · {} phases · fingerprint {}",
        p.pipeline,
        p.project,
        p.phases.len(),
        p.fingerprint.get(..12).unwrap_or(&p.fingerprint)
    );
    out.push('\n');
    let rows: Vec<Vec<String>> = p
        .phases
        .iter()
        .map(|ph| {
            let action = match &ph.model {
                Some(m) => format!("[{m}] {}", ph.action),
                None => ph.action.clone(),
            };
            vec![
                ph.index.to_string(),
                ph.name.clone(),
                ph.kind.clone(),
                cut(&action, ACTION_CHARS),
                ph.gates.len().to_string(),
                ph.max_attempts.to_string(),
                money(ph.estimated_cost_usd),
                secs(ph.estimated_duration_secs),
            ]
        })
        .collect();
    out.push_str(&table(
        &["#", "phase", "kind", "action", "gates", "attempts", "est. cost", "est. time"],
        &rows,
        &[true, false, false, false, true, true, true, true],
    ));
    let _ = writeln!(
        out,
        "\ntotal: est. cost ${:.4} · est. time {}",
        // an empty f64 sum is -0.0
        p.estimated_cost_usd + 0.0,
        seconds((p.estimated_duration_secs * 1000.0) as i64)
    );
    if !p.baselines_available {
        out.push_str("(no estimates: the trace-collector did not answer)\n");
    } else if p.phases.iter().any(|ph| ph.estimated_cost_usd.is_none()) {
        out.push_str("(phases without history in the collector's baselines count as 0)\n");
    }
    for ph in &p.phases {
        if ph.gates.is_empty() && ph.problems.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} {}", ph.index, ph.name);
        for g in &ph.gates {
            let _ = writeln!(out, "  gate: {g}");
        }
        for problem in &ph.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
    }
    out.push_str("\nnothing was executed\n");
    Ok(out)
}

/// `GET /v1/runs` as a table.
pub fn render_runs(list: &Value) -> Result<String, String> {
    let runs: Vec<RunSummary> =
        Vec::deserialize(&list["runs"]).map_err(|e| format!("unexpected runs JSON: {e}"))?;
    if runs.is_empty() {
        return Ok("(no runs)\n".to_owned());
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                short(&r.id).to_owned(),
                r.project.clone(),
                r.pipeline.clone(),
                r.status.clone(),
                format!("{}/{}", r.next_phase.min(r.phases_total), r.phases_total),
                format!("${:.4}", r.cost_usd),
                r.created_at.get(..19).unwrap_or(&r.created_at).replace('T', " "),
                if r.status == "succeeded" {
                    String::new()
                } else {
                    r.resume_token.clone().unwrap_or_default()
                },
            ]
        })
        .collect();
    Ok(table(
        &["id", "project", "pipeline", "status", "phase", "cost", "created", "resume"],
        &rows,
        &[false, false, false, false, true, true, false, false],
    ))
}

impl ReplayView {
    /// The replay passed and reproduced the recorded output and files.
    fn identical(&self) -> bool {
        self.passed && self.same_output && self.changes.is_empty()
    }
}

/// A `ReplayReport`: verdict, gates, and each changed file with its diff.
fn render_replay(r: &ReplayView) -> String {
    let mut out = String::new();
    let mut facts =
        vec![if r.passed { "passed" } else { "failed" }.to_owned(), seconds(r.duration_ms as i64)];
    if let Some(c) = r.exit_code {
        facts.push(format!("exit code {c}"));
    }
    if r.recorded {
        facts.push("LLM answers from the recording".to_owned());
    }
    let _ = writeln!(
        out,
        "replay of phase {} (#{}) of run {}: {}",
        r.phase,
        r.index,
        short(&r.run_id),
        facts.join(" · ")
    );
    for g in &r.gates {
        let mark = if g.passed {
            "✓"
        } else if g.severity == "warn" {
            "!"
        } else {
            "✗"
        };
        let _ = writeln!(out, "  {mark} gate {}: {}", g.name, cut(&g.detail, 100));
    }
    let same = |b: bool| if b { "identical to the recording" } else { "differs from the recording" };
    let _ = writeln!(out, "output: {}", same(r.same_output));
    if let Some(d) = &r.output_diff {
        // a long output's diff is cut: the replay's workspace and trace hold the rest
        let lines: Vec<&str> = d.lines().collect();
        for l in lines.iter().take(200) {
            let _ = writeln!(out, "    {l}");
        }
        if lines.len() > 200 {
            let _ = writeln!(out, "    ({} more lines of diff)", lines.len() - 200);
        }
    }
    if r.changes.is_empty() {
        let _ = writeln!(out, "files: {}", same(true));
    } else {
        let _ = writeln!(out, "files: {} changed", r.changes.len());
        for c in &r.changes {
            let _ = writeln!(out, "  {} {}", c.change, c.path);
            match &c.diff {
                Some(d) => {
                    for l in d.lines() {
                        let _ = writeln!(out, "    {l}");
                    }
                }
                None => out.push_str("    (binary or too large for a diff)\n"),
            }
        }
    }
    let _ = writeln!(out, "workspace {}", r.workspace);
    if !r.trace_id.is_empty() {
        let _ = writeln!(out, "replay {} · trace {} (helix trace {})", r.replay_id, r.trace_id, r.trace_id);
    }
    let verdict = if !r.passed {
        "the phase failed"
    } else if r.identical() {
        "identical to the recording"
    } else {
        "differs from the recording"
    };
    let _ = writeln!(out, "result: {verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: &str, kind: &str, phase: Option<&str>, attempt: Option<u32>, message: &str) -> EventView {
        EventView {
            at: format!("2026-11-25T10:00:{at}Z"),
            kind: kind.to_owned(),
            phase: phase.map(str::to_owned),
            attempt,
            message: message.to_owned(),
            ..EventView::default()
        }
    }

    #[test]
    fn event_lines_and_status_line_follow_the_run() {
        let mut p = Progress::new(3, 0, 0.0);
        let t0 = at_ms("2026-11-25T10:00:00.000Z").expect("time");
        assert_eq!(p.status_line(t0), "▸ starting · 0.000s · $0.0000");
        let l = p.apply(&ev("00.000", "run_started", None, None, "r of demo (3 phases)"));
        assert_eq!(l, "  +0.000s  -                 r of demo (3 phases)");
        p.apply(&ev("00.100", "phase_started", Some("build"), None, "phase build (command)"));
        let l = p.apply(&ev("00.250", "attempt_started", Some("build"), Some(2), "attempt 2 of build"));
        assert_eq!(l, "  +0.250s  build         #2  attempt 2 of build");
        assert_eq!(p.status_line(t0 + 4_200), "▸ phase 1/3 build · attempt 2 · 4.200s · $0.0000");
        let mut fin = ev("01.000", "phase_finished", Some("build"), Some(2), "phase build passed");
        fin.cost_usd = Some(0.01);
        p.apply(&fin);
        assert_eq!(p.status_line(t0 + 1_000), "▸ phase 1/3 build · attempt 2 · 1.000s · $0.0100");
        let mut cp = ev("01.010", "checkpoint", Some("build"), None, "checkpoint 2 written");
        cp.cost_usd = Some(0.01);
        p.apply(&cp);
        assert_eq!(p.checkpoint, Some(2));
        p.apply(&ev("01.020", "phase_started", Some("test"), None, "phase test (command)"));
        assert_eq!(p.status_line(t0 + 61_500), "▸ phase 2/3 test · 1m01.5s · $0.0100");
    }

    #[test]
    fn a_resumed_run_counts_the_phases_done_before_and_their_cost() {
        let mut p = Progress::new(3, 2, 0.5);
        p.apply(&ev("00.000", "run_resumed", None, None, "resumed"));
        p.apply(&ev("00.001", "phase_started", Some("report"), None, "phase report"));
        let t0 = at_ms("2026-11-25T10:00:00.000Z").expect("time");
        assert_eq!(p.status_line(t0), "▸ phase 3/3 report · 0.000s · $0.5000");
        assert_eq!(checkpoint_seq("checkpoint 17 written"), Some(17));
        assert_eq!(checkpoint_seq("cannot write a checkpoint"), None);
    }

    #[test]
    fn the_end_names_the_workspace_or_the_reason_and_the_token() {
        let ok = RunSummary {
            status: "succeeded".to_owned(),
            next_phase: 2,
            phases_total: 2,
            workspace: Some("/d/runs/x/workspace".to_owned()),
            ..RunSummary::default()
        };
        assert_eq!(
            render_end(&ok, Some(1500)),
            "succeeded · 2/2 phases · 1.500s · $0.0000\nworkspace /d/runs/x/workspace\n"
        );
        let bad = RunSummary {
            status: "needs_human".to_owned(),
            next_phase: 1,
            phases_total: 2,
            reason: Some("phase check failed".to_owned()),
            resume_token: Some("hxr_abc".to_owned()),
            ..RunSummary::default()
        };
        let t = render_end(&bad, None);
        assert!(t.starts_with("needs_human · 1/2 phases · $0.0000\n"), "{t}");
        assert!(t.contains("reason: phase check failed\nresume with: helix resume hxr_abc\n"), "{t}");
    }

    #[test]
    fn plan_table_has_every_phase_and_the_totals() {
        let plan = json!({
            "pipeline": "demo", "project": "shop", "fingerprint": "0123456789abcdef0123",
            "phases": [
                {"index": 0, "name": "build", "kind": "command", "action": format!("sh -c '{}'", "x".repeat(80)),
                 "max_attempts": 3, "gates": ["exit code (exit_code, on fail: fail)"],
                 "estimated_cost_usd": 0.25, "estimated_duration_secs": 2.5, "problems": []},
                {"index": 1, "name": "ask", "kind": "llm", "action": "Summarise", "model": "smart",
                 "max_attempts": 1, "gates": [], "problems": ["unknown variable x"]}
            ],
            "estimated_cost_usd": 0.25, "estimated_duration_secs": 2.5, "baselines_available": true
        });
        let t = render_plan(&plan).expect("render");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "plan demo · project shop · 2 phases · fingerprint 0123456789ab");
        let cols = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(cols(lines[2])[..4], ["#", "phase", "kind", "action"]);
        let build = lines.iter().find(|l| l.contains("build  command")).expect("build row");
        assert!(build.contains("sh -c 'xxx") && build.contains('…'), "{build}");
        assert!(build.trim_end().ends_with("1         3    $0.2500     2.500s"), "{build}");
        let ask = lines.iter().find(|l| l.contains("ask")).expect("ask row");
        assert!(ask.contains("[smart] Summarise") && ask.trim_end().ends_with("-          -"), "{ask}");
        assert!(t.contains("total: est. cost $0.2500 · est. time 2.500s"), "{t}");
        assert!(t.contains("  gate: exit code (exit_code, on fail: fail)"), "{t}");
        assert!(t.contains("  problem: unknown variable x"), "{t}");
        assert!(t.contains("count as 0") && t.ends_with("nothing was executed\n"), "{t}");
        assert!(render_plan(&json!([])).is_err());
    }

    #[test]
    fn runs_table_shows_tokens_only_for_runs_that_did_not_succeed() {
        let list = json!({"runs": [
            {"id": "0123456789-abc", "project": "shop", "pipeline": "demo", "status": "needs_human",
             "created_at": "2026-11-25T10:00:00.123Z", "resume_token": "hxr_tok", "next_phase": 1,
             "phases_total": 2, "cost_usd": 0.5},
            {"id": "fedcba98-xyz", "project": "shop", "pipeline": "demo", "status": "succeeded",
             "created_at": "2026-11-25T09:00:00.000Z", "resume_token": null, "next_phase": 2,
             "phases_total": 2, "cost_usd": 0.0}
        ]});
        let t = render_runs(&list).expect("render");
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("id        project  pipeline  status"), "{t}");
        assert_eq!(
            lines[1],
            "01234567  shop     demo      needs_human    1/2  $0.5000  2026-11-25 10:00:00  hxr_tok"
        );
        assert_eq!(lines[2], "fedcba98  shop     demo      succeeded      2/2  $0.0000  2026-11-25 09:00:00");
        assert_eq!(render_runs(&json!({"runs": []})).expect("empty"), "(no runs)\n");
    }

    #[test]
    fn replay_report_lists_gates_and_diffs() {
        let report = json!({
            "run_id": "0123456789", "phase": "build", "index": 0, "workspace": "/w", "recorded": false,
            "passed": true, "exit_code": 0, "same_output": true, "duration_ms": 12,
            "gates": [{"name": "exit code", "kind": "exit_code", "passed": true, "severity": "fail", "detail": "exit code 0"}],
            "changes": [{"path": "out.txt", "change": "modified", "diff": "--- a/out.txt\n+++ b/out.txt\n-1\n+2\n"}]
        });
        let v = ReplayView::deserialize(&report).expect("view");
        assert!(!v.identical());
        let t = render_replay(&v);
        assert!(
            t.starts_with("replay of phase build (#0) of run 01234567: passed · 0.012s · exit code 0\n"),
            "{t}"
        );
        assert!(t.contains("  ✓ gate exit code: exit code 0\n"), "{t}");
        assert!(t.contains("files: 1 changed\n  modified out.txt\n    --- a/out.txt\n"), "{t}");
        assert!(t.contains("    +2\n") && t.ends_with("result: differs from the recording\n"), "{t}");
        let same = ReplayView { changes: vec![], ..v };
        assert!(same.identical() && render_replay(&same).contains("files: identical to the recording"));
    }

    #[test]
    fn tokens_are_told_from_run_ids() {
        assert!(is_token("hxr_abc") && is_token(" HXR_abc") && !is_token("0123-run"));
        assert_eq!(short("0123456789"), "01234567");
        assert_eq!(short("abc"), "abc");
        assert_eq!(cut("a\nb   c", 10), "a b c");
        assert_eq!(cut("abcdefghijkl", 5), "abcd…");
    }
}
