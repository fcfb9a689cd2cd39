//! A Responses request as a Chat Completions request.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{CUSTOM_INPUT_KEY, ResponseContext, ToolKind};
use crate::protocol::TranslateError;

/// A Responses request ready for the chain walk: the Chat Completions body, and what is needed to
/// turn its answer back and store the turn.
#[derive(Debug, Clone)]
pub struct ResponsesCall {
    /// The Chat Completions request (`stream_options.include_usage` set for streams: a response
    /// always reports its usage).
    pub chat: Value,
    pub ctx: ResponseContext,
    /// This turn's input items as the client sent them (the earlier turns' come from the store):
    /// with the output, what a later `previous_response_id` continues from.
    pub input_items: Vec<Value>,
    pub stream: bool,
    /// Hosted tools offered but left out (no Chat deployment has them).
    pub dropped_tools: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(msg.into())
}

fn unsupported(msg: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(msg.into())
}

/// Turns the Responses request `req` into a Chat Completions request, after the earlier turns'
/// items `history` (from `previous_response_id`; empty without one).
pub fn to_chat(req: &Value, history: &[Value]) -> Result<ResponsesCall, TranslateError> {
    let Value::Object(r) = req else { return Err(invalid("the body must be a JSON object")) };
    let mut chat = Map::new();
    chat.insert("model".to_owned(), r.get("model").cloned().unwrap_or(Value::Null));

    let tools = declared_tools(r.get("tools"))?;
    let mut messages = Vec::new();
    match r.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(invalid("`instructions` must be a string")),
    }
    for item in history {
        push_item(item, &mut messages)?;
    }
    let input_items = match r.get("input") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(invalid("`input` must be a string or an array of items")),
    };
    for item in &input_items {
        push_item(item, &mut messages)?;
    }
    if messages.is_empty() {
        return Err(invalid("the request has no `input`"));
    }
    chat.insert("messages".to_owned(), Value::Array(messages));

    if let Some(t) = &tools.chat {
        chat.insert("tools".to_owned(), t.clone());
    }
    if let Some(choice) = r.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".to_owned(), tool_choice(choice)?);
    }
    for key in [
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "user",
        "seed",
        "frequency_penalty",
        "presence_penalty",
    ] {
        if let Some(v) = r.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(v) = r.get("max_output_tokens").filter(|v| !v.is_null()) {
        chat.insert("max_tokens".to_owned(), v.clone());
    }
    if let Some(effort) = r.get("reasoning").and_then(|x| x.get("effort")).filter(|v| !v.is_null()) {
        chat.insert("reasoning_effort".to_owned(), effort.clone());
    }
    if let Some(format) = r.get("text").and_then(|t| t.get("format")).filter(|v| !v.is_null())
        && let Some(rf) = response_format(format)?
    {
        chat.insert("response_format".to_owned(), rf);
    }
    let stream = r.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream {
        chat.insert("stream".to_owned(), Value::Bool(true));
        chat.insert("stream_options".to_owned(), json!({"include_usage": true}));
    }
    // `store`, `include`, `metadata`, `truncation`, `prompt_cache_key`, `service_tier`,
    // `background`, `previous_response_id` (resolved by the caller) are the gateway's business or
    // bookkeeping, not the model's: not forwarded
    if r.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported("`background: true` (the gateway answers in the foreground)"));
    }
    let ctx = ResponseContext::new(req, Arc::new(tools.kinds));
    Ok(ResponsesCall { chat: Value::Object(chat), ctx, input_items, stream, dropped_tools: tools.hosted })
}

struct Tools {
    chat: Option<Value>,
    kinds: HashMap<String, ToolKind>,
    /// Hosted tool types offered and left out.
    hosted: Vec<String>,
}

fn declared_tools(tools: Option<&Value>) -> Result<Tools, TranslateError> {
    let mut kinds = HashMap::new();
    let mut hosted = Vec::new();
    let list = match tools {
        None | Some(Value::Null) => return Ok(Tools { chat: None, kinds, hosted }),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid("`tools` must be an array")),
    };
    let mut out = Vec::with_capacity(list.len());
    // a namespace (Codex's `multi_agent_v1`) groups function tools: offered flat
    let flat: Vec<&Value> = list
        .iter()
        .flat_map(|t| {
            match (t.get("type").and_then(Value::as_str), t.get("tools").and_then(Value::as_array)) {
                (Some("namespace"), Some(inner)) => inner.iter().collect(),
                _ => vec![t],
            }
        })
        .collect();
    for t in flat {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
        let name = t.get("name").and_then(Value::as_str);
        match kind {
            "function" => {
                let name = name.ok_or_else(|| invalid("a function tool has no `name`"))?;
                let mut f = Map::new();
                f.insert("name".to_owned(), json!(name));
                for key in ["description", "parameters", "strict"] {
                    if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
                        f.insert(key.to_owned(), v.clone());
                    }
                }
                f.entry("parameters").or_insert_with(|| json!({"type": "object", "properties": {}}));
                kinds.insert(name.to_owned(), ToolKind::Function);
                out.push(json!({"type": "function", "function": f}));
            }
            "custom" => {
                let name = name.ok_or_else(|| invalid("a custom tool has no `name`"))?;
                let mut description = t.get("description").and_then(Value::as_str).unwrap_or("").to_owned();
                if let Some(def) = t.get("format").and_then(|f| f.get("definition")).and_then(Value::as_str) {
                    description.push_str("\n\nThe input follows this grammar:\n");
                    description.push_str(def);
                }
                kinds.insert(name.to_owned(), ToolKind::Custom);
                out.push(json!({"type": "function", "function": {
                    "name": name,
                    "description": description,
                    "parameters": {
                        "type": "object",
                        "properties": {CUSTOM_INPUT_KEY: {"type": "string", "description": "the tool's freeform input"}},
                        "required": [CUSTOM_INPUT_KEY],
                    },
                }}));
            }
            // a hosted tool (web search, file search, ...) is an offer the model may take up:
            // a Chat deployment has none, so the offer is left out, not the request refused
            // (a `tool_choice` that forces one is refused in `tool_choice`)
            other => {
                hosted.push(other.to_owned());
            }
        }
    }
    Ok(Tools { chat: (!out.is_empty()).then_some(Value::Array(out)), kinds, hosted })
}

fn tool_choice(choice: &Value) -> Result<Value, TranslateError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(choice.clone()),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                let name = o
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("`tool_choice` has no `name`"))?;
                Ok(json!({"type": "function", "function": {"name": name}}))
            }
            Some(t @ ("auto" | "none" | "required")) => Ok(json!(t)),
            Some("allowed_tools") => Ok(json!(o.get("mode").and_then(Value::as_str).unwrap_or("auto"))),
            other => Err(unsupported(format!(
                "`tool_choice` forcing the hosted tool `{}` (a Chat Completions or Messages deployment has no hosted tools)",
                other.unwrap_or("(none)")
            ))),
        },
        _ => Err(invalid("`tool_choice` must be a string or an object")),
    }
}

fn response_format(format: &Value) -> Result<Option<Value>, TranslateError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") | None => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.to_owned(), v.clone());
                }
            }
            schema.entry("name").or_insert_with(|| json!("response"));
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(other) => Err(unsupported(format!("`text.format` of type `{other}`"))),
    }
}

/// The text of a content value: a string, or the text parts of an array joined by newlines.
fn text_of(content: &Value, what: &str) -> Result<String, TranslateError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut texts = Vec::with_capacity(parts.len());
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text" | "summary_text") => {
                        texts.push(p.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                    Some("refusal") => {
                        texts.push(p.get("refusal").and_then(Value::as_str).unwrap_or_default())
                    }
                    other => {
                        return Err(unsupported(format!(
                            "a `{}` part in {what} (only text can go there)",
                            other.unwrap_or("(untyped)")
                        )));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(invalid(format!("the content of {what} must be a string or an array of parts"))),
    }
}

/// A user message's content: a string, or Chat parts when it carries images.
fn user_content(content: &Value) -> Result<Value, TranslateError> {
    let Value::Array(parts) = content else { return text_of(content, "a user message").map(Value::String) };
    if !parts.iter().any(|p| p.get("type").and_then(Value::as_str) == Some("input_image")) {
        return text_of(content, "a user message").map(Value::String);
    }
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                out.push(json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or_default()}));
            }
            Some("input_image") => {
                let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                    return Err(unsupported("an `input_image` by `file_id` (send it as `image_url`)"));
                };
                let mut image = Map::new();
                image.insert("url".to_owned(), json!(url));
                if let Some(d) = p.get("detail").filter(|d| !d.is_null()) {
                    image.insert("detail".to_owned(), d.clone());
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(unsupported(format!(
                    "a `{}` part in a user message",
                    other.unwrap_or("(untyped)")
                )));
            }
        }
    }
    Ok(Value::Array(out))
}

/// Appends the Chat message(s) one input item stands for.
fn push_item(item: &Value, messages: &mut Vec<Value>) -> Result<(), TranslateError> {
    let kind = item.get("type").and_then(Value::as_str);
    let str_field = |key: &str| item.get(key).and_then(Value::as_str);
    match kind {
        None | Some("message") => {
            let role = str_field("role").ok_or_else(|| invalid("an input message has no `role`"))?;
            let content = item.get("content").unwrap_or(&Value::Null);
            let msg = match role {
                "user" => json!({"role": "user", "content": user_content(content)?}),
                "assistant" => {
                    json!({"role": "assistant", "content": text_of(content, "an assistant message")?})
                }
                "system" | "developer" => {
                    json!({"role": "system", "content": text_of(content, "a system message")?})
                }
                other => return Err(invalid(format!("unknown message role `{other}`"))),
            };
            messages.push(msg);
        }
        Some(t @ ("function_call" | "custom_tool_call")) => {
            let call_id =
                str_field("call_id").ok_or_else(|| invalid(format!("a `{t}` item has no `call_id`")))?;
            let name = str_field("name").ok_or_else(|| invalid(format!("a `{t}` item has no `name`")))?;
            let arguments = if t == "function_call" {
                str_field("arguments").unwrap_or("{}").to_owned()
            } else {
                json!({CUSTOM_INPUT_KEY: str_field("input").unwrap_or_default()}).to_string()
            };
            let call = json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}});
            // consecutive calls are one assistant turn, as Chat Completions has them
            match messages.last_mut() {
                Some(Value::Object(last))
                    if last.get("role").and_then(Value::as_str) == Some("assistant") =>
                {
                    match last.get_mut("tool_calls") {
                        Some(Value::Array(calls)) => calls.push(call),
                        _ => {
                            last.insert("tool_calls".to_owned(), json!([call]));
                        }
                    }
                }
                _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        Some(t @ ("function_call_output" | "custom_tool_call_output")) => {
            let call_id =
                str_field("call_id").ok_or_else(|| invalid(format!("a `{t}` item has no `call_id`")))?;
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Array(_)) => text_of(v, "a tool output")?,
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // only meaningful to the model that produced it
        Some("reasoning") => {}
        Some(other) => {
            return Err(unsupported(format!(
                "input items of type `{other}` (a Chat Completions or Messages deployment takes messages, function calls and their outputs)"
            )));
        }
    }
    Ok(())
}
