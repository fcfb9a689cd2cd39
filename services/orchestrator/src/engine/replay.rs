//! Replay: one phase of a recorded run again, with exactly its recorded inputs (the input
//! workspace, the environment and fixes of its last attempt, the prompt variables), in its own
//! directory, and how the outputs differ from what the run recorded.

use std::time::Instant;

use serde::Serialize;

use super::drive::{failed_outcome, phase_dir_name};
use super::{Checkpoint, Engine, EngineError, PhaseRecord, RunRecord, blocking};
use crate::checkpoint::{self, ChangeKind, Manifest};
use crate::exec::{self, Limits};
use crate::gates::{self, GateContext, GateResult};
use crate::pipeline::{PhaseKind, render_command};

/// Text files up to this size get a line diff in a replay report.
const DIFF_MAX_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileChange {
    pub path: String,
    /// `added`, `removed` or `modified`.
    pub change: String,
    /// Unified diff for text files.
    pub diff: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// The replay's own run id (`HELIX_RUN_ID` of its commands, with `HELIX_REPLAY=1`).
    pub replay_id: String,
    /// The replay's own trace (its root span links to the run's trace).
    pub trace_id: String,
    /// A unified diff of the recorded output and the replay's, when they differ.
    pub output_diff: Option<String>,
    pub run_id: String,
    pub phase: String,
    pub index: usize,
    /// Where the replay ran (kept for inspection).
    pub workspace: String,
    /// LLM answers came from the recording.
    pub recorded: bool,
    pub passed: bool,
    pub exit_code: Option<i32>,
    #[schema(value_type = Vec<Object>)]
    pub gates: Vec<GateResult>,
    /// Output files that differ from the recorded run (empty: identical).
    pub changes: Vec<FileChange>,
    /// Whether the phase's output (stdout+stderr or the answer) equals the recorded one.
    pub same_output: bool,
    pub duration_ms: u64,
}

/// The phase record of `index` in the run's latest checkpoint (a completed phase, or the one
/// that failed).
fn recorded_phase(cp: &Checkpoint, index: usize) -> Option<PhaseRecord> {
    cp.phases
        .iter()
        .find(|p| p.index == index)
        .cloned()
        .or_else(|| cp.failed.clone().filter(|f| f.index == index))
}

pub(super) async fn replay(
    engine: &Engine,
    id: &str,
    index: usize,
    recorded: bool,
) -> Result<ReplayReport, EngineError> {
    let dir = engine.run_dir(id)?;
    let id_owned = id.to_owned();
    let load_dir = dir.clone();
    let (record, rec) = blocking(move || {
        let Some(record) = checkpoint::run::read_descriptor::<RunRecord>(&load_dir)? else {
            return Err(EngineError::NotFound(id_owned));
        };
        let (_, cp) = checkpoint::run::latest_checkpoint::<Checkpoint>(&load_dir)?
            .ok_or_else(|| EngineError::Invalid(format!("run {id_owned} has no checkpoint")))?;
        let rec = recorded_phase(&cp, index).ok_or_else(|| {
            EngineError::Conflict(format!("phase {index} of run {id_owned} has not run yet"))
        })?;
        Ok((record, rec))
    })
    .await?;
    let phase = record
        .pipeline
        .phases
        .get(index)
        .cloned()
        .ok_or_else(|| EngineError::NotFound(format!("phase {index} of run {id}")))?;
    let attempt = rec
        .attempts
        .last()
        .cloned()
        .ok_or_else(|| EngineError::Invalid(format!("phase {} has no recorded attempt", rec.name)))?;
    // a fresh directory per replay, next to the run
    let n = std::fs::read_dir(dir.join("replays")).map_or(0, |d| d.count()) + 1;
    let workdir = dir.join("replays").join(format!("{}-{n}", phase_dir_name(index, &phase.name)));
    {
        let blobs = engine.blobs.clone();
        let input = rec.input_checkpoint;
        let patches = attempt.patches.clone();
        let wd = workdir.clone();
        let run = dir.clone();
        blocking(move || {
            let input = checkpoint::run::read_checkpoint::<Checkpoint>(&run, input)?.manifest;
            checkpoint::materialize(&input, &blobs, &wd)?;
            for p in &patches {
                crate::patch::apply(&wd, p)
                    .map_err(|e| EngineError::Invalid(format!("a recorded fix no longer applies: {e}")))?;
            }
            Ok(())
        })
        .await?;
    }
    let started = Instant::now();
    let start_ns = super::now_nanos();
    let cancel = exec::Cancel::new();
    // a replay is not the run: its own id and trace (linked to the run's), and commands can
    // tell (HELIX_REPLAY=1) so side effects (deploys, notifications) can be skipped
    let replay_id = uuid::Uuid::new_v4().to_string();
    let trace_id = helix_core::ids::new_trace_id();
    let root_span = helix_core::ids::new_span_id();
    let mut env = attempt.env.clone();
    env.insert("HELIX_RUN_ID".to_owned(), replay_id.clone());
    env.insert("HELIX_REPLAY".to_owned(), "1".to_owned());
    env.insert("HELIX_REPLAY_OF".to_owned(), id.to_owned());
    env.insert("TRACEPARENT".to_owned(), helix_core::ids::traceparent(&trace_id, &root_span));
    let settings = &engine.settings;
    let secrets =
        crate::secrets::resolve(&record.pipeline.secrets_for(index), settings.secrets_file.as_deref())
            .map_err(EngineError::Invalid)?;
    let jail = exec::Jail::new(
        settings.sandbox.clone(),
        record.pipeline.limits_for(index, settings.rlimits),
        secrets,
    )
    .contained(settings.containment.group(&replay_id, &format!("{index}-replay")));
    let outcome = match &phase.kind {
        PhaseKind::Command { run } => match render_command(run, &env) {
            Ok(spec) => {
                let limits = Limits {
                    timeout: Some(phase.timeout.unwrap_or(settings.phase_timeout)),
                    stall_timeout: phase.stall_timeout,
                    ..Limits::default()
                };
                exec::run_scanning(
                    &spec,
                    &workdir,
                    &env,
                    &limits,
                    &cancel,
                    None,
                    &jail,
                    &gates::output_patterns(&phase.gates),
                )
                .await
                .unwrap_or_else(|e| failed_outcome(e.to_string()))
            }
            Err(e) => failed_outcome(e.to_string()),
        },
        PhaseKind::Agent(agent) => {
            // the agent works again, live: an agent cannot be replayed from a recording
            let vars = prompt_vars(&dir, index, &env).await?;
            let limits = Limits {
                timeout: Some(phase.timeout.unwrap_or(settings.phase_timeout)),
                stall_timeout: phase.stall_timeout,
                ..Limits::default()
            };
            let home = workdir.with_extension("home");
            let patterns = gates::output_patterns(&phase.gates);
            let context = env.get("HELIX_HINTS").cloned();
            let call = super::agent::AgentCall {
                engine,
                agent,
                vars: &vars,
                env: &env,
                context: context.as_deref(),
                workspace: &workdir,
                home: &home,
                traceparent: helix_core::ids::traceparent(&trace_id, &root_span),
                project: &record.project,
                budget_left: agent.max_cost_usd,
                limits,
                cancel: &cancel,
                group_file: None,
                jail: &jail,
                patterns: &patterns,
            };
            let result = call.run(&mut |_| {}).await;
            result.outcome
        }
        PhaseKind::Llm { .. } => {
            let vars = prompt_vars(&dir, index, &env).await?;
            let hints = env.get("HELIX_HINTS").cloned();
            let call = super::llm::LlmCall {
                engine,
                phase: &phase,
                vars: &vars,
                hints: hints.as_deref(),
                workspace: &workdir,
                traceparent: helix_core::ids::traceparent(&trace_id, &root_span),
                project: &record.project,
                cancel: &cancel,
                recorded: if recorded { attempt.llm.as_ref() } else { None },
                open_ends: false,
            };
            call.run().await.0
        }
    };
    let mut results = Vec::new();
    for gate in &phase.gates {
        let gate = &match gates::rendered(gate, &env) {
            Ok(g) => g,
            Err(_) => gate.clone(),
        };
        let ctx = GateContext {
            workspace: &workdir,
            output: &outcome.output,
            output_truncated: outcome.output_truncated,
            scanned: &outcome.scanned,
            exit_code: outcome.exit_code,
            env: &env,
            baseline: None,
            cancel: &cancel,
            jail: &jail,
            default_timeout: crate::gates::DEFAULT_GATE_TIMEOUT.min(settings.phase_timeout),
        };
        results.push(gates::evaluate(gate, &ctx).await);
    }
    let passed = !outcome.cancelled && gates::phase_status(&results) != gates::PhaseGateStatus::Failed;
    let recorded_out = attempt
        .llm
        .as_ref()
        .and_then(|l| l.answers.last().cloned())
        .or_else(|| attempt.outcome.as_ref().map(|o| o.output.clone()))
        .unwrap_or_default();
    let same_output = recorded_out == outcome.output;
    let output_diff = (!same_output).then(|| checkpoint::file_diff("output", &recorded_out, &outcome.output));
    // compare with what the run recorded: its output, or (a failed phase) its input
    let reference = rec.output_checkpoint.unwrap_or(rec.input_checkpoint);
    let blobs = engine.blobs.clone();
    let exclude = checkpoint::Exclude::new(&engine.settings.exclude);
    let wd = workdir.clone();
    let run = dir.clone();
    let changes = blocking(move || {
        let reference = checkpoint::run::read_checkpoint::<Checkpoint>(&run, reference)?.manifest;
        let now: Manifest = checkpoint::snapshot(&wd, &blobs, &exclude)?;
        let mut out = Vec::new();
        for c in reference.diff(&now) {
            let old = reference.files.get(&c.path);
            let new = now.files.get(&c.path);
            let text = |e: Option<&checkpoint::FileEntry>| -> Option<String> {
                match e {
                    Some(e) if e.size <= DIFF_MAX_BYTES => {
                        blobs.read_text(&e.sha256, DIFF_MAX_BYTES).ok().flatten()
                    }
                    Some(_) => None,
                    None => Some(String::new()),
                }
            };
            let diff = match (text(old), text(new)) {
                (Some(a), Some(b)) => Some(checkpoint::file_diff(&c.path, &a, &b)),
                _ => None,
            };
            let change = match c.kind {
                ChangeKind::Added => "added",
                ChangeKind::Removed => "removed",
                ChangeKind::Modified => "modified",
            };
            out.push(FileChange { path: c.path, change: change.to_owned(), diff });
        }
        Ok(out)
    })
    .await?;
    let ok = passed && same_output && changes.is_empty();
    engine.emitter.emit(
        crate::emit::SpanBuilder::new(
            &trace_id,
            &root_span,
            &format!("replay {}", phase.name),
            helix_core::trace::SpanKind::Run,
        )
        .times(start_ns, super::now_nanos())
        .status(
            if passed { helix_core::trace::SpanStatus::Ok } else { helix_core::trace::SpanStatus::Error },
            (!ok).then_some("differs from the recording"),
        )
        .project(&record.project)
        .phase(&phase.name)
        .run(&replay_id)
        .attr("helix.replay.of_run", id)
        .attr("helix.replay.of_trace", record.trace_id.as_str())
        .attr("helix.replay.recorded", recorded)
        .attr("helix.replay.same_output", same_output)
        .attr("helix.replay.changed_files", changes.len())
        .build(),
    );
    Ok(ReplayReport {
        replay_id,
        trace_id,
        output_diff,
        run_id: id.to_owned(),
        phase: phase.name.clone(),
        index,
        workspace: workdir.display().to_string(),
        recorded: recorded && matches!(phase.kind, PhaseKind::Llm { .. }),
        passed,
        exit_code: outcome.exit_code,
        gates: results,
        changes,
        same_output,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The variables a prompt of phase `index` saw: the environment plus earlier phases' outputs, as
/// recorded in the checkpoint before this phase.
async fn prompt_vars(
    dir: &std::path::Path,
    index: usize,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, EngineError> {
    let mut vars = env.clone();
    let dir = dir.to_path_buf();
    let before = blocking(move || {
        let mut outputs = std::collections::BTreeMap::new();
        for seq in checkpoint::run::list_checkpoints(&dir)? {
            if let Ok(cp) = checkpoint::run::read_checkpoint::<Checkpoint>(&dir, seq)
                && cp.next_phase == index
            {
                outputs = cp.outputs;
            }
        }
        Ok(outputs)
    })
    .await?;
    vars.extend(before);
    Ok(vars)
}
