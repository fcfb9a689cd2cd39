//! What a call cost, in USD, from its token usage and the configured prices.
//!
//! Prices are USD per million tokens of an upstream model, one per kind of token; [`Usage`]'s four
//! counts are disjoint, so the cost is a plain weighted sum. Pass the model the deployment calls
//! (or the one the upstream reports), not the name the client asked for: a client's name may be a
//! chain served by models of different prices.
//!
//! Lookup: the exact model name first; otherwise the longest configured name that is a prefix of
//! the model *and ends where a version suffix starts* (the model continues with `-`, `:` or `@`,
//! or the configured name itself ends with one of them). So `claude-sonnet-4-5` covers the dated
//! `claude-sonnet-4-5-20250929` and `gpt-4.1` covers `gpt-4.1-2025-04-14`, but `gpt-4` does not
//! price `gpt-4o` or `gpt-4.1`, which are different models at different prices. A suffix can
//! still name a cheaper sibling (`gpt-4.1` is a prefix of `gpt-4.1-mini`): configure the sibling
//! too, and as the longer name it wins. A model without a price has no cost (`None`), which the
//! caller reports rather than guessing zero. When a model is configured twice, the first entry
//! counts.

use std::collections::HashMap;

use helix_core::gateway_config::PriceConfig;

use crate::protocol::usage::Usage;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

impl Price {
    /// USD for `usage` at this price.
    pub fn cost(&self, usage: &Usage) -> f64 {
        // u64 → f64 rounds above 2^53 tokens, far beyond any call
        let per_million = |tokens: u64, price: f64| tokens as f64 / 1e6 * price;
        per_million(usage.input_tokens, self.input)
            + per_million(usage.output_tokens, self.output)
            + per_million(usage.cache_read_tokens, self.cache_read)
            + per_million(usage.cache_write_tokens, self.cache_write)
    }
}

/// The configured prices.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    exact: HashMap<String, Price>,
    /// Longest name first, so the first prefix match is the longest.
    by_length: Vec<(String, Price)>,
}

/// Whether `name` prices `model` as a prefix (see the module docs).
fn covers(name: &str, model: &str) -> bool {
    let boundary = |c: char| matches!(c, '-' | ':' | '@');
    match model.strip_prefix(name) {
        Some(rest) => rest.starts_with(boundary) || name.ends_with(boundary),
        None => false,
    }
}

impl Prices {
    pub fn from_config(prices: &[PriceConfig]) -> Prices {
        let mut out = Prices::default();
        for p in prices {
            if out.exact.contains_key(&p.model) {
                continue;
            }
            let price = Price {
                input: p.input,
                output: p.output,
                cache_read: p.cache_read,
                cache_write: p.cache_write,
            };
            out.exact.insert(p.model.clone(), price);
            out.by_length.push((p.model.clone(), price));
        }
        // stable: among names of one length the configured order stays
        out.by_length.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
        out
    }

    /// The price of `model`: exact, else the longest covering prefix.
    pub fn price(&self, model: &str) -> Option<&Price> {
        self.exact
            .get(model)
            .or_else(|| self.by_length.iter().find(|(name, _)| covers(name, model)).map(|(_, p)| p))
    }

    /// USD of `usage` on `model`; `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.price(model).map(|p| p.cost(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(model: &str, input: f64, output: f64, cache_read: f64, cache_write: f64) -> PriceConfig {
        PriceConfig { model: model.to_owned(), input, output, cache_read, cache_write }
    }

    fn prices() -> Prices {
        Prices::from_config(&[
            price("claude-sonnet-4-5", 3.0, 15.0, 0.3, 3.75),
            price("gpt-4", 30.0, 60.0, 0.0, 0.0),
            price("gpt-4.1", 2.0, 8.0, 0.5, 0.0),
            price("gpt-4.1-mini", 0.4, 1.6, 0.1, 0.0),
            price("gpt-4.1", 99.0, 99.0, 99.0, 99.0),
        ])
    }

    #[test]
    fn cost_is_tokens_per_million_times_each_price() {
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 500,
            cache_read_tokens: 20_000,
            cache_write_tokens: 4_000,
        };
        let cost = prices().cost("claude-sonnet-4-5", &usage).expect("priced");
        // 1000*3 + 500*15 + 20000*0.3 + 4000*3.75 = 3000 + 7500 + 6000 + 15000 micro-dollars
        let expected = (1_000.0 * 3.0 + 500.0 * 15.0 + 20_000.0 * 0.3 + 4_000.0 * 3.75) / 1e6;
        assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
        assert!((cost - 0.0315).abs() < 1e-12);
        assert_eq!(prices().cost("gpt-4", &Usage::default()), Some(0.0));
        let m = Usage { input_tokens: 1_000_000, ..Usage::default() };
        assert_eq!(prices().cost("gpt-4.1-mini", &m), Some(0.4));
    }

    #[test]
    fn exact_then_longest_prefix_at_a_version_boundary() {
        let p = prices();
        let input = |model: &str| p.price(model).map(|p| p.input);
        assert_eq!(input("gpt-4.1"), Some(2.0), "exact; the duplicate later entry is ignored");
        assert_eq!(input("claude-sonnet-4-5-20250929"), Some(3.0), "dated variant");
        assert_eq!(input("gpt-4.1-mini-2025-04-14"), Some(0.4), "longest prefix wins");
        assert_eq!(input("gpt-4.1-2025-04-14"), Some(2.0));
        assert_eq!(input("gpt-4-0613"), Some(30.0));
        assert_eq!(input("gpt-4o"), None, "gpt-4 does not price gpt-4o");
        assert_eq!(input("gpt-4.5-preview"), None, "nor gpt-4.5");
        assert_eq!(input("claude-sonnet-4"), None, "a shorter name is not covered by a longer price");
        assert_eq!(input("llama-3"), None);
        assert_eq!(p.cost("llama-3", &Usage { output_tokens: 10, ..Usage::default() }), None);
        let colon = Prices::from_config(&[price("qwen3", 0.1, 0.2, 0.0, 0.0)]);
        assert_eq!(colon.price("qwen3:32b").map(|p| p.output), Some(0.2), "ollama tags");
        assert_eq!(colon.price("qwen30"), None);
        assert_eq!(Prices::from_config(&[]).cost("gpt-4", &Usage::default()), None);
    }
}
