//! Running a [`Service`] on a listener, and stopping it gracefully.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::{Compress, Condition, from_fn};
use actix_web::{App, HttpServer, web};
use helix_core::HelixConfig;
use utoipa_swagger_ui::SwaggerUi;

use crate::Service;
use crate::access::{Access, Policy};
use crate::middleware::request_context;
use crate::problem::{json_error, path_error, query_error};
use crate::routes;

/// HTTP settings shared by every service, taken from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    /// 0: one worker per CPU core.
    pub workers: usize,
    pub shutdown_grace: Duration,
    /// Who may call what (tokens, Host, Origin).
    pub access: Arc<Access>,
}

impl Settings {
    /// The HTTP settings of `cfg` with the tokens of `access`.
    pub fn from_config(cfg: &HelixConfig, access: Arc<Access>) -> Settings {
        Settings {
            max_body_bytes: cfg.max_body_bytes,
            workers: cfg.workers,
            shutdown_grace: Duration::from_secs(cfg.shutdown_grace_secs),
            access,
        }
    }
}

/// A service being served. Dropping it does not stop the server; call [`RunningService::stop`].
pub struct RunningService {
    service: Arc<dyn Service>,
    addr: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningService {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:7703`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kind(&self) -> helix_core::ServiceKind {
        self.service.kind()
    }

    /// A handle that can stop the server from elsewhere (signal handlers).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, then flushes the
    /// service. Returns when all of that is done.
    pub async fn stop(self) -> std::io::Result<()> {
        self.service.stopping();
        self.handle.stop(true).await;
        self.wait().await
    }

    /// Waits until the server stopped (by [`RunningService::stop`] or a handle), then flushes.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(format!("server task failed: {e}"))),
        };
        self.service.shutdown().await;
        tracing::info!(service = self.service.kind().name(), "stopped");
        result
    }
}

/// Serves `service` on `listener` (already bound: pass port 0 for any free port). Must be called
/// inside a tokio runtime. Signals are not handled here; the caller decides when to stop.
pub fn start(
    service: Arc<dyn Service>,
    listener: TcpListener,
    settings: &Settings,
) -> std::io::Result<RunningService> {
    let addr = listener.local_addr()?;
    let doc = service.openapi();
    let shared = web::Data::new(service.clone());
    let limit = settings.max_body_bytes;
    // The gateway relays upstream answers (small JSON bodies, SSE streams) on the latency path of
    // every LLM call: compressing them roughly doubled the latency it adds, and an encoder may hold
    // stream events back; its clients sit next to it, so its answers go uncompressed.
    let compress = service.kind() != helix_core::ServiceKind::BreakerGateway;
    let gateway = service.kind() == helix_core::ServiceKind::BreakerGateway;
    let policy = Arc::new(Policy::new(&doc, settings.access.clone(), gateway));
    // `/openapi.json` is served as serialized once here. Handing the document to Swagger UI made
    // every worker's app keep its own copy of the tree, several MB per service in `helix up`.
    let doc_json = web::Bytes::from(serde_json::to_vec(&doc).map_err(std::io::Error::other)?);
    drop(doc);
    // for handlers that mint keys into the shared authenticator (the gateway's `POST /v1/keys`)
    let access = web::Data::from(settings.access.clone());

    let factory = move || {
        let svc = shared.clone();
        let (policy, service) = (policy.clone(), svc.get_ref().clone());
        App::new()
            .wrap(Condition::new(compress, Compress::default()))
            .wrap(from_fn(move |req, next| request_context(policy.clone(), service.clone(), req, next)))
            .app_data(svc.clone())
            .app_data(access.clone())
            .app_data(web::JsonConfig::default().limit(limit).error_handler(json_error))
            .app_data(web::PayloadConfig::new(limit))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .service(routes::get("/health", routes::health))
            .service(routes::get("/ready", routes::ready))
            .configure(|cfg| svc.configure(cfg))
            .route("/openapi.json", web::get().to(routes::json_document(doc_json.clone())))
            .service(
                SwaggerUi::new("/swagger-ui/{_:.*}").config(utoipa_swagger_ui::Config::from("/openapi.json")),
            )
            .route("/swagger-ui", web::get().to(routes::to_swagger_ui))
            .route("/", web::get().to(routes::to_swagger_ui))
    };

    let mut server = HttpServer::new(factory)
        // Nagle off: a streamed answer (SSE) is many small writes after the head, and with Nagle
        // each waited for the client's delayed ACK, ~40 ms per event burst on a reused connection
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .disable_signals()
        .shutdown_timeout(settings.shutdown_grace.as_secs())
        .listen(listener)?;
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(service = service.kind().name(), %addr, "listening");
    Ok(RunningService { service, addr, handle, task })
}
