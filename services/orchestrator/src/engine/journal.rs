//! The attempt journal (`attempts.ndjson` in a run's directory): which attempts of the current
//! phase started and how they ended, written as they happen.
//!
//! Checkpoints are written when a phase ends, so without this a phase whose attempts keep
//! killing the orchestrator (an OOM, a fork bomb, a `kill -9` loop) would start again at
//! attempt 1 after every crash, forever, and its record would say "passed after 1 attempt".
//! With it, a resumed phase knows the attempts an earlier session made: a started attempt
//! without an end was interrupted; it counts against `retries` like a failed one, and a phase
//! that was interrupted as often as it may be attempted ends `needs_human`.
//!
//! A `started` line is fsynced before the attempt runs (that is what makes the count survive
//! the crash); an `ended` line holds the whole attempt record and is not (a crash that loses it
//! turns the attempt into an interrupted one, which is the truth as far as anyone can tell).
//! A person resuming a run that stopped on purpose (`needs_human`, `escalated`, `cancelled`)
//! asks for new attempts: a `reset` line starts the count again.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Attempt, HealRecord, PhaseStatus};

pub const JOURNAL_FILE: &str = "attempts.ndjson";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Started {
        phase: usize,
        n: u32,
        at: String,
        /// The fixes applied before it (so a resumed phase goes on with them).
        #[serde(default)]
        patches: Vec<String>,
        #[serde(default)]
        hints: Option<String>,
    },
    Ended {
        phase: usize,
        attempt: Box<Attempt>,
    },
    Reset {
        phase: usize,
    },
}

/// Appends `entry`; fsynced when `sync`.
pub fn append(run_dir: &Path, entry: &Entry, sync: bool) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let path = run_dir.join(JOURNAL_FILE);
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    // a torn line a crash left is skipped by `read`, and this one starts on a line of its own
    if f.metadata()?.len() > 0 && !ends_with_newline(&path) {
        f.write_all(b"\n")?;
    }
    f.write_all(&line)?;
    if sync {
        f.sync_data()?;
    }
    Ok(())
}

fn ends_with_newline(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = std::fs::File::open(path) else { return true };
    let Ok(len) = f.metadata().map(|m| m.len()) else { return true };
    let mut b = [0u8; 1];
    len == 0 || (f.read_exact_at(&mut b, len - 1).is_ok() && b[0] == b'\n')
}

/// What earlier sessions did in phase `phase` since its last reset.
#[derive(Debug, Default)]
pub struct Prior {
    /// The attempts, in order; interrupted ones have status `interrupted`.
    pub attempts: Vec<Attempt>,
    /// Fixes to apply to the next attempt.
    pub patches: Vec<String>,
    pub hints: Option<String>,
    /// How many of `attempts` were interrupted.
    pub interrupted: u32,
}

/// Reads the journal for phase `phase` (lines that do not parse, a torn last one, are skipped).
pub fn prior(run_dir: &Path, phase: usize) -> Prior {
    let mut out = Prior::default();
    let Ok(f) = std::fs::File::open(run_dir.join(JOURNAL_FILE)) else { return out };
    let mut started: Vec<(u32, String, Vec<String>, Option<String>)> = Vec::new();
    let mut ended: Vec<Attempt> = Vec::new();
    for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
        let Ok(entry) = serde_json::from_slice::<Entry>(&line) else { continue };
        match entry {
            Entry::Reset { phase: p } if p == phase => {
                started.clear();
                ended.clear();
            }
            Entry::Started { phase: p, n, at, patches, hints } if p == phase => {
                started.push((n, at, patches, hints))
            }
            Entry::Ended { phase: p, attempt } if p == phase => ended.push(*attempt),
            _ => {}
        }
    }
    for (n, at, patches, hints) in started {
        let attempt = match ended.iter().position(|a| a.n == n) {
            // an attempt that passed but whose checkpoint was never written did not pass
            Some(i) if !matches!(ended[i].status, PhaseStatus::Passed | PhaseStatus::PassedWithWarnings) => {
                ended.remove(i)
            }
            _ => {
                out.interrupted += 1;
                interrupted(n, at, patches.clone())
            }
        };
        out.patches = patches;
        if let Some(fix) = attempt.heal.as_ref().and_then(|h| h.fix.as_ref()) {
            out.patches.push(fix.patch.clone());
        }
        out.hints = attempt.heal.as_ref().and_then(|h| h.hints.clone()).or(hints);
        out.attempts.push(attempt);
    }
    out
}

/// The record of an attempt that never ended.
fn interrupted(n: u32, started_at: String, patches: Vec<String>) -> Attempt {
    Attempt {
        n,
        started_at,
        duration_ms: 0,
        env: Default::default(),
        command: None,
        prompt: None,
        outcome: None,
        llm: None,
        agent: None,
        degraded: None,
        gates: Vec::new(),
        status: PhaseStatus::Interrupted,
        patches,
        heal: Some(HealRecord {
            failure_class: "interrupted".to_owned(),
            message: Some(
                "the orchestrator stopped while this attempt ran (crash, kill -9, power loss)".to_owned(),
            ),
            action: "retry".to_owned(),
            ..HealRecord::default()
        }),
        error: Some("interrupted: the attempt never ended".to_owned()),
        inputs: Vec::new(),
        outputs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(n: u32, status: PhaseStatus) -> Entry {
        let mut a = interrupted(n, "t".into(), vec![]);
        a.status = status;
        a.heal = None;
        Entry::Ended { phase: 1, attempt: Box::new(a) }
    }

    fn started(phase: usize, n: u32, patches: &[&str]) -> Entry {
        Entry::Started {
            phase,
            n,
            at: "t".into(),
            patches: patches.iter().map(|p| (*p).to_owned()).collect(),
            hints: None,
        }
    }

    #[test]
    fn unended_attempts_count_as_interrupted_and_resets_start_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert!(prior(d, 1).attempts.is_empty());
        for e in [
            started(0, 1, &[]),
            started(1, 1, &[]),
            ended(1, PhaseStatus::Failed),
            started(1, 2, &["p1"]),
            started(1, 3, &["p1"]),
            ended(1, PhaseStatus::Passed),
        ] {
            append(d, &e, true).expect("append");
        }
        // a torn line, as a crash mid-write leaves it
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join(JOURNAL_FILE))
            .and_then(|mut f| f.write_all(b"{\"kind\":\"sta"))
            .expect("tear");
        let p = prior(d, 1);
        let statuses: Vec<PhaseStatus> = p.attempts.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [PhaseStatus::Failed, PhaseStatus::Interrupted, PhaseStatus::Interrupted]);
        assert_eq!((p.interrupted, p.patches.as_slice()), (2, ["p1".to_owned()].as_slice()));
        assert_eq!(prior(d, 0).interrupted, 1);
        append(d, &Entry::Reset { phase: 1 }, true).expect("append");
        append(d, &started(1, 1, &[]), true).expect("append after a torn line");
        let p = prior(d, 1);
        assert_eq!((p.attempts.len(), p.interrupted), (1, 1));
    }
}
