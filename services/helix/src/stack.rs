//! Starting and stopping a set of services in this process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use helix_core::auth::{self, Authenticator, Principal, Scope, Scopes, Secret, TokenSource};
use helix_core::{HelixConfig, ServiceKind};
use helix_http::access::Access;
use helix_http::{RunningService, Settings};
use helix_orchestrator::Peers;

/// The file `auth.local_token` writes, under the data directory.
pub const LOCAL_TOKEN_FILE: &str = "local-token";

/// Where the local token of a data directory is.
pub fn local_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCAL_TOKEN_FILE)
}

/// Writes `token` to `path` readable by this user only, atomically (the CLI never reads half).
fn write_private(path: &Path, token: &Secret) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(token.expose().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The tokens of a stack and the one its services send each other.
struct Credentials {
    authenticator: Authenticator,
    peer_token: Option<Secret>,
}

/// Reads the configured tokens (values from the environment or files, never the config), adds
/// the local token and, when tokens are required, a token the services use to call each other.
fn credentials(cfg: &HelixConfig) -> anyhow::Result<Credentials> {
    let env = |name: &str| helix_core::env::var(name);
    let mut authenticator = Authenticator::from_config(&cfg.auth, &cfg.breaker_gateway.keys, &env)?;
    if cfg.auth.local_token {
        let token = auth::generate_token();
        let path = local_token_path(&cfg.data_dir);
        write_private(&path, &token)
            .with_context(|| format!("cannot write the local token to {}", path.display()))?;
        let admin = Principal {
            id: Arc::from("local"),
            scopes: Scopes::of(&[Scope::Admin]),
            projects: None,
            gateway_key: None,
            minted: None,
        };
        authenticator.add("the local token", TokenSource::Value(token), admin, &env)?;
        tracing::info!(path = %path.display(), "local token written (auth.local_token)");
    }
    let needed = authenticator.is_enforced() || authenticator.gateway_enforced();
    let peer_token = match (&cfg.auth.client_token_env, needed) {
        (Some(var), _) => Some(Secret::new(
            env(var)
                .with_context(|| format!("auth.client_token_env: environment variable {var} is not set"))?,
        )),
        (None, true) => {
            // in memory only: services of this process calling each other
            let token = auth::generate_token();
            let internal = Principal {
                id: Arc::from("helix-internal"),
                scopes: Scopes::of(&[
                    Scope::HealerRead,
                    Scope::HealerWrite,
                    Scope::TracesRead,
                    Scope::TracesWrite,
                    Scope::Llm,
                    Scope::OpsRead,
                ]),
                projects: None,
                gateway_key: None,
                minted: None,
            };
            authenticator.add_internal(token.clone(), internal)?;
            Some(token)
        }
        (None, false) => None,
    };
    Ok(Credentials { authenticator, peer_token })
}

/// Services running in this process.
pub struct Stack {
    services: Vec<RunningService>,
}

impl Stack {
    /// Binds every listener first (so a taken port fails before anything starts, and the
    /// orchestrator learns the real ports of its peers when they were 0), then starts each
    /// service on its listener.
    pub async fn start(cfg: &HelixConfig, kinds: &[ServiceKind]) -> anyhow::Result<Stack> {
        if let Some(refusal) =
            auth::bind_refusal(&cfg.host, cfg.tokens_configured(), cfg.auth.allow_unauthenticated)
        {
            anyhow::bail!(refusal);
        }
        if !auth::is_loopback_bind(&cfg.host) && !cfg.tokens_configured() {
            tracing::warn!(
                host = %cfg.host,
                "serving {} without tokens (auth.allow_unauthenticated = true): anyone who can reach it can run commands",
                cfg.host
            );
        }
        // the root of every service's data, private before anything is written into it
        helix_http::storage::prepare_data_dir(&cfg.data_dir)?;
        let creds = credentials(cfg)?;
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
        peers.token = creds.peer_token.clone();
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

        let access = Arc::new(Access::from_config(cfg, Arc::new(creds.authenticator)));
        let settings = Settings::from_config(cfg, access);
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
        ServiceKind::Healer => helix_healer::HealerService::with_peers(
            cfg,
            &peers.trace_collector,
            &peers.breaker_gateway,
            peers.token.clone(),
        )?
        .into_service(),
        ServiceKind::TraceCollector => helix_trace_collector::CollectorService::new(cfg)?.into_service(),
        ServiceKind::BreakerGateway => helix_breaker_gateway::GatewayService::with_peer(
            cfg,
            &peers.trace_collector,
            peers.token.clone(),
        )?
        .into_service(),
        ServiceKind::Orchestrator => {
            helix_orchestrator::OrchestratorService::new(cfg, peers.clone())?.into_service()
        }
    })
}
