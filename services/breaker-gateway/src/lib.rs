//! The breaker-gateway: an OpenAI- and Anthropic-compatible LLM proxy with circuit breakers,
//! retries, fallbacks, bulkheads and cost metering.
//!
//! Clients point the official SDKs' `base_url` at it and call `POST /v1/chat/completions` or
//! `POST /v1/messages` as usual; [`proxy`] walks the model's chain of deployments, [`breaker`]
//! keeps failing deployments out of it (shared between replicas through Redis), [`protocol`]
//! translates when a deployment speaks the other protocol, and [`accounting`] knows who calls,
//! what they may spend and what each call cost. [`calls`] puts those around one call; the
//! [`routes`] are thin. Operators see and steer the breakers at `/v1/circuits` and scrape
//! `/metrics`. The budget ledger (`budgets.json`) lives under `<data_dir>/breaker-gateway`.

pub mod accounting;
pub mod breaker;
pub mod calls;
pub mod error;
pub mod minting;
pub mod protocol;
pub mod proxy;
pub mod responses;
pub mod routes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use futures_util::future::BoxFuture;
use helix_core::{Check, CheckStatus, HelixConfig, ServiceKind};
use utoipa::OpenApi;

use accounting::{Budgets, Emitter, EmitterStats, KeyRing, Metrics, Prices, circuit_event};
use breaker::{Change, RedisStatus, Snapshot, State, Transition};
use proxy::Proxy;

/// Trace events waiting for the collector at most (older ones are dropped and counted).
const EMITTER_CAPACITY: usize = 10_000;
/// How long shutdown waits for queued trace events to reach the collector.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(2);

/// Shared state of the gateway's handlers.
#[derive(Debug)]
pub struct GatewayState {
    data_dir: PathBuf,
    pub proxy: Arc<Proxy>,
    pub keys: KeyRing,
    pub budgets: Budgets,
    /// Budgets and project bulkheads shared with the other replicas (with `redis_url`).
    pub shared: accounting::shared::Shared,
    /// Cost caps of minted keys (`POST /v1/keys`).
    pub caps: accounting::KeyCaps,
    pub prices: Prices,
    pub emitter: Arc<Emitter>,
    /// Where the emitter sends events (for readiness).
    pub collector_url: String,
    /// When the gateway started (the `created` of the model list).
    pub started_unix_ms: i64,
    /// Recent Responses API answers, for `previous_response_id`.
    pub responses: Arc<protocol::responses::ResponseStore>,
}

/// The trace-collector this configuration places next to the gateway: same host (a wildcard bind
/// address reached over loopback), `trace_collector_port`.
pub fn default_collector_url(cfg: &HelixConfig) -> String {
    let host = match cfg.host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        h => h,
    };
    format!("http://{host}:{}", cfg.trace_collector_port)
}

impl GatewayState {
    /// Opens the gateway with upstream keys from the process environment and events going to
    /// `[breaker_gateway] collector_url`, else to [`default_collector_url`].
    pub fn open(cfg: &HelixConfig) -> std::io::Result<GatewayState> {
        GatewayState::open_with(cfg, None, helix_core::env::var)
    }

    /// [`GatewayState::open`] with the trace-collector's actual URL when the caller knows it (a
    /// stack started on port 0) and upstream keys from `env`. A configured `collector_url` still
    /// wins. Fails with a message naming the variable when a key's environment variable is
    /// missing. (Gateway keys are checked by the access layer; see [`accounting::KeyRing`].)
    pub fn open_with(
        cfg: &HelixConfig,
        collector: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> std::io::Result<GatewayState> {
        GatewayState::open_as(cfg, collector, env, None)
    }

    /// [`GatewayState::open_with`], sending `token` to the trace-collector (needed when it
    /// requires tokens).
    pub fn open_as(
        cfg: &HelixConfig,
        collector: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
        token: Option<helix_core::auth::Secret>,
    ) -> std::io::Result<GatewayState> {
        let gw = &cfg.breaker_gateway;
        let data_dir =
            helix_http::storage::prepare_data_dir(&cfg.service_data_dir(ServiceKind::BreakerGateway))?;
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let keys = KeyRing::from_config(&gw.keys);
        let proxy = Proxy::new(gw.clone(), &env).map_err(|e| invalid(format!("breaker_gateway: {e}")))?;
        let budgets = Budgets::open(&data_dir.join("budgets.json"))?;
        let collector_url = if gw.collector_url.trim().is_empty() {
            collector.map_or_else(|| default_collector_url(cfg), str::to_owned)
        } else {
            gw.collector_url.trim().to_owned()
        };
        let emitter = Arc::new(Emitter::spawn_with_token(collector_url.clone(), EMITTER_CAPACITY, token));
        let proxy = Arc::new(proxy);
        report_transitions(&proxy, &emitter);
        let shared = accounting::shared::Shared::new(
            proxy.breakers.clone(),
            Duration::from_millis(gw.total_timeout_ms),
        );
        Ok(GatewayState {
            data_dir,
            proxy,
            keys,
            budgets,
            shared,
            caps: accounting::KeyCaps::default(),
            prices: Prices::from_config(&gw.prices),
            emitter,
            collector_url,
            started_unix_ms: helix_core::time::now_ms(),
            responses: Arc::new(protocol::responses::ResponseStore::default()),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.proxy.metrics
    }

    /// The Prometheus text, with gauges brought up to date (breaker states, calls in flight).
    pub async fn render_metrics(&self) -> String {
        let metrics = self.metrics();
        for s in self.proxy.breakers.snapshots().await {
            metrics.set_breaker_state(&s.id, s.state);
        }
        for (key, n) in self.proxy.bulkheads.snapshot() {
            metrics.set_in_flight(&key, n);
        }
        metrics.render_with(Some(&self.emitter.stats()))
    }

    /// The checks of `GET /ready`. Only the data directory can make the gateway unready: with
    /// Redis away it serves on local breaker state, open breakers are what fallbacks are for, and
    /// trace events wait in their queue.
    pub async fn checks(&self) -> Vec<Check> {
        let mut checks = vec![helix_http::storage::data_dir_check(self.data_dir.clone()).await];
        checks.push(redis_check(&self.proxy.breakers.redis_status()));
        for s in self.proxy.breakers.snapshots().await {
            checks.push(breaker_check(&s));
        }
        checks.push(collector_check(&self.collector_url, &self.emitter.stats()));
        checks
    }
}

fn redis_check(s: &RedisStatus) -> Check {
    let name = "redis";
    match (s.configured, s.connected) {
        (false, _) => Check::new(name, CheckStatus::Disabled, "not configured: breaker state is per replica"),
        (true, true) => Check::new(name, CheckStatus::Ok, "connected: breaker state is shared"),
        (true, false) => Check::new(
            name,
            CheckStatus::Degraded,
            format!(
                "unreachable, serving on local breaker state: {}",
                s.last_error.as_deref().unwrap_or("not connected yet")
            ),
        ),
    }
}

fn breaker_check(s: &Snapshot) -> Check {
    let name = format!("breaker:{}", s.id);
    match s.state {
        State::Closed | State::HalfOpen => Check::new(name, CheckStatus::Ok, s.state.as_str()),
        State::Disabled => Check::new(name, CheckStatus::Ok, "disabled by an operator: every call passes"),
        State::Open | State::ForcedOpen => Check::new(
            name,
            CheckStatus::Degraded,
            format!("{}: calls fall back to the next deployment of their chain", s.state),
        ),
    }
}

fn collector_check(url: &str, s: &EmitterStats) -> Check {
    let name = "trace_collector";
    match (&s.last_error, s.connected) {
        (Some(e), false) => {
            Check::new(name, CheckStatus::Degraded, format!("{url}: {e} ({} events waiting)", s.queued))
        }
        _ => Check::new(name, CheckStatus::Ok, format!("{url}: {} events sent", s.sent)),
    }
}

/// Sends every breaker transition caused here to the trace-collector (a span of kind `circuit`)
/// and into the breaker-state gauge. A plain thread: it needs no runtime and ends when the
/// breakers are dropped.
fn report_transitions(proxy: &Arc<Proxy>, emitter: &Arc<Emitter>) {
    let mut rx = proxy.breakers.subscribe();
    let proxy = Arc::downgrade(proxy);
    let emitter = Arc::downgrade(emitter);
    let spawned = std::thread::Builder::new().name("circuit-events".to_owned()).spawn(move || {
        loop {
            let t: Transition = match rx.blocking_recv() {
                Ok(t) => t,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "circuit transitions not reported");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let (Some(proxy), Some(emitter)) = (proxy.upgrade(), emitter.upgrade()) else { return };
            proxy.metrics.set_breaker_state(&t.id, t.to);
            let change = Change { from: t.from, to: t.to, reason: t.reason.clone() };
            emitter.emit(circuit_event(&t.id, &change, t.at_unix_ms.saturating_mul(1_000_000), None));
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the circuit event reporter");
    }
}

/// Registers the gateway's routes on `cfg`.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<GatewayState>) {
    use helix_http::routes::{get, post};
    cfg.app_data(state)
        .service(post("/v1/chat/completions", routes::llm::chat_completions))
        .service(post("/v1/messages", routes::llm::messages))
        .service(post("/v1/responses", routes::llm::responses))
        .service(post("/v1/messages/count_tokens", routes::llm::count_tokens))
        .service(post("/v1/embeddings", routes::llm::embeddings))
        .service(post("/v1/completions", routes::llm::completions))
        .service(get("/v1/models", routes::llm::models))
        .service(get("/v1/models/{id}", routes::llm::model))
        .service(get("/v1/circuits", routes::circuits::list))
        .service(post("/v1/circuits/{id}/reset", routes::circuits::reset))
        .service(post("/v1/circuits/{id}/force-open", routes::circuits::force_open))
        .service(post("/v1/circuits/{id}/disable", routes::circuits::disable))
        .service(post("/v1/keys", routes::keys::mint))
        .service(
            web::resource("/v1/keys/{id}")
                .route(web::get().to(routes::keys::usage))
                .route(web::delete().to(routes::keys::revoke))
                .default_service(web::to(helix_http::routes::method_not_allowed("GET, DELETE"))),
        )
        .service(get("/metrics", routes::circuits::metrics));
}

#[derive(OpenApi)]
#[openapi(
    paths(
        routes::llm::chat_completions,
        routes::llm::messages,
        routes::llm::responses,
        routes::llm::count_tokens,
        routes::llm::embeddings,
        routes::llm::completions,
        routes::llm::models,
        routes::llm::model,
        routes::circuits::list,
        routes::circuits::reset,
        routes::circuits::force_open,
        routes::circuits::disable,
        routes::circuits::metrics,
        routes::keys::mint,
        routes::keys::usage,
        routes::keys::revoke
    ),
    components(schemas(
        routes::llm::ChatRequest,
        routes::llm::ResponsesRequest,
        routes::llm::OpenAiError,
        routes::llm::OpenAiErrorDetail,
        routes::llm::AnthropicError,
        routes::llm::AnthropicErrorDetail,
        routes::llm::ProviderError,
        routes::llm::ModelList,
        routes::llm::OpenAiModelList,
        routes::llm::OpenAiModel,
        routes::llm::AnthropicModelList,
        routes::llm::AnthropicModel,
        routes::llm::ModelInfo,
        routes::llm::ModelStatus,
        routes::llm::DeploymentStatus,
        routes::circuits::CircuitList,
        minting::MintRequest,
        minting::MintedKey,
        accounting::KeyUsage,
        Snapshot,
        State,
        RedisStatus,
    )),
    tags(
        (name = "llm", description = "the OpenAI- and Anthropic-compatible proxy (point an SDK's base_url here)"),
        (name = "circuits", description = "circuit breakers per deployment, and metrics"),
        (name = "keys", description = "keys minted for agents: one project, a cost cap, an expiry")
    )
)]
struct ApiDoc;

/// The gateway's complete OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    helix_http::openapi::finish(
        ServiceKind::BreakerGateway,
        "An OpenAI- and Anthropic-compatible LLM proxy with circuit breakers and fallbacks. Errors of \
         the proxy routes (`/v1/chat/completions`, `/v1/messages`, `/v1/models`) are in the shape of \
         the provider the route stands in for, so the official SDKs can read them.",
        ApiDoc::openapi(),
    )
}

/// The gateway as served by the shared runtime.
pub struct GatewayService {
    state: web::Data<GatewayState>,
}

impl GatewayService {
    pub fn new(cfg: &HelixConfig) -> std::io::Result<GatewayService> {
        Ok(GatewayService { state: web::Data::new(GatewayState::open(cfg)?) })
    }

    /// As [`GatewayService::new`], sending events to the trace-collector at `collector_url`
    /// (the URL it actually listens on, when the stack bound it to port 0).
    pub fn with_collector(cfg: &HelixConfig, collector_url: &str) -> std::io::Result<GatewayService> {
        GatewayService::with_peer(cfg, collector_url, None)
    }

    /// As [`GatewayService::with_collector`], sending `token` to the collector.
    pub fn with_peer(
        cfg: &HelixConfig,
        collector_url: &str,
        token: Option<helix_core::auth::Secret>,
    ) -> std::io::Result<GatewayService> {
        let state = GatewayState::open_as(cfg, Some(collector_url), helix_core::env::var, token)?;
        Ok(GatewayService { state: web::Data::new(state) })
    }

    pub fn state(&self) -> &web::Data<GatewayState> {
        &self.state
    }

    pub fn into_service(self) -> Arc<dyn helix_http::Service> {
        Arc::new(self)
    }
}

impl helix_http::Service for GatewayService {
    fn kind(&self) -> ServiceKind {
        ServiceKind::BreakerGateway
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        configure(cfg, self.state.clone());
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        openapi()
    }

    fn readiness(&self) -> BoxFuture<'static, Vec<Check>> {
        let state = self.state.clone();
        Box::pin(async move { state.checks().await })
    }

    /// The proxy routes refuse in the shape of the provider they stand in for, which the SDKs
    /// parse (`AuthenticationError`, `PermissionDeniedError`).
    fn refusal(
        &self,
        req: &actix_web::HttpRequest,
        code: helix_core::ErrorCode,
        detail: &str,
    ) -> Option<actix_web::HttpResponse> {
        let protocol = routes::llm::protocol_of_path(req)?;
        if matches!(code, helix_core::ErrorCode::Unauthorized | helix_core::ErrorCode::Forbidden) {
            self.state.metrics().rejected("auth");
        }
        let body = protocol::error_body(protocol, code.status(), code.as_str(), detail);
        Some(
            actix_web::HttpResponse::build(helix_http::problem::status_of(code))
                .content_type("application/json")
                .body(body.to_string()),
        )
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let state = self.state.clone();
        Box::pin(async move {
            if !state.emitter.flush(FLUSH_AT_SHUTDOWN).await {
                tracing::warn!("trace events still queued at shutdown are lost");
            }
            // blocking file IO, off the runtime
            let ledger = state.clone();
            match tokio::task::spawn_blocking(move || ledger.budgets.persist()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot persist the budget ledger"),
                Err(e) => tracing::error!(error = %e, "cannot persist the budget ledger"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use helix_core::gateway_config::{DeploymentConfig, GatewayKeyConfig, ProviderKind};

    use super::*;

    fn config(dir: &std::path::Path) -> HelixConfig {
        let mut cfg = HelixConfig { data_dir: dir.to_path_buf(), ..HelixConfig::default() };
        cfg.breaker_gateway.deployments = vec![DeploymentConfig {
            id: "oa".to_owned(),
            provider: ProviderKind::Openai,
            base_url: "http://127.0.0.1:9".to_owned(),
            model: "gpt-4o".to_owned(),
            api_key_env: Some("UPSTREAM_KEY".to_owned()),
            max_in_flight: None,
            breaker: None,
            responses_api: false,
        }];
        cfg.breaker_gateway.keys = vec![GatewayKeyConfig {
            key_env: "GATEWAY_KEY".to_owned(),
            project: "shop".to_owned(),
            daily_budget_usd: None,
            max_in_flight: None,
        }];
        cfg
    }

    #[test]
    fn upstream_keys_come_from_the_environment_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = config(dir.path());
        let env = |name: &str| (name == "UPSTREAM_KEY").then(|| "sk-upstream-secret".to_owned());
        let state = GatewayState::open_with(&cfg, Some("http://127.0.0.1:1"), env).expect("opens");
        assert_eq!(&*state.keys.project_of(&helix_core::auth::Principal::anonymous()).name, "default");
        assert_eq!(state.collector_url, "http://127.0.0.1:1", "the peer's url when none is configured");
        let debug = format!("{state:?}");
        assert!(!debug.contains("sk-upstream-secret"), "{debug}");
        let e = GatewayState::open_with(&cfg, None, |_| None).expect_err("the upstream key is missing");
        assert!(e.to_string().contains("UPSTREAM_KEY"), "{e}");
    }

    #[test]
    fn a_configured_collector_wins_and_the_default_is_this_configurations() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = config(dir.path());
        cfg.breaker_gateway.deployments.clear();
        cfg.breaker_gateway.keys.clear();
        cfg.host = "0.0.0.0".to_owned();
        cfg.trace_collector_port = 7701;
        assert_eq!(default_collector_url(&cfg), "http://127.0.0.1:7701");
        cfg.breaker_gateway.collector_url = "http://collector.internal:4000/".to_owned();
        let state = GatewayState::open_with(&cfg, Some("http://127.0.0.1:1"), |_| None).expect("opens");
        assert_eq!(state.collector_url, "http://collector.internal:4000/");
    }

    #[test]
    fn only_the_data_dir_can_make_the_gateway_unready() {
        let away = RedisStatus { configured: true, connected: false, last_error: Some("refused".to_owned()) };
        assert_eq!(redis_check(&away).status, CheckStatus::Degraded);
        let off = RedisStatus { configured: false, connected: false, last_error: None };
        assert_eq!(redis_check(&off).status, CheckStatus::Disabled);
        let stats = EmitterStats { last_error: Some("refused".to_owned()), ..EmitterStats::default() };
        assert_eq!(collector_check("http://x", &stats).status, CheckStatus::Degraded);
        assert_eq!(collector_check("http://x", &EmitterStats::default()).status, CheckStatus::Ok);
        let snapshot = |state| Snapshot {
            id: "oa".to_owned(),
            state,
            calls: 0,
            failures: 0,
            slow_calls: 0,
            failure_rate: 0.0,
            slow_call_rate: 0.0,
            consecutive_trips: 0,
            next_half_open_unix_ms: None,
            probes_admitted: 0,
            shared: false,
        };
        for (state, status) in [
            (State::Closed, CheckStatus::Ok),
            (State::HalfOpen, CheckStatus::Ok),
            (State::Disabled, CheckStatus::Ok),
            (State::Open, CheckStatus::Degraded),
            (State::ForcedOpen, CheckStatus::Degraded),
        ] {
            assert_eq!(breaker_check(&snapshot(state)).status, status, "{state}");
        }
    }
}
