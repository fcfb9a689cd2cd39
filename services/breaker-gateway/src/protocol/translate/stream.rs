//! Streamed responses in both directions, translated event by event so the client sees tokens as
//! soon as the upstream produces them.
//!
//! The two protocols structure a stream differently. OpenAI sends flat chunks whose `delta` may
//! carry text and fragments of several tool calls (told apart by `index`), then a chunk with
//! `finish_reason`, then (if asked) a usage-only chunk, then `[DONE]`. Anthropic sends a message
//! made of content blocks, each opened, filled with deltas and closed in turn, and reports the stop
//! reason and final usage together in `message_delta`. Translating from OpenAI therefore opens a
//! new block whenever the stream switches between reasoning, text and a tool call (or between
//! tool calls), and holds `message_delta` back until the stream ends so the usage chunk that
//! follows `finish_reason` can be folded into it. Translating from Anthropic flattens the blocks
//! again: thinking deltas become `reasoning_content` deltas, text deltas `content`, and each
//! tool_use block a tool call numbered by its order among the tool calls, whatever its block index.

use serde_json::{Value, json};

use super::{
    anthropic_stop, finish_from_stop_reason, generated_id, input_to_arguments, present, reasoning_text,
    reprefix_id, str_of, unix_now,
};
use crate::protocol::Protocol;
use crate::protocol::error::anthropic_error_status;
use crate::protocol::usage::{Usage, UsageAccumulator};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Thinking(u64),
    Text(u64),
    Tool(u64),
}

#[derive(Debug)]
struct ToolCall {
    openai_index: u64,
    id: Option<String>,
    name: Option<String>,
    /// The Anthropic block, once started (a block needs the tool's name to start).
    block: Option<u64>,
    /// Argument fragments that arrived before the name.
    pending_arguments: String,
}

/// Turns an OpenAI chat completion stream into Anthropic Messages stream events.
///
/// Feed every chunk's parsed data to [`push`](Self::push) and call [`finish`](Self::finish) when
/// the upstream sends `[DONE]`; each call returns `(event name, data)` pairs to send in order.
/// An OpenAI in-stream error chunk (`{"error": …}`) becomes an Anthropic `error` event and ends the
/// translation. `reasoning_content` (or `reasoning`) deltas are streamed as a `thinking` block
/// (`thinking_delta` events; the block starts with an empty `signature` and gets no
/// `signature_delta`, as there is none); refusal text is streamed as text. Should an upstream
/// interleave fragments of several tool calls, fragments of a call whose block was already closed
/// are still sent with that block's index, which SDK accumulators apply by index. Usage from the
/// final chunk goes into `message_delta`, cache reads split from the input as in
/// [`Usage::from_openai`].
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    requested_model: String,
    started: bool,
    done: bool,
    next_block: u64,
    open: Option<OpenBlock>,
    tools: Vec<ToolCall>,
    finish_reason: Option<String>,
    /// The stop string the upstream says it matched (vLLM's `stop_reason`).
    matched_stop: Option<String>,
    usage: Option<Usage>,
}

type Events = Vec<(String, Value)>;

fn emit(out: &mut Events, data: Value) {
    let name = str_of(&data, "type").unwrap_or("message").to_owned();
    out.push((name, data));
}

impl OpenAiToAnthropicStream {
    pub fn new(requested_model: &str) -> OpenAiToAnthropicStream {
        OpenAiToAnthropicStream {
            requested_model: requested_model.to_owned(),
            started: false,
            done: false,
            next_block: 0,
            open: None,
            tools: Vec::new(),
            finish_reason: None,
            matched_stop: None,
            usage: None,
        }
    }

    /// Translates one chunk.
    pub fn push(&mut self, chunk: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
            self.done = true;
            let message = str_of(error, "message").unwrap_or("upstream stream failed");
            emit(&mut out, json!({"type": "error", "error": {"type": "api_error", "message": message}}));
            return out;
        }
        if let Some(usage) = chunk.get("usage").and_then(Usage::from_openai) {
            self.usage = Some(usage);
        }
        self.start(chunk, &mut out);
        let choices = chunk.get("choices").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let Some(choice) = choices.iter().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(reasoning) = reasoning_text(delta) {
            self.thinking(reasoning, &mut out);
        }
        for key in ["content", "refusal"] {
            if let Some(text) = str_of(delta, key).filter(|t| !t.is_empty()) {
                self.text(text, &mut out);
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                self.tool_call(call, &mut out);
            }
        }
        if let Some(reason) = str_of(choice, "finish_reason") {
            self.finish_reason = Some(reason.to_owned());
            self.matched_stop = str_of(choice, "stop_reason").map(str::to_owned);
            self.flush_unnamed_tools(&mut out);
            self.close(&mut out);
        }
        out
    }

    /// Ends the message: closes the open block and sends `message_delta` (stop reason and the final
    /// usage) and `message_stop`. Later calls return nothing. Call it when the upstream sent
    /// `[DONE]`; a stream that broke off should end with an error event instead (see
    /// [`is_complete`](Self::is_complete)).
    pub fn finish(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.done = true;
        self.start(&Value::Null, &mut out);
        self.flush_unnamed_tools(&mut out);
        self.close(&mut out);
        let choice = json!({"finish_reason": self.finish_reason, "stop_reason": self.matched_stop});
        let (stop_reason, stop_sequence) = anthropic_stop(&choice, !self.tools.is_empty());
        let usage = self.usage.unwrap_or_default();
        emit(
            &mut out,
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": usage.to_anthropic(),
            }),
        );
        emit(&mut out, json!({"type": "message_stop"}));
        out
    }

    /// Whether the upstream reported a `finish_reason`, i.e. the response was not cut off.
    pub fn is_complete(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// The usage reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn start(&mut self, chunk: &Value, out: &mut Events) {
        if self.started {
            return;
        }
        self.started = true;
        emit(
            out,
            json!({
                "type": "message_start",
                "message": {
                    "id": reprefix_id(str_of(chunk, "id"), "msg_"),
                    "type": "message",
                    "role": "assistant",
                    "model": self.requested_model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    // OpenAI reports usage only at the end; the final message_delta carries it.
                    "usage": self.usage.unwrap_or_default().to_anthropic(),
                },
            }),
        );
    }

    fn open_block(&mut self, content_block: Value, out: &mut Events) -> u64 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        emit(out, json!({"type": "content_block_start", "index": index, "content_block": content_block}));
        index
    }

    fn close(&mut self, out: &mut Events) {
        if let Some(OpenBlock::Thinking(index) | OpenBlock::Text(index) | OpenBlock::Tool(index)) =
            self.open.take()
        {
            emit(out, json!({"type": "content_block_stop", "index": index}));
        }
    }

    fn thinking(&mut self, thinking: &str, out: &mut Events) {
        let index = match self.open {
            Some(OpenBlock::Thinking(index)) => index,
            _ => {
                let block = json!({"type": "thinking", "thinking": "", "signature": ""});
                let index = self.open_block(block, out);
                self.open = Some(OpenBlock::Thinking(index));
                index
            }
        };
        let delta = json!({"type": "thinking_delta", "thinking": thinking});
        emit(out, json!({"type": "content_block_delta", "index": index, "delta": delta}));
    }

    fn text(&mut self, text: &str, out: &mut Events) {
        let index = match self.open {
            Some(OpenBlock::Text(index)) => index,
            _ => {
                let index = self.open_block(json!({"type": "text", "text": ""}), out);
                self.open = Some(OpenBlock::Text(index));
                index
            }
        };
        let delta = json!({"type": "text_delta", "text": text});
        emit(out, json!({"type": "content_block_delta", "index": index, "delta": delta}));
    }

    fn tool_call(&mut self, call: &Value, out: &mut Events) {
        let id = str_of(call, "id").filter(|id| !id.is_empty());
        let openai_index = match call.get("index").and_then(Value::as_u64) {
            Some(index) => index,
            // Without an index (some compatible servers), a new id means a new call.
            None => match self.tools.last() {
                Some(last) if id.is_none() || id == last.id.as_deref() => last.openai_index,
                Some(last) => last.openai_index + 1,
                None => 0,
            },
        };
        let position = match self.tools.iter().position(|t| t.openai_index == openai_index) {
            Some(position) => position,
            None => {
                self.tools.push(ToolCall {
                    openai_index,
                    id: None,
                    name: None,
                    block: None,
                    pending_arguments: String::new(),
                });
                self.tools.len() - 1
            }
        };
        let function = call.get("function").unwrap_or(&Value::Null);
        let tool = &mut self.tools[position];
        if tool.id.is_none() {
            tool.id = id.map(str::to_owned);
        }
        if tool.name.is_none() {
            tool.name = str_of(function, "name").filter(|n| !n.is_empty()).map(str::to_owned);
        }
        let fragment = str_of(function, "arguments").unwrap_or_default();
        if tool.block.is_none() {
            tool.pending_arguments.push_str(fragment);
            if tool.name.is_some() {
                self.start_tool(position, out);
            }
            return;
        }
        self.tool_arguments(position, fragment, out);
    }

    fn start_tool(&mut self, position: usize, out: &mut Events) {
        let tool = &self.tools[position];
        let block = json!({
            "type": "tool_use",
            "id": tool.id.clone().unwrap_or_else(|| format!("toolu_{}", generated_id())),
            "name": tool.name.clone().unwrap_or_default(),
            "input": {},
        });
        let index = self.open_block(block, out);
        self.open = Some(OpenBlock::Tool(index));
        let tool = &mut self.tools[position];
        tool.block = Some(index);
        let pending = std::mem::take(&mut tool.pending_arguments);
        self.tool_arguments(position, &pending, out);
    }

    fn tool_arguments(&mut self, position: usize, fragment: &str, out: &mut Events) {
        let Some(index) = self.tools[position].block else {
            return;
        };
        if fragment.is_empty() {
            return;
        }
        emit(
            out,
            json!({
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": fragment},
            }),
        );
    }

    /// Starts the blocks of tool calls whose name never came, so their arguments are not lost.
    fn flush_unnamed_tools(&mut self, out: &mut Events) {
        for position in 0..self.tools.len() {
            if self.tools[position].block.is_none() {
                self.start_tool(position, out);
            }
        }
    }
}

/// An error event in an Anthropic stream, to be reported to an OpenAI client as an in-stream error
/// (see [`crate::protocol::stream_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream stream failed ({error_type}): {message}")]
pub struct StreamError {
    /// Anthropic's `error.type`, such as `overloaded_error`.
    pub error_type: String,
    pub message: String,
}

impl StreamError {
    /// The HTTP status Anthropic pairs with the error type.
    pub fn status(&self) -> u16 {
        anthropic_error_status(&self.error_type)
    }
}

/// Turns an Anthropic Messages stream into OpenAI `chat.completion.chunk` objects.
///
/// Feed every event (its name and parsed data) to [`push`](Self::push) and send the returned
/// chunks in order; after `message_stop`, the caller sends `data: [DONE]`. The first chunk carries
/// `role: assistant`, text deltas become `content`, thinking deltas `reasoning_content` (their
/// signatures are dropped), each `tool_use` block becomes a tool call (numbered from 0 in order)
/// announced with its id and name, then its argument fragments; `message_delta` gives the chunk
/// with `finish_reason`, and with `include_usage` a usage-only chunk (`choices: []`, cache reads
/// and writes counted into `prompt_tokens` as in [`Usage::to_openai`]) follows at
/// `message_stop`, and other chunks carry `usage: null`, as OpenAI does. Redacted thinking,
/// citations and server-tool blocks are dropped. An `error` event is returned as [`StreamError`].
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    requested_model: String,
    include_usage: bool,
    id: String,
    created: u64,
    started: bool,
    /// Anthropic block index and OpenAI tool call index of each tool_use block.
    tool_blocks: Vec<(u64, u64)>,
    finish_sent: bool,
    complete: bool,
    usage: UsageAccumulator,
}

impl AnthropicToOpenAiStream {
    pub fn new(requested_model: &str, include_usage: bool) -> AnthropicToOpenAiStream {
        AnthropicToOpenAiStream {
            requested_model: requested_model.to_owned(),
            include_usage,
            id: reprefix_id(None, "chatcmpl-"),
            created: unix_now(),
            started: false,
            tool_blocks: Vec::new(),
            finish_sent: false,
            complete: false,
            usage: UsageAccumulator::new(Protocol::Anthropic),
        }
    }

    /// Translates one event. The event's `type` field is used when present (Anthropic repeats the
    /// event name there), `event_name` otherwise.
    pub fn push(&mut self, event_name: &str, data: &Value) -> Result<Vec<Value>, StreamError> {
        let mut out = Vec::new();
        if self.complete {
            return Ok(out);
        }
        let kind = str_of(data, "type").unwrap_or(event_name);
        if kind == "error" {
            let error = data.get("error").unwrap_or(&Value::Null);
            return Err(StreamError {
                error_type: str_of(error, "type").unwrap_or("api_error").to_owned(),
                message: str_of(error, "message").unwrap_or("upstream stream failed").to_owned(),
            });
        }
        self.usage.push(data);
        if kind == "message_start"
            && !self.started
            && let Some(id) = data.get("message").and_then(|m| str_of(m, "id"))
        {
            self.id = reprefix_id(Some(id), "chatcmpl-");
        }
        if matches!(kind, "message_start" | "content_block_start" | "content_block_delta" | "message_delta") {
            self.start(&mut out);
        }
        match kind {
            "content_block_start" => self.block_start(data, &mut out),
            "content_block_delta" => self.block_delta(data, &mut out),
            "message_delta" => {
                let stop_reason =
                    data.get("delta").and_then(|d| present(d, "stop_reason")).and_then(Value::as_str);
                self.send_finish(finish_from_stop_reason(stop_reason), &mut out);
            }
            "message_stop" => {
                self.start(&mut out);
                self.send_finish("stop", &mut out);
                self.complete = true;
                if self.include_usage {
                    let usage = self.usage.usage().unwrap_or_default();
                    out.push(json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.requested_model,
                        "choices": [],
                        "usage": usage.to_openai(),
                    }));
                }
            }
            _ => {}
        }
        Ok(out)
    }

    /// Whether `message_stop` was seen, i.e. the response was not cut off.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The usage reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.requested_model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn start(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    fn send_finish(&mut self, finish_reason: &str, out: &mut Vec<Value>) {
        if !self.finish_sent {
            self.finish_sent = true;
            out.push(self.chunk(json!({}), Some(finish_reason)));
        }
    }

    fn text(&self, text: &str, out: &mut Vec<Value>) {
        if !text.is_empty() {
            out.push(self.chunk(json!({"content": text}), None));
        }
    }

    fn reasoning(&self, thinking: &str, out: &mut Vec<Value>) {
        if !thinking.is_empty() {
            out.push(self.chunk(json!({"reasoning_content": thinking}), None));
        }
    }

    fn block_start(&mut self, data: &Value, out: &mut Vec<Value>) {
        let block = data.get("content_block").unwrap_or(&Value::Null);
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match str_of(block, "type") {
            Some("text") => self.text(str_of(block, "text").unwrap_or_default(), out),
            Some("thinking") => self.reasoning(str_of(block, "thinking").unwrap_or_default(), out),
            Some("tool_use") => {
                let call_index = self.tool_blocks.len() as u64;
                self.tool_blocks.push((index, call_index));
                let call = json!({
                    "index": call_index,
                    "id": str_of(block, "id").unwrap_or_default(),
                    "type": "function",
                    "function": {"name": str_of(block, "name").unwrap_or_default(), "arguments": ""},
                });
                out.push(self.chunk(json!({"tool_calls": [call]}), None));
                // Input is normally streamed as deltas; a block that comes with it is sent whole.
                if block.get("input").and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
                    self.arguments(call_index, &input_to_arguments(block.get("input")), out);
                }
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, data: &Value, out: &mut Vec<Value>) {
        let delta = data.get("delta").unwrap_or(&Value::Null);
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match str_of(delta, "type") {
            Some("text_delta") => self.text(str_of(delta, "text").unwrap_or_default(), out),
            Some("thinking_delta") => self.reasoning(str_of(delta, "thinking").unwrap_or_default(), out),
            Some("input_json_delta") => {
                let call = self.tool_blocks.iter().find(|(block, _)| *block == index).map(|(_, call)| *call);
                if let Some(call) = call {
                    self.arguments(call, str_of(delta, "partial_json").unwrap_or_default(), out);
                }
            }
            _ => {}
        }
    }

    fn arguments(&self, call_index: u64, fragment: &str, out: &mut Vec<Value>) {
        if !fragment.is_empty() {
            let call = json!({"index": call_index, "function": {"arguments": fragment}});
            out.push(self.chunk(json!({"tool_calls": [call]}), None));
        }
    }
}
