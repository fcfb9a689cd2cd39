//! The gateway's own errors and their codes.
//!
//! The gateway answers errors in two shapes. Its operator routes (`/v1/circuits`, ...) answer like
//! every Helix service, with a problem. Its proxy routes stand in for an LLM provider, and the
//! official SDKs pick their exception type from the status and read `error.message` from the
//! provider's own error body; a problem there would surface as an opaque decoding error. So the
//! same error renders as a problem ([`actix_web::ResponseError`]) or, for a proxy route, in the
//! client's provider shape ([`GatewayError::provider_response`]), with the same status and the
//! same code (OpenAI's `error.code`).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use helix_core::ErrorCode;

use crate::accounting::{BudgetExceeded, CapSpent, ProjectRefused};
use crate::protocol::{self, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the body is not valid json: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("cannot read the body: {0}")]
    BadRequest(String),
    #[error("project {project:?}: {source}")]
    Budget { project: String, source: BudgetExceeded },
    #[error(
        "project {project:?} has {limit} calls in flight, as many as its key allows; retry when one has ended"
    )]
    ProjectBusy { project: String, limit: u32 },
    #[error("no deployment {0:?}")]
    UnknownDeployment(String),
    #[error("model {0:?} is not configured on this gateway")]
    UnknownModel(String),
    /// The caller may not bill to the project its request names.
    #[error("{0}")]
    Forbidden(String),
    /// A minted key spent its cap: final, not to be retried.
    #[error("{0}")]
    KeySpent(CapSpent),
    /// No minted key with this id (or not one the caller may see).
    #[error("no key {0:?}")]
    UnknownKey(String),
    /// As many minted keys exist as the gateway keeps.
    #[error("{0}")]
    TooManyKeys(String),
}

impl From<ProjectRefused> for GatewayError {
    fn from(e: ProjectRefused) -> GatewayError {
        match e {
            ProjectRefused::Invalid(m) => GatewayError::InvalidRequest(m),
            ProjectRefused::Forbidden(m) => GatewayError::Forbidden(m),
        }
    }
}

impl GatewayError {
    pub fn code(&self) -> ErrorCode {
        match self {
            GatewayError::InvalidJson(_) => ErrorCode::InvalidJson,
            GatewayError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            GatewayError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            GatewayError::BadRequest(_) => ErrorCode::BadRequest,
            GatewayError::Budget { .. } => ErrorCode::BudgetExceeded,
            GatewayError::ProjectBusy { .. } => ErrorCode::ConcurrencyLimit,
            GatewayError::UnknownDeployment(_) | GatewayError::UnknownModel(_) => ErrorCode::NotFound,
            GatewayError::Forbidden(_) => ErrorCode::Forbidden,
            GatewayError::KeySpent(_) => ErrorCode::BudgetExceeded,
            GatewayError::UnknownKey(_) => ErrorCode::NotFound,
            GatewayError::TooManyKeys(_) => ErrorCode::ConcurrencyLimit,
        }
    }

    /// Seconds until a retry can succeed, for `Retry-After`.
    pub fn retry_after_secs(&self, now_ms: u64) -> Option<u64> {
        match self {
            GatewayError::Budget { source, .. } => {
                Some(source.resets_at_unix_ms.saturating_sub(now_ms).div_ceil(1000).max(1))
            }
            // a slot frees up as soon as one of the project's calls ends
            GatewayError::ProjectBusy { .. } => Some(1),
            _ => None,
        }
    }

    /// A failure to read the body, as the shared body limit reports it.
    pub fn from_payload(e: &actix_web::Error) -> GatewayError {
        let status = e.as_response_error().status_code();
        let text = e.to_string().to_lowercase();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            GatewayError::PayloadTooLarge(format!("the body is larger than allowed ({text})"))
        } else {
            GatewayError::BadRequest(text)
        }
    }

    /// The error as the client's provider would have sent it (see the module docs).
    pub fn provider_response(&self, protocol: Protocol) -> HttpResponse {
        let code = self.code();
        let mut body = protocol::error_body(protocol, code.status(), code.as_str(), &self.to_string());
        if matches!(self, GatewayError::KeySpent(_)) && protocol == Protocol::OpenAi {
            // what OpenAI answers for a spent quota: clients (Codex) stop instead of retrying (a
            // daily budget stays a rate limit: it comes back at midnight, its Retry-After says)
            body["error"]["type"] = serde_json::json!("insufficient_quota");
        }
        let mut res = HttpResponse::build(helix_http::problem::status_of(code))
            .content_type("application/json")
            .body(body.to_string());
        self.add_retry_after(&mut res);
        if matches!(self, GatewayError::KeySpent(_)) {
            // a spent cap does not come back: the official SDKs (and the agents built on them)
            // honour this header and do not retry
            res.headers_mut()
                .insert(header::HeaderName::from_static("x-should-retry"), HeaderValue::from_static("false"));
        }
        res.extensions_mut().insert(helix_http::middleware::OwnErrorShape);
        res
    }

    fn add_retry_after(&self, res: &mut HttpResponse) {
        let now = u64::try_from(helix_core::time::now_ms()).unwrap_or(0);
        if let Some(secs) = self.retry_after_secs(now)
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        helix_http::problem::status_of(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = helix_http::problem_response(self.code(), self.to_string());
        self.add_retry_after(&mut res);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_codes_status_in_both_shapes() {
        let budget = BudgetExceeded { spent_usd: 2.0, budget_usd: 1.0, resets_at_unix_ms: 86_400_000 };
        let errors = [
            (GatewayError::InvalidJson("eof".to_owned()), 400),
            (GatewayError::Budget { project: "shop".to_owned(), source: budget }, 429),
            (GatewayError::ProjectBusy { project: "shop".to_owned(), limit: 2 }, 429),
            (GatewayError::UnknownDeployment("x".to_owned()), 404),
            (GatewayError::UnknownModel("x".to_owned()), 404),
            (GatewayError::Forbidden("token \"t\" may not access project \"p\"".to_owned()), 403),
            (ProjectRefused::Invalid("x-helix-project: empty".to_owned()).into(), 400),
        ];
        for (e, status) in errors {
            assert_eq!(e.code().status(), status, "{e}");
            assert_eq!(e.provider_response(Protocol::OpenAi).status().as_u16(), status);
            assert_eq!(e.error_response().status().as_u16(), status);
            let m = e.to_string();
            assert!(m.starts_with(|c: char| !c.is_uppercase()) && !m.ends_with('.'), "{m}");
        }
        let e = GatewayError::Budget {
            project: "shop".to_owned(),
            source: BudgetExceeded { spent_usd: 2.0, budget_usd: 1.0, resets_at_unix_ms: 86_400_000 },
        };
        assert!(e.to_string().contains("1970-01-02T00:00:00.000Z"), "names when it resets: {e}");
        assert_eq!(e.retry_after_secs(86_000_000), Some(400));
        let res = e.provider_response(Protocol::Anthropic);
        assert!(res.headers().contains_key(header::RETRY_AFTER));
        assert!(res.extensions().contains::<helix_http::middleware::OwnErrorShape>());
    }
}
