//! The `helix` command line as a library: starting the services (all four in one process, or one
//! alone), the OpenAPI documents, and configuration loading from the real environment.
//!
//! `main.rs` only parses arguments and calls in here, so integration tests start exactly what
//! `helix up` starts.

pub mod cli;
pub mod client;
pub mod costs_view;
pub mod heal;
pub mod isolate;
pub mod runs_view;
pub mod stack;
pub mod trace_view;

use helix_core::ServiceKind;

/// Every service's complete OpenAPI document, in [`ServiceKind::ALL`] order.
pub fn openapi_documents() -> Vec<(ServiceKind, utoipa::openapi::OpenApi)> {
    ServiceKind::ALL.into_iter().map(|k| (k, openapi_document(k))).collect()
}

/// One service's complete OpenAPI document.
pub fn openapi_document(kind: ServiceKind) -> utoipa::openapi::OpenApi {
    match kind {
        ServiceKind::Healer => helix_healer::openapi(),
        ServiceKind::TraceCollector => helix_trace_collector::openapi(),
        ServiceKind::BreakerGateway => helix_breaker_gateway::openapi(),
        ServiceKind::Orchestrator => helix_orchestrator::openapi(),
    }
}
