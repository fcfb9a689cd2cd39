//! Starting and stopping a set of services in this process.

use std::net::TcpListener;

use anyhow::Context;
use helix_core::{HelixConfig, ServiceKind};
use helix_http::{RunningService, Settings};
use helix_orchestrator::Peers;

/// Services running in this process.
pub struct Stack {
    services: Vec<RunningService>,
}

impl Stack {
    /// Binds every listener first (so a taken port fails before anything starts, and the
    /// orchestrator learns the real ports of its peers when they were 0), then starts each
    /// service on its listener.
    pub async fn start(cfg: &HelixConfig, kinds: &[ServiceKind]) -> anyhow::Result<Stack> {
        let mut listeners = Vec::new();
        for &kind in kinds {
            let port = cfg.port(kind);
            let listener = TcpListener::bind((cfg.host.as_str(), port)).with_context(|| {
                format!(
                    "cannot listen for {kind} on {}:{port} (config key `{}`)",
                    cfg.host,
                    HelixConfig::port_key(kind)
                )
            })?;
            listeners.push((kind, listener));
        }

        let mut peers = Peers::from_config(cfg);
        for (kind, listener) in &listeners {
            let mut addr = listener.local_addr()?;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let url = format!("http://{addr}");
            match kind {
                ServiceKind::Healer => peers.healer = url,
                ServiceKind::TraceCollector => peers.trace_collector = url,
                ServiceKind::BreakerGateway => peers.breaker_gateway = url,
                ServiceKind::Orchestrator => {}
            }
        }

        let settings = Settings::from_config(cfg);
        let mut services = Vec::new();
        for (kind, listener) in listeners {
            let service = build(kind, cfg, &peers).with_context(|| format!("cannot start {kind}"))?;
            services.push(helix_http::start(service, listener, &settings)?);
        }
        Ok(Stack { services })
    }

    pub fn services(&self) -> &[RunningService] {
        &self.services
    }

    /// Base URL of a running service.
    pub fn url(&self, kind: ServiceKind) -> Option<String> {
        self.services.iter().find(|s| s.kind() == kind).map(RunningService::url)
    }

    /// Stops all services at once: each stops accepting, finishes in-flight requests within the
    /// grace period, then flushes. Returns the first error, after every service was stopped.
    pub async fn stop(self) -> anyhow::Result<()> {
        let results =
            futures_util::future::join_all(self.services.into_iter().map(RunningService::stop)).await;
        for r in results {
            r?;
        }
        Ok(())
    }
}

fn build(
    kind: ServiceKind,
    cfg: &HelixConfig,
    peers: &Peers,
) -> anyhow::Result<std::sync::Arc<dyn helix_http::Service>> {
    Ok(match kind {
        ServiceKind::Healer => helix_healer::HealerService::new(cfg)?.into_service(),
        ServiceKind::TraceCollector => helix_trace_collector::CollectorService::new(cfg)?.into_service(),
        ServiceKind::BreakerGateway => {
            helix_breaker_gateway::GatewayService::with_collector(cfg, &peers.trace_collector)?.into_service()
        }
        ServiceKind::Orchestrator => {
            helix_orchestrator::OrchestratorService::new(cfg, peers.clone())?.into_service()
        }
    })
}
