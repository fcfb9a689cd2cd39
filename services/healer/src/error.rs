//! The healer's errors and their codes.

use helix_core::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum HealerError {
    #[error("{0}")]
    Storage(std::io::Error),
    #[error("text is empty")]
    EmptyText,
}

impl HealerError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HealerError::Storage(_) => ErrorCode::Internal,
            HealerError::EmptyText => ErrorCode::InvalidRequest,
        }
    }
}

helix_http::problem_error!(HealerError);
