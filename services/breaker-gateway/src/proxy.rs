//! The proxy: one client call through a chain of deployments.
//!
//! For each deployment of the model's chain, in order: ask its breaker, send (translating when the
//! deployment speaks the other protocol), classify the outcome for the breaker, retry the same
//! deployment with backoff while the error is retryable and the retry budget allows, then fall
//! back to the next. Client errors (400, 401, 403, 404, 422) are the client's answer and end the
//! call. Falling back is only possible before anything was sent to the client: a non-streaming
//! answer is complete before it is sent; a stream is committed when its first event arrived, and a
//! failure after that ends it with a well-formed error event in the client's protocol.
//!
//! No actix types here: the routes turn a [`ProxyResponse`] into an HTTP response.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use helix_core::gateway_config::{BreakerGatewayConfig, DeploymentConfig, ProviderKind, WindowConfig};
use serde_json::Value;

use crate::breaker::{Admission, BreakerSettings, Breakers, Outcome, WindowKind};
use crate::protocol::{self, Protocol, SseParser, Usage};

/// Request headers never forwarded upstream: hop-by-hop, framing, and the client's credentials
/// (the upstream gets the deployment's key instead).
const DROP_REQUEST_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "authorization",
    "x-api-key",
    "accept-encoding",
    "x-request-id",
];

/// Response headers not passed back: framing is the gateway's own.
const DROP_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "date",
    "server",
];

/// A deployment ready to call.
#[derive(Clone)]
pub struct Deployment {
    pub cfg: DeploymentConfig,
    pub protocol: Protocol,
    /// Read from the environment at start; never logged (see the Debug impl).
    api_key: Option<String>,
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
    fn url(&self) -> String {
        let base = self.cfg.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        match self.protocol {
            Protocol::OpenAi => format!("{base}/v1/chat/completions"),
            Protocol::Anthropic => format!("{base}/v1/messages"),
        }
    }
}

/// A call as the client made it.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub protocol: Protocol,
    pub body: Value,
    /// The client's headers (lowercase names); the forwardable ones go upstream untouched.
    pub headers: Vec<(String, String)>,
}

/// What the client gets.
pub enum ProxyResponse {
    Full { status: u16, headers: Vec<(String, String)>, body: Bytes },
    Stream { status: u16, headers: Vec<(String, String)>, body: tokio::sync::mpsc::Receiver<Bytes> },
}

impl std::fmt::Debug for ProxyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyResponse::Full { status, .. } => write!(f, "Full({status})"),
            ProxyResponse::Stream { status, .. } => write!(f, "Stream({status})"),
        }
    }
}

/// The outcome of one call, for metering (usage and cost of what was served).
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub deployment: Option<String>,
    pub upstream_model: Option<String>,
    pub fallback_from: Option<String>,
    pub attempts: u32,
    pub status: u16,
    pub usage: Option<Usage>,
}

/// Retries may add at most `share` of the traffic: every call earns `share` tokens, a retry
/// spends one (bounded, so a quiet period cannot save up for a storm).
#[derive(Debug)]
struct RetryBudget {
    share: f64,
    /// Tokens × 1000.
    milli: AtomicU64,
}

impl RetryBudget {
    const CAP_MILLI: u64 = 10_000;

    fn earn(&self) {
        let add = (self.share * 1000.0) as u64;
        let _ = self
            .milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some((v + add).min(Self::CAP_MILLI)));
    }

    fn spend(&self) -> bool {
        self.milli.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1000)).is_ok()
    }
}

/// The proxy's shared parts.
#[derive(Debug)]
pub struct Proxy {
    pub cfg: BreakerGatewayConfig,
    pub deployments: HashMap<String, Deployment>,
    pub breakers: Breakers,
    http: reqwest::Client,
    budget: RetryBudget,
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
    }
}

/// Why one attempt failed.
enum Failure {
    /// The upstream answered with an error status: (status, headers, body).
    Status(u16, Vec<(String, String)>, Bytes),
    /// No usable answer (connect error, timeout, invalid body).
    Transport(String),
}

impl Proxy {
    /// Builds the proxy; `env` gives the upstream keys (by the variable names in the config).
    pub fn new(cfg: BreakerGatewayConfig, env: impl Fn(&str) -> Option<String>) -> Result<Proxy, String> {
        let total = Duration::from_millis(cfg.total_timeout_ms);
        let mut deployments = HashMap::new();
        let mut settings = Vec::new();
        for d in &cfg.deployments {
            let api_key = match &d.api_key_env {
                Some(var) => Some(env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!("deployment {:?}: environment variable {var} is not set", d.id)
                })?),
                None => None,
            };
            let protocol = match d.provider {
                ProviderKind::Openai => Protocol::OpenAi,
                ProviderKind::Anthropic => Protocol::Anthropic,
            };
            settings.push((d.id.clone(), breaker_settings(&cfg.breaker_of(d), total)));
            deployments.insert(d.id.clone(), Deployment { cfg: d.clone(), protocol, api_key });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the upstream client: {e}"))?;
        let breakers = Breakers::new(settings, cfg.redis_url.clone(), cfg.redis_key_prefix.clone());
        let budget =
            RetryBudget { share: cfg.retry_budget, milli: AtomicU64::new(RetryBudget::CAP_MILLI / 2) };
        Ok(Proxy { cfg, deployments, breakers, http, budget })
    }

    fn error(
        &self,
        protocol: Protocol,
        status: u16,
        code: &str,
        message: &str,
        extra: Vec<(String, String)>,
    ) -> ProxyResponse {
        let body = protocol::error_body(protocol, status, code, message);
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        headers.extend(extra);
        ProxyResponse::Full { status, headers, body: Bytes::from(body.to_string()) }
    }

    /// Serves one client call; the report says what was served (for metering).
    pub async fn handle(self: &Arc<Self>, req: ProxyRequest) -> (ProxyResponse, CallReport) {
        let mut report = CallReport::default();
        let Some(model) = protocol::request_model(&req.body).map(str::to_owned) else {
            report.status = 400;
            return (
                self.error(req.protocol, 400, "invalid_request", "the request has no model", vec![]),
                report,
            );
        };
        let Some(chain) = self.cfg.chain(&model) else {
            report.status = 404;
            let msg = format!("model {model:?} is not configured on this gateway");
            return (self.error(req.protocol, 404, "model_not_found", &msg, vec![]), report);
        };
        let chain: Vec<Deployment> =
            chain.iter().filter_map(|d| self.deployments.get(&d.id).cloned()).collect();
        let stream = protocol::is_stream(&req.body);
        self.budget.earn();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.cfg.total_timeout_ms);
        let mut soonest_retry: Option<Duration> = None;
        let mut last_failure: Option<(Deployment, Failure)> = None;
        let mut first_tried: Option<String> = None;

        for dep in &chain {
            let mut attempt = 0u32;
            loop {
                let probe = match self.breakers.acquire(&dep.cfg.id).await {
                    Admission::Allowed { probe } => probe,
                    Admission::Rejected { retry_after } => {
                        soonest_retry = Some(soonest_retry.map_or(retry_after, |s| s.min(retry_after)));
                        break;
                    }
                };
                if first_tried.is_none() {
                    first_tried = Some(dep.cfg.id.clone());
                }
                attempt += 1;
                report.attempts += 1;
                let upstream_body = match self.upstream_body(&req, dep) {
                    Ok(b) => b,
                    Err(e) => {
                        // the request cannot be expressed for this deployment: try the next one
                        self.breakers
                            .record(&dep.cfg.id, probe, Outcome { failure: false, duration: Duration::ZERO })
                            .await;
                        last_failure = Some((dep.clone(), Failure::Transport(e)));
                        break;
                    }
                };
                let t = Instant::now();
                let sent = self.send(&req, dep, &upstream_body, deadline).await;
                let fallback_from = first_tried.as_ref().filter(|f| **f != dep.cfg.id).cloned();
                let failure = match sent {
                    Ok(res) if res.status().is_success() => {
                        let status = res.status().as_u16();
                        let headers = pass_headers(res.headers());
                        report.deployment = Some(dep.cfg.id.clone());
                        report.upstream_model = Some(dep.cfg.model.clone());
                        report.fallback_from = fallback_from.clone();
                        report.status = status;
                        if stream {
                            match self.start_stream(&req, dep, &model, res, probe, t, deadline).await {
                                Ok((rx, usage_rx)) => {
                                    let mut h = helix_headers(dep, fallback_from.as_deref(), started, None);
                                    h.extend(headers.into_iter().filter(|(k, _)| k != "content-type"));
                                    h.push(("content-type".to_owned(), "text/event-stream".to_owned()));
                                    h.push(("cache-control".to_owned(), "no-cache".to_owned()));
                                    report.usage = None;
                                    // usage of a stream is known at its end: the stream task reports it
                                    drop(usage_rx);
                                    return (ProxyResponse::Stream { status, headers: h, body: rx }, report);
                                }
                                Err(f) => {
                                    self.breakers
                                        .record(
                                            &dep.cfg.id,
                                            probe,
                                            Outcome { failure: true, duration: t.elapsed() },
                                        )
                                        .await;
                                    f
                                }
                            }
                        } else {
                            match self.read_full(&req, dep, &model, res, deadline).await {
                                Ok((body, usage)) => {
                                    self.breakers
                                        .record(
                                            &dep.cfg.id,
                                            probe,
                                            Outcome { failure: false, duration: t.elapsed() },
                                        )
                                        .await;
                                    report.usage = usage;
                                    let mut h = helix_headers(dep, fallback_from.as_deref(), started, None);
                                    h.extend(headers.into_iter().filter(|(k, _)| k != "content-type"));
                                    h.push(("content-type".to_owned(), "application/json".to_owned()));
                                    return (ProxyResponse::Full { status, headers: h, body }, report);
                                }
                                Err(f) => {
                                    self.breakers
                                        .record(
                                            &dep.cfg.id,
                                            probe,
                                            Outcome { failure: true, duration: t.elapsed() },
                                        )
                                        .await;
                                    f
                                }
                            }
                        }
                    }
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let headers = pass_headers(res.headers());
                        let body = tokio::time::timeout(remaining(deadline), res.bytes())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default();
                        let counts = self.cfg.breaker_of(&dep.cfg).failure_statuses.contains(&status);
                        self.breakers
                            .record(&dep.cfg.id, probe, Outcome { failure: counts, duration: t.elapsed() })
                            .await;
                        if !counts {
                            // the client's own error (or one we do not retry): its answer, in its protocol
                            report.deployment = Some(dep.cfg.id.clone());
                            report.status = status;
                            let body = self.client_error_body(&req, dep, status, &body);
                            let mut h = helix_headers(dep, fallback_from.as_deref(), started, None);
                            h.extend(headers.into_iter().filter(|(k, _)| k != "content-type"));
                            h.push(("content-type".to_owned(), "application/json".to_owned()));
                            return (ProxyResponse::Full { status, headers: h, body }, report);
                        }
                        Failure::Status(status, headers, body)
                    }
                    Err(e) => {
                        self.breakers
                            .record(&dep.cfg.id, probe, Outcome { failure: true, duration: t.elapsed() })
                            .await;
                        Failure::Transport(e)
                    }
                };
                let wait = retry_wait(&failure, attempt, &self.cfg);
                last_failure = Some((dep.clone(), failure));
                let retry = attempt <= self.cfg.max_retries
                    && Instant::now() + wait < deadline
                    && self.budget.spend();
                if !retry {
                    break;
                }
                tracing::debug!(deployment = %dep.cfg.id, attempt, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
            }
        }

        match last_failure {
            Some((dep, Failure::Status(status, headers, body))) => {
                // every deployment failed: the last upstream answer, in the client's protocol
                report.status = status;
                report.deployment = Some(dep.cfg.id.clone());
                let body = self.client_error_body(&req, &dep, status, &body);
                let mut h = helix_headers(&dep, None, started, None);
                h.extend(headers.into_iter().filter(|(k, _)| k != "content-type"));
                h.push(("content-type".to_owned(), "application/json".to_owned()));
                (ProxyResponse::Full { status, headers: h, body }, report)
            }
            Some((_, Failure::Transport(e))) => {
                report.status = 502;
                let msg = format!("no deployment of {model:?} answered: {e}");
                (self.error(req.protocol, 502, "upstream_unavailable", &msg, vec![]), report)
            }
            None => {
                // every breaker of the chain is open: fail fast
                report.status = 503;
                let secs =
                    soonest_retry.unwrap_or(Duration::from_secs(1)).as_secs_f64().ceil().max(1.0) as u64;
                let msg =
                    format!("every deployment of {model:?} is unavailable (circuit open); retry in {secs}s");
                (
                    self.error(
                        req.protocol,
                        503,
                        "circuit_open",
                        &msg,
                        vec![("retry-after".to_owned(), secs.to_string())],
                    ),
                    report,
                )
            }
        }
    }

    /// The body for `dep`: the client's own with the model replaced, or translated.
    fn upstream_body(&self, req: &ProxyRequest, dep: &Deployment) -> Result<Value, String> {
        let model = dep.cfg.model.as_str();
        let mut body = match (req.protocol, dep.protocol) {
            (a, b) if a == b => protocol::with_model(&req.body, model),
            (Protocol::Anthropic, Protocol::OpenAi) => {
                protocol::anthropic_request_to_openai(&req.body, model).map_err(|e| e.to_string())?
            }
            _ => protocol::openai_request_to_anthropic(&req.body, model).map_err(|e| e.to_string())?,
        };
        if dep.protocol == Protocol::OpenAi {
            protocol::ensure_openai_stream_usage(&mut body);
        }
        Ok(body)
    }

    async fn send(
        &self,
        req: &ProxyRequest,
        dep: &Deployment,
        body: &Value,
        deadline: Instant,
    ) -> Result<reqwest::Response, String> {
        let mut r = self.http.post(dep.url());
        if req.protocol == dep.protocol {
            for (k, v) in &req.headers {
                if !DROP_REQUEST_HEADERS.contains(&k.as_str()) && k != "content-type" {
                    r = r.header(k, v);
                }
            }
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
        match tokio::time::timeout(first_byte, r.body(body.to_string()).send()).await {
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
        let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(Failure::Transport(format!("{}: the answer is not valid JSON", dep.cfg.id)));
        };
        let usage = protocol::response_usage(dep.protocol, &json);
        if req.protocol == dep.protocol {
            return Ok((bytes, usage));
        }
        let out = match req.protocol {
            Protocol::Anthropic => protocol::openai_response_to_anthropic(&json, model),
            Protocol::OpenAi => protocol::anthropic_response_to_openai(&json, model),
        };
        Ok((Bytes::from(out.to_string()), usage))
    }

    fn client_error_body(&self, req: &ProxyRequest, dep: &Deployment, status: u16, body: &Bytes) -> Bytes {
        if req.protocol == dep.protocol {
            return body.clone();
        }
        let json = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        Bytes::from(protocol::translate_error_body(req.protocol, status, &json).to_string())
    }

    /// Waits for the first upstream event (so a stream that fails before any content can still
    /// fall back), then pipes the rest through a task: translated when needed, keep-alive comments
    /// while the upstream is silent, cut with an error event when it stalls or breaks.
    #[allow(clippy::too_many_arguments)]
    async fn start_stream(
        self: &Arc<Self>,
        req: &ProxyRequest,
        dep: &Deployment,
        model: &str,
        res: reqwest::Response,
        probe: bool,
        started: Instant,
        deadline: Instant,
    ) -> Result<(tokio::sync::mpsc::Receiver<Bytes>, tokio::sync::oneshot::Receiver<Option<Usage>>), Failure>
    {
        let mut upstream = res.bytes_stream();
        let mut parser = SseParser::default();
        let idle = Duration::from_millis(self.cfg.idle_timeout_ms);
        let mut pending = Vec::new();
        // before committing: the first complete event, within the first-byte budget
        let first_wait = Duration::from_millis(self.cfg.first_byte_timeout_ms).min(remaining(deadline));
        let until = Instant::now() + first_wait;
        while pending.is_empty() {
            match tokio::time::timeout(remaining(until), upstream.next()).await {
                Ok(Some(Ok(chunk))) => match parser.feed(&chunk) {
                    Ok(events) => pending.extend(events),
                    Err(e) => return Err(Failure::Transport(format!("{}: {e}", dep.cfg.id))),
                },
                Ok(Some(Err(e))) => {
                    return Err(Failure::Transport(format!("{}: stream: {}", dep.cfg.id, e.without_url())));
                }
                Ok(None) => {
                    return Err(Failure::Transport(format!(
                        "{}: the stream ended before any event",
                        dep.cfg.id
                    )));
                }
                Err(_) => {
                    return Err(Failure::Transport(format!(
                        "{}: no event within {} ms",
                        dep.cfg.id,
                        first_wait.as_millis()
                    )));
                }
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let (usage_tx, usage_rx) = tokio::sync::oneshot::channel();
        let mut pipe = StreamPipe::new(req, dep, model);
        let this = self.clone();
        let id = dep.cfg.id.clone();
        let keepalive = Duration::from_millis(self.cfg.keepalive_ms.max(100));
        tokio::spawn(async move {
            let mut failure: Option<String> = None;
            let mut client_gone = false;
            'outer: {
                for ev in pending {
                    for out in pipe.event(ev) {
                        if tx.send(out).await.is_err() {
                            client_gone = true;
                            break 'outer;
                        }
                    }
                }
                let mut last = Instant::now();
                loop {
                    if pipe.done {
                        break;
                    }
                    let wait = keepalive.min(remaining(deadline));
                    match tokio::time::timeout(wait, upstream.next()).await {
                        Ok(Some(Ok(chunk))) => {
                            last = Instant::now();
                            let events = match parser.feed(&chunk) {
                                Ok(ev) => ev,
                                Err(e) => {
                                    failure = Some(e.to_string());
                                    break;
                                }
                            };
                            for ev in events {
                                for out in pipe.event(ev) {
                                    if tx.send(out).await.is_err() {
                                        client_gone = true;
                                        break 'outer;
                                    }
                                }
                            }
                        }
                        Ok(Some(Err(e))) => {
                            failure = Some(format!("the upstream stream broke: {}", e.without_url()));
                            break;
                        }
                        Ok(None) => {
                            if !pipe.done {
                                failure = Some("the upstream stream ended early".to_owned());
                            }
                            break;
                        }
                        Err(_) => {
                            if Instant::now() >= deadline {
                                failure = Some("the call took longer than the total timeout".to_owned());
                                break;
                            }
                            if last.elapsed() >= idle {
                                failure =
                                    Some(format!("the upstream stream stalled for {} ms", idle.as_millis()));
                                break;
                            }
                            if tx.send(Bytes::from(protocol::sse::comment("keep-alive"))).await.is_err() {
                                client_gone = true;
                                break 'outer;
                            }
                        }
                    }
                }
                if let Some(f) = &failure {
                    tracing::warn!(deployment = %id, error = %f, "stream failed after it started");
                    let _ = tx
                        .send(Bytes::from(protocol::stream_error(
                            pipe.client,
                            502,
                            "upstream_stream_failed",
                            f,
                        )))
                        .await;
                } else {
                    for out in pipe.finish() {
                        let _ = tx.send(out).await;
                    }
                }
            }
            // a client that went away says nothing about the deployment
            if !client_gone {
                let outcome = Outcome { failure: failure.is_some(), duration: started.elapsed() };
                this.breakers.record(&id, probe, outcome).await;
            }
            let _ = usage_tx.send(pipe.usage());
        });
        Ok((rx, usage_rx))
    }
}

/// Turns upstream SSE events into what the client's protocol expects.
struct StreamPipe {
    client: Protocol,
    upstream: Protocol,
    /// The client did not ask for OpenAI's usage chunk (the gateway did, to meter the call).
    strip_usage: bool,
    to_anthropic: Option<protocol::OpenAiToAnthropicStream>,
    to_openai: Option<protocol::AnthropicToOpenAiStream>,
    usage: protocol::UsageAccumulator,
    done: bool,
}

impl StreamPipe {
    fn new(req: &ProxyRequest, dep: &Deployment, model: &str) -> StreamPipe {
        let asked = req
            .body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        StreamPipe {
            client: req.protocol,
            upstream: dep.protocol,
            strip_usage: req.protocol == Protocol::OpenAi && !asked,
            to_anthropic: (req.protocol == Protocol::Anthropic && dep.protocol == Protocol::OpenAi)
                .then(|| protocol::OpenAiToAnthropicStream::new(model)),
            to_openai: (req.protocol == Protocol::OpenAi && dep.protocol == Protocol::Anthropic)
                .then(|| protocol::AnthropicToOpenAiStream::new(model, asked)),
            usage: protocol::UsageAccumulator::new(dep.protocol),
            done: false,
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }

    fn event(&mut self, ev: protocol::SseEvent) -> Vec<Bytes> {
        use protocol::sse::{OPENAI_DONE, encode_json};
        if self.upstream == Protocol::OpenAi && ev.is_openai_done() {
            self.done = true;
            if let Some(t) = &mut self.to_anthropic {
                return t
                    .finish()
                    .into_iter()
                    .map(|(name, v)| Bytes::from(encode_json(Some(&name), &v)))
                    .collect();
            }
            return vec![Bytes::from_static(OPENAI_DONE.as_bytes())];
        }
        let Ok(mut data) = ev.json() else { return Vec::new() };
        self.usage.push(&data);
        let name = ev.event_name().to_owned();
        if self.upstream == Protocol::Anthropic
            && (name == "message_stop" || data.get("type").and_then(Value::as_str) == Some("message_stop"))
        {
            self.done = true;
        }
        match (self.client, self.upstream) {
            (Protocol::OpenAi, Protocol::OpenAi) => {
                if self.strip_usage && protocol::strip_usage_chunk(&mut data) {
                    return Vec::new();
                }
                vec![Bytes::from(encode_json(None, &data))]
            }
            (Protocol::Anthropic, Protocol::Anthropic) => {
                vec![Bytes::from(encode_json(ev.event.as_deref(), &data))]
            }
            (Protocol::Anthropic, Protocol::OpenAi) => match &mut self.to_anthropic {
                Some(t) => {
                    t.push(&data).into_iter().map(|(n, v)| Bytes::from(encode_json(Some(&n), &v))).collect()
                }
                None => Vec::new(),
            },
            (Protocol::OpenAi, Protocol::Anthropic) => match &mut self.to_openai {
                Some(t) => match t.push(&name, &data) {
                    Ok(chunks) => {
                        let mut out: Vec<Bytes> =
                            chunks.iter().map(|c| Bytes::from(encode_json(None, c))).collect();
                        if self.done {
                            out.push(Bytes::from_static(OPENAI_DONE.as_bytes()));
                        }
                        out
                    }
                    Err(e) => {
                        self.done = true;
                        vec![Bytes::from(protocol::stream_error(
                            Protocol::OpenAi,
                            e.status(),
                            &e.error_type,
                            &e.message,
                        ))]
                    }
                },
                None => Vec::new(),
            },
        }
    }

    /// What to send when the upstream ended cleanly (nothing more for same-protocol streams).
    fn finish(&mut self) -> Vec<Bytes> {
        Vec::new()
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

fn helix_headers(
    dep: &Deployment,
    fallback_from: Option<&str>,
    started: Instant,
    cost: Option<f64>,
) -> Vec<(String, String)> {
    let mut h = vec![
        ("x-helix-deployment".to_owned(), dep.cfg.id.clone()),
        ("x-helix-overhead-ms".to_owned(), format!("{}", started.elapsed().as_millis())),
    ];
    if let Some(f) = fallback_from {
        h.push(("x-helix-fallback-from".to_owned(), f.to_owned()));
    }
    if let Some(c) = cost {
        h.push(("x-helix-cost-usd".to_owned(), format!("{c:.6}")));
    }
    h
}

/// How long to wait before retrying: the upstream's own hint when it gave one
/// (`retry-after-ms`, `retry-after`, `x-ratelimit-reset-*`), else exponential backoff with full
/// jitter.
fn retry_wait(f: &Failure, attempt: u32, cfg: &BreakerGatewayConfig) -> Duration {
    let cap = Duration::from_millis(cfg.retry_max_backoff_ms);
    if let Failure::Status(_, headers, _) = f {
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned());
        if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
            return Duration::from_millis(ms.max(0.0) as u64).min(cap);
        }
        if let Some(s) = get("retry-after").and_then(|v| v.parse::<f64>().ok()) {
            return Duration::from_millis((s.max(0.0) * 1000.0) as u64).min(cap);
        }
        for name in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
            if let Some(d) = get(name).and_then(|v| parse_reset(&v)) {
                return d.min(cap);
            }
        }
    }
    let base = cfg.retry_base_backoff_ms.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let ceiling = base.min(cfg.retry_max_backoff_ms).max(1);
    Duration::from_millis(jitter(ceiling))
}

/// OpenAI's reset hints look like `1s`, `6m0s`, `120ms`.
fn parse_reset(v: &str) -> Option<Duration> {
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|m| Duration::from_millis(m as u64));
    }
    let mut total = 0.0;
    let mut num = String::new();
    for c in v.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'h' | 'm' | 's' => {
                let n: f64 = num.parse().ok()?;
                num.clear();
                total += n * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
            }
            _ => return None,
        }
    }
    num.is_empty().then(|| Duration::from_millis((total * 1000.0) as u64))
}

/// A uniformly random number of milliseconds in `[0, ceiling]` (full jitter).
fn jitter(ceiling: u64) -> u64 {
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    r % (ceiling + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_hints_parse() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("120ms"), Some(Duration::from_millis(120)));
        assert_eq!(parse_reset("soon"), None);
    }

    #[test]
    fn retry_waits_honour_hints_then_back_off_with_jitter() {
        let cfg = BreakerGatewayConfig::default();
        let status = |h: &[(&str, &str)]| {
            Failure::Status(
                429,
                h.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                Bytes::new(),
            )
        };
        assert_eq!(retry_wait(&status(&[("retry-after-ms", "250")]), 1, &cfg), Duration::from_millis(250));
        assert_eq!(retry_wait(&status(&[("retry-after", "2")]), 1, &cfg), Duration::from_secs(2));
        assert_eq!(
            retry_wait(&status(&[("retry-after", "3600")]), 1, &cfg),
            Duration::from_millis(10_000),
            "capped"
        );
        for attempt in 1..6 {
            let w = retry_wait(&Failure::Transport(String::new()), attempt, &cfg);
            assert!(w <= Duration::from_millis(200 << (attempt - 1)), "{w:?}");
        }
    }

    #[test]
    fn the_retry_budget_caps_retries_at_a_share_of_traffic() {
        let b = RetryBudget { share: 0.2, milli: AtomicU64::new(0) };
        let mut retries = 0;
        for _ in 0..100 {
            b.earn();
            if b.spend() {
                retries += 1;
            }
        }
        assert_eq!(retries, 20);
    }
}
