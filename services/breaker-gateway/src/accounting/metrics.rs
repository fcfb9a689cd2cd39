//! The gateway's Prometheus metrics, in the text exposition format 0.0.4.
//!
//! A few counters, gauges and fixed-bucket histograms do not need a metrics crate: one map behind
//! one lock, updated a handful of times per call, rendered on scrape. Families are declared up
//! front ([`MetricDef`]) so every scrape shows every metric with its help and type, even before
//! its first sample.
//!
//! Label values can come from clients (a model name), so every family holds at most
//! [`MAX_SERIES`] label sets; further ones are not recorded but counted in
//! `helix_gateway_metric_series_dropped_total{metric}`, keeping a client that invents model names
//! from growing the gateway's memory. Callers should still pass configured names (a chain or
//! deployment id) rather than whatever a client sent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use super::emitter::EmitterStats;
use crate::breaker::State;
use crate::protocol::usage::Usage;

/// Most label sets per family.
pub const MAX_SERIES: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// A metric family: name, help, type, label names and (for histograms) bucket bounds.
#[derive(Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
    /// Upper bounds, ascending; `+Inf` is implied.
    pub buckets: &'static [f64],
}

/// Seconds; LLM calls range from a fraction of a second to minutes.
const DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

pub const REQUESTS: MetricDef = MetricDef {
    name: "helix_gateway_requests_total",
    help: "Requests answered, by client protocol, model and HTTP status.",
    kind: MetricKind::Counter,
    labels: &["protocol", "model", "status"],
    buckets: &[],
};
pub const UPSTREAM_DURATION: MetricDef = MetricDef {
    name: "helix_gateway_upstream_call_duration_seconds",
    help: "Upstream calls and their duration, by deployment and status class (2xx..5xx, error).",
    kind: MetricKind::Histogram,
    labels: &["deployment", "status_class"],
    buckets: DURATION_BUCKETS,
};
pub const RETRIES: MetricDef = MetricDef {
    name: "helix_gateway_retries_total",
    help: "Retries of an upstream call, by deployment.",
    kind: MetricKind::Counter,
    labels: &["deployment"],
    buckets: &[],
};
pub const FALLBACKS: MetricDef = MetricDef {
    name: "helix_gateway_fallbacks_total",
    help: "Fallbacks from one deployment to the next of its chain.",
    kind: MetricKind::Counter,
    labels: &["from", "to"],
    buckets: &[],
};
pub const REJECTED: MetricDef = MetricDef {
    name: "helix_gateway_rejected_total",
    help: "Calls refused by the gateway, by reason (breaker_open, bulkhead, budget, auth).",
    kind: MetricKind::Counter,
    labels: &["reason"],
    buckets: &[],
};
pub const TOKENS: MetricDef = MetricDef {
    name: "helix_gateway_tokens_total",
    help: "Tokens used, by project, model and kind (input, output, cache_read, cache_write).",
    kind: MetricKind::Counter,
    labels: &["project", "model", "kind"],
    buckets: &[],
};
pub const COST: MetricDef = MetricDef {
    name: "helix_gateway_cost_usd_total",
    help: "Cost of the calls in US dollars, by project and model.",
    kind: MetricKind::Counter,
    labels: &["project", "model"],
    buckets: &[],
};
pub const BREAKER_STATE: MetricDef = MetricDef {
    name: "helix_gateway_breaker_state",
    help: "Circuit breaker state: 0 closed, 1 open, 2 half_open, 3 forced_open, 4 disabled.",
    kind: MetricKind::Gauge,
    labels: &["deployment"],
    buckets: &[],
};
pub const IN_FLIGHT: MetricDef = MetricDef {
    name: "helix_gateway_in_flight",
    help: "Calls in flight, by bulkhead key (project:NAME, deployment:ID).",
    kind: MetricKind::Gauge,
    labels: &["key"],
    buckets: &[],
};
const SERIES_DROPPED: MetricDef = MetricDef {
    name: "helix_gateway_metric_series_dropped_total",
    help: "Samples not recorded because their metric already had the maximum number of label sets.",
    kind: MetricKind::Counter,
    labels: &["metric"],
    buckets: &[],
};

const ALL: [&MetricDef; 10] = [
    &REQUESTS,
    &UPSTREAM_DURATION,
    &RETRIES,
    &FALLBACKS,
    &REJECTED,
    &TOKENS,
    &COST,
    &BREAKER_STATE,
    &IN_FLIGHT,
    &SERIES_DROPPED,
];

#[derive(Debug)]
enum Series {
    Value(f64),
    Histogram { counts: Vec<u64>, sum: f64, count: u64 },
}

#[derive(Debug)]
struct Family {
    def: &'static MetricDef,
    series: BTreeMap<Vec<String>, Series>,
}

/// The series map is looked up with the caller's `&[&str]` (as a [`Probe`]) without first copying
/// the values into a `Vec<String>`: a handful of samples per call made that a noticeable share of
/// the gateway's allocations.
struct Probe<'a>(&'a [&'a str]);

/// Object-safe view of both, ordered like `Vec<String>` (element by element, then by length).
trait LabelKey {
    fn at(&self, i: usize) -> Option<&str>;
}

impl LabelKey for Vec<String> {
    fn at(&self, i: usize) -> Option<&str> {
        self.get(i).map(String::as_str)
    }
}

impl LabelKey for Probe<'_> {
    fn at(&self, i: usize) -> Option<&str> {
        self.0.get(i).copied()
    }
}

impl Ord for dyn LabelKey + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let mut i = 0;
        loop {
            match (self.at(i), other.at(i)) {
                (None, None) => return std::cmp::Ordering::Equal,
                (a, b) => match a.cmp(&b) {
                    std::cmp::Ordering::Equal => i += 1,
                    unequal => return unequal,
                },
            }
        }
    }
}

impl PartialOrd for dyn LabelKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn LabelKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for dyn LabelKey + '_ {}

impl<'a> std::borrow::Borrow<dyn LabelKey + 'a> for Vec<String> {
    fn borrow(&self) -> &(dyn LabelKey + 'a) {
        self
    }
}

/// The registry.
#[derive(Debug)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// `status` in decimal, written into `buf` (no allocation on the path every call takes).
fn status_text(status: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = status;
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[start..]).unwrap_or("0")
}

/// The status class of an upstream answer: `2xx`..`5xx`, or `error` when none came.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "error",
    }
}

/// The number [`BREAKER_STATE`] shows for `state`.
pub fn breaker_state_value(state: State) -> f64 {
    match state {
        State::Closed => 0.0,
        State::Open => 1.0,
        State::HalfOpen => 2.0,
        State::ForcedOpen => 3.0,
        State::Disabled => 4.0,
    }
}

enum Update {
    Add(f64),
    Set(f64),
    Observe(f64),
}

impl Metrics {
    /// A registry with the gateway's families declared.
    pub fn new() -> Metrics {
        let m = Metrics { families: Mutex::new(BTreeMap::new()) };
        for def in ALL {
            m.register(def);
        }
        m
    }

    /// Declares another family (idempotent), for metrics beyond the predefined ones.
    pub fn register(&self, def: &'static MetricDef) {
        let mut f = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        f.entry(def.name).or_insert_with(|| Family { def, series: BTreeMap::new() });
    }

    fn update(&self, def: &'static MetricDef, labels: &[&str], update: Update) {
        if labels.len() != def.labels.len() {
            tracing::error!(
                metric = def.name,
                expected = def.labels.len(),
                got = labels.len(),
                "wrong number of labels"
            );
            return;
        }
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(def.name).or_insert_with(|| Family { def, series: BTreeMap::new() });
        let probe = Probe(labels);
        let series = match family.series.get_mut(&probe as &dyn LabelKey) {
            Some(series) => series,
            None => {
                if family.series.len() >= MAX_SERIES {
                    if def.name != SERIES_DROPPED.name {
                        drop(families);
                        self.update(&SERIES_DROPPED, &[def.name], Update::Add(1.0));
                    }
                    return;
                }
                let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
                family.series.entry(key).or_insert_with(|| match def.kind {
                    MetricKind::Histogram => {
                        Series::Histogram { counts: vec![0; def.buckets.len()], sum: 0.0, count: 0 }
                    }
                    _ => Series::Value(0.0),
                })
            }
        };
        match (series, update) {
            (Series::Value(v), Update::Add(d)) if d.is_finite() && d >= 0.0 => *v += d,
            (Series::Value(v), Update::Set(x)) => *v = x,
            (Series::Histogram { counts, sum, count }, Update::Observe(x)) if x.is_finite() => {
                // counts per bucket, made cumulative when rendered
                if let Some(i) = def.buckets.iter().position(|b| x <= *b) {
                    counts[i] += 1;
                }
                *sum += x;
                *count += 1;
            }
            // counters never go down; kinds and updates that do not fit are programming errors
            _ => {}
        }
    }

    /// Adds `delta` (finite, not negative) to a counter.
    pub fn add(&self, def: &'static MetricDef, labels: &[&str], delta: f64) {
        self.update(def, labels, Update::Add(delta));
    }

    /// Sets a gauge.
    pub fn set(&self, def: &'static MetricDef, labels: &[&str], value: f64) {
        self.update(def, labels, Update::Set(value));
    }

    /// Records one observation of a histogram.
    pub fn observe(&self, def: &'static MetricDef, labels: &[&str], value: f64) {
        self.update(def, labels, Update::Observe(value));
    }

    /// A request answered to a client (`status` is the HTTP status sent).
    pub fn request(&self, protocol: &str, model: &str, status: u16) {
        let mut buf = [0u8; 5];
        self.add(&REQUESTS, &[protocol, model, status_text(status, &mut buf)], 1.0);
    }

    /// An upstream call that took `seconds`; `status_class` from [`status_class`].
    pub fn upstream_call(&self, deployment: &str, status_class: &str, seconds: f64) {
        self.observe(&UPSTREAM_DURATION, &[deployment, status_class], seconds);
    }

    pub fn retry(&self, deployment: &str) {
        self.add(&RETRIES, &[deployment], 1.0);
    }

    pub fn fallback(&self, from: &str, to: &str) {
        self.add(&FALLBACKS, &[from, to], 1.0);
    }

    /// A call refused: `breaker_open`, `bulkhead`, `budget` or `auth`.
    pub fn rejected(&self, reason: &str) {
        self.add(&REJECTED, &[reason], 1.0);
    }

    /// `n` tokens of `kind` (`input`, `output`, `cache_read`, `cache_write`).
    pub fn tokens(&self, project: &str, model: &str, kind: &str, n: u64) {
        if n > 0 {
            self.add(&TOKENS, &[project, model, kind], n as f64);
        }
    }

    /// All four counts of `usage`.
    pub fn usage(&self, project: &str, model: &str, usage: &Usage) {
        self.tokens(project, model, "input", usage.input_tokens);
        self.tokens(project, model, "output", usage.output_tokens);
        self.tokens(project, model, "cache_read", usage.cache_read_tokens);
        self.tokens(project, model, "cache_write", usage.cache_write_tokens);
    }

    pub fn cost(&self, project: &str, model: &str, usd: f64) {
        self.add(&COST, &[project, model], usd);
    }

    pub fn set_breaker_state(&self, deployment: &str, state: State) {
        self.set(&BREAKER_STATE, &[deployment], breaker_state_value(state));
    }

    pub fn set_in_flight(&self, key: &str, n: u32) {
        self.set(&IN_FLIGHT, &[key], f64::from(n));
    }

    /// The exposition text (content type `text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        self.render_with(None)
    }

    /// [`Metrics::render`] plus the trace emitter's counters.
    pub fn render_with(&self, emitter: Option<&EmitterStats>) -> String {
        let mut out = String::new();
        {
            let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
            for f in families.values() {
                render_family(&mut out, f);
            }
        }
        if let Some(s) = emitter {
            let simple = [
                (
                    "helix_gateway_trace_events_sent_total",
                    "Trace events the collector stored.",
                    "counter",
                    s.sent,
                ),
                (
                    "helix_gateway_trace_events_dropped_total",
                    "Trace events lost: queue full or refused by the collector.",
                    "counter",
                    s.dropped,
                ),
                (
                    "helix_gateway_trace_events_rejected_total",
                    "Trace events found invalid.",
                    "counter",
                    s.rejected,
                ),
                (
                    "helix_gateway_trace_posts_failed_total",
                    "Failed POSTs to the trace-collector.",
                    "counter",
                    s.failed_posts,
                ),
                ("helix_gateway_trace_events_queued", "Trace events waiting to be sent.", "gauge", s.queued),
                (
                    "helix_gateway_trace_collector_connected",
                    "1 when the latest POST reached the trace-collector.",
                    "gauge",
                    u64::from(s.connected),
                ),
            ];
            for (name, help, kind, value) in simple {
                let _ = writeln!(
                    out,
                    "# HELP {name} {}\n# TYPE {name} {kind}\n{name} {value}",
                    escape_help(help)
                );
            }
        }
        out
    }
}

fn render_family(out: &mut String, f: &Family) {
    let def = f.def;
    let _ = writeln!(out, "# HELP {} {}", def.name, escape_help(def.help));
    let _ = writeln!(out, "# TYPE {} {}", def.name, def.kind.as_str());
    for (values, series) in &f.series {
        match series {
            Series::Value(v) => {
                let _ = writeln!(out, "{}{} {}", def.name, labels(def.labels, values, None), number(*v));
            }
            Series::Histogram { counts, sum, count } => {
                let mut cumulative = 0;
                for (bound, n) in def.buckets.iter().zip(counts) {
                    cumulative += n;
                    let le = number(*bound);
                    let _ = writeln!(
                        out,
                        "{}_bucket{} {cumulative}",
                        def.name,
                        labels(def.labels, values, Some(&le))
                    );
                }
                let _ =
                    writeln!(out, "{}_bucket{} {count}", def.name, labels(def.labels, values, Some("+Inf")));
                let _ =
                    writeln!(out, "{}_sum{} {}", def.name, labels(def.labels, values, None), number(*sum));
                let _ = writeln!(out, "{}_count{} {count}", def.name, labels(def.labels, values, None));
            }
        }
    }
}

/// `{a="x",b="y"}` (empty without labels), with `le` last for histogram buckets.
fn labels(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> =
        names.iter().zip(values).map(|(n, v)| format!("{n}=\"{}\"", escape_label(v))).collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() { String::new() } else { format!("{{{}}}", pairs.join(",")) }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's float spelling for the special values, Rust's shortest round-trip otherwise.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// One sample: metric name, labels (unescaped), value.
    type Sample = (String, Vec<(String, String)>, f64);

    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// A strict reader of the text format: every line is a HELP, a TYPE or a sample of the
    /// family declared just before; label values are unescaped. Panics on anything else.
    fn parse(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
        assert!(text.ends_with('\n'), "the last line ends with a line feed");
        let mut samples = Vec::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut current: Option<(String, String)> = None;
        let mut helped: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("help text");
                assert!(is_name(name), "{line}");
                assert!(!help.contains('\n'));
                helped = Some(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("type");
                assert_eq!(helped.as_deref(), Some(name), "HELP comes right before TYPE");
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
                assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "{name} declared twice");
                current = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let name_end = line.find(['{', ' ']).expect("name");
            let name = &line[..name_end];
            assert!(is_name(name), "{line}");
            let (family, kind) = current.clone().expect("a sample after its TYPE");
            let allowed = if kind == "histogram" {
                [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")]
                    .contains(&name.to_owned())
            } else {
                name == family
            };
            assert!(allowed, "sample {name} outside its family {family}");
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(inner) = rest.strip_prefix('{') {
                let mut chars = inner.char_indices().peekable();
                let end = loop {
                    let (i, c) = chars.next().expect("labels end");
                    if c == '}' {
                        break i;
                    }
                    let mut key = String::from(c);
                    loop {
                        let (_, c) = chars.next().expect("key");
                        if c == '=' {
                            break;
                        }
                        key.push(c);
                    }
                    assert!(is_name(&key), "label name {key:?}");
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("value").1 {
                            '"' => break,
                            '\\' => match chars.next().expect("escape").1 {
                                '\\' => value.push('\\'),
                                '"' => value.push('"'),
                                'n' => value.push('\n'),
                                other => panic!("bad escape \\{other} in {line}"),
                            },
                            c => value.push(c),
                        }
                    }
                    labels.push((key, value));
                    match chars.peek().map(|(_, c)| *c) {
                        Some(',') => {
                            chars.next();
                        }
                        Some('}') => {}
                        other => panic!("unexpected {other:?} in {line}"),
                    }
                };
                rest = &inner[end + 1..];
            }
            let value = rest.strip_prefix(' ').expect("one space before the value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse::<f64>().unwrap_or_else(|_| panic!("bad value {v:?} in {line}")),
            };
            samples.push((name.to_owned(), labels, value));
        }
        (samples, types)
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|s| s.2)
    }

    #[test]
    fn series_are_found_by_their_labels_and_statuses_written_without_allocating() {
        let mut buf = [0u8; 5];
        for status in [0u16, 7, 42, 200, 429, 599, 65535] {
            assert_eq!(status_text(status, &mut buf), status.to_string());
        }
        let m = Metrics::new();
        // prefixes, equal values in other positions and repeats land in their own series
        for labels in [["a", "b"], ["a", "bc"], ["ab", ""], ["a", "b"], ["", "ab"]] {
            m.add(&FALLBACKS, &labels, 1.0);
        }
        let text = m.render();
        for (from, to, n) in [("a", "b", 2), ("a", "bc", 1), ("ab", "", 1), ("", "ab", 1)] {
            let line = format!("helix_gateway_fallbacks_total{{from=\"{from}\",to=\"{to}\"}} {n}");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn render_is_valid_exposition_text_with_the_recorded_values() {
        let m = Metrics::new();
        m.request("openai", "smart", 200);
        m.request("openai", "smart", 200);
        m.request("anthropic", "smart", 429);
        m.upstream_call("a", status_class(Some(200)), 0.3);
        m.upstream_call("a", status_class(Some(200)), 7.0);
        m.upstream_call("a", status_class(Some(200)), 1_000.0);
        m.upstream_call("b", status_class(None), 0.01);
        m.retry("a");
        m.fallback("a", "b");
        m.rejected("budget");
        m.usage(
            "shop",
            "smart",
            &Usage { input_tokens: 10, output_tokens: 5, cache_read_tokens: 0, cache_write_tokens: 2 },
        );
        m.cost("shop", "smart", 0.25);
        m.cost("shop", "smart", 0.5);
        m.cost("shop", "smart", -1.0);
        m.set_breaker_state("a", State::HalfOpen);
        m.set_in_flight("project:shop", 3);
        m.set_in_flight("project:shop", 2);
        let stats =
            EmitterStats { sent: 7, dropped: 2, queued: 1, connected: true, ..EmitterStats::default() };
        let text = m.render_with(Some(&stats));
        let (samples, types) = parse(&text);

        assert_eq!(types["helix_gateway_requests_total"], "counter");
        assert_eq!(types["helix_gateway_upstream_call_duration_seconds"], "histogram");
        assert_eq!(types["helix_gateway_breaker_state"], "gauge");
        assert!(types.keys().all(|n| n.starts_with("helix_gateway_")));
        let req = "helix_gateway_requests_total";
        assert_eq!(
            value(&samples, req, &[("protocol", "openai"), ("model", "smart"), ("status", "200")]),
            Some(2.0)
        );
        assert_eq!(
            value(&samples, req, &[("protocol", "anthropic"), ("model", "smart"), ("status", "429")]),
            Some(1.0)
        );
        let b = "helix_gateway_upstream_call_duration_seconds_bucket";
        let a2 = |le: &str| value(&samples, b, &[("deployment", "a"), ("status_class", "2xx"), ("le", le)]);
        assert_eq!(a2("0.25"), Some(0.0));
        assert_eq!(a2("0.5"), Some(1.0));
        assert_eq!(a2("10"), Some(2.0), "cumulative");
        assert_eq!(a2("300"), Some(2.0));
        assert_eq!(a2("+Inf"), Some(3.0));
        let count = "helix_gateway_upstream_call_duration_seconds_count";
        assert_eq!(value(&samples, count, &[("deployment", "a"), ("status_class", "2xx")]), Some(3.0));
        let sum = value(
            &samples,
            "helix_gateway_upstream_call_duration_seconds_sum",
            &[("deployment", "a"), ("status_class", "2xx")],
        );
        assert!(sum.is_some_and(|s| (s - 1_007.3).abs() < 1e-9), "{sum:?}");
        assert_eq!(
            value(&samples, count, &[("deployment", "b"), ("status_class", "error")]),
            Some(1.0),
            "no answer is class error"
        );
        assert_eq!(value(&samples, "helix_gateway_retries_total", &[("deployment", "a")]), Some(1.0));
        assert_eq!(
            value(&samples, "helix_gateway_fallbacks_total", &[("from", "a"), ("to", "b")]),
            Some(1.0)
        );
        assert_eq!(value(&samples, "helix_gateway_rejected_total", &[("reason", "budget")]), Some(1.0));
        let tokens = |kind: &str| {
            value(
                &samples,
                "helix_gateway_tokens_total",
                &[("project", "shop"), ("model", "smart"), ("kind", kind)],
            )
        };
        assert_eq!(
            (tokens("input"), tokens("output"), tokens("cache_write")),
            (Some(10.0), Some(5.0), Some(2.0))
        );
        assert_eq!(tokens("cache_read"), None, "zero counts add no series");
        assert_eq!(
            value(&samples, "helix_gateway_cost_usd_total", &[("project", "shop"), ("model", "smart")]),
            Some(0.75),
            "a counter never goes down"
        );
        assert_eq!(value(&samples, "helix_gateway_breaker_state", &[("deployment", "a")]), Some(2.0));
        assert_eq!(
            value(&samples, "helix_gateway_in_flight", &[("key", "project:shop")]),
            Some(2.0),
            "gauges are set"
        );
        assert_eq!(value(&samples, "helix_gateway_trace_events_sent_total", &[]), Some(7.0));
        assert_eq!(value(&samples, "helix_gateway_trace_events_dropped_total", &[]), Some(2.0));
        assert_eq!(value(&samples, "helix_gateway_trace_collector_connected", &[]), Some(1.0));
        assert!(!m.render().contains("trace_events"), "emitter metrics only when given");
    }

    #[test]
    fn label_values_are_escaped_and_read_back() {
        let m = Metrics::new();
        let nasty = "a\"b\\c\nd}e,f=g";
        m.request("openai", nasty, 200);
        let text = m.render();
        assert!(text.contains(r#"model="a\"b\\c\nd}e,f=g""#), "{text}");
        let (samples, _) = parse(&text);
        assert_eq!(
            value(
                &samples,
                "helix_gateway_requests_total",
                &[("protocol", "openai"), ("model", nasty), ("status", "200")]
            ),
            Some(1.0)
        );
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.25), "0.25");
    }

    #[test]
    fn label_sets_per_family_are_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES + 10 {
            m.request("openai", &format!("invented-{i}"), 404);
        }
        m.request("openai", "invented-0", 404);
        let (samples, _) = parse(&m.render());
        let series = samples.iter().filter(|s| s.0 == "helix_gateway_requests_total").count();
        assert_eq!(series, MAX_SERIES);
        assert_eq!(
            value(
                &samples,
                "helix_gateway_requests_total",
                &[("protocol", "openai"), ("model", "invented-0"), ("status", "404")]
            ),
            Some(2.0),
            "known label sets keep counting"
        );
        assert_eq!(
            value(
                &samples,
                "helix_gateway_metric_series_dropped_total",
                &[("metric", "helix_gateway_requests_total")]
            ),
            Some(10.0)
        );
    }

    #[test]
    fn updates_from_many_threads_all_count() {
        let m = std::sync::Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        m.retry("a");
                        m.upstream_call("a", "2xx", 0.1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let (samples, _) = parse(&m.render());
        assert_eq!(value(&samples, "helix_gateway_retries_total", &[("deployment", "a")]), Some(4_000.0));
        assert_eq!(
            value(
                &samples,
                "helix_gateway_upstream_call_duration_seconds_count",
                &[("deployment", "a"), ("status_class", "2xx")]
            ),
            Some(4_000.0)
        );
    }
}
