//! OpenAI Chat Completions requests as Anthropic Messages requests.
//!
//! Anthropic is the stricter of the two: one system prompt instead of system messages anywhere,
//! alternating user and assistant turns, tool results as blocks of a user turn, and extended
//! thinking that only works under conditions an OpenAI client knows nothing about. So OpenAI
//! messages are folded into turns, and `reasoning_effort` is honoured only when the resulting
//! request is one Anthropic accepts with thinking on.

use serde_json::{Map, Value, json};

use super::{
    DEFAULT_ANTHROPIC_MAX_TOKENS, block_type, empty_schema, parts_to_content, required_str, text_part,
    thinking_budget_for_effort,
};
use crate::protocol::is_stream;
use crate::protocol::translate::{TranslateError, arguments_to_input, invalid, present, str_of, unsupported};

/// An OpenAI Chat Completions request as an Anthropic Messages request for `upstream_model`.
///
/// - `system` and `developer` messages, wherever they are, become the top-level `system`, each
///   text part a text block of its own, in the order they came: a system message from the middle
///   of the conversation is appended after the leading ones (its position is lost; Anthropic has
///   a single system prompt).
/// - `tool` messages become `tool_result` blocks in a user turn (text parts become text blocks);
///   consecutive messages of the same role, such as several tool messages and the user message
///   after them, are merged into one turn, as Anthropic expects alternating turns.
/// - Assistant `tool_calls` become `tool_use` blocks (arguments parsed, see the module docs);
///   `refusal` text becomes text; empty assistant text is left out (Anthropic rejects empty text
///   blocks) and an assistant message left with nothing is skipped. `reasoning_content` sent back
///   in history is dropped: Anthropic only takes thinking it signed itself.
/// - Images: base64 data URLs become base64 sources, http(s) URLs URL sources (`detail` is dropped);
///   `file` parts with `file_data` become documents.
/// - `max_completion_tokens` or `max_tokens` becomes `max_tokens`, [`DEFAULT_ANTHROPIC_MAX_TOKENS`]
///   when neither is set; `temperature` above 1 (OpenAI allows up to 2) is clamped to Anthropic's 1;
///   `stop` (a string or an array) becomes `stop_sequences`; `user` (or `safety_identifier`)
///   becomes `metadata.user_id`; `parallel_tool_calls: false` becomes `disable_parallel_tool_use`.
/// - `reasoning_effort` `low`, `medium`, `high` (and `xhigh`) becomes `thinking: {type: "enabled",
///   budget_tokens}` with 2048, 8192 and 24576 tokens, when Anthropic would accept it: the budget
///   must stay below `max_tokens` (without a client limit, `max_tokens` becomes the default plus
///   the budget), and thinking does not combine with a `temperature` other than 1, `top_p` below
///   0.95, a forced tool choice, or a last assistant turn that called tools (Anthropic wants that
///   turn to start with its own signed thinking, which an OpenAI history does not have). Otherwise
///   it is dropped, as are `minimal` and `none`.
/// - Dropped: `frequency_penalty`, `presence_penalty`, `logit_bias`, `seed`, `store`, `metadata`,
///   `service_tier`, `verbosity`, `prediction`, `stream_options` (Anthropic streams always report
///   usage), `prompt_cache_key`, message `name`, tool `strict`, and any field not listed here.
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
    if let Some(stops) = openai_stop_to_anthropic(req)? {
        out.insert("stop_sequences".to_owned(), stops);
    }
    if is_stream(req) {
        out.insert("stream".to_owned(), json!(true));
    }
    if let Some(user) = str_of(req, "user").or_else(|| str_of(req, "safety_identifier")) {
        out.insert("metadata".to_owned(), json!({"user_id": user}));
    }
    openai_tools_to_anthropic(req, &mut out)?;
    openai_reasoning_to_thinking(req, max_tokens.is_some(), &mut out);
    Ok(Value::Object(out))
}

/// OpenAI's `stop` (a string or an array of strings) as `stop_sequences`; `None` when empty.
fn openai_stop_to_anthropic(req: &Value) -> Result<Option<Value>, TranslateError> {
    match present(req, "stop") {
        None => Ok(None),
        Some(Value::String(stop)) if stop.is_empty() => Ok(None),
        Some(Value::String(stop)) => Ok(Some(json!([stop]))),
        Some(Value::Array(stops)) => {
            if let Some(i) = stops.iter().position(|s| !s.is_string()) {
                return Err(invalid(format!("stop[{i}] must be a string")));
            }
            Ok((!stops.is_empty()).then(|| Value::Array(stops.clone())))
        }
        Some(_) => Err(invalid("`stop` must be a string or an array of strings")),
    }
}

/// Adds `thinking` for the client's `reasoning_effort` to the translated request `out`, when
/// Anthropic would accept it (see [`openai_request_to_anthropic`]). `explicit_limit` says whether
/// the client set `max_tokens` itself; if not, the default limit is raised by the budget so the
/// thinking does not eat the answer.
fn openai_reasoning_to_thinking(req: &Value, explicit_limit: bool, out: &mut Map<String, Value>) {
    let Some(budget) = str_of(req, "reasoning_effort").and_then(thinking_budget_for_effort) else {
        return;
    };
    let temperature_ok = out.get("temperature").is_none_or(|t| t.as_f64() == Some(1.0));
    let top_p_ok = out.get("top_p").is_none_or(|p| p.as_f64().is_some_and(|p| p >= 0.95));
    let choice = out.get("tool_choice").and_then(|c| str_of(c, "type"));
    let choice_ok = !matches!(choice, Some("any" | "tool"));
    let messages = out.get("messages").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if !(temperature_ok && top_p_ok && choice_ok) || last_assistant_turn_needs_thinking(messages) {
        return;
    }
    if !explicit_limit {
        out.insert("max_tokens".to_owned(), json!(DEFAULT_ANTHROPIC_MAX_TOKENS + budget));
    }
    if out.get("max_tokens").and_then(Value::as_u64).is_none_or(|max| budget >= max) {
        return;
    }
    out.insert("thinking".to_owned(), json!({"type": "enabled", "budget_tokens": budget}));
}

/// Whether, with thinking on, Anthropic would reject `messages` because the last assistant turn
/// called tools without starting with a thinking block. (That turn's thinking has to be passed
/// back so the model can continue its reasoning after the tool results.)
fn last_assistant_turn_needs_thinking(messages: &[Value]) -> bool {
    let Some(last) = messages.iter().rev().find(|m| str_of(m, "role") == Some("assistant")) else {
        return false;
    };
    let Some(blocks) = last.get("content").and_then(Value::as_array) else {
        return false;
    };
    let calls_tools = blocks.iter().any(|b| str_of(b, "type") == Some("tool_use"));
    let starts_with_thinking = blocks
        .first()
        .and_then(|b| str_of(b, "type"))
        .is_some_and(|t| t == "thinking" || t == "redacted_thinking");
    calls_tools && !starts_with_thinking
}

/// Makes an Anthropic request that is forwarded to Anthropic unchanged acceptable again after a
/// translated answer went through the client: thinking blocks the gateway made from an OpenAI
/// `reasoning_content` carry an empty signature, which Anthropic rejects. Those blocks are removed
/// (and assistant messages left empty with them); if the last assistant turn then calls tools
/// without its thinking, `thinking` is turned off for this request, as Anthropic would refuse it.
/// Returns whether the request changed. Signed thinking is left alone.
pub fn strip_unsigned_thinking(req: &mut Value) -> bool {
    let Some(messages) = req.get_mut("messages").and_then(Value::as_array_mut) else {
        return false;
    };
    let mut changed = false;
    for message in messages.iter_mut() {
        if str_of(message, "role") != Some("assistant") {
            continue;
        }
        if let Some(blocks) = message.get_mut("content").and_then(Value::as_array_mut) {
            let before = blocks.len();
            blocks.retain(|b| {
                str_of(b, "type") != Some("thinking") || str_of(b, "signature").is_some_and(|s| !s.is_empty())
            });
            changed |= blocks.len() != before;
        }
    }
    if !changed {
        return false;
    }
    messages.retain(|m| {
        str_of(m, "role") != Some("assistant")
            || m.get("content").and_then(Value::as_array).is_none_or(|b| !b.is_empty())
    });
    let thinking_on = req.get("thinking").and_then(|t| str_of(t, "type")).is_some_and(|t| t != "disabled");
    let messages = req.get("messages").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if thinking_on
        && last_assistant_turn_needs_thinking(messages)
        && let Some(map) = req.as_object_mut()
    {
        map.remove("thinking");
    }
    true
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
    // Parameters such as `;name=…` may sit between the media type and `;base64`.
    let media_type = meta.strip_suffix(";base64")?.split(';').next()?;
    (!media_type.is_empty()).then_some((media_type, data))
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
