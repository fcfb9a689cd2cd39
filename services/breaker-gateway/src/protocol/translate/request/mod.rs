//! Request bodies in both directions: [`to_openai`] turns Anthropic Messages requests into Chat
//! Completions requests, [`to_anthropic`] the reverse. What the two share lives here: the helpers
//! that read blocks with a path for error messages, and the one table that relates Anthropic's
//! thinking budget to OpenAI's reasoning effort, so that the two directions cannot drift apart.

mod to_anthropic;
mod to_openai;

use serde_json::{Value, json};

pub use to_anthropic::{openai_request_to_anthropic, strip_unsigned_thinking};
pub use to_openai::{TOOL_ERROR_PREFIX, anthropic_request_to_openai, anthropic_request_to_openai_with};

use super::{TranslateError, invalid, str_of};

/// Which OpenAI field carries the output limit. `max_tokens` is understood by every
/// OpenAI-compatible server and by OpenAI's non-reasoning models; OpenAI's reasoning models (o-series,
/// gpt-5) reject it and need `max_completion_tokens`, which older compatible servers ignore.
///
/// The choice also says whether the deployment reasons: only with `max_completion_tokens` is an
/// Anthropic `thinking` request sent on as `reasoning_effort`, which non-reasoning OpenAI models
/// reject with a 400.
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

/// OpenAI accepts at most this many stop sequences.
pub const OPENAI_MAX_STOP_SEQUENCES: usize = 4;

/// The thinking budget an OpenAI `reasoning_effort` stands for when going to Anthropic. `minimal`
/// and `none` ask for (almost) no reasoning, which is Anthropic without thinking; `xhigh` is
/// treated as `high`; anything else is not a known effort.
pub(super) fn thinking_budget_for_effort(effort: &str) -> Option<u64> {
    match effort {
        "low" => Some(2048),
        "medium" => Some(8192),
        "high" | "xhigh" => Some(24576),
        _ => None,
    }
}

/// The OpenAI `reasoning_effort` for an Anthropic thinking budget: up to 4096 tokens is `low`,
/// up to 16384 `medium`, more `high`. The thresholds sit between the budgets of
/// [`thinking_budget_for_effort`], so an effort survives a round trip.
pub(super) fn effort_for_thinking_budget(budget: u64) -> &'static str {
    match budget {
        0..=4096 => "low",
        4097..=16384 => "medium",
        _ => "high",
    }
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

/// Content from text parts or blocks: a plain string when it is a single text part, as most
/// OpenAI-compatible servers expect and as Anthropic accepts.
fn parts_to_content(mut parts: Vec<Value>) -> Value {
    if parts.len() == 1
        && parts[0]["type"] == "text"
        && let Some(Value::String(text)) = parts[0].get_mut("text").map(Value::take)
    {
        return Value::String(text);
    }
    Value::Array(parts)
}

fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}
