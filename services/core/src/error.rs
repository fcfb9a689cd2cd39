//! The closed set of error codes every Helix API answers with, and the RFC 9457 problem body.
//!
//! One table for the whole product (as meilisearch does): a code is stable once released,
//! clients may match on it, and each code has exactly one HTTP status. Services map their own
//! error enums onto these codes; they never invent a status of their own.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Stable, machine-readable error codes. The `type` URI of a problem is `urn:helix:error:<code>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not syntactically valid JSON.
    InvalidJson,
    /// The body is JSON, but does not match the operation's schema (missing field, wrong type,
    /// unknown field, value out of range).
    InvalidRequest,
    /// A query string parameter is missing or invalid.
    InvalidQuery,
    /// Any other malformed request.
    BadRequest,
    /// No such route, or no such resource.
    NotFound,
    /// The route exists, but not for this method.
    MethodNotAllowed,
    /// The body is larger than `max_body_bytes`.
    PayloadTooLarge,
    /// The body's content type is not one the operation accepts.
    UnsupportedMediaType,
    /// A bug on our side; logged with the request id.
    Internal,
    /// A subsystem the operation needs is not available right now.
    Unavailable,
    /// The service is not ready (see `GET /ready`).
    NotReady,
    /// No token was sent, or not a known one (`Authorization: Bearer`, or `x-api-key` for the
    /// breaker-gateway).
    Unauthorized,
    /// The project's daily budget is spent; it resets at the next UTC midnight.
    BudgetExceeded,
    /// Too many calls of a project or to a model's deployments are in flight; retry after
    /// `Retry-After` seconds.
    ConcurrencyLimit,
    /// Every deployment that serves the model has its circuit breaker open; retry after
    /// `Retry-After` seconds.
    CircuitOpen,
    /// No upstream deployment gave a usable answer (connection failed, timed out, invalid body).
    UpstreamFailed,
    /// The resource's state does not allow the operation now (a run that is already running,
    /// or not running).
    Conflict,
    /// A pipeline file is invalid; the detail names the line and the key.
    InvalidPipeline,
    /// The token is valid but lacks the scope the operation needs, or may not access the project.
    Forbidden,
    /// The request's `Host` is not one this service answers to (DNS rebinding protection); add
    /// the name to `auth.allowed_hosts`.
    HostNotAllowed,
    /// A browser page of another origin tried to change state; add the origin to
    /// `auth.cors_origins` to allow it.
    OriginNotAllowed,
    /// A path given by the client lies outside the configured roots (`orchestrator.roots`).
    PathNotAllowed,
}

impl ErrorCode {
    /// All codes, for documentation and tests.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidQuery,
        ErrorCode::BadRequest,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::NotReady,
        ErrorCode::Unauthorized,
        ErrorCode::BudgetExceeded,
        ErrorCode::ConcurrencyLimit,
        ErrorCode::CircuitOpen,
        ErrorCode::UpstreamFailed,
        ErrorCode::Conflict,
        ErrorCode::InvalidPipeline,
        ErrorCode::Forbidden,
        ErrorCode::HostNotAllowed,
        ErrorCode::OriginNotAllowed,
        ErrorCode::PathNotAllowed,
    ];

    /// The code as it appears in problem bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::ConcurrencyLimit => "concurrency_limit",
            ErrorCode::CircuitOpen => "circuit_open",
            ErrorCode::UpstreamFailed => "upstream_failed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidPipeline => "invalid_pipeline",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::HostNotAllowed => "host_not_allowed",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::PathNotAllowed => "path_not_allowed",
        }
    }

    /// The one HTTP status of this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidQuery
            | ErrorCode::BadRequest
            | ErrorCode::InvalidPipeline => 400,
            ErrorCode::Conflict => 409,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::OriginNotAllowed | ErrorCode::PathNotAllowed => 403,
            ErrorCode::HostNotAllowed => 421,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::BudgetExceeded | ErrorCode::ConcurrencyLimit => 429,
            ErrorCode::Internal => 500,
            ErrorCode::UpstreamFailed => 502,
            ErrorCode::Unavailable | ErrorCode::NotReady | ErrorCode::CircuitOpen => 503,
        }
    }

    /// Short human summary, the problem's `title`: the same for every occurrence of the code.
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "request body is not valid json",
            ErrorCode::InvalidRequest => "request body does not match the schema",
            ErrorCode::InvalidQuery => "invalid query parameters",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::NotFound => "not found",
            ErrorCode::MethodNotAllowed => "method not allowed",
            ErrorCode::PayloadTooLarge => "request body too large",
            ErrorCode::UnsupportedMediaType => "unsupported media type",
            ErrorCode::Internal => "internal error",
            ErrorCode::Unavailable => "service unavailable",
            ErrorCode::NotReady => "service not ready",
            ErrorCode::Unauthorized => "missing or invalid token",
            ErrorCode::BudgetExceeded => "daily budget spent",
            ErrorCode::ConcurrencyLimit => "too many calls in flight",
            ErrorCode::CircuitOpen => "every deployment is unavailable",
            ErrorCode::UpstreamFailed => "no upstream answered",
            ErrorCode::Conflict => "conflicts with the resource's state",
            ErrorCode::InvalidPipeline => "invalid pipeline",
            ErrorCode::Forbidden => "not allowed for this token",
            ErrorCode::HostNotAllowed => "host not allowed",
            ErrorCode::OriginNotAllowed => "cross-origin request refused",
            ErrorCode::PathNotAllowed => "path outside the allowed roots",
        }
    }

    /// The problem `type` URI.
    pub fn type_uri(self) -> String {
        format!("urn:helix:error:{}", self.as_str())
    }

    /// The code to use for an error response that was produced without one (by the framework),
    /// judged by its status alone.
    pub fn from_status(status: u16) -> ErrorCode {
        match status {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            421 => ErrorCode::HostNotAllowed,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            503 => ErrorCode::Unavailable,
            400..=499 => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 9457 problem details body, the shape of every 4xx and 5xx answer of every service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:helix:error:invalid_json",
    "title": "request body is not valid json",
    "status": 400,
    "detail": "expected `,` or `}` at line 1 column 12",
    "code": "invalid_json",
    "request_id": "5f0c6d2e-8a43-4f57-a1a4-0f2b7f0b9d11"
}))]
pub struct Problem {
    /// URI identifying the problem type: `urn:helix:error:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary, the same for every occurrence of the code.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong this time, for a human.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// The request id (also in the `x-request-id` header), to find the request in the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: code.type_uri(),
            title: code.title().to_owned(),
            status: code.status(),
            detail: detail.into(),
            code,
            request_id: None,
        }
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Problem {
        self.request_id = request_id;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_consistent() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            // serde name equals as_str, so the documented table and the wire agree
            let wire = serde_json::to_value(code).expect("serialize");
            assert_eq!(wire, serde_json::Value::String(code.as_str().to_owned()));
            assert!((400..600).contains(&code.status()));
            assert!(!code.title().ends_with('.'));
            assert_eq!(code.title(), code.title().to_lowercase());
        }
    }

    #[test]
    fn problem_serializes_rfc9457_members() {
        let p = Problem::new(ErrorCode::PayloadTooLarge, "body of 20 bytes exceeds the limit of 10 bytes");
        let v = serde_json::to_value(&p).expect("serialize");
        assert_eq!(v["type"], "urn:helix:error:payload_too_large");
        assert_eq!(v["status"], 413);
        assert_eq!(v["code"], "payload_too_large");
        assert!(v.get("request_id").is_none());
    }

    #[test]
    fn status_fallback() {
        assert_eq!(ErrorCode::from_status(404), ErrorCode::NotFound);
        assert_eq!(ErrorCode::from_status(418), ErrorCode::BadRequest);
        assert_eq!(ErrorCode::from_status(401), ErrorCode::Unauthorized);
        assert_eq!(ErrorCode::from_status(502), ErrorCode::Internal);
    }
}
