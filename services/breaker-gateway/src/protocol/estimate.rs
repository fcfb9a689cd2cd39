//! A token estimate for `POST /v1/messages/count_tokens` when no Anthropic deployment can count.
//!
//! Claude Code asks for a count every turn to decide when to compact its context; it needs a
//! figure of the right size, not an exact one. The estimate is the one tokenizer-free rule that
//! holds across Anthropic's and OpenAI's tokenizers for English text and code: about four
//! characters per token, counted over every text the model reads (system prompt, message text,
//! tool inputs and results, tool definitions), plus a few tokens of framing per message and per
//! tool, and a flat 1,600 tokens per image (Anthropic's figure for a ~1.2 megapixel image). It
//! is linear in the request's size.

use serde_json::Value;

/// Characters per token of the estimate.
const CHARS_PER_TOKEN: usize = 4;
/// Framing tokens per message (role, separators).
const PER_MESSAGE: u64 = 4;
/// Framing tokens per tool definition.
const PER_TOOL: u64 = 8;
/// Tokens per image block.
const PER_IMAGE: u64 = 1_600;

#[derive(Default)]
struct Tally {
    chars: usize,
    fixed: u64,
}

impl Tally {
    fn text(&mut self, s: &str) {
        self.chars += s.chars().count();
    }

    /// Text inside a content value: a string, or blocks of any kind.
    fn content(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.text(s),
            Value::Array(blocks) => blocks.iter().for_each(|b| self.block(b)),
            _ => {}
        }
    }

    fn block(&mut self, b: &Value) {
        match b.get("type").and_then(Value::as_str) {
            Some("image") | Some("image_url") => self.fixed += PER_IMAGE,
            Some("tool_use") => {
                if let Some(name) = b.get("name").and_then(Value::as_str) {
                    self.text(name);
                }
                if let Some(input) = b.get("input") {
                    self.chars += input.to_string().len();
                }
            }
            Some("tool_result") => {
                if let Some(c) = b.get("content") {
                    self.content(c);
                }
            }
            _ => {
                for key in ["text", "thinking"] {
                    if let Some(t) = b.get(key).and_then(Value::as_str) {
                        self.text(t);
                    }
                }
            }
        }
    }
}

/// The estimated input tokens of an Anthropic Messages request (a count_tokens body).
pub fn input_tokens(req: &Value) -> u64 {
    let mut t = Tally::default();
    if let Some(system) = req.get("system") {
        t.content(system);
    }
    for m in req.get("messages").and_then(Value::as_array).into_iter().flatten() {
        t.fixed += PER_MESSAGE;
        if let Some(c) = m.get("content") {
            t.content(c);
        }
    }
    for tool in req.get("tools").and_then(Value::as_array).into_iter().flatten() {
        t.fixed += PER_TOOL;
        t.chars += tool.to_string().len();
    }
    (t.chars.div_ceil(CHARS_PER_TOKEN) as u64).saturating_add(t.fixed).max(1)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_estimate_grows_with_every_text_the_model_reads() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hello world, this is forty characters.."}]});
        let n = input_tokens(&base);
        assert_eq!(n, 10 + PER_MESSAGE);
        let mut with_system = base.clone();
        with_system["system"] = json!([{"type": "text", "text": "x".repeat(400)}]);
        assert_eq!(input_tokens(&with_system), n + 100);
        let mut with_tools = base.clone();
        with_tools["tools"] = json!([{"name": "Bash", "input_schema": {"type": "object"}}]);
        assert!(input_tokens(&with_tools) > n + PER_TOOL);
        let image = json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "AAAA"}}]}]});
        assert_eq!(input_tokens(&image), PER_MESSAGE + PER_IMAGE);
        let tools = json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {"path": "/a/b"}}]},
                                       {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "y".repeat(80)}]}]}]});
        assert!(input_tokens(&tools) >= 2 * PER_MESSAGE + 20);
        assert_eq!(input_tokens(&json!({})), 1);
    }
}
