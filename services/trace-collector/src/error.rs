//! The collector's errors and their codes.

use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use helix_core::ErrorCode;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("no trace {0}")]
    TraceNotFound(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The caller's token may not see or write the project.
    #[error("{0}")]
    Forbidden(String),
}

impl CollectorError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CollectorError::Store(StoreError::Busy) => ErrorCode::Unavailable,
            CollectorError::Store(_) => ErrorCode::Internal,
            CollectorError::Invalid(_) => ErrorCode::InvalidRequest,
            CollectorError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            CollectorError::TraceNotFound(_) => ErrorCode::NotFound,
            CollectorError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            CollectorError::Forbidden(_) => ErrorCode::Forbidden,
        }
    }
}

/// The blocking thread pool failed (a panic in the closure, or shutdown): an internal error.
impl From<actix_web::error::BlockingError> for CollectorError {
    fn from(e: actix_web::error::BlockingError) -> CollectorError {
        CollectorError::Store(StoreError::Io {
            path: "worker pool".to_owned(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}

impl ResponseError for CollectorError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        helix_http::problem::status_of(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = helix_http::problem_response(self.code(), self.to_string());
        // back-pressure: tell the client when to come back instead of queueing without bound
        if matches!(self, CollectorError::Store(StoreError::Busy)) {
            res.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        res
    }
}
