//! Taking over runs whose owner died: what makes an interrupted run resume itself.
//!
//! Orchestrator replicas that share one data directory (a volume on one host, or a network
//! file system with working `flock`, which NFSv4 gives through its own leases) own runs through
//! the run's file lock ([`RunLock`]). The kernel (or the NFS server, when its lease expires)
//! releases that lock when the owner dies however it dies, so a run whose latest checkpoint says
//! `running` while nobody holds its lock has lost its owner. Every [`TAKEOVER_EVERY`]-ish tick
//! (`orchestrator.takeover_secs`) each replica looks for such runs and resumes them from their
//! latest checkpoint, exactly as `helix resume` would, with no token typed: the phase that was
//! cut short starts again from its input checkpoint, completed phases are not run again.
//!
//! Invariants:
//! - Only a run nobody holds is taken: the take is `resume_at`, which acquires the lock itself,
//!   so of two replicas racing for one run exactly one gets it (the other sees it busy).
//! - An owner that is alive but stalled (SIGSTOP) keeps its lock: its runs are not taken, so two
//!   owners never write one run. Such a run waits for its owner; a lease with fencing tokens in
//!   a database would take it over instead (not built).
//! - Runs stopped on purpose (`needs_human`, `escalated`, `cancelled`) and finished ones are
//!   never taken: their latest checkpoint does not say `running`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Checkpoint, Engine, RunStatus};
use crate::checkpoint::{self, RunLock};

/// What a tick remembers of runs it found settled: their latest checkpoint number, so a run
/// costs one directory listing per tick until it changes.
#[derive(Debug, Default)]
pub(crate) struct Settled(Mutex<HashMap<String, u32>>);

impl Engine {
    /// Resumes every run whose owner died; returns the ids taken over.
    pub async fn take_over_orphans(self: &Arc<Engine>) -> Vec<String> {
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return Vec::new();
        }
        let engine = self.clone();
        let orphans = tokio::task::spawn_blocking(move || engine.find_orphans()).await.unwrap_or_default();
        let mut taken = Vec::new();
        for id in orphans {
            if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            match self.resume_at(&id, None, None).await {
                Ok(_) => {
                    tracing::warn!(run = %id, "took over a run whose owner died; resumed from its latest checkpoint");
                    self.audit("run.takeover", "orchestrator", &id, "");
                    taken.push(id);
                }
                // another replica was quicker, or the limits are full: the next tick tries again
                Err(e) => tracing::debug!(run = %id, error = %e, "run not taken over"),
            }
        }
        taken
    }

    /// Runs nobody here executes whose lock is free and whose latest checkpoint says running.
    fn find_orphans(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut settled = self.settled.0.lock().unwrap_or_else(PoisonError::into_inner);
        for id in checkpoint::run::list_runs(&self.root).unwrap_or_default() {
            if self.active_run(&id).is_some() {
                continue;
            }
            let Ok(dir) = checkpoint::run::run_dir(&self.root, &id) else { continue };
            let Some(&latest) =
                checkpoint::list_checkpoints(&dir).ok().and_then(|c| c.last().copied()).as_ref()
            else {
                continue;
            };
            if settled.get(&id) == Some(&latest) {
                continue;
            }
            // held: its owner lives (here, or in another replica)
            let Ok(lock) = RunLock::acquire(&dir) else { continue };
            let status = checkpoint::read_checkpoint::<Checkpoint>(&dir, latest).map(|cp| cp.status);
            drop(lock);
            match status {
                Ok(RunStatus::Running) => out.push(id),
                Ok(_) => {
                    settled.insert(id, latest);
                }
                Err(e) => tracing::warn!(run = %id, error = %e, "cannot read the latest checkpoint"),
            }
        }
        out
    }
}

/// Runs [`Engine::take_over_orphans`] every `every` until the engine is dropped or stops.
pub fn spawn(engine: std::sync::Weak<Engine>, every: std::time::Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(engine) = engine.upgrade() else { return };
            if engine.stopping.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            engine.take_over_orphans().await;
        }
    });
}
