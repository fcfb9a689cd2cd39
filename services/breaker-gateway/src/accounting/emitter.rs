//! The gateway's trace events: one span per proxied call, one per breaker transition, sent
//! through the shared batching [`Emitter`] of `helix_core::emit`.
//!
//! [`llm_call_event`] builds the span of one proxied call with the OpenTelemetry GenAI attribute
//! names, in the client's trace when it sent a W3C `traceparent`. [`circuit_event`] records a
//! breaker transition as a span of kind `circuit`. Both are built with helix-core's
//! [`SpanBuilder`], the one builder every service's spans go through, so text that came from a
//! client (a model name, an upstream's error) is clipped rather than making the event invalid.
//! Events carry model names, counts, ids and statuses only: never API keys, prompts or
//! completions.

use helix_core::gateway_config::ProviderKind;
use helix_core::span::SpanBuilder;
use helix_core::trace::{Event, SCHEMA_VERSION, SpanKind, SpanStatus, attr, is_lower_hex};
use serde::Serialize;

pub use helix_core::emit::{BATCH, Emitter, EmitterStats, MAX_QUEUED_BYTES, SEND_EVERY};

use crate::breaker::Change;
use crate::protocol::Protocol;
use crate::protocol::usage::Usage;

/// Attribute names of the gateway's spans that [`attr`] does not have.
pub mod names {
    /// OpenTelemetry GenAI: input tokens written to the provider's prompt cache.
    pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
    /// OpenTelemetry HTTP: the upstream's status code.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub const DEPLOYMENT: &str = "helix.gateway.deployment";
    /// The deployment the call fell back from.
    pub const FALLBACK_FROM: &str = "helix.gateway.fallback_from";
    /// Attempts made on the deployment that answered (1 without retries).
    pub const ATTEMPTS: &str = "helix.gateway.attempts";
    pub const STREAMING: &str = "helix.gateway.streaming";
    /// The protocol the client spoke (`openai` or `anthropic`).
    pub const CLIENT_PROTOCOL: &str = "helix.gateway.client_protocol";
    pub const CIRCUIT_FROM: &str = "helix.circuit.from";
    pub const CIRCUIT_TO: &str = "helix.circuit.to";
    pub const CIRCUIT_REASON: &str = "helix.circuit.reason";
}

/// A new random trace id (32 lowercase hex digits, never all zero).
pub fn new_trace_id() -> String {
    let id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
    format!("{:032x}", id.max(1))
}

/// A new random span id (16 lowercase hex digits, never all zero).
pub fn new_span_id() -> String {
    format!("{:016x}", random_u64().max(1))
}

/// Random numbers for trace and span ids: SplitMix64 per thread, seeded from the operating
/// system once. Every call took two `getrandom` system calls before (one per id); ids need to be
/// unique and unpredictable enough not to collide, not secret, and SplitMix64 never repeats an
/// output within its 2^64 period.
fn random_u64() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(uuid::Uuid::new_v4().as_u128() as u64);
    }
    STATE.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// Where one proxied call sits in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    /// The client's span, from its `traceparent`.
    pub parent_span_id: Option<String>,
    /// The gateway's span for this call (fresh).
    pub span_id: String,
    /// The client's trace flags (`01` = sampled); a new trace is sampled.
    pub flags: u8,
}

impl TraceContext {
    /// The context of a call whose request had `traceparent` (W3C Trace Context) with this value;
    /// a new trace when it is absent or invalid.
    pub fn from_traceparent(header: Option<&str>) -> TraceContext {
        match header.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => {
                TraceContext { trace_id, parent_span_id: Some(parent), span_id: new_span_id(), flags }
            }
            None => TraceContext::new_root(),
        }
    }

    pub fn new_root() -> TraceContext {
        TraceContext { trace_id: new_trace_id(), parent_span_id: None, span_id: new_span_id(), flags: 1 }
    }

    /// A `traceparent` naming the gateway's span as parent, to pass on to the upstream.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// Parses `version-traceid-parentid-flags` (W3C Trace Context): lowercase hex, ids not all
/// zero, version `ff` invalid, version `00` exactly four fields, later versions may append fields.
pub fn parse_traceparent(value: &str) -> Option<(String, String, u8)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    let hex_id = |s: &str, len: usize| is_lower_hex(s, len) && s.bytes().any(|b| b != b'0');
    if !is_lower_hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    if !hex_id(trace, 32) || !hex_id(parent, 16) || !is_lower_hex(flags, 2) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace.to_owned(), parent.to_owned(), flags))
}

/// `s` cut to at most `max` bytes at a character boundary (event names and model names come
/// from clients; an over-long one must not make the whole event invalid).
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest model name kept in a span.
const MAX_MODEL: usize = 256;

/// One proxied call, as [`llm_call_event`] reports it.
#[derive(Debug, Clone)]
pub struct LlmCall<'a> {
    pub trace: &'a TraceContext,
    pub project: &'a str,
    pub client_protocol: Protocol,
    /// The model the client asked for.
    pub request_model: &'a str,
    /// The provider of the deployment that answered (or was tried last).
    pub provider: ProviderKind,
    /// The model the upstream reported (else the deployment's model).
    pub response_model: Option<&'a str>,
    pub deployment_id: &'a str,
    /// The deployment the call fell back from, when it did.
    pub fallback_from: Option<&'a str>,
    pub attempts: u32,
    /// The upstream's status; `None` when no answer came (connect error, timeout).
    pub status_code: Option<u16>,
    /// Why the call failed, briefly (no prompt, no key, no upstream body).
    pub error: Option<&'a str>,
    pub streaming: bool,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

fn provider_name(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
    }
}

/// The span of one proxied call: name `chat {model}`, kind `llm_call`, OpenTelemetry GenAI
/// attributes. Following OpenTelemetry, `gen_ai.usage.input_tokens` counts all input tokens,
/// cached ones included; the cache reads and writes are also given alone (as the trace-collector's
/// transcript importer does, so both sources sum the same way). Status `ok` for a 2xx answer
/// without error, else `error`.
pub fn llm_call_event(call: &LlmCall<'_>) -> Event {
    let request_model = clip(call.request_model, MAX_MODEL);
    let (ok, status_message) = call_status(call);
    let t = call.trace;
    // optional attributes are `None` (null), which the builder leaves out
    SpanBuilder::new(&t.trace_id, &t.span_id, &format!("chat {request_model}"), SpanKind::LlmCall)
        .parent(t.parent_span_id.as_deref())
        .times(call.start_unix_nanos, call.end_unix_nanos)
        .status(if ok { SpanStatus::Ok } else { SpanStatus::Error }, status_message.as_deref())
        .project(call.project)
        .attr(attr::GEN_AI_OPERATION_NAME, "chat")
        .attr(attr::GEN_AI_PROVIDER_NAME, provider_name(call.provider))
        .attr(attr::GEN_AI_REQUEST_MODEL, request_model)
        .attr(attr::GEN_AI_RESPONSE_MODEL, call.response_model.map(|m| clip(m, MAX_MODEL)))
        .attr(attr::GEN_AI_USAGE_INPUT_TOKENS, call.usage.map(|u| u.total_input_tokens()))
        .attr(attr::GEN_AI_USAGE_OUTPUT_TOKENS, call.usage.map(|u| u.output_tokens))
        .attr(attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, call.usage.map(|u| u.cache_read_tokens))
        .attr(names::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, call.usage.map(|u| u.cache_write_tokens))
        .attr(attr::HELIX_COST_USD, call.cost_usd.filter(|c| c.is_finite()))
        .attr(names::DEPLOYMENT, call.deployment_id)
        .attr(names::FALLBACK_FROM, call.fallback_from)
        .attr(names::ATTEMPTS, call.attempts)
        .attr(names::HTTP_RESPONSE_STATUS_CODE, call.status_code)
        .attr(names::STREAMING, call.streaming)
        .attr(names::CLIENT_PROTOCOL, call.client_protocol.as_str())
        .build()
}

/// Whether the call succeeded, and if not why (the span's status and status message).
fn call_status<'a>(call: &LlmCall<'a>) -> (bool, Option<std::borrow::Cow<'a, str>>) {
    let ok = call.error.is_none() && call.status_code.is_some_and(|s| (200..300).contains(&s));
    let message = match (call.error, call.status_code) {
        _ if ok => None,
        (Some(e), _) => Some(clip(e, 1024).into()),
        (None, Some(s)) => Some(format!("upstream answered {s}").into()),
        (None, None) => Some("no answer from the upstream".into()),
    };
    (ok, message)
}

/// [`llm_call_event`] as the JSON the collector receives, written without building the
/// [`Event`] (its map of attributes costs a dozen allocations, and encoding it again later as
/// much): the same document, key for key (tested), for a fraction of the cost on the request path.
/// Valid by construction: ids come from [`TraceContext`], names and the project are clipped.
pub fn llm_call_json(call: &LlmCall<'_>) -> Vec<u8> {
    use serde::ser::SerializeMap;

    struct Attributes<'a, 'b>(&'a LlmCall<'b>);

    impl Serialize for Attributes<'_, '_> {
        // keys in the order a `BTreeMap` (the `Event`'s attributes) writes them does not matter to
        // a JSON reader; these follow `llm_call_event`
        fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            let call = self.0;
            let mut m = ser.serialize_map(None)?;
            m.serialize_entry(attr::GEN_AI_OPERATION_NAME, "chat")?;
            m.serialize_entry(attr::GEN_AI_PROVIDER_NAME, provider_name(call.provider))?;
            m.serialize_entry(attr::GEN_AI_REQUEST_MODEL, clip(call.request_model, MAX_MODEL))?;
            if let Some(model) = call.response_model {
                m.serialize_entry(attr::GEN_AI_RESPONSE_MODEL, clip(model, MAX_MODEL))?;
            }
            if let Some(u) = call.usage {
                m.serialize_entry(attr::GEN_AI_USAGE_INPUT_TOKENS, &u.total_input_tokens())?;
                m.serialize_entry(attr::GEN_AI_USAGE_OUTPUT_TOKENS, &u.output_tokens)?;
                m.serialize_entry(attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, &u.cache_read_tokens)?;
                m.serialize_entry(names::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, &u.cache_write_tokens)?;
            }
            if let Some(c) = call.cost_usd.filter(|c| c.is_finite()) {
                m.serialize_entry(attr::HELIX_COST_USD, &c)?;
            }
            m.serialize_entry(names::DEPLOYMENT, call.deployment_id)?;
            if let Some(f) = call.fallback_from {
                m.serialize_entry(names::FALLBACK_FROM, f)?;
            }
            m.serialize_entry(names::ATTEMPTS, &call.attempts)?;
            if let Some(s) = call.status_code {
                m.serialize_entry(names::HTTP_RESPONSE_STATUS_CODE, &s)?;
            }
            m.serialize_entry(names::STREAMING, &call.streaming)?;
            m.serialize_entry(names::CLIENT_PROTOCOL, call.client_protocol.as_str())?;
            m.end()
        }
    }

    /// The fields of [`Event`], borrowed; `phase`, `run` and `domain` are never set here.
    #[derive(Serialize)]
    struct Span<'a, 'b> {
        schema_version: u32,
        trace_id: &'a str,
        span_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        parent_span_id: Option<&'a str>,
        name: &'a str,
        kind: SpanKind,
        start_unix_nanos: u64,
        end_unix_nanos: u64,
        status: SpanStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        status_message: Option<&'a str>,
        project: &'a str,
        attributes: Attributes<'a, 'b>,
    }

    let (ok, status_message) = call_status(call);
    let name = format!("chat {}", clip(call.request_model, MAX_MODEL));
    let span = Span {
        schema_version: SCHEMA_VERSION,
        trace_id: &call.trace.trace_id,
        span_id: &call.trace.span_id,
        parent_span_id: call.trace.parent_span_id.as_deref(),
        name: &name,
        kind: SpanKind::LlmCall,
        start_unix_nanos: call.start_unix_nanos,
        end_unix_nanos: call.end_unix_nanos.max(call.start_unix_nanos),
        status: if ok { SpanStatus::Ok } else { SpanStatus::Error },
        status_message: status_message.as_deref(),
        project: clip(call.project, helix_core::trace::MAX_NAME),
        attributes: Attributes(call),
    };
    let mut out = Vec::with_capacity(768);
    // writing to a Vec cannot fail, and every field serialises
    let _ = serde_json::to_writer(&mut out, &span);
    out
}

/// A breaker transition of `deployment` at `at_unix_nanos`, as a zero-length span of kind
/// `circuit` (the schema has one for exactly this). When a call's outcome caused it, pass that
/// call's context: the span joins the call's trace as a child of the call's span. Otherwise it
/// is a trace of its own.
pub fn circuit_event(
    deployment: &str,
    change: &Change,
    at_unix_nanos: u64,
    caused_by: Option<&TraceContext>,
) -> Event {
    let trace_id = caused_by.map_or_else(new_trace_id, |t| t.trace_id.clone());
    let name = format!("circuit {deployment} {}", change.to.as_str());
    SpanBuilder::new(&trace_id, &new_span_id(), &name, SpanKind::Circuit)
        .parent(caused_by.map(|t| t.span_id.as_str()))
        .times(at_unix_nanos, at_unix_nanos)
        .attr(names::DEPLOYMENT, deployment)
        .attr(names::CIRCUIT_FROM, change.from.as_str())
        .attr(names::CIRCUIT_TO, change.to.as_str())
        .attr(names::CIRCUIT_REASON, clip(&change.reason, 1024))
        .build()
}

#[cfg(test)]
mod tests;
