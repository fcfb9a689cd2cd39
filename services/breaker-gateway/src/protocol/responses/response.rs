//! A Chat Completions answer as a Responses object.

use serde_json::{Value, json};

use super::{ResponseContext, call_item, message_item, new_id, usage_object};
use crate::protocol::Usage;

/// The Responses object for the Chat Completions answer `chat`, and its output items (for the
/// store).
pub fn chat_to_response(chat: &Value, ctx: &ResponseContext) -> (Value, Vec<Value>) {
    let choice = chat.get("choices").and_then(|c| c.get(0));
    let message = choice.and_then(|c| c.get("message"));
    let mut output = Vec::new();
    if let Some(m) = message {
        let text = m.get("content").and_then(Value::as_str).unwrap_or_default();
        if !text.is_empty() {
            output.push(message_item(&new_id("msg_"), text, "completed"));
        }
        if let Some(refusal) = m.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            output.push(json!({
                "type": "message", "id": new_id("msg_"), "status": "completed", "role": "assistant",
                "content": [{"type": "refusal", "refusal": refusal}],
            }));
        }
        for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let f = call.get("function");
            let name = f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default();
            let arguments = f.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or("{}");
            let call_id =
                call.get("id").and_then(Value::as_str).map_or_else(|| new_id("call_"), str::to_owned);
            output.push(call_item(ctx, &call_id, name, arguments, "completed"));
        }
    }
    let finish = choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str);
    let usage = chat.get("usage").and_then(|u| {
        let reasoning = u
            .get("completion_tokens_details")
            .and_then(|d| d.get("reasoning_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Usage::from_openai(u).map(|usage| usage_object(&usage, reasoning))
    });
    let (status, incomplete) = status_of(finish);
    let mut object = ctx.object(status, &output, usage);
    if let Some(reason) = incomplete {
        object["incomplete_details"] = json!({"reason": reason});
    }
    (object, output)
}

/// The Responses status for a Chat `finish_reason`, and the reason it is incomplete.
pub(super) fn status_of(finish: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}
