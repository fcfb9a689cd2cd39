//! OpenAI's Responses API (`POST /v1/responses`) served by Chat Completions deployments.
//!
//! Codex and the Vercel AI SDK's default OpenAI provider speak only the Responses API, while most
//! deployments (OpenAI-compatible servers, Anthropic through [`super::translate`]) speak Chat
//! Completions or Messages. So a Responses request is turned into a Chat Completions request
//! ([`to_chat`]), sent through the same chain walk as `/v1/chat/completions` (breakers, retries,
//! fallbacks, translation to Anthropic), and the answer turned back into a Responses object
//! ([`chat_to_response`]) or event stream ([`ChatToResponsesStream`]).
//!
//! The mapping, both ways:
//! - `instructions` is the leading system message; `developer` and `system` input messages are
//!   system messages where they stand.
//! - Input messages keep their role; `input_text`/`output_text` parts become text, `input_image`
//!   an `image_url` part. `function_call` items become an assistant message's `tool_calls`
//!   (consecutive calls share one message) and `function_call_output` items `tool` messages.
//! - `custom` tools (freeform input, as Codex's `apply_patch`) are declared as functions taking
//!   one string `input`; their calls come back as `custom_tool_call` items with that string.
//! - `reasoning` input items are dropped (they only mean something to the model that made them);
//!   reasoning a Chat deployment streams is not shown either.
//! - Hosted tools (`web_search`, `file_search`, `computer_use`, `code_interpreter`, `mcp`, ...),
//!   file inputs and `item_reference`s have no Chat Completions equivalent: the request is refused
//!   with a 400 before any upstream call ([`super::TranslateError`]).
//! - `previous_response_id` is resolved by the caller from its [`ResponseStore`] into the earlier
//!   turns' items, prepended to `input`; `store: false` keeps a response out of the store.
//! - Usage: `input_tokens` counts all input (cached included, as OpenAI does), with
//!   `input_tokens_details.cached_tokens`.
//!
//! Pure functions and a plain data structure: no IO, no actix.

mod request;
mod response;
mod store;
mod stream;

#[cfg(test)]
mod tests;

pub use request::{ResponsesCall, to_chat};
pub use response::chat_to_response;
pub use store::{MAX_ENTRIES as MAX_STORED, ResponseStore, StoreFull};
pub use stream::ChatToResponsesStream;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Usage;

/// How a tool was declared, so that its calls come back in the same kind of item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    Function,
    /// Freeform input: declared to Chat Completions as a function of one string `input`.
    Custom,
}

/// The key the freeform input of a custom tool travels under in Chat Completions arguments.
pub const CUSTOM_INPUT_KEY: &str = "input";

/// A new id with `prefix` (`resp_`, `msg_`, `fc_`): unique in the process and across restarts.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", super::translate::generated_id())
}

/// The Responses `usage` object for `usage` (reasoning tokens from Chat's details when given).
pub fn usage_object(usage: &Usage, reasoning_tokens: u64) -> Value {
    json!({
        "input_tokens": usage.total_input_tokens(),
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.total_tokens(),
    })
}

/// What a response echoes of its request, and what turning the answer back needs.
#[derive(Debug, Clone)]
pub struct ResponseContext {
    pub id: String,
    /// The model the client asked for (the response keeps its name).
    pub model: String,
    pub created_at: u64,
    /// Request fields a response repeats (`instructions`, `tools`, `temperature`, ...).
    echo: Map<String, Value>,
    pub tools: Arc<HashMap<String, ToolKind>>,
}

/// Request fields the Responses object repeats, with their defaults when the request left them out.
type Default = fn() -> Value;

const ECHOED: &[(&str, Default)] = &[
    ("instructions", || Value::Null),
    ("max_output_tokens", || Value::Null),
    ("metadata", || json!({})),
    ("parallel_tool_calls", || Value::Bool(true)),
    ("previous_response_id", || Value::Null),
    ("reasoning", || json!({"effort": null, "summary": null})),
    ("store", || Value::Bool(true)),
    ("temperature", || json!(1.0)),
    ("text", || json!({"format": {"type": "text"}})),
    ("tool_choice", || json!("auto")),
    ("tools", || json!([])),
    ("top_p", || json!(1.0)),
    ("truncation", || json!("disabled")),
    ("user", || Value::Null),
];

impl ResponseContext {
    pub fn new(req: &Value, tools: Arc<HashMap<String, ToolKind>>) -> ResponseContext {
        let mut echo = Map::new();
        for (key, default) in ECHOED {
            let v = req.get(*key).filter(|v| !v.is_null()).cloned().unwrap_or_else(default);
            echo.insert((*key).to_owned(), v);
        }
        ResponseContext {
            id: new_id("resp_"),
            model: req.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
            created_at: super::translate::unix_now(),
            echo,
            tools,
        }
    }

    /// Whether the client let the response be stored (`store` defaults to true).
    pub fn stored(&self) -> bool {
        self.echo.get("store").and_then(Value::as_bool).unwrap_or(true)
    }

    /// The Responses object with `status`, `output` and `usage`.
    pub fn object(&self, status: &str, output: &[Value], usage: Option<Value>) -> Value {
        let mut o = Map::new();
        o.insert("id".to_owned(), Value::String(self.id.clone()));
        o.insert("object".to_owned(), json!("response"));
        o.insert("created_at".to_owned(), json!(self.created_at));
        o.insert("status".to_owned(), json!(status));
        o.insert("error".to_owned(), Value::Null);
        o.insert("incomplete_details".to_owned(), Value::Null);
        o.insert("model".to_owned(), Value::String(self.model.clone()));
        o.insert("output".to_owned(), Value::Array(output.to_vec()));
        for (k, v) in &self.echo {
            o.insert(k.clone(), v.clone());
        }
        o.insert("usage".to_owned(), usage.unwrap_or(Value::Null));
        Value::Object(o)
    }

    /// The kind of the tool `name` (function when it was not declared).
    pub fn kind_of(&self, name: &str) -> ToolKind {
        self.tools.get(name).copied().unwrap_or(ToolKind::Function)
    }
}

/// The Responses item for a Chat tool call of `name` with `arguments`, in the declared kind.
pub fn call_item(ctx: &ResponseContext, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    match ctx.kind_of(name) {
        ToolKind::Function => json!({
            "type": "function_call",
            "id": format!("fc_{}", call_id.trim_start_matches("call_")),
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": status,
        }),
        ToolKind::Custom => json!({
            "type": "custom_tool_call",
            "id": format!("ctc_{}", call_id.trim_start_matches("call_")),
            "call_id": call_id,
            "name": name,
            "input": custom_input(arguments),
            "status": status,
        }),
    }
}

/// The freeform input in a custom tool's Chat arguments (`{"input": "..."}`); arguments a model
/// did not wrap are taken as the input itself.
pub fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(m)) => match m.get(CUSTOM_INPUT_KEY) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => arguments.to_owned(),
        },
        _ => arguments.to_owned(),
    }
}

/// A completed assistant message item with `text`.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}
