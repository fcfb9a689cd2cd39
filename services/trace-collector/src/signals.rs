//! OTLP logs and metrics (`POST /v1/logs`, `POST /v1/metrics`) as Helix events.
//!
//! Why: agents report what they do through all three OpenTelemetry signals, and Claude Code's
//! native telemetry (`CLAUDE_CODE_ENABLE_TELEMETRY=1`) is almost only log events and metrics. A
//! user who points an exporter at the collector should see those next to the spans, in the same
//! traces, cost table and timeline, stored and forwarded the same way. So every log record and
//! every metric data point becomes one event of the one trace format; nothing here stores
//! anything itself. Domain logic only: bytes in, events out.
//!
//! # Log records
//! - **Trace**: the record's own `trace_id` when it has one (a log written inside a traced span,
//!   whose `span_id` becomes the parent). Otherwise one trace per `session.id` of a service (the
//!   attribute Claude Code puts on every record), or per service and UTC day without a session.
//!   The id is a hash of those, so records of one session from any batch meet in one trace,
//!   under a `run` span named `<service> session <id>` (or `<service> day <date>`).
//! - **Span id**: a hash of the whole record, so a batch sent again maps to the same ids and is
//!   dropped as duplicates (first copy wins, as for spans). Two byte-identical records of one
//!   trace are one record.
//! - **Claude Code events** (`event.name`, or a body `claude_code.<name>`):
//!   - `api_request` → an `llm_call` span `chat <model>` ending at the record's time and
//!     lasting `duration_ms`, with `gen_ai.request.model`, the token counts
//!     (`gen_ai.usage.input_tokens`, `…output_tokens`, `…cache_read.input_tokens`,
//!     `…cache_creation.input_tokens`) and `helix.cost_usd` = `cost_usd`: these count in
//!     `GET /v1/costs` and the baselines like any LLM call;
//!   - `api_error` → an `llm_call` span with status error (`error` as its message);
//!   - `tool_result` → a `tool_call` span `execute_tool <tool_name>` lasting `duration_ms`,
//!     status error when `success` is false;
//!   - every other event (`user_prompt`, `tool_decision`, …) → an `other` event of no length.
//! - **Other logs** → an `other` event of no length named by its event name or the first line of
//!   its body; the body is kept in `log.body`, the severity in `log.severity`, and records of
//!   severity ERROR or worse get status error.
//! - The record's attributes and its resource's are kept as for spans (see [`crate::otlp`]).
//!   Numbers Claude Code sends as strings (`"123"`) are read as numbers where mapped.
//!
//! # Metric data points
//! Each point of a gauge, sum, histogram, exponential histogram or summary becomes an `other`
//! event named after the metric, at the point's time (no length), in the trace its attributes
//! lead to (as for logs), with `metric.value` (gauges, sums) or `metric.count` / `metric.sum` /
//! `metric.min` / `metric.max` (distributions), `metric.unit`, `metric.type`,
//! `metric.temporality` (`delta` / `cumulative`) and `metric.start_unix_nanos`. Its id is a hash
//! of the metric and the point, so a re-sent point is stored once.
//!
//! Metric values are never counted as cost or tokens: Claude Code reports each call's cost both
//! as `claude_code.cost.usage` and in its `api_request` event, and counting both would count it
//! twice. The events carry the per-call detail (model, tokens, time), so the cost table is built
//! from them: enable Claude Code's logs exporter (`OTEL_LOGS_EXPORTER=otlp`) to see its cost.

use helix_core::trace::{Event, attr};
use prost::Message;
use serde_json::{Map, Value};

use crate::import::{halves, non_zero};
use crate::otlp::proto::any_value::Value as Any;
use crate::otlp::proto::{AnyValue, InstrumentationScope, KeyValue, Span, Status};
use crate::otlp::{
    OtlpError, SERVICE_NAME, array, attribute, field, json_enum, json_f64, json_i64, json_id, json_scope,
    json_str, json_u32, json_u64, key_values, span_to_event, text,
};

/// The OTLP logs and metrics messages (`logs/v1/logs.proto`, `metrics/v1/metrics.proto` and
/// their collector services), by hand with prost derives like the trace messages. Oneofs are
/// written as optional fields (the same on the wire); exemplars, buckets and quantiles are left
/// out (prost skips them).
pub mod proto {
    use crate::otlp::proto::{AnyValue, InstrumentationScope, KeyValue, Resource};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "11")]
        pub observed_time_unix_nano: u64,
        #[prost(int32, tag = "2")]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "7")]
        pub dropped_attributes_count: u32,
        #[prost(fixed32, tag = "8")]
        pub flags: u32,
        #[prost(bytes = "vec", tag = "9")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "10")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "12")]
        pub event_name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportMetricsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetrics {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeMetrics {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub description: String,
        #[prost(string, tag = "3")]
        pub unit: String,
        #[prost(message, optional, tag = "5")]
        pub gauge: Option<Gauge>,
        #[prost(message, optional, tag = "7")]
        pub sum: Option<Sum>,
        #[prost(message, optional, tag = "9")]
        pub histogram: Option<Histogram>,
        #[prost(message, optional, tag = "10")]
        pub exponential_histogram: Option<ExponentialHistogram>,
        #[prost(message, optional, tag = "11")]
        pub summary: Option<Summary>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sum {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
        #[prost(bool, tag = "3")]
        pub is_monotonic: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<HistogramDataPoint>,
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExponentialHistogram {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<ExponentialHistogramDataPoint>,
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<SummaryDataPoint>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NumberDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(double, optional, tag = "4")]
        pub as_double: Option<f64>,
        #[prost(sfixed64, optional, tag = "6")]
        pub as_int: Option<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramDataPoint {
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "4")]
        pub count: u64,
        #[prost(double, optional, tag = "5")]
        pub sum: Option<f64>,
        #[prost(double, optional, tag = "11")]
        pub min: Option<f64>,
        #[prost(double, optional, tag = "12")]
        pub max: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExponentialHistogramDataPoint {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "4")]
        pub count: u64,
        #[prost(double, optional, tag = "5")]
        pub sum: Option<f64>,
        #[prost(double, optional, tag = "12")]
        pub min: Option<f64>,
        #[prost(double, optional, tag = "13")]
        pub max: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "4")]
        pub count: u64,
        #[prost(double, tag = "5")]
        pub sum: f64,
    }

    /// The response of `/v1/logs` and `/v1/metrics`: `partial_success` with the count of
    /// rejected records or points (both messages have this shape on the wire).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportSignalResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<PartialSuccess>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }
}

use self::proto::{
    ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportSignalResponse, HistogramDataPoint,
    LogRecord, Metric, NumberDataPoint, PartialSuccess,
};

/// One entry per log record or data point, in body order: the event, or why it was rejected.
pub type Decoded = Vec<Result<Event, String>>;

/// Which signal a body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Metrics,
}

impl Signal {
    /// What one item of the signal is called in messages and in the JSON response.
    pub fn item(self) -> &'static str {
        match self {
            Signal::Logs => "log record",
            Signal::Metrics => "data point",
        }
    }

    pub fn decode_protobuf(self, body: &[u8]) -> Result<Decoded, OtlpError> {
        match self {
            Signal::Logs => Ok(logs_to_events(&ExportLogsServiceRequest::decode(body)?)),
            Signal::Metrics => Ok(metrics_to_events(&ExportMetricsServiceRequest::decode(body)?)),
        }
    }

    pub fn decode_json(self, body: &[u8]) -> Result<Decoded, OtlpError> {
        let root: Value = serde_json::from_slice(body).map_err(|e| OtlpError::Json(e.to_string()))?;
        let root = root.as_object().ok_or_else(|| OtlpError::Json("expected an object".to_owned()))?;
        match self {
            Signal::Logs => Ok(logs_to_events(&json_logs(root).map_err(OtlpError::Json)?)),
            Signal::Metrics => Ok(metrics_to_events(&json_metrics(root).map_err(OtlpError::Json)?)),
        }
    }

    /// The protobuf answer: empty on full success, a partial success otherwise.
    pub fn response_protobuf(self, rejected: usize, message: &str) -> Vec<u8> {
        let partial_success = (rejected > 0 || !message.is_empty()).then(|| PartialSuccess {
            rejected: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message.to_owned(),
        });
        ExportSignalResponse { partial_success }.encode_to_vec()
    }

    /// The JSON answer (`rejectedLogRecords` / `rejectedDataPoints`).
    pub fn response_json(self, rejected: usize, message: &str) -> Value {
        if rejected == 0 && message.is_empty() {
            return Value::Object(Map::new());
        }
        let key = match self {
            Signal::Logs => "rejectedLogRecords",
            Signal::Metrics => "rejectedDataPoints",
        };
        serde_json::json!({"partialSuccess": {key: rejected.to_string(), "errorMessage": message}})
    }
}

// ---------------------------------------------------------------------------------------------
// shared

const SESSION_ID: &str = "session.id";
const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

fn kv(key: &str, value: Any) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }) }
}

fn s(v: impl Into<String>) -> Any {
    Any::StringValue(v.into())
}

/// A number from an int, a double or a numeric string (Claude Code sends some as strings).
fn number(attributes: &[KeyValue], key: &str) -> Option<f64> {
    match attribute(attributes, key)?.value.as_ref()? {
        Any::IntValue(i) => Some(*i as f64),
        Any::DoubleValue(d) => Some(*d),
        Any::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|v: &f64| v.is_finite())
}

fn truthy(attributes: &[KeyValue], key: &str) -> Option<bool> {
    match attribute(attributes, key)?.value.as_ref()? {
        Any::BoolValue(b) => Some(*b),
        Any::StringValue(s) => match s.trim() {
            "true" | "True" | "1" => Some(true),
            "false" | "False" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The trace of a record without trace context: its session's, else its service's day; and the
/// span all of that trace's records hang under.
fn derived_trace(
    resource: &[KeyValue],
    attributes: &[KeyValue],
    time: u64,
    roots: &mut Roots,
) -> (Vec<u8>, Vec<u8>) {
    let service = attribute(resource, SERVICE_NAME).and_then(text).unwrap_or_else(|| "otel".to_owned());
    let session =
        attribute(attributes, SESSION_ID).or_else(|| attribute(resource, SESSION_ID)).and_then(text);
    let day = (time / DAY_NANOS).to_string();
    let (key, name) = match &session {
        Some(session) => (["otel-session", &service, session], format!("{service} session {session}")),
        None => (["otel-day", &service, &day], format!("{service} day {}", day_name(time))),
    };
    let (a, b) = halves(&key);
    let mut trace = non_zero(a).to_be_bytes().to_vec();
    trace.extend_from_slice(&b.to_be_bytes());
    let root = derived_span(&["root", &hex::encode(&trace)]);
    // by trace id, so a batch of many sessions stays linear
    match roots.entry(trace.clone()) {
        std::collections::btree_map::Entry::Occupied(mut r) => {
            let r = r.get_mut();
            r.start = r.start.min(time);
        }
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert(Root { span: root.clone(), name, session, start: time, resource: resource.to_vec() });
        }
    }
    (trace, root)
}

/// `2026-12-04` for a time.
fn day_name(time: u64) -> String {
    let days = i64::try_from(time / DAY_NANOS).unwrap_or(0);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The root span of a derived trace: a `run` named after the session (or day), made once per
/// batch; its id depends on the trace only, so later batches' copies are dropped as duplicates.
struct Root {
    span: Vec<u8>,
    name: String,
    session: Option<String>,
    start: u64,
    resource: Vec<KeyValue>,
}

/// Roots by trace id (a `BTreeMap`, so the roots come out in a stable order).
type Roots = std::collections::BTreeMap<Vec<u8>, Root>;

fn add_roots(roots: Roots, out: &mut Decoded) {
    for (trace, r) in roots {
        let mut attributes = vec![kv("helix.span.kind", s("run"))];
        if let Some(session) = r.session {
            attributes.push(kv(SESSION_ID, s(session)));
        }
        let span = Span {
            trace_id: trace,
            span_id: r.span,
            name: r.name,
            start_time_unix_nano: r.start,
            end_time_unix_nano: r.start,
            attributes,
            ..Default::default()
        };
        out.push(span_to_event(&r.resource, None, &span));
    }
}

/// A span id from a hash of what identifies the item.
fn derived_span(parts: &[&str]) -> Vec<u8> {
    non_zero(halves(parts).0).to_be_bytes().to_vec()
}

fn one_line(s: &str, max: usize) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    match line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// logs

fn logs_to_events(request: &ExportLogsServiceRequest) -> Decoded {
    let mut out = Vec::new();
    let mut roots = Roots::new();
    for rl in &request.resource_logs {
        let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                out.push(record_to_event(resource, sl.scope.as_ref(), r, &mut roots));
            }
        }
    }
    add_roots(roots, &mut out);
    out
}

/// Severity numbers from ERROR (17) up mean an error.
const SEVERITY_ERROR: i32 = 17;
const SEVERITY_NAMES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

fn record_to_event(
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    r: &LogRecord,
    roots: &mut Roots,
) -> Result<Event, String> {
    let time = if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano };
    if time == 0 {
        return Err("the record has neither timeUnixNano nor observedTimeUnixNano".to_owned());
    }
    let body = r.body.as_ref().and_then(text);
    let event_name = Some(r.event_name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| attribute(&r.attributes, "event.name").and_then(text))
        .or_else(|| body.as_deref().and_then(|b| b.strip_prefix("claude_code.")).map(str::to_owned));
    let claude = scope.is_some_and(|s| s.name.starts_with("com.anthropic.claude_code"))
        || body.as_deref().is_some_and(|b| b.starts_with("claude_code."));
    let bare = event_name.as_deref().map(|n| n.strip_prefix("claude_code.").unwrap_or(n));

    let mut attributes = r.attributes.clone();
    let mut start = time;
    let mut status = None;
    let mut name = match (&event_name, &body) {
        (Some(n), _) if claude && !n.starts_with("claude_code.") => format!("claude_code.{n}"),
        (Some(n), _) => n.clone(),
        (None, Some(b)) => one_line(b, 120),
        (None, None) => "log".to_owned(),
    };
    let duration = |a: &[KeyValue]| number(a, "duration_ms").map_or(0, |ms| (ms.max(0.0) * 1e6) as u64);
    match (claude, bare) {
        (true, Some("api_request" | "api_error")) => {
            let model = attribute(&r.attributes, "model").and_then(text).unwrap_or_else(|| "unknown".into());
            start = time.saturating_sub(duration(&r.attributes));
            name = format!("chat {model}");
            attributes.push(kv(attr::GEN_AI_OPERATION_NAME, s("chat")));
            attributes.push(kv(attr::GEN_AI_PROVIDER_NAME, s("anthropic")));
            attributes.push(kv(attr::GEN_AI_REQUEST_MODEL, s(model)));
            for (from, to) in [
                ("input_tokens", attr::GEN_AI_USAGE_INPUT_TOKENS),
                ("output_tokens", attr::GEN_AI_USAGE_OUTPUT_TOKENS),
                ("cache_read_tokens", attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
                ("cache_creation_tokens", "gen_ai.usage.cache_creation.input_tokens"),
            ] {
                if let Some(n) = number(&r.attributes, from) {
                    attributes.push(kv(to, Any::IntValue(n.max(0.0) as i64)));
                }
            }
            if let Some(cost) = number(&r.attributes, "cost_usd").filter(|c| *c >= 0.0) {
                attributes.push(kv(attr::HELIX_COST_USD, Any::DoubleValue(cost)));
            }
            if bare == Some("api_error") {
                let error =
                    attribute(&r.attributes, "error").and_then(text).unwrap_or_else(|| "API error".into());
                status = Some(error);
            }
        }
        (true, Some("tool_result")) => {
            let tool = attribute(&r.attributes, "tool_name").and_then(text).unwrap_or_else(|| "tool".into());
            start = time.saturating_sub(duration(&r.attributes));
            name = format!("execute_tool {tool}");
            attributes.push(kv(attr::GEN_AI_OPERATION_NAME, s("execute_tool")));
            attributes.push(kv(attr::GEN_AI_TOOL_NAME, s(tool)));
            if truthy(&r.attributes, "success") == Some(false) {
                let error = attribute(&r.attributes, "error")
                    .and_then(text)
                    .unwrap_or_else(|| "the tool failed".into());
                status = Some(error);
            }
        }
        _ => {
            attributes.push(kv("helix.span.kind", s("other")));
            if let Some(b) = &r.body {
                let shown = text(b).unwrap_or_default();
                if !claude && shown != name {
                    attributes.push(KeyValue { key: "log.body".to_owned(), value: Some(b.clone()) });
                }
            }
        }
    }
    let severity = if !r.severity_text.is_empty() {
        Some(r.severity_text.clone())
    } else {
        usize::try_from((r.severity_number - 1) / 4)
            .ok()
            .filter(|_| r.severity_number > 0)
            .and_then(|i| SEVERITY_NAMES.get(i).map(|n| n.to_string()))
    };
    if let Some(sev) = severity {
        attributes.push(kv("log.severity", s(sev)));
    }
    if status.is_none() && r.severity_number >= SEVERITY_ERROR {
        status = Some(body.as_deref().map_or_else(|| "error".to_owned(), |b| one_line(b, 200)));
    }

    let has_trace = r.trace_id.len() == 16 && r.trace_id.iter().any(|b| *b != 0);
    let (trace_id, parent) = if has_trace {
        (r.trace_id.clone(), if r.span_id.len() == 8 { r.span_id.clone() } else { Vec::new() })
    } else {
        derived_trace(resource, &r.attributes, time, roots)
    };
    let span_id = derived_span(&[&hex::encode(&trace_id), &format!("{r:?}")]);
    let span = Span {
        trace_id,
        span_id,
        parent_span_id: parent,
        name,
        start_time_unix_nano: start,
        end_time_unix_nano: time,
        attributes,
        dropped_attributes_count: r.dropped_attributes_count,
        status: status.map(|message| Status { message, code: 2 }),
        ..Default::default()
    };
    span_to_event(resource, scope, &span)
}

/// What every OTLP/JSON export body is: resources, each with scopes, each with items.
type Envelope<T> = Vec<(Option<crate::otlp::proto::Resource>, Vec<(Option<InstrumentationScope>, Vec<T>)>)>;

/// Walks the envelope of one signal: `names` are the (JSON, proto) names of its resource,
/// scope and item arrays; errors name the path of what is wrong.
fn json_envelope<T>(
    root: &Map<String, Value>,
    names: [(&str, &str); 3],
    item: impl Fn(&Value) -> Result<T, String>,
) -> Result<Envelope<T>, String> {
    let [(resources, resources_p), (scopes, scopes_p), (items, items_p)] = names;
    let mut out = Vec::new();
    for (i, r) in array(field(root, resources, resources_p))
        .map_err(|e| format!("{resources}: {e}"))?
        .iter()
        .enumerate()
    {
        let path = format!("{resources}[{i}]");
        let r = r.as_object().ok_or_else(|| format!("{path}: expected an object"))?;
        let resource = json_resource(r).map_err(|e| format!("{path}.resource: {e}"))?;
        let mut in_scopes = Vec::new();
        for (j, sc) in
            array(field(r, scopes, scopes_p)).map_err(|e| format!("{path}.{scopes}: {e}"))?.iter().enumerate()
        {
            let path = format!("{path}.{scopes}[{j}]");
            let sc = sc.as_object().ok_or_else(|| format!("{path}: expected an object"))?;
            let scope = field(sc, "scope", "scope")
                .map(json_scope)
                .transpose()
                .map_err(|e| format!("{path}.scope: {e}"))?;
            let list = array(field(sc, items, items_p))
                .map_err(|e| format!("{path}.{items}: {e}"))?
                .iter()
                .enumerate()
                .map(|(k, x)| item(x).map_err(|e| format!("{path}.{items}[{k}]: {e}")))
                .collect::<Result<_, _>>()?;
            in_scopes.push((scope, list));
        }
        out.push((resource, in_scopes));
    }
    Ok(out)
}

fn json_logs(root: &Map<String, Value>) -> Result<ExportLogsServiceRequest, String> {
    let names =
        [("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records")];
    let resource_logs = json_envelope(root, names, json_record)?
        .into_iter()
        .map(|(resource, scopes)| proto::ResourceLogs {
            resource,
            scope_logs: scopes
                .into_iter()
                .map(|(scope, log_records)| proto::ScopeLogs { scope, log_records })
                .collect(),
        })
        .collect();
    Ok(ExportLogsServiceRequest { resource_logs })
}

fn json_resource(o: &Map<String, Value>) -> Result<Option<crate::otlp::proto::Resource>, String> {
    match field(o, "resource", "resource") {
        None => Ok(None),
        Some(r) => {
            let r = r.as_object().ok_or("expected an object")?;
            Ok(Some(crate::otlp::proto::Resource {
                attributes: key_values(field(r, "attributes", "attributes"))?,
                dropped_attributes_count: 0,
            }))
        }
    }
}

fn json_record(v: &Value) -> Result<LogRecord, String> {
    let o = v.as_object().ok_or("expected an object")?;
    let body = match field(o, "body", "body") {
        None => None,
        Some(b) => Some(crate::otlp::json_any(b, "body")?),
    };
    Ok(LogRecord {
        time_unix_nano: json_u64(field(o, "timeUnixNano", "time_unix_nano"), "timeUnixNano")?,
        observed_time_unix_nano: json_u64(
            field(o, "observedTimeUnixNano", "observed_time_unix_nano"),
            "observedTimeUnixNano",
        )?,
        severity_number: json_enum(field(o, "severityNumber", "severity_number"), &[], "severityNumber")?,
        severity_text: json_str(field(o, "severityText", "severity_text"), "severityText")?.to_owned(),
        body,
        attributes: key_values(field(o, "attributes", "attributes"))?,
        dropped_attributes_count: json_u32(
            field(o, "droppedAttributesCount", "dropped_attributes_count"),
            "droppedAttributesCount",
        )?,
        flags: json_u32(field(o, "flags", "flags"), "flags")?,
        trace_id: json_id(field(o, "traceId", "trace_id"), "traceId")?,
        span_id: json_id(field(o, "spanId", "span_id"), "spanId")?,
        event_name: json_str(field(o, "eventName", "event_name"), "eventName")?.to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// metrics

fn metrics_to_events(request: &ExportMetricsServiceRequest) -> Decoded {
    let mut out = Vec::new();
    let mut roots = Roots::new();
    for rm in &request.resource_metrics {
        let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                metric_to_events(resource, sm.scope.as_ref(), m, &mut out, &mut roots);
            }
        }
    }
    add_roots(roots, &mut out);
    out
}

/// A data point reduced to what an event keeps.
struct Point<'a> {
    attributes: &'a [KeyValue],
    start: u64,
    time: u64,
    values: Vec<(&'static str, Any)>,
    debug: String,
}

fn number_point(p: &NumberDataPoint) -> Point<'_> {
    let value = match (p.as_int, p.as_double) {
        (Some(i), _) => Some(Any::IntValue(i)),
        (None, Some(d)) if d.is_finite() => Some(Any::DoubleValue(d)),
        (None, Some(d)) => Some(Any::StringValue(d.to_string())),
        (None, None) => None,
    };
    Point {
        attributes: &p.attributes,
        start: p.start_time_unix_nano,
        time: p.time_unix_nano,
        values: value.map(|v| ("metric.value", v)).into_iter().collect(),
        debug: format!("{p:?}"),
    }
}

fn distribution(
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) -> Vec<(&'static str, Any)> {
    let mut v = vec![("metric.count", Any::IntValue(i64::try_from(count).unwrap_or(i64::MAX)))];
    for (key, value) in [("metric.sum", sum), ("metric.min", min), ("metric.max", max)] {
        if let Some(x) = value.filter(|x| x.is_finite()) {
            v.push((key, Any::DoubleValue(x)));
        }
    }
    v
}

fn histogram_point(p: &HistogramDataPoint) -> Point<'_> {
    Point {
        attributes: &p.attributes,
        start: p.start_time_unix_nano,
        time: p.time_unix_nano,
        values: distribution(p.count, p.sum, p.min, p.max),
        debug: format!("{p:?}"),
    }
}

fn temporality(t: i32) -> &'static str {
    match t {
        1 => "delta",
        2 => "cumulative",
        _ => "unspecified",
    }
}

fn metric_to_events(
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    m: &Metric,
    out: &mut Decoded,
    roots: &mut Roots,
) {
    let (kind, temporality, points): (&str, Option<i32>, Vec<Point<'_>>) = if let Some(g) = &m.gauge {
        ("gauge", None, g.data_points.iter().map(number_point).collect())
    } else if let Some(sum) = &m.sum {
        ("sum", Some(sum.aggregation_temporality), sum.data_points.iter().map(number_point).collect())
    } else if let Some(h) = &m.histogram {
        ("histogram", Some(h.aggregation_temporality), h.data_points.iter().map(histogram_point).collect())
    } else if let Some(h) = &m.exponential_histogram {
        let points = h
            .data_points
            .iter()
            .map(|p| Point {
                attributes: &p.attributes,
                start: p.start_time_unix_nano,
                time: p.time_unix_nano,
                values: distribution(p.count, p.sum, p.min, p.max),
                debug: format!("{p:?}"),
            })
            .collect();
        ("exponential_histogram", Some(h.aggregation_temporality), points)
    } else if let Some(sm) = &m.summary {
        let points = sm
            .data_points
            .iter()
            .map(|p| Point {
                attributes: &p.attributes,
                start: p.start_time_unix_nano,
                time: p.time_unix_nano,
                values: distribution(p.count, Some(p.sum), None, None),
                debug: format!("{p:?}"),
            })
            .collect();
        ("summary", None, points)
    } else {
        out.push(Err(format!("metric {:?} has no data (gauge, sum, histogram or summary)", m.name)));
        return;
    };
    for p in points {
        out.push(point_to_event(resource, scope, m, kind, temporality, p, roots));
    }
}

fn point_to_event(
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    m: &Metric,
    kind: &str,
    temporality_code: Option<i32>,
    p: Point<'_>,
    roots: &mut Roots,
) -> Result<Event, String> {
    if p.time == 0 {
        return Err(format!("a point of metric {:?} has no timeUnixNano", m.name));
    }
    if m.name.is_empty() {
        return Err("a metric has no name".to_owned());
    }
    let mut attributes = p.attributes.to_vec();
    attributes.push(kv("helix.span.kind", s("other")));
    attributes.push(kv("metric.type", s(kind)));
    if !m.unit.is_empty() {
        attributes.push(kv("metric.unit", s(m.unit.clone())));
    }
    if let Some(t) = temporality_code {
        attributes.push(kv("metric.temporality", s(temporality(t))));
    }
    if p.start != 0 {
        attributes
            .push(kv("metric.start_unix_nanos", Any::IntValue(i64::try_from(p.start).unwrap_or(i64::MAX))));
    }
    for (key, value) in p.values {
        attributes.push(kv(key, value));
    }
    let (trace_id, parent) = derived_trace(resource, p.attributes, p.time, roots);
    let span_id = derived_span(&[&hex::encode(&trace_id), &m.name, &m.unit, kind, &p.debug]);
    let span = Span {
        trace_id,
        span_id,
        parent_span_id: parent,
        name: m.name.clone(),
        start_time_unix_nano: p.time,
        end_time_unix_nano: p.time,
        attributes,
        ..Default::default()
    };
    span_to_event(resource, scope, &span)
}

fn json_metrics(root: &Map<String, Value>) -> Result<ExportMetricsServiceRequest, String> {
    let names =
        [("resourceMetrics", "resource_metrics"), ("scopeMetrics", "scope_metrics"), ("metrics", "metrics")];
    let resource_metrics = json_envelope(root, names, json_metric)?
        .into_iter()
        .map(|(resource, scopes)| proto::ResourceMetrics {
            resource,
            scope_metrics: scopes
                .into_iter()
                .map(|(scope, metrics)| proto::ScopeMetrics { scope, metrics })
                .collect(),
        })
        .collect();
    Ok(ExportMetricsServiceRequest { resource_metrics })
}

const TEMPORALITIES: [&str; 3] = [
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
];

fn points<'a>(data: &'a Map<String, Value>, what: &str) -> Result<&'a [Value], String> {
    array(field(data, "dataPoints", "data_points")).map_err(|e| format!("{what}.dataPoints: {e}"))
}

fn opt_f64(o: &Map<String, Value>, json: &str, proto: &str) -> Result<Option<f64>, String> {
    field(o, json, proto).filter(|v| !v.is_null()).map(|v| json_f64(v, json)).transpose()
}

fn json_number_point(v: &Value) -> Result<NumberDataPoint, String> {
    let o = v.as_object().ok_or("a data point is not an object")?;
    Ok(NumberDataPoint {
        attributes: key_values(field(o, "attributes", "attributes"))?,
        start_time_unix_nano: json_u64(
            field(o, "startTimeUnixNano", "start_time_unix_nano"),
            "startTimeUnixNano",
        )?,
        time_unix_nano: json_u64(field(o, "timeUnixNano", "time_unix_nano"), "timeUnixNano")?,
        as_double: opt_f64(o, "asDouble", "as_double")?,
        as_int: field(o, "asInt", "as_int")
            .filter(|v| !v.is_null())
            .map(|v| json_i64(v, "asInt"))
            .transpose()?,
    })
}

/// Any distribution point (histogram, exponential histogram, summary) as a histogram point:
/// the fields events keep are the same.
fn json_dist_point(v: &Value) -> Result<HistogramDataPoint, String> {
    let o = v.as_object().ok_or("a data point is not an object")?;
    Ok(HistogramDataPoint {
        attributes: key_values(field(o, "attributes", "attributes"))?,
        start_time_unix_nano: json_u64(
            field(o, "startTimeUnixNano", "start_time_unix_nano"),
            "startTimeUnixNano",
        )?,
        time_unix_nano: json_u64(field(o, "timeUnixNano", "time_unix_nano"), "timeUnixNano")?,
        count: json_u64(field(o, "count", "count"), "count")?,
        sum: opt_f64(o, "sum", "sum")?,
        min: opt_f64(o, "min", "min")?,
        max: opt_f64(o, "max", "max")?,
    })
}

fn json_metric(v: &Value) -> Result<Metric, String> {
    let o = v.as_object().ok_or("expected an object")?;
    let data = |json: &str, proto: &str| -> Result<Option<&Map<String, Value>>, String> {
        field(o, json, proto)
            .map(|d| d.as_object().ok_or_else(|| format!("{json} must be an object")))
            .transpose()
    };
    let temporality = |d: &Map<String, Value>| {
        json_enum(
            field(d, "aggregationTemporality", "aggregation_temporality"),
            &TEMPORALITIES,
            "aggregationTemporality",
        )
    };
    let mut m = Metric {
        name: json_str(field(o, "name", "name"), "name")?.to_owned(),
        description: json_str(field(o, "description", "description"), "description")?.to_owned(),
        unit: json_str(field(o, "unit", "unit"), "unit")?.to_owned(),
        ..Default::default()
    };
    if let Some(d) = data("gauge", "gauge")? {
        m.gauge = Some(proto::Gauge {
            data_points: points(d, "gauge")?.iter().map(json_number_point).collect::<Result<_, _>>()?,
        });
    } else if let Some(d) = data("sum", "sum")? {
        m.sum = Some(proto::Sum {
            data_points: points(d, "sum")?.iter().map(json_number_point).collect::<Result<_, _>>()?,
            aggregation_temporality: temporality(d)?,
            is_monotonic: matches!(field(d, "isMonotonic", "is_monotonic"), Some(Value::Bool(true))),
        });
    } else if let Some(d) = data("histogram", "histogram")? {
        let data_points =
            points(d, "histogram")?.iter().map(json_dist_point).collect::<Result<_, String>>()?;
        m.histogram = Some(proto::Histogram { data_points, aggregation_temporality: temporality(d)? });
    } else if let Some(d) = data("exponentialHistogram", "exponential_histogram")? {
        let data_points = points(d, "exponentialHistogram")?
            .iter()
            .map(|p| {
                let p = json_dist_point(p)?;
                Ok(proto::ExponentialHistogramDataPoint {
                    attributes: p.attributes,
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                })
            })
            .collect::<Result<_, String>>()?;
        m.exponential_histogram =
            Some(proto::ExponentialHistogram { data_points, aggregation_temporality: temporality(d)? });
    } else if let Some(d) = data("summary", "summary")? {
        let data_points = points(d, "summary")?
            .iter()
            .map(|p| {
                let p = json_dist_point(p)?;
                Ok(proto::SummaryDataPoint {
                    attributes: p.attributes,
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum.unwrap_or(0.0),
                })
            })
            .collect::<Result<_, String>>()?;
        m.summary = Some(proto::Summary { data_points });
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;
    use helix_core::trace::{SpanKind, SpanStatus};

    fn string_kv(k: &str, v: &str) -> KeyValue {
        kv(k, s(v))
    }

    fn resource(attrs: Vec<KeyValue>) -> Option<crate::otlp::proto::Resource> {
        Some(crate::otlp::proto::Resource { attributes: attrs, dropped_attributes_count: 0 })
    }

    const T: u64 = 1_764_000_000_000_000_000;

    #[test]
    fn protobuf_logs_in_a_span_hang_under_it_and_others_under_their_day() {
        let traced = LogRecord {
            time_unix_nano: T,
            severity_number: 17,
            body: Some(AnyValue { value: Some(s("disk full\nmore detail")) }),
            trace_id: vec![7; 16],
            span_id: vec![9; 8],
            ..Default::default()
        };
        let loose = LogRecord {
            observed_time_unix_nano: T + 5,
            severity_text: "WARN".into(),
            body: Some(AnyValue { value: Some(s("cache cold")) }),
            ..Default::default()
        };
        let body = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(vec![string_kv("service.name", "api")]),
                scope_logs: vec![ScopeLogs { scope: None, log_records: vec![traced, loose] }],
            }],
        }
        .encode_to_vec();
        let decoded = Signal::Logs.decode_protobuf(&body).expect("decode");
        let events: Vec<&Event> = decoded.iter().map(|d| d.as_ref().expect("valid")).collect();
        assert_eq!(events.len(), 3, "two records and the day's run");
        let (a, b, root) = (events[0], events[1], events[2]);
        assert_eq!(a.trace_id, "07".repeat(16));
        assert_eq!(a.parent_span_id.as_deref(), Some("09".repeat(8).as_str()));
        assert_eq!((a.name.as_str(), a.status, a.kind), ("disk full", SpanStatus::Error, SpanKind::Other));
        assert_eq!(a.text("log.severity"), Some("ERROR"));
        assert_eq!(a.text("log.body"), Some("disk full\nmore detail"));
        assert_eq!(a.project.as_deref(), Some("api"));
        assert_eq!((b.start_unix_nanos, b.status), (T + 5, SpanStatus::Unset), "observed time stands in");
        assert_eq!(b.text("log.severity"), Some("WARN"));
        assert_eq!((root.kind, root.name.as_str()), (SpanKind::Run, "api day 2025-11-24"));
        assert_eq!(b.parent_span_id.as_deref(), Some(root.span_id.as_str()));
        assert_eq!(b.trace_id, root.trace_id);
        // the same body again gives the same ids: a resend is a duplicate
        let again = Signal::Logs.decode_protobuf(&body).expect("decode");
        let ids =
            |d: &Decoded| d.iter().map(|e| e.as_ref().map(|e| e.span_id.clone()).ok()).collect::<Vec<_>>();
        assert_eq!(ids(&decoded), ids(&again));
    }

    #[test]
    fn protobuf_metrics_of_every_kind_become_points() {
        let session = || vec![string_kv("session.id", "s9")];
        let metric = |name: &str| Metric { name: name.into(), unit: "1".into(), ..Default::default() };
        let mut sum = metric("runs");
        sum.sum = Some(Sum {
            data_points: vec![NumberDataPoint {
                attributes: session(),
                start_time_unix_nano: T,
                time_unix_nano: T + 10,
                as_int: Some(4),
                ..Default::default()
            }],
            aggregation_temporality: 2,
            is_monotonic: true,
        });
        let mut hist = metric("latency");
        hist.histogram = Some(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: session(),
                time_unix_nano: T + 10,
                count: 3,
                sum: Some(6.0),
                min: Some(0.5),
                max: Some(4.0),
                ..Default::default()
            }],
            aggregation_temporality: 1,
        });
        let mut summary = metric("gc");
        summary.summary = Some(Summary {
            data_points: vec![SummaryDataPoint {
                attributes: session(),
                time_unix_nano: T + 10,
                count: 2,
                sum: 1.5,
                ..Default::default()
            }],
        });
        let empty = metric("nothing");
        let body = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(vec![string_kv("service.name", "svc")]),
                scope_metrics: vec![ScopeMetrics { scope: None, metrics: vec![sum, hist, summary, empty] }],
            }],
        }
        .encode_to_vec();
        let decoded = Signal::Metrics.decode_protobuf(&body).expect("decode");
        assert_eq!(decoded.len(), 5, "three points, one error, the session's run");
        let ok: Vec<&Event> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
        assert!(decoded[3].as_ref().is_err_and(|e| e.contains("no data")));
        assert_eq!(ok[0].attributes["metric.value"], serde_json::json!(4));
        assert_eq!(ok[0].text("metric.temporality"), Some("cumulative"));
        assert_eq!(ok[1].attributes["metric.max"], serde_json::json!(4.0));
        assert_eq!(ok[1].text("metric.temporality"), Some("delta"));
        assert_eq!(ok[2].attributes["metric.sum"], serde_json::json!(1.5));
        assert_eq!(ok[3].name, "svc session s9");
        assert!(ok[..3].iter().all(
            |e| e.kind == SpanKind::Other && e.parent_span_id.as_deref() == Some(ok[3].span_id.as_str())
        ));
        assert!(ok.iter().all(|e| e.number(attr::HELIX_COST_USD).is_none()), "metrics are never cost");
    }

    #[test]
    fn bad_bodies_are_errors_never_panics() {
        assert!(Signal::Logs.decode_protobuf(&[0xff, 0xff, 0xff]).is_err());
        assert!(Signal::Metrics.decode_json(b"[1]").is_err());
        assert!(
            Signal::Logs
                .decode_json(
                    br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "x"}]}]}]}"#
                )
                .is_err()
        );
        let json = Signal::Logs.response_json(2, "log record 1: no time");
        assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "2");
        assert!(Signal::Metrics.response_protobuf(0, "").is_empty());
    }
}
