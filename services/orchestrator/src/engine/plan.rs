//! Dry runs: every phase, input, gate and environment resolved, in order, with a cost estimate
//! from the trace-collector's baselines; nothing executed, nothing written.

use serde::Serialize;

use super::Engine;
use crate::gates::GateCheck;
use crate::pipeline::{PhaseKind, Pipeline, render, render_command};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlannedPhase {
    pub index: usize,
    pub name: String,
    pub kind: String,
    /// The command as it would run, or the prompt (placeholders of earlier phases' outputs are
    /// shown as they are: they are only known at run time).
    pub action: String,
    pub model: Option<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Names of the environment variables the phase gets (values may be secrets).
    pub env: Vec<String>,
    pub timeout_secs: Option<u64>,
    pub stall_timeout_secs: Option<u64>,
    pub max_attempts: u32,
    /// Each gate, described.
    pub gates: Vec<String>,
    /// Median cost of this (project, phase) in the collector's baselines.
    pub estimated_cost_usd: Option<f64>,
    /// Median duration, seconds.
    pub estimated_duration_secs: Option<f64>,
    /// Problems found while resolving (an unknown variable, ...).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub pipeline: String,
    pub project: String,
    pub fingerprint: String,
    pub phases: Vec<PlannedPhase>,
    /// Sum of the phases' estimates (phases without a baseline count as 0).
    pub estimated_cost_usd: f64,
    pub estimated_duration_secs: f64,
    /// Whether the collector answered (no estimates without it).
    pub baselines_available: bool,
}

/// Median (cost, duration seconds) of a phase in `GET /v1/baselines` of the collector: entries
/// of kind `phase` whose subject is `project / phase`, metric `cost` or `duration` (seconds).
fn estimates(baselines: &serde_json::Value, project: &str, phase: &str) -> (Option<f64>, Option<f64>) {
    let list = baselines.get("baselines").and_then(|b| b.as_array()).cloned().unwrap_or_default();
    let subject = format!("{project} / {phase}");
    let mut cost = None;
    let mut duration = None;
    for b in list {
        let field = |k: &str| b.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        if field("kind") != "phase" || field("subject") != subject {
            continue;
        }
        let median = b.get("stats").and_then(|s| s.get("median")).and_then(|v| v.as_f64());
        match field("metric").as_str() {
            "cost" => cost = median,
            "duration" => duration = median,
            _ => {}
        }
    }
    (cost, duration)
}

/// A prompt as it will be sent; earlier phases' outputs are unknown before the run, so their
/// placeholders are kept.
fn planned_prompt(
    prompt: &str,
    vars: &std::collections::BTreeMap<String, String>,
    pipeline: &Pipeline,
    index: usize,
    problems: &mut Vec<String>,
) -> String {
    let mut v = vars.clone();
    for p in &pipeline.phases[..index] {
        let key = format!("phases.{}.output", p.name);
        v.insert(key.clone(), format!("{{{{{key}}}}}"));
    }
    render(prompt, &v).unwrap_or_else(|e| {
        problems.push(e.to_string());
        prompt.to_owned()
    })
}

pub(super) async fn plan(engine: &Engine, pipeline: &Pipeline, project: &str) -> Plan {
    let baselines = engine.clients.collector.baselines(Some(project)).await.ok();
    let mut phases = Vec::new();
    for (index, phase) in pipeline.phases.iter().enumerate() {
        let vars = pipeline.vars_for(index);
        let mut problems = Vec::new();
        let (action, model) = match &phase.kind {
            PhaseKind::Command { run } => match render_command(run, &vars) {
                Ok(spec) => (spec.display(), None),
                Err(e) => {
                    problems.push(e.to_string());
                    (run.display(), None)
                }
            },
            PhaseKind::Llm { model, prompt, .. } => {
                let p = planned_prompt(prompt, &vars, pipeline, index, &mut problems);
                (p, Some(model.clone()))
            }
            PhaseKind::Agent(a) => {
                let p = planned_prompt(&a.prompt, &vars, pipeline, index, &mut problems);
                let program = a.program.clone().or_else(|| a.agent.default_program().map(str::to_owned));
                let start = match program {
                    Some(p) => p,
                    None => a.run.join(" "),
                };
                let budget = a.max_cost_usd.map(|c| format!(", at most ${c}")).unwrap_or_default();
                (format!("{} agent ({start}{budget}): {p}", a.agent.name()), a.model.clone())
            }
        };
        let (cost, duration) =
            baselines.as_ref().map_or((None, None), |b| estimates(b, project, &phase.name));
        phases.push(PlannedPhase {
            index,
            name: phase.name.clone(),
            kind: phase.kind.name().to_owned(),
            action,
            model,
            inputs: phase.inputs.clone(),
            outputs: phase.outputs.clone(),
            env: vars.keys().cloned().collect(),
            timeout_secs: phase.timeout.map(|d| d.as_secs()),
            stall_timeout_secs: phase.stall_timeout.map(|d| d.as_secs()),
            max_attempts: phase.max_attempts(),
            gates: phase
                .gates
                .iter()
                .map(|g| {
                    let text = format!("{} ({}, on fail: {:?})", g.display_name(), g.check.kind(), g.on_fail)
                        .to_lowercase();
                    // a command gate as it will run: its argv rendered like the phase's
                    match crate::gates::rendered(g, &vars) {
                        Ok(r) => match &r.check {
                            GateCheck::Command { run, .. } => format!("{text}: {}", run.display()),
                            _ => text,
                        },
                        Err(e) => {
                            problems.push(format!("gate {}: {e}", g.display_name()));
                            text
                        }
                    }
                })
                .collect(),
            estimated_cost_usd: cost,
            estimated_duration_secs: duration,
            problems,
        });
    }
    Plan {
        pipeline: pipeline.name.clone(),
        project: project.to_owned(),
        fingerprint: pipeline.fingerprint(),
        // folded from +0.0: an empty f64 sum is -0.0
        estimated_cost_usd: phases.iter().filter_map(|p| p.estimated_cost_usd).fold(0.0, |a, b| a + b),
        estimated_duration_secs: phases
            .iter()
            .filter_map(|p| p.estimated_duration_secs)
            .fold(0.0, |a, b| a + b),
        phases,
        baselines_available: baselines.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_read_the_medians_of_the_matching_baseline() {
        let stats = |m: f64| serde_json::json!({"samples": 5, "median": m, "mad": 0.1, "p95": m * 2.0});
        let b = serde_json::json!({"baselines": [
            {"kind": "phase", "subject": "shop / test", "metric": "cost", "stats": stats(0.25), "last": 0.2},
            {"kind": "phase", "subject": "shop / test", "metric": "duration", "stats": stats(3.0), "last": 3.1},
            {"kind": "phase", "subject": "shop / build", "metric": "cost", "stats": stats(9.0), "last": 9.0},
            {"kind": "model", "subject": "gpt", "metric": "cost", "stats": stats(1.0), "last": 1.0}
        ]});
        assert_eq!(estimates(&b, "shop", "test"), (Some(0.25), Some(3.0)));
        assert_eq!(estimates(&b, "other", "test"), (None, None));
    }
}
