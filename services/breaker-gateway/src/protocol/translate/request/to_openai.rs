//! Anthropic Messages requests as OpenAI Chat Completions requests.
//!
//! The shapes differ most in the user turn: Anthropic carries tool results as blocks of a user
//! message, OpenAI as `tool` messages of their own that must follow the assistant's `tool_calls`
//! directly, and OpenAI tool messages hold text only. So one Anthropic user message can become
//! several OpenAI messages, and the images of a tool result move to a user message after them.

use serde_json::{Map, Value, json};

use super::{
    MaxTokensField, OPENAI_MAX_STOP_SEQUENCES, block_type, effort_for_thinking_budget, empty_schema,
    parts_to_content, required_str, text_part,
};
use crate::protocol::is_stream;
use crate::protocol::translate::{TranslateError, input_to_arguments, invalid, present, str_of, unsupported};

/// What a tool result with `is_error: true` is prefixed with: OpenAI tool messages have no error
/// flag, and without a marker the model would read a failure as the tool's output.
pub const TOOL_ERROR_PREFIX: &str = "Error: ";

/// An Anthropic Messages request as an OpenAI Chat Completions request for `upstream_model`, with
/// the output limit in `max_tokens` (see [`anthropic_request_to_openai_with`]).
pub fn anthropic_request_to_openai(req: &Value, upstream_model: &str) -> Result<Value, TranslateError> {
    anthropic_request_to_openai_with(req, upstream_model, MaxTokensField::default())
}

/// An Anthropic Messages request as an OpenAI Chat Completions request for `upstream_model`.
///
/// - `system` (a string or text blocks) becomes a leading system message (a string, or text parts
///   when it had several blocks); a `role: "system"` message inside `messages` (Claude Code sends
///   these mid-conversation) becomes a system message at its place.
/// - User `tool_result` blocks become `tool` messages placed before the rest of the user turn, as
///   OpenAI requires them right after the assistant's `tool_calls`; several results give several
///   consecutive tool messages. Their text blocks are joined with blank lines, `is_error: true`
///   prefixes the text with [`TOOL_ERROR_PREFIX`], and their images (which tool messages cannot
///   carry) move into the user message that follows, with the turn's other blocks.
/// - Images (base64 or URL) become `image_url` parts (base64 as a `data:` URL); base64 PDF
///   documents become `file` parts and plain-text documents text parts.
/// - Assistant text blocks are concatenated into `content`, `tool_use` blocks become `tool_calls`;
///   `thinking` and `redacted_thinking` blocks are dropped (see the module docs of `translate`).
/// - `thinking: {type: "enabled", budget_tokens}` becomes `reasoning_effort` (budget up to 4096
///   `low`, up to 16384 `medium`, above `high`) only with [`MaxTokensField::MaxCompletionTokens`],
///   i.e. for a reasoning model; other models reject the field, so it is dropped for them.
/// - `stream` also sets `stream_options.include_usage` so the stream can be metered.
/// - `metadata.user_id` becomes `user`; `disable_parallel_tool_use` becomes `parallel_tool_calls:
///   false`; `stop_sequences` becomes `stop`.
/// - Dropped: `top_k`, `service_tier`, `container`, `context_management`, other `metadata`,
///   `cache_control` everywhere (OpenAI caches prompts by itself), document `citations`/`context`,
///   and any field not listed here.
/// - Unsupported: more than four `stop_sequences` (OpenAI's limit), server tools (`web_search_…`,
///   `bash_…`, …), non-empty `mcp_servers`, structured output (`output_format`,
///   `output_config.format`), file-id image/document sources, URL documents, and content blocks
///   other than the above.
pub fn anthropic_request_to_openai_with(
    req: &Value,
    upstream_model: &str,
    max_tokens_field: MaxTokensField,
) -> Result<Value, TranslateError> {
    if !req.is_object() {
        return Err(invalid("request body must be a JSON object"));
    }
    reject_untranslatable_anthropic(req)?;
    let mut out = Map::new();
    out.insert("model".to_owned(), json!(upstream_model));

    let mut messages = Vec::new();
    if let Some(system) = present(req, "system")
        && let Some(content) = anthropic_system_to_openai(system, "system")?
    {
        messages.push(json!({"role": "system", "content": content}));
    }
    let input = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("`messages` must be an array"))?;
    for (i, message) in input.iter().enumerate() {
        anthropic_message_to_openai(message, &format!("messages[{i}]"), &mut messages)?;
    }
    out.insert("messages".to_owned(), Value::Array(messages));

    if let Some(max_tokens) = present(req, "max_tokens") {
        out.insert(max_tokens_field.key().to_owned(), max_tokens.clone());
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = present(req, key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(stop) = anthropic_stop_to_openai(req)? {
        out.insert("stop".to_owned(), stop);
    }
    if is_stream(req) {
        out.insert("stream".to_owned(), json!(true));
        out.insert("stream_options".to_owned(), json!({"include_usage": true}));
    }
    if let Some(user) = present(req, "metadata").and_then(|m| str_of(m, "user_id")) {
        out.insert("user".to_owned(), json!(user));
    }
    // Read (and checked) for every target, so a malformed request fails the same everywhere.
    let effort = anthropic_thinking_to_effort(req)?;
    if max_tokens_field == MaxTokensField::MaxCompletionTokens
        && let Some(effort) = effort
    {
        out.insert("reasoning_effort".to_owned(), json!(effort));
    }
    anthropic_tools_to_openai(req, &mut out)?;
    Ok(Value::Object(out))
}

fn reject_untranslatable_anthropic(req: &Value) -> Result<(), TranslateError> {
    if present(req, "mcp_servers").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        return Err(unsupported("`mcp_servers`"));
    }
    // Structured output changes what the answer is; Chat Completions' `response_format` is close
    // but the beta shapes are still moving, so a client relying on it gets a clear refusal.
    if present(req, "output_format").is_some() {
        return Err(unsupported("`output_format` (structured output)"));
    }
    if present(req, "output_config").is_some_and(|c| present(c, "format").is_some()) {
        return Err(unsupported("`output_config.format` (structured output)"));
    }
    Ok(())
}

/// `stop_sequences` as OpenAI's `stop`, `None` when there are none.
fn anthropic_stop_to_openai(req: &Value) -> Result<Option<Value>, TranslateError> {
    let stops = match present(req, "stop_sequences") {
        None => return Ok(None),
        Some(Value::Array(stops)) => stops,
        Some(_) => return Err(invalid("`stop_sequences` must be an array of strings")),
    };
    if let Some(i) = stops.iter().position(|s| !s.is_string()) {
        return Err(invalid(format!("stop_sequences[{i}] must be a string")));
    }
    if stops.len() > OPENAI_MAX_STOP_SEQUENCES {
        return Err(unsupported(format!(
            "`stop_sequences` with {} entries (OpenAI accepts at most {OPENAI_MAX_STOP_SEQUENCES})",
            stops.len()
        )));
    }
    Ok((!stops.is_empty()).then(|| Value::Array(stops.clone())))
}

/// The `reasoning_effort` an Anthropic `thinking` parameter stands for; `None` when thinking is
/// off or of a kind without a budget (`disabled`, `adaptive`), which leaves the effort to the
/// model's default.
fn anthropic_thinking_to_effort(req: &Value) -> Result<Option<&'static str>, TranslateError> {
    let Some(thinking) = present(req, "thinking") else {
        return Ok(None);
    };
    if str_of(thinking, "type") != Some("enabled") {
        return Ok(None);
    }
    let budget = thinking
        .get("budget_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("thinking.budget_tokens must be a non-negative integer"))?;
    Ok(Some(effort_for_thinking_budget(budget)))
}

/// A system prompt (top-level `system` or the content of a `role: "system"` message) as OpenAI
/// content; `None` when it is empty. `cache_control` on its blocks is dropped.
fn anthropic_system_to_openai(system: &Value, path: &str) -> Result<Option<Value>, TranslateError> {
    match system {
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(json!(s))),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for (j, block) in blocks.iter().enumerate() {
                let path = format!("{path}[{j}]");
                match block_type(block, &path)? {
                    "text" => parts.push(text_part(required_str(block, "text", &path)?)),
                    other => return Err(unsupported(format!("{path}: system block of type `{other}`"))),
                }
            }
            Ok((!parts.is_empty()).then(|| parts_to_content(parts)))
        }
        _ => Err(invalid(format!("`{path}` must be a string or an array of text blocks"))),
    }
}

fn anthropic_message_to_openai(
    message: &Value,
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let role = required_str(message, "role", path)?;
    let content = message.get("content").unwrap_or(&Value::Null);
    match (role, content) {
        ("system", _) => {
            if let Some(content) = anthropic_system_to_openai(content, &format!("{path}.content"))? {
                out.push(json!({"role": "system", "content": content}));
            }
            Ok(())
        }
        ("user" | "assistant", Value::String(text)) => {
            out.push(json!({"role": role, "content": text}));
            Ok(())
        }
        ("user", Value::Array(blocks)) => anthropic_user_blocks_to_openai(blocks, path, out),
        ("assistant", Value::Array(blocks)) => anthropic_assistant_blocks_to_openai(blocks, path, out),
        ("user" | "assistant", _) => Err(invalid(format!("{path}.content must be a string or an array"))),
        (other, _) => Err(invalid(format!("{path}.role `{other}` is not `user`, `assistant` or `system`"))),
    }
}

fn anthropic_user_blocks_to_openai(
    blocks: &[Value],
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let mut parts = Vec::new();
    let mut tool_results = 0;
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}.content[{j}]");
        match block_type(block, &path)? {
            "text" => parts.push(text_part(required_str(block, "text", &path)?)),
            "image" => parts.push(anthropic_image_to_openai(block, &path)?),
            "document" => parts.push(anthropic_document_to_openai(block, &path)?),
            "tool_result" => {
                tool_results += 1;
                let id = required_str(block, "tool_use_id", &path)?;
                let text = anthropic_tool_result_to_openai(block, &path, &mut parts)?;
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported(format!("{path}: content block of type `{other}`"))),
        }
    }
    if !parts.is_empty() || tool_results == 0 {
        out.push(json!({"role": "user", "content": parts_to_content(parts)}));
    }
    Ok(())
}

/// The text of a `tool_result`, marked when it is an error; its images are added to `images`.
fn anthropic_tool_result_to_openai(
    block: &Value,
    path: &str,
    images: &mut Vec<Value>,
) -> Result<String, TranslateError> {
    let text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(inner)) => {
            let mut texts = Vec::new();
            for (k, item) in inner.iter().enumerate() {
                let path = format!("{path}.content[{k}]");
                match block_type(item, &path)? {
                    "text" => texts.push(required_str(item, "text", &path)?),
                    "image" => images.push(anthropic_image_to_openai(item, &path)?),
                    other => {
                        return Err(unsupported(format!("{path}: tool result block of type `{other}`")));
                    }
                }
            }
            texts.join("\n\n")
        }
        Some(_) => return Err(invalid(format!("{path}.content must be a string or an array"))),
    };
    if block.get("is_error") != Some(&Value::Bool(true)) {
        return Ok(text);
    }
    if text.is_empty() {
        return Ok(TOOL_ERROR_PREFIX.trim_end_matches([':', ' ']).to_owned());
    }
    Ok(format!("{TOOL_ERROR_PREFIX}{text}"))
}

fn anthropic_assistant_blocks_to_openai(
    blocks: &[Value],
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}.content[{j}]");
        match block_type(block, &path)? {
            "text" => text.push_str(required_str(block, "text", &path)?),
            "tool_use" => tool_calls.push(json!({
                "id": required_str(block, "id", &path)?,
                "type": "function",
                "function": {
                    "name": required_str(block, "name", &path)?,
                    "arguments": input_to_arguments(block.get("input")),
                },
            })),
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported(format!("{path}: content block of type `{other}`"))),
        }
    }
    if text.is_empty() && tool_calls.is_empty() {
        return Ok(());
    }
    let mut message = Map::new();
    message.insert("role".to_owned(), json!("assistant"));
    message.insert("content".to_owned(), if text.is_empty() { Value::Null } else { Value::String(text) });
    if !tool_calls.is_empty() {
        message.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }
    out.push(Value::Object(message));
    Ok(())
}

fn source_of<'a>(block: &'a Value, path: &str) -> Result<(&'a Value, &'a str), TranslateError> {
    let source = block.get("source").ok_or_else(|| invalid(format!("{path}.source is missing")))?;
    let ty = required_str(source, "type", &format!("{path}.source"))?;
    Ok((source, ty))
}

fn anthropic_image_to_openai(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let (source, ty) = source_of(block, path)?;
    let source_path = format!("{path}.source");
    let url = match ty {
        "base64" => format!(
            "data:{};base64,{}",
            required_str(source, "media_type", &source_path)?,
            required_str(source, "data", &source_path)?
        ),
        "url" => required_str(source, "url", &source_path)?.to_owned(),
        other => return Err(unsupported(format!("{path}: image source of type `{other}`"))),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn anthropic_document_to_openai(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let (source, ty) = source_of(block, path)?;
    let source_path = format!("{path}.source");
    match ty {
        "base64" => {
            let media_type = required_str(source, "media_type", &source_path)?;
            let data = required_str(source, "data", &source_path)?;
            let filename = str_of(block, "title").unwrap_or("document.pdf");
            Ok(json!({
                "type": "file",
                "file": {"filename": filename, "file_data": format!("data:{media_type};base64,{data}")}
            }))
        }
        "text" => Ok(text_part(required_str(source, "data", &source_path)?)),
        other => Err(unsupported(format!("{path}: document source of type `{other}`"))),
    }
}

fn anthropic_tools_to_openai(req: &Value, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let Some(tools) = present(req, "tools") else {
        return Ok(());
    };
    let tools = tools.as_array().ok_or_else(|| invalid("`tools` must be an array"))?;
    if tools.is_empty() {
        return Ok(());
    }
    let mut functions = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        if let Some(ty) = str_of(tool, "type")
            && ty != "custom"
        {
            return Err(unsupported(format!("{path}: server tool of type `{ty}`")));
        }
        let mut function = Map::new();
        function.insert("name".to_owned(), json!(required_str(tool, "name", &path)?));
        if let Some(description) = present(tool, "description") {
            function.insert("description".to_owned(), description.clone());
        }
        let parameters = present(tool, "input_schema").cloned().unwrap_or_else(empty_schema);
        function.insert("parameters".to_owned(), parameters);
        functions.push(json!({"type": "function", "function": function}));
    }
    out.insert("tools".to_owned(), Value::Array(functions));

    if let Some(choice) = present(req, "tool_choice") {
        let ty = required_str(choice, "type", "tool_choice")?;
        let mapped = match ty {
            "auto" => json!("auto"),
            "any" => json!("required"),
            "none" => json!("none"),
            "tool" => {
                let name = required_str(choice, "name", "tool_choice")?;
                json!({"type": "function", "function": {"name": name}})
            }
            other => return Err(invalid(format!("tool_choice.type `{other}` is not a tool choice"))),
        };
        out.insert("tool_choice".to_owned(), mapped);
        if ty != "none" && choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".to_owned(), json!(false));
        }
    }
    Ok(())
}
