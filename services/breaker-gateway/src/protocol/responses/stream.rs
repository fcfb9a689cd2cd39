//! A Chat Completions chunk stream as a Responses event stream.
//!
//! Chat streams text deltas and tool-call deltas (by tool index) and ends with a finishing chunk,
//! a usage chunk and `[DONE]`. The Responses stream opens with `response.created` and
//! `response.in_progress`, announces each output item (`response.output_item.added`), streams its
//! deltas (`response.output_text.delta`, `response.function_call_arguments.delta`), closes it
//! (`...done`, `response.output_item.done`) and ends with `response.completed` (or
//! `response.incomplete`) carrying the whole response and its usage. An error chunk becomes an
//! `error` event followed by `response.failed`. Every event carries its `sequence_number`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{ResponseContext, ToolKind, call_item, custom_input, message_item, new_id, usage_object};
use crate::protocol::Usage;

#[derive(Debug)]
struct TextItem {
    id: String,
    output_index: usize,
    text: String,
}

#[derive(Debug)]
struct CallItem {
    output_index: usize,
    call_id: String,
    name: String,
    arguments: String,
    kind: ToolKind,
    item_id: String,
}

/// Turns Chat chunks into Responses events (`(event name, data)` pairs).
#[derive(Debug)]
pub struct ChatToResponsesStream {
    ctx: ResponseContext,
    seq: u64,
    started: bool,
    text: Option<TextItem>,
    calls: BTreeMap<u64, CallItem>,
    /// Finished items by output index.
    output: BTreeMap<usize, Value>,
    next_index: usize,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
    failed: bool,
}

impl ChatToResponsesStream {
    pub fn new(ctx: ResponseContext) -> ChatToResponsesStream {
        ChatToResponsesStream {
            ctx,
            seq: 0,
            started: false,
            text: None,
            calls: BTreeMap::new(),
            output: BTreeMap::new(),
            next_index: 0,
            finish: None,
            usage: None,
            done: false,
            failed: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the stream ended with a response (completed or incomplete), not a failure.
    pub fn completed(&self) -> bool {
        self.done && !self.failed
    }

    /// The output items so far (all of them once the stream is done), for the store.
    pub fn output(&self) -> Vec<Value> {
        self.output.values().cloned().collect()
    }

    pub fn context(&self) -> &ResponseContext {
        &self.ctx
    }

    fn event(&mut self, name: &str, data: Value) -> (String, Value) {
        let mut map = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        map.insert("type".to_owned(), json!(name));
        map.insert("sequence_number".to_owned(), json!(self.seq));
        self.seq += 1;
        (name.to_owned(), Value::Object(map))
    }

    fn start(&mut self, out: &mut Vec<(String, Value)>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.ctx.object("in_progress", &[], None);
        out.push(self.event("response.created", json!({"response": response.clone()})));
        out.push(self.event("response.in_progress", json!({"response": response})));
    }

    fn close_text(&mut self, out: &mut Vec<(String, Value)>) {
        let Some(t) = self.text.take() else { return };
        let part = json!({"type": "output_text", "text": t.text, "annotations": []});
        out.push(self.event(
            "response.output_text.done",
            json!({"item_id": t.id, "output_index": t.output_index, "content_index": 0, "text": t.text}),
        ));
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": t.id, "output_index": t.output_index, "content_index": 0, "part": part}),
        ));
        let item = message_item(&t.id, &t.text, "completed");
        out.push(
            self.event("response.output_item.done", json!({"output_index": t.output_index, "item": item})),
        );
        self.output.insert(t.output_index, item);
    }

    fn close_calls(&mut self, out: &mut Vec<(String, Value)>) {
        for (_, c) in std::mem::take(&mut self.calls) {
            let item = call_item(&self.ctx, &c.call_id, &c.name, &c.arguments, "completed");
            match c.kind {
                ToolKind::Function => out.push(self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": c.item_id, "output_index": c.output_index, "arguments": c.arguments}),
                )),
                ToolKind::Custom => {
                    // the wrapped input can only be unwrapped whole
                    let input = custom_input(&c.arguments);
                    out.push(self.event(
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": c.item_id, "output_index": c.output_index, "delta": input}),
                    ));
                    out.push(self.event(
                        "response.custom_tool_call_input.done",
                        json!({"item_id": c.item_id, "output_index": c.output_index, "input": input}),
                    ));
                }
            }
            out.push(
                self.event(
                    "response.output_item.done",
                    json!({"output_index": c.output_index, "item": item}),
                ),
            );
            self.output.insert(c.output_index, item);
        }
    }

    /// The events for one Chat chunk.
    pub fn push(&mut self, chunk: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start(&mut out);
        if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
            self.fail(error, &mut out);
            return out;
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            let reasoning = u
                .get("completion_tokens_details")
                .and_then(|d| d.get("reasoning_tokens"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            self.usage = Usage::from_openai(u).map(|usage| usage_object(&usage, reasoning));
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else { return out };
        let delta = choice.get("delta");
        if let Some(text) =
            delta.and_then(|d| d.get("content")).and_then(Value::as_str).filter(|t| !t.is_empty())
        {
            if self.text.is_none() {
                let id = new_id("msg_");
                let output_index = self.next_index;
                self.next_index += 1;
                let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
                out.push(self.event(
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": item}),
                ));
                out.push(self.event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": output_index, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": []}}),
                ));
                self.text = Some(TextItem { id, output_index, text: String::new() });
            }
            if let Some(t) = &mut self.text {
                t.text.push_str(text);
                let (id, index) = (t.id.clone(), t.output_index);
                out.push(self.event(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text}),
                ));
            }
        }
        for call in delta.and_then(|d| d.get("tool_calls")).and_then(Value::as_array).into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let f = call.get("function");
            let args = f.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or_default();
            if !self.calls.contains_key(&index) {
                // text before a tool call is finished when the call starts
                self.close_text(&mut out);
                let name =
                    f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default().to_owned();
                let call_id =
                    call.get("id").and_then(Value::as_str).map_or_else(|| new_id("call_"), str::to_owned);
                let kind = self.ctx.kind_of(&name);
                let output_index = self.next_index;
                self.next_index += 1;
                let mut item = call_item(&self.ctx, &call_id, &name, "", "in_progress");
                let item_id = item.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                if kind == ToolKind::Custom {
                    item["input"] = json!("");
                }
                out.push(self.event(
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": item}),
                ));
                self.calls.insert(
                    index,
                    CallItem { output_index, call_id, name, arguments: String::new(), kind, item_id },
                );
            }
            if args.is_empty() {
                continue;
            }
            let Some(c) = self.calls.get_mut(&index) else { continue };
            c.arguments.push_str(args);
            if c.kind == ToolKind::Function {
                let (item_id, output_index) = (c.item_id.clone(), c.output_index);
                out.push(self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": output_index, "delta": args}),
                ));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
            self.close_text(&mut out);
            self.close_calls(&mut out);
        }
        out
    }

    /// The closing events, at `[DONE]` (or the end of the upstream stream).
    pub fn finish(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start(&mut out);
        self.close_text(&mut out);
        self.close_calls(&mut out);
        self.done = true;
        let (status, incomplete) = super::response::status_of(self.finish.as_deref());
        let output = self.output();
        let mut response = self.ctx.object(status, &output, self.usage.clone());
        if let Some(reason) = incomplete {
            response["incomplete_details"] = json!({"reason": reason});
        }
        let name = if incomplete.is_some() { "response.incomplete" } else { "response.completed" };
        out.push(self.event(name, json!({"response": response})));
        out
    }

    /// The events that end the stream with an error (`error`, `response.failed`) the gateway
    /// reports itself.
    pub fn error(&mut self, code: &str, message: &str) -> Vec<(String, Value)> {
        self.push(&json!({"error": {"message": message, "code": code}}))
    }

    fn fail(&mut self, error: &Value, out: &mut Vec<(String, Value)>) {
        self.done = true;
        self.failed = true;
        let message =
            error.get("message").and_then(Value::as_str).unwrap_or("the upstream failed").to_owned();
        let code = error
            .get("code")
            .and_then(Value::as_str)
            .or_else(|| error.get("type").and_then(Value::as_str))
            .unwrap_or("server_error")
            .to_owned();
        out.push(self.event("error", json!({"code": code, "message": message, "param": null})));
        let output = self.output();
        let mut response = self.ctx.object("failed", &output, self.usage.clone());
        response["error"] = json!({"code": code, "message": message});
        out.push(self.event("response.failed", json!({"response": response})));
    }
}
