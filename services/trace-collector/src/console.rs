//! What the console (`/dashboard`) shows beside traces and costs: the gateway's circuits, the
//! orchestrator's recent runs with their attempts and heals, and the failure signatures healed
//! most often.
//!
//! Why here and from spans: every service already reports these as spans (`circuit` spans from
//! the gateway, `run`, `retry` and `heal` spans from the orchestrator, the healer's signature on
//! each `heal` span), so the collector can answer from what it stores, without the browser talking
//! to three other services (which would need their tokens and cross-origin access). Views are kept
//! as running aggregates updated at ingest, bounded in size, and rebuilt from the log after a
//! restart the way the baselines are (saved beside them, replayed from where the save ends).

use std::collections::{BTreeMap, HashMap, VecDeque};

use helix_core::trace::{Event, SpanKind, SpanStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Runs kept for the console.
const KEEP_RUNS: usize = 200;
/// Signatures kept; beyond, the least often healed are forgotten.
const KEEP_SIGNATURES: usize = 5_000;
/// Circuits kept (a gateway has a few deployments; this only bounds garbage).
const KEEP_CIRCUITS: usize = 1_024;

/// The last known state of one circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CircuitView {
    pub deployment: String,
    /// `closed`, `open`, `half_open`, `forced_open`, `disabled`.
    pub state: String,
    pub from: Option<String>,
    pub reason: Option<String>,
    pub at_unix_nanos: u64,
    /// Transitions seen.
    pub transitions: u64,
}

/// One run of the orchestrator, as its spans tell it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub trace_id: String,
    pub name: String,
    pub project: Option<String>,
    pub run: Option<String>,
    pub status: SpanStatus,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// Phases seen, in order.
    pub phases: Vec<String>,
    /// Retried attempts (`retry` spans).
    pub retries: u64,
    /// Healing actions (`heal` spans).
    pub heals: u64,
    /// Failed spans.
    pub errors: u64,
}

/// A failure signature and how often it was healed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignatureView {
    pub signature: String,
    pub heals: u64,
    /// Failure class of the last heal (`missing_dependency`, `flaky_test`, …).
    pub class: Option<String>,
    /// The healing action last taken.
    pub action: Option<String>,
    /// The fix last applied, when one was.
    pub fix: Option<String>,
    pub projects: Vec<String>,
    pub last_unix_nanos: u64,
}

/// The console's aggregates; see the module docs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Console {
    circuits: BTreeMap<String, CircuitView>,
    runs: VecDeque<RunView>,
    signatures: HashMap<String, SignatureView>,
    /// The trace ids in `runs`: most spans belong to no recent run, and this answers so without
    /// a scan of the runs (this runs for every ingested span). Derived: rebuilt when it does not
    /// match `runs` (after a snapshot was loaded).
    #[serde(skip)]
    run_ids: std::collections::HashSet<String>,
}

/// `GET /v1/console`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleView {
    pub circuits: Vec<CircuitView>,
    /// Newest first.
    pub runs: Vec<RunView>,
    /// Most often healed first.
    pub signatures: Vec<SignatureView>,
}

fn text(e: &Event, key: &str) -> Option<String> {
    e.text(key).map(|s| s.chars().take(512).collect())
}

impl Console {
    /// Takes what the console shows from a stored span.
    pub fn observe(&mut self, e: &Event) {
        match e.kind {
            SpanKind::Circuit => self.circuit(e),
            SpanKind::Heal => self.heal(e),
            _ => {}
        }
        // the orchestrator names its run on every span it emits
        let is_run = e.run.is_some();
        if self.run_ids.len() != self.runs.len() {
            self.run_ids = self.runs.iter().map(|r| r.trace_id.clone()).collect();
        }
        let known = if self.run_ids.contains(&e.trace_id) {
            self.runs.iter().position(|r| r.trace_id == e.trace_id)
        } else {
            None
        };
        let i = match known {
            Some(i) => i,
            None if is_run => {
                if self.runs.len() == KEEP_RUNS
                    && let Some(old) = self.runs.pop_back()
                {
                    self.run_ids.remove(&old.trace_id);
                }
                self.run_ids.insert(e.trace_id.clone());
                self.runs.push_front(RunView {
                    trace_id: e.trace_id.clone(),
                    name: e.name.clone(),
                    project: e.project.clone(),
                    run: e.run.clone(),
                    status: SpanStatus::Unset,
                    start_unix_nanos: e.start_unix_nanos,
                    end_unix_nanos: e.end_unix_nanos,
                    phases: Vec::new(),
                    retries: 0,
                    heals: 0,
                    errors: 0,
                });
                0
            }
            None => return,
        };
        let r = &mut self.runs[i];
        r.start_unix_nanos = r.start_unix_nanos.min(e.start_unix_nanos);
        r.end_unix_nanos = r.end_unix_nanos.max(e.end_unix_nanos);
        if e.kind == SpanKind::Run && e.parent_span_id.is_none() {
            r.name = e.name.clone();
            if e.status != SpanStatus::Unset {
                r.status = e.status;
            }
        }
        if r.run.is_none() {
            r.run = e.run.clone();
        }
        if r.project.is_none() {
            r.project = e.project.clone();
        }
        if let Some(p) = &e.phase
            && !r.phases.contains(p)
            && r.phases.len() < 64
        {
            r.phases.push(p.clone());
        }
        match e.kind {
            SpanKind::Retry => r.retries += 1,
            SpanKind::Heal => r.heals += 1,
            _ => {}
        }
        if e.status == SpanStatus::Error {
            r.errors += 1;
            if r.status == SpanStatus::Unset {
                r.status = SpanStatus::Error;
            }
        }
    }

    fn circuit(&mut self, e: &Event) {
        let Some(deployment) = text(e, "helix.gateway.deployment") else { return };
        let Some(state) = text(e, "helix.circuit.to") else { return };
        if !self.circuits.contains_key(&deployment) && self.circuits.len() >= KEEP_CIRCUITS {
            return;
        }
        let c = self.circuits.entry(deployment.clone()).or_insert_with(|| CircuitView {
            deployment,
            state: state.clone(),
            from: None,
            reason: None,
            at_unix_nanos: 0,
            transitions: 0,
        });
        c.transitions += 1;
        // transitions may arrive out of order: the newest wins
        if e.end_unix_nanos >= c.at_unix_nanos {
            c.state = state;
            c.from = text(e, "helix.circuit.from");
            c.reason = text(e, "helix.circuit.reason");
            c.at_unix_nanos = e.end_unix_nanos;
        }
    }

    fn heal(&mut self, e: &Event) {
        let Some(signature) = text(e, "helix.heal.signature") else { return };
        if !self.signatures.contains_key(&signature) && self.signatures.len() >= KEEP_SIGNATURES {
            // forget the least healed (ties: the oldest) to make room
            if let Some(k) = self
                .signatures
                .values()
                .min_by_key(|s| (s.heals, s.last_unix_nanos))
                .map(|s| s.signature.clone())
            {
                self.signatures.remove(&k);
            }
        }
        let s = self.signatures.entry(signature.clone()).or_insert_with(|| SignatureView {
            signature,
            heals: 0,
            class: None,
            action: None,
            fix: None,
            projects: Vec::new(),
            last_unix_nanos: 0,
        });
        s.heals += 1;
        if e.end_unix_nanos >= s.last_unix_nanos {
            s.last_unix_nanos = e.end_unix_nanos;
            s.class = text(e, "helix.heal.class").or(s.class.take());
            s.action = text(e, "helix.heal.action").or(s.action.take());
            s.fix = text(e, "helix.heal.fix").or(s.fix.take());
        }
        if let Some(p) = &e.project
            && !s.projects.contains(p)
            && s.projects.len() < 32
        {
            s.projects.push(p.clone());
        }
    }

    /// The views a caller may see: `project` limits runs and signatures to one project; circuits
    /// (the gateway's, of no project) only for callers not limited to projects.
    pub fn view(&self, project: Option<&str>, limited: bool, limit: usize) -> ConsoleView {
        let mine = |p: &Option<String>| project.is_none_or(|want| p.as_deref() == Some(want));
        let mut signatures: Vec<SignatureView> = self
            .signatures
            .values()
            .filter(|s| project.is_none_or(|want| s.projects.iter().any(|p| p == want)))
            .cloned()
            .collect();
        signatures.sort_by_key(|s| std::cmp::Reverse((s.heals, s.last_unix_nanos)));
        signatures.truncate(limit);
        ConsoleView {
            circuits: if limited { Vec::new() } else { self.circuits.values().cloned().collect() },
            runs: self.runs.iter().filter(|r| mine(&r.project)).take(limit).cloned().collect(),
            signatures,
        }
    }
}

/// Items kept for `GET /v1/feed`.
const KEEP_FEED: usize = 1_000;

/// One line of the console's live feed: a stored span or an anomaly, in a few fields.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FeedEntry {
    /// Increases by one per entry: pass the last one seen as `after`.
    pub seq: u64,
    /// `span` or `anomaly`.
    pub kind: String,
    pub trace_id: String,
    pub span_id: String,
    /// The span's name, or the anomaly's reason.
    pub text: String,
    /// The span's kind (`run`, `llm_call` …); for an anomaly its metric.
    pub span_kind: String,
    pub status: SpanStatus,
    pub project: Option<String>,
    pub end_unix_nanos: u64,
}

/// The newest feed entries, for pages that poll (`GET /v1/feed`) instead of holding a stream
/// open: a browser (or a headless one taking a snapshot) then never has a request pending for
/// long, and pages load and settle.
#[derive(Debug, Default)]
pub struct Recent {
    seq: u64,
    items: VecDeque<FeedEntry>,
}

/// `GET /v1/feed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    /// Oldest first.
    pub items: Vec<FeedEntry>,
    /// The newest `seq` there is: the next `after`.
    pub last: u64,
    /// Entries after `after` that were no longer kept (the page was away too long).
    pub missed: bool,
}

impl Recent {
    fn push(&mut self, mut entry: FeedEntry) {
        self.seq += 1;
        entry.seq = self.seq;
        if self.items.len() == KEEP_FEED {
            self.items.pop_front();
        }
        self.items.push_back(entry);
    }

    pub fn span(&mut self, e: &Event) {
        self.push(FeedEntry {
            seq: 0,
            kind: "span".to_owned(),
            trace_id: e.trace_id.clone(),
            span_id: e.span_id.clone(),
            text: e.name.chars().take(200).collect(),
            span_kind: serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            status: e.status,
            project: e.project.clone(),
            end_unix_nanos: e.end_unix_nanos,
        });
    }

    pub fn anomaly(&mut self, a: &crate::anomaly::Anomaly) {
        self.push(FeedEntry {
            seq: 0,
            kind: "anomaly".to_owned(),
            trace_id: a.trace_id.clone(),
            span_id: a.span_id.clone(),
            text: a.reason.clone(),
            span_kind: serde_json::to_value(a.metric)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            status: SpanStatus::Unset,
            project: a.project.clone(),
            end_unix_nanos: a.end_unix_nanos,
        });
    }

    /// Entries after `after` (of `project`, when given), oldest first, at most `limit` (the
    /// newest ones when there are more).
    pub fn after(&self, after: u64, project: Option<&str>, limit: usize) -> FeedPage {
        let oldest = self.items.front().map_or(self.seq + 1, |i| i.seq);
        let mut items: Vec<FeedEntry> = self
            .items
            .iter()
            .rev()
            .take_while(|i| i.seq > after)
            .filter(|i| project.is_none_or(|p| i.project.as_deref() == Some(p)))
            .take(limit)
            .cloned()
            .collect();
        items.reverse();
        FeedPage { items, last: self.seq, missed: after > 0 && after + 1 < oldest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_core::span::SpanBuilder;

    fn span(trace: &str, id: &str, kind: SpanKind, at: u64) -> SpanBuilder {
        SpanBuilder::new(trace, id, "s", kind).times(at, at + 10)
    }

    #[test]
    fn circuits_runs_and_signatures_come_from_spans() {
        let mut c = Console::default();
        let t = "a".repeat(32);
        c.observe(&span(&t, &"1".repeat(16), SpanKind::Run, 100).project("webshop").run("r1").build());
        c.observe(
            &span(&t, &"2".repeat(16), SpanKind::Retry, 200)
                .parent(Some(&"1".repeat(16)))
                .project("webshop")
                .status(SpanStatus::Error, Some("exit 1"))
                .build(),
        );
        c.observe(
            &span(&t, &"3".repeat(16), SpanKind::Heal, 300)
                .parent(Some(&"1".repeat(16)))
                .project("webshop")
                .attr("helix.heal.signature", "sig-1")
                .attr("helix.heal.class", "missing_dependency")
                .attr("helix.heal.fix", "pip install pyyaml")
                .build(),
        );
        for (at, to) in [(50, "open"), (40, "half_open")] {
            c.observe(
                &span(&"b".repeat(32), &format!("{at:016x}"), SpanKind::Circuit, at)
                    .attr("helix.gateway.deployment", "openai-main")
                    .attr("helix.circuit.from", "closed")
                    .attr("helix.circuit.to", to)
                    .build(),
            );
        }
        let v = c.view(None, false, 10);
        assert_eq!(v.runs.len(), 1);
        let r = &v.runs[0];
        assert_eq!((r.retries, r.heals, r.errors, r.status), (1, 1, 1, SpanStatus::Error));
        assert_eq!(v.signatures[0].fix.as_deref(), Some("pip install pyyaml"));
        assert_eq!(v.circuits[0].state, "open", "the newest transition wins");
        assert_eq!(v.circuits[0].transitions, 2);
        assert!(c.view(Some("other"), true, 10).runs.is_empty());
        assert!(c.view(Some("webshop"), true, 10).circuits.is_empty(), "limited callers see no circuits");
    }

    #[test]
    fn the_feed_hands_out_what_came_after_a_sequence_number() {
        let mut r = Recent::default();
        for i in 0..(KEEP_FEED as u64 + 10) {
            let project = if i % 2 == 0 { "a" } else { "b" };
            r.span(
                &span(&"c".repeat(32), &format!("{i:016x}"), SpanKind::ToolCall, i).project(project).build(),
            );
        }
        let all = r.after(0, None, 5);
        assert_eq!(all.last, KEEP_FEED as u64 + 10);
        assert_eq!(all.items.len(), 5, "the newest five");
        assert_eq!(all.items[4].seq, all.last);
        assert!(all.items.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
        assert!(r.after(all.last, None, 5).items.is_empty());
        let page = r.after(all.last - 4, Some("a"), 100);
        assert!(page.items.iter().all(|i| i.project.as_deref() == Some("a")) && page.items.len() == 2);
        assert!(r.after(3, None, 10).missed, "entries 4.. were dropped");
    }
}
