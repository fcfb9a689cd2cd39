//! Executing one run: phases in order, attempts within a phase, gates after each attempt, the
//! healer consulted after each failure, a checkpoint after each phase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_core::client::{AnalyzeRequest, FixRequest, ProposeRequest, WorkspaceFile};
use helix_core::trace::{SpanKind, SpanStatus};

use super::journal;
use super::{
    Active, AppliedFix, Attempt, Checkpoint, Engine, EngineError, HealRecord, PhaseRecord, PhaseStatus,
    RunEvent, RunRecord, RunStatus, blocking, now_nanos, now_rfc3339,
};
use crate::checkpoint::{self, Manifest, RunLock};
use crate::emit::SpanBuilder;
use crate::exec::{self, Limits, Outcome};
use crate::gates::{self, GateCheck, GateContext, GateResult, PhaseGateStatus};
use crate::pipeline::{OnTimeout, Phase, PhaseKind};
use crate::testsummary::TestSummary;

/// Retries with the healer's hints per phase (the bound).
const MAX_HINT_RETRIES: u32 = 2;
/// Longest backoff between transient retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Output of a phase kept as `phases.NAME.output` for later prompts.
const OUTPUT_VAR_BYTES: usize = 16 * 1024;
/// Manifests the healer may edit (sent with a fix proposal request when present).
const MANIFESTS: &[&str] = &[
    "requirements.txt",
    "requirements-dev.txt",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "package.json",
    "Cargo.toml",
    "go.mod",
    "Gemfile",
    "pom.xml",
    "build.gradle",
];

pub(super) struct Driver {
    engine: Arc<Engine>,
    record: RunRecord,
    lock: Arc<RunLock>,
    active: Arc<Active>,
    fresh: bool,
    /// The directory the last passed phase ran in: it holds the latest checkpoint's workspace,
    /// so the next phase starts there (reconciled with the manifest) instead of in a fresh copy
    /// of every file.
    carry: std::sync::Mutex<Option<PathBuf>>,
}

/// What to do after a failed attempt.
enum Next {
    Retry { backoff: Duration, fix: Option<Box<AppliedFix>>, hints: Option<String> },
    Stop(PhaseStatus),
}

impl Driver {
    pub(super) fn new(
        engine: Arc<Engine>,
        record: RunRecord,
        lock: RunLock,
        active: Arc<Active>,
        fresh: bool,
    ) -> Driver {
        Driver { engine, record, lock: Arc::new(lock), active, fresh, carry: std::sync::Mutex::new(None) }
    }

    fn dir(&self) -> PathBuf {
        self.lock.dir().to_path_buf()
    }

    /// Appends to the attempt journal (see [`journal`]).
    async fn journal(&self, entry: journal::Entry, sync: bool) {
        let dir = self.dir();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = journal::append(&dir, &entry, sync) {
                tracing::warn!(error = %e, "cannot write the attempt journal");
            }
        })
        .await;
    }

    /// Reports an attempt an earlier session never finished: an event and a span.
    async fn interrupted(&self, phase: &Phase, a: &Attempt, phase_span: &str) {
        self.event_with(
            "attempt_interrupted",
            Some(&phase.name),
            Some(a.n),
            format!(
                "attempt {} of {} was interrupted (the orchestrator stopped while it ran)",
                a.n, phase.name
            ),
            None,
            Some("interrupted".to_owned()),
        )
        .await;
        let start = parse_rfc3339_nanos(&a.started_at).unwrap_or_else(now_nanos);
        self.emit(
            SpanBuilder::new(
                &self.record.trace_id,
                &helix_core::ids::new_span_id(),
                &format!("attempt {} interrupted", a.n),
                SpanKind::Retry,
            )
            .parent(Some(phase_span))
            .times(start, start)
            .status(SpanStatus::Error, Some("interrupted: the orchestrator stopped while the attempt ran"))
            .phase(&phase.name)
            .attr("helix.attempt", a.n)
            .attr("helix.heal.class", "interrupted"),
        );
    }

    /// Sends a span of this run (its project and run filled in).
    fn emit(&self, span: SpanBuilder) {
        self.engine.emitter.emit(span.project(&self.record.project).run(&self.record.id).build());
    }

    /// Records and broadcasts a progress event.
    async fn event(&self, kind: &str, phase: Option<&str>, attempt: Option<u32>, message: String) {
        self.event_with(kind, phase, attempt, message, None, None).await;
    }

    async fn event_with(
        &self,
        kind: &str,
        phase: Option<&str>,
        attempt: Option<u32>,
        message: String,
        cost_usd: Option<f64>,
        status: Option<String>,
    ) {
        let ev = RunEvent {
            run_id: self.record.id.clone(),
            at: now_rfc3339(),
            kind: kind.to_owned(),
            phase: phase.map(str::to_owned),
            attempt,
            message,
            cost_usd,
            status,
            checkpoint: None,
            resume_token: None,
        };
        self.record_event(ev).await;
    }

    /// Appends `ev` to the run's events file and broadcasts it to live followers. The
    /// checkpoint is the durable record; events are progress, fsynced only at the end.
    async fn record_event(&self, ev: RunEvent) {
        let lock = self.lock.clone();
        let sync = matches!(ev.kind.as_str(), "run_finished" | "escalation");
        let line = ev.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = lock.append_event(&line, sync) {
                tracing::warn!(error = %e, "cannot record a run event");
            }
        })
        .await;
        let _ = self.active.events.send(ev);
    }

    async fn checkpoint_event(&self, phase: Option<&str>, cp: &Checkpoint) {
        let token = (cp.status != RunStatus::Succeeded)
            .then(|| crate::token::ResumeToken::new(self.record.id.clone(), cp.seq).ok().map(|t| t.encode()))
            .flatten();
        let ev = RunEvent {
            run_id: self.record.id.clone(),
            at: now_rfc3339(),
            kind: "checkpoint".to_owned(),
            phase: phase.map(str::to_owned),
            attempt: None,
            message: match &token {
                Some(t) => {
                    format!("checkpoint {} written; resume token {t} (names checkpoint {})", cp.seq, cp.seq)
                }
                None => format!("checkpoint {} written", cp.seq),
            },
            cost_usd: Some(cp.cost_usd),
            status: None,
            checkpoint: Some(cp.seq),
            resume_token: token,
        };
        self.record_event(ev).await;
    }

    async fn write_checkpoint(&self, cp: &mut Checkpoint) -> Result<(), EngineError> {
        let lock = self.lock.clone();
        cp.written_at = now_rfc3339();
        let mut value = cp.clone();
        let seq = blocking(move || {
            value.seq = lock.next_seq()?;
            lock.write_checkpoint(value.seq, &value)?;
            Ok(value.seq)
        })
        .await?;
        cp.seq = seq;
        Ok(())
    }

    /// Whether the service is shutting down (its runs are cancelled for that, not by a user).
    fn service_stops(&self) -> bool {
        self.engine.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A shutdown leaves a run as a crash would: its latest checkpoint still says running, so
    /// the next owner (a replica's takeover, this service restarted, or `helix resume`)
    /// continues it from there; the phase cut short counts as an interrupted attempt.
    async fn left_for_takeover(&self, seq: u32) {
        self.event(
            "run_interrupted",
            None,
            None,
            format!(
                "the orchestrator stops; {} continues from checkpoint {seq} when taken over or resumed",
                self.record.id
            ),
        )
        .await;
    }

    pub(super) async fn drive(self, mut cp: Checkpoint) {
        let pipeline = self.record.pipeline.clone();
        let total = pipeline.phases.len();
        let started = now_nanos();
        let verb = if self.fresh { "run_started" } else { "run_resumed" };
        self.event(
            verb,
            None,
            None,
            format!("{} of {} ({} phases) from checkpoint {}", self.record.id, pipeline.name, total, cp.seq),
        )
        .await;
        while cp.next_phase < total && cp.status == RunStatus::Running {
            if self.active.cancel.is_cancelled() && self.service_stops() {
                self.left_for_takeover(cp.seq).await;
                return;
            }
            if self.active.cancel.is_cancelled() {
                cp.status = RunStatus::Cancelled;
                cp.reason = Some("cancelled".to_owned());
                break;
            }
            let index = cp.next_phase;
            let (rec, output) = self.run_phase(index, &cp).await;
            cp.cost_usd += rec.cost_usd;
            *cp.attempt_counters.entry(rec.name.clone()).or_default() +=
                u32::try_from(rec.attempts.len()).unwrap_or(u32::MAX);
            let mut rec = rec;
            if rec.status == PhaseStatus::Cancelled && self.service_stops() {
                self.left_for_takeover(cp.seq).await;
                return;
            }
            match rec.status {
                PhaseStatus::Passed | PhaseStatus::PassedWithWarnings => {
                    if let Some(out) = output {
                        cp.manifest = out;
                        // the checkpoint written next holds it (this process is the run's only
                        // writer: nothing takes that number meanwhile)
                        let lock = self.lock.clone();
                        rec.output_checkpoint = blocking(move || Ok(lock.next_seq()?)).await.ok();
                    }
                    let text = rec.attempts.last().map(phase_output).unwrap_or_default();
                    cp.outputs.insert(format!("phases.{}.output", rec.name), text);
                    cp.next_phase += 1;
                    cp.phases.push(rec);
                }
                other => {
                    cp.status = match other {
                        PhaseStatus::Escalated => RunStatus::Escalated,
                        PhaseStatus::Cancelled => RunStatus::Cancelled,
                        _ => RunStatus::NeedsHuman,
                    };
                    cp.reason = Some(failure_reason(&rec));
                    cp.failed = Some(rec);
                }
            }
            if cp.next_phase == total && cp.status == RunStatus::Running {
                if let Err(e) = self.finish_workspace(&cp.manifest).await {
                    tracing::error!(run = %self.record.id, error = %e, "cannot write the final workspace");
                }
                cp.status = RunStatus::Succeeded;
            }
            if let Err(e) = self.write_checkpoint(&mut cp).await {
                // the phase ran but its checkpoint is not durable: stop; a resume redoes it
                tracing::error!(run = %self.record.id, error = %e, "cannot write a checkpoint");
                self.event("error", None, None, format!("cannot write a checkpoint: {e}")).await;
                return;
            }
            self.checkpoint_event(pipeline.phases.get(index).map(|p| p.name.as_str()), &cp).await;
        }
        if cp.status == RunStatus::Cancelled && cp.failed.is_none() {
            let _ = self.write_checkpoint(&mut cp).await;
        }
        let webhook = if matches!(cp.status, RunStatus::NeedsHuman | RunStatus::Escalated) {
            Some(self.escalate(&cp).await)
        } else {
            None
        };
        let status = cp.status;
        self.emit_span(
            &self.record.span_id,
            None,
            format!("run {}", pipeline.name),
            SpanKind::Run,
            parse_rfc3339_nanos(&self.record.created_at).unwrap_or(started),
            now_nanos(),
            if status == RunStatus::Succeeded { SpanStatus::Ok } else { SpanStatus::Error },
            None,
            serde_json::json!({
                "helix.run.status": status,
                // the total, derived: costs are counted once, on the LLM call spans
                "helix.run.total_cost_usd": cp.cost_usd,
                "helix.run.checkpoint": cp.seq,
            }),
        );
        let token = crate::token::ResumeToken::new(self.record.id.clone(), cp.seq).ok().map(|t| t.encode());
        let message = match (status, token) {
            (RunStatus::Succeeded, _) => format!("succeeded; cost ${:.4}", cp.cost_usd),
            (_, Some(t)) => format!(
                "{}: {}; resume with `helix resume {t}`",
                serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                cp.reason.clone().unwrap_or_default()
            ),
            (_, None) => cp.reason.clone().unwrap_or_default(),
        };
        let status_name = serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned));
        self.event_with("run_finished", None, None, message, Some(cp.cost_usd), status_name).await;
        // The run is over: give it up (its lock, its bulkhead slot) before anything slow, so it
        // can be resumed the moment its final status shows.
        self.engine.finish_run(&self.record.id, &self.record.project);
        let url = self.engine.settings.escalation_webhook.clone();
        let engine = self.engine.clone();
        let (project, trace_id) = (self.record.project.clone(), self.record.trace_id.clone());
        drop(self);
        if let Some(mut e) = webhook {
            // after the run let go: a model drafting the ADR must not hold up a resume
            if let Some(model) = e.adr_model.take() {
                let traceparent = helix_core::ids::traceparent(&trace_id, &helix_core::ids::new_span_id());
                if let Some((text, _)) =
                    super::escalation::adr(&engine, &model, &e.report, &traceparent, &project).await
                {
                    e.report.push_str(&format!(
                        "\n## ADR proposal (a draft by {model}, to be reviewed)\n\n{}\n",
                        text.trim()
                    ));
                    write_report(&e.path, &e.report).await;
                }
            }
            e.body["report"] = serde_json::json!(e.report);
            if let Some(url) = url {
                call_webhook(&url, &e.body).await;
            }
        }
    }

    async fn finish_workspace(&self, manifest: &Manifest) -> Result<(), EngineError> {
        let dest = self.dir().join("workspace");
        let work = self.dir().join("work");
        let blobs = self.engine.blobs.clone();
        let manifest = manifest.clone();
        let carried = self.carry.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        blocking(move || {
            let _ = std::fs::remove_dir_all(&dest);
            let reused = carried.is_some_and(|c| {
                std::fs::rename(&c, &dest).is_ok() && checkpoint::reconcile(&manifest, &blobs, &dest).is_ok()
            });
            if !reused {
                let _ = std::fs::remove_dir_all(&dest);
                checkpoint::materialize(&manifest, &blobs, &dest)?;
            }
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        })
        .await
    }

    /// Records the escalation (event, span, `escalation.md`); returns the webhook's body and the
    /// report.
    async fn escalate(&self, cp: &Checkpoint) -> Escalation {
        let token = crate::token::ResumeToken::new(self.record.id.clone(), cp.seq).ok().map(|t| t.encode());
        let report = super::escalation::report(&self.record, cp, token.as_deref());
        let path = self.dir().join(ESCALATION_FILE);
        write_report(&path, &report).await;
        let adr_model =
            cp.failed.as_ref().and_then(|f| self.record.pipeline.phases.get(f.index)).and_then(|p| {
                let asked = p.gates.iter().find_map(|g| match &g.check {
                    GateCheck::Decision { model: Some(m), .. } => Some(m.clone()),
                    _ => None,
                });
                asked.or_else(|| p.repair.as_ref().map(|r| r.model.clone()))
            });
        let body = serde_json::json!({
            "run_id": self.record.id,
            "project": self.record.project,
            "pipeline": self.record.pipeline.name,
            "status": cp.status,
            "phase": cp.failed.as_ref().map(|f| f.name.clone()),
            "reason": cp.reason,
            "resume_token": token,
            "trace_id": self.record.trace_id,
            "report_file": path.display().to_string(),
        });
        self.event_with(
            "escalation",
            cp.failed.as_ref().map(|f| f.name.as_str()),
            None,
            format!("needs a human: {}", cp.reason.clone().unwrap_or_default()),
            None,
            serde_json::to_value(cp.status).ok().and_then(|v| v.as_str().map(str::to_owned)),
        )
        .await;
        self.emit_span(
            &helix_core::ids::new_span_id(),
            Some(&self.record.span_id),
            "escalation".to_owned(),
            SpanKind::Other,
            now_nanos(),
            now_nanos(),
            SpanStatus::Error,
            cp.failed.as_ref().map(|f| f.name.as_str()),
            serde_json::json!({"helix.escalation.reason": cp.reason}),
        );
        Escalation { body, report, path, adr_model }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_span(
        &self,
        span_id: &str,
        parent: Option<&str>,
        name: String,
        kind: SpanKind,
        start: u64,
        end: u64,
        status: SpanStatus,
        phase: Option<&str>,
        attributes: serde_json::Value,
    ) {
        // through the typed builder: a null attribute (a heal without a fix, a killed command
        // without an exit code) is left out instead of invalidating the whole span
        let mut span = SpanBuilder::new(&self.record.trace_id, span_id, &name, kind)
            .parent(parent)
            .times(start, end.max(start))
            .status(status, None);
        if let Some(p) = phase {
            span = span.phase(p);
        }
        if let serde_json::Value::Object(map) = attributes {
            span = span.attributes(map);
        }
        self.emit(span);
    }

    /// Why an attempt of `phase` should run simplified, if it should and can: every deployment
    /// of its model's chain is open (the gateway's model status), or an agent phase has less
    /// than a fifth of its `max_cost_usd` left.
    async fn degraded(&self, phase: &Phase, spent: f64) -> Option<String> {
        phase.simplified.as_ref()?;
        let model = match &phase.kind {
            PhaseKind::Llm { model, .. } => Some(model.as_str()),
            PhaseKind::Agent(a) => a.model.as_deref(),
            PhaseKind::Command { .. } => None,
        };
        if let Some(m) = model {
            let key = self.engine.settings.gateway_key.as_deref();
            if let Ok(Some(false)) = self.engine.clients.gateway.model_available(m, key).await {
                return Some(format!("every deployment of model {m}'s chain is open"));
            }
        }
        if let PhaseKind::Agent(a) = &phase.kind
            && let Some(max) = a.max_cost_usd
            && spent > 0.0
            && max - spent < max * NEARLY_SPENT
        {
            return Some(format!(
                "the phase's budget is nearly spent (${:.4} of ${max:.4} left)",
                (max - spent).max(0.0)
            ));
        }
        None
    }

    /// One finished step of an agent, as a span under its attempt, the moment it is known: a
    /// tool call is `execute_tool NAME` (as a command phase's), a model turn `turn MODEL`. The
    /// turn's tokens are `helix.agent.*`, not `gen_ai.usage.*`: the gateway's span of the same
    /// call carries those, with its cost, and nothing is counted twice.
    fn agent_step(&self, step: &crate::agent::stream::Step, attempt_span: &str, phase: &str) {
        use crate::agent::stream::Step;
        match step {
            Step::Tool { id, name, arguments, result, is_error, start, end } => self.emit_span(
                &helix_core::ids::new_span_id(),
                Some(attempt_span),
                format!("execute_tool {name}"),
                SpanKind::ToolCall,
                *start,
                *end,
                if *is_error { SpanStatus::Error } else { SpanStatus::Ok },
                Some(phase),
                serde_json::json!({
                    "gen_ai.tool.name": name,
                    "gen_ai.tool.call.id": id,
                    "helix.tool.arguments": arguments,
                    "helix.tool.result": result,
                    "helix.tool.is_error": is_error,
                }),
            ),
            Step::Turn { id, model, tokens, start, end } => self.emit_span(
                &helix_core::ids::new_span_id(),
                Some(attempt_span),
                format!("turn {}", model.as_deref().unwrap_or("model")),
                SpanKind::Other,
                *start,
                *end,
                SpanStatus::Ok,
                Some(phase),
                serde_json::json!({
                    "helix.agent.turn.id": id,
                    "helix.agent.turn.model": model,
                    "helix.agent.turn.input_tokens": tokens.input,
                    "helix.agent.turn.output_tokens": tokens.output,
                    "helix.agent.turn.cache_read_tokens": tokens.cache_read,
                    "helix.agent.turn.cache_write_tokens": tokens.cache_write,
                }),
            ),
        }
    }

    /// Failed test gates: their failed tests re-run alone (`[phase.flaky]`, or the project's
    /// known-flaky tests); those that pass are flaky, reported to the healer, and a gate whose
    /// failures were all flaky is marked so (and, with `quarantine`, only warns).
    #[allow(clippy::too_many_arguments)]
    async fn flaky_reruns(
        &self,
        phase: &Phase,
        results: &mut [GateResult],
        workdir: &Path,
        env: &BTreeMap<String, String>,
        jail: &exec::Jail,
        n: u32,
        attempt_span: &str,
    ) {
        let mut known: Option<std::collections::BTreeSet<String>> = None;
        for (gate, r) in phase.gates.iter().zip(results.iter_mut()) {
            if r.passed || r.severity != gates::Severity::Fail {
                continue;
            }
            let Some(summary) = r.summary.as_ref().filter(|s| !s.failures.is_empty()) else { continue };
            // only when the runner named every failure: an unnamed one cannot be re-run
            if (summary.failures.len() as u64) < summary.failed {
                continue;
            }
            let failures: Vec<String> = summary.failures.iter().cloned().collect();
            let policy = match phase.flaky {
                Some(p) => p,
                None => {
                    if known.is_none() {
                        let list = self.engine.clients.healer.flaky_tests(&self.record.project).await;
                        known = Some(list.unwrap_or_default().into_iter().map(|t| t.test).collect());
                    }
                    let known = known.as_ref().is_some_and(|k| failures.iter().all(|f| k.contains(f)));
                    if !known {
                        continue;
                    }
                    crate::pipeline::Flaky::KNOWN
                }
            };
            let Ok(rendered) = gates::rendered(gate, env) else { continue };
            let GateCheck::Command { run, timeout, .. } = &rendered.check else { continue };
            let timeout =
                timeout.unwrap_or(gates::DEFAULT_GATE_TIMEOUT.min(self.engine.settings.phase_timeout));
            let start = now_nanos();
            let found = super::flakes::rerun(
                run,
                &failures,
                policy.reruns,
                workdir,
                env,
                &self.active.cancel,
                jail,
                timeout,
            )
            .await;
            let runner = crate::flaky::runner_of(run).map(|(r, _)| r.name().to_owned());
            for t in &found.flaky {
                let report = helix_core::client::flaky::FlakyReport {
                    test: t.clone(),
                    runner: runner.clone(),
                    project: Some(self.record.project.clone()),
                    phase: Some(phase.name.clone()),
                };
                if let Err(e) = self.engine.clients.healer.report_flaky(&report).await {
                    tracing::warn!(error = %e, "cannot report a flaky test to the healer");
                }
            }
            let all = !found.flaky.is_empty() && found.flaky.len() == failures.len();
            let message = if found.flaky.is_empty() {
                format!(
                    "re-ran {} failed test(s) alone {} time(s): they still fail",
                    failures.len(),
                    found.runs
                )
            } else {
                format!(
                    "flaky: {} failed, then passed when re-run alone{}",
                    found.flaky.join(", "),
                    match (all, policy.quarantine) {
                        (true, true) => " (quarantined: the gate warns)",
                        (true, false) =>
                            " (the gate fails; `quarantine = true` would let it pass with a warning)",
                        (false, _) => "; the others still fail",
                    }
                )
            };
            self.event("flaky", Some(&phase.name), Some(n), format!("gate {}: {message}", r.name)).await;
            self.emit_span(
                &helix_core::ids::new_span_id(),
                Some(attempt_span),
                format!("flaky {}", r.name),
                SpanKind::Retry,
                start,
                now_nanos(),
                if all { SpanStatus::Ok } else { SpanStatus::Error },
                Some(&phase.name),
                serde_json::json!({
                    "helix.flaky.tests": found.flaky,
                    "helix.flaky.failed": failures,
                    "helix.flaky.reruns": found.runs,
                    "helix.flaky.quarantined": all && policy.quarantine,
                    "helix.attempt": n,
                }),
            );
            r.detail = format!("{}; {message}", r.detail);
            r.flaky = found.flaky;
            if all && policy.quarantine {
                r.severity = gates::Severity::Warn;
            }
        }
    }

    /// Runs phase `index` from the checkpoint's workspace until it passes or healing gives up.
    async fn run_phase(&self, index: usize, cp: &Checkpoint) -> (PhaseRecord, Option<Manifest>) {
        let phase = self.record.pipeline.phases[index].clone();
        let started_at = now_rfc3339();
        let started = Instant::now();
        let start_ns = now_nanos();
        let phase_span = helix_core::ids::new_span_id();
        self.event(
            "phase_started",
            Some(&phase.name),
            None,
            format!("phase {} ({})", phase.name, phase.kind.name()),
        )
        .await;
        let mut rec = PhaseRecord {
            index,
            name: phase.name.clone(),
            kind: phase.kind.name().to_owned(),
            status: PhaseStatus::Failed,
            attempts: Vec::new(),
            input_checkpoint: cp.seq,
            output_checkpoint: None,
            started_at,
            duration_ms: 0,
            cost_usd: 0.0,
        };
        let mut output_manifest: Option<Manifest> = None;
        let mut patches: Vec<String> = Vec::new();
        let mut hints: Option<String> = None;
        let mut hint_retries = 0u32;
        let mut pending_fix: Option<AppliedFix> = None;
        let mut baselines: Option<BTreeMap<usize, TestSummary>> = None;
        let max = phase.max_attempts().max(1);
        let mut n = 0;
        // attempts earlier sessions made of this phase (see journal): interrupted ones count
        let prior = {
            let dir = self.dir();
            tokio::task::spawn_blocking(move || journal::prior(&dir, index)).await.unwrap_or_default()
        };
        if !prior.attempts.is_empty() {
            n = u32::try_from(prior.attempts.len()).unwrap_or(u32::MAX);
            patches = prior.patches;
            hints = prior.hints;
            hint_retries = u32::try_from(
                prior
                    .attempts
                    .iter()
                    .filter(|a| a.heal.as_ref().is_some_and(|h| h.action == "retry_with_hints"))
                    .count(),
            )
            .unwrap_or(0);
            for a in prior.attempts.iter().filter(|a| a.status == PhaseStatus::Interrupted) {
                self.interrupted(&phase, a, &phase_span).await;
            }
            rec.attempts = prior.attempts;
            if n >= max {
                if let Some(last) = rec.attempts.last_mut() {
                    let heal = last.heal.get_or_insert_with(HealRecord::default);
                    heal.action = "give_up".to_owned();
                    heal.message = Some(format!(
                        "interrupted {} time(s): the orchestrator stopped while its attempts ran ({} of {max} attempts used)",
                        prior.interrupted, n
                    ));
                }
                rec.status = PhaseStatus::NeedsHuman;
            }
        }
        let mut preflight = if phase.preflight && rec.attempts.is_empty() {
            let mut fixes = self.preflight_fixes(&phase).await;
            for f in self.preflight_check(&phase, cp).await {
                if !fixes.iter().any(|k| k.patch == f.patch) {
                    fixes.push(f);
                }
            }
            fixes
        } else {
            Vec::new()
        };
        while rec.status != PhaseStatus::NeedsHuman {
            n += 1;
            let optional: Vec<String> = preflight.iter().map(|f| f.patch.clone()).collect();
            let (attempt, output) = self
                .attempt(
                    index,
                    &phase,
                    n,
                    cp,
                    &patches,
                    &optional,
                    hints.as_deref(),
                    &mut baselines,
                    &phase_span,
                    rec.attempts.iter().map(attempt_cost).sum(),
                )
                .await;
            // the preflight fixes that applied stay for every later attempt; each is reported
            let applied: Vec<AppliedFix> =
                preflight.drain(..).filter(|f| attempt.patches.contains(&f.patch)).collect();
            for f in &applied {
                self.event(
                    "fix_applied",
                    Some(&phase.name),
                    Some(n),
                    format!("preflight: applied {} ({})", f.description, f.source),
                )
                .await;
                patches.push(f.patch.clone());
            }
            rec.cost_usd += attempt_cost(&attempt);
            let passed = matches!(attempt.status, PhaseStatus::Passed | PhaseStatus::PassedWithWarnings);
            if let Some(fix) = pending_fix.take() {
                self.report_fix(&fix, &phase.name, passed).await;
            }
            for f in &applied {
                self.report_fix(f, &phase.name, passed).await;
            }
            if passed {
                self.journal(
                    journal::Entry::Ended { phase: index, attempt: Box::new(attempt.clone()) },
                    false,
                )
                .await;
                self.report_path(&phase.name, &rec.attempts).await;
                rec.status = attempt.status;
                output_manifest = output;
                rec.attempts.push(attempt);
                break;
            }
            let mut attempt = attempt;
            if attempt.status == PhaseStatus::Cancelled {
                self.journal(
                    journal::Entry::Ended { phase: index, attempt: Box::new(attempt.clone()) },
                    false,
                )
                .await;
                rec.status = PhaseStatus::Cancelled;
                rec.attempts.push(attempt);
                break;
            }
            let (heal, next) = self.heal(index, &phase, &attempt, n, max, hint_retries, &patches).await;
            self.event_with(
                "heal",
                Some(&phase.name),
                Some(n),
                format!(
                    "{} failure{}: {}",
                    heal.failure_class,
                    heal.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
                    heal.action
                ),
                None,
                None,
            )
            .await;
            self.emit_span(
                &helix_core::ids::new_span_id(),
                Some(&phase_span),
                format!("heal {}", heal.action),
                SpanKind::Heal,
                now_nanos(),
                now_nanos(),
                if heal.action == "escalate" || heal.action == "give_up" {
                    SpanStatus::Error
                } else {
                    SpanStatus::Ok
                },
                Some(&phase.name),
                serde_json::json!({
                    "helix.heal.class": heal.failure_class,
                    "helix.heal.action": heal.action,
                    "helix.heal.signature": heal.signature,
                    "helix.heal.fix": heal.fix.as_ref().map(|f| f.description.clone()),
                    "helix.heal.fix_source": heal.fix.as_ref().map(|f| f.source.clone()),
                    "helix.heal.backoff_ms": heal.backoff_ms,
                    "helix.heal.message": heal.message,
                    "helix.heal.hints": heal.hints.is_some(),
                    "helix.heal.hint_ids": heal.hint_ids,
                    "helix.attempt": n,
                }),
            );
            // what the repair call cost is the phase's (the attempt's own cost was counted above)
            rec.cost_usd += heal.repair.as_ref().map_or(0.0, |r| r.cost_usd);
            attempt.heal = Some(heal);
            self.journal(journal::Entry::Ended { phase: index, attempt: Box::new(attempt.clone()) }, false)
                .await;
            rec.attempts.push(attempt);
            match next {
                Next::Stop(status) => {
                    rec.status = status;
                    break;
                }
                Next::Retry { backoff, fix, hints: h } => {
                    if let Some(fix) = fix {
                        self.event(
                            "fix_applied",
                            Some(&phase.name),
                            Some(n),
                            format!("applying {} ({})", fix.description, fix.source),
                        )
                        .await;
                        patches.push(fix.patch.clone());
                        pending_fix = Some(*fix);
                    }
                    if let Some(h) = h {
                        hints = Some(h);
                        hint_retries += 1;
                    }
                    if !backoff.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = self.active.cancel.cancelled() => {}
                        }
                    }
                }
            }
        }
        rec.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let ok = matches!(rec.status, PhaseStatus::Passed | PhaseStatus::PassedWithWarnings);
        self.emit_span(
            &phase_span,
            Some(&self.record.span_id),
            format!("phase {}", phase.name),
            SpanKind::Phase,
            start_ns,
            now_nanos(),
            if ok { SpanStatus::Ok } else { SpanStatus::Error },
            Some(&phase.name),
            serde_json::json!({
                "helix.phase.index": index,
                "helix.phase.status": rec.status,
                "helix.phase.attempts": rec.attempts.len(),
                "helix.phase.total_cost_usd": rec.cost_usd,
            }),
        );
        let status = serde_json::to_value(rec.status).ok().and_then(|v| v.as_str().map(str::to_owned));
        self.event_with(
            "phase_finished",
            Some(&phase.name),
            Some(n),
            format!("phase {} {} after {} attempt(s)", phase.name, status.clone().unwrap_or_default(), n),
            Some(rec.cost_usd),
            status,
        )
        .await;
        if ok {
            // the passing attempt's directory holds the new checkpoint's workspace: the next phase
            // starts from it; the other attempts' directories are no longer needed
            let dir = self.dir().join("work").join(phase_dir_name(index, &phase.name));
            let passed = dir.join(format!("attempt-{n}"));
            let carry = self.dir().join("work").join("carry");
            let moved = tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(&carry);
                let moved = std::fs::rename(&passed, &carry).is_ok();
                let _ = std::fs::remove_dir_all(&dir);
                moved.then_some(carry)
            })
            .await
            .ok()
            .flatten();
            *self.carry.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = moved;
        }
        (rec, output_manifest)
    }

    /// One attempt: a fresh workspace from the input manifest plus the fixes so far, the phase's
    /// command or LLM call, then its gates.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        index: usize,
        phase: &Phase,
        n: u32,
        cp: &Checkpoint,
        patches: &[String],
        optional: &[String],
        hints: Option<&str>,
        baselines: &mut Option<BTreeMap<usize, TestSummary>>,
        phase_span: &str,
        spent: f64,
    ) -> (Attempt, Option<Manifest>) {
        let started_at = now_rfc3339();
        let started = Instant::now();
        let start_ns = now_nanos();
        let attempt_span = helix_core::ids::new_span_id();
        self.event("attempt_started", Some(&phase.name), Some(n), format!("attempt {n} of {}", phase.name))
            .await;
        // durable before anything runs: a crash from here on is an interrupted attempt
        self.journal(
            journal::Entry::Started {
                phase: index,
                n,
                at: started_at.clone(),
                patches: patches.to_vec(),
                hints: hints.map(str::to_owned),
            },
            true,
        )
        .await;
        let mut env = self.record.pipeline.vars_for(index);
        env.insert("HELIX_RUN_ID".to_owned(), self.record.id.clone());
        env.insert("HELIX_PHASE".to_owned(), phase.name.clone());
        env.insert("HELIX_ATTEMPT".to_owned(), n.to_string());
        env.insert(
            "TRACEPARENT".to_owned(),
            helix_core::ids::traceparent(&self.record.trace_id, &attempt_span),
        );
        if let Some(h) = hints {
            env.insert("HELIX_HINTS".to_owned(), h.to_owned());
        }
        let settings = &self.engine.settings;
        // secrets join the environment only when commands start; the attempt records names
        let secrets = crate::secrets::resolve(
            &self.record.pipeline.secrets_for(index),
            settings.secrets_file.as_deref(),
        );
        // every process of the attempt (its command's, its gates') lives in one cgroup, killed
        // when each command ends and removed when the attempt does
        let jail = exec::Jail::new(
            settings.sandbox.clone(),
            self.record.pipeline.limits_for(index, settings.rlimits),
            secrets.as_ref().cloned().unwrap_or_default(),
        )
        .contained(settings.containment.group(&self.record.id, &format!("{index}-{n}")));
        let mut attempt = Attempt {
            n,
            started_at,
            duration_ms: 0,
            env: env.clone(),
            command: None,
            prompt: None,
            outcome: None,
            llm: None,
            agent: None,
            gates: Vec::new(),
            status: PhaseStatus::Failed,
            patches: patches.to_vec(),
            heal: None,
            error: None,
            inputs: matching(&cp.manifest, &phase.inputs),
            outputs: Vec::new(),
            degraded: None,
        };
        let workdir =
            self.dir().join("work").join(phase_dir_name(index, &phase.name)).join(format!("attempt-{n}"));
        let carried = if n == 1 && patches.is_empty() {
            self.carry.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        } else {
            None
        };
        let prepared = {
            let blobs = self.engine.blobs.clone();
            let manifest = cp.manifest.clone();
            let patches = patches.to_vec();
            let optional = optional.to_vec();
            let dir = workdir.clone();
            blocking(move || {
                let _ = std::fs::remove_dir_all(&dir);
                let reused = carried.is_some_and(|c| {
                    dir.parent().is_some_and(|p| std::fs::create_dir_all(p).is_ok())
                        && std::fs::rename(&c, &dir).is_ok()
                        && checkpoint::reconcile(&manifest, &blobs, &dir).is_ok()
                });
                if !reused {
                    let _ = std::fs::remove_dir_all(&dir);
                    checkpoint::materialize(&manifest, &blobs, &dir)?;
                }
                for p in &patches {
                    crate::patch::apply(&dir, p)
                        .map_err(|e| EngineError::Invalid(format!("a fix no longer applies: {e}")))?;
                }
                // preflight fixes are tried: one that does not apply here is left out
                Ok(optional.into_iter().filter(|p| crate::patch::apply(&dir, p).is_ok()).collect::<Vec<_>>())
            })
            .await
        };
        if let Ok(applied) = &prepared {
            attempt.patches.extend(applied.iter().cloned());
        }
        if let Err(e) = prepared {
            attempt.error = Some(e.to_string());
            return (self.finish_attempt(attempt, started, start_ns, &attempt_span, phase_span, phase), None);
        }
        if let Err(e) = secrets {
            attempt.error = Some(e);
            return (self.finish_attempt(attempt, started, start_ns, &attempt_span, phase_span, phase), None);
        }
        if baselines.is_none() {
            let mut recorded = BTreeMap::new();
            for (gi, gate) in phase.gates.iter().enumerate() {
                if matches!(gate.check, GateCheck::Command { baseline: true, .. })
                    && let Ok(gate) = gates::rendered(gate, &env)
                    && let Some(s) =
                        gates::record_baseline(&gate, &workdir, &env, &self.active.cancel, &jail).await
                {
                    recorded.insert(gi, s);
                }
            }
            *baselines = Some(recorded);
        }
        // the last step of the fallback chain: a smaller ask when the model cannot be reached or
        // the budget is nearly spent
        let simple;
        let mut attempt_cap = None;
        let phase: &Phase = match self.degraded(phase, spent).await {
            Some(reason) => match phase.simplified() {
                Some(p) => {
                    self.event("degraded", Some(&phase.name), Some(n), format!("simplified mode: {reason}"))
                        .await;
                    attempt_cap = phase.simplified.as_ref().and_then(|s| s.max_cost_usd);
                    attempt.degraded = Some(reason);
                    simple = p;
                    &simple
                }
                None => phase,
            },
            None => phase,
        };
        let (outcome, llm) = match &phase.kind {
            PhaseKind::Command { run } => {
                let spec = match crate::pipeline::render_command(run, &env) {
                    Ok(s) => s,
                    Err(e) => {
                        attempt.error = Some(e.to_string());
                        return (
                            self.finish_attempt(attempt, started, start_ns, &attempt_span, phase_span, phase),
                            None,
                        );
                    }
                };
                attempt.command = Some(spec.display());
                let limits = Limits {
                    timeout: Some(phase.timeout.unwrap_or(settings.phase_timeout)),
                    stall_timeout: phase.stall_timeout,
                    ..Limits::default()
                };
                let group = self.dir().join(super::GROUP_FILE);
                match exec::run_scanning(
                    &spec,
                    &workdir,
                    &env,
                    &limits,
                    &self.active.cancel,
                    Some(&group),
                    &jail,
                    &gates::output_patterns(&phase.gates),
                )
                .await
                {
                    Ok(o) => (o, None),
                    Err(e) => {
                        attempt.error = Some(e.to_string());
                        (failed_outcome(e.to_string()), None)
                    }
                }
            }
            PhaseKind::Llm { .. } => {
                let mut vars = env.clone();
                vars.extend(cp.outputs.iter().map(|(k, v)| (k.clone(), v.clone())));
                let call = super::llm::LlmCall {
                    engine: &self.engine,
                    phase,
                    vars: &vars,
                    hints,
                    workspace: &workdir,
                    traceparent: helix_core::ids::traceparent(&self.record.trace_id, &attempt_span),
                    project: &self.record.project,
                    cancel: &self.active.cancel,
                    recorded: None,
                    open_ends: attempt.degraded.is_none() && phase.simplified.is_some(),
                };
                let again = call.clone();
                let (mut outcome, mut exchange, mut prompt) = call.run().await;
                // the chain opened during the call: the simplified ask, at once
                if outcome.output.starts_with(super::llm::CIRCUIT_OPEN)
                    && let Some(simple) = phase.simplified()
                {
                    let reason = format!("every deployment of the chain was open: {}", outcome.output);
                    self.event("degraded", Some(&phase.name), Some(n), format!("simplified mode: {reason}"))
                        .await;
                    attempt.degraded = Some(reason);
                    let call = super::llm::LlmCall { phase: &simple, open_ends: false, ..again };
                    (outcome, exchange, prompt) = call.run().await;
                }
                attempt.prompt = prompt;
                // each answer the schema refused, and so re-asked (or given up on), is told
                for (i, errors) in exchange.rejections.iter().enumerate() {
                    let asked_again = i + 1 < exchange.requests.len();
                    let message = format!(
                        "answer {} does not satisfy the schema ({}){}",
                        i + 1,
                        errors.join("; "),
                        if asked_again { ": re-asked with the errors" } else { ": no re-ask left" }
                    );
                    self.event("reask", Some(&phase.name), Some(attempt.n), message.clone()).await;
                    let at = now_nanos();
                    self.emit_span(
                        &helix_core::ids::new_span_id(),
                        Some(&attempt_span),
                        format!("reask {}", i + 1),
                        SpanKind::Retry,
                        at,
                        at,
                        SpanStatus::Error,
                        Some(&phase.name),
                        serde_json::json!({
                            "helix.attempt": attempt.n,
                            "helix.reask": i + 1,
                            "helix.reask.errors": errors,
                            "helix.reask.asked_again": asked_again,
                            "helix.heal.message": message,
                        }),
                    );
                }
                (outcome, Some(exchange))
            }
            PhaseKind::Agent(agent) => {
                let mut vars = env.clone();
                vars.extend(cp.outputs.iter().map(|(k, v)| (k.clone(), v.clone())));
                let limits = Limits {
                    timeout: Some(phase.timeout.unwrap_or(settings.phase_timeout)),
                    stall_timeout: phase.stall_timeout,
                    ..Limits::default()
                };
                // next to the attempt's workspace, not in it: the agent's config and logs never
                // land in the files its gates check or the checkpoint keeps
                let home = workdir.with_extension("home");
                let group = self.dir().join(super::GROUP_FILE);
                let patterns = gates::output_patterns(&phase.gates);
                let call = super::agent::AgentCall {
                    engine: &self.engine,
                    agent,
                    vars: &vars,
                    env: &env,
                    context: hints,
                    workspace: &workdir,
                    home: &home,
                    traceparent: helix_core::ids::traceparent(&self.record.trace_id, &attempt_span),
                    project: &self.record.project,
                    budget_left: match (agent.max_cost_usd.map(|m| m - spent), attempt_cap) {
                        (Some(left), Some(cap)) => Some(left.min(cap)),
                        (left, cap) => left.or(cap),
                    },
                    limits,
                    cancel: &self.active.cancel,
                    group_file: Some(&group),
                    jail: &jail,
                    patterns: &patterns,
                };
                let mut on_step = |step| self.agent_step(&step, &attempt_span, &phase.name);
                let result = call.run(&mut on_step).await;
                attempt.prompt = result.prompt;
                attempt.command = result.command;
                attempt.error = result.error;
                attempt.agent = Some(result.report);
                (result.outcome, None)
            }
        };
        attempt.llm = llm;
        let mut results: Vec<GateResult> = Vec::new();
        if !outcome.cancelled {
            let base = baselines.clone().unwrap_or_default();
            for (gi, gate) in phase.gates.iter().enumerate() {
                let gate = &match gates::rendered(gate, &env) {
                    Ok(g) => g,
                    Err(e) => {
                        results.push(GateResult {
                            name: gate.display_name(),
                            kind: gate.check.kind().to_owned(),
                            passed: false,
                            severity: gate.on_fail,
                            detail: format!("cannot render the gate's command: {e}"),
                            summary: None,
                            output: None,
                            flaky: Vec::new(),
                        });
                        continue;
                    }
                };
                let ctx = GateContext {
                    workspace: &workdir,
                    output: &outcome.output,
                    output_truncated: outcome.output_truncated,
                    scanned: &outcome.scanned,
                    exit_code: outcome.exit_code,
                    env: &env,
                    baseline: base.get(&gi),
                    cancel: &self.active.cancel,
                    jail: &jail,
                    default_timeout: crate::gates::DEFAULT_GATE_TIMEOUT.min(settings.phase_timeout),
                };
                let gate_start = now_nanos();
                let r = match &gate.check {
                    // answered with a resume, or pending: the run stops for a person
                    GateCheck::Decision { question, .. } => {
                        let answer = cp.decisions.get(&format!("{}/{}", phase.name, gate.display_name()));
                        GateResult {
                            name: gate.display_name(),
                            kind: "decision".to_owned(),
                            passed: answer.is_some(),
                            severity: gate.on_fail,
                            detail: match answer {
                                Some(a) => format!("decided: {a} (asked: {question})"),
                                None => format!("{}{question}", gates::DECISION_PENDING),
                            },
                            summary: None,
                            output: None,
                            flaky: Vec::new(),
                        }
                    }
                    _ => gates::evaluate(gate, &ctx).await,
                };
                self.emit_span(
                    &helix_core::ids::new_span_id(),
                    Some(&attempt_span),
                    format!("gate {}", r.name),
                    SpanKind::Gate,
                    gate_start,
                    now_nanos(),
                    if r.passed { SpanStatus::Ok } else { SpanStatus::Error },
                    Some(&phase.name),
                    serde_json::json!({"helix.gate.kind": r.kind, "helix.gate.detail": r.detail, "helix.gate.severity": r.severity}),
                );
                self.event(
                    "gate",
                    Some(&phase.name),
                    Some(n),
                    format!("gate {} {}: {}", r.name, if r.passed { "passed" } else { "failed" }, r.detail),
                )
                .await;
                results.push(r);
            }
            self.flaky_reruns(phase, &mut results, &workdir, &env, &jail, n, &attempt_span).await;
        }
        attempt.status = if outcome.cancelled || self.active.cancel.is_cancelled() {
            PhaseStatus::Cancelled
        } else if attempt.error.is_some() {
            PhaseStatus::Failed
        } else if matches!(phase.kind, PhaseKind::Llm { .. }) && !outcome.success() {
            // an LLM phase has no exit code gate: a call that failed, an answer that never
            // satisfied its schema or an output that could not be written fails the attempt
            PhaseStatus::Failed
        } else {
            match gates::phase_status(&results) {
                // simplified mode: it passed, degraded
                PhaseGateStatus::Passed if attempt.degraded.is_some() => PhaseStatus::PassedWithWarnings,
                PhaseGateStatus::Passed => PhaseStatus::Passed,
                PhaseGateStatus::PassedWithWarnings => PhaseStatus::PassedWithWarnings,
                PhaseGateStatus::Failed => PhaseStatus::Failed,
            }
        };
        attempt.gates = results;
        attempt.outcome = Some(outcome);
        let mut output = None;
        if matches!(attempt.status, PhaseStatus::Passed | PhaseStatus::PassedWithWarnings) {
            let blobs = self.engine.blobs.clone();
            let exclude = checkpoint::Exclude::new(&self.engine.settings.exclude);
            let dir = workdir.clone();
            let hint = cp.manifest.clone();
            match blocking(move || {
                Ok(checkpoint::manifest::snapshot_with_hint(&dir, &blobs, &exclude, Some(&hint))?)
            })
            .await
            {
                Ok(m) => {
                    // declared outputs are a promise: each glob must match a file, as a build
                    // tool fails a step that did not produce what it declared
                    let missing: Vec<&String> = phase
                        .outputs
                        .iter()
                        .filter(|g| !m.files.keys().any(|p| crate::pipeline::glob_matches(g, p)))
                        .collect();
                    if missing.is_empty() {
                        attempt.outputs = matching(&m, &phase.outputs);
                        output = Some(m);
                    } else {
                        attempt.gates.push(GateResult {
                            name: "outputs".to_owned(),
                            kind: "outputs".to_owned(),
                            passed: false,
                            severity: gates::Severity::Fail,
                            detail: format!(
                                "declared outputs not produced: {}",
                                missing.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                            summary: None,
                            output: None,
                            flaky: Vec::new(),
                        });
                        attempt.status = PhaseStatus::Failed;
                    }
                }
                Err(e) => {
                    attempt.error = Some(format!("cannot record the workspace: {e}"));
                    attempt.status = PhaseStatus::Failed;
                }
            }
        }
        (self.finish_attempt(attempt, started, start_ns, &attempt_span, phase_span, phase), output)
    }

    fn finish_attempt(
        &self,
        mut attempt: Attempt,
        started: Instant,
        start_ns: u64,
        span: &str,
        parent: &str,
        phase: &Phase,
    ) -> Attempt {
        attempt.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let ok = matches!(attempt.status, PhaseStatus::Passed | PhaseStatus::PassedWithWarnings);
        let (name, kind, attributes) = match &phase.kind {
            PhaseKind::Command { run } => {
                // the program as run (placeholders rendered), not as written
                let program = attempt
                    .command
                    .as_deref()
                    .and_then(|c| c.split_whitespace().next())
                    .unwrap_or_else(|| run.program())
                    .to_owned();
                (
                    format!("execute_tool {program}"),
                    SpanKind::ToolCall,
                    serde_json::json!({
                        "gen_ai.tool.name": program,
                        "helix.tool.arguments": attempt.command,
                        "helix.tool.result": attempt.outcome.as_ref().map(|o| tail(&o.output, 2048)),
                        "helix.attempt": attempt.n,
                        "helix.exit_code": attempt.outcome.as_ref().and_then(|o| o.exit_code),
                    }),
                )
            }
            PhaseKind::Llm { model, .. } => (
                format!("attempt {} {}", attempt.n, phase.name),
                SpanKind::Other,
                serde_json::json!({"gen_ai.request.model": model, "helix.attempt": attempt.n}),
            ),
            // OpenTelemetry's GenAI agent span; its cost is not `helix.cost_usd`: the gateway's
            // LLM call spans under it carry that, and costs are counted once
            PhaseKind::Agent(a) => {
                let r = attempt.agent.clone().unwrap_or_default();
                (
                    format!("invoke_agent {}", a.agent.name()),
                    SpanKind::Other,
                    serde_json::json!({
                        "gen_ai.agent.name": a.agent.name(),
                        "gen_ai.request.model": a.model.clone().or(r.model.clone()),
                        "helix.attempt": attempt.n,
                        "helix.agent.program": r.program,
                        "helix.agent.session": r.session,
                        "helix.agent.turns": r.turns,
                        "helix.agent.tool_calls": r.tool_calls,
                        "helix.agent.cost_usd": r.cost_usd,
                        "helix.agent.max_cost_usd": r.max_cost_usd,
                        "helix.agent.budget_exceeded": r.budget_exceeded,
                        "helix.agent.error": r.error,
                        "helix.exit_code": attempt.outcome.as_ref().and_then(|o| o.exit_code),
                    }),
                )
            }
        };
        let mut attributes = attributes;
        if let (Some(reason), Some(map)) = (&attempt.degraded, attributes.as_object_mut()) {
            map.insert("helix.degraded".to_owned(), serde_json::json!(reason));
        }
        let kind = if attempt.n > 1 && kind == SpanKind::Other { SpanKind::Retry } else { kind };
        self.emit_span(
            span,
            Some(parent),
            name,
            kind,
            start_ns,
            now_nanos(),
            if ok { SpanStatus::Ok } else { SpanStatus::Error },
            Some(&phase.name),
            attributes,
        );
        attempt
    }

    /// Asks the healer what the failure is and decides the next step.
    #[allow(clippy::too_many_arguments)]
    async fn heal(
        &self,
        index: usize,
        phase: &Phase,
        attempt: &Attempt,
        n: u32,
        max: u32,
        hint_retries: u32,
        patches: &[String],
    ) -> (HealRecord, Next) {
        let text = failure_text(attempt);
        let outcome = attempt.outcome.as_ref();
        // the healer judges what the commands printed; the orchestrator's own notes (gate
        // details, "the command did not exit on its own") are read only when the output says
        // nothing, so a note never outranks a diagnostic of the tool
        let analyze = |output: String| {
            let request = AnalyzeRequest {
                output,
                command: attempt.command.clone(),
                exit_code: outcome.and_then(|o| o.exit_code),
                project: Some(self.record.project.clone()),
                tool: None,
            };
            async move {
                match self.engine.clients.healer.analyze(&request).await {
                    Ok(a) => Some(a),
                    Err(e) => {
                        tracing::warn!(error = %e, "healer unavailable; retrying without analysis");
                        None
                    }
                }
            }
        };
        let mut analysis = analyze(command_text(attempt)).await;
        if analysis.as_ref().is_some_and(|a| a.primary_diagnostic().is_none()) {
            analysis = analyze(text.clone()).await.or(analysis);
        }
        // a security diagnostic anywhere wins over the root cause the healer chose
        let primary = analysis.as_ref().and_then(|a| {
            a.diagnostics
                .iter()
                .find(|d| d.failure_class == "security")
                .or_else(|| a.primary_diagnostic())
                .cloned()
        });
        let timed_out = outcome.is_some_and(|o| o.timed_out || o.stalled);
        // every failing gate failed only by tests that pass when re-run alone: flaky
        let failing: Vec<&GateResult> =
            attempt.gates.iter().filter(|g| !g.passed && g.severity == gates::Severity::Fail).collect();
        let flaky = !failing.is_empty()
            && failing.iter().all(|g| {
                !g.flaky.is_empty() && g.summary.as_ref().is_some_and(|s| s.failures.len() == g.flaky.len())
            });
        let mut class =
            primary.as_ref().map(|d| d.failure_class.clone()).unwrap_or_else(|| "unknown".to_owned());
        if flaky && class != "security" {
            class = "flaky".to_owned();
        }
        if timed_out && class != "security" {
            // killed by its timeout or as a stall: that is the failure, whatever it printed
            class = "timeout".to_owned();
        }
        let mut heal = HealRecord {
            failure_class: class.clone(),
            signature: primary.as_ref().map(|d| d.signature.clone()),
            message: if class == "timeout" {
                outcome.map(Outcome::describe)
            } else {
                primary.as_ref().map(|d| d.message.clone()).or_else(|| attempt.error.clone())
            },
            ..HealRecord::default()
        };
        if class == "security" {
            heal.action = "escalate".to_owned();
            return (heal, Next::Stop(PhaseStatus::Escalated));
        }
        let others_pass = attempt
            .gates
            .iter()
            .filter(|g| g.kind != "decision")
            .all(|g| g.passed || g.severity == gates::Severity::Warn);
        if let Some(g) =
            attempt.gates.iter().find(|g| g.kind == "decision" && !g.passed).filter(|_| others_pass)
        {
            // no retry decides it: a person answers with the resume
            heal.failure_class = "decision".to_owned();
            heal.action = "ask_human".to_owned();
            heal.message = Some(g.detail.clone());
            return (heal, Next::Stop(PhaseStatus::NeedsHuman));
        }
        if let Some(r) = attempt.agent.as_ref().filter(|r| r.budget_exceeded) {
            // the gateway stopped the agent at its cap: another attempt has nothing left to spend
            heal.failure_class = "budget_exceeded".to_owned();
            heal.action = "give_up".to_owned();
            heal.message = Some(format!(
                "budget_exceeded: the agent was stopped by the gateway after spending ${:.4} (the phase's max_cost_usd left ${:.4})",
                r.cost_usd,
                r.max_cost_usd.unwrap_or(0.0)
            ));
            return (heal, Next::Stop(PhaseStatus::NeedsHuman));
        }
        if n >= max || (class == "timeout" && phase.on_timeout == OnTimeout::GiveUp) {
            heal.action = "give_up".to_owned();
            return (heal, Next::Stop(PhaseStatus::NeedsHuman));
        }
        // the path that healed this signature most often here decides where to start: a plain
        // retry when that is what worked, hints before fixes when hints worked
        // the healer's history of the signature, read once: success paths, proven and learned
        // fixes, and what the repair model is shown
        let history = self.history(heal.signature.as_deref()).await;
        let followed = path_step(history.as_ref(), &phase.name, n);
        let prefer_hints = followed.as_ref().is_some_and(|(s, _)| s == "hint");
        if let Some((step, path)) = &followed
            && step == "backoff"
        {
            let base = self.engine.settings.retry_backoff;
            heal.action = "retry_backoff".to_owned();
            heal.path = Some(path.clone());
            let wait = base.saturating_mul(1u32 << (n - 1).min(16)).min(MAX_BACKOFF);
            heal.backoff_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            return (heal, Next::Retry { backoff: wait, fix: None, hints: None });
        }
        if prefer_hints {
            heal.path = followed.as_ref().map(|(_, p)| p.clone());
        }
        // learning: a fix that solved this very signature at least twice in this project and
        // never failed is applied at once, before proposals and without a hint retry
        if !prefer_hints
            && !matches!(class.as_str(), "transient" | "timeout" | "unknown" | "flaky")
            && let Some(fix) = self
                .proven_fix(
                    index,
                    &phase.name,
                    history.as_ref(),
                    primary.as_ref().and_then(|d| d.key.as_deref()),
                    n,
                    patches,
                )
                .await
        {
            heal.action = "fix_applied".to_owned();
            heal.fix = Some(fix.clone());
            return (heal, Next::Retry { backoff: Duration::ZERO, fix: Some(Box::new(fix)), hints: None });
        }
        let backoff = || {
            let base = self.engine.settings.retry_backoff;
            base.saturating_mul(1u32 << (n - 1).min(16)).min(MAX_BACKOFF)
        };
        let agent = matches!(phase.kind, PhaseKind::Agent(_));
        let with_hints = prefer_hints
            || match class.as_str() {
                "deterministic" | "environment" => true,
                "timeout" => phase.on_timeout == OnTimeout::RetryWithHints,
                // an agent acts on what it is told, and a repair model on what it is shown:
                // whatever failed its checks, tell them
                "transient" | "flaky" => false,
                _ => agent || phase.repair.is_some(),
            };
        match with_hints {
            true => {
                let workdir = self
                    .dir()
                    .join("work")
                    .join(phase_dir_name(index, &phase.name))
                    .join(format!("attempt-{n}"));
                let (files, listing) = workspace_files(&workdir, &text).await;
                let proposals = self
                    .engine
                    .clients
                    .healer
                    .propose(&ProposeRequest {
                        analysis: analysis.as_ref().map(|a| a.raw.clone()),
                        output: None,
                        tool: None,
                        files,
                        listing,
                    })
                    .await;
                let fixes = proposals.map(|p| p.fixes).unwrap_or_default();
                let auto = fixes.iter().find(|f| {
                    f.kind == "patch"
                        && f.confidence == "auto"
                        && f.patch.as_ref().is_some_and(|p| !p.is_empty() && !patches.contains(p))
                });
                if let Some(f) = auto.filter(|_| !prefer_hints) {
                    let fix = AppliedFix {
                        signature: f.signature.clone(),
                        description: f.description.clone(),
                        source: f.source.clone(),
                        patch: f.patch.clone().unwrap_or_default(),
                        files: f.files.clone(),
                        origin: Some("healer".to_owned()),
                        key: primary.as_ref().and_then(|d| d.key.clone()),
                    };
                    heal.action = "fix_applied".to_owned();
                    heal.fix = Some(fix.clone());
                    return (
                        heal,
                        Next::Retry { backoff: Duration::ZERO, fix: Some(Box::new(fix)), hints: None },
                    );
                }
                if let Some(cfg) = phase.repair.as_ref().filter(|_| !prefer_hints)
                    && let Some(sig) = heal.signature.clone()
                {
                    let past = history.as_ref().map(|h| h.fixes.as_slice()).unwrap_or_default();
                    let call = super::repair::RepairCall {
                        engine: &self.engine,
                        cfg,
                        workspace: &workdir,
                        primary: primary.as_ref(),
                        failure: &text,
                        past,
                        traceparent: helix_core::ids::traceparent(
                            &self.record.trace_id,
                            &helix_core::ids::new_span_id(),
                        ),
                        project: &self.record.project,
                    };
                    let (repaired, record) = call.run().await;
                    self.event(
                        "repair",
                        Some(&phase.name),
                        Some(n),
                        match (&repaired, &record.error) {
                            (Some(r), _) => format!("LLM repair ({}): {}", cfg.model, r.explanation),
                            (None, Some(e)) => format!("LLM repair ({}) gave no usable diff: {e}", cfg.model),
                            (None, None) => format!("LLM repair ({}) gave no usable diff", cfg.model),
                        },
                    )
                    .await;
                    heal.repair = Some(record);
                    if let Some(r) = repaired
                        && !patches.contains(&r.patch)
                    {
                        let fix = AppliedFix {
                            signature: sig,
                            description: r.explanation,
                            source: format!("llm repair ({})", cfg.model),
                            patch: r.patch,
                            files: r.files,
                            origin: Some("llm_repair".to_owned()),
                            key: primary.as_ref().and_then(|d| d.key.clone()),
                        };
                        heal.action = "fix_applied".to_owned();
                        heal.fix = Some(fix.clone());
                        return (
                            heal,
                            Next::Retry { backoff: Duration::ZERO, fix: Some(Box::new(fix)), hints: None },
                        );
                    }
                }
                if hint_retries >= MAX_HINT_RETRIES {
                    heal.action = "give_up".to_owned();
                    return (heal, Next::Stop(PhaseStatus::NeedsHuman));
                }
                let mut hint = Vec::new();
                if let Some(sig) = &heal.signature
                    && let Ok(Some(h)) =
                        self.engine.clients.healer.hint(sig, Some(&self.record.project)).await
                {
                    heal.hint_ids.push(format!("hint:{}", h.signature));
                    heal.hint_ids.extend(h.pattern.map(|p| format!("pattern:{p}")));
                    hint.push(h.hint);
                }
                if hint.is_empty()
                    && let Some(m) = &heal.message
                {
                    heal.hint_ids.push("failure".to_owned());
                    hint.push(format!("The previous attempt failed with: {m}"));
                }
                for f in fixes.iter().filter(|f| f.kind != "retry").take(3) {
                    if !heal.hint_ids.contains(&f.source) {
                        heal.hint_ids.push(f.source.clone());
                    }
                    hint.push(format!("Suggested fix ({}): {}", f.confidence, f.description));
                }
                if agent {
                    hint.extend(retry_context(attempt, primary.as_ref().map(|d| d.message.as_str())));
                }
                let hints = hint.join("\n");
                heal.action = "retry_with_hints".to_owned();
                heal.hints = Some(hints.clone());
                (heal, Next::Retry { backoff: Duration::ZERO, fix: None, hints: Some(hints) })
            }
            false => {
                let wait = match outcome.and_then(|o| o.output.strip_prefix("gateway-retry-after-ms:")) {
                    Some(ms) => Duration::from_millis(
                        ms.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0),
                    )
                    .max(backoff()),
                    None => backoff(),
                };
                heal.action = "retry_backoff".to_owned();
                heal.backoff_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                (heal, Next::Retry { backoff: wait, fix: None, hints: None })
            }
        }
    }

    /// After a pass that took healing: the steps the failed attempts took, reported to the
    /// healer as a success path of the first failure's signature.
    async fn report_path(&self, phase: &str, failed: &[Attempt]) {
        let Some(signature) = failed.iter().find_map(|a| a.heal.as_ref().and_then(|h| h.signature.clone()))
        else {
            return;
        };
        let steps: Vec<String> =
            failed.iter().filter_map(|a| a.heal.as_ref().and_then(HealRecord::step)).collect();
        if steps.is_empty() {
            return;
        }
        let report = helix_core::client::PathReport {
            signature,
            steps,
            project: Some(self.record.project.clone()),
            phase: Some(phase.to_owned()),
        };
        if let Err(e) = self.engine.clients.healer.record_path(&report).await {
            tracing::warn!(error = %e, "cannot report a success path to the healer");
        }
    }

    /// What the healer knows of `signature` in this run's project (None without a signature,
    /// or when the healer cannot say).
    async fn history(&self, signature: Option<&str>) -> Option<helix_core::client::SignatureReport> {
        match self.engine.clients.healer.signature_report(signature?, Some(&self.record.project)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the healer's history of a signature");
                None
            }
        }
    }

    /// The best fix the healer's history proves for `signature` in this run's project (≥ 2
    /// successes, no failure), if it is new to this phase and applies to the failed attempt's
    /// workspace.
    async fn proven_fix(
        &self,
        index: usize,
        phase: &str,
        history: Option<&helix_core::client::SignatureReport>,
        key: Option<&str>,
        n: u32,
        patches: &[String],
    ) -> Option<AppliedFix> {
        let report = history?;
        let sig = report.signature.as_str();
        let dir = self.dir().join("work").join(phase_dir_name(index, phase)).join(format!("attempt-{n}"));
        // proven: twice, or once as an LLM repair (a learned fix, tried before asking a model again)
        for f in report.fixes.iter().filter(|f| (f.successes >= 2 || f.learned) && f.failures == 0) {
            let Some(recorded) = f.patch.clone().filter(|p| !p.is_empty()) else { continue };
            // as recorded, else re-based on this occurrence's key (the same error naming another)
            let mut candidates = vec![recorded.clone()];
            if let (Some(old), Some(new)) = (f.key.as_deref(), key)
                && let Some(r) = super::repair::rebased(&recorded, old, new)
            {
                candidates.push(r);
            }
            for patch in candidates.into_iter().filter(|p| !patches.contains(p)) {
                let d = dir.clone();
                let p = patch.clone();
                let applies = tokio::task::spawn_blocking(move || crate::patch::check(&d, &p))
                    .await
                    .ok()
                    .and_then(Result::ok);
                if let Some(files) = applies {
                    let how = if f.learned { "learned from an LLM repair" } else { "learned" };
                    return Some(AppliedFix {
                        signature: sig.to_owned(),
                        description: f.description.clone(),
                        source: format!("{how}: solved {}x in project {}", f.successes, self.record.project),
                        patch,
                        files,
                        origin: f.source.clone(),
                        key: key.map(str::to_owned).or_else(|| f.key.clone()),
                    });
                }
            }
        }
        None
    }

    /// Preflight: the fixes the healer recorded as solving this phase's failures in this
    /// project (at least one success, no failure), to try on the first attempt.
    async fn preflight_fixes(&self, phase: &Phase) -> Vec<AppliedFix> {
        match self.engine.clients.healer.known_fixes(&self.record.project, Some(&phase.name)).await {
            Ok(fixes) => fixes
                .into_iter()
                .filter(|f| f.successes >= 1 && f.failures == 0 && !f.patch.is_empty())
                .map(|f| AppliedFix {
                    signature: f.signature,
                    description: f.description,
                    source: format!("preflight: solved {}x in this phase before", f.successes),
                    patch: f.patch,
                    files: Vec::new(),
                    origin: None,
                    key: None,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the healer for a phase's known fixes");
                Vec::new()
            }
        }
    }

    /// Preflight, static half: the healer's `POST /v1/check` on the phase's workspace as the
    /// checkpoint holds it (its files read from the blob store, nothing written). Each predicted
    /// failure is an event; the fixes it rates `auto` are tried on the first attempt like known
    /// fixes, and their outcomes reported, so the healer learns from them.
    async fn preflight_check(&self, phase: &Phase, cp: &Checkpoint) -> Vec<AppliedFix> {
        use helix_core::client::check::{
            WorkspaceLimits, installed_debian_packages, select_files, skipped_dir,
        };
        let collected = {
            let blobs = self.engine.blobs.clone();
            let manifest = cp.manifest.clone();
            blocking(move || {
                let limits = WorkspaceLimits::default();
                // what a walk of the materialized workspace would list: files, not links, outside
                // dependency and build directories
                let listing: Vec<String> = manifest
                    .files
                    .iter()
                    .filter(|(rel, e)| e.link.is_none() && !rel.split('/').rev().skip(1).any(skipped_dir))
                    .map(|(rel, _)| rel.clone())
                    .take(limits.max_listing)
                    .collect();
                let files = select_files(&listing, limits, |rel| {
                    let e = manifest.files.get(rel)?;
                    Some((e.size, || blobs.read_text(&e.sha256, u64::MAX).ok().flatten()))
                });
                Ok((files, listing, installed_debian_packages()))
            })
            .await
        };
        let (files, listing, installed) = match collected {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the phase's workspace for the preflight check");
                return Vec::new();
            }
        };
        let req = helix_core::client::check::CheckRequest {
            files,
            listing,
            installed_packages: installed,
            project: Some(self.record.project.clone()),
        };
        let report = match self.engine.clients.healer.check(&req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the healer for a preflight check");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for f in &report.findings {
            self.event(
                "preflight_finding",
                Some(&phase.name),
                None,
                format!("preflight: {}:{}: {} ({})", f.file, f.line, f.reason, f.category()),
            )
            .await;
            let auto = f.fixes.iter().find(|x| {
                x.kind == "patch" && x.confidence == "auto" && x.patch.as_ref().is_some_and(|p| !p.is_empty())
            });
            if let Some(x) = auto {
                out.push(AppliedFix {
                    signature: f.signature().to_owned(),
                    description: x.description.clone(),
                    source: format!("preflight check: {}", x.source),
                    patch: x.patch.clone().unwrap_or_default(),
                    files: x.files.clone(),
                    origin: Some("healer".to_owned()),
                    key: f.diagnostic.get("key").and_then(|k| k.as_str()).map(str::to_owned),
                });
            }
        }
        out
    }

    /// Tells the healer how a fix it proposed went, so it learns.
    async fn report_fix(&self, fix: &AppliedFix, phase: &str, success: bool) {
        let req = FixRequest {
            signature: fix.signature.clone(),
            description: fix.description.clone(),
            outcome: if success { "success" } else { "failure" }.to_owned(),
            patch: Some(fix.patch.clone()),
            project: Some(self.record.project.clone()),
            phase: Some(phase.to_owned()),
            source: fix.origin.clone(),
            key: fix.key.clone(),
        };
        if let Err(e) = self.engine.clients.healer.record_fix(&req).await {
            tracing::warn!(error = %e, "cannot report a fix outcome to the healer");
        }
    }
}

/// In a run's directory when it stopped for a human: the escalation report.
pub(crate) const ESCALATION_FILE: &str = "escalation.md";

/// What [`Driver::escalate`] made: the webhook's body, the report and where it is, and the model
/// to draft an ADR proposal with, if the failed phase has one.
struct Escalation {
    body: serde_json::Value,
    report: String,
    path: PathBuf,
    adr_model: Option<String>,
}

async fn write_report(path: &Path, report: &str) {
    let (path, text) = (path.to_path_buf(), report.to_owned());
    let written = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!("cannot write the escalation report");
    }
}

/// Calls the escalation webhook (best effort, bounded).
async fn call_webhook(url: &str, body: &serde_json::Value) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build();
    match client {
        Ok(c) => match c.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = r.status().as_u16(), "escalation webhook refused the call"),
            Err(e) => tracing::warn!(error = %e, "escalation webhook unreachable"),
        },
        Err(e) => tracing::warn!(error = %e, "cannot build the webhook client"),
    }
}

/// The files of `manifest` that match any of `globs`.
fn matching(manifest: &Manifest, globs: &[String]) -> Vec<String> {
    manifest
        .files
        .keys()
        .filter(|p| globs.iter().any(|g| crate::pipeline::glob_matches(g, p)))
        .cloned()
        .collect()
}

pub(super) fn phase_dir_name(index: usize, name: &str) -> String {
    format!("{index:02}-{name}")
}

/// An outcome for an attempt that could not start.
/// An agent phase with less than this share of its `max_cost_usd` left runs simplified.
const NEARLY_SPENT: f64 = 0.2;

/// Bytes of a failed gate's output an agent's next prompt quotes (its tail).
const CONTEXT_TAIL_BYTES: usize = 2048;

/// What the next attempt of an agent phase is told about this one: the primary diagnostic, each
/// failed gate with the tail of its output, and how the agent itself ended.
fn retry_context(attempt: &Attempt, primary: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = primary {
        out.push(format!("Primary error: {m}"));
    }
    for g in attempt.gates.iter().filter(|g| !g.passed).take(3) {
        out.push(format!("Check `{}` ({}) failed: {}", g.name, g.kind, g.detail));
        if let Some(o) = g.output.as_deref().filter(|o| !o.trim().is_empty()) {
            out.push(format!("Its output ended with:\n{}", tail(o, CONTEXT_TAIL_BYTES).trim_end()));
        }
    }
    if let Some(e) = attempt.agent.as_ref().and_then(|r| r.error.as_deref()) {
        out.push(format!("The agent reported an error: {}", tail(e, 512)));
    }
    if let Some(o) = attempt.outcome.as_ref().filter(|o| !o.success()) {
        out.push(format!("The agent's process ended with {}.", o.describe()));
    }
    out
}

/// The step the most successful path of `history` in `phase` took at attempt `n`, with the path.
fn path_step(
    history: Option<&helix_core::client::SignatureReport>,
    phase: &str,
    n: u32,
) -> Option<(String, Vec<String>)> {
    let best = history?.paths.iter().find(|p| p.phases.iter().any(|x| x == phase))?;
    let step = best.steps.get(usize::try_from(n).ok()?.checked_sub(1)?)?.clone();
    Some((step, best.steps.clone()))
}

/// What an attempt's model calls cost: an LLM phase's exchange, an agent's key.
fn attempt_cost(a: &Attempt) -> f64 {
    a.llm.as_ref().map_or(0.0, |l| l.cost_usd) + a.agent.as_ref().map_or(0.0, |r| r.cost_usd)
}

pub(super) fn failed_outcome(message: String) -> Outcome {
    Outcome {
        exit_code: None,
        signal: None,
        timed_out: false,
        stalled: false,
        cancelled: false,
        output: message,
        output_truncated: 0,
        duration: Duration::ZERO,
        scanned: Vec::new(),
    }
}

/// What the commands of a failed attempt printed: the phase command's output and the output of
/// each failed command gate (a test gate's failures are in its own output).
fn command_text(attempt: &Attempt) -> String {
    let mut text = attempt.outcome.as_ref().map(|o| o.output.clone()).unwrap_or_default();
    for o in attempt.gates.iter().filter(|g| !g.passed).filter_map(|g| g.output.as_ref()) {
        text.push('\n');
        text.push_str(o);
    }
    text
}

/// What the healer reads of a failed attempt: the output, then each failed gate's detail and
/// output (a test gate's failures are in its own output).
fn failure_text(attempt: &Attempt) -> String {
    let mut text = attempt.outcome.as_ref().map(|o| o.output.clone()).unwrap_or_default();
    if let Some(e) = &attempt.error {
        text.push_str(&format!("\n{e}\n"));
    }
    for g in attempt.gates.iter().filter(|g| !g.passed) {
        text.push_str(&format!("\ngate {} failed: {}\n", g.name, g.detail));
        if let Some(o) = &g.output {
            text.push_str(o);
        }
    }
    text
}

fn failure_reason(rec: &PhaseRecord) -> String {
    let last = rec.attempts.last();
    // a phase killed by its timeout failed by timing out, not by the gate that then failed
    let why = last
        .and_then(|a| a.outcome.as_ref())
        .filter(|o| o.timed_out || o.stalled)
        .map(Outcome::describe)
        .or_else(|| last.and_then(|a| a.heal.as_ref().and_then(|h| h.message.clone())))
        .or_else(|| {
            last.and_then(|a| {
                a.gates.iter().find(|g| !g.passed).map(|g| format!("gate {}: {}", g.name, g.detail))
            })
        })
        .or_else(|| last.and_then(|a| a.error.clone()))
        .or_else(|| last.and_then(|a| a.outcome.as_ref().map(Outcome::describe)))
        .unwrap_or_else(|| "failed".to_owned());
    format!("phase {} failed after {} attempt(s): {why}", rec.name, rec.attempts.len())
}

/// The text a later prompt sees as `{{phases.NAME.output}}`.
fn phase_output(a: &Attempt) -> String {
    let text = match &a.llm {
        Some(l) => l.answers.last().cloned().unwrap_or_default(),
        None => a.outcome.as_ref().map(|o| o.output.clone()).unwrap_or_default(),
    };
    tail(&text, OUTPUT_VAR_BYTES)
}

pub(super) fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// The files the healer may edit (manifests, and small files the failure names) and the listing.
async fn workspace_files(dir: &Path, failure: &str) -> (Vec<WorkspaceFile>, Vec<String>) {
    let dir = dir.to_path_buf();
    let failure = failure.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut listing = Vec::new();
        let mut stack = vec![(dir.clone(), String::new())];
        while let Some((d, prefix)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
                match e.file_type() {
                    Ok(t) if t.is_dir() && listing.len() < 5000 => stack.push((e.path(), rel)),
                    Ok(t) if t.is_file() => listing.push(rel),
                    _ => {}
                }
            }
        }
        listing.sort();
        let mut files = Vec::new();
        for rel in &listing {
            let base = rel.rsplit('/').next().unwrap_or(rel);
            let wanted = MANIFESTS.contains(&base) || failure.contains(rel.as_str());
            if !wanted || files.len() >= 50 {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(dir.join(rel))
                && meta.len() <= 256 * 1024
                && let Ok(content) = std::fs::read_to_string(dir.join(rel))
            {
                files.push(WorkspaceFile { path: rel.clone(), content });
            }
        }
        listing.truncate(1000);
        (files, listing)
    })
    .await
    .unwrap_or_default()
}

fn parse_rfc3339_nanos(s: &str) -> Option<u64> {
    helix_core::time::parse_rfc3339_nanos(s)
}
