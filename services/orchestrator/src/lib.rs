//! The orchestrator: multi-phase pipelines with quality gates, checkpoints, resume tokens,
//! replay, dry runs and healing retries (see ARCHITECTURE.md for what is built so far).
//!
//! It is the one service that depends on the others, and only over HTTP: [`Peers`] holds their
//! base URLs, and `/ready` reports whether each answers. A peer that is down degrades the
//! orchestrator; it does not make it unready, since runs that need no peer still work.
//!
//! Layout: [`pipeline`] (the `pipeline.toml` format), [`exec`] (running commands safely),
//! [`gates`] and [`testsummary`] (quality gates), [`checkpoint`] and [`token`] (durable state),
//! [`patch`] (applying the healer's fixes), [`emit`] (trace events to the collector),
//! [`engine`] (runs: phases, attempts, healing, resume, replay, plans), [`routes`] (thin
//! handlers).

pub mod agent;
pub mod checkpoint;
pub mod confine;
pub mod contain;
pub mod emit;
pub mod engine;
pub mod error;
pub mod exec;
pub mod flaky;
pub mod gates;
pub mod patch;
pub mod pipeline;
pub mod routes;
pub mod scan;
pub mod secrets;
pub mod testsummary;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use futures_util::future::BoxFuture;
use helix_core::client::ServiceClient;
use helix_core::{Check, CheckStatus, HelixConfig, ServiceKind};
use utoipa::OpenApi;

/// How long a peer may take to answer its health probe before it counts as unreachable.
const PEER_PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Base URLs of the services the orchestrator calls, and the token it sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    pub healer: String,
    pub trace_collector: String,
    pub breaker_gateway: String,
    /// A Helix token with the scopes the orchestrator uses (`healer:*`, `traces:*`, `llm`), when
    /// the peers require one.
    pub token: Option<helix_core::auth::Secret>,
}

impl Peers {
    /// The peers as the configuration places them (`[peers]`, else the same host with the
    /// configured ports; a wildcard bind address is reached over loopback).
    pub fn from_config(cfg: &HelixConfig) -> Peers {
        Peers {
            healer: cfg.peer_url(ServiceKind::Healer),
            trace_collector: cfg.peer_url(ServiceKind::TraceCollector),
            breaker_gateway: cfg.peer_url(ServiceKind::BreakerGateway),
            token: None,
        }
    }
}

/// Calls to the healer and the collector during a run: short, a run never waits long on them.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Trace events buffered while the collector is away; more are dropped and counted.
const EMIT_CAPACITY: usize = 10_000;

/// Shared state of the orchestrator's handlers.
#[derive(Debug)]
pub struct OrchestratorState {
    data_dir: PathBuf,
    peers: Vec<(ServiceKind, ServiceClient)>,
    pub engine: Arc<engine::Engine>,
    /// Where `pipeline_path` and `workdir` may point.
    pub roots: confine::Roots,
    /// The working directory at start: relative client paths are relative to it.
    cwd: PathBuf,
}

impl OrchestratorState {
    pub fn cwd(&self) -> PathBuf {
        self.cwd.clone()
    }
}

impl OrchestratorState {
    /// Opens the state; must run inside a tokio runtime (the trace emitter is a task).
    pub fn open(cfg: &HelixConfig, peers: Peers) -> std::io::Result<OrchestratorState> {
        let data_dir =
            helix_http::storage::prepare_data_dir(&cfg.service_data_dir(ServiceKind::Orchestrator))?;
        let client = |url: &str, timeout| {
            ServiceClient::new(url, timeout)
                .map(|c| c.with_token(peers.token.clone()))
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        let probes = vec![
            (ServiceKind::Healer, client(&peers.healer, PEER_PROBE_TIMEOUT)?),
            (ServiceKind::TraceCollector, client(&peers.trace_collector, PEER_PROBE_TIMEOUT)?),
            (ServiceKind::BreakerGateway, client(&peers.breaker_gateway, PEER_PROBE_TIMEOUT)?),
        ];
        let o = &cfg.orchestrator;
        let clients = engine::Clients {
            healer: client(&peers.healer, PEER_CALL_TIMEOUT)?,
            collector: client(&peers.trace_collector, PEER_CALL_TIMEOUT)?,
            gateway: client(&peers.breaker_gateway, Duration::from_secs(o.llm_timeout_secs.max(1)))?,
        };
        let emitter = emit::Emitter::for_client(&clients.collector, EMIT_CAPACITY);
        let settings = engine::EngineSettings {
            max_runs_per_project: o.max_runs_per_project.max(1),
            max_runs: o.max_runs.max(1),
            retry_backoff: Duration::from_millis(o.retry_backoff_ms),
            escalation_webhook: o.escalation_webhook.clone(),
            // the key itself lives only in the environment
            gateway_key: helix_core::env::var(&o.gateway_key_env).filter(|k| !k.is_empty()),
            exclude: o.exclude.clone(),
            // phases see none of Helix's data but their own workspace, and no token file
            sandbox: exec::Sandbox::detect(
                o.sandbox,
                vec![cfg.data_dir.clone()],
                cfg.auth
                    .tokens
                    .iter()
                    .filter_map(|t| t.token_file.clone())
                    .chain(o.secrets_file.clone())
                    .collect(),
            )
            .map_err(std::io::Error::other)?,
            rlimits: exec::Rlimits::from_config(&o.limits),
            phase_timeout: Duration::from_secs(o.phase_timeout_secs.max(1)),
            secrets_file: o.secrets_file.clone(),
            containment: contain::Containment::detect(&data_dir),
        };
        let engine = engine::Engine::open(&data_dir, clients, emitter, settings)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let engine = Arc::new(engine);
        if o.takeover_secs > 0 {
            engine::takeover::spawn(Arc::downgrade(&engine), Duration::from_secs(o.takeover_secs));
        }
        let cwd = std::env::current_dir()?;
        let roots = confine::Roots::new(&o.roots, &cwd);
        tracing::info!(roots = ?roots.list(), "pipeline files and workdirs are served from these directories");
        Ok(OrchestratorState { data_dir, peers: probes, engine, roots, cwd })
    }
}

/// Registers the orchestrator's routes on `cfg`.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<OrchestratorState>) {
    cfg.app_data(state)
        .service(
            web::resource("/v1/runs")
                .route(web::get().to(routes::list))
                .route(web::post().to(routes::start))
                .default_service(web::to(helix_http::routes::method_not_allowed("GET, POST"))),
        )
        .service(helix_http::routes::get("/v1/runs/{id}", routes::get))
        .service(helix_http::routes::get("/v1/runs/{id}/events", routes::events))
        .service(helix_http::routes::post("/v1/runs/{id}/cancel", routes::cancel))
        .service(helix_http::routes::post("/v1/runs/{id}/resume", routes::resume))
        .service(helix_http::routes::post("/v1/runs/{id}/phases/{phase}/replay", routes::replay));
}

#[derive(OpenApi)]
#[openapi(
    paths(
        routes::start,
        routes::list,
        routes::get,
        routes::events,
        routes::cancel,
        routes::resume,
        routes::replay
    ),
    components(schemas(
        routes::StartRun,
        routes::RunList,
        routes::ResumeRun,
        routes::Accepted,
        engine::RunView,
        engine::RunStatus,
        engine::PhaseStatus,
        engine::PhaseRecord,
        engine::Attempt,
        engine::HealRecord,
        engine::AppliedFix,
        engine::LlmExchange,
        engine::RunEvent,
        engine::Plan,
        engine::PlannedPhase,
        engine::ReplayReport,
        engine::FileChange
    )),
    tags((name = "runs", description = "Pipelines: start, follow, cancel, resume, replay, plan"))
)]
struct ApiDoc;

/// The orchestrator's complete OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    helix_http::openapi::finish(
        ServiceKind::Orchestrator,
        "Runs multi-phase pipelines with quality gates, checkpoints, resume and healing retries.",
        ApiDoc::openapi(),
    )
}

/// The orchestrator as served by the shared runtime.
pub struct OrchestratorService {
    state: web::Data<OrchestratorState>,
}

impl OrchestratorService {
    pub fn new(cfg: &HelixConfig, peers: Peers) -> std::io::Result<OrchestratorService> {
        Ok(OrchestratorService { state: web::Data::new(OrchestratorState::open(cfg, peers)?) })
    }

    pub fn into_service(self) -> Arc<dyn helix_http::Service> {
        Arc::new(self)
    }
}

async fn peer_check(kind: ServiceKind, client: ServiceClient) -> Check {
    match client.health().await {
        Ok(_) => Check::new(kind.name(), CheckStatus::Ok, client.base_url()),
        Err(e) => Check::new(kind.name(), CheckStatus::Degraded, e.to_string()),
    }
}

impl helix_http::Service for OrchestratorService {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Orchestrator
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        configure(cfg, self.state.clone());
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        openapi()
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let engine = self.state.engine.clone();
        Box::pin(async move { engine.shutdown(Duration::from_secs(10)).await })
    }

    fn readiness(&self) -> BoxFuture<'static, Vec<Check>> {
        let dir = self.state.data_dir.clone();
        let peers = self.state.peers.clone();
        Box::pin(async move {
            let mut checks = vec![helix_http::storage::data_dir_check(dir).await];
            let probes = peers.into_iter().map(|(kind, client)| peer_check(kind, client));
            checks.extend(futures_util::future::join_all(probes).await);
            checks
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_follow_the_configured_ports_over_loopback() {
        let cfg = HelixConfig { host: "0.0.0.0".to_owned(), healer_port: 9003, ..HelixConfig::default() };
        let peers = Peers::from_config(&cfg);
        assert_eq!(peers.healer, "http://127.0.0.1:9003");
        assert_eq!(peers.trace_collector, "http://127.0.0.1:7701");
        assert_eq!(peers.breaker_gateway, "http://127.0.0.1:7702");
    }
}
