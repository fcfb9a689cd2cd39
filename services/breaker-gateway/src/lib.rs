//! The breaker-gateway: an OpenAI- and Anthropic-compatible LLM proxy with circuit breakers,
//! retries, fallbacks, bulkheads and cost metering (see ARCHITECTURE.md for what is built so far).
//!
//! Today it serves the shared operational routes and owns `<data_dir>/breaker-gateway`, where
//! usage and cost records will live.

pub mod accounting;
pub mod breaker;
pub mod protocol;
pub mod proxy;

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web;
use futures_util::future::BoxFuture;
use helix_core::{Check, HelixConfig, ServiceKind};
use utoipa::OpenApi;

/// Shared state of the gateway's handlers.
#[derive(Debug)]
pub struct GatewayState {
    data_dir: PathBuf,
}

impl GatewayState {
    pub fn open(cfg: &HelixConfig) -> std::io::Result<GatewayState> {
        let data_dir =
            helix_http::storage::prepare_data_dir(&cfg.service_data_dir(ServiceKind::BreakerGateway))?;
        Ok(GatewayState { data_dir })
    }
}

/// Registers the gateway's routes on `cfg`.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<GatewayState>) {
    cfg.app_data(state);
}

#[derive(OpenApi)]
#[openapi()]
struct ApiDoc;

/// The gateway's complete OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    helix_http::openapi::finish(
        ServiceKind::BreakerGateway,
        "An OpenAI- and Anthropic-compatible LLM proxy with circuit breakers and fallbacks.",
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
        let dir = self.state.data_dir.clone();
        Box::pin(async move { vec![helix_http::storage::data_dir_check(dir).await] })
    }
}
