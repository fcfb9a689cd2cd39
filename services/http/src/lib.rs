//! `helix-http`: the HTTP runtime every Helix service shares.
//!
//! A service crate implements [`Service`] (its routes, its OpenAPI document, its readiness checks
//! and what to flush on shutdown); this crate wraps it into an actix-web server with the parts
//! that must be the same everywhere: problem+json errors ([`problem`]), who may call what
//! ([`access`]), request ids, access logs and panic containment ([`middleware`]), `/health`, `/ready`, `/openapi.json` and Swagger UI
//! ([`routes`], [`openapi`]), body limits, and graceful shutdown ([`server`]).
//!
//! The same [`server::start`] runs a service standalone (`helix serve`), all four together
//! (`helix up`) and in-process in tests on port 0, so what the tests exercise is what users run.

pub mod access;
pub mod json;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod server;
pub mod storage;

use actix_web::web;
use futures_util::future::BoxFuture;
use helix_core::{Check, ServiceKind};

pub use json::Json;
pub use problem::{ProblemError, problem_response};
pub use server::{RunningService, Settings, start};

/// What a service crate provides to be served.
pub trait Service: Send + Sync + 'static {
    /// Which service this is.
    fn kind(&self) -> ServiceKind;

    /// Registers the service's own routes. `/health`, `/ready`, `/openapi.json` and Swagger UI
    /// are added by the runner.
    fn configure(&self, cfg: &mut web::ServiceConfig);

    /// The complete OpenAPI document, as built by [`openapi::finish`].
    fn openapi(&self) -> utoipa::openapi::OpenApi;

    /// The subsystem checks reported by `GET /ready`.
    fn readiness(&self) -> BoxFuture<'static, Vec<Check>>;

    /// The answer to a request the access layer refuses (401, 403, 415, 421), when the route
    /// must answer in a shape of its own (the gateway's provider routes answer as the provider
    /// would, because the SDKs parse that shape); None for a problem+json answer.
    fn refusal(
        &self,
        _req: &actix_web::HttpRequest,
        _code: helix_core::ErrorCode,
        _detail: &str,
    ) -> Option<actix_web::HttpResponse> {
        None
    }

    /// Called once when shutdown begins, before in-flight requests are waited for: end what
    /// never ends by itself (live streams), so the grace period is not spent waiting on them.
    fn stopping(&self) {}

    /// Called once after the server stopped accepting and in-flight requests finished (or the
    /// grace period ran out): flush whatever the service buffers.
    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Implements `actix_web::ResponseError` for a service's error enum through its `code()`
/// method, so every error becomes the one problem+json shape with the status of its code.
///
/// ```ignore
/// #[derive(Debug, thiserror::Error)]
/// pub enum HealerError { #[error("text is empty")] EmptyText }
/// impl HealerError { pub fn code(&self) -> ErrorCode { ErrorCode::InvalidRequest } }
/// helix_http::problem_error!(HealerError);
/// ```
#[macro_export]
macro_rules! problem_error {
    ($ty:ty) => {
        impl ::actix_web::ResponseError for $ty {
            fn status_code(&self) -> ::actix_web::http::StatusCode {
                $crate::problem::status_of(self.code())
            }
            fn error_response(&self) -> ::actix_web::HttpResponse {
                $crate::problem::problem_response(self.code(), self.to_string())
            }
        }
    };
}
