//! Routes every service has: `/health`, `/ready`, and redirects to Swagger UI.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use helix_core::error::PROBLEM_JSON;
use helix_core::{ErrorCode, Health, Problem, Readiness, ReadyStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Service;
use crate::middleware::current_request_id;

/// The service handle the common routes read, stored as app data.
pub(crate) type SharedService = web::Data<Arc<dyn Service>>;

/// Liveness probe
///
/// Answers 200 as long as the process serves HTTP. It checks nothing else; use `/ready` for that.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    operation_id = "health",
    security(()),
    responses((status = 200, description = "the service is alive", body = Health))
)]
pub async fn health(svc: SharedService) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".to_owned(),
        service: svc.kind().name().to_owned(),
        version: helix_core::VERSION.to_owned(),
    })
}

/// Answer of `/ready` when the service is not ready: a problem with the checks attached.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotReady {
    #[serde(flatten)]
    pub problem: Problem,
    #[schema(example = "healer")]
    pub service: String,
    pub checks: Vec<helix_core::Check>,
}

/// Readiness probe
///
/// Lists each subsystem and its status. 200 when the service can serve its API (status `ready`,
/// or `degraded` when something optional is missing), 503 with a problem body listing the checks
/// when it cannot. Open to callers on this machine; others need `ops:read` (`auth.probes`).
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    operation_id = "ready",
    security(("bearer" = ["ops:read"])),
    responses(
        (status = 200, description = "ready or degraded", body = Readiness),
        (status = 503, description = "not ready", body = NotReady, content_type = "application/problem+json")
    )
)]
pub async fn ready(svc: SharedService) -> HttpResponse {
    let readiness = Readiness::from_checks(svc.kind().name(), svc.readiness().await);
    if readiness.status != ReadyStatus::NotReady {
        return HttpResponse::Ok().json(readiness);
    }
    let down: Vec<String> = readiness
        .checks
        .iter()
        .filter(|c| c.status == helix_core::CheckStatus::Down)
        .map(|c| format!("{}: {}", c.name, c.detail.as_deref().unwrap_or("down")))
        .collect();
    let body = NotReady {
        problem: Problem::new(ErrorCode::NotReady, down.join("; ")).with_request_id(current_request_id()),
        service: readiness.service,
        checks: readiness.checks,
    };
    HttpResponse::ServiceUnavailable().insert_header((header::CONTENT_TYPE, PROBLEM_JSON)).json(body)
}

/// `GET /` and `GET /swagger-ui` lead a browser to Swagger UI.
pub async fn to_swagger_ui(_req: HttpRequest) -> HttpResponse {
    HttpResponse::TemporaryRedirect().insert_header((header::LOCATION, "/swagger-ui/")).finish()
}

/// `GET /openapi.json`: the service's document, serialized once at start.
pub fn json_document(
    body: actix_web::web::Bytes,
) -> impl Fn() -> std::future::Ready<HttpResponse> + Clone + 'static {
    move || std::future::ready(HttpResponse::Ok().content_type("application/json").body(body.clone()))
}

/// A 405 for a resource that exists but not for this method, with the `Allow` header.
pub fn method_not_allowed(
    allow: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<HttpResponse> + Clone + 'static {
    move |req: HttpRequest| {
        let problem = Problem::new(
            ErrorCode::MethodNotAllowed,
            format!("{} is not allowed on {}; allowed: {allow}", req.method(), req.path()),
        )
        .with_request_id(current_request_id());
        let mut res = crate::problem::problem_body(actix_web::http::StatusCode::METHOD_NOT_ALLOWED, &problem);
        if let Ok(v) = header::HeaderValue::from_str(allow) {
            res.headers_mut().insert(header::ALLOW, v);
        }
        std::future::ready(res)
    }
}

/// Registers `path` with GET `handler`, and a 405 with `Allow: GET` for other methods.
pub fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path).route(web::get().to(handler)).default_service(web::to(method_not_allowed("GET")))
}

/// Registers `path` with POST `handler`, and a 405 with `Allow: POST` for other methods.
pub fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path).route(web::post().to(handler)).default_service(web::to(method_not_allowed("POST")))
}

/// The `limit` query parameter every list endpoint takes: `default` when absent, an error
/// message when 0 or above `max`.
pub fn limit(value: Option<usize>, default: usize, max: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(0) => Err("limit must be at least 1".to_owned()),
        Some(l) if l > max => Err(format!("limit must be at most {max}")),
        Some(l) => Ok(l),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits() {
        assert_eq!(super::limit(None, 20, 100), Ok(20));
        assert_eq!(super::limit(Some(5), 20, 100), Ok(5));
        assert!(super::limit(Some(0), 20, 100).is_err());
        assert_eq!(super::limit(Some(101), 20, 100), Err("limit must be at most 100".to_owned()));
    }
}
