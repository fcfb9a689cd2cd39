//! The orchestrator's errors and their codes.

use actix_web::{HttpResponse, ResponseError};
use helix_core::ErrorCode;

use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Path(#[from] crate::confine::PathRefused),
}

impl OrchestratorError {
    pub fn code(&self) -> ErrorCode {
        match self {
            OrchestratorError::Invalid(_) => ErrorCode::InvalidRequest,
            OrchestratorError::NotFound(_) => ErrorCode::NotFound,
            OrchestratorError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            OrchestratorError::Forbidden(_) => ErrorCode::Forbidden,
            OrchestratorError::Path(crate::confine::PathRefused::Outside { .. }) => ErrorCode::PathNotAllowed,
            OrchestratorError::Path(crate::confine::PathRefused::Missing { .. }) => ErrorCode::NotFound,
            OrchestratorError::Engine(e) => match e {
                EngineError::Pipeline(_) => ErrorCode::InvalidPipeline,
                EngineError::NotFound(_) => ErrorCode::NotFound,
                EngineError::Invalid(_) | EngineError::Token(_) => ErrorCode::BadRequest,
                EngineError::Busy(_) | EngineError::Conflict(_) | EngineError::Stale { .. } => {
                    ErrorCode::Conflict
                }
                EngineError::ProjectFull { .. } | EngineError::AllFull { .. } => ErrorCode::ConcurrencyLimit,
                EngineError::State(_) | EngineError::Internal(_) => ErrorCode::Internal,
            },
        }
    }
}

impl ResponseError for OrchestratorError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        helix_http::problem::status_of(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        if let OrchestratorError::Engine(EngineError::Stale { latest, token, .. }) = self {
            // the way on is in the answer: the latest checkpoint and its token
            let mut extra = serde_json::Map::new();
            extra.insert("resume_token".to_owned(), serde_json::Value::from(token.clone()));
            extra.insert("latest_checkpoint".to_owned(), serde_json::Value::from(*latest));
            return helix_http::problem::problem_response_with(self.code(), self.to_string(), extra);
        }
        let mut res = helix_http::problem_response(self.code(), self.to_string());
        if self.code() == ErrorCode::ConcurrencyLimit {
            res.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("5"),
            );
        }
        res
    }
}
