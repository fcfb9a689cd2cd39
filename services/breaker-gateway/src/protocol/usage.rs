//! Token usage, read from either provider's responses and streams, for cost metering.
//!
//! The two providers count input differently. Anthropic's `input_tokens` excludes tokens read from
//! or written to the prompt cache, which are reported separately; OpenAI's `prompt_tokens` includes
//! the cached tokens, reported again in `prompt_tokens_details.cached_tokens`. [`Usage`] uses
//! Anthropic's convention (the four counts are disjoint) because every count then has exactly one
//! price and cost is a plain weighted sum; [`Usage::total_input_tokens`] gives the inclusive figure.
//! OpenAI does not charge for cache writes and reports none, so `cache_write_tokens` is always 0 for
//! OpenAI.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Protocol;

/// Tokens used by one request; the four counts are disjoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens neither read from nor written to the prompt cache.
    pub input_tokens: u64,
    /// Generated tokens, reasoning/thinking included.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache (Anthropic only).
    pub cache_write_tokens: u64,
}

fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

impl Usage {
    /// Reads an OpenAI `usage` object (`prompt_tokens`, `completion_tokens`,
    /// `prompt_tokens_details.cached_tokens`, or DeepSeek's `prompt_cache_hit_tokens` when the
    /// details are missing); `None` when `usage` is not an object.
    pub fn from_openai(usage: &Value) -> Option<Usage> {
        if !usage.is_object() {
            return None;
        }
        let prompt = count(usage, "prompt_tokens").unwrap_or(0);
        let cached = usage
            .get("prompt_tokens_details")
            .and_then(|d| count(d, "cached_tokens"))
            .or_else(|| count(usage, "prompt_cache_hit_tokens"))
            .unwrap_or(0);
        Some(Usage::inclusive(prompt, cached, count(usage, "completion_tokens").unwrap_or(0)))
    }

    /// OpenAI's way of counting (input inclusive of the cached part, no cache writes) in ours.
    fn inclusive(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input.saturating_sub(cached),
            output_tokens: output,
            cache_read_tokens: cached.min(input),
            cache_write_tokens: 0,
        }
    }

    /// Reads a Responses API `usage` object (`input_tokens` inclusive of
    /// `input_tokens_details.cached_tokens`, `output_tokens`); `None` when it is not an object.
    pub fn from_responses(usage: &Value) -> Option<Usage> {
        if !usage.is_object() {
            return None;
        }
        let input = count(usage, "input_tokens").unwrap_or(0);
        let cached = usage.get("input_tokens_details").and_then(|d| count(d, "cached_tokens")).unwrap_or(0);
        Some(Usage::inclusive(input, cached, count(usage, "output_tokens").unwrap_or(0)))
    }

    /// Reads an Anthropic `usage` object (`input_tokens`, `output_tokens`,
    /// `cache_read_input_tokens`, `cache_creation_input_tokens`); `None` when it is not an object.
    pub fn from_anthropic(usage: &Value) -> Option<Usage> {
        if !usage.is_object() {
            return None;
        }
        let mut out = Usage::default();
        out.update_from_anthropic(usage);
        Some(out)
    }

    /// Overwrites the counts `usage` carries and keeps the others: Anthropic's `message_delta`
    /// carries cumulative counts, and often only `output_tokens`.
    fn update_from_anthropic(&mut self, usage: &Value) {
        if let Some(n) = count(usage, "input_tokens") {
            self.input_tokens = n;
        }
        if let Some(n) = count(usage, "output_tokens") {
            self.output_tokens = n;
        }
        if let Some(n) = count(usage, "cache_read_input_tokens") {
            self.cache_read_tokens = n;
        }
        if let Some(n) = count(usage, "cache_creation_input_tokens") {
            self.cache_write_tokens = n;
        }
    }

    /// All input tokens, cached or not (OpenAI's `prompt_tokens`).
    pub fn total_input_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.cache_read_tokens).saturating_add(self.cache_write_tokens)
    }

    pub fn total_tokens(&self) -> u64 {
        self.total_input_tokens().saturating_add(self.output_tokens)
    }

    /// The usage as an OpenAI `usage` object.
    pub fn to_openai(&self) -> Value {
        json!({
            "prompt_tokens": self.total_input_tokens(),
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens},
        })
    }

    /// The usage as an Anthropic `usage` object.
    pub fn to_anthropic(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
        })
    }
}

/// The usage of a non-streaming response body of `protocol`, if it reports any.
pub fn response_usage(protocol: Protocol, body: &Value) -> Option<Usage> {
    let usage = body.get("usage")?;
    match protocol {
        Protocol::OpenAi => Usage::from_openai(usage),
        Protocol::Anthropic => Usage::from_anthropic(usage),
    }
}

/// Gathers usage from a stream's events, fed as parsed JSON data in order.
///
/// OpenAI streams report usage once, in a final chunk with `"choices": []`, and only when the
/// request had `stream_options.include_usage`; some compatible servers report cumulative usage on
/// every chunk, so the last report wins. Anthropic streams report input and cache counts in
/// `message_start` and cumulative output in `message_delta`.
#[derive(Debug, Clone)]
pub struct UsageAccumulator {
    protocol: Protocol,
    usage: Usage,
    seen: bool,
}

impl UsageAccumulator {
    pub fn new(protocol: Protocol) -> UsageAccumulator {
        UsageAccumulator { protocol, usage: Usage::default(), seen: false }
    }

    /// Takes one event's data (an OpenAI chunk or an Anthropic event; `[DONE]` is not fed).
    pub fn push(&mut self, data: &Value) {
        match self.protocol {
            Protocol::OpenAi => {
                if let Some(usage) = data.get("usage").and_then(Usage::from_openai) {
                    self.usage = usage;
                    self.seen = true;
                }
            }
            Protocol::Anthropic => {
                let usage = match data.get("type").and_then(Value::as_str) {
                    Some("message_start") => data.get("message").and_then(|m| m.get("usage")),
                    Some("message_delta") => data.get("usage"),
                    _ => None,
                };
                if let Some(usage) = usage.filter(|u| u.is_object()) {
                    self.usage.update_from_anthropic(usage);
                    self.seen = true;
                }
            }
        }
    }

    /// The usage so far; `None` when the stream has reported none.
    pub fn usage(&self) -> Option<Usage> {
        self.seen.then_some(self.usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures;
    use crate::protocol::sse::SseParser;

    fn stream_data(stream: &str) -> Vec<Value> {
        let mut parser = SseParser::default();
        let mut events = parser.feed(stream.as_bytes()).expect("fixture parses");
        events.extend(parser.finish());
        events.iter().filter(|e| !e.is_openai_done()).map(|e| e.json().expect("json event")).collect()
    }

    #[test]
    fn openai_prompt_tokens_are_split_into_uncached_and_cached() {
        let body: Value = serde_json::from_str(fixtures::OPENAI_RESPONSE_TEXT).expect("fixture");
        let usage = response_usage(Protocol::OpenAi, &body).expect("usage");
        let reported = &body["usage"];
        let prompt = reported["prompt_tokens"].as_u64().expect("prompt");
        let cached = reported["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached");
        assert!(cached > 0 && cached < prompt, "the fixture exercises caching");
        assert_eq!(usage.input_tokens, prompt - cached);
        assert_eq!(usage.cache_read_tokens, cached);
        assert_eq!(usage.output_tokens, reported["completion_tokens"].as_u64().expect("completion"));
        assert_eq!(usage.cache_write_tokens, 0);
        assert_eq!(usage.total_input_tokens(), prompt);
        assert_eq!(usage.total_tokens(), reported["total_tokens"].as_u64().expect("total"));
    }

    #[test]
    fn openai_usage_without_details_or_with_nulls_is_read() {
        let usage = Usage::from_openai(&json!({
            "prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "prompt_tokens_details": null
        }));
        assert_eq!(usage, Some(Usage { input_tokens: 12, output_tokens: 5, ..Usage::default() }));
        assert_eq!(Usage::from_openai(&Value::Null), None);
        assert_eq!(response_usage(Protocol::OpenAi, &json!({"choices": []})), None);
    }

    #[test]
    fn deepseek_cache_hits_count_as_cache_reads_without_prompt_tokens_details() {
        let usage = Usage::from_openai(&json!({
            "prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940,
            "prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 260
        }));
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 260,
                output_tokens: 40,
                cache_read_tokens: 640,
                cache_write_tokens: 0
            })
        );
        // The standard field wins when both are there.
        let usage = Usage::from_openai(&json!({
            "prompt_tokens": 900, "prompt_tokens_details": {"cached_tokens": 512}, "prompt_cache_hit_tokens": 640
        }));
        assert_eq!(usage.map(|u| u.cache_read_tokens), Some(512));
    }

    #[test]
    fn anthropic_usage_reads_all_four_counts() {
        let body: Value = serde_json::from_str(fixtures::ANTHROPIC_RESPONSE_TOOLS).expect("fixture");
        let u = &body["usage"];
        let usage = response_usage(Protocol::Anthropic, &body).expect("usage");
        assert_eq!(
            usage,
            Usage {
                input_tokens: u["input_tokens"].as_u64().expect("n"),
                output_tokens: u["output_tokens"].as_u64().expect("n"),
                cache_read_tokens: u["cache_read_input_tokens"].as_u64().expect("n"),
                cache_write_tokens: u["cache_creation_input_tokens"].as_u64().expect("n"),
            }
        );
        assert!(usage.cache_read_tokens > 0 && usage.cache_write_tokens > 0, "the fixture exercises caching");
    }

    #[test]
    fn openai_stream_usage_comes_from_the_usage_only_chunk() {
        let events = stream_data(fixtures::OPENAI_STREAM_TEXT);
        let mut acc = UsageAccumulator::new(Protocol::OpenAi);
        for event in &events[..events.len() - 1] {
            acc.push(event);
        }
        assert_eq!(acc.usage(), None, "content chunks carry `usage: null`");
        let last = events.last().expect("events");
        acc.push(last);
        assert_eq!(acc.usage(), Usage::from_openai(&last["usage"]));
        assert!(acc.usage().is_some_and(|u| u.output_tokens > 0));
    }

    #[test]
    fn anthropic_stream_usage_combines_message_start_and_message_delta() {
        let events = stream_data(fixtures::ANTHROPIC_STREAM_TOOLS);
        let start = events.iter().find(|e| e["type"] == "message_start").expect("message_start");
        let delta = events.iter().find(|e| e["type"] == "message_delta").expect("message_delta");
        let mut acc = UsageAccumulator::new(Protocol::Anthropic);
        for event in &events {
            acc.push(event);
        }
        let start_usage = &start["message"]["usage"];
        assert_ne!(
            start_usage["output_tokens"], delta["usage"]["output_tokens"],
            "the fixture updates output"
        );
        assert_eq!(
            acc.usage(),
            Some(Usage {
                input_tokens: start_usage["input_tokens"].as_u64().expect("n"),
                output_tokens: delta["usage"]["output_tokens"].as_u64().expect("n"),
                cache_read_tokens: start_usage["cache_read_input_tokens"].as_u64().expect("n"),
                cache_write_tokens: start_usage["cache_creation_input_tokens"].as_u64().expect("n"),
            })
        );
    }

    #[test]
    fn anthropic_message_delta_counts_overwrite_when_present() {
        let mut acc = UsageAccumulator::new(Protocol::Anthropic);
        assert_eq!(acc.usage(), None);
        acc.push(
            &json!({"type": "message_start", "message": {"usage": {"input_tokens": 10, "output_tokens": 1}}}),
        );
        acc.push(&json!({"type": "content_block_delta", "usage": {"output_tokens": 999}}));
        acc.push(&json!({"type": "message_delta", "usage": {"output_tokens": 30, "input_tokens": 12}}));
        assert_eq!(acc.usage(), Some(Usage { input_tokens: 12, output_tokens: 30, ..Usage::default() }));
    }

    #[test]
    fn usage_converts_to_each_protocol_and_back() {
        let usage =
            Usage { input_tokens: 100, output_tokens: 20, cache_read_tokens: 50, cache_write_tokens: 0 };
        assert_eq!(Usage::from_openai(&usage.to_openai()), Some(usage));
        assert_eq!(usage.to_openai()["prompt_tokens"], 150);
        let usage = Usage { cache_write_tokens: 7, ..usage };
        assert_eq!(Usage::from_anthropic(&usage.to_anthropic()), Some(usage));
        assert_eq!(usage.to_openai()["total_tokens"], 177);
    }
}
