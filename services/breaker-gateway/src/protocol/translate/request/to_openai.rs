//! Request bodies in both directions.

use serde_json::{Map, Value, json};

use super::{TranslateError, arguments_to_input, input_to_arguments, invalid, present, str_of, unsupported};
use crate::protocol::is_stream;

/// Which OpenAI field carries the output limit. `max_tokens` is understood by every
/// OpenAI-compatible server and by OpenAI's non-reasoning models; OpenAI's reasoning models (o-series,
/// gpt-5) reject it and need `max_completion_tokens`, which older compatible servers ignore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensField {
    #[default]
    MaxTokens,
    MaxCompletionTokens,
}

impl MaxTokensField {
    fn key(self) -> &'static str {
        match self {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// The `max_tokens` sent to Anthropic, which requires one, when the OpenAI client set no limit.
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 4096;

/// An Anthropic Messages request as an OpenAI Chat Completions request for `upstream_model`, with
/// the output limit in `max_tokens` (see [`anthropic_request_to_openai_with`]).
pub fn anthropic_request_to_openai(req: &Value, upstream_model: &str) -> Result<Value, TranslateError> {
    anthropic_request_to_openai_with(req, upstream_model, MaxTokensField::default())
}

/// An Anthropic Messages request as an OpenAI Chat Completions request for `upstream_model`.
///
/// - `system` becomes a leading system message (a string, or text parts when it had several blocks).
/// - User `tool_result` blocks become `tool` messages placed before the rest of the user turn, as
///   OpenAI requires them right after the assistant's `tool_calls`; their text blocks are joined
///   with blank lines, their images move into the user message that follows, `is_error` is dropped.
/// - Images (base64 or URL) become `image_url` parts; base64 PDF documents become `file` parts and
///   plain-text documents text parts.
/// - Assistant text blocks are concatenated into `content`, `tool_use` blocks become `tool_calls`.
/// - `stream` also sets `stream_options.include_usage` so the stream can be metered.
/// - `metadata.user_id` becomes `user`; `disable_parallel_tool_use` becomes `parallel_tool_calls:
///   false`; `stop_sequences` becomes `stop` (OpenAI itself accepts at most four).
/// - Dropped: `top_k`, `thinking`, `service_tier`, `container`, `context_management`,
///   `cache_control`, document `citations`/`context`, and any field not listed here.
/// - Unsupported: server tools (`web_search_…`, `bash_…`, …), non-empty `mcp_servers`, file-id
///   image/document sources, URL documents, and content blocks other than the above.
pub fn anthropic_request_to_openai_with(
    req: &Value,
    upstream_model: &str,
    max_tokens_field: MaxTokensField,
) -> Result<Value, TranslateError> {
    if !req.is_object() {
        return Err(invalid("request body must be a JSON object"));
    }
    if present(req, "mcp_servers").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        return Err(unsupported("`mcp_servers`"));
    }
    let mut out = Map::new();
    out.insert("model".to_owned(), json!(upstream_model));

    let mut messages = Vec::new();
    if let Some(system) = present(req, "system")
        && let Some(content) = anthropic_system_to_openai(system)?
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
    if let Some(stop) = present(req, "stop_sequences")
        && stop.as_array().is_none_or(|a| !a.is_empty())
    {
        out.insert("stop".to_owned(), stop.clone());
    }
    if is_stream(req) {
        out.insert("stream".to_owned(), json!(true));
        out.insert("stream_options".to_owned(), json!({"include_usage": true}));
    }
    if let Some(user) = req.get("metadata").and_then(|m| str_of(m, "user_id")) {
        out.insert("user".to_owned(), json!(user));
    }
    anthropic_tools_to_openai(req, &mut out)?;
    Ok(Value::Object(out))
}

fn block_type<'a>(block: &'a Value, path: &str) -> Result<&'a str, TranslateError> {
    str_of(block, "type").ok_or_else(|| invalid(format!("{path}.type is missing")))
}

fn required_str<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, TranslateError> {
    str_of(v, key).ok_or_else(|| invalid(format!("{path}.{key} must be a string")))
}

fn text_part(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// OpenAI content from parts: a plain string when it is a single text part, as most
/// compatible servers expect.
fn parts_to_content(mut parts: Vec<Value>) -> Value {
    if parts.len() == 1
        && parts[0]["type"] == "text"
        && let Some(Value::String(text)) = parts[0].get_mut("text").map(Value::take)
    {
        return Value::String(text);
    }
    Value::Array(parts)
}

fn anthropic_system_to_openai(system: &Value) -> Result<Option<Value>, TranslateError> {
    match system {
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(json!(s))),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for (j, block) in blocks.iter().enumerate() {
                let path = format!("system[{j}]");
                match block_type(block, &path)? {
                    "text" => parts.push(text_part(required_str(block, "text", &path)?)),
                    other => return Err(unsupported(format!("{path}: system block of type `{other}`"))),
                }
            }
            Ok((!parts.is_empty()).then(|| parts_to_content(parts)))
        }
        _ => Err(invalid("`system` must be a string or an array of text blocks")),
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
        ("user" | "assistant", Value::String(text)) => {
            out.push(json!({"role": role, "content": text}));
            Ok(())
        }
        ("user", Value::Array(blocks)) => anthropic_user_blocks_to_openai(blocks, path, out),
        ("assistant", Value::Array(blocks)) => anthropic_assistant_blocks_to_openai(blocks, path, out),
        ("user" | "assistant", _) => Err(invalid(format!("{path}.content must be a string or an array"))),
        (other, _) => Err(invalid(format!("{path}.role `{other}` is not `user` or `assistant`"))),
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

/// The text of a `tool_result`; its images are added to `images`.
fn anthropic_tool_result_to_openai(
    block: &Value,
    path: &str,
    images: &mut Vec<Value>,
) -> Result<String, TranslateError> {
    match block.get("content") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
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
            Ok(texts.join("\n\n"))
        }
        Some(_) => Err(invalid(format!("{path}.content must be a string or an array"))),
    }
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

fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// An OpenAI Chat Completions request as an Anthropic Messages request for `upstream_model`.
///
/// - `system` and `developer` messages, wherever they are, become `system` (their position in the
///   conversation is lost; Anthropic has a single system prompt).
/// - `tool` messages become `tool_result` blocks in a user turn; consecutive messages of the same
///   role are merged into one turn, as Anthropic expects alternating turns.
/// - Assistant `tool_calls` become `tool_use` blocks (arguments parsed, see the module docs);
///   `refusal` text becomes text; empty assistant text is left out (Anthropic rejects empty text
///   blocks) and an assistant message left with nothing is skipped.
/// - Images: base64 data URLs become base64 sources, http(s) URLs URL sources (`detail` is dropped);
///   `file` parts with `file_data` become documents.
/// - `max_completion_tokens` or `max_tokens` becomes `max_tokens`, [`DEFAULT_ANTHROPIC_MAX_TOKENS`]
///   when neither is set; `temperature` above 1 (OpenAI allows up to 2) is clamped to Anthropic's 1;
///   `stop` becomes `stop_sequences`; `user` (or `safety_identifier`) becomes `metadata.user_id`;
///   `parallel_tool_calls: false` becomes `disable_parallel_tool_use`.
/// - Dropped: `frequency_penalty`, `presence_penalty`, `logit_bias`, `seed`, `store`, `metadata`,
///   `service_tier`, `reasoning_effort`, `verbosity`, `prediction`, `stream_options` (Anthropic
///   streams always report usage), `prompt_cache_key`, message `name`, tool `strict`, and any field
///   not listed here.
/// - Unsupported: `n` > 1, `response_format` other than text, `logprobs`, audio (`audio`,
///   `modalities`, `input_audio` parts), `web_search_options`, the legacy `functions` API, custom
///   (non-function) tools, `file_id` files, non-base64 data URLs.
pub fn openai_request_to_anthropic(req: &Value, upstream_model: &str) -> Result<Value, TranslateError> {
    if !req.is_object() {
        return Err(invalid("request body must be a JSON object"));
    }
    reject_untranslatable_openai(req)?;
    let input = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("`messages` must be an array"))?;

    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in input.iter().enumerate() {
        let path = format!("messages[{i}]");
        match required_str(message, "role", &path)? {
            "system" | "developer" => {
                for text in openai_text_parts(message.get("content"), &path)? {
                    if !text.is_empty() {
                        system.push(text_part(text));
                    }
                }
            }
            "user" => push_turn(&mut turns, "user", openai_user_content_to_blocks(message, &path)?),
            "assistant" => push_turn(&mut turns, "assistant", openai_assistant_to_blocks(message, &path)?),
            "tool" => {
                let id = required_str(message, "tool_call_id", &path)?;
                let content = match present(message, "content") {
                    None => json!(""),
                    Some(Value::String(text)) => json!(text),
                    Some(_) => Value::Array(
                        openai_text_parts(message.get("content"), &path)?
                            .into_iter()
                            .map(text_part)
                            .collect(),
                    ),
                };
                push_turn(
                    &mut turns,
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                );
            }
            "function" => {
                return Err(unsupported(format!("{path}: role `function` (the legacy functions API)")));
            }
            other => return Err(invalid(format!("{path}.role `{other}` is not a chat role"))),
        }
    }

    let mut out = Map::new();
    out.insert("model".to_owned(), json!(upstream_model));
    if !system.is_empty() {
        out.insert("system".to_owned(), blocks_to_content(system));
    }
    let messages = turns
        .into_iter()
        .map(|(role, blocks)| json!({"role": role, "content": blocks_to_content(blocks)}))
        .collect();
    out.insert("messages".to_owned(), Value::Array(messages));

    let max_tokens = present(req, "max_completion_tokens").or_else(|| present(req, "max_tokens"));
    out.insert("max_tokens".to_owned(), max_tokens.cloned().unwrap_or(json!(DEFAULT_ANTHROPIC_MAX_TOKENS)));
    if let Some(t) = present(req, "temperature") {
        let clamped = if t.as_f64().is_some_and(|t| t > 1.0) { json!(1.0) } else { t.clone() };
        out.insert("temperature".to_owned(), clamped);
    }
    if let Some(top_p) = present(req, "top_p") {
        out.insert("top_p".to_owned(), top_p.clone());
    }
    match present(req, "stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".to_owned(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            out.insert("stop_sequences".to_owned(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if is_stream(req) {
        out.insert("stream".to_owned(), json!(true));
    }
    if let Some(user) = str_of(req, "user").or_else(|| str_of(req, "safety_identifier")) {
        out.insert("metadata".to_owned(), json!({"user_id": user}));
    }
    openai_tools_to_anthropic(req, &mut out)?;
    Ok(Value::Object(out))
}

fn reject_untranslatable_openai(req: &Value) -> Result<(), TranslateError> {
    if let Some(n) = present(req, "n")
        && n.as_u64() != Some(1)
    {
        return Err(unsupported("`n` other than 1 (several choices)"));
    }
    if let Some(format) = present(req, "response_format") {
        let ty = str_of(format, "type").unwrap_or("?");
        if ty != "text" {
            return Err(unsupported(format!("`response_format` of type `{ty}`")));
        }
    }
    if present(req, "logprobs").is_some_and(|v| v == true) {
        return Err(unsupported("`logprobs`"));
    }
    if present(req, "audio").is_some()
        || present(req, "modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|m| m == "audio"))
    {
        return Err(unsupported("audio output"));
    }
    if present(req, "web_search_options").is_some() {
        return Err(unsupported("`web_search_options`"));
    }
    if present(req, "functions").is_some() || present(req, "function_call").is_some() {
        return Err(unsupported("the legacy `functions` API"));
    }
    Ok(())
}

/// Appends `blocks` as a turn of `role`, merged into the previous turn when it has the same role.
fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last_role, last)) if *last_role == role => last.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

/// Anthropic content from blocks: a plain string when it is a single text block.
fn blocks_to_content(blocks: Vec<Value>) -> Value {
    parts_to_content(blocks)
}

/// The texts of a system, developer or tool message's content (a string or text parts).
fn openai_text_parts<'a>(content: Option<&'a Value>, path: &str) -> Result<Vec<&'a str>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![text]),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let path = format!("{path}.content[{j}]");
                match block_type(part, &path)? {
                    "text" => texts.push(required_str(part, "text", &path)?),
                    other => return Err(unsupported(format!("{path}: content part of type `{other}` here"))),
                }
            }
            Ok(texts)
        }
        Some(_) => Err(invalid(format!("{path}.content must be a string or an array"))),
    }
}

fn openai_user_content_to_blocks(message: &Value, path: &str) -> Result<Vec<Value>, TranslateError> {
    match message.get("content") {
        Some(Value::String(text)) => Ok(vec![text_part(text)]),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let path = format!("{path}.content[{j}]");
                let block = match block_type(part, &path)? {
                    "text" => text_part(required_str(part, "text", &path)?),
                    "image_url" => openai_image_to_anthropic(part, &path)?,
                    "file" => openai_file_to_anthropic(part, &path)?,
                    other => return Err(unsupported(format!("{path}: content part of type `{other}`"))),
                };
                blocks.push(block);
            }
            Ok(blocks)
        }
        _ => Err(invalid(format!("{path}.content must be a string or an array"))),
    }
}

/// `(media_type, data)` of a base64 data URL.
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    Some((meta.strip_suffix(";base64")?, data))
}

fn openai_image_to_anthropic(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let image = part.get("image_url").unwrap_or(&Value::Null);
    let url = image.as_str().or_else(|| str_of(image, "url"));
    let url = url.ok_or_else(|| invalid(format!("{path}.image_url.url must be a string")))?;
    if url.starts_with("data:") {
        let (media_type, data) = parse_data_url(url)
            .ok_or_else(|| unsupported(format!("{path}: a data URL that is not base64")))?;
        Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        Err(invalid(format!("{path}.image_url.url is neither a data URL nor an http(s) URL")))
    }
}

fn openai_file_to_anthropic(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let file = part.get("file").unwrap_or(&Value::Null);
    let Some(data_url) = str_of(file, "file_data") else {
        return Err(unsupported(format!("{path}: a file given by `file_id`")));
    };
    let (media_type, data) = parse_data_url(data_url)
        .ok_or_else(|| unsupported(format!("{path}: file data that is not a base64 data URL")))?;
    let mut block =
        json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}});
    if let Some(name) = str_of(file, "filename") {
        block["title"] = json!(name);
    }
    Ok(block)
}

fn openai_assistant_to_blocks(message: &Value, path: &str) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    let mut push_text = |text: &str| {
        if !text.is_empty() {
            blocks.push(text_part(text));
        }
    };
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => push_text(text),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let path = format!("{path}.content[{j}]");
                match block_type(part, &path)? {
                    "text" => push_text(required_str(part, "text", &path)?),
                    "refusal" => push_text(required_str(part, "refusal", &path)?),
                    other => return Err(unsupported(format!("{path}: content part of type `{other}`"))),
                }
            }
        }
        Some(_) => return Err(invalid(format!("{path}.content must be a string, an array or null"))),
    }
    if let Some(refusal) = str_of(message, "refusal") {
        push_text(refusal);
    }
    if present(message, "function_call").is_some() {
        return Err(unsupported(format!("{path}: `function_call` (the legacy functions API)")));
    }
    let calls = match present(message, "tool_calls") {
        None => &[][..],
        Some(Value::Array(calls)) => calls.as_slice(),
        Some(_) => return Err(invalid(format!("{path}.tool_calls must be an array"))),
    };
    for (j, call) in calls.iter().enumerate() {
        let path = format!("{path}.tool_calls[{j}]");
        if let Some(ty) = str_of(call, "type")
            && ty != "function"
        {
            return Err(unsupported(format!("{path}: tool call of type `{ty}`")));
        }
        let function = call.get("function").unwrap_or(&Value::Null);
        let input = match function.get("arguments") {
            Some(Value::String(arguments)) => arguments_to_input(arguments),
            Some(object @ Value::Object(_)) => object.clone(),
            _ => arguments_to_input(""),
        };
        blocks.push(json!({
            "type": "tool_use",
            "id": required_str(call, "id", &path)?,
            "name": required_str(function, "name", &format!("{path}.function"))?,
            "input": input,
        }));
    }
    Ok(blocks)
}

fn openai_tools_to_anthropic(req: &Value, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let Some(tools) = present(req, "tools") else {
        return Ok(());
    };
    let tools = tools.as_array().ok_or_else(|| invalid("`tools` must be an array"))?;
    if tools.is_empty() {
        return Ok(());
    }
    let mut converted = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let ty = str_of(tool, "type").unwrap_or("function");
        if ty != "function" {
            return Err(unsupported(format!("{path}: tool of type `{ty}`")));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let mut converted_tool = Map::new();
        converted_tool
            .insert("name".to_owned(), json!(required_str(function, "name", &format!("{path}.function"))?));
        if let Some(description) = present(function, "description") {
            converted_tool.insert("description".to_owned(), description.clone());
        }
        let schema = present(function, "parameters").cloned().unwrap_or_else(empty_schema);
        converted_tool.insert("input_schema".to_owned(), schema);
        converted.push(Value::Object(converted_tool));
    }
    out.insert("tools".to_owned(), Value::Array(converted));

    let mut choice = match present(req, "tool_choice") {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            other => return Err(invalid(format!("tool_choice `{other}` is not a tool choice"))),
        },
        Some(object) => match str_of(object, "type") {
            Some("function") => {
                let function = object.get("function").unwrap_or(&Value::Null);
                Some(json!({"type": "tool", "name": required_str(function, "name", "tool_choice.function")?}))
            }
            Some(other) => return Err(unsupported(format!("tool_choice of type `{other}`"))),
            None => return Err(invalid("tool_choice.type is missing")),
        },
    };
    if present(req, "parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".to_owned(), choice);
    }
    Ok(())
}
