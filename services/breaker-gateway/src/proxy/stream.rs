//! Streams: waiting for the first content (before which a stream can still fall back), then
//! piping the committed stream to the client, translated, with keep-alives, cut cleanly when the
//! upstream stalls or breaks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use helix_core::ErrorCode;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{
    Call, CallReport, Deployment, Failure, Proxy, ProxyRequest, StreamStart, redact_with, remaining,
};
use crate::protocol::{self, Protocol, SseEvent, SseParser, Usage};

impl Proxy {
    /// Waits for the first upstream event with content (or the stream's proper end), within the
    /// first-byte budget, so that a stream that fails before any content (one that opens with an
    /// error event, or is cut after its content-free role chunk) can still fall back.
    pub(super) async fn first_event(
        &self,
        dep: &Deployment,
        native: bool,
        res: reqwest::Response,
        deadline: Instant,
    ) -> Result<(BoxStream<'static, reqwest::Result<Bytes>>, SseParser, Vec<SseEvent>), Failure> {
        let mut upstream = res.bytes_stream().boxed();
        let mut parser = SseParser::default();
        let mut pending = Vec::new();
        let first_wait = Duration::from_millis(self.cfg.first_byte_timeout_ms).min(remaining(deadline));
        let until = Instant::now() + first_wait;
        // once events flow, a silence before any content is a stall like one after it
        let idle = Duration::from_millis(self.cfg.idle_timeout_ms);
        let commits = |ev: &SseEvent| if native { responses_commits(ev) } else { commits(dep.protocol, ev) };
        let upstream_error =
            |ev: &SseEvent| if native { responses_error(ev) } else { upstream_error(dep.protocol, ev) };
        while !pending.iter().any(commits) {
            let wait_until = if pending.is_empty() { until } else { until.min(Instant::now() + idle) };
            if let Some((ev, status)) =
                pending.iter().find_map(|ev| upstream_error(ev).map(|(status, _)| (ev, status)))
            {
                return Err(Failure::Status(status, Vec::new(), Bytes::from(ev.data.clone())));
            }
            match tokio::time::timeout(remaining(wait_until), upstream.next()).await {
                Ok(Some(Ok(chunk))) => match parser.feed(&chunk) {
                    Ok(events) => pending.extend(events),
                    Err(e) => return Err(Failure::Transport(format!("{}: {e}", dep.cfg.id))),
                },
                Ok(Some(Err(e))) => {
                    return Err(Failure::Transport(format!("{}: stream: {}", dep.cfg.id, e.without_url())));
                }
                Ok(None) => match parser.finish() {
                    Some(ev) if commits(&ev) || upstream_error(&ev).is_some() => pending.push(ev),
                    _ => {
                        return Err(Failure::Transport(format!(
                            "{}: the stream ended before any content",
                            dep.cfg.id
                        )));
                    }
                },
                Err(_) if !pending.is_empty() => {
                    return Err(Failure::Transport(format!(
                        "{}: the stream stalled before any content (nothing for {} ms)",
                        dep.cfg.id,
                        idle.as_millis()
                    )));
                }
                Err(_) => {
                    return Err(Failure::Transport(format!(
                        "{}: no event within {} ms",
                        dep.cfg.id,
                        first_wait.as_millis()
                    )));
                }
            }
        }
        if let Some((status, _)) = pending.first().and_then(upstream_error) {
            let body = pending.first().map(|ev| Bytes::from(ev.data.clone())).unwrap_or_default();
            return Err(Failure::Status(status, Vec::new(), body));
        }
        Ok((upstream, parser, pending))
    }

    /// Pipes a committed stream to the client: translated when needed, keep-alive comments while
    /// the upstream is silent, cut with an error event when it stalls or breaks. Reports the
    /// outcome to the breaker and the final report (usage included) on `done`.
    pub(super) async fn pipe(
        self: Arc<Self>,
        start: Box<StreamStart>,
        call: Arc<Call>,
        tx: mpsc::Sender<Bytes>,
        mut report: CallReport,
        done: oneshot::Sender<CallReport>,
    ) {
        let StreamStart { dep, status, mut upstream, mut parser, pending, probe, started, _permit, .. } =
            *start;
        let mut pipe = StreamPipe::new(&call.req, &dep, &call.model, self.keys.clone());
        let idle = Duration::from_millis(self.cfg.idle_timeout_ms);
        let keepalive = self.keepalive();
        let deadline = call.deadline;
        let mut failure: Option<String> = None;
        let mut client_gone = false;
        'outer: {
            for ev in pending {
                for out in pipe.event(ev) {
                    if tx.send(out).await.is_err() {
                        client_gone = true;
                        break 'outer;
                    }
                }
            }
            let mut last = Instant::now();
            loop {
                if pipe.done {
                    break;
                }
                let wait = keepalive.min(remaining(deadline));
                match tokio::time::timeout(wait, upstream.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        last = Instant::now();
                        let events = match parser.feed(&chunk) {
                            Ok(ev) => ev,
                            Err(e) => {
                                failure = Some(e.to_string());
                                break;
                            }
                        };
                        for ev in events {
                            for out in pipe.event(ev) {
                                if tx.send(out).await.is_err() {
                                    client_gone = true;
                                    break 'outer;
                                }
                            }
                        }
                    }
                    Ok(Some(Err(e))) => {
                        failure = Some(format!("the upstream stream broke: {}", e.without_url()));
                        break;
                    }
                    Ok(None) => {
                        // an upstream that omits the final blank line still ends its last event
                        if let Some(ev) = parser.finish() {
                            for out in pipe.event(ev) {
                                if tx.send(out).await.is_err() {
                                    client_gone = true;
                                    break 'outer;
                                }
                            }
                        }
                        if !pipe.done {
                            failure = Some("the upstream stream ended early".to_owned());
                        }
                        break;
                    }
                    Err(_) => {
                        if Instant::now() >= deadline {
                            failure = Some("the call took longer than the total timeout".to_owned());
                            break;
                        }
                        if last.elapsed() >= idle {
                            failure =
                                Some(format!("the upstream stream stalled for {} ms", idle.as_millis()));
                            break;
                        }
                        if tx.send(Bytes::from(protocol::sse::comment("keep-alive"))).await.is_err() {
                            client_gone = true;
                            break 'outer;
                        }
                    }
                }
            }
            if let Some(f) = &failure {
                let f = self.redact(f);
                tracing::warn!(deployment = %dep.cfg.id, error = %f, "stream failed after it started");
                let _ = tx.send(pipe.failure(&f)).await;
            }
        }
        // the client's end of the stream closes now, whatever the accounting below takes
        drop(tx);
        let failed = failure.is_some() || pipe.upstream_error.is_some();
        let took = started.elapsed();
        report.usage = pipe.usage();
        report.responses_output = pipe.responses_output();
        report.error = failure
            .map(|f| self.redact(&f).into_owned())
            .or(pipe.upstream_error)
            .or_else(|| client_gone.then(|| "the client went away before the stream ended".to_owned()));
        // the report first: the client's stream ends with the cost it carries
        let _ = done.send(report);
        // a client that went away says nothing about the deployment (a probe's lease then
        // expires, see the breaker docs)
        if !client_gone {
            self.record(&dep, probe, failed, took, Some(status)).await;
        }
    }
}

/// The status and message of an error event an upstream sent inside its stream, if `ev` is one:
/// Anthropic's `event: error`, or an OpenAI chunk holding an `error` object.
/// Whether a stream is committed to its deployment by this event: content (text, a tool call,
/// thinking) or its proper end. Before, nothing the client could not get from another
/// deployment was said: role chunks, `message_start`, pings, empty deltas.
pub(super) fn commits(protocol: Protocol, ev: &SseEvent) -> bool {
    if protocol == Protocol::OpenAi && ev.is_openai_done() {
        return true;
    }
    let Ok(data) = ev.json() else { return false };
    let non_empty = |v: Option<&Value>| match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    };
    match protocol {
        Protocol::OpenAi => data.get("choices").and_then(Value::as_array).is_some_and(|choices| {
            choices.iter().any(|c| {
                let d = c.get("delta");
                non_empty(c.get("text"))
                    || non_empty(d.and_then(|d| d.get("content")))
                    || non_empty(d.and_then(|d| d.get("tool_calls")))
                    || non_empty(d.and_then(|d| d.get("reasoning_content")))
                    || non_empty(d.and_then(|d| d.get("reasoning")))
                    || non_empty(d.and_then(|d| d.get("refusal")))
                    || non_empty(c.get("finish_reason"))
            })
        }),
        Protocol::Anthropic => {
            let kind = data.get("type").and_then(Value::as_str).unwrap_or(ev.event_name());
            match kind {
                "content_block_delta" => true,
                // a tool call is content from its start (its name); a text block is not yet
                "content_block_start" => data
                    .get("content_block")
                    .and_then(|b| b.get("type"))
                    .and_then(Value::as_str)
                    .is_some_and(|t| t != "text" && t != "thinking"),
                "message_delta" | "message_stop" => true,
                _ => false,
            }
        }
    }
}

/// The type of a Responses API event (its `type`, else its `event:` name).
fn responses_type(ev: &SseEvent, data: &Value) -> String {
    data.get("type").and_then(Value::as_str).unwrap_or(ev.event_name()).to_owned()
}

/// [`commits`] for a Responses API stream (a passed-through call): an output delta, a finished
/// item, a function call announced, or the response's end.
fn responses_commits(ev: &SseEvent) -> bool {
    let Ok(data) = ev.json() else { return false };
    match responses_type(ev, &data).as_str() {
        "response.output_item.added" => data
            .get("item")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "message" && t != "reasoning"),
        t => {
            t.ends_with(".delta")
                || t == "response.output_item.done"
                || t == "response.completed"
                || t == "response.incomplete"
        }
    }
}

/// [`upstream_error`] for a Responses API stream: an `error` event or `response.failed`.
fn responses_error(ev: &SseEvent) -> Option<(u16, String)> {
    let data = ev.json().ok()?;
    let error = match responses_type(ev, &data).as_str() {
        "error" => data.clone(),
        "response.failed" => data.get("response").and_then(|r| r.get("error")).cloned().unwrap_or_default(),
        _ => return None,
    };
    let message = error.get("message").and_then(Value::as_str).unwrap_or("upstream stream failed").to_owned();
    Some((500, message))
}

pub(super) fn upstream_error(protocol: Protocol, ev: &SseEvent) -> Option<(u16, String)> {
    if protocol == Protocol::OpenAi && ev.is_openai_done() {
        return None;
    }
    let data = ev.json().ok()?;
    let error = data.get("error").filter(|e| e.is_object())?;
    let is_error = match protocol {
        Protocol::Anthropic => {
            ev.event_name() == "error" || data.get("type").and_then(Value::as_str) == Some("error")
        }
        Protocol::OpenAi => true,
    };
    if !is_error {
        return None;
    }
    let message = error.get("message").and_then(Value::as_str).unwrap_or("upstream stream failed").to_owned();
    let status = match protocol {
        Protocol::Anthropic => protocol::error::anthropic_error_status(
            error.get("type").and_then(Value::as_str).unwrap_or("api_error"),
        ),
        Protocol::OpenAi => 500,
    };
    Some((status, message))
}

/// The head of every SSE answer (`x-accel-buffering: no` keeps nginx-style proxies from holding
/// events back).
pub(super) fn stream_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".to_owned(), "text/event-stream".to_owned()),
        ("cache-control".to_owned(), "no-cache".to_owned()),
        ("x-accel-buffering".to_owned(), "no".to_owned()),
    ]
}

/// Turns upstream SSE events into what the client's protocol expects.
struct StreamPipe {
    client: Protocol,
    upstream: Protocol,
    /// The client did not ask for OpenAI's usage chunk (the gateway did, to meter the call).
    strip_usage: bool,
    to_anthropic: Option<protocol::OpenAiToAnthropicStream>,
    to_openai: Option<protocol::AnthropicToOpenAiStream>,
    usage: protocol::UsageAccumulator,
    done: bool,
    /// The upstream ended its stream with an error event (already passed on to the client).
    upstream_error: Option<String>,
    /// Masked in an upstream error event before it is relayed.
    keys: helix_core::redact::Masker,
    /// The model the client asked for, which the answer keeps.
    model: String,
    /// A passed-through Responses API stream: relayed as it is, its usage read from its end.
    native: bool,
    native_usage: Option<Usage>,
    /// A Responses call served by Chat (or, through `to_openai`, Anthropic): the OpenAI chunks
    /// become Responses events here.
    to_responses: Option<protocol::responses::ChatToResponsesStream>,
}

impl StreamPipe {
    fn new(
        req: &ProxyRequest,
        dep: &Deployment,
        model: &str,
        keys: helix_core::redact::Masker,
    ) -> StreamPipe {
        let asked = req
            .json()
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        StreamPipe {
            client: req.protocol,
            upstream: dep.protocol,
            strip_usage: req.protocol == Protocol::OpenAi && !asked,
            to_anthropic: (req.protocol == Protocol::Anthropic && dep.protocol == Protocol::OpenAi)
                .then(|| protocol::OpenAiToAnthropicStream::new(model)),
            to_openai: (req.protocol == Protocol::OpenAi && dep.protocol == Protocol::Anthropic)
                .then(|| protocol::AnthropicToOpenAiStream::new(model, asked)),
            usage: protocol::UsageAccumulator::new(dep.protocol),
            keys,
            done: false,
            upstream_error: None,
            model: model.to_owned(),
            native: req.passes_through(dep),
            native_usage: None,
            to_responses: req
                .respond_as
                .clone()
                .filter(|_| !req.passes_through(dep))
                .map(protocol::responses::ChatToResponsesStream::new),
        }
    }

    /// The completed Responses stream's output items.
    fn responses_output(&self) -> Option<Vec<Value>> {
        self.to_responses.as_ref().filter(|t| t.completed()).map(|t| t.output())
    }

    /// The event that ends the stream when it failed after it started, in the client's kind.
    fn failure(&mut self, message: &str) -> Bytes {
        let code = ErrorCode::UpstreamFailed.as_str();
        match &mut self.to_responses {
            Some(t) => responses_bytes(t.error(code, message)),
            None => Bytes::from(protocol::stream_error(self.client, 502, code, message)),
        }
    }

    /// OpenAI chunks for the client: as they are, or as Responses events; `end` after `[DONE]`.
    fn openai_out(&mut self, chunks: Vec<Value>, end: bool) -> Vec<Bytes> {
        use protocol::sse::{OPENAI_DONE, encode_json};
        match &mut self.to_responses {
            Some(t) => {
                let mut events = Vec::new();
                for c in &chunks {
                    events.extend(t.push(c));
                }
                if end {
                    events.extend(t.finish());
                }
                if events.is_empty() { Vec::new() } else { vec![responses_bytes(events)] }
            }
            None => {
                let mut out: Vec<Bytes> = chunks.iter().map(|c| Bytes::from(encode_json(None, c))).collect();
                if end {
                    out.push(Bytes::from_static(OPENAI_DONE.as_bytes()));
                }
                out
            }
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.native_usage.or_else(|| self.usage.usage())
    }

    /// A Responses API event of a passed-through call, relayed with the client's model name.
    fn native_event(&mut self, ev: protocol::SseEvent) -> Vec<Bytes> {
        if let Some((_, message)) = responses_error(&ev) {
            self.done = true;
            let message = redact_with(&self.keys, &message);
            self.upstream_error = Some(format!("the upstream sent an error event: {message}"));
        }
        let Ok(mut data) = ev.json() else { return Vec::new() };
        let kind = responses_type(&ev, &data);
        if let Some(response) = data.get_mut("response") {
            if let Some(m) = response.get_mut("model").filter(|m| m.is_string()) {
                *m = Value::String(self.model.clone());
            }
            if kind == "response.completed" || kind == "response.incomplete" {
                self.native_usage = response.get("usage").and_then(Usage::from_responses);
                self.done = true;
            }
        }
        if self.upstream_error.is_some() {
            let text = data.to_string();
            let masked = redact_with(&self.keys, &text);
            if masked != text {
                data = serde_json::from_str(&masked).unwrap_or(data);
            }
        }
        vec![Bytes::from(protocol::sse::encode_json(Some(&kind), &data))]
    }

    fn event(&mut self, ev: protocol::SseEvent) -> Vec<Bytes> {
        use protocol::sse::encode_json;
        if self.done {
            return Vec::new();
        }
        if self.native {
            return self.native_event(ev);
        }
        if self.upstream == Protocol::OpenAi && ev.is_openai_done() {
            self.done = true;
            if let Some(t) = &mut self.to_anthropic {
                return t
                    .finish()
                    .into_iter()
                    .map(|(name, v)| Bytes::from(encode_json(Some(&name), &v)))
                    .collect();
            }
            return self.openai_out(Vec::new(), true);
        }
        let failed = upstream_error(self.upstream, &ev);
        if let Some((_, message)) = &failed {
            // the stream ends here; the translators below turn the error into the client's kind
            self.done = true;
            let message = redact_with(&self.keys, message);
            self.upstream_error = Some(format!("the upstream sent an error event: {message}"));
        }
        let Ok(mut data) = ev.json() else { return Vec::new() };
        if failed.is_some() {
            // an upstream error may echo the key it was sent
            let text = data.to_string();
            let masked = redact_with(&self.keys, &text);
            if masked != text {
                data = serde_json::from_str(&masked).unwrap_or(data);
            }
        }
        self.usage.push(&data);
        let name = ev.event_name().to_owned();
        if self.upstream == Protocol::Anthropic
            && (name == "message_stop" || data.get("type").and_then(Value::as_str) == Some("message_stop"))
        {
            self.done = true;
        }
        match (self.client, self.upstream) {
            (Protocol::OpenAi, Protocol::OpenAi) => {
                if self.strip_usage && protocol::strip_usage_chunk(&mut data) {
                    return Vec::new();
                }
                if let Some(m) = data.get_mut("model").filter(|m| m.is_string()) {
                    *m = Value::String(self.model.clone());
                }
                self.openai_out(vec![data], false)
            }
            (Protocol::Anthropic, Protocol::Anthropic) => {
                if let Some(m) =
                    data.get_mut("message").and_then(|m| m.get_mut("model")).filter(|m| m.is_string())
                {
                    *m = Value::String(self.model.clone());
                }
                vec![Bytes::from(encode_json(ev.event.as_deref(), &data))]
            }
            (Protocol::Anthropic, Protocol::OpenAi) => match &mut self.to_anthropic {
                Some(t) => {
                    t.push(&data).into_iter().map(|(n, v)| Bytes::from(encode_json(Some(&n), &v))).collect()
                }
                None => Vec::new(),
            },
            (Protocol::OpenAi, Protocol::Anthropic) => match &mut self.to_openai {
                Some(t) => match t.push(&name, &data) {
                    Ok(chunks) => {
                        let end = self.done;
                        self.openai_out(chunks, end)
                    }
                    Err(e) => {
                        self.done = true;
                        let chunk =
                            protocol::error_body(Protocol::OpenAi, e.status(), &e.error_type, &e.message);
                        self.openai_out(vec![chunk], false)
                    }
                },
                None => Vec::new(),
            },
        }
    }
}

/// Responses events encoded as one chunk of SSE.
fn responses_bytes(events: Vec<(String, Value)>) -> Bytes {
    let mut out = String::new();
    for (name, v) in events {
        out.push_str(&protocol::sse::encode_json(Some(&name), &v));
    }
    Bytes::from(out)
}

/// The error event a stream whose head went out early ends with when no deployment answered:
/// the client protocol's error event, or for a Responses call `error` and `response.failed`.
pub(super) fn error_event(req: &ProxyRequest, status: u16, code: &str, message: &str) -> Bytes {
    match &req.respond_as {
        Some(ctx) => {
            responses_bytes(protocol::responses::ChatToResponsesStream::new(ctx.clone()).error(code, message))
        }
        None => Bytes::from(protocol::stream_error(req.protocol, status, code, message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_events_are_recognised_in_both_protocols() {
        let ev = |event: Option<&str>, data: &str| SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            ..SseEvent::default()
        };
        let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            upstream_error(Protocol::Anthropic, &ev(Some("error"), overloaded)),
            Some((529, "Overloaded".to_owned()))
        );
        let boom = r#"{"error":{"message":"boom","type":"server_error"}}"#;
        assert_eq!(upstream_error(Protocol::OpenAi, &ev(None, boom)), Some((500, "boom".to_owned())));
        assert_eq!(upstream_error(Protocol::OpenAi, &ev(None, "[DONE]")), None);
        let delta = r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}"#;
        assert_eq!(upstream_error(Protocol::Anthropic, &ev(Some("content_block_delta"), delta)), None);
    }
}
