//! Turning errors into RFC 9457 problem+json responses.
//!
//! Three ways lead here: a service's own error enum (through [`crate::problem_error!`]), the
//! extractor error handlers below (invalid JSON, bad query, too large, wrong media type), and
//! the middleware's safety net that rewrites any other error response the framework produced.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{
    HttpRequest, HttpResponse, ResponseError, error::JsonPayloadError, error::QueryPayloadError,
};
use helix_core::error::PROBLEM_JSON;
use helix_core::{ErrorCode, Problem};

use crate::middleware::current_request_id;

/// The HTTP status of a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A problem+json response for `code`. 5xx are logged here, once, with the request id.
pub fn problem_response(code: ErrorCode, detail: impl Into<String>) -> HttpResponse {
    let problem = Problem::new(code, detail).with_request_id(current_request_id());
    if code.status() >= 500 {
        tracing::error!(code = code.as_str(), detail = %problem.detail, "request failed");
    }
    problem_body(status_of(code), &problem)
}

/// [`problem_response`] with extension members (RFC 9457 section 3.2), e.g. the token a
/// client needs to go on after a 409.
pub fn problem_response_with(
    code: ErrorCode,
    detail: impl Into<String>,
    extra: serde_json::Map<String, serde_json::Value>,
) -> HttpResponse {
    let problem = Problem::new(code, detail).with_request_id(current_request_id());
    let mut value = serde_json::to_value(&problem).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        for (k, v) in extra {
            obj.entry(k).or_insert(v);
        }
    }
    HttpResponse::build(status_of(code))
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
        .body(serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec()))
}

/// Serializes a problem with an explicit status (the safety net keeps the framework's status).
pub(crate) fn problem_body(status: StatusCode, problem: &Problem) -> HttpResponse {
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| b"{}".to_vec());
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
        .body(body)
}

/// A plain error with a code and a detail message, for errors raised outside a service's enum.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ProblemError {
    pub code: ErrorCode,
    pub detail: String,
}

impl ProblemError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ProblemError {
        ProblemError { code, detail: detail.into() }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl ResponseError for ProblemError {
    fn status_code(&self) -> StatusCode {
        status_of(self.code)
    }
    fn error_response(&self) -> HttpResponse {
        problem_response(self.code, self.detail.clone())
    }
}

/// Error handler of `web::JsonConfig`: syntax errors are `invalid_json`, schema mismatches
/// `invalid_request`, too large bodies `payload_too_large`.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use serde_json::error::Category;
    let problem = match &err {
        JsonPayloadError::OverflowKnownLength { length, limit } => ProblemError::new(
            ErrorCode::PayloadTooLarge,
            format!("body of {length} bytes exceeds the limit of {limit} bytes"),
        ),
        JsonPayloadError::Overflow { limit } => {
            ProblemError::new(ErrorCode::PayloadTooLarge, format!("body exceeds the limit of {limit} bytes"))
        }
        JsonPayloadError::ContentType => ProblemError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a body of content type application/json",
        ),
        JsonPayloadError::Deserialize(e) => match e.classify() {
            Category::Data => ProblemError::new(ErrorCode::InvalidRequest, e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                ProblemError::new(ErrorCode::InvalidJson, e.to_string())
            }
        },
        JsonPayloadError::Payload(actix_web::error::PayloadError::Overflow) => {
            ProblemError::new(ErrorCode::PayloadTooLarge, "body exceeds the configured limit")
        }
        JsonPayloadError::Payload(e) => {
            ProblemError::new(ErrorCode::BadRequest, format!("cannot read the body: {e}"))
        }
        other => ProblemError::new(ErrorCode::BadRequest, other.to_string().to_lowercase()),
    };
    problem.into()
}

/// Error handler of `web::QueryConfig`.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let detail = match &err {
        QueryPayloadError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    ProblemError::new(ErrorCode::InvalidQuery, detail).into()
}

/// Error handler of `web::PathConfig`: a path segment that does not parse names no resource.
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ProblemError::new(ErrorCode::NotFound, err.to_string()).into()
}
