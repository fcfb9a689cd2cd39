//! Re-running a failed test gate's tests alone (see [`crate::flaky`]): which of them pass when
//! run again by themselves.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::exec::{self, Cancel, CommandSpec, Jail, Limits};

/// What the re-runs of a gate's failed tests found.
#[derive(Debug, Default)]
pub(super) struct Reruns {
    /// Tests that passed on a re-run.
    pub flaky: Vec<String>,
    /// Commands run.
    pub runs: u32,
}

/// Re-runs each of `tests` alone (the whole gate when its runner is not known) up to `reruns`
/// times, until it passes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn rerun(
    run: &CommandSpec,
    tests: &[String],
    reruns: u32,
    workspace: &Path,
    env: &BTreeMap<String, String>,
    cancel: &Cancel,
    jail: &Jail,
    timeout: Duration,
) -> Reruns {
    let limits = Limits { timeout: Some(timeout), ..Limits::default() };
    let mut out = Reruns::default();
    let passes = |spec: CommandSpec| async move {
        exec::run_jailed(&spec, workspace, env, &limits, cancel, None, jail).await.is_ok_and(|o| o.success())
    };
    if tests.iter().all(|t| crate::flaky::isolated(run, t).is_none()) {
        // one command for all: it passing again makes every failure of the first run flaky
        for _ in 0..reruns {
            out.runs += 1;
            if cancel.is_cancelled() {
                break;
            }
            if passes(run.clone()).await {
                out.flaky = tests.to_vec();
                break;
            }
        }
        return out;
    }
    for t in tests {
        let Some(spec) = crate::flaky::isolated(run, t) else { continue };
        for _ in 0..reruns {
            if cancel.is_cancelled() {
                return out;
            }
            out.runs += 1;
            if passes(spec.clone()).await {
                out.flaky.push(t.clone());
                break;
            }
        }
    }
    out
}
