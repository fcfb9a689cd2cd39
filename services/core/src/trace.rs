//! The trace event schema: one format for every step of every run.
//!
//! A trace is one run of a project; its spans are phases, tool calls, LLM calls, gate checks,
//! retries, fallbacks, circuit changes and heal attempts. Every service emits these events and
//! the trace-collector stores them; OpenTelemetry spans map onto them one to one (ids, names,
//! times, status, attributes), so anything an OTel SDK sends can be stored and anything stored
//! can be exported again. LLM calls use the OpenTelemetry GenAI attribute names (see [`attr`]).
//!
//! Versioned: `schema_version` is 1. A change that breaks readers is a new version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Version of this schema.
pub const SCHEMA_VERSION: u32 = 1;

/// Attribute names with a fixed meaning (OpenTelemetry GenAI semantic conventions, plus ours).
pub mod attr {
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
    pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    /// Cost of the span in US dollars.
    pub const HELIX_COST_USD: &str = "helix.cost_usd";
    /// A short summary of a tool call's arguments and result, for the trace browser.
    pub const HELIX_TOOL_ARGUMENTS: &str = "helix.tool.arguments";
    pub const HELIX_TOOL_RESULT: &str = "helix.tool.result";
    /// Audit events (see [`super::audit_event`]).
    pub const HELIX_AUDIT_ACTION: &str = "helix.audit.action";
    pub const HELIX_AUDIT_ACTOR: &str = "helix.audit.actor";
    pub const HELIX_AUDIT_TARGET: &str = "helix.audit.target";
}

/// What a span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// A whole run of a pipeline (the root span of a trace).
    Run,
    Phase,
    /// `execute_tool {gen_ai.tool.name}`.
    ToolCall,
    /// A chat or completion call (`gen_ai.*` attributes).
    LlmCall,
    Gate,
    Retry,
    Fallback,
    /// A circuit breaker changing state.
    Circuit,
    Heal,
    Other,
}

/// Outcome of a span (OpenTelemetry's status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    #[default]
    Unset,
    Ok,
    Error,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Schema version (1); may be omitted on ingest.
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    /// 32 lowercase hex digits, not all zero.
    #[schema(example = "4bf92f3577b34da6a3ce929d0e0e4736")]
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero.
    #[schema(example = "00f067aa0ba902b7")]
    pub span_id: String,
    /// The parent span; absent for the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// Readable name, e.g. `phase development`, `execute_tool bash`, `chat claude-sonnet`.
    #[schema(example = "execute_tool bash")]
    pub name: String,
    pub kind: SpanKind,
    /// Start, Unix time in nanoseconds.
    #[serde(deserialize_with = "crate::json::lenient_int")]
    #[schema(example = 1764082800000000000u64)]
    pub start_unix_nanos: u64,
    /// End, Unix time in nanoseconds; not before the start.
    #[serde(deserialize_with = "crate::json::lenient_int")]
    #[schema(example = 1764082801500000000u64)]
    pub end_unix_nanos: u64,
    #[serde(default)]
    pub status: SpanStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "webshop")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "development")]
    pub phase: Option<String>,
    /// A readable run name (the trace id identifies it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Attributes: strings, numbers, booleans, or arrays of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object, example = json!({"gen_ai.tool.name": "bash", "helix.cost_usd": 0.0012}))]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

/// An audit record of an operator action (a breaker command, a run cancelled or resumed, a fix
/// recorded) as a span of its own trace: who (`helix.audit.actor`, the token's id, never its
/// value), what (`helix.audit.action`) and on what (`helix.audit.target`). Listed by
/// `GET /v1/traces?project=…` like any span; search for names starting with `audit `.
pub fn audit_event(action: &str, actor: &str, target: &str, project: Option<&str>) -> Event {
    let now = u64::try_from(crate::time::now_ms()).unwrap_or(0).saturating_mul(1_000_000);
    let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    let mut attributes = BTreeMap::new();
    attributes.insert(attr::HELIX_AUDIT_ACTION.to_owned(), serde_json::Value::from(clip(action, 128)));
    attributes.insert(attr::HELIX_AUDIT_ACTOR.to_owned(), serde_json::Value::from(clip(actor, 256)));
    attributes.insert(attr::HELIX_AUDIT_TARGET.to_owned(), serde_json::Value::from(clip(target, 1024)));
    Event {
        schema_version: SCHEMA_VERSION,
        trace_id: crate::ids::new_trace_id(),
        span_id: crate::ids::new_span_id(),
        parent_span_id: None,
        name: clip(&format!("audit {action}"), MAX_NAME),
        kind: SpanKind::Other,
        start_unix_nanos: now,
        end_unix_nanos: now,
        status: SpanStatus::Ok,
        status_message: None,
        project: project.filter(|p| !p.is_empty()).map(|p| clip(p, MAX_NAME)),
        phase: None,
        run: None,
        domain: Some("audit".to_owned()),
        attributes,
    }
}

/// Longest name, project, phase, run or domain accepted.
pub const MAX_NAME: usize = 512;
/// Most attributes on one event.
pub const MAX_ATTRIBUTES: usize = 256;
/// Longest string attribute value kept; longer ones are cut to it ([`Event::clamp`]), as
/// OpenTelemetry SDKs cut values over their attribute length limit.
pub const MAX_ATTRIBUTE_BYTES: usize = 64 * 1024;
/// How far in the future a span may start (clock skew): a span of the year 2554 would stay at
/// the top of every "newest" list.
pub const MAX_FUTURE_NANOS: u64 = 24 * 3600 * 1_000_000_000;

/// Whether `s` is exactly `len` lowercase hex digits (the form of trace ids, span ids and
/// signatures on the wire).
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An id: lowercase hex of the right length, not all zero (OpenTelemetry's invalid id).
fn is_hex_id(s: &str, len: usize) -> bool {
    is_lower_hex(s, len) && s.bytes().any(|b| b != b'0')
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
    }
}

/// `s` cut to at most [`MAX_ATTRIBUTE_BYTES`] at a character boundary, ending in `…` when cut.
fn clamp_text(s: &mut String) -> bool {
    if s.len() <= MAX_ATTRIBUTE_BYTES {
        return false;
    }
    let mut end = MAX_ATTRIBUTE_BYTES - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    true
}

impl Event {
    /// Cuts string attributes (and strings in array attributes) longer than
    /// [`MAX_ATTRIBUTE_BYTES`] instead of refusing the whole span; returns how many were cut.
    pub fn clamp(&mut self) -> usize {
        let mut cut = 0;
        for v in self.attributes.values_mut() {
            match v {
                serde_json::Value::String(s) => cut += usize::from(clamp_text(s)),
                serde_json::Value::Array(items) => {
                    for i in items.iter_mut() {
                        if let serde_json::Value::String(s) = i {
                            cut += usize::from(clamp_text(s));
                        }
                    }
                }
                _ => {}
            }
        }
        cut
    }

    /// Why this event cannot be stored, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema_version {} is not supported (expected {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        if !is_hex_id(&self.trace_id, 32) {
            return Err("trace_id must be 32 lowercase hex digits, not all zero".to_owned());
        }
        if !is_hex_id(&self.span_id, 16) {
            return Err("span_id must be 16 lowercase hex digits, not all zero".to_owned());
        }
        if let Some(p) = &self.parent_span_id {
            if !is_hex_id(p, 16) {
                return Err("parent_span_id must be 16 lowercase hex digits, not all zero".to_owned());
            }
            if *p == self.span_id {
                return Err("parent_span_id equals span_id".to_owned());
            }
        }
        if self.name.trim().is_empty() {
            return Err("name must not be empty".to_owned());
        }
        for (field, v) in [
            ("name", Some(&self.name)),
            ("project", self.project.as_ref()),
            ("phase", self.phase.as_ref()),
            ("run", self.run.as_ref()),
            ("domain", self.domain.as_ref()),
        ] {
            if v.is_some_and(|v| v.len() > MAX_NAME) {
                return Err(format!("{field} is longer than {MAX_NAME} bytes"));
            }
        }
        if self.end_unix_nanos < self.start_unix_nanos {
            return Err("end_unix_nanos is before start_unix_nanos".to_owned());
        }
        let now = u64::try_from(crate::time::now_ms()).unwrap_or(0).saturating_mul(1_000_000);
        if self.start_unix_nanos > now.saturating_add(MAX_FUTURE_NANOS) {
            return Err(format!(
                "start_unix_nanos {} lies more than 24 h in the future (a clock or unit error?)",
                self.start_unix_nanos
            ));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(format!("more than {MAX_ATTRIBUTES} attributes"));
        }
        for (k, v) in &self.attributes {
            let long = |s: &str| s.len() > MAX_ATTRIBUTE_BYTES;
            let problem = match v {
                serde_json::Value::String(s) if long(s) => Some("is longer than 65536 bytes".to_owned()),
                serde_json::Value::String(_) | serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                    None
                }
                serde_json::Value::Array(items) => items.iter().find_map(|i| match i {
                    serde_json::Value::Number(_) | serde_json::Value::Bool(_) => None,
                    serde_json::Value::String(s) if !long(s) => None,
                    serde_json::Value::String(_) => Some("holds a string longer than 65536 bytes".to_owned()),
                    other => Some(format!(
                        "holds {}: array items must be strings, numbers or booleans",
                        kind_of(other)
                    )),
                }),
                other => Some(format!(
                    "is {}: values must be strings, numbers, booleans or arrays of them",
                    kind_of(other)
                )),
            };
            if let Some(p) = problem {
                return Err(format!("attribute {k:?} {p}"));
            }
        }
        Ok(())
    }

    /// Duration in nanoseconds.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    /// A numeric attribute.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.attributes.get(key).and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
    }

    /// A string attribute.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(|v| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_far_future_spans_refused() {
        let mut e = event();
        e.attributes.insert("helix.tool.result".to_owned(), serde_json::json!("é".repeat(40_000)));
        e.attributes.insert("list".to_owned(), serde_json::json!(["x".repeat(70_000), 1]));
        assert!(e.validate().is_err_and(|m| m.contains("longer than 65536 bytes")));
        assert_eq!(e.clamp(), 2);
        assert_eq!(e.validate(), Ok(()));
        let kept = e.text("helix.tool.result").expect("kept");
        assert!(kept.len() <= MAX_ATTRIBUTE_BYTES && kept.ends_with('…'), "{}", kept.len());
        assert_eq!(e.clamp(), 0, "nothing left to cut");
        // objects and nulls are named as what they are
        let mut o = event();
        o.attributes.insert("nested".to_owned(), serde_json::json!({"a": 1}));
        assert!(o.validate().is_err_and(|m| m.contains("is an object")), "{:?}", o.validate());
        // the year 2554 is refused; a minute ahead (clock skew) is fine
        let now = u64::try_from(crate::time::now_ms()).expect("now") * 1_000_000;
        let mut f = event();
        f.start_unix_nanos = 18_446_000_000_000_000_000;
        f.end_unix_nanos = f.start_unix_nanos;
        assert!(f.validate().is_err_and(|m| m.contains("in the future")));
        f.start_unix_nanos = now + 60_000_000_000;
        f.end_unix_nanos = f.start_unix_nanos + 1;
        assert_eq!(f.validate(), Ok(()));
    }

    fn event() -> Event {
        serde_json::from_value(serde_json::json!({
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "name": "execute_tool bash",
            "kind": "tool_call",
            "start_unix_nanos": 1_764_082_800_000_000_000u64,
            "end_unix_nanos": 1_764_082_801_500_000_000u64,
            "project": "webshop",
            "attributes": {"gen_ai.tool.name": "bash", "helix.cost_usd": 0.5}
        }))
        .expect("valid event")
    }

    #[test]
    fn valid_event_and_its_helpers() {
        let e = event();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.schema_version, 1);
        assert_eq!(e.status, SpanStatus::Unset);
        assert_eq!(e.duration_nanos(), 1_500_000_000);
        assert_eq!(e.number(attr::HELIX_COST_USD), Some(0.5));
        assert_eq!(e.text(attr::GEN_AI_TOOL_NAME), Some("bash"));
    }

    #[test]
    fn audit_events_are_valid_and_name_the_actor() {
        let e = audit_event("breaker.force_open", "ops-token", "openai-gpt", None);
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.name, "audit breaker.force_open");
        assert_eq!(e.text(attr::HELIX_AUDIT_ACTOR), Some("ops-token"));
        assert_eq!(e.text(attr::HELIX_AUDIT_TARGET), Some("openai-gpt"));
        let e = audit_event("run.cancel", &"x".repeat(10_000), "r", Some("shop"));
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.project.as_deref(), Some("shop"));
    }

    #[test]
    fn invalid_events_say_why() {
        let mut e = event();
        e.trace_id = "0".repeat(32);
        assert!(e.validate().expect_err("zero id").contains("trace_id"));
        let mut e = event();
        e.span_id = "XYZ".to_owned();
        assert!(e.validate().expect_err("bad id").contains("span_id"));
        let mut e = event();
        e.end_unix_nanos = 1;
        assert!(e.validate().expect_err("order").contains("before"));
        let mut e = event();
        e.attributes.insert("nested".to_owned(), serde_json::json!({"a": 1}));
        assert!(e.validate().expect_err("nested").contains("nested"));
        assert!(serde_json::from_value::<Event>(serde_json::json!({"trace_id": "x", "extra": 1})).is_err());
    }
}
