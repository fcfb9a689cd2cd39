//! The trace-collector: one trace format for every step of every run, durable storage, cost
//! attribution, baselines and anomaly flags (see ARCHITECTURE.md for what is built so far).
//!
//! Today it serves the shared operational routes and owns `<data_dir>/trace-collector`, where
//! the event log will live.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web;
use futures_util::future::BoxFuture;
use helix_core::{Check, HelixConfig, ServiceKind};
use utoipa::OpenApi;

/// Shared state of the collector's handlers.
#[derive(Debug)]
pub struct CollectorState {
    data_dir: PathBuf,
}

impl CollectorState {
    pub fn open(cfg: &HelixConfig) -> std::io::Result<CollectorState> {
        let data_dir =
            helix_http::storage::prepare_data_dir(&cfg.service_data_dir(ServiceKind::TraceCollector))?;
        Ok(CollectorState { data_dir })
    }
}

/// Registers the collector's routes on `cfg`.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<CollectorState>) {
    cfg.app_data(state);
}

#[derive(OpenApi)]
#[openapi()]
struct ApiDoc;

/// The collector's complete OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    helix_http::openapi::finish(
        ServiceKind::TraceCollector,
        "Durable traces of every pipeline step: tool calls, LLM calls, gates, retries.",
        ApiDoc::openapi(),
    )
}

/// The collector as served by the shared runtime.
pub struct CollectorService {
    state: web::Data<CollectorState>,
}

impl CollectorService {
    pub fn new(cfg: &HelixConfig) -> std::io::Result<CollectorService> {
        Ok(CollectorService { state: web::Data::new(CollectorState::open(cfg)?) })
    }

    pub fn into_service(self) -> Arc<dyn helix_http::Service> {
        Arc::new(self)
    }
}

impl helix_http::Service for CollectorService {
    fn kind(&self) -> ServiceKind {
        ServiceKind::TraceCollector
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
