//! Baselines and anomaly flags.
//!
//! Every finished phase is compared with the recent history of the same (project, phase), and
//! every LLM call with the recent history of the same model: duration, cost and tokens. The
//! statistics are robust (median and MAD, not mean and standard deviation) because agent runs
//! have heavy tails: one stuck run must not move the baseline enough to hide the next. A value is
//! anomalous when its modified z-score `0.6745 * (x - median) / MAD` exceeds [`Z_THRESHOLD`]
//! (Iglewicz and Hoaglin) with at least [`MIN_SAMPLES`] earlier values. Only the slow, costly
//! side counts by default: a phase that took half its usual time is news to no one, and flagging
//! it filled the list with noise (`trace_collector.flag_fast_and_cheap` turns both sides on).
//! Durations that were estimated, not measured (`helix.time.estimated`, set by transcript
//! imports without timestamps), are neither judged nor learned: they would teach the baseline
//! made-up numbers and flag the next real run. The anomaly is written
//! onto the span itself (attribute `helix.anomaly`) before the span is stored, so it is durable
//! and travels with the span to every reader and exporter.

use std::collections::{HashMap, VecDeque};

use helix_core::trace::{Event, SpanKind, attr};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Attribute holding the anomaly's readable reason on a flagged span.
pub const ANOMALY_ATTR: &str = "helix.anomaly";
/// Values kept per baseline.
const WINDOW: usize = 200;
/// A baseline needs this many earlier values before it judges.
pub const MIN_SAMPLES: usize = 5;
/// Modified z-score above which a value is anomalous.
pub const Z_THRESHOLD: f64 = 3.5;
/// MAD floor as a share of the median: a perfectly steady baseline (MAD 0) still tolerates 5%.
const MAD_FLOOR: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Duration,
    Cost,
    Tokens,
}

/// Robust statistics of a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    pub samples: usize,
    pub median: f64,
    pub mad: f64,
    pub p95: f64,
}

#[derive(Debug, Default)]
struct Series {
    values: VecDeque<f64>,
}

impl Series {
    fn stats(&self) -> Option<Stats> {
        if self.values.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.values.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let median = quantile(&v, 0.5);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
        dev.sort_by(f64::total_cmp);
        Some(Stats { samples: v.len(), median, mad: quantile(&dev, 0.5), p95: quantile(&v, 0.95) })
    }

    fn push(&mut self, x: f64) {
        if self.values.len() == WINDOW {
            self.values.pop_front();
        }
        self.values.push_back(x);
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// An anomalous value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Anomaly {
    pub trace_id: String,
    pub span_id: String,
    pub span_name: String,
    pub project: Option<String>,
    pub phase: Option<String>,
    pub model: Option<String>,
    pub metric: Metric,
    pub value: f64,
    pub baseline: Stats,
    /// Modified z-score.
    pub score: f64,
    /// e.g. "phase 'development' took 3.1x longer than its median of 4m30s".
    pub reason: String,
    pub end_unix_nanos: u64,
}

/// What a span is compared with.
fn subject(e: &Event) -> Option<(String, String)> {
    match e.kind {
        SpanKind::Phase => {
            let phase = e.phase.clone().unwrap_or_else(|| e.name.trim_start_matches("phase ").to_owned());
            Some((
                format!("phase\u{1f}{}\u{1f}{phase}", e.project.as_deref().unwrap_or("")),
                format!("phase '{phase}'"),
            ))
        }
        SpanKind::LlmCall => {
            let model = e.text(attr::GEN_AI_REQUEST_MODEL).or_else(|| e.text(attr::GEN_AI_RESPONSE_MODEL))?;
            Some((format!("model\u{1f}{model}"), format!("call to {model}")))
        }
        _ => None,
    }
}

fn values(e: &Event) -> [(Metric, Option<f64>); 3] {
    let tokens = match (e.number(attr::GEN_AI_USAGE_INPUT_TOKENS), e.number(attr::GEN_AI_USAGE_OUTPUT_TOKENS))
    {
        (None, None) => None,
        (i, o) => Some(i.unwrap_or(0.0) + o.unwrap_or(0.0)),
    };
    [
        (Metric::Duration, Some(e.duration_nanos() as f64 / 1e9)),
        (Metric::Cost, e.number(attr::HELIX_COST_USD)),
        (Metric::Tokens, tokens),
    ]
}

/// Readable duration: `850ms`, `12.4s`, `4m30s`, `2h05m`.
pub fn human_duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0}ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (secs / 3600.0) as u64, (secs % 3600.0 / 60.0) as u64)
    }
}

fn describe(what: &str, metric: Metric, value: f64, median: f64) -> String {
    let ratio = if median > 0.0 { value / median } else { f64::INFINITY };
    let (higher, lower) = match metric {
        Metric::Duration => ("longer", "shorter"),
        Metric::Cost => ("more", "less"),
        Metric::Tokens => ("more tokens", "fewer tokens"),
    };
    let med = match metric {
        Metric::Duration => human_duration(median),
        Metric::Cost => format!("${median:.4}"),
        Metric::Tokens => format!("{median:.0} tokens"),
    };
    let verb = match metric {
        Metric::Duration => "took",
        Metric::Cost => "cost",
        Metric::Tokens => "used",
    };
    if value >= median {
        format!("{what} {verb} {ratio:.1}x {higher} than its median of {med}")
    } else {
        format!(
            "{what} {verb} {:.1}x {lower} than its median of {med}",
            if value > 0.0 { median / value } else { f64::INFINITY }
        )
    }
}

/// [`Baselines`] as saved on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BaselineSnapshot {
    series: Vec<(String, Metric, Vec<f64>)>,
    anomalies: Vec<Anomaly>,
}

/// Baselines of every subject, and the anomalies found.
#[derive(Debug, Default)]
pub struct Baselines {
    series: HashMap<(String, Metric), Series>,
    anomalies: VecDeque<Anomaly>,
    /// Also flag values far below their baseline (faster, cheaper, fewer tokens).
    pub flag_low: bool,
}

/// Attribute marking a span whose times were estimated, not measured.
pub const TIME_ESTIMATED_ATTR: &str = "helix.time.estimated";

/// One baseline, as `GET /v1/baselines` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BaselineView {
    /// `phase` or `model`.
    pub kind: String,
    /// `project / phase` for phases, the model name for models.
    pub subject: String,
    pub metric: Metric,
    pub stats: Stats,
    /// The most recent value.
    pub last: f64,
}

/// Anomalies kept for `GET /v1/anomalies` (older ones stay on their spans).
const KEEP_ANOMALIES: usize = 10_000;

impl Baselines {
    /// Scores `e` against its baseline, marks it when anomalous (attribute [`ANOMALY_ATTR`]),
    /// then adds its values to the baseline.
    pub fn score_and_learn(&mut self, e: &mut Event) -> Vec<Anomaly> {
        let Some((key, what)) = subject(e) else { return Vec::new() };
        let mut found = Vec::new();
        let estimated = matches!(e.attributes.get(TIME_ESTIMATED_ATTR), Some(serde_json::Value::Bool(true)));
        for (metric, value) in values(e) {
            if estimated && metric == Metric::Duration {
                continue;
            }
            let Some(x) = value.filter(|v| v.is_finite() && *v >= 0.0) else { continue };
            let series = self.series.entry((key.clone(), metric)).or_default();
            if let Some(s) = series.stats().filter(|s| s.samples >= MIN_SAMPLES) {
                let mad = s.mad.max(MAD_FLOOR * s.median.abs()).max(f64::EPSILON);
                let z = 0.6745 * (x - s.median) / mad;
                if z > Z_THRESHOLD || (self.flag_low && z < -Z_THRESHOLD) {
                    found.push(Anomaly {
                        trace_id: e.trace_id.clone(),
                        span_id: e.span_id.clone(),
                        span_name: e.name.clone(),
                        project: e.project.clone(),
                        phase: e.phase.clone(),
                        model: e.text(attr::GEN_AI_REQUEST_MODEL).map(str::to_owned),
                        metric,
                        value: x,
                        baseline: s,
                        score: (z * 100.0).round() / 100.0,
                        reason: describe(&what, metric, x, s.median),
                        end_unix_nanos: e.end_unix_nanos,
                    });
                }
            }
            series.push(x);
        }
        if !found.is_empty() {
            let reasons: Vec<&str> = found.iter().map(|a| a.reason.as_str()).collect();
            e.attributes.insert(ANOMALY_ATTR.to_owned(), serde_json::Value::String(reasons.join("; ")));
            for a in &found {
                self.remember(a.clone());
            }
        }
        found
    }

    /// Replays a stored span at start-up: the same judgement as at ingest, in the same order,
    /// rebuilds the same baselines and the list of recent anomalies (the stored span already
    /// carries its mark and is not changed).
    pub fn replay(&mut self, e: &Event) {
        if subject(e).is_some() {
            let mut copy = e.clone();
            copy.attributes.remove(ANOMALY_ATTR);
            self.score_and_learn(&mut copy);
        }
    }

    /// The baselines as a snapshot (saved so a restart does not replay the whole log).
    pub fn snapshot(&self) -> BaselineSnapshot {
        BaselineSnapshot {
            series: self
                .series
                .iter()
                .map(|((k, m), s)| (k.clone(), *m, s.values.iter().copied().collect()))
                .collect(),
            anomalies: self.anomalies.iter().cloned().collect(),
        }
    }

    pub fn from_snapshot(s: BaselineSnapshot) -> Baselines {
        Baselines {
            series: s
                .series
                .into_iter()
                .map(|(k, m, v)| {
                    let keep = v.len().saturating_sub(WINDOW);
                    ((k, m), Series { values: v.into_iter().skip(keep).collect() })
                })
                .collect(),
            anomalies: s.anomalies.into_iter().collect(),
            flag_low: false,
        }
    }

    fn remember(&mut self, a: Anomaly) {
        if self.anomalies.len() == KEEP_ANOMALIES {
            self.anomalies.pop_front();
        }
        self.anomalies.push_back(a);
    }

    /// Every baseline with enough history to judge, sorted by kind and subject.
    pub fn list(&self) -> Vec<BaselineView> {
        let mut out: Vec<BaselineView> = self
            .series
            .iter()
            .filter_map(|((key, metric), series)| {
                let stats = series.stats()?;
                let mut parts = key.split('\u{1f}');
                let kind = parts.next()?.to_owned();
                let rest: Vec<&str> = parts.collect();
                let subject = if kind == "phase" { rest.join(" / ") } else { rest.join("") };
                Some(BaselineView {
                    kind,
                    subject,
                    metric: *metric,
                    stats,
                    last: series.values.back().copied()?,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.kind, &a.subject).cmp(&(&b.kind, &b.subject)).then((a.metric as u8).cmp(&(b.metric as u8)))
        });
        out
    }

    /// Recent anomalies, newest first.
    pub fn recent(&self, project: Option<&str>, limit: usize) -> Vec<Anomaly> {
        self.anomalies
            .iter()
            .rev()
            .filter(|a| project.is_none_or(|p| a.project.as_deref() == Some(p)))
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(i: u32, secs: f64) -> Event {
        serde_json::from_value(serde_json::json!({
            "trace_id": format!("{:032x}", i + 1), "span_id": format!("{:016x}", i + 1),
            "name": "phase development", "kind": "phase", "project": "webshop", "phase": "development",
            "start_unix_nanos": 1_764_000_000_000_000_000u64,
            "end_unix_nanos": 1_764_000_000_000_000_000u64 + (secs * 1e9) as u64
        }))
        .expect("event")
    }

    #[test]
    fn a_phase_three_times_its_median_is_flagged_with_a_readable_reason() {
        let mut b = Baselines::default();
        for (i, secs) in [270.0, 265.0, 280.0, 275.0, 268.0, 272.0].into_iter().enumerate() {
            assert!(b.score_and_learn(&mut phase(i as u32, secs)).is_empty(), "normal runs are not flagged");
        }
        let mut slow = phase(99, 840.0);
        let found = b.score_and_learn(&mut slow);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].metric, Metric::Duration);
        assert_eq!(found[0].reason, "phase 'development' took 3.1x longer than its median of 4m31s");
        assert!(slow.text(ANOMALY_ATTR).is_some_and(|r| r.contains("3.1x")));
        assert_eq!(b.recent(Some("webshop"), 10).len(), 1);
        assert!(b.recent(Some("other"), 10).is_empty());
    }

    #[test]
    fn too_little_history_judges_nothing_and_outliers_do_not_poison_the_median() {
        let mut b = Baselines::default();
        for i in 0..4 {
            assert!(b.score_and_learn(&mut phase(i, 100.0 * f64::from(i + 1))).is_empty());
        }
        let mut b = Baselines::default();
        for i in 0..20 {
            b.score_and_learn(&mut phase(i, if i % 7 == 3 { 5000.0 } else { 60.0 }));
        }
        let found = b.score_and_learn(&mut phase(50, 61.0));
        assert!(found.is_empty(), "a normal run after outliers is still normal: {found:?}");
    }

    #[test]
    fn only_slow_or_costly_outliers_count_unless_asked() {
        let normal = [270.0, 265.0, 280.0, 275.0, 268.0, 272.0];
        let mut b = Baselines::default();
        for (i, secs) in normal.into_iter().enumerate() {
            b.score_and_learn(&mut phase(i as u32, secs));
        }
        assert!(b.score_and_learn(&mut phase(50, 100.0)).is_empty(), "2.7x faster is not an anomaly");
        let mut both = Baselines { flag_low: true, ..Baselines::default() };
        for (i, secs) in normal.into_iter().enumerate() {
            both.score_and_learn(&mut phase(i as u32, secs));
        }
        let found = both.score_and_learn(&mut phase(50, 100.0));
        assert_eq!(found.len(), 1);
        assert!(found[0].reason.contains("shorter"), "{}", found[0].reason);
    }

    #[test]
    fn estimated_durations_are_neither_judged_nor_learned() {
        let mut b = Baselines::default();
        for i in 0..6 {
            let mut e = phase(i, 5.0 + f64::from(i));
            e.attributes.insert(TIME_ESTIMATED_ATTR.to_owned(), serde_json::Value::Bool(true));
            assert!(b.score_and_learn(&mut e).is_empty());
        }
        assert!(b.list().is_empty(), "nothing learned from estimated times: {:?}", b.list());
        for i in 10..16 {
            b.score_and_learn(&mut phase(i, 270.0));
        }
        let mut made_up = phase(20, 5000.0);
        made_up.attributes.insert(TIME_ESTIMATED_ATTR.to_owned(), serde_json::Value::Bool(true));
        assert!(b.score_and_learn(&mut made_up).is_empty(), "an estimated duration is not judged");
        assert_eq!(b.list()[0].stats.samples, 6);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(0.25), "250ms");
        assert_eq!(human_duration(12.44), "12.4s");
        assert_eq!(human_duration(270.0), "4m30s");
        assert_eq!(human_duration(7500.0), "2h05m");
    }
}
