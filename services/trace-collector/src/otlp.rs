//! OTLP/HTTP trace codec: OpenTelemetry's wire format in and out of Helix [`Event`]s.
//!
//! Why: speaking OTLP means any OpenTelemetry SDK or collector can export to the trace-collector
//! (`POST /v1/traces`, protobuf or JSON) without a Helix-specific client, and users who outgrow
//! one machine can forward what Helix stored to Jaeger, Tempo or another collector unchanged.
//!
//! This module is domain logic only (no HTTP, no IO): bytes in, events out, and back.
//!
//! # Decoding (OTLP span → [`Event`])
//! - Ids become lowercase hex. An empty or all-zero `parent_span_id` means "root" (OTel's
//!   invalid span id), so the event has no parent.
//! - `kind`, first rule that applies:
//!   1. attribute `helix.span.kind` (a [`SpanKind`] snake_case name) wins; an unknown name makes
//!      the span invalid, since it is an explicit statement we would otherwise silently ignore;
//!   2. `gen_ai.operation.name` = `execute_tool` → `tool_call`;
//!   3. `gen_ai.operation.name` = `invoke_agent` / `create_agent` → `other`: an agent span wraps
//!      many LLM and tool calls (and may carry their summed usage), counting it as an LLM call
//!      would count tokens and cost twice;
//!   4. any other `gen_ai.operation.name` (`chat`, `text_completion`, `generate_content`,
//!      `embeddings`, future ones) → `llm_call`;
//!   5. a `gen_ai.tool.name` attribute without an operation name → `tool_call`;
//!   6. otherwise `other`, root spans included: an OTel root span is usually an HTTP request or a
//!      script, not a Helix run, so `run` only comes from `helix.span.kind`.
//! - Status codes 0/1/2 → unset/ok/error (unknown codes → unset); the message is kept.
//! - `project`, `phase`, `run`, `domain`: span attribute `helix.<name>`, else the resource's
//!   `helix.<name>`; `project` finally falls back to the resource's `service.name`.
//! - Attributes: the span's attributes, then its resource's (`deployment.environment`,
//!   `host.name`, `service.version`…: what a user filters by), a span's own value winning when
//!   both name a key. The keys that came from the resource are listed in `otel.resource.keys`,
//!   so export puts them back on a resource. `service.name` is kept only when it is not the
//!   project (it is the project otherwise). The keys `helix.span.kind`, `helix.project`,
//!   `helix.phase`, `helix.run` and `helix.domain` are consumed into fields. Values become JSON
//!   scalars or arrays of scalars: ints and doubles stay numbers (so token counts are numbers),
//!   bytes become base64 strings, key-value lists and nested arrays become a JSON-encoded string,
//!   non-finite doubles become the strings `NaN`, `inf`, `-inf`, empty values are skipped.
//! - Limits follow OTel's own attribute limits rather than rejecting the span: strings longer
//!   than [`MAX_ATTRIBUTE_BYTES`] are truncated, attributes beyond the limit are dropped and
//!   counted in `otel.dropped_attributes_count` (added to the span's own dropped count).
//! - Span events are kept compactly in attribute `otel.events`, a JSON string of
//!   `[{"name", "time_unix_nano", "attributes"}]`; events that would push it over
//!   [`MAX_ATTRIBUTE_BYTES`] are dropped and counted in `otel.dropped_events_count`. Links are not
//!   kept, only counted in `otel.dropped_links_count` (the names are the OTel spec's names for
//!   non-OTLP exporters). The scope becomes `otel.scope.name` / `otel.scope.version`, the OTel
//!   span kind `otel.span.kind` (`server`, `client`…) when it differs from the one export would
//!   pick (`client` for LLM calls, `internal` otherwise). `trace_state` and `flags` are dropped.
//! - Every mapped event goes through [`Event::validate`]; a span that cannot be mapped or is
//!   invalid is reported by its position in the batch, the others still decode.
//!
//! # Encoding ([`Event`] → OTLP)
//! The inverse: one `ResourceSpans` per project and set of resource attributes (`service.name` =
//! project, or `helix` for events without one, which therefore come back with project `helix`;
//! the keys in `otel.resource.keys` move from the span to its resource), one `ScopeSpans` per
//! `otel.scope.*`, and `helix.span.kind`, `helix.phase`, `helix.run`, `helix.domain` as span
//! attributes so a round trip through OTLP gives back the same event. `otel.events` and the
//! `otel.*` counts become OTLP fields again. Events are assumed valid (stored events are): an id
//! that is not hex is exported empty.

use std::collections::{BTreeMap, HashMap};

use helix_core::trace::{
    Event, MAX_ATTRIBUTE_BYTES, MAX_ATTRIBUTES, SCHEMA_VERSION, SpanKind, SpanStatus, attr,
};
use prost::Message;
use serde_json::{Map, Value};

use self::proto::any_value::Value as Any;
use self::proto::{
    AnyValue, ArrayValue, ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    InstrumentationScope, KeyValue, KeyValueList, Link, Resource, ResourceSpans, ScopeSpans, Span, SpanEvent,
    Status,
};

/// The OTLP trace messages, written by hand with prost derives (no protoc, no build script).
///
/// Field numbers and wire types are those of opentelemetry-proto (`trace/v1/trace.proto`,
/// `common/v1/common.proto`, `resource/v1/resource.proto`,
/// `collector/trace/v1/trace_service.proto`). Fields Helix does not need (entity refs, string
/// table indexes of the profiling signal) are left out; prost skips them on decode.
pub mod proto {
    /// The body of `POST /v1/traces`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    /// The response body of `POST /v1/traces`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportTracePartialSuccess>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTracePartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_spans: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
        #[prost(string, tag = "3")]
        pub schema_url: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "2")]
        pub dropped_attributes_count: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
        #[prost(string, tag = "3")]
        pub schema_url: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "4")]
        pub dropped_attributes_count: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "3")]
        pub trace_state: String,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(fixed32, tag = "16")]
        pub flags: u32,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(enumeration = "SpanKind", tag = "6")]
        pub kind: i32,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "10")]
        pub dropped_attributes_count: u32,
        #[prost(message, repeated, tag = "11")]
        pub events: Vec<SpanEvent>,
        #[prost(uint32, tag = "12")]
        pub dropped_events_count: u32,
        #[prost(message, repeated, tag = "13")]
        pub links: Vec<Link>,
        #[prost(uint32, tag = "14")]
        pub dropped_links_count: u32,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }

    /// OTel's span kind (`Span.SpanKind`), not Helix's.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum SpanKind {
        Unspecified = 0,
        Internal = 1,
        Server = 2,
        Client = 3,
        Producer = 4,
        Consumer = 5,
    }

    /// `Span.Event`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SpanEvent {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "4")]
        pub dropped_attributes_count: u32,
    }

    /// `Span.Link`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Link {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "3")]
        pub trace_state: String,
        #[prost(message, repeated, tag = "4")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "5")]
        pub dropped_attributes_count: u32,
        #[prost(fixed32, tag = "6")]
        pub flags: u32,
    }

    /// Field 1 is reserved (the deprecated `deprecated_code`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(enumeration = "StatusCode", tag = "3")]
        pub code: i32,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum StatusCode {
        Unset = 0,
        Ok = 1,
        Error = 2,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    /// An attribute value; `value: None` is OTel's empty value.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            #[prost(int64, tag = "3")]
            IntValue(i64),
            #[prost(double, tag = "4")]
            DoubleValue(f64),
            #[prost(message, tag = "5")]
            ArrayValue(super::ArrayValue),
            #[prost(message, tag = "6")]
            KvlistValue(super::KeyValueList),
            #[prost(bytes = "vec", tag = "7")]
            BytesValue(Vec<u8>),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }
}

/// The whole body could not be read; nothing in it was decoded.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("body is not a protobuf OTLP ExportTraceServiceRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("body is not an OTLP/JSON ExportTraceServiceRequest: {0}")]
    Json(String),
}

/// One entry per span of the body, in body order (resource, scope, span): the event, or why that
/// span was rejected. The index is what the ingest endpoint reports.
pub type Decoded = Vec<Result<Event, String>>;

/// Decodes a protobuf `ExportTraceServiceRequest` (`Content-Type: application/x-protobuf`).
pub fn decode_protobuf(body: &[u8]) -> Result<Decoded, OtlpError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    let mut out = Vec::new();
    for rs in &request.resource_spans {
        let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        for ss in &rs.scope_spans {
            out.extend(ss.spans.iter().map(|span| span_to_event(resource, ss.scope.as_ref(), span)));
        }
    }
    Ok(out)
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` (`Content-Type: application/json`).
///
/// Unknown fields are ignored (OTLP receivers must). A malformed span (say a `traceId` that is
/// not hex) rejects that span only; malformed structure above the spans rejects the body.
pub fn decode_json(body: &[u8]) -> Result<Decoded, OtlpError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| OtlpError::Json(e.to_string()))?;
    let bad = |path: String, why: String| OtlpError::Json(format!("{path}: {why}"));
    let root = root.as_object().ok_or_else(|| OtlpError::Json("expected an object".to_owned()))?;
    let mut out = Vec::new();
    for (i, rs) in array(field(root, "resourceSpans", "resource_spans"))
        .map_err(|e| bad("resourceSpans".into(), e))?
        .iter()
        .enumerate()
    {
        let path = format!("resourceSpans[{i}]");
        let rs = rs.as_object().ok_or_else(|| bad(path.clone(), "expected an object".into()))?;
        let resource = match field(rs, "resource", "resource") {
            Some(r) => {
                let r = r
                    .as_object()
                    .ok_or_else(|| bad(format!("{path}.resource"), "expected an object".into()))?;
                key_values(field(r, "attributes", "attributes"))
                    .map_err(|e| bad(format!("{path}.resource"), e))?
            }
            None => Vec::new(),
        };
        let scope_spans = array(field(rs, "scopeSpans", "scope_spans"))
            .map_err(|e| bad(format!("{path}.scopeSpans"), e))?;
        for (j, ss) in scope_spans.iter().enumerate() {
            let path = format!("{path}.scopeSpans[{j}]");
            let ss = ss.as_object().ok_or_else(|| bad(path.clone(), "expected an object".into()))?;
            let scope = field(ss, "scope", "scope")
                .map(json_scope)
                .transpose()
                .map_err(|e| bad(format!("{path}.scope"), e))?;
            for span in array(field(ss, "spans", "spans")).map_err(|e| bad(format!("{path}.spans"), e))? {
                out.push(json_span(span).and_then(|span| span_to_event(&resource, scope.as_ref(), &span)));
            }
        }
    }
    Ok(out)
}

/// Encodes events as an OTLP/JSON `ExportTraceServiceRequest`.
pub fn to_otlp_json(events: &[Event]) -> Value {
    request_to_json(&to_request(events))
}

/// Encodes events as a protobuf `ExportTraceServiceRequest`, for forwarding to another collector.
pub fn to_otlp_protobuf(events: &[Event]) -> Vec<u8> {
    to_request(events).encode_to_vec()
}

/// The protobuf response body of `POST /v1/traces`: empty on full success, a partial success
/// naming how many spans were rejected and why otherwise (OTLP/HTTP's answer to a mixed batch).
pub fn export_response_protobuf(rejected_spans: usize, error_message: &str) -> Vec<u8> {
    export_response(rejected_spans, error_message).encode_to_vec()
}

/// The JSON response body of `POST /v1/traces`, see [`export_response_protobuf`].
pub fn export_response_json(rejected_spans: usize, error_message: &str) -> Value {
    match export_response(rejected_spans, error_message).partial_success {
        None => Value::Object(Map::new()),
        Some(p) => serde_json::json!({
            "partialSuccess": {"rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message}
        }),
    }
}

fn export_response(rejected_spans: usize, error_message: &str) -> ExportTraceServiceResponse {
    let partial_success =
        (rejected_spans > 0 || !error_message.is_empty()).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(rejected_spans).unwrap_or(i64::MAX),
            error_message: error_message.to_owned(),
        });
    ExportTraceServiceResponse { partial_success }
}

// ---------------------------------------------------------------------------------------------
// OTLP span → Event

const HELIX_SPAN_KIND: &str = "helix.span.kind";
const HELIX_PROJECT: &str = "helix.project";
const HELIX_PHASE: &str = "helix.phase";
const HELIX_RUN: &str = "helix.run";
const HELIX_DOMAIN: &str = "helix.domain";
pub(crate) const SERVICE_NAME: &str = "service.name";
const OTEL_EVENTS: &str = "otel.events";
const OTEL_SPAN_KIND: &str = "otel.span.kind";
const OTEL_SCOPE_NAME: &str = "otel.scope.name";
const OTEL_SCOPE_VERSION: &str = "otel.scope.version";
const OTEL_DROPPED_ATTRIBUTES: &str = "otel.dropped_attributes_count";
const OTEL_DROPPED_EVENTS: &str = "otel.dropped_events_count";
const OTEL_DROPPED_LINKS: &str = "otel.dropped_links_count";
/// The attributes of a span that came from its resource.
pub const OTEL_RESOURCE_KEYS: &str = "otel.resource.keys";
/// Room kept under [`MAX_ATTRIBUTES`] for the `otel.*` attributes this module adds.
const RESERVED_ATTRIBUTES: usize = 8;
/// Longest string kept inside one span event's attributes, so that one stack trace does not
/// crowd the other events out of `otel.events`.
const MAX_EVENT_VALUE_BYTES: usize = MAX_ATTRIBUTE_BYTES / 8;

const OTEL_KIND_NAMES: [(proto::SpanKind, &str); 5] = [
    (proto::SpanKind::Internal, "internal"),
    (proto::SpanKind::Server, "server"),
    (proto::SpanKind::Client, "client"),
    (proto::SpanKind::Producer, "producer"),
    (proto::SpanKind::Consumer, "consumer"),
];

pub(crate) fn span_to_event(
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    span: &Span,
) -> Result<Event, String> {
    let trace_id = id_hex(&span.trace_id, 16, "trace_id")?;
    let span_id = id_hex(&span.span_id, 8, "span_id")?;
    let parent_span_id = if span.parent_span_id.iter().all(|b| *b == 0) {
        None
    } else {
        Some(id_hex(&span.parent_span_id, 8, "parent_span_id")?)
    };

    let mut attributes = BTreeMap::new();
    let mut helix = HashMap::new();
    let mut dropped_attributes = u64::from(span.dropped_attributes_count);
    for kv in &span.attributes {
        if matches!(kv.key.as_str(), HELIX_SPAN_KIND | HELIX_PROJECT | HELIX_PHASE | HELIX_RUN | HELIX_DOMAIN)
        {
            helix.insert(kv.key.as_str(), kv.value.as_ref());
            continue;
        }
        let Some(value) = kv.value.as_ref().and_then(|v| flatten(v, MAX_ATTRIBUTE_BYTES)) else { continue };
        if attributes.len() >= MAX_ATTRIBUTES - RESERVED_ATTRIBUTES && !attributes.contains_key(&kv.key) {
            dropped_attributes += 1;
        } else {
            attributes.insert(kv.key.clone(), value);
        }
    }

    let name_of = |key: &str| {
        helix.get(key).copied().flatten().and_then(text).or_else(|| attribute(resource, key).and_then(text))
    };
    let project = name_of(HELIX_PROJECT).or_else(|| attribute(resource, SERVICE_NAME).and_then(text));

    // the resource's attributes after the span's own, which win
    let mut from_resource = Vec::new();
    for kv in resource {
        let key = kv.key.as_str();
        let consumed =
            matches!(key, HELIX_SPAN_KIND | HELIX_PROJECT | HELIX_PHASE | HELIX_RUN | HELIX_DOMAIN);
        if consumed || key.starts_with("otel.") || attributes.contains_key(key) {
            continue;
        }
        let Some(value) = kv.value.as_ref().and_then(|v| flatten(v, MAX_ATTRIBUTE_BYTES)) else { continue };
        if key == SERVICE_NAME && value.as_str() == project.as_deref() {
            continue;
        }
        if attributes.len() >= MAX_ATTRIBUTES - RESERVED_ATTRIBUTES {
            dropped_attributes += 1;
        } else {
            attributes.insert(key.to_owned(), value);
            from_resource.push(Value::String(key.to_owned()));
        }
    }
    if !from_resource.is_empty() {
        attributes.insert(OTEL_RESOURCE_KEYS.to_owned(), Value::Array(from_resource));
    }

    let kind = match helix.get(HELIX_SPAN_KIND).copied().flatten().and_then(text) {
        Some(name) => serde_json::from_value::<SpanKind>(Value::String(name.clone())).map_err(|_| {
            format!(
                "{HELIX_SPAN_KIND} {name:?} is not a Helix span kind (run, phase, tool_call, llm_call, …)"
            )
        })?,
        None => derive_kind(&attributes),
    };

    let (status, status_message) = match &span.status {
        None => (SpanStatus::Unset, None),
        Some(s) => {
            let status = match proto::StatusCode::try_from(s.code) {
                Ok(proto::StatusCode::Ok) => SpanStatus::Ok,
                Ok(proto::StatusCode::Error) => SpanStatus::Error,
                Ok(proto::StatusCode::Unset) | Err(_) => SpanStatus::Unset,
            };
            (status, (!s.message.is_empty()).then(|| s.message.clone()))
        }
    };

    if let Some(scope) = scope {
        for (key, value) in [(OTEL_SCOPE_NAME, &scope.name), (OTEL_SCOPE_VERSION, &scope.version)] {
            if !value.is_empty() {
                attributes
                    .insert(key.to_owned(), Value::String(truncate(value, MAX_ATTRIBUTE_BYTES).to_owned()));
            }
        }
    }
    if span.kind != proto::SpanKind::Unspecified as i32 && span.kind != default_otel_kind(kind) as i32 {
        let name =
            OTEL_KIND_NAMES.iter().find(|(k, _)| *k as i32 == span.kind).map_or("unspecified", |(_, n)| n);
        attributes.insert(OTEL_SPAN_KIND.to_owned(), Value::from(name));
    }
    let dropped_events =
        u64::from(span.dropped_events_count) + keep_span_events(&span.events, &mut attributes);
    let dropped_links = u64::from(span.dropped_links_count) + span.links.len() as u64;
    for (key, count) in [
        (OTEL_DROPPED_ATTRIBUTES, dropped_attributes),
        (OTEL_DROPPED_EVENTS, dropped_events),
        (OTEL_DROPPED_LINKS, dropped_links),
    ] {
        if count > 0 {
            attributes.insert(key.to_owned(), Value::from(count));
        }
    }

    let event = Event {
        schema_version: SCHEMA_VERSION,
        trace_id,
        span_id,
        parent_span_id,
        name: span.name.clone(),
        kind,
        start_unix_nanos: span.start_time_unix_nano,
        end_unix_nanos: span.end_time_unix_nano,
        status,
        status_message,
        project,
        phase: name_of(HELIX_PHASE),
        run: name_of(HELIX_RUN),
        domain: name_of(HELIX_DOMAIN),
        attributes,
    };
    let mut event = event;
    event.clamp();
    event.validate()?;
    Ok(event)
}

fn id_hex(bytes: &[u8], len: usize, what: &str) -> Result<String, String> {
    if bytes.len() != len {
        return Err(format!("{what} is {} bytes, expected {len}", bytes.len()));
    }
    Ok(hex::encode(bytes))
}

/// Rules 2–6 of the module documentation (rule 1, `helix.span.kind`, is applied by the caller).
fn derive_kind(attributes: &BTreeMap<String, Value>) -> SpanKind {
    match attributes.get(attr::GEN_AI_OPERATION_NAME).and_then(Value::as_str) {
        Some("execute_tool") => SpanKind::ToolCall,
        Some("invoke_agent" | "create_agent") => SpanKind::Other,
        Some(_) => SpanKind::LlmCall,
        None if attributes.contains_key(attr::GEN_AI_TOOL_NAME) => SpanKind::ToolCall,
        None => SpanKind::Other,
    }
}

/// The OTel span kind export gives a Helix kind (GenAI conventions: model calls are `CLIENT`).
fn default_otel_kind(kind: SpanKind) -> proto::SpanKind {
    match kind {
        SpanKind::LlmCall => proto::SpanKind::Client,
        _ => proto::SpanKind::Internal,
    }
}

pub(crate) fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes.iter().rev().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
}

/// A scalar as text, for the readable names; empty counts as absent.
pub(crate) fn text(v: &AnyValue) -> Option<String> {
    let s = match v.value.as_ref()? {
        Any::StringValue(s) => s.clone(),
        Any::BoolValue(b) => b.to_string(),
        Any::IntValue(i) => i.to_string(),
        Any::DoubleValue(d) => d.to_string(),
        Any::ArrayValue(_) | Any::KvlistValue(_) | Any::BytesValue(_) => return None,
    };
    (!s.trim().is_empty()).then_some(s)
}

/// An OTLP value as a Helix attribute value (a scalar or an array of scalars).
pub(crate) fn flatten(v: &AnyValue, max: usize) -> Option<Value> {
    Some(match v.value.as_ref()? {
        Any::ArrayValue(a) if a.values.iter().all(is_scalar) => {
            Value::Array(a.values.iter().filter_map(|v| flatten(v, max)).collect())
        }
        Any::ArrayValue(_) | Any::KvlistValue(_) => {
            Value::String(truncate(&any_to_json(v).to_string(), max).to_owned())
        }
        Any::StringValue(s) => Value::String(truncate(s, max).to_owned()),
        Any::BytesValue(b) => Value::String(base64_encode(&b[..b.len().min(max / 4 * 3)])),
        _ => any_to_json(v),
    })
}

fn is_scalar(v: &AnyValue) -> bool {
    !matches!(v.value, None | Some(Any::ArrayValue(_) | Any::KvlistValue(_)))
}

/// Any OTLP value as plain JSON (kvlists as objects), for the JSON-encoded nested values.
pub(crate) fn any_to_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::IntValue(i)) => Value::from(*i),
        Some(Any::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or_else(
            || {
                Value::from(if d.is_nan() {
                    "NaN"
                } else if *d > 0.0 {
                    "inf"
                } else {
                    "-inf"
                })
            },
            Value::Number,
        ),
        Some(Any::BytesValue(b)) => Value::String(base64_encode(b)),
        Some(Any::ArrayValue(a)) => Value::Array(a.values.iter().map(any_to_json).collect()),
        Some(Any::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, any_to_json)))
                .collect(),
        ),
    }
}

/// Stores the span events as `otel.events`; returns how many did not fit.
fn keep_span_events(events: &[SpanEvent], attributes: &mut BTreeMap<String, Value>) -> u64 {
    let mut kept = Vec::new();
    let mut size = 2; // the brackets
    let mut dropped = 0;
    for e in events {
        let mut entry = Map::new();
        entry.insert("name".to_owned(), Value::String(truncate(&e.name, MAX_EVENT_VALUE_BYTES).to_owned()));
        entry.insert("time_unix_nano".to_owned(), Value::from(e.time_unix_nano));
        let attrs: Map<String, Value> = e
            .attributes
            .iter()
            .filter_map(|kv| Some((kv.key.clone(), flatten(kv.value.as_ref()?, MAX_EVENT_VALUE_BYTES)?)))
            .collect();
        if !attrs.is_empty() {
            entry.insert("attributes".to_owned(), Value::Object(attrs));
        }
        let entry = Value::Object(entry);
        let len = entry.to_string().len() + 1;
        if size + len > MAX_ATTRIBUTE_BYTES {
            dropped += 1;
            continue;
        }
        size += len;
        kept.push(entry);
    }
    if !kept.is_empty() {
        attributes.insert(OTEL_EVENTS.to_owned(), Value::String(Value::Array(kept).to_string()));
    }
    dropped
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Event → OTLP

fn to_request(events: &[Event]) -> ExportTraceServiceRequest {
    // Groups keep the order in which they first appear, so exports are deterministic.
    let mut resources: Vec<Vec<KeyValue>> = Vec::new();
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    for event in events {
        let ((name, version), resource, span) = event_to_span(event);
        let r = match resources.iter().position(|r| *r == resource) {
            Some(r) => r,
            None => {
                resource_spans.push(ResourceSpans {
                    resource: Some(Resource { attributes: resource.clone(), dropped_attributes_count: 0 }),
                    ..Default::default()
                });
                resources.push(resource);
                resource_spans.len() - 1
            }
        };
        let scope = (!name.is_empty() || !version.is_empty()).then_some(InstrumentationScope {
            name,
            version,
            ..Default::default()
        });
        let scopes = &mut resource_spans[r].scope_spans;
        match scopes.iter_mut().find(|s| s.scope == scope) {
            Some(s) => s.spans.push(span),
            None => scopes.push(ScopeSpans { scope, spans: vec![span], schema_url: String::new() }),
        }
    }
    ExportTraceServiceRequest { resource_spans }
}

/// An instrumentation scope's name and version.
type Scope = (String, String);

/// The span of one event, its scope and its resource's attributes.
fn event_to_span(event: &Event) -> (Scope, Vec<KeyValue>, Span) {
    let mut attrs = event.attributes.clone();
    let mut resource = Vec::new();
    if let Some(Value::Array(keys)) = attrs.remove(OTEL_RESOURCE_KEYS) {
        for key in keys.iter().filter_map(Value::as_str) {
            if let Some(value) = attrs.remove(key).as_ref().and_then(json_to_any) {
                resource.push(KeyValue { key: key.to_owned(), value: Some(value) });
            }
        }
    }
    if !resource.iter().any(|kv| kv.key == SERVICE_NAME) {
        let project = event.project.clone().unwrap_or_else(|| "helix".to_owned());
        resource.insert(0, key_value(SERVICE_NAME, string(project)));
    } else if let Some(project) = &event.project {
        // the project travelled as `helix.project` beside a different service name
        attrs.insert(HELIX_PROJECT.to_owned(), Value::String(project.clone()));
    }
    let mut take_text = |key: &str| match attrs.get(key) {
        Some(Value::String(s)) => {
            let s = s.clone();
            attrs.remove(key);
            s
        }
        _ => String::new(),
    };
    let scope = (take_text(OTEL_SCOPE_NAME), take_text(OTEL_SCOPE_VERSION));
    let otel_kind = take_text(OTEL_SPAN_KIND);
    let kind = OTEL_KIND_NAMES
        .iter()
        .find(|(_, n)| *n == otel_kind)
        .map_or_else(|| default_otel_kind(event.kind), |(k, _)| *k);
    let events = match attrs.get(OTEL_EVENTS).and_then(Value::as_str).and_then(json_span_events) {
        Some(events) => {
            attrs.remove(OTEL_EVENTS);
            events
        }
        None => Vec::new(),
    };
    let mut take_count =
        |key: &str| match attrs.get(key).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()) {
            Some(n) => {
                attrs.remove(key);
                n
            }
            None => 0,
        };
    let dropped_attributes_count = take_count(OTEL_DROPPED_ATTRIBUTES);
    let dropped_events_count = take_count(OTEL_DROPPED_EVENTS);
    let dropped_links_count = take_count(OTEL_DROPPED_LINKS);

    let mut attributes: Vec<KeyValue> = attrs
        .iter()
        .filter_map(|(k, v)| Some(KeyValue { key: k.clone(), value: Some(json_to_any(v)?) }))
        .collect();
    if let Ok(Value::String(kind)) = serde_json::to_value(event.kind) {
        attributes.push(key_value(HELIX_SPAN_KIND, string(kind)));
    }
    for (key, value) in [(HELIX_PHASE, &event.phase), (HELIX_RUN, &event.run), (HELIX_DOMAIN, &event.domain)]
    {
        if let Some(v) = value {
            attributes.push(key_value(key, string(v.clone())));
        }
    }
    let code = match event.status {
        SpanStatus::Unset => proto::StatusCode::Unset,
        SpanStatus::Ok => proto::StatusCode::Ok,
        SpanStatus::Error => proto::StatusCode::Error,
    };
    let span = Span {
        trace_id: hex::decode(&event.trace_id).unwrap_or_default(),
        span_id: hex::decode(&event.span_id).unwrap_or_default(),
        parent_span_id: event.parent_span_id.as_deref().and_then(|p| hex::decode(p).ok()).unwrap_or_default(),
        name: event.name.clone(),
        kind: kind as i32,
        start_time_unix_nano: event.start_unix_nanos,
        end_time_unix_nano: event.end_unix_nanos,
        attributes,
        dropped_attributes_count,
        events,
        dropped_events_count,
        dropped_links_count,
        status: (event.status != SpanStatus::Unset || event.status_message.is_some())
            .then(|| Status { message: event.status_message.clone().unwrap_or_default(), code: code as i32 }),
        ..Default::default()
    };
    (scope, resource, span)
}

/// `otel.events` back into span events; `None` if it is not what decoding wrote.
fn json_span_events(text: &str) -> Option<Vec<SpanEvent>> {
    let Ok(Value::Array(entries)) = serde_json::from_str(text) else { return None };
    entries
        .iter()
        .map(|e| {
            let e = e.as_object()?;
            Some(SpanEvent {
                time_unix_nano: e.get("time_unix_nano")?.as_u64()?,
                name: e.get("name")?.as_str()?.to_owned(),
                attributes: match e.get("attributes") {
                    None => Vec::new(),
                    Some(a) => a
                        .as_object()?
                        .iter()
                        .filter_map(|(k, v)| Some(KeyValue { key: k.clone(), value: Some(json_to_any(v)?) }))
                        .collect(),
                },
                dropped_attributes_count: 0,
            })
        })
        .collect()
}

/// A Helix attribute value as an OTLP value (`None` for null, which OTLP attributes cannot hold).
fn json_to_any(v: &Value) -> Option<AnyValue> {
    let value = match v {
        Value::Null => return None,
        Value::Bool(b) => Any::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Any::IntValue(i),
            // Integers above i64::MAX have no OTLP int; a double is the closest.
            None => Any::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Any::StringValue(s.clone()),
        Value::Array(items) => Any::ArrayValue(ArrayValue {
            values: items.iter().map(|i| json_to_any(i).unwrap_or_default()).collect(),
        }),
        Value::Object(o) => Any::KvlistValue(KeyValueList {
            values: o.iter().map(|(k, v)| KeyValue { key: k.clone(), value: json_to_any(v) }).collect(),
        }),
    };
    Some(AnyValue { value: Some(value) })
}

fn key_value(key: &str, value: Any) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }) }
}

fn string(s: String) -> Any {
    Any::StringValue(s)
}

// ---------------------------------------------------------------------------------------------
// OTLP/JSON → messages. The OTLP/JSON rules: lowerCamelCase keys (the proto names are accepted
// too, as the protobuf JSON mapping allows), ids as hex, enums as integers (names accepted),
// 64-bit integers as strings or numbers, bytes values as base64, null meaning "default".

/// A field by its JSON name or its proto name; null counts as absent.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, json_name: &str, proto_name: &str) -> Option<&'a Value> {
    obj.get(json_name).or_else(|| obj.get(proto_name)).filter(|v| !v.is_null())
}

pub(crate) fn array(v: Option<&Value>) -> Result<&[Value], String> {
    match v {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err("expected an array".to_owned()),
    }
}

pub(crate) fn json_str<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a str, String> {
    match v {
        None => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{what} must be a string")),
    }
}

pub(crate) fn json_u64(v: Option<&Value>, what: &str) -> Result<u64, String> {
    let n = match v {
        None => Some(0),
        Some(Value::Number(n)) => n.as_u64().or_else(|| {
            n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64).map(|f| f as u64)
        }),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    n.ok_or_else(|| format!("{what} must be an unsigned integer (number or string)"))
}

pub(crate) fn json_u32(v: Option<&Value>, what: &str) -> Result<u32, String> {
    u32::try_from(json_u64(v, what)?).map_err(|_| format!("{what} is too large"))
}

pub(crate) fn json_i64(v: &Value, what: &str) -> Result<i64, String> {
    let n = match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| format!("{what} must be an integer (number or string)"))
}

pub(crate) fn json_f64(v: &Value, what: &str) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            s => s.trim().parse().ok(),
        },
        _ => None,
    }
    .ok_or_else(|| format!("{what} must be a number"))
}

/// An enum field: its integer, or its name in `names` (index = value).
pub(crate) fn json_enum(v: Option<&Value>, names: &[&str], what: &str) -> Result<i32, String> {
    match v {
        None => Ok(0),
        Some(Value::String(s)) if names.contains(&s.as_str()) => {
            Ok(names.iter().position(|n| n == s).and_then(|i| i32::try_from(i).ok()).unwrap_or(0))
        }
        Some(v) => {
            json_i64(v, what).and_then(|n| i32::try_from(n).map_err(|_| format!("{what} is out of range")))
        }
    }
}

/// A hex id (OTLP/JSON writes ids as hex, not base64).
pub(crate) fn json_id(v: Option<&Value>, what: &str) -> Result<Vec<u8>, String> {
    hex::decode(json_str(v, what)?)
        .map_err(|_| format!("{what} must be hex (OTLP/JSON ids are hex, not base64)"))
}

pub(crate) fn json_scope(v: &Value) -> Result<InstrumentationScope, String> {
    let o = v.as_object().ok_or("expected an object")?;
    Ok(InstrumentationScope {
        name: json_str(field(o, "name", "name"), "name")?.to_owned(),
        version: json_str(field(o, "version", "version"), "version")?.to_owned(),
        attributes: key_values(field(o, "attributes", "attributes"))?,
        dropped_attributes_count: json_u32(
            field(o, "droppedAttributesCount", "dropped_attributes_count"),
            "droppedAttributesCount",
        )?,
    })
}

fn json_span(v: &Value) -> Result<Span, String> {
    let o = v.as_object().ok_or("span is not an object")?;
    let status = match field(o, "status", "status") {
        None => None,
        Some(s) => {
            let s = s.as_object().ok_or("status must be an object")?;
            Some(Status {
                message: json_str(field(s, "message", "message"), "status.message")?.to_owned(),
                code: json_enum(
                    field(s, "code", "code"),
                    &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
                    "status.code",
                )?,
            })
        }
    };
    let events = array(field(o, "events", "events"))
        .map_err(|e| format!("events: {e}"))?
        .iter()
        .map(|e| {
            let e = e.as_object().ok_or("an event is not an object")?;
            Ok(SpanEvent {
                time_unix_nano: json_u64(field(e, "timeUnixNano", "time_unix_nano"), "events.timeUnixNano")?,
                name: json_str(field(e, "name", "name"), "events.name")?.to_owned(),
                attributes: key_values(field(e, "attributes", "attributes"))
                    .map_err(|e| format!("events: {e}"))?,
                dropped_attributes_count: json_u32(
                    field(e, "droppedAttributesCount", "dropped_attributes_count"),
                    "events.droppedAttributesCount",
                )?,
            })
        })
        .collect::<Result<_, String>>()?;
    let links = array(field(o, "links", "links"))
        .map_err(|e| format!("links: {e}"))?
        .iter()
        .map(|l| {
            let l = l.as_object().ok_or("a link is not an object")?;
            Ok(Link {
                trace_id: json_id(field(l, "traceId", "trace_id"), "links.traceId")?,
                span_id: json_id(field(l, "spanId", "span_id"), "links.spanId")?,
                trace_state: json_str(field(l, "traceState", "trace_state"), "links.traceState")?.to_owned(),
                attributes: key_values(field(l, "attributes", "attributes"))
                    .map_err(|e| format!("links: {e}"))?,
                dropped_attributes_count: json_u32(
                    field(l, "droppedAttributesCount", "dropped_attributes_count"),
                    "links.droppedAttributesCount",
                )?,
                flags: json_u32(field(l, "flags", "flags"), "links.flags")?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Span {
        trace_id: json_id(field(o, "traceId", "trace_id"), "traceId")?,
        span_id: json_id(field(o, "spanId", "span_id"), "spanId")?,
        trace_state: json_str(field(o, "traceState", "trace_state"), "traceState")?.to_owned(),
        parent_span_id: json_id(field(o, "parentSpanId", "parent_span_id"), "parentSpanId")?,
        flags: json_u32(field(o, "flags", "flags"), "flags")?,
        name: json_str(field(o, "name", "name"), "name")?.to_owned(),
        kind: json_enum(
            field(o, "kind", "kind"),
            &[
                "SPAN_KIND_UNSPECIFIED",
                "SPAN_KIND_INTERNAL",
                "SPAN_KIND_SERVER",
                "SPAN_KIND_CLIENT",
                "SPAN_KIND_PRODUCER",
                "SPAN_KIND_CONSUMER",
            ],
            "kind",
        )?,
        start_time_unix_nano: json_u64(
            field(o, "startTimeUnixNano", "start_time_unix_nano"),
            "startTimeUnixNano",
        )?,
        end_time_unix_nano: json_u64(field(o, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano")?,
        attributes: key_values(field(o, "attributes", "attributes"))?,
        dropped_attributes_count: json_u32(
            field(o, "droppedAttributesCount", "dropped_attributes_count"),
            "droppedAttributesCount",
        )?,
        events,
        dropped_events_count: json_u32(
            field(o, "droppedEventsCount", "dropped_events_count"),
            "droppedEventsCount",
        )?,
        links,
        dropped_links_count: json_u32(
            field(o, "droppedLinksCount", "dropped_links_count"),
            "droppedLinksCount",
        )?,
        status,
    })
}

pub(crate) fn key_values(v: Option<&Value>) -> Result<Vec<KeyValue>, String> {
    array(v)
        .map_err(|e| format!("attributes: {e}"))?
        .iter()
        .map(|kv| {
            let o = kv.as_object().ok_or("an attribute is not an object")?;
            let key = json_str(field(o, "key", "key"), "attribute key")?.to_owned();
            let value = field(o, "value", "value").map(|v| json_any(v, &key)).transpose()?;
            Ok(KeyValue { key, value })
        })
        .collect()
}

pub(crate) fn json_any(v: &Value, key: &str) -> Result<AnyValue, String> {
    let o = v.as_object().ok_or_else(|| format!("attribute {key:?}: value must be an object"))?;
    let what = |name: &str| format!("attribute {key:?}: {name}");
    let value = if let Some(s) = field(o, "stringValue", "string_value") {
        Some(Any::StringValue(json_str(Some(s), &what("stringValue"))?.to_owned()))
    } else if let Some(b) = field(o, "boolValue", "bool_value") {
        Some(Any::BoolValue(b.as_bool().ok_or_else(|| what("boolValue must be a boolean"))?))
    } else if let Some(i) = field(o, "intValue", "int_value") {
        Some(Any::IntValue(json_i64(i, &what("intValue"))?))
    } else if let Some(d) = field(o, "doubleValue", "double_value") {
        Some(Any::DoubleValue(json_f64(d, &what("doubleValue"))?))
    } else if let Some(a) = field(o, "arrayValue", "array_value") {
        let a = a.as_object().ok_or_else(|| what("arrayValue must be an object"))?;
        let values = array(field(a, "values", "values")).map_err(|e| what(&e))?;
        Some(Any::ArrayValue(ArrayValue {
            values: values.iter().map(|v| json_any(v, key)).collect::<Result<_, _>>()?,
        }))
    } else if let Some(kv) = field(o, "kvlistValue", "kvlist_value") {
        let kv = kv.as_object().ok_or_else(|| what("kvlistValue must be an object"))?;
        Some(Any::KvlistValue(KeyValueList { values: key_values(field(kv, "values", "values"))? }))
    } else if let Some(b) = field(o, "bytesValue", "bytes_value") {
        let text = json_str(Some(b), &what("bytesValue"))?;
        Some(Any::BytesValue(base64_decode(text).ok_or_else(|| what("bytesValue must be base64"))?))
    } else {
        None
    };
    Ok(AnyValue { value })
}

// ---------------------------------------------------------------------------------------------
// messages → OTLP/JSON

fn request_to_json(request: &ExportTraceServiceRequest) -> Value {
    let resource_spans: Vec<Value> = request
        .resource_spans
        .iter()
        .map(|rs| {
            let mut o = Map::new();
            if let Some(r) = &rs.resource {
                o.insert(
                    "resource".into(),
                    serde_json::json!({"attributes": key_values_to_json(&r.attributes)}),
                );
            }
            let scope_spans: Vec<Value> = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let mut o = Map::new();
                    if let Some(s) = &ss.scope {
                        o.insert("scope".into(), serde_json::json!({"name": s.name, "version": s.version}));
                    }
                    o.insert("spans".into(), ss.spans.iter().map(span_to_json).collect());
                    Value::Object(o)
                })
                .collect();
            o.insert("scopeSpans".into(), Value::Array(scope_spans));
            if !rs.schema_url.is_empty() {
                o.insert("schemaUrl".into(), Value::from(rs.schema_url.as_str()));
            }
            Value::Object(o)
        })
        .collect();
    serde_json::json!({ "resourceSpans": resource_spans })
}

fn span_to_json(s: &Span) -> Value {
    let mut o = Map::new();
    o.insert("traceId".into(), Value::String(hex::encode(&s.trace_id)));
    o.insert("spanId".into(), Value::String(hex::encode(&s.span_id)));
    if !s.parent_span_id.is_empty() {
        o.insert("parentSpanId".into(), Value::String(hex::encode(&s.parent_span_id)));
    }
    o.insert("name".into(), Value::from(s.name.as_str()));
    o.insert("kind".into(), Value::from(s.kind));
    // 64-bit integers as strings, as the protobuf JSON mapping (and the OTLP examples) write them.
    o.insert("startTimeUnixNano".into(), Value::String(s.start_time_unix_nano.to_string()));
    o.insert("endTimeUnixNano".into(), Value::String(s.end_time_unix_nano.to_string()));
    o.insert("attributes".into(), key_values_to_json(&s.attributes));
    if s.dropped_attributes_count > 0 {
        o.insert("droppedAttributesCount".into(), Value::from(s.dropped_attributes_count));
    }
    if !s.events.is_empty() {
        let events = s
            .events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "timeUnixNano": e.time_unix_nano.to_string(),
                    "name": e.name,
                    "attributes": key_values_to_json(&e.attributes),
                })
            })
            .collect();
        o.insert("events".into(), Value::Array(events));
    }
    if s.dropped_events_count > 0 {
        o.insert("droppedEventsCount".into(), Value::from(s.dropped_events_count));
    }
    if s.dropped_links_count > 0 {
        o.insert("droppedLinksCount".into(), Value::from(s.dropped_links_count));
    }
    if let Some(st) = &s.status {
        let mut status = Map::new();
        if !st.message.is_empty() {
            status.insert("message".into(), Value::from(st.message.as_str()));
        }
        status.insert("code".into(), Value::from(st.code));
        o.insert("status".into(), Value::Object(status));
    }
    Value::Object(o)
}

fn key_values_to_json(kvs: &[KeyValue]) -> Value {
    kvs.iter()
        .map(|kv| {
            let value = kv.value.as_ref().map_or_else(|| Value::Object(Map::new()), any_value_to_json);
            serde_json::json!({"key": kv.key, "value": value})
        })
        .collect()
}

fn any_value_to_json(v: &AnyValue) -> Value {
    let (key, value) = match &v.value {
        None => return Value::Object(Map::new()),
        Some(Any::StringValue(s)) => ("stringValue", Value::from(s.as_str())),
        Some(Any::BoolValue(b)) => ("boolValue", Value::Bool(*b)),
        Some(Any::IntValue(i)) => ("intValue", Value::String(i.to_string())),
        Some(Any::DoubleValue(d)) => (
            "doubleValue",
            serde_json::Number::from_f64(*d).map_or_else(
                || {
                    Value::from(if d.is_nan() {
                        "NaN"
                    } else if *d > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    })
                },
                Value::Number,
            ),
        ),
        Some(Any::ArrayValue(a)) => (
            "arrayValue",
            serde_json::json!({"values": a.values.iter().map(any_value_to_json).collect::<Vec<_>>()}),
        ),
        Some(Any::KvlistValue(kv)) => {
            ("kvlistValue", serde_json::json!({"values": key_values_to_json(&kv.values)}))
        }
        Some(Any::BytesValue(b)) => ("bytesValue", Value::String(base64_encode(b))),
    };
    let mut o = Map::new();
    o.insert(key.to_owned(), value);
    Value::Object(o)
}

// ---------------------------------------------------------------------------------------------
// base64 (RFC 4648), for OTLP/JSON bytes values; small enough not to need a dependency.

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe alphabet, padding optional (the protobuf JSON mapping accepts both).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone sixth bit group cannot end a valid encoding.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TRACE: [u8; 16] =
        [0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36];

    fn kv(key: &str, value: Any) -> KeyValue {
        key_value(key, value)
    }

    fn span(id: u8, name: &str, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: TRACE.to_vec(),
            span_id: vec![0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, id],
            parent_span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            name: name.to_owned(),
            kind: proto::SpanKind::Internal as i32,
            start_time_unix_nano: 1_764_082_800_000_000_000,
            end_time_unix_nano: 1_764_082_801_500_000_000,
            attributes,
            ..Default::default()
        }
    }

    fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: resource, dropped_attributes_count: 0 }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "agent".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn ok(decoded: &[Result<Event, String>], i: usize) -> &Event {
        decoded[i].as_ref().expect("span decodes")
    }

    #[test]
    fn field_numbers_match_opentelemetry_proto() {
        // Hand-assembled wire bytes of a Span: if a tag or wire type were wrong, prost would
        // put the value elsewhere or skip it.
        let mut b = vec![0x0a, 16];
        b.extend_from_slice(&TRACE); // 1: trace_id, bytes
        b.extend_from_slice(&[0x12, 8, 1, 1, 1, 1, 1, 1, 1, 1]); // 2: span_id, bytes
        b.extend_from_slice(&[0x1a, 1, b'x']); // 3: trace_state, string
        b.extend_from_slice(&[0x22, 8, 2, 2, 2, 2, 2, 2, 2, 2]); // 4: parent_span_id
        b.extend_from_slice(&[0x2a, 1, b'n']); // 5: name
        b.extend_from_slice(&[0x30, 3]); // 6: kind, varint
        b.push(0x39); // 7: start, fixed64
        b.extend_from_slice(&5u64.to_le_bytes());
        b.push(0x41); // 8: end, fixed64
        b.extend_from_slice(&9u64.to_le_bytes());
        b.extend_from_slice(&[0x4a, 7, 0x0a, 1, b'k', 0x12, 2, 0x18, 42]); // 9: attributes {k: int 42}
        b.extend_from_slice(&[0x50, 1]); // 10: dropped_attributes_count
        b.extend_from_slice(&[0x5a, 5, 0x12, 3, b'e', b'v', b't']); // 11: events [{name: evt}]
        b.extend_from_slice(&[0x60, 2]); // 12: dropped_events_count
        b.extend_from_slice(&[0x6a, 0]); // 13: links [{}]
        b.extend_from_slice(&[0x70, 3]); // 14: dropped_links_count
        b.extend_from_slice(&[0x7a, 4, 0x12, 0, 0x18, 2]); // 15: status {message: "", code: ERROR}
        b.extend_from_slice(&[0x85, 0x01, 1, 1, 0, 0]); // 16: flags, fixed32
        let s = Span::decode(&b[..]).expect("span");
        assert_eq!(s.trace_id, TRACE);
        assert_eq!(
            (s.span_id[0], s.parent_span_id[0], s.trace_state.as_str(), s.name.as_str()),
            (1, 2, "x", "n")
        );
        assert_eq!((s.kind, s.start_time_unix_nano, s.end_time_unix_nano), (3, 5, 9));
        assert_eq!(s.attributes, vec![kv("k", Any::IntValue(42))]);
        assert_eq!((s.dropped_attributes_count, s.dropped_events_count, s.dropped_links_count), (1, 2, 3));
        assert_eq!((s.events[0].name.as_str(), s.links.len(), s.flags), ("evt", 1, 0x101));
        assert_eq!(s.status.map(|s| s.code), Some(2));
        // AnyValue oneof tags 1..7 and the request/resource/scope nesting.
        for (bytes, value) in [
            (vec![0x0a, 1, b's'], Any::StringValue("s".into())),
            (vec![0x10, 1], Any::BoolValue(true)),
            (vec![0x18, 7], Any::IntValue(7)),
            (vec![0x21, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f], Any::DoubleValue(1.5)),
            (vec![0x2a, 2, 0x0a, 0], Any::ArrayValue(ArrayValue { values: vec![AnyValue::default()] })),
            (vec![0x32, 2, 0x0a, 0], Any::KvlistValue(KeyValueList { values: vec![KeyValue::default()] })),
            (vec![0x3a, 1, 9], Any::BytesValue(vec![9])),
        ] {
            assert_eq!(AnyValue::decode(&bytes[..]).expect("any").value, Some(value));
        }
        let r = ExportTraceServiceRequest::decode(&[0x0a, 8, 0x0a, 0, 0x12, 4, 0x0a, 0, 0x12, 0][..])
            .expect("request");
        assert_eq!(r.resource_spans[0].scope_spans[0].spans.len(), 1);
        assert!(r.resource_spans[0].resource.is_some() && r.resource_spans[0].scope_spans[0].scope.is_some());
    }

    #[test]
    fn protobuf_genai_span_maps_to_llm_call_with_numeric_tokens() {
        let body = request(
            vec![
                kv("service.name", string("webshop".into())),
                kv("helix.phase", string("development".into())),
            ],
            vec![Span {
                kind: proto::SpanKind::Client as i32,
                status: Some(Status { message: "rate limited".into(), code: 2 }),
                ..span(
                    1,
                    "chat claude-sonnet",
                    vec![
                        kv("gen_ai.operation.name", string("chat".into())),
                        kv("gen_ai.usage.input_tokens", Any::IntValue(1200)),
                        kv("gen_ai.usage.output_tokens", Any::IntValue(300)),
                        kv("helix.cost_usd", Any::DoubleValue(0.0125)),
                        kv("helix.run", string("nightly".into())),
                    ],
                )
            }],
        )
        .encode_to_vec();
        let decoded = decode_protobuf(&body).expect("body");
        let e = ok(&decoded, 0);
        assert_eq!(e.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(e.span_id, "00f067aa0ba90201");
        assert_eq!(e.parent_span_id.as_deref(), Some("0102030405060708"));
        assert_eq!(e.kind, SpanKind::LlmCall);
        assert_eq!((e.status, e.status_message.as_deref()), (SpanStatus::Error, Some("rate limited")));
        assert_eq!(e.attributes["gen_ai.usage.input_tokens"], json!(1200));
        assert!(e.attributes["gen_ai.usage.input_tokens"].is_i64());
        assert_eq!(e.number(attr::GEN_AI_USAGE_OUTPUT_TOKENS), Some(300.0));
        assert_eq!(e.number(attr::HELIX_COST_USD), Some(0.0125));
        assert_eq!(e.project.as_deref(), Some("webshop"));
        assert_eq!(e.phase.as_deref(), Some("development"));
        assert_eq!(e.run.as_deref(), Some("nightly"));
        assert_eq!(e.domain, None);
        // Names are consumed, resource attributes are not copied, CLIENT is the LLM default.
        assert!(!e.attributes.contains_key("helix.run") && !e.attributes.contains_key("service.name"));
        assert!(!e.attributes.contains_key(OTEL_SPAN_KIND));
        assert_eq!(e.text(OTEL_SCOPE_NAME), Some("agent"));
        assert_eq!(e.text(OTEL_SCOPE_VERSION), Some("1.2"));
    }

    #[test]
    fn kind_rules() {
        let kind = |attrs: Vec<KeyValue>| {
            let body = request(vec![], vec![span(1, "s", attrs)]).encode_to_vec();
            decode_protobuf(&body).expect("body").remove(0).map(|e| e.kind)
        };
        let op = |o: &str| kv("gen_ai.operation.name", string(o.into()));
        let helix_kind = |k: &str| kv("helix.span.kind", string(k.into()));
        assert_eq!(kind(vec![op("execute_tool")]), Ok(SpanKind::ToolCall));
        assert_eq!(kind(vec![kv("gen_ai.tool.name", string("bash".into()))]), Ok(SpanKind::ToolCall));
        for o in ["chat", "text_completion", "generate_content", "embeddings"] {
            assert_eq!(kind(vec![op(o)]), Ok(SpanKind::LlmCall), "{o}");
        }
        assert_eq!(kind(vec![op("invoke_agent")]), Ok(SpanKind::Other));
        assert_eq!(kind(vec![]), Ok(SpanKind::Other));
        assert_eq!(kind(vec![op("chat"), helix_kind("retry")]), Ok(SpanKind::Retry));
        assert_eq!(kind(vec![helix_kind("run")]), Ok(SpanKind::Run));
        assert!(kind(vec![helix_kind("sprint")]).expect_err("unknown kind").contains("sprint"));
        // A root span is not a run unless it says so.
        let mut root = span(1, "GET /", vec![]);
        root.parent_span_id = Vec::new();
        let decoded = decode_protobuf(&request(vec![], vec![root]).encode_to_vec()).expect("body");
        assert_eq!((ok(&decoded, 0).kind, &ok(&decoded, 0).parent_span_id), (SpanKind::Other, &None));
    }

    #[test]
    fn invalid_span_in_the_middle_is_reported_by_index() {
        let mut short_id = span(2, "bad id", vec![]);
        short_id.trace_id = vec![1, 2, 3, 4];
        let mut backwards = span(3, "backwards", vec![]);
        backwards.end_time_unix_nano = 1;
        let mut zero = span(4, "zero", vec![]);
        zero.span_id = vec![0; 8];
        let spans = vec![span(1, "a", vec![]), short_id, backwards, zero, span(5, "b", vec![])];
        let decoded = decode_protobuf(&request(vec![], spans).encode_to_vec()).expect("body");
        assert_eq!(decoded.len(), 5);
        assert_eq!(ok(&decoded, 0).name, "a");
        assert_eq!(decoded[1].as_ref().expect_err("bad id"), "trace_id is 4 bytes, expected 16");
        assert!(decoded[2].as_ref().expect_err("order").contains("before"));
        assert!(decoded[3].as_ref().expect_err("zero").contains("span_id"));
        assert_eq!(ok(&decoded, 4).name, "b");
    }

    #[test]
    fn bad_protobuf_is_an_error_never_a_panic() {
        assert!(matches!(decode_protobuf(b"\x0a\xff\xff\xff\xff\x0f"), Err(OtlpError::Protobuf(_))));
        assert!(decode_protobuf(b"{\"resourceSpans\": []}").is_err());
        assert!(decode_protobuf(&[0xff; 64]).is_err());
        // Every truncation of a valid body either decodes or errors.
        let body =
            request(vec![kv("service.name", string("x".into()))], vec![span(1, "a", vec![])]).encode_to_vec();
        for end in 0..body.len() {
            let _ = decode_protobuf(&body[..end]);
        }
        assert_eq!(decode_protobuf(b"").expect("empty request is valid").len(), 0);
    }

    #[test]
    fn attributes_are_flattened_and_limited() {
        let nested = Any::KvlistValue(KeyValueList { values: vec![kv("a", Any::IntValue(1))] });
        let long = "é".repeat(MAX_ATTRIBUTE_BYTES); // two bytes each
        let mut attrs = vec![
            kv("bytes", Any::BytesValue(b"hi!".to_vec())),
            kv("map", nested.clone()),
            kv(
                "arr",
                Any::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Any::IntValue(1)) }] }),
            ),
            kv("deep", Any::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(nested) }] })),
            kv("nan", Any::DoubleValue(f64::NAN)),
            KeyValue { key: "empty".into(), value: None },
            kv("long", string(long)),
        ];
        attrs.extend((0..300).map(|i| kv(&format!("n{i:03}"), Any::BoolValue(true))));
        let mut s = span(1, "s", attrs);
        s.dropped_attributes_count = 2;
        s.links = vec![Link::default(), Link::default()];
        s.events = vec![SpanEvent {
            time_unix_nano: 7,
            name: "exception".into(),
            attributes: vec![kv("exception.message", string("boom".into()))],
            dropped_attributes_count: 0,
        }];
        let decoded = decode_protobuf(&request(vec![], vec![s]).encode_to_vec()).expect("body");
        let e = ok(&decoded, 0);
        assert_eq!(e.attributes["bytes"], json!("aGkh"));
        assert_eq!(e.attributes["map"], json!(r#"{"a":1}"#));
        assert_eq!(e.attributes["arr"], json!([1]));
        assert_eq!(e.attributes["deep"], json!(r#"[{"a":1}]"#));
        assert_eq!(e.attributes["nan"], json!("NaN"));
        assert!(!e.attributes.contains_key("empty"));
        assert_eq!(e.text("long").map(str::len), Some(MAX_ATTRIBUTE_BYTES));
        assert!(e.attributes.len() <= MAX_ATTRIBUTES);
        // 6 kept before the booleans, 242 booleans fit, 58 dropped, plus the 2 the SDK dropped.
        assert_eq!(e.attributes[OTEL_DROPPED_ATTRIBUTES], json!(60));
        assert_eq!(e.attributes[OTEL_DROPPED_LINKS], json!(2));
        assert_eq!(
            e.text(OTEL_EVENTS),
            Some(r#"[{"attributes":{"exception.message":"boom"},"name":"exception","time_unix_nano":7}]"#)
        );
    }

    #[test]
    fn span_events_beyond_the_size_limit_are_counted() {
        let big = "x".repeat(MAX_EVENT_VALUE_BYTES);
        let events = (0..20)
            .map(|i| SpanEvent {
                time_unix_nano: i,
                name: "log".into(),
                attributes: vec![kv("msg", string(big.clone()))],
                dropped_attributes_count: 0,
            })
            .collect();
        let decoded =
            decode_protobuf(&request(vec![], vec![Span { events, ..span(1, "s", vec![]) }]).encode_to_vec())
                .expect("body");
        let e = ok(&decoded, 0);
        let kept: Vec<Value> = serde_json::from_str(e.text(OTEL_EVENTS).expect("events")).expect("json");
        assert_eq!(kept.len(), 7);
        assert_eq!(e.attributes[OTEL_DROPPED_EVENTS], json!(13));
        assert_eq!(e.validate(), Ok(()));
    }

    /// Shaped like the example in the OTLP specification (ids hex, 64-bit integers as strings),
    /// plus fields this decoder does not know, which it must ignore.
    const SPEC_JSON: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}],
                     "futureField": 1},
        "scopeSpans": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
          "spans": [
            {
              "traceId": "5B8EFFF798038103D269B633813FC60C",
              "spanId": "EEE19B7EC3C1B174",
              "parentSpanId": "EEE19B7EC3C1B173",
              "name": "I'm a server span",
              "startTimeUnixNano": "1544712660000000000",
              "endTimeUnixNano": "1544712661000000000",
              "kind": 2,
              "attributes": [
                {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                {"key": "ratio", "value": {"doubleValue": 0.25}},
                {"key": "ok", "value": {"boolValue": true}},
                {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 3}]}}},
                {"key": "blob", "value": {"bytesValue": "aGkh"}},
                {"key": "helix.domain", "value": {"stringValue": "retail"}}
              ],
              "status": {"code": 1},
              "unknownSpanField": {"x": [1, 2]}
            },
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "not hex", "name": "broken",
             "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175", "name": "late",
             "startTimeUnixNano": 1544712662000000000, "endTimeUnixNano": "1544712663000000000",
             "status": {"code": "STATUS_CODE_ERROR", "message": "oops"}, "kind": "SPAN_KIND_INTERNAL",
             "attributes": [{"key": "n", "value": {"intValue": "x"}}]},
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b176", "name": "tool",
             "startTimeUnixNano": 1544712662000000000, "endTimeUnixNano": "1544712663000000000",
             "attributes": [{"key": "gen_ai.tool.name", "value": {"stringValue": "bash"}}]}
          ]
        }]
      }]
    }"#;

    #[test]
    fn json_spec_example_decodes() {
        let decoded = decode_json(SPEC_JSON.as_bytes()).expect("body");
        assert_eq!(decoded.len(), 4);
        let e = ok(&decoded, 0);
        assert_eq!(e.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(e.span_id, "eee19b7ec3c1b174");
        assert_eq!(e.parent_span_id.as_deref(), Some("eee19b7ec3c1b173"));
        assert_eq!(
            (e.start_unix_nanos, e.end_unix_nanos),
            (1_544_712_660_000_000_000, 1_544_712_661_000_000_000)
        );
        assert_eq!((e.kind, e.status), (SpanKind::LlmCall, SpanStatus::Ok));
        assert_eq!(e.project.as_deref(), Some("my.service"));
        assert_eq!(e.domain.as_deref(), Some("retail"));
        assert_eq!(e.attributes["gen_ai.usage.input_tokens"], json!(42));
        assert_eq!(e.attributes["ratio"], json!(0.25));
        assert_eq!(e.attributes["ok"], json!(true));
        assert_eq!(e.attributes["tags"], json!(["a", 3]));
        assert_eq!(e.attributes["blob"], json!("aGkh"));
        assert_eq!(e.attributes[OTEL_SPAN_KIND], json!("server"));
        assert_eq!(e.text(OTEL_SCOPE_NAME), Some("my.library"));
        assert!(decoded[1].as_ref().expect_err("bad id").contains("spanId must be hex"));
        assert!(decoded[2].as_ref().expect_err("bad int").contains("intValue"));
        assert_eq!(ok(&decoded, 3).kind, SpanKind::ToolCall);
    }

    #[test]
    fn json_body_errors() {
        assert!(matches!(decode_json(b"not json"), Err(OtlpError::Json(_))));
        assert!(matches!(decode_json(b"[]"), Err(OtlpError::Json(_))));
        let err = decode_json(br#"{"resourceSpans": [{"scopeSpans": {"spans": []}}]}"#).expect_err("shape");
        assert!(err.to_string().contains("resourceSpans[0].scopeSpans"), "{err}");
        assert_eq!(decode_json(b"{}").expect("empty").len(), 0);
        assert_eq!(decode_json(br#"{"resourceSpans": null}"#).expect("null").len(), 0);
    }

    fn helix_event(span: &str, parent: Option<&str>, project: Option<&str>) -> Event {
        Event {
            schema_version: SCHEMA_VERSION,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: span.into(),
            parent_span_id: parent.map(Into::into),
            name: "execute_tool bash".into(),
            kind: SpanKind::ToolCall,
            start_unix_nanos: 1_764_082_800_000_000_001,
            end_unix_nanos: 1_764_082_801_500_000_000,
            status: SpanStatus::Error,
            status_message: Some("exit 1".into()),
            project: project.map(Into::into),
            phase: Some("development".into()),
            run: Some("nightly".into()),
            domain: Some("retail".into()),
            attributes: BTreeMap::from([
                ("gen_ai.tool.name".to_owned(), json!("bash")),
                ("helix.cost_usd".to_owned(), json!(0.0012)),
                ("count".to_owned(), json!(-3)),
                ("whole".to_owned(), json!(2.0)),
                ("flag".to_owned(), json!(false)),
                ("list".to_owned(), json!(["a", 1, 2.5, true])),
                (OTEL_SCOPE_NAME.to_owned(), json!("agent")),
                (OTEL_SPAN_KIND.to_owned(), json!("server")),
                (OTEL_EVENTS.to_owned(), json!(r#"[{"attributes":{"a":1},"name":"e","time_unix_nano":9}]"#)),
                (OTEL_DROPPED_LINKS.to_owned(), json!(4)),
            ]),
        }
    }

    fn events() -> Vec<Event> {
        let mut llm = helix_event("00f067aa0ba902b9", Some("00f067aa0ba902b7"), Some("webshop"));
        llm.kind = SpanKind::LlmCall;
        llm.attributes = BTreeMap::from([("gen_ai.usage.input_tokens".to_owned(), json!(12))]);
        llm.status = SpanStatus::Unset;
        llm.status_message = None;
        llm.phase = None;
        let mut run = helix_event("00f067aa0ba902b7", None, Some("webshop"));
        run.kind = SpanKind::Run;
        vec![run, helix_event("00f067aa0ba902b8", Some("00f067aa0ba902b7"), Some("webshop")), llm, {
            let mut e = helix_event("00f067aa0ba902ba", None, Some("other"));
            e.kind = SpanKind::Heal;
            e
        }]
    }

    fn assert_round_trip(decoded: Decoded, original: &[Event]) {
        let decoded: Vec<Event> = decoded.into_iter().collect::<Result<_, _>>().expect("all valid");
        assert_eq!(decoded, original);
    }

    #[test]
    fn json_round_trip() {
        let original = events();
        let otlp = to_otlp_json(&original);
        assert_eq!(otlp["resourceSpans"].as_array().map(Vec::len), Some(2));
        let span = &otlp["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], json!("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(span["startTimeUnixNano"], json!("1764082800000000001"));
        assert_eq!(span["kind"], json!(2));
        assert_eq!(span["events"][0]["name"], json!("e"));
        assert_eq!(
            otlp["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            json!("webshop")
        );
        let body = serde_json::to_vec(&otlp).expect("serialize");
        assert_round_trip(decode_json(&body).expect("body"), &original);
    }

    #[test]
    fn protobuf_round_trip() {
        let original = events();
        let body = to_otlp_protobuf(&original);
        let request = ExportTraceServiceRequest::decode(&body[..]).expect("request");
        let llm = &request.resource_spans[0].scope_spans[1].spans[0];
        assert_eq!(llm.kind, proto::SpanKind::Client as i32);
        assert_eq!(request.resource_spans[0].scope_spans[1].scope, None);
        assert_round_trip(decode_protobuf(&body).expect("body"), &original);
    }

    #[test]
    fn events_without_project_export_as_helix() {
        let otlp = to_otlp_json(&[helix_event("00f067aa0ba902b8", None, None)]);
        let decoded = decode_json(&serde_json::to_vec(&otlp).expect("json")).expect("body");
        assert_eq!(ok(&decoded, 0).project.as_deref(), Some("helix"));
    }

    #[test]
    fn export_responses() {
        assert_eq!(export_response_json(0, ""), json!({}));
        assert!(export_response_protobuf(0, "").is_empty());
        assert_eq!(
            export_response_json(2, "span 1: bad id"),
            json!({"partialSuccess": {"rejectedSpans": "2", "errorMessage": "span 1: bad id"}})
        );
        let r = ExportTraceServiceResponse::decode(&export_response_protobuf(2, "x")[..]).expect("response");
        assert_eq!(r.partial_success.map(|p| p.rejected_spans), Some(2));
    }

    #[test]
    fn base64_both_ways() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", &[0xff, 0xfe, 0x00]] {
            assert_eq!(base64_decode(&base64_encode(bytes)).as_deref(), Some(bytes));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_decode("__8").as_deref(), Some(&[0xff, 0xff][..]));
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("a*b="), None);
    }

    /// Written by the OpenTelemetry Python SDK 1.45 (`encode_spans` of
    /// opentelemetry-exporter-otlp-proto-common, the exporter's own encoder): a root
    /// `invoke_agent`, a `chat claude` CLIENT span with token counts and a `retry` event, and an
    /// `execute_tool bash` span with status ERROR "exit 1"; resource service.name=webshop,
    /// helix.phase=development.
    const PYTHON_SDK_PROTOBUF: &str = "0af5050ae6010a220a1674656c656d657472792e73646b2e6c616e677561676512080a06707974686f6e0a250a1274656c656d657472792e73646b2e6e616d65120f0a0d6f70656e74656c656d657472790a210a1574656c656d657472792e73646b2e76657273696f6e12080a06312e34352e320a3d0a13736572766963652e696e7374616e63652e696412260a2433393666323863372d373264342d346434352d396530642d3039633839326334373764640a190a0c736572766963652e6e616d6512090a0777656273686f700a1c0a0b68656c69782e7068617365120d0a0b646576656c6f706d656e741289040a0e0a0770792d746573741203312e3012f6010a1072598ff83b120c726ff6a692c22c1da2120863a60a76f6d77e43220808bec5add968500f2a0b6368617420636c617564653003396a1a12c4c456eb1841747312c4c456eb184a1f0a1567656e5f61692e6f7065726174696f6e2e6e616d6512060a04636861744a200a1467656e5f61692e726571756573742e6d6f64656c12080a06636c617564654a1f0a1967656e5f61692e75736167652e696e7075745f746f6b656e73120218784a200a1a67656e5f61692e75736167652e6f75747075745f746f6b656e731202181e5a1f09175012c4c456eb18120572657472791a0d0a07617474656d7074120218027a0085010001000012b5010a1072598ff83b120c726ff6a692c22c1da2120880494207f82210c2220808bec5add968500f2a11657865637574655f746f6f6c2062617368300139173913c4c456eb18410f6713c4c456eb184a1a0a1067656e5f61692e746f6f6c2e6e616d6512060a04626173684a140a07782e726174696f120921000000000000e03f4a160a06782e74616773120c2a0a0a030a01610a030a01624a0a0a04782e6f6b120210017a0a1206657869742031180285010001000012460a1072598ff83b120c726ff6a692c22c1da2120808bec5add968500f2a0c696e766f6b655f6167656e74300139c51f11c4c456eb1841418713c4c456eb187a00850100010000";

    #[test]
    fn python_sdk_protobuf_body() {
        let body = hex::decode(PYTHON_SDK_PROTOBUF).expect("hex");
        let decoded = decode_protobuf(&body).expect("body");
        assert_eq!(decoded.len(), 3);
        let (chat, tool, agent) = (ok(&decoded, 0), ok(&decoded, 1), ok(&decoded, 2));
        assert_eq!(chat.trace_id, "72598ff83b120c726ff6a692c22c1da2");
        assert_eq!((chat.name.as_str(), chat.kind), ("chat claude", SpanKind::LlmCall));
        assert_eq!(chat.parent_span_id.as_deref(), Some(agent.span_id.as_str()));
        assert_eq!(chat.attributes["gen_ai.usage.input_tokens"], json!(120));
        assert_eq!(chat.attributes["gen_ai.usage.output_tokens"], json!(30));
        let events: Value = serde_json::from_str(chat.text(OTEL_EVENTS).expect("events")).expect("json");
        assert_eq!(events[0]["name"], json!("retry"));
        assert_eq!(events[0]["attributes"]["attempt"], json!(2));
        assert_eq!(
            (tool.kind, tool.status, tool.status_message.as_deref()),
            (SpanKind::ToolCall, SpanStatus::Error, Some("exit 1"))
        );
        assert_eq!(tool.attributes["x.tags"], json!(["a", "b"]));
        assert_eq!(tool.attributes["x.ratio"], json!(0.5));
        assert_eq!(tool.attributes["x.ok"], json!(true));
        assert_eq!((agent.kind, &agent.parent_span_id), (SpanKind::Other, &None));
        for e in [chat, tool, agent] {
            assert_eq!(e.project.as_deref(), Some("webshop"));
            assert_eq!(e.phase.as_deref(), Some("development"));
            assert_eq!(e.text(OTEL_SCOPE_NAME), Some("py-test"));
            assert!(e.end_unix_nanos >= e.start_unix_nanos && e.start_unix_nanos > 1_700_000_000_000_000_000);
            // the resource's attributes are kept on every span, and known to come from there
            assert_eq!(e.text("telemetry.sdk.name"), Some("opentelemetry"));
            assert!(
                e.attributes[OTEL_RESOURCE_KEYS]
                    .as_array()
                    .is_some_and(|k| k.contains(&json!("telemetry.sdk.name")))
            );
        }
    }

    #[test]
    fn resource_attributes_are_kept_on_spans_and_go_back_to_a_resource() {
        let body = request(
            vec![
                kv("service.name", string("webshop".into())),
                kv("deployment.environment", string("staging".into())),
                kv("host.name", string("ci-7".into())),
            ],
            vec![span(1, "a", vec![kv("host.name", string("the-span-says".into()))]), span(2, "b", vec![])],
        )
        .encode_to_vec();
        let decoded = decode_protobuf(&body).expect("body");
        let (a, b) = (ok(&decoded, 0), ok(&decoded, 1));
        assert_eq!(a.project.as_deref(), Some("webshop"));
        assert_eq!(a.text("deployment.environment"), Some("staging"));
        assert_eq!(a.text("host.name"), Some("the-span-says"), "the span's own value wins");
        assert_eq!(b.text("host.name"), Some("ci-7"));
        assert!(!a.attributes.contains_key("service.name"), "service.name is the project");
        assert_eq!(a.attributes[OTEL_RESOURCE_KEYS], json!(["deployment.environment"]));

        let back = to_request(&[a.clone(), b.clone()]);
        assert_eq!(back.resource_spans.len(), 2, "two spans with different resources");
        let res = back.resource_spans[1].resource.as_ref().expect("resource");
        let keys: Vec<&str> = res.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["service.name", "deployment.environment", "host.name"]);
        let span_keys: Vec<&str> = back.resource_spans[1].scope_spans[0].spans[0]
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert!(!span_keys.contains(&"deployment.environment") && !span_keys.contains(&OTEL_RESOURCE_KEYS));
        let again = decode_protobuf(&back.encode_to_vec()).expect("again");
        assert_eq!((ok(&again, 0), ok(&again, 1)), (a, b), "a round trip gives back the same events");
    }

    /// Written by the OpenTelemetry JS SDK (`JsonTraceSerializer` of @opentelemetry/otlp-transformer
    /// 0.223, what exporter-trace-otlp-http posts): note `intValue` as a JSON number there, times
    /// as strings, empty `links`, `flags`.
    const JS_SDK_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"webshop"}},{"key":"helix.run","value":{"stringValue":"nightly"}}],"droppedAttributesCount":0},"scopeSpans":[{"scope":{"name":"js-test","version":"2.0"},"spans":[{"traceId":"f5449c4deb2fd91f949bb5153004849f","spanId":"3e9b293440dda89c","parentSpanId":"4253d18391ef94c3","name":"chat gpt","kind":3,"startTimeUnixNano":"1795624287082000000","endTimeUnixNano":"1795624287082255950","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":7}},{"key":"x.f","value":{"doubleValue":1.25}},{"key":"x.arr","value":{"arrayValue":{"values":[{"intValue":1},{"intValue":2}]}}}],"droppedAttributesCount":0,"events":[{"attributes":[{"key":"k","value":{"stringValue":"v"}}],"name":"ev","timeUnixNano":"1795624287082176943","droppedAttributesCount":0}],"droppedEventsCount":0,"status":{"code":2,"message":"boom"},"links":[],"droppedLinksCount":0,"flags":257},{"traceId":"f5449c4deb2fd91f949bb5153004849f","spanId":"4253d18391ef94c3","name":"root","kind":1,"startTimeUnixNano":"1795624287082000000","endTimeUnixNano":"1795624287082939215","attributes":[],"droppedAttributesCount":0,"events":[],"droppedEventsCount":0,"status":{"code":0},"links":[],"droppedLinksCount":0,"flags":257}]}]}]}"#;

    #[test]
    fn js_sdk_json_body() {
        let decoded = decode_json(JS_SDK_JSON.as_bytes()).expect("body");
        assert_eq!(decoded.len(), 2);
        let (chat, root) = (ok(&decoded, 0), ok(&decoded, 1));
        assert_eq!(chat.trace_id, "f5449c4deb2fd91f949bb5153004849f");
        assert_eq!(chat.parent_span_id.as_deref(), Some("4253d18391ef94c3"));
        assert_eq!(
            (chat.kind, chat.status, chat.status_message.as_deref()),
            (SpanKind::LlmCall, SpanStatus::Error, Some("boom"))
        );
        assert_eq!(
            (chat.start_unix_nanos, chat.end_unix_nanos),
            (1_795_624_287_082_000_000, 1_795_624_287_082_255_950)
        );
        assert_eq!(chat.attributes["gen_ai.usage.input_tokens"], json!(7));
        assert_eq!(chat.attributes["x.arr"], json!([1, 2]));
        assert_eq!(
            chat.text(OTEL_EVENTS),
            Some(r#"[{"attributes":{"k":"v"},"name":"ev","time_unix_nano":1795624287082176943}]"#)
        );
        assert!(!chat.attributes.contains_key(OTEL_DROPPED_LINKS));
        assert_eq!(
            (root.kind, root.status, &root.parent_span_id),
            (SpanKind::Other, SpanStatus::Unset, &None)
        );
        for e in [chat, root] {
            assert_eq!((e.project.as_deref(), e.run.as_deref()), (Some("webshop"), Some("nightly")));
        }
    }
}
