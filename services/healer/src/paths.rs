//! Success paths: which sequence of healing actions got a signature's failure to pass, per
//! project and phase, and how often (`POST /v1/paths`, ranked in `GET /v1/signatures/{sig}`).
//!
//! A step is a short word the orchestrator reports for each failed attempt before the passing
//! one: `fix:<source>` (a fix applied: `fix:healer`, `fix:llm_repair`, `fix:learned`), `hint`
//! (a retry with the healer's hints), `repair` (an LLM repair), `backoff` (a plain retry),
//! `flaky` (re-run); the path ends with the pass. The orchestrator starts with the first step of
//! the path that worked most often for the signature in its project and phase.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Steps in one path at most, and the longest step.
pub const MAX_STEPS: usize = 16;
pub const MAX_STEP_LEN: usize = 80;

/// One report: `steps` healed `signature` in `project`'s `phase`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathRecord {
    pub signature: String,
    pub steps: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    pub at_ms: i64,
}

/// A path with its track record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RankedPath {
    /// E.g. `["fix:healer", "hint"]`: what the failed attempts did, in order, before the pass.
    pub steps: Vec<String>,
    /// Times this path ended in a pass.
    pub successes: u32,
    pub projects: Vec<String>,
    pub phases: Vec<String>,
    /// RFC 3339.
    pub last_seen: String,
}

/// Whether `steps` is a path a client may report.
pub fn check_steps(steps: &[String]) -> Result<(), String> {
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(format!("steps must hold 1 to {MAX_STEPS} steps"));
    }
    for s in steps {
        let ok = !s.is_empty()
            && s.len() <= MAX_STEP_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-:.".contains(&b));
        if !ok {
            return Err(format!("step {s:?} must be 1 to {MAX_STEP_LEN} of letters, digits and _-:."));
        }
    }
    Ok(())
}

/// The paths of `records` that `admits` keeps, most successes first, then most recent.
pub fn ranked<'a>(
    records: impl Iterator<Item = &'a PathRecord>,
    admits: impl Fn(&PathRecord) -> bool,
) -> Vec<RankedPath> {
    let mut out: Vec<(RankedPath, i64)> = Vec::new();
    for r in records.filter(|r| admits(r)) {
        let i = match out.iter().position(|(p, _)| p.steps == r.steps) {
            Some(i) => i,
            None => {
                out.push((
                    RankedPath {
                        steps: r.steps.clone(),
                        successes: 0,
                        projects: Vec::new(),
                        phases: Vec::new(),
                        last_seen: String::new(),
                    },
                    i64::MIN,
                ));
                out.len() - 1
            }
        };
        let (p, last) = &mut out[i];
        p.successes += 1;
        for (list, v) in [(&mut p.projects, &r.project), (&mut p.phases, &r.phase)] {
            if let Some(v) = v
                && !list.contains(v)
            {
                list.push(v.clone());
            }
        }
        *last = (*last).max(r.at_ms);
    }
    out.sort_by(|a, b| b.0.successes.cmp(&a.0.successes).then(b.1.cmp(&a.1)));
    out.into_iter()
        .map(|(mut p, last)| {
            p.last_seen = helix_core::time::rfc3339_ms(last);
            p
        })
        .collect()
}
