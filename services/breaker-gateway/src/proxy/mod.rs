//! The proxy: one client call through a chain of deployments.
//!
//! For each deployment of the model's chain, in order: skip it when its bulkhead is full or its
//! breaker rejects, send (translating when the deployment speaks the other protocol), classify the
//! outcome for the breaker, retry the same deployment with backoff while the error is retryable
//! and the retry budget allows, then fall back to the next. The verdicts:
//! - 401, 403 and 404 say the *deployment* is broken (a revoked key, a model it does not have):
//!   a failure for its breaker, no retry on it, fall back at once.
//! - `failure_statuses` (429, 5xx, 529), connect errors and timeouts: a failure, retried with
//!   backoff, then fall back. A `Retry-After` longer than `retry_max_backoff_ms` is not waited
//!   out: the walk moves to the next deployment (and, when none is left, the client gets that
//!   `Retry-After`).
//! - Any other client error (400, 413, 422, ...) was caused by the request: the client's answer,
//!   not the deployment's fault, and it ends the call. Only for a half-open probe it is not
//!   proof of health either: a probe closes the breaker only on a healthy (2xx) answer.
//! - Every upstream attempt after the call's first one, retry or fallback, spends from the retry
//!   budget (a share of traffic), with a floor of [`MIN_RETRY_CONCURRENCY`] concurrent extra
//!   attempts so that low traffic is never refused one (Envoy's `min_retry_concurrency`).
//!
//! Falling back is only possible before anything
//! was sent to the client: a non-streaming answer is complete before it is sent; a stream is
//! committed when its first event arrived, and a failure after that ends it with a well-formed
//! error event in the client's protocol.
//!
//! A streaming client also needs to hear something while the chain is still being walked (a slow
//! first byte, retries with backoff): when no first event came within `keepalive_ms`, the head
//! (200, `text/event-stream`) is sent with a keep-alive comment and the walk goes on behind it.
//! Comments carry no content, so falling back is still possible; only the deployment headers are
//! then unknown and left out, and a final failure becomes an error event instead of an error
//! status.
//!
//! Usage of a stream is known only at its end: a [`ProxyResponse::Stream`] carries a receiver for
//! the final [`CallReport`], which the caller meters from.
//!
//! No actix types here: the routes turn a [`ProxyResponse`] into an HTTP response.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use helix_core::ErrorCode;
use helix_core::gateway_config::{BreakerGatewayConfig, DeploymentConfig, ProviderKind, WindowConfig};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::accounting::metrics::status_class;
use crate::accounting::{Bulkheads, Metrics, Permit};
use crate::breaker::{Admission, BreakerSettings, Breakers, Outcome, WindowKind};
use crate::protocol::{self, Protocol, SseEvent, SseParser, Usage};

mod retry;
mod stream;

pub use retry::MIN_RETRY_CONCURRENCY;
use retry::{FloorSlot, RetryBudget, retry_wait, upstream_retry_after};
use stream::stream_headers;

/// Request headers never forwarded upstream: hop-by-hop, framing, and the client's credentials
/// (the upstream gets the deployment's key instead).
const DROP_REQUEST_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "authorization",
    "x-api-key",
    "cookie",
    "accept-encoding",
    "x-request-id",
];

/// Response headers not passed back: framing is the gateway's own, and the upstream's cookies
/// belong to the gateway's connection, not to the client.
const DROP_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "date",
    "server",
    "set-cookie",
];

/// Chunks buffered between the stream task and a slow client.
const STREAM_BUFFER: usize = 64;

/// A deployment ready to call.
pub struct Deployment {
    pub cfg: DeploymentConfig,
    pub protocol: Protocol,
    /// Read from the environment at start; never logged (see the Debug impl).
    api_key: Option<String>,
    /// The generation endpoint, parsed once (an unparsable `base_url` fails each call, as it
    /// always did).
    url: Result<reqwest::Url, String>,
    /// `base_url` without a trailing `/v1`, for the other endpoints.
    base: String,
    /// Its key in the bulkheads, `deployment:ID`.
    bulkhead_key: String,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("id", &self.cfg.id)
            .field("has_key", &self.api_key.is_some())
            .finish()
    }
}

impl Deployment {
    fn new(cfg: DeploymentConfig, api_key: Option<String>) -> Deployment {
        let protocol = match cfg.provider {
            ProviderKind::Openai => Protocol::OpenAi,
            ProviderKind::Anthropic => Protocol::Anthropic,
        };
        let base = cfg.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let url = match protocol {
            Protocol::OpenAi => format!("{base}/v1/chat/completions"),
            Protocol::Anthropic => format!("{base}/v1/messages"),
        };
        let url = reqwest::Url::parse(&url).map_err(|e| format!("invalid base_url: {e}"));
        let bulkhead_key = format!("deployment:{}", cfg.id);
        let base = base.to_owned();
        Deployment { cfg, protocol, api_key, url, base, bulkhead_key }
    }

    /// The URL of `endpoint` on this deployment.
    fn url_for(&self, endpoint: Endpoint) -> Result<reqwest::Url, String> {
        match endpoint {
            Endpoint::Generate => self.url.clone(),
            other => reqwest::Url::parse(&format!("{}{}", self.base, other.path()))
                .map_err(|e| format!("invalid base_url: {e}")),
        }
    }
}

/// What a call asks of a deployment: a generation (`/v1/chat/completions` or `/v1/messages`,
/// translated across protocols), or an endpoint only deployments of one protocol serve. The walk
/// skips deployments that do not serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endpoint {
    #[default]
    Generate,
    /// `POST /v1/embeddings` (OpenAI protocol).
    Embeddings,
    /// The legacy `POST /v1/completions` (OpenAI protocol).
    Completions,
    /// `POST /v1/messages/count_tokens` (Anthropic protocol).
    CountTokens,
    /// `POST /v1/responses`, on deployments with `responses_api` (see [`ProxyRequest::with_responses`]).
    Responses,
}

impl Endpoint {
    /// Whether a deployment of `protocol` serves it.
    pub fn served_by(self, protocol: Protocol) -> bool {
        match self {
            Endpoint::Generate => true,
            Endpoint::Embeddings | Endpoint::Completions | Endpoint::Responses => {
                protocol == Protocol::OpenAi
            }
            Endpoint::CountTokens => protocol == Protocol::Anthropic,
        }
    }

    /// Its path on a deployment (not for [`Endpoint::Generate`], whose path is the protocol's).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Generate => "",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Completions => "/v1/completions",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
            Endpoint::Responses => "/v1/responses",
        }
    }
}

/// A call as the client made it.
#[derive(Debug)]
pub struct ProxyRequest {
    pub protocol: Protocol,
    /// The body as the client sent it: forwarded as is (its model replaced) when the deployment
    /// speaks the client's protocol and nothing else needs changing.
    pub raw: Bytes,
    /// `model` and `stream`, read from `raw` by the caller (which also checked it is JSON).
    pub head: protocol::RequestHead,
    /// `raw` parsed, for translations and streams: only built when one needs it.
    json: std::sync::OnceLock<Value>,
    /// The client's headers (lowercase names); the forwardable ones go upstream untouched.
    pub headers: Vec<(String, String)>,
    pub endpoint: Endpoint,
    /// A Responses API call as the client sent it, passed through to deployments that serve that
    /// API (`responses_api`); `raw` is then its Chat Completions translation for the others.
    pub responses: Option<Bytes>,
    /// Only such deployments may serve it (it continues a response the gateway did not store).
    pub responses_only: bool,
    /// The Responses call a translated stream is turned back into (its events built in the
    /// stream's pipe from the parsed Chat chunks).
    pub respond_as: Option<protocol::responses::ResponseContext>,
}

impl ProxyRequest {
    /// A request whose body `raw` was read by [`protocol::RequestHead::parse`] into `head`.
    pub fn new(
        protocol: Protocol,
        raw: Bytes,
        head: protocol::RequestHead,
        headers: Vec<(String, String)>,
    ) -> ProxyRequest {
        ProxyRequest {
            protocol,
            raw,
            head,
            json: std::sync::OnceLock::new(),
            headers,
            endpoint: Endpoint::Generate,
            responses: None,
            responses_only: false,
            respond_as: None,
        }
    }

    /// The request for `endpoint` instead of a generation.
    pub fn at(mut self, endpoint: Endpoint) -> ProxyRequest {
        self.endpoint = endpoint;
        self
    }

    /// The body as JSON (`null` if it is not; the caller checked that it is).
    pub fn json(&self) -> &Value {
        self.json.get_or_init(|| serde_json::from_slice(&self.raw).unwrap_or(Value::Null))
    }

    /// The Responses call `raw` (this request being its Chat translation), passed through where a
    /// deployment serves the Responses API; with `only`, nowhere else.
    pub fn with_responses(
        mut self,
        raw: Bytes,
        only: bool,
        ctx: protocol::responses::ResponseContext,
    ) -> ProxyRequest {
        self.responses = Some(raw);
        self.responses_only = only;
        self.respond_as = Some(ctx);
        self
    }

    /// Whether `dep` gets the client's Responses call as it came.
    fn passes_through(&self, dep: &Deployment) -> bool {
        self.responses.is_some() && dep.cfg.responses_api && dep.protocol == Protocol::OpenAi
    }

    /// Whether forwarding to a deployment of `upstream`'s protocol only changes the model: the
    /// same protocol, and not an OpenAI stream (the gateway asks those for their usage).
    fn forwards_as_is(&self, upstream: Protocol) -> bool {
        self.protocol == upstream && !(upstream == Protocol::OpenAi && self.head.stream)
    }
}

/// What the client gets.
pub enum ProxyResponse {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// An SSE stream: `body` yields encoded events and comments; `done` the final report once the
    /// stream has ended (usage included), also when the client went away.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        body: mpsc::Receiver<Bytes>,
        done: oneshot::Receiver<CallReport>,
    },
}

impl std::fmt::Debug for ProxyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyResponse::Full { status, .. } => write!(f, "Full({status})"),
            ProxyResponse::Stream { status, .. } => write!(f, "Stream({status})"),
        }
    }
}

/// The outcome of one call, for metering (usage and cost of what was served) and tracing.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    /// The deployment that answered, or was tried last; for a call every breaker refused, the
    /// first of the chain.
    pub deployment: Option<String>,
    pub provider: Option<ProviderKind>,
    /// The model the deployment calls (what prices apply to).
    pub upstream_model: Option<String>,
    /// The first deployment of the chain, when another one answered.
    pub fallback_from: Option<String>,
    /// Attempts on `deployment` (1 without retries).
    pub attempts: u32,
    /// The status the client got (200 for a stream whose head was sent).
    pub status: u16,
    /// The upstream's status; `None` when no answer came (connect error, timeout, all open).
    pub upstream_status: Option<u16>,
    pub usage: Option<Usage>,
    /// Why the call failed, briefly (no prompt, no key, no upstream body); for a stream also a
    /// failure after it started.
    pub error: Option<String>,
    pub streaming: bool,
    /// The answer is the Responses API's own (passed through), not a Chat Completions answer.
    pub passthrough: bool,
    /// A translated Responses stream that completed: its output items (for the store).
    pub responses_output: Option<Vec<Value>>,
    /// Time spent waiting for upstreams and between retries, up to the answer's head: the rest
    /// is the gateway's own overhead.
    pub upstream_time: Duration,
}

impl CallReport {
    fn served_by(&mut self, dep: &Deployment, attempts: u32, fallback_from: Option<String>) {
        self.deployment = Some(dep.cfg.id.clone());
        self.provider = Some(dep.cfg.provider);
        self.upstream_model = Some(dep.cfg.model.clone());
        self.fallback_from = fallback_from;
        self.attempts = attempts;
    }
}

/// The proxy's shared parts.
#[derive(Debug)]
pub struct Proxy {
    pub cfg: BreakerGatewayConfig,
    pub deployments: HashMap<String, Arc<Deployment>>,
    /// The chain of every model name, and of every deployment id (a chain of one).
    chains: HashMap<String, Arc<[Arc<Deployment>]>>,
    /// Chains whose name is a glob (`claude-*`, `gpt-5?`), most specific (longest) first; tried
    /// when no name matches exactly.
    globs: Vec<(String, Arc<[Arc<Deployment>]>)>,
    pub breakers: Breakers,
    /// Calls in flight per deployment (`deployment:ID`); the routes add projects (`project:NAME`)
    /// to the same structure.
    pub bulkheads: Arc<Bulkheads>,
    /// Upstream calls, retries, fallbacks and refusals are counted here.
    pub metrics: Arc<Metrics>,
    http: Upstream,
    budget: RetryBudget,
    /// The upstream keys, masked wherever upstream text is relayed (an upstream error that
    /// echoes the key it was sent must not hand it to the client).
    keys: helix_core::redact::Masker,
}

/// `text` with the known `keys` and anything else credential-shaped masked.
fn redact_with<'a>(keys: &helix_core::redact::Masker, text: &'a str) -> std::borrow::Cow<'a, str> {
    match keys.mask(text) {
        std::borrow::Cow::Borrowed(t) => helix_core::redact::key_like(t),
        std::borrow::Cow::Owned(t) => std::borrow::Cow::Owned(helix_core::redact::key_like(&t).into_owned()),
    }
}

/// The HTTP clients for upstream calls: one per thread that makes them.
///
/// A client's pooled connections are driven by tasks on the runtime that opened them. Actix runs
/// one single-threaded runtime per worker, so with one shared client a call on one worker often
/// got a connection whose task lived on the other: every request and every answer then crossed
/// threads (two wake-ups and context switches per call, which on a loaded machine cost more than
/// the proxying itself). A client per thread keeps a call and its connection on one thread; the
/// price is a connection pool per worker.
struct Upstream {
    connect_timeout: Duration,
    /// Identifies this proxy's clients in the per-thread cache; clients of proxies that are gone
    /// are dropped from it on the next lookup.
    token: Arc<()>,
    /// For a thread whose own client cannot be built (never seen; building once worked).
    shared: reqwest::Client,
}

thread_local! {
    static CLIENTS: std::cell::RefCell<Vec<(std::sync::Weak<()>, reqwest::Client)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Upstream {
    fn new(connect_timeout: Duration) -> reqwest::Result<Upstream> {
        let shared = Upstream::build(connect_timeout)?;
        Ok(Upstream { connect_timeout, token: Arc::new(()), shared })
    }

    // The gateway retries and falls back itself (with its own budget), so reqwest's retries are
    // off; that also saves the copy of every request reqwest keeps for a retry.
    fn build(connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .build()
    }

    /// This thread's client (a cheap handle).
    fn client(&self) -> reqwest::Client {
        CLIENTS.with(|cell| {
            let Ok(mut clients) = cell.try_borrow_mut() else { return self.shared.clone() };
            let mine = Arc::as_ptr(&self.token);
            if let Some((_, c)) = clients.iter().find(|(t, _)| t.as_ptr() == mine) {
                return c.clone();
            }
            clients.retain(|(t, _)| t.strong_count() > 0);
            let client = Upstream::build(self.connect_timeout).unwrap_or_else(|_| self.shared.clone());
            clients.push((Arc::downgrade(&self.token), client.clone()));
            client
        })
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("connect_timeout", &self.connect_timeout).finish_non_exhaustive()
    }
}

/// Maps the configuration onto a breaker's settings.
pub fn breaker_settings(
    c: &helix_core::gateway_config::BreakerConfig,
    total_timeout: Duration,
) -> BreakerSettings {
    BreakerSettings {
        window: match c.window {
            WindowConfig::Count => WindowKind::Count(c.window_size),
            WindowConfig::Time => WindowKind::Time(Duration::from_secs(c.window_secs)),
        },
        failure_rate_threshold: c.failure_rate_threshold,
        slow_call_rate_threshold: c.slow_call_rate_threshold,
        slow_call_duration: Duration::from_millis(c.slow_call_ms),
        minimum_calls: c.minimum_calls,
        open_duration: Duration::from_secs(c.open_secs),
        max_open_duration: Duration::from_secs(c.max_open_secs),
        half_open_probes: c.half_open_probes,
        // a probe may legitimately run as long as a call may
        probe_lease: Some(total_timeout.max(Duration::from_secs(60))),
        // a client waiting on a probe looks again soon, not when a long call's lease expires
        probe_wait: Some(PROBE_WAIT),
    }
}

/// The longest Retry-After told to a client while a deployment's probes are out.
pub const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Why one attempt failed.
enum Failure {
    /// The upstream answered with an error status (or a stream began with an error event):
    /// (status, headers, body).
    Status(u16, Vec<(String, String)>, Bytes),
    /// No usable answer (connect error, timeout, invalid body).
    Transport(String),
    /// The request cannot be expressed in the deployment's protocol; not the deployment's fault.
    Untranslatable(String),
}

impl Failure {
    /// For the log line of a fallback (never a body: it may echo what the client sent).
    fn describe(&self) -> String {
        match self {
            Failure::Status(status, _, _) => format!("upstream answered {status}"),
            Failure::Transport(e) => e.clone(),
            Failure::Untranslatable(e) => format!("cannot translate the request: {e}"),
        }
    }
}

/// Where the walk along the chain ended.
enum Walked {
    /// A complete answer: the upstream's (success or client error) or the gateway's own error.
    Answer { status: u16, headers: Vec<(String, String)>, body: Bytes },
    /// A stream whose first event arrived: committed to its deployment.
    Stream(Box<StreamStart>),
}

/// A stream committed to a deployment, before its events are piped to the client.
struct StreamStart {
    dep: Arc<Deployment>,
    status: u16,
    headers: Vec<(String, String)>,
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    /// Events read while waiting for the first one (at least one).
    pending: Vec<SseEvent>,
    probe: bool,
    /// When the attempt began (the breaker judges its whole duration).
    started: Instant,
    /// The deployment's bulkhead slot, held until the stream ends.
    _permit: Permit,
}

/// What one call needs along the way.
struct Call {
    req: ProxyRequest,
    /// The model the client asked for.
    model: String,
    chain: Arc<[Arc<Deployment>]>,
    stream: bool,
    deadline: Instant,
}

impl Proxy {
    /// Builds the proxy; `env` gives the upstream keys (by the variable names in the config).
    /// Errors name the deployment and the variable, never a value.
    pub fn new(cfg: BreakerGatewayConfig, env: impl Fn(&str) -> Option<String>) -> Result<Proxy, String> {
        let total = Duration::from_millis(cfg.total_timeout_ms);
        let mut deployments = HashMap::new();
        let mut settings = Vec::new();
        for d in &cfg.deployments {
            let api_key = match &d.api_key_env {
                Some(var) => Some(env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    format!("deployment {:?}: environment variable {var} (its api key) is not set", d.id)
                })?),
                None => None,
            };
            settings.push((d.id.clone(), breaker_settings(&cfg.breaker_of(d), total)));
            deployments.insert(d.id.clone(), Arc::new(Deployment::new(d.clone(), api_key)));
        }
        let keys = helix_core::redact::Masker::new(deployments.values().filter_map(|d| d.api_key.clone()));
        let mut chains: HashMap<String, Arc<[Arc<Deployment>]>> = HashMap::new();
        let names = cfg.models.iter().map(|m| &m.name).chain(cfg.deployments.iter().map(|d| &d.id));
        for name in names {
            if chains.contains_key(name) {
                continue;
            }
            if let Some(chain) = cfg.chain(name) {
                let chain: Vec<Arc<Deployment>> =
                    chain.iter().filter_map(|d| deployments.get(&d.id).cloned()).collect();
                chains.insert(name.clone(), Arc::from(chain));
            }
        }
        let mut globs: Vec<(String, Arc<[Arc<Deployment>]>)> = chains
            .iter()
            .filter(|(name, _)| name.contains(['*', '?']))
            .map(|(name, chain)| (name.clone(), chain.clone()))
            .collect();
        globs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let http = Upstream::new(Duration::from_millis(cfg.connect_timeout_ms))
            .map_err(|e| format!("cannot build the upstream client: {e}"))?;
        let breakers = Breakers::new(settings, cfg.redis_url.clone(), cfg.redis_key_prefix.clone());
        let budget = RetryBudget::new(cfg.retry_budget);
        Ok(Proxy {
            cfg,
            deployments,
            chains,
            globs,
            breakers,
            bulkheads: Arc::new(Bulkheads::new()),
            metrics: Arc::new(Metrics::new()),
            http,
            budget,
            keys,
        })
    }

    /// Upstream text as it may be relayed: the configured upstream keys and anything else that
    /// looks like a credential masked.
    /// The chain serving `model`: the one of that exact name, else the most specific glob that
    /// matches it.
    pub fn chain_of(&self, model: &str) -> Option<Arc<[Arc<Deployment>]>> {
        self.chains.get(model).cloned().or_else(|| {
            self.globs.iter().find(|(pattern, _)| glob_matches(pattern, model)).map(|(_, c)| c.clone())
        })
    }

    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        redact_with(&self.keys, text)
    }

    /// [`Proxy::redact`] of a body (bytes that are not UTF-8 get the known keys masked only).
    pub fn redact_body(&self, body: Bytes) -> Bytes {
        match std::str::from_utf8(&body) {
            Ok(text) => match self.redact(text) {
                std::borrow::Cow::Borrowed(_) => body,
                std::borrow::Cow::Owned(t) => Bytes::from(t),
            },
            Err(_) => Bytes::from(self.keys.mask_bytes(&body)),
        }
    }

    /// An error the gateway produces itself, in the client's protocol, with `code`'s status.
    fn error(protocol: Protocol, code: ErrorCode, message: &str, extra: Vec<(String, String)>) -> Walked {
        let body = protocol::error_body(protocol, code.status(), code.as_str(), message);
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        headers.extend(extra);
        Walked::Answer { status: code.status(), headers, body: Bytes::from(body.to_string()) }
    }

    fn keepalive(&self) -> Duration {
        Duration::from_millis(self.cfg.keepalive_ms.max(10))
    }

    /// Serves one client call. The report says what was served (for metering); for a
    /// [`ProxyResponse::Stream`] it is what was known when the head was sent, and the final one
    /// (usage, failures after the start, and the deployment when the head had to be sent early)
    /// arrives on the stream's `done` receiver.
    pub async fn handle(self: &Arc<Self>, req: ProxyRequest) -> (ProxyResponse, CallReport) {
        let protocol = req.protocol;
        let stream = req.head.stream;
        let report = CallReport { streaming: stream, ..CallReport::default() };
        let Some(model) = req.head.model.clone() else {
            let answer =
                Proxy::error(protocol, ErrorCode::InvalidRequest, "the request has no model", vec![]);
            return (full(answer), CallReport { status: 400, ..report });
        };
        let Some(chain) = self.chain_of(&model) else {
            let msg = format!("model {model:?} is not configured on this gateway");
            let answer = Proxy::error(protocol, ErrorCode::NotFound, &msg, vec![]);
            return (full(answer), CallReport { status: 404, ..report });
        };
        if !chain.iter().any(|d| req.endpoint.served_by(d.protocol)) {
            let kind = if req.endpoint == Endpoint::CountTokens { "Anthropic" } else { "OpenAI" };
            let msg = format!(
                "no deployment of {model:?} serves {} (only {kind}-protocol deployments do)",
                req.endpoint.path()
            );
            let answer = Proxy::error(protocol, ErrorCode::InvalidRequest, &msg, vec![]);
            return (full(answer), CallReport { status: 400, ..report });
        }
        self.budget.earn();
        let deadline = Instant::now() + Duration::from_millis(self.cfg.total_timeout_ms);
        let call = Arc::new(Call { req, model, chain, stream, deadline });

        if !stream {
            let (walked, report) = self.clone().walk(call.clone(), report).await;
            return match walked {
                Walked::Answer { .. } => (full(walked), report),
                // a stream is only started for a streaming request
                Walked::Stream(_) => {
                    let answer = Proxy::error(protocol, ErrorCode::Internal, "unexpected stream", Vec::new());
                    (full(answer), CallReport { status: 500, ..report })
                }
            };
        }

        let began = Instant::now();
        let mut walk = Box::pin(self.clone().walk(call.clone(), report));
        tokio::select! {
            biased;
            (walked, report) = &mut walk => match walked {
                Walked::Answer { .. } => (full(walked), report),
                Walked::Stream(start) => {
                    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                    let (done_tx, done_rx) = oneshot::channel();
                    let mut headers =
                        helix_headers(&start.dep.cfg.id, report.fallback_from.as_deref());
                    let own = stream_headers();
                    headers.extend(
                        start.headers.iter().filter(|(k, _)| own.iter().all(|(o, _)| o != k)).cloned(),
                    );
                    headers.extend(own);
                    let status = start.status;
                    tokio::spawn(self.clone().pipe(start, call, tx, report.clone(), done_tx));
                    (ProxyResponse::Stream { status, headers, body: rx, done: done_rx }, report)
                }
            },
            () = tokio::time::sleep(self.keepalive()) => {
                // nothing to send yet: commit the head and keep the client company
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                let (done_tx, done_rx) = oneshot::channel();
                tokio::spawn(self.clone().walk_behind_head(walk, call, tx, done_tx));
                // all of the time so far was spent waiting for upstreams
                let report = CallReport {
                    streaming: true,
                    status: 200,
                    upstream_time: began.elapsed(),
                    ..CallReport::default()
                };
                let head = stream_headers();
                (ProxyResponse::Stream { status: 200, headers: head, body: rx, done: done_rx }, report)
            }
        }
    }

    /// Finishes a walk whose stream head was already sent: keep-alives until it ends, then the
    /// stream, or its failure as an error event.
    async fn walk_behind_head(
        self: Arc<Self>,
        mut walk: std::pin::Pin<Box<impl Future<Output = (Walked, CallReport)> + Send>>,
        call: Arc<Call>,
        tx: mpsc::Sender<Bytes>,
        done: oneshot::Sender<CallReport>,
    ) {
        let keepalive = self.keepalive();
        let comment = || Bytes::from(protocol::sse::comment("keep-alive"));
        let gone = || CallReport {
            streaming: true,
            status: 200,
            error: Some("the client went away before the answer started".to_owned()),
            ..CallReport::default()
        };
        if tx.send(comment()).await.is_err() {
            let _ = done.send(gone());
            return;
        }
        let (walked, mut report) = loop {
            tokio::select! {
                out = &mut walk => break out,
                () = tokio::time::sleep(keepalive) => {
                    if tx.send(comment()).await.is_err() {
                        // dropping the walk cancels it
                        let _ = done.send(gone());
                        return;
                    }
                }
            }
        };
        match walked {
            Walked::Stream(start) => self.pipe(start, call, tx, report, done).await,
            Walked::Answer { status, body, .. } => {
                let json = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
                let message = protocol::error_message(&json).map_or_else(
                    || format!("upstream returned status {status}"),
                    |m| self.redact(m).into_owned(),
                );
                let error = json.get("error");
                let code = error
                    .and_then(|e| e.get("code").or_else(|| e.get("type")))
                    .and_then(Value::as_str)
                    .unwrap_or(ErrorCode::UpstreamFailed.as_str());
                let _ = tx.send(stream::error_event(&call.req, status, code, &message)).await;
                report.status = 200;
                report.error.get_or_insert(message);
                let _ = done.send(report);
            }
        }
    }

    /// Walks the chain until a deployment answers (see the module docs).
    async fn walk(self: Arc<Self>, call: Arc<Call>, mut report: CallReport) -> (Walked, CallReport) {
        let req = &call.req;
        let first = call.chain.first().map(|d| d.cfg.id.clone());
        let mut soonest_retry: Option<Duration> = None;
        let mut full = false;
        let mut last_failure: Option<(Arc<Deployment>, u32, Failure)> = None;
        // upstream attempts of this call, and the floor places its extra ones hold
        let mut made = 0u32;
        let mut floor_slots: Vec<FloorSlot> = Vec::new();

        'chain: for (index, dep) in call.chain.iter().enumerate() {
            if !req.endpoint.served_by(dep.protocol) || (req.responses_only && !req.passes_through(dep)) {
                continue;
            }
            let upstream_body = match self.upstream_body(req, dep) {
                Ok(b) => b,
                Err(e) => {
                    // a failure of another deployment says more than this one
                    if last_failure.is_none() {
                        last_failure = Some((dep.clone(), 0, Failure::Untranslatable(e)));
                    }
                    continue;
                }
            };
            let fallback_from = first.clone().filter(|f| *f != dep.cfg.id);
            let mut attempt = 0u32;
            loop {
                if attempt == 0 && made > 0 {
                    // a fallback after a failed attempt is an extra attempt like a retry (asked
                    // before the breaker, whose probe admission could not be handed back)
                    match self.budget.admit() {
                        Some(slot) => floor_slots.extend(slot),
                        None => {
                            self.metrics.rejected("retry_budget");
                            tracing::info!(deployment = %dep.cfg.id, "no fallback: the retry budget is spent");
                            break 'chain;
                        }
                    }
                }
                let limit = dep.cfg.max_in_flight.unwrap_or(self.cfg.max_in_flight_per_deployment);
                let Some(permit) = self.bulkheads.try_enter(&dep.bulkhead_key, limit) else {
                    full = true;
                    break;
                };
                let probe = match self.breakers.acquire(&dep.cfg.id).await {
                    Admission::Allowed { probe } => probe,
                    Admission::Rejected { retry_after } => {
                        soonest_retry = Some(soonest_retry.map_or(retry_after, |s| s.min(retry_after)));
                        break;
                    }
                };
                if attempt == 0 && index > 0 {
                    let from = &call.chain[index - 1].cfg.id;
                    self.metrics.fallback(from, &dep.cfg.id);
                    let why = last_failure.as_ref().map_or_else(
                        || "unavailable (breaker open or bulkhead full)".to_owned(),
                        |(_, _, f)| f.describe(),
                    );
                    tracing::warn!(from = %from, to = %dep.cfg.id, reason = %why, "falling back");
                }
                attempt += 1;
                made += 1;
                let t = Instant::now();
                let sent = self.send(req, dep, &upstream_body, call.deadline).await;
                let failure = match sent {
                    Ok(res) if res.status().is_success() => {
                        let status = res.status().as_u16();
                        let headers = pass_headers(res.headers());
                        let read = if call.stream {
                            self.first_event(dep, req.passes_through(dep), res, call.deadline).await.map(
                                |(upstream, parser, pending)| {
                                    Walked::Stream(Box::new(StreamStart {
                                        dep: dep.clone(),
                                        status,
                                        headers,
                                        upstream,
                                        parser,
                                        pending,
                                        probe,
                                        started: t,
                                        _permit: permit,
                                    }))
                                },
                            )
                        } else {
                            self.read_full(req, dep, &call.model, res, call.deadline).await.map(
                                |(body, usage)| {
                                    report.usage = usage;
                                    let h =
                                        json_answer_headers(&dep.cfg.id, fallback_from.as_deref(), headers);
                                    Walked::Answer { status, headers: h, body }
                                },
                            )
                        };
                        report.upstream_time += t.elapsed();
                        match read {
                            Ok(walked) => {
                                if !call.stream {
                                    // a stream's outcome is recorded when it ends
                                    self.record(dep, probe, false, t.elapsed(), Some(status)).await;
                                }
                                report.served_by(dep, attempt, fallback_from);
                                report.status = status;
                                report.upstream_status = Some(status);
                                report.passthrough = req.passes_through(dep);
                                return (walked, report);
                            }
                            Err(f) => {
                                self.record(dep, probe, true, t.elapsed(), None).await;
                                f
                            }
                        }
                    }
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let headers = pass_headers(res.headers());
                        let body = tokio::time::timeout(remaining(call.deadline), res.bytes())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default();
                        report.upstream_time += t.elapsed();
                        // the deployment itself is broken: its key, its model
                        let broken = matches!(status, 401 | 403 | 404);
                        let counts =
                            broken || self.cfg.breaker_of(&dep.cfg).failure_statuses.contains(&status);
                        // a probe closes the breaker only on a healthy answer: a client error
                        // proves nothing, so it is no success
                        self.record(dep, probe, counts || probe, t.elapsed(), Some(status)).await;
                        if !counts {
                            // the client's own error (or one we do not retry): its answer, in its protocol
                            let h = json_answer_headers(&dep.cfg.id, fallback_from.as_deref(), headers);
                            report.served_by(dep, attempt, fallback_from);
                            report.status = status;
                            report.upstream_status = Some(status);
                            report.error = Some(format!("upstream answered {status}"));
                            let body = client_error_body(req, dep, status, &body);
                            return (Walked::Answer { status, headers: h, body }, report);
                        }
                        if broken {
                            tracing::warn!(deployment = %dep.cfg.id, status, "the deployment refuses calls (key or model): falling back");
                            last_failure =
                                Some((dep.clone(), attempt, Failure::Status(status, headers, body)));
                            break;
                        }
                        Failure::Status(status, headers, body)
                    }
                    Err(e) => {
                        report.upstream_time += t.elapsed();
                        self.record(dep, probe, true, t.elapsed(), None).await;
                        Failure::Transport(e)
                    }
                };
                let wait = retry_wait(&failure, attempt, &self.cfg);
                if let Some(hint) = upstream_retry_after(&failure) {
                    soonest_retry = Some(soonest_retry.map_or(hint, |s| s.min(hint)));
                }
                last_failure = Some((dep.clone(), attempt, failure));
                // a wait longer than the backoff cap is not waited out here: on to the next
                let Some(wait) = wait else { break };
                let retry = attempt <= self.cfg.max_retries
                    && Instant::now() + wait < call.deadline
                    && match self.budget.admit() {
                        Some(slot) => {
                            floor_slots.extend(slot);
                            true
                        }
                        None => false,
                    };
                if !retry {
                    break;
                }
                self.metrics.retry(&dep.cfg.id);
                tracing::debug!(deployment = %dep.cfg.id, attempt, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
                report.upstream_time += wait;
            }
        }

        let model = &call.model;
        let walked = match last_failure {
            Some((dep, attempts, Failure::Status(status @ (401 | 403 | 404), _, body))) => {
                // the gateway's credentials or model were refused, not the client's: a gateway
                // failure, never the upstream's 401 (which would blame the client's key)
                report.served_by(&dep, attempts, first.clone().filter(|f| *f != dep.cfg.id));
                report.upstream_status = Some(status);
                // the upstream's own words help (masked: an error may echo the key it was sent)
                let said = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().or(v["message"].as_str()).map(str::to_owned))
                    .map(|m| {
                        let m: String = self.redact(&m).chars().take(500).collect();
                        format!(": {m}")
                    })
                    .unwrap_or_default();
                let msg = format!(
                    "no deployment of {model:?} answered: {} refused the call ({status}: its key or model is not accepted){said}",
                    dep.cfg.id
                );
                report.error = Some(msg.clone());
                Proxy::error(req.protocol, ErrorCode::UpstreamFailed, &msg, vec![])
            }
            Some((dep, attempts, Failure::Status(status, headers, body))) => {
                // every deployment failed: the last upstream answer, in the client's protocol
                report.served_by(&dep, attempts, first.clone().filter(|f| *f != dep.cfg.id));
                report.status = status;
                report.upstream_status = Some(status);
                report.error = Some(format!("upstream answered {status}"));
                let body = client_error_body(req, &dep, status, &body);
                let h = json_answer_headers(&dep.cfg.id, None, headers);
                Walked::Answer { status, headers: h, body }
            }
            Some((dep, attempts, Failure::Transport(e))) => {
                report.served_by(&dep, attempts, first.clone().filter(|f| *f != dep.cfg.id));
                let msg = format!("no deployment of {model:?} answered: {e}");
                report.error = Some(msg.clone());
                Proxy::error(req.protocol, ErrorCode::UpstreamFailed, &msg, vec![])
            }
            Some((dep, _, Failure::Untranslatable(e))) => {
                report.served_by(&dep, 0, None);
                let msg = format!("the request cannot be served by deployment {:?}: {e}", dep.cfg.id);
                report.error = Some(msg.clone());
                Proxy::error(req.protocol, ErrorCode::InvalidRequest, &msg, vec![])
            }
            None => {
                if let Some(dep) = call.chain.first() {
                    report.served_by(dep, 0, None);
                }
                if full {
                    // a bulkhead frees up as soon as one call ends
                    self.metrics.rejected("bulkhead");
                    let msg = format!(
                        "every deployment of {model:?} has as many calls in flight as it allows; retry in 1s"
                    );
                    report.error = Some(msg.clone());
                    Proxy::error(
                        req.protocol,
                        ErrorCode::ConcurrencyLimit,
                        &msg,
                        vec![("retry-after".to_owned(), "1".to_owned())],
                    )
                } else {
                    // every breaker of the chain is open: fail fast
                    self.metrics.rejected("breaker_open");
                    let secs =
                        soonest_retry.unwrap_or(Duration::from_secs(1)).as_secs_f64().ceil().max(1.0) as u64;
                    let msg = format!(
                        "every deployment of {model:?} is unavailable (circuit open); retry in {secs}s"
                    );
                    report.error = Some(msg.clone());
                    Proxy::error(
                        req.protocol,
                        ErrorCode::CircuitOpen,
                        &msg,
                        vec![("retry-after".to_owned(), secs.to_string())],
                    )
                }
            }
        };
        if let Walked::Answer { status, .. } = &walked {
            report.status = *status;
        }
        (walked, report)
    }

    /// Reports an attempt's outcome to the breaker and the metrics.
    async fn record(
        &self,
        dep: &Deployment,
        probe: bool,
        failure: bool,
        took: Duration,
        status: Option<u16>,
    ) {
        self.breakers.report(&dep.cfg.id, probe, Outcome { failure, duration: took }).await;
        let class = if failure && status.is_none_or(|s| s < 400) { "error" } else { status_class(status) };
        self.metrics.upstream_call(&dep.cfg.id, class, took.as_secs_f64());
    }

    /// The body for `dep`: the client's own with the model replaced (its bytes kept when
    /// possible), or translated.
    fn upstream_body(&self, req: &ProxyRequest, dep: &Deployment) -> Result<Bytes, String> {
        let model = dep.cfg.model.as_str();
        if let Some(raw) = req.responses.as_ref().filter(|_| req.passes_through(dep)) {
            return Ok(Bytes::from(protocol::replace_model(raw, model).unwrap_or_else(|| {
                let json = serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null);
                protocol::with_model(&json, model).to_string().into_bytes()
            })));
        }
        if req.forwards_as_is(dep.protocol)
            && !(dep.protocol == Protocol::Anthropic && has_unsigned_thinking(&req.raw))
            && let Some(body) = protocol::replace_model(&req.raw, model)
        {
            return Ok(Bytes::from(body));
        }
        let mut body = match (req.protocol, dep.protocol) {
            (Protocol::Anthropic, Protocol::Anthropic) => {
                let mut body = protocol::with_model(req.json(), model);
                // thinking the gateway made from an OpenAI deployment's reasoning has no
                // signature, which Anthropic refuses when the client sends it back
                protocol::translate::strip_unsigned_thinking(&mut body);
                body
            }
            (a, b) if a == b => protocol::with_model(req.json(), model),
            (Protocol::Anthropic, Protocol::OpenAi) => protocol::translate::anthropic_request_to_openai_with(
                req.json(),
                model,
                max_tokens_field(model),
            )
            .map_err(|e| e.to_string())?,
            _ => protocol::openai_request_to_anthropic(req.json(), model).map_err(|e| e.to_string())?,
        };
        if dep.protocol == Protocol::OpenAi {
            protocol::ensure_openai_stream_usage(&mut body);
        }
        Ok(Bytes::from(body.to_string()))
    }

    async fn send(
        &self,
        req: &ProxyRequest,
        dep: &Deployment,
        body: &Bytes,
        deadline: Instant,
    ) -> Result<reqwest::Response, String> {
        let endpoint = if req.passes_through(dep) { Endpoint::Responses } else { req.endpoint };
        let url = match dep.url_for(endpoint) {
            Ok(url) => url,
            Err(e) => return Err(format!("{}: {e}", dep.cfg.id)),
        };
        let mut r = self.http.client().post(url);
        if req.protocol == dep.protocol {
            for (k, v) in &req.headers {
                if !DROP_REQUEST_HEADERS.contains(&k.as_str()) && k != "content-type" {
                    r = r.header(k, v);
                }
            }
        } else if let Some((_, tp)) = req.headers.iter().find(|(k, _)| k == "traceparent") {
            // the trace context is protocol-neutral
            r = r.header("traceparent", tp);
        }
        r = r.header("content-type", "application/json");
        match dep.protocol {
            Protocol::OpenAi => {
                if let Some(k) = &dep.api_key {
                    r = r.bearer_auth(k);
                }
            }
            Protocol::Anthropic => {
                if let Some(k) = &dep.api_key {
                    r = r.header("x-api-key", k);
                }
                if req.protocol != Protocol::Anthropic
                    || !req.headers.iter().any(|(k, _)| k == "anthropic-version")
                {
                    r = r.header("anthropic-version", "2023-06-01");
                }
            }
        }
        let first_byte = Duration::from_millis(self.cfg.first_byte_timeout_ms).min(remaining(deadline));
        match tokio::time::timeout(first_byte, r.body(body.clone()).send()).await {
            Ok(Ok(res)) => Ok(res),
            // reqwest errors can carry the URL but never headers: no key leaks through them
            Ok(Err(e)) => Err(format!(
                "{}: {}",
                dep.cfg.id,
                if e.is_connect() { "connection failed".to_owned() } else { e.without_url().to_string() }
            )),
            Err(_) => Err(format!("{}: no response within {} ms", dep.cfg.id, first_byte.as_millis())),
        }
    }

    /// Reads a complete answer and brings it into the client's protocol.
    async fn read_full(
        &self,
        req: &ProxyRequest,
        dep: &Deployment,
        model: &str,
        res: reqwest::Response,
        deadline: Instant,
    ) -> Result<(Bytes, Option<Usage>), Failure> {
        let bytes = match tokio::time::timeout(remaining(deadline), res.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return Err(Failure::Transport(format!("{}: body: {}", dep.cfg.id, e.without_url())));
            }
            Err(_) => return Err(Failure::Transport(format!("{}: body timed out", dep.cfg.id))),
        };
        if req.passes_through(dep) {
            let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
                return Err(Failure::Transport(format!("{}: the answer is not valid JSON", dep.cfg.id)));
            };
            let usage = json.get("usage").and_then(Usage::from_responses);
            let bytes = protocol::replace_model(&bytes, model).map_or(bytes, Bytes::from);
            return Ok((bytes, usage));
        }
        if req.protocol == dep.protocol {
            let Ok(usage) = protocol::response_usage_raw(dep.protocol, &bytes) else {
                return Err(Failure::Transport(format!("{}: the answer is not valid JSON", dep.cfg.id)));
            };
            // the answer keeps the name the client asked for (a chain's, not the upstream's)
            let bytes = match protocol::replace_model(&bytes, model) {
                Some(b) => Bytes::from(b),
                None => bytes,
            };
            return Ok((bytes, usage));
        }
        let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(Failure::Transport(format!("{}: the answer is not valid JSON", dep.cfg.id)));
        };
        let usage = protocol::response_usage(dep.protocol, &json);
        let out = match req.protocol {
            Protocol::Anthropic => protocol::openai_response_to_anthropic(&json, model),
            Protocol::OpenAi => protocol::anthropic_response_to_openai(&json, model),
        };
        Ok((Bytes::from(out.to_string()), usage))
    }
}

fn client_error_body(req: &ProxyRequest, dep: &Deployment, status: u16, body: &Bytes) -> Bytes {
    if req.protocol == dep.protocol {
        return body.clone();
    }
    let json = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    Bytes::from(protocol::translate_error_body(req.protocol, status, &json).to_string())
}

fn full(walked: Walked) -> ProxyResponse {
    match walked {
        Walked::Answer { status, headers, body } => ProxyResponse::Full { status, headers, body },
        // callers only pass answers
        Walked::Stream(start) => ProxyResponse::Full {
            status: 500,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: Bytes::from(
                protocol::error_body(
                    start.dep.protocol,
                    500,
                    ErrorCode::Internal.as_str(),
                    "unexpected stream",
                )
                .to_string(),
            ),
        },
    }
}

/// Whether an Anthropic body may hold a thinking block with an empty signature (a cheap byte
/// search; the parse that removes them is only paid when it finds one).
fn has_unsigned_thinking(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, b"\"signature\":\"\"").is_some()
        || memchr::memmem::find(raw, b"\"signature\": \"\"").is_some()
}

/// How a Chat Completions deployment of `model` takes its output limit: OpenAI's reasoning
/// models (o1, o3, o4, gpt-5) refuse `max_tokens` and want `max_completion_tokens`.
fn max_tokens_field(model: &str) -> protocol::MaxTokensField {
    let m = model.rsplit('/').next().unwrap_or(model);
    let reasoning = ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m == *p || m.starts_with(&format!("{p}-")));
    if reasoning {
        protocol::MaxTokensField::MaxCompletionTokens
    } else {
        protocol::MaxTokensField::MaxTokens
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn pass_headers(h: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| !DROP_RESPONSE_HEADERS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// `x-helix-deployment` and `x-helix-fallback-from`; the routes add cost and overhead.
fn helix_headers(deployment: &str, fallback_from: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![("x-helix-deployment".to_owned(), deployment.to_owned())];
    if let Some(f) = fallback_from {
        h.push(("x-helix-fallback-from".to_owned(), f.to_owned()));
    }
    h
}

/// The headers of a JSON answer: ours, then the upstream's own (its content type replaced, the
/// body may have been translated).
fn json_answer_headers(
    deployment: &str,
    fallback_from: Option<&str>,
    upstream: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut h = helix_headers(deployment, fallback_from);
    h.extend(upstream.into_iter().filter(|(k, _)| k != "content-type"));
    h.push(("content-type".to_owned(), "application/json".to_owned()));
    h
}

/// Whether `name` matches `pattern`: `*` is any run of characters, `?` one character.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // iterative with one backtrack point: linear in practice, no recursion
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_globs_match_names_and_exact_names_win() {
        assert!(glob_matches("claude-*", "claude-sonnet-4-5-20250929"));
        assert!(glob_matches("gpt-5?", "gpt-5o"));
        assert!(!glob_matches("gpt-5?", "gpt-5"));
        assert!(glob_matches("*", "anything"));
        assert!(!glob_matches("claude-*", "gpt-4o"));
        assert!(glob_matches("a*b*c", "axxbyyc") && !glob_matches("a*b*c", "axxbyy"));
        let dep = |id: &str| DeploymentConfig {
            id: id.to_owned(),
            provider: ProviderKind::Openai,
            base_url: "http://127.0.0.1:9".to_owned(),
            model: "m".to_owned(),
            api_key_env: None,
            max_in_flight: None,
            breaker: None,
            responses_api: false,
        };
        let model = |name: &str, id: &str| helix_core::gateway_config::ModelChainConfig {
            name: name.to_owned(),
            chain: vec![id.to_owned()],
        };
        let cfg = BreakerGatewayConfig {
            deployments: vec![dep("any"), dep("sonnet"), dep("exact")],
            models: vec![
                model("claude-*", "any"),
                model("claude-sonnet-*", "sonnet"),
                model("claude-sonnet-4-5", "exact"),
            ],
            ..BreakerGatewayConfig::default()
        };
        let p = Proxy::new(cfg, |_| None).expect("proxy");
        let first = |m: &str| p.chain_of(m).map(|c| c[0].cfg.id.clone());
        assert_eq!(first("claude-sonnet-4-5").as_deref(), Some("exact"), "an exact name wins");
        assert_eq!(first("claude-sonnet-4-5-20250929").as_deref(), Some("sonnet"), "the most specific glob");
        assert_eq!(first("claude-haiku-4-5").as_deref(), Some("any"));
        assert_eq!(first("gpt-4o"), None);
    }
}
