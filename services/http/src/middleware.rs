//! The one middleware every request passes: request id, access log, the access checks
//! ([`crate::access`]), panic containment and the problem+json safety net.
//!
//! Why one function and not five: the order matters (the request id must be known when a refusal
//! or a panic is answered, and the safety net must see the 500), and keeping it in one place makes
//! the order obvious.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use futures_util::FutureExt;
use helix_core::error::PROBLEM_JSON;
use helix_core::{ErrorCode, Problem};
use tracing::Instrument;

use crate::Service;
use crate::access::{Denied, Policy};
use crate::problem::problem_body;

/// Header carrying the request id, echoed when the client sent a usable one.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id we echo; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Largest framework error body copied into a problem's detail.
const MAX_DETAIL_BYTES: usize = 1024;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client's id is kept if it is short and printable ASCII (it ends up in logs and headers).
fn usable_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= MAX_REQUEST_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

/// Methods and headers a CORS preflight may ask for.
const CORS_METHODS: &str = "GET, POST, OPTIONS";
const CORS_HEADERS: &str = "authorization, content-type, x-api-key, x-request-id, traceparent, anthropic-version, anthropic-beta, openai-organization, openai-project";
const CORS_EXPOSE: &str = "x-request-id, retry-after, x-helix-deployment, x-helix-fallback-from, x-helix-cost-usd, x-helix-overhead-ms";

/// The answer to a refused request: the service's own error shape when it has one (the gateway's
/// provider routes), else a problem; a 401 names the scheme.
fn refusal(
    service: &dyn Service,
    req: &actix_web::HttpRequest,
    denied: &Denied,
    request_id: &str,
) -> actix_web::HttpResponse {
    let mut res = match service.refusal(req, denied.code, &denied.detail) {
        Some(mut res) => {
            res.extensions_mut().insert(OwnErrorShape);
            res
        }
        None => {
            let problem =
                Problem::new(denied.code, denied.detail.clone()).with_request_id(Some(request_id.to_owned()));
            problem_body(crate::problem::status_of(denied.code), &problem)
        }
    };
    if denied.code == ErrorCode::Unauthorized {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"helix\""));
    }
    res
}

/// See the module docs.
pub async fn request_context(
    policy: Arc<Policy>,
    service: Arc<dyn Service>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(usable_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let path = req.path().to_owned();
    let span = tracing::info_span!("http", request_id = %request_id, %method, %path);
    let started = Instant::now();

    let cors = policy.cors_origin(req.request());
    let early = match policy.check_host(&req) {
        Err(denied) => Some(refusal(&*service, req.request(), &denied, &request_id)),
        Ok(()) if is_preflight(&req) => Some(match &cors {
            Some(_) => actix_web::HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                .finish(),
            None => {
                let denied = Denied {
                    code: ErrorCode::OriginNotAllowed,
                    detail: "this origin may not call this service; add it to `auth.cors_origins`".to_owned(),
                };
                refusal(&*service, req.request(), &denied, &request_id)
            }
        }),
        Ok(()) => {
            policy.check(&req).err().map(|denied| refusal(&*service, req.request(), &denied, &request_id))
        }
    };
    if let Some(mut res) = early {
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            res.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        add_cors(&mut res, cors.as_deref());
        let status = res.status().as_u16();
        span.in_scope(|| {
            tracing::info!(status, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "request refused")
        });
        return Ok(req.into_response(res));
    }

    let inner = REQUEST_ID.scope(request_id.clone(), async move {
        // The call itself may panic before returning a future, hence two guards.
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| next.call(req)));
        let outcome = match called {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        // The request was consumed by the call (and must not be cloned before routing), so an
        // error or panic is returned as an error that renders itself, request id included.
        match outcome {
            Ok(Ok(res)) => Ok(ensure_problem(res.map_into_boxed_body()).await),
            Ok(Err(err)) => {
                let res = err.error_response();
                let status = res.status();
                let body = body_text(res.into_body()).await;
                // an error that already renders as a problem keeps its detail
                let detail = serde_json::from_str::<Problem>(&body).map(|p| p.detail).unwrap_or(body);
                Err(Escaped::new(status, detail))
            }
            Err(panic) => {
                let what = panic_message(&panic);
                tracing::error!(panic = %what, "handler panicked");
                Err(Escaped::new(
                    actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                ))
            }
        }
    });
    let mut res = match inner.instrument(span.clone()).await {
        Ok(res) => res,
        Err(escaped) => {
            let status = escaped.problem.status;
            span.in_scope(|| {
                tracing::info!(status, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "request")
            });
            return Err(escaped.into());
        }
    };

    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    add_cors(res.response_mut(), cors.as_deref());
    let status = res.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if path == "/health" || path == "/ready" {
            tracing::debug!(status, elapsed_ms, "request");
        } else {
            tracing::info!(status, elapsed_ms, "request");
        }
    });
    Ok(res)
}

fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == actix_web::http::Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The CORS headers of an answer to an origin listed in `auth.cors_origins`.
fn add_cors(res: &mut actix_web::HttpResponse<impl MessageBody>, origin: Option<&str>) {
    let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else { return };
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CORS_EXPOSE));
}

/// An error or panic that escaped the handlers, rendered as a problem by the HTTP layer.
#[derive(Debug)]
struct Escaped {
    problem: Problem,
}

impl Escaped {
    fn new(status: actix_web::http::StatusCode, detail: String) -> Escaped {
        Escaped { problem: problem_for_status(status, detail) }
    }
}

impl std::fmt::Display for Escaped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem.detail)
    }
}

impl actix_web::ResponseError for Escaped {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(self.problem.status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let mut res = problem_body(self.status_code(), &self.problem);
        if let Some(id) = self.problem.request_id.as_deref().and_then(|id| HeaderValue::from_str(id).ok()) {
            res.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
        res
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// The start of a framework error body as text, for a problem's detail.
async fn body_text(body: BoxBody) -> String {
    actix_web::body::to_bytes_limited(body, MAX_DETAIL_BYTES)
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default()
}

/// The problem for a response that carries only a status: the code that status stands for,
/// the status kept, the title when there is no detail.
fn problem_for_status(status: actix_web::http::StatusCode, detail: String) -> Problem {
    let code = ErrorCode::from_status(status.as_u16());
    let detail = if detail.is_empty() { code.title().to_owned() } else { detail };
    let mut problem = Problem::new(code, detail).with_request_id(current_request_id());
    problem.status = status.as_u16();
    problem
}

/// Marks an error response whose body is deliberately not a problem, so the safety net leaves it
/// alone: the breaker-gateway's proxy routes answer in the shape of the LLM provider they stand in
/// for, because the official SDKs parse that shape. Insert it into the response's extensions.
#[derive(Debug, Clone, Copy)]
pub struct OwnErrorShape;

/// Rewrites an error response that is not problem+json (a framework 404, 405, 413, an extractor
/// error rendered as text) into the problem shape, keeping its status and text as the detail.
async fn ensure_problem(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    if status.as_u16() < 400 || res.response().extensions().contains::<OwnErrorShape>() {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return res;
    }
    let (req, response) = res.into_parts();
    let allow = response.headers().get(header::ALLOW).cloned();
    let body = body_text(response.into_body()).await;
    let detail = if !body.is_empty() {
        body.trim_end_matches('.').to_lowercase()
    } else {
        match ErrorCode::from_status(status.as_u16()) {
            ErrorCode::NotFound => format!("no route for {} {}", req.method(), req.path()),
            ErrorCode::MethodNotAllowed => format!("{} is not allowed on {}", req.method(), req.path()),
            // the title of the code, filled in by problem_for_status
            _ => String::new(),
        }
    };
    let problem = problem_for_status(status, detail);
    let mut response = problem_body(status, &problem);
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), detail = %problem.detail, "request failed");
    }
    ServiceResponse::new(req, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked_before_echoing() {
        let ok = HeaderValue::from_static("abc-123_X.y");
        assert_eq!(usable_request_id(&ok).as_deref(), Some("abc-123_X.y"));
        assert_eq!(usable_request_id(&HeaderValue::from_static("")), None);
        assert_eq!(usable_request_id(&HeaderValue::from_static("has space")), None);
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        assert_eq!(usable_request_id(&HeaderValue::from_str(&long).expect("header")), None);
    }
}
