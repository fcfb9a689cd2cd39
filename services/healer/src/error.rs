//! The healer's errors and their codes.

use helix_core::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum HealerError {
    #[error("{0}")]
    Storage(std::io::Error),
    #[error("text is empty")]
    EmptyText,
    #[error("invalid pattern file {0}")]
    Patterns(#[from] crate::patterns::PatternError),
    #[error("no pattern with id {0:?}")]
    PatternNotFound(String),
    #[error("signature {0} has never been seen")]
    SignatureNotFound(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    Index(#[from] crate::index::IndexError),
    #[error("analysis failed: {0}")]
    Internal(String),
    /// A body rejected before it reached the domain (bad JSON, wrong media type).
    #[error("{0}")]
    Body(helix_http::ProblemError),
    /// The caller's token may not access the project.
    #[error("{0}")]
    Forbidden(String),
}

impl HealerError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HealerError::Storage(_) => ErrorCode::Internal,
            HealerError::Forbidden(_) => ErrorCode::Forbidden,
            HealerError::EmptyText | HealerError::Invalid(_) => ErrorCode::InvalidRequest,
            HealerError::Patterns(_) | HealerError::Internal(_) => ErrorCode::Internal,
            HealerError::PatternNotFound(_) | HealerError::SignatureNotFound(_) => ErrorCode::NotFound,
            HealerError::Store(crate::store::StoreError::Unavailable(_)) => ErrorCode::Unavailable,
            HealerError::Store(_) | HealerError::Index(_) => ErrorCode::Internal,
            HealerError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            HealerError::Body(p) => p.code,
        }
    }
}

helix_http::problem_error!(HealerError);
