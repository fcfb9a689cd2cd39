//! The one way to build a trace event: [`SpanBuilder`], shared by every service that emits
//! spans (the orchestrator, the gateway), so none of them builds events as ad-hoc JSON.
//!
//! [`SpanBuilder`] clips what could make an event invalid (over-long names, nested attribute
//! values, `null`s, an end before the start), so a span built from untrusted text (a phase name,
//! a command's error) is still stored: before it, a `null` attribute (a heal span without a fix)
//! made the whole event invalid and it was dropped.

use crate::trace::{
    Event, MAX_ATTRIBUTE_BYTES, MAX_ATTRIBUTES, MAX_NAME, SCHEMA_VERSION, SpanKind, SpanStatus,
};
use serde_json::Value;

/// Longest status message kept.
const MAX_STATUS_MESSAGE: usize = 4096;

/// Now, in Unix nanoseconds (the trace schema's times).
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Builds one span as an [`Event`] that passes [`Event::validate`] whenever its ids are valid
/// (see [`helix_core::ids`]): names are clipped, `null` attributes skipped, nested ones stored
/// as their JSON text, long strings clipped, an end before the start moved to the start.
#[derive(Debug, Clone)]
pub struct SpanBuilder {
    event: Event,
}

impl SpanBuilder {
    pub fn new(trace_id: &str, span_id: &str, name: &str, kind: SpanKind) -> SpanBuilder {
        SpanBuilder {
            event: Event {
                schema_version: SCHEMA_VERSION,
                trace_id: trace_id.to_owned(),
                span_id: span_id.to_owned(),
                parent_span_id: None,
                name: name.to_owned(),
                kind,
                start_unix_nanos: 0,
                end_unix_nanos: 0,
                status: SpanStatus::Unset,
                status_message: None,
                project: None,
                phase: None,
                run: None,
                domain: None,
                attributes: Default::default(),
            },
        }
    }

    /// The parent span (`None`: a root).
    pub fn parent(mut self, parent_span_id: Option<&str>) -> SpanBuilder {
        self.event.parent_span_id = parent_span_id.map(str::to_owned);
        self
    }

    /// Start and end, Unix nanoseconds.
    pub fn times(mut self, start_unix_nanos: u64, end_unix_nanos: u64) -> SpanBuilder {
        self.event.start_unix_nanos = start_unix_nanos;
        self.event.end_unix_nanos = end_unix_nanos;
        self
    }

    pub fn status(mut self, status: SpanStatus, message: Option<&str>) -> SpanBuilder {
        self.event.status = status;
        self.event.status_message = message.map(|m| clip(m, MAX_STATUS_MESSAGE).to_owned());
        self
    }

    pub fn project(mut self, project: &str) -> SpanBuilder {
        self.event.project = Some(project.to_owned());
        self
    }

    pub fn phase(mut self, phase: &str) -> SpanBuilder {
        self.event.phase = Some(phase.to_owned());
        self
    }

    /// A readable run name (the trace id identifies the run).
    pub fn run(mut self, run: &str) -> SpanBuilder {
        self.event.run = Some(run.to_owned());
        self
    }

    pub fn attr(mut self, key: &str, value: impl Into<Value>) -> SpanBuilder {
        if let Some(v) = attribute(value.into()) {
            self.event.attributes.insert(key.to_owned(), v);
        }
        self
    }

    pub fn attributes(mut self, attributes: serde_json::Map<String, Value>) -> SpanBuilder {
        for (k, v) in attributes {
            if let Some(v) = attribute(v) {
                self.event.attributes.insert(k, v);
            }
        }
        self
    }

    pub fn build(self) -> Event {
        let mut e = self.event;
        e.name = clip(&e.name, MAX_NAME).to_owned();
        if e.name.trim().is_empty() {
            e.name = "span".to_owned();
        }
        for field in [&mut e.project, &mut e.phase, &mut e.run] {
            if let Some(v) = field.as_mut() {
                v.truncate(clip(v, MAX_NAME).len());
            }
        }
        if e.parent_span_id.as_deref() == Some(e.span_id.as_str()) {
            e.parent_span_id = None;
        }
        e.end_unix_nanos = e.end_unix_nanos.max(e.start_unix_nanos);
        while e.attributes.len() > MAX_ATTRIBUTES {
            e.attributes.pop_last();
        }
        e
    }
}

/// An attribute value the schema takes: scalars and arrays of scalars as they are (strings
/// clipped), anything else as its JSON text; `None` for null.
fn attribute(v: Value) -> Option<Value> {
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    Some(match v {
        Value::Null => return None,
        Value::String(s) => Value::String(clip(&s, MAX_ATTRIBUTE_BYTES).to_owned()),
        Value::Number(_) | Value::Bool(_) => v,
        Value::Array(items) if items.iter().all(scalar) => Value::Array(
            items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Value::String(clip(&s, MAX_ATTRIBUTE_BYTES).to_owned()),
                    i => i,
                })
                .collect(),
        ),
        other => Value::String(clip(&other.to_string(), MAX_ATTRIBUTE_BYTES).to_owned()),
    })
}

/// `s` cut to at most `max` bytes at a character boundary.
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

#[cfg(test)]
mod tests {
    use crate::ids::{new_span_id, new_trace_id};
    use serde_json::json;

    use super::*;
    #[test]
    fn spans_are_valid_whatever_their_text() {
        let (trace, span, parent) = (new_trace_id(), new_span_id(), new_span_id());
        let long = "é".repeat(MAX_NAME);
        let mut attrs = serde_json::Map::new();
        attrs.insert("helix.attempt".to_owned(), json!(2));
        attrs.insert("nested".to_owned(), json!({"a": [1, {"b": null}]}));
        attrs.insert("none".to_owned(), Value::Null);
        attrs.insert("list".to_owned(), json!(["a", 1, true]));
        let e = SpanBuilder::new(&trace, &span, &long, SpanKind::Heal)
            .parent(Some(&parent))
            .times(2_000, 1_000)
            .status(SpanStatus::Error, Some("exit 1"))
            .project(&long)
            .phase("test")
            .run("r1")
            .attr("helix.big", "x".repeat(MAX_ATTRIBUTE_BYTES + 10))
            .attributes(attrs)
            .build();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(
            (e.trace_id.as_str(), e.parent_span_id.as_deref()),
            (trace.as_str(), Some(parent.as_str()))
        );
        assert!(e.name.len() <= MAX_NAME && e.name.starts_with('é'));
        assert_eq!((e.start_unix_nanos, e.end_unix_nanos), (2_000, 2_000));
        assert_eq!(
            (e.status, e.status_message.as_deref(), e.phase.as_deref()),
            (SpanStatus::Error, Some("exit 1"), Some("test"))
        );
        assert_eq!(e.attributes["nested"], json!(r#"{"a":[1,{"b":null}]}"#));
        assert_eq!(e.attributes["list"], json!(["a", 1, true]));
        assert_eq!(e.number("helix.attempt"), Some(2.0));
        assert!(!e.attributes.contains_key("none"));
        assert_eq!(e.text("helix.big").map(str::len), Some(MAX_ATTRIBUTE_BYTES));

        let root = SpanBuilder::new(&trace, &span, " ", SpanKind::Run).parent(Some(&span)).build();
        assert_eq!((root.name.as_str(), root.parent_span_id.as_deref()), ("span", None));
        assert_eq!(root.validate(), Ok(()));
        let ts = now_unix_nanos();
        assert!(ts > 1_700_000_000_000_000_000, "{ts}");
    }
}
