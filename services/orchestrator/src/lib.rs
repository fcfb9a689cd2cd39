//! The orchestrator: multi-phase pipelines with quality gates, checkpoints, resume tokens,
//! replay, dry runs and healing retries (see ARCHITECTURE.md for what is built so far).
//!
//! It is the one service that depends on the others, and only over HTTP: [`Peers`] holds their
//! base URLs, and `/ready` reports whether each answers. A peer that is down degrades the
//! orchestrator; it does not make it unready, since runs that need no peer still work.

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

/// Base URLs of the services the orchestrator calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    pub healer: String,
    pub trace_collector: String,
    pub breaker_gateway: String,
}

impl Peers {
    /// The peers as the configuration places them: same host, configured ports. A wildcard bind
    /// address is reached over loopback.
    pub fn from_config(cfg: &HelixConfig) -> Peers {
        let host = match cfg.host.as_str() {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
            h => h,
        };
        let url = |kind| format!("http://{host}:{}", cfg.port(kind));
        Peers {
            healer: url(ServiceKind::Healer),
            trace_collector: url(ServiceKind::TraceCollector),
            breaker_gateway: url(ServiceKind::BreakerGateway),
        }
    }
}

/// Shared state of the orchestrator's handlers.
#[derive(Debug)]
pub struct OrchestratorState {
    data_dir: PathBuf,
    peers: Vec<(ServiceKind, ServiceClient)>,
}

impl OrchestratorState {
    pub fn open(cfg: &HelixConfig, peers: Peers) -> std::io::Result<OrchestratorState> {
        let data_dir =
            helix_http::storage::prepare_data_dir(&cfg.service_data_dir(ServiceKind::Orchestrator))?;
        let client = |url: &str| {
            ServiceClient::new(url, PEER_PROBE_TIMEOUT).map_err(|e| std::io::Error::other(e.to_string()))
        };
        let peers = vec![
            (ServiceKind::Healer, client(&peers.healer)?),
            (ServiceKind::TraceCollector, client(&peers.trace_collector)?),
            (ServiceKind::BreakerGateway, client(&peers.breaker_gateway)?),
        ];
        Ok(OrchestratorState { data_dir, peers })
    }
}

/// Registers the orchestrator's routes on `cfg`.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<OrchestratorState>) {
    cfg.app_data(state);
}

#[derive(OpenApi)]
#[openapi()]
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
