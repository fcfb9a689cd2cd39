//! `[breaker_gateway]`: deployments, model chains, gateway keys, prices and resilience settings.
//!
//! Kept apart from the rest of the configuration because it is the one section with lists of
//! tables (`[[breaker_gateway.deployments]]`, ...). Checked as a whole in [`validate`]: every chain
//! names known deployments, ids are unique, API keys are read from environment variables whose
//! *names* are configured (the keys themselves never enter the configuration or its output).

use serde::{Deserialize, Serialize};

/// Which wire protocol a deployment speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions (`POST {base_url}/v1/chat/completions`), also every
    /// OpenAI-compatible server (vLLM, Ollama, LiteLLM, Azure-style proxies).
    Openai,
    /// Anthropic Messages (`POST {base_url}/v1/messages`).
    Anthropic,
}

/// `[breaker_gateway]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerGatewayConfig {
    /// Share breaker state between gateway replicas through this Redis (`redis://host:6379/0`);
    /// without it, breakers live in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys (several Helix clusters can share one Redis).
    pub redis_key_prefix: String,
    /// Where usage and cost events go; empty means the trace-collector of this configuration.
    pub collector_url: String,
    /// Retries of one deployment before falling back to the next.
    pub max_retries: u32,
    /// Retries may add at most this share of the traffic (0.2 = 20%).
    pub retry_budget: f64,
    /// First backoff; each retry doubles it (with full jitter), capped at `retry_max_backoff_ms`.
    pub retry_base_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    pub connect_timeout_ms: u64,
    /// Time to the upstream's response head (non-streaming: the whole answer).
    pub first_byte_timeout_ms: u64,
    /// Longest silence between two chunks of a stream; a stalled stream is cut and counts as a
    /// failure.
    pub idle_timeout_ms: u64,
    /// Longest time a call may take in all.
    pub total_timeout_ms: u64,
    /// SSE keep-alive comments are sent to a streaming client this often while the upstream is
    /// silent.
    pub keepalive_ms: u64,
    /// Calls in flight per gateway key (project) when its key sets no limit.
    pub max_in_flight_per_key: u32,
    /// Calls in flight per deployment when the deployment sets no limit.
    pub max_in_flight_per_deployment: u32,
    /// Defaults of every deployment's circuit breaker.
    pub breaker: BreakerConfig,
    pub deployments: Vec<DeploymentConfig>,
    pub models: Vec<ModelChainConfig>,
    pub keys: Vec<GatewayKeyConfig>,
    pub prices: Vec<PriceConfig>,
}

impl Default for BreakerGatewayConfig {
    fn default() -> Self {
        BreakerGatewayConfig {
            redis_url: None,
            redis_key_prefix: "helix:breaker".to_owned(),
            collector_url: String::new(),
            max_retries: 2,
            retry_budget: 0.2,
            retry_base_backoff_ms: 200,
            retry_max_backoff_ms: 10_000,
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 120_000,
            idle_timeout_ms: 60_000,
            total_timeout_ms: 600_000,
            keepalive_ms: 10_000,
            max_in_flight_per_key: 64,
            max_in_flight_per_deployment: 128,
            breaker: BreakerConfig::default(),
            deployments: Vec::new(),
            models: Vec::new(),
            keys: Vec::new(),
            prices: Vec::new(),
        }
    }
}

/// `[breaker_gateway.breaker]`: circuit breaker settings (a deployment may override them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// `count` (the last `window_size` calls) or `time` (the last `window_secs` seconds).
    pub window: WindowConfig,
    pub window_size: u32,
    pub window_secs: u64,
    /// Percent of failed calls at which the breaker opens.
    pub failure_rate_threshold: f64,
    /// Percent of slow calls at which the breaker opens.
    pub slow_call_rate_threshold: f64,
    /// A call at least this long is slow.
    pub slow_call_ms: u64,
    /// Calls needed in the window before the rates count.
    pub minimum_calls: u32,
    /// How long the first trip keeps the breaker open; each consecutive trip doubles it.
    pub open_secs: u64,
    pub max_open_secs: u64,
    /// Calls let through, cluster-wide, to test a half-open deployment.
    pub half_open_probes: u32,
    /// Upstream statuses counted as failures (connect errors and timeouts always are).
    pub failure_statuses: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowConfig {
    Count,
    Time,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: WindowConfig::Count,
            window_size: 20,
            window_secs: 60,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_ms: 60_000,
            minimum_calls: 10,
            open_secs: 30,
            max_open_secs: 300,
            half_open_probes: 3,
            failure_statuses: vec![429, 500, 502, 503, 504, 529],
        }
    }
}

/// `[[breaker_gateway.deployments]]`: one upstream model at one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Unique id, used in `/v1/circuits` and the `x-helix-deployment` header.
    pub id: String,
    pub provider: ProviderKind,
    /// Without the `/v1` suffix, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    /// The model name the upstream expects.
    pub model: String,
    /// Name of the environment variable holding the upstream API key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Calls in flight at once; beyond, the gateway answers 429 or falls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Overrides of `[breaker_gateway.breaker]` for this deployment, key by key: a key it does
    /// not set is the global table's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerOverrides>,
    /// The deployment also serves OpenAI's Responses API (`POST {base_url}/v1/responses`, as
    /// OpenAI does): Responses calls are passed through to it as they came instead of being
    /// translated to Chat Completions (OpenAI-protocol deployments only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub responses_api: bool,
}

/// `[breaker_gateway.deployments.breaker]`: the keys of [`BreakerConfig`], each optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_rate_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_calls: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_probes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_statuses: Option<Vec<u16>>,
}

impl BreakerOverrides {
    /// `base` with the keys set here replaced.
    pub fn over(&self, base: &BreakerConfig) -> BreakerConfig {
        let b = base.clone();
        BreakerConfig {
            window: self.window.unwrap_or(b.window),
            window_size: self.window_size.unwrap_or(b.window_size),
            window_secs: self.window_secs.unwrap_or(b.window_secs),
            failure_rate_threshold: self.failure_rate_threshold.unwrap_or(b.failure_rate_threshold),
            slow_call_rate_threshold: self.slow_call_rate_threshold.unwrap_or(b.slow_call_rate_threshold),
            slow_call_ms: self.slow_call_ms.unwrap_or(b.slow_call_ms),
            minimum_calls: self.minimum_calls.unwrap_or(b.minimum_calls),
            open_secs: self.open_secs.unwrap_or(b.open_secs),
            max_open_secs: self.max_open_secs.unwrap_or(b.max_open_secs),
            half_open_probes: self.half_open_probes.unwrap_or(b.half_open_probes),
            failure_statuses: self.failure_statuses.clone().unwrap_or(b.failure_statuses),
        }
    }
}

/// `[[breaker_gateway.models]]`: a model name clients use and the deployments that serve it, in
/// order of preference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelChainConfig {
    pub name: String,
    pub chain: Vec<String>,
}

/// `[[breaker_gateway.keys]]`: a gateway key and the project it bills to. With no keys
/// configured, the gateway accepts any request as project `default`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayKeyConfig {
    /// Name of the environment variable holding the key clients send.
    pub key_env: String,
    pub project: String,
    /// USD per UTC day; once spent, calls get 429 until the next day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_budget_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// `[[breaker_gateway.prices]]`: USD per million tokens of one upstream model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub model: String,
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
}

impl BreakerGatewayConfig {
    /// The chain serving `model`: its configured chain, or a deployment of that id alone.
    pub fn chain(&self, model: &str) -> Option<Vec<&DeploymentConfig>> {
        let find = |id: &str| self.deployments.iter().find(|d| d.id == id);
        match self.models.iter().find(|m| m.name == model) {
            Some(m) => m.chain.iter().map(|id| find(id)).collect(),
            None => find(model).map(|d| vec![d]),
        }
    }

    /// The breaker settings of a deployment.
    pub fn breaker_of(&self, d: &DeploymentConfig) -> BreakerConfig {
        match &d.breaker {
            Some(o) => o.over(&self.breaker),
            None => self.breaker.clone(),
        }
    }

    /// Checks what serde cannot: references, uniqueness and ranges. Errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: String, m: String| Err((k, m));
        let mut ids = std::collections::HashSet::new();
        for (i, d) in self.deployments.iter().enumerate() {
            let key = |f: &str| format!("breaker_gateway.deployments[{i}].{f}");
            if d.id.trim().is_empty() {
                return err(key("id"), "must not be empty".to_owned());
            }
            if !ids.insert(d.id.as_str()) {
                return err(key("id"), format!("{:?} is used by another deployment", d.id));
            }
            if !(d.base_url.starts_with("http://") || d.base_url.starts_with("https://")) {
                return err(key("base_url"), format!("{:?} is not an http(s) URL", d.base_url));
            }
            if d.model.trim().is_empty() {
                return err(key("model"), "must not be empty".to_owned());
            }
            if d.breaker.is_some() {
                self.breaker_of(d).validate(&key("breaker"))?;
            }
            if d.responses_api && d.provider != ProviderKind::Openai {
                return err(
                    key("responses_api"),
                    "only an `openai` deployment can serve the Responses API".to_owned(),
                );
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            let key = |f: &str| format!("breaker_gateway.models[{i}].{f}");
            if m.chain.is_empty() {
                return err(key("chain"), "must name at least one deployment".to_owned());
            }
            if let Some(bad) = m.chain.iter().find(|id| !ids.contains(id.as_str())) {
                return err(key("chain"), format!("no deployment with id {bad:?}"));
            }
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.daily_budget_usd.is_some_and(|b| !(b >= 0.0 && b.is_finite())) {
                return err(
                    format!("breaker_gateway.keys[{i}].daily_budget_usd"),
                    "must be a non-negative number".to_owned(),
                );
            }
        }
        for (i, p) in self.prices.iter().enumerate() {
            if [p.input, p.output, p.cache_read, p.cache_write].iter().any(|v| !(*v >= 0.0 && v.is_finite()))
            {
                return err(
                    format!("breaker_gateway.prices[{i}]"),
                    "prices must be non-negative numbers".to_owned(),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.retry_budget) {
            return err(
                "breaker_gateway.retry_budget".to_owned(),
                format!("{} is not within 0..1", self.retry_budget),
            );
        }
        if self.max_retries > 10 {
            return err(
                "breaker_gateway.max_retries".to_owned(),
                format!("{} is above the maximum of 10", self.max_retries),
            );
        }
        self.breaker.validate("breaker_gateway.breaker")
    }
}

impl BreakerConfig {
    fn validate(&self, at: &str) -> Result<(), (String, String)> {
        for (name, v) in [
            ("failure_rate_threshold", self.failure_rate_threshold),
            ("slow_call_rate_threshold", self.slow_call_rate_threshold),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err((format!("{at}.{name}"), format!("{v} is not a percentage (0..100)")));
            }
        }
        if self.window_size == 0 {
            return Err((format!("{at}.window_size"), "must be at least 1".to_owned()));
        }
        if self.window_secs == 0 {
            return Err((format!("{at}.window_secs"), "must be at least 1".to_owned()));
        }
        if self.half_open_probes == 0 {
            return Err((format!("{at}.half_open_probes"), "must be at least 1".to_owned()));
        }
        if self.max_open_secs < self.open_secs {
            return Err((format!("{at}.max_open_secs"), "must not be below open_secs".to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BreakerGatewayConfig {
        toml::from_str(text).expect("parse")
    }

    #[test]
    fn a_deployments_breaker_table_inherits_the_global_one_key_by_key() {
        let c = parse(
            r#"
            [breaker]
            open_secs = 4
            minimum_calls = 2
            [[deployments]]
            id = "a"
            provider = "openai"
            base_url = "http://127.0.0.1:9"
            model = "m"
            [deployments.breaker]
            failure_rate_threshold = 20.0
            [[deployments]]
            id = "b"
            provider = "openai"
            base_url = "http://127.0.0.1:9"
            model = "m"
            "#,
        );
        c.validate().expect("valid");
        let a = c.breaker_of(&c.deployments[0]);
        assert_eq!((a.open_secs, a.minimum_calls, a.failure_rate_threshold), (4, 2, 20.0));
        assert_eq!(a.window_size, BreakerConfig::default().window_size, "unset everywhere: the default");
        assert_eq!(c.breaker_of(&c.deployments[1]), c.breaker);
        // the merged table is validated, under the deployment's key
        let mut bad = c.clone();
        bad.deployments[0].breaker.as_mut().expect("overrides").max_open_secs = Some(1);
        assert_eq!(
            bad.validate().expect_err("below open_secs").0,
            "breaker_gateway.deployments[0].breaker.max_open_secs"
        );
        let unknown: Result<BreakerGatewayConfig, _> = toml::from_str(
            "[[deployments]]\nid = \"a\"\nprovider = \"openai\"\nbase_url = \"http://x\"\nmodel = \"m\"\n[deployments.breaker]\nopen_sec = 1\n",
        );
        assert!(unknown.expect_err("unknown key").to_string().contains("open_sec"));
    }

    #[test]
    fn chains_resolve_and_bad_references_name_the_key() {
        let c = parse(
            r#"
            [[deployments]]
            id = "a"
            provider = "anthropic"
            base_url = "https://api.anthropic.com"
            model = "claude-sonnet-4-5"
            api_key_env = "ANTHROPIC_API_KEY"
            [[deployments]]
            id = "o"
            provider = "openai"
            base_url = "http://127.0.0.1:9"
            model = "gpt-4.1"
            [[models]]
            name = "smart"
            chain = ["a", "o"]
            "#,
        );
        c.validate().expect("valid");
        let ids: Vec<&str> = c.chain("smart").expect("chain").iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "o"]);
        assert_eq!(c.chain("o").expect("a deployment is its own chain").len(), 1);
        assert!(c.chain("nope").is_none());

        let mut bad = c.clone();
        bad.models[0].chain.push("missing".to_owned());
        let (key, message) = bad.validate().expect_err("unknown deployment");
        assert_eq!(key, "breaker_gateway.models[0].chain");
        assert!(message.contains("missing"));
        let mut dup = c.clone();
        dup.deployments[1].id = "a".to_owned();
        assert_eq!(dup.validate().expect_err("duplicate").0, "breaker_gateway.deployments[1].id");
        let mut pct = c;
        pct.breaker.failure_rate_threshold = 150.0;
        assert_eq!(pct.validate().expect_err("range").0, "breaker_gateway.breaker.failure_rate_threshold");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = toml::from_str::<BreakerGatewayConfig>(
            "[[deployments]]\nid = \"a\"\nprovider = \"openai\"\nbase_url = \"http://x\"\nmodel = \"m\"\napi_key = \"sk-secret\"\n",
        )
        .expect_err("unknown field");
        assert!(e.to_string().contains("api_key"), "{e}");
    }
}
