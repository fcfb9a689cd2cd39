//! Typed HTTP clients of the Helix services.
//!
//! Services never link each other's crates; when one needs another (the orchestrator calls the
//! healer, the collector and the gateway), it goes through these clients over the documented
//! HTTP API, so a service can run in another process or on another machine unchanged.

use std::time::Duration;

use crate::{Health, Problem};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url} answered {status}: {detail}")]
    Status { url: String, status: u16, detail: String },
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
}

/// A client of one service at a base URL such as `http://127.0.0.1:7703`.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    base: String,
    http: reqwest::Client,
}

impl ServiceClient {
    /// `timeout` bounds each whole request.
    pub fn new(base_url: &str, timeout: Duration) -> Result<ServiceClient, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ClientError::Transport { url: base_url.to_owned(), message: e.to_string() })?;
        Ok(ServiceClient { base: base_url.trim_end_matches('/').to_owned(), http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get_json("/health").await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<Problem>(&bytes)
                .map(|p| format!("{} ({})", p.detail, p.code))
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(ClientError::Status { url, status: status.as_u16(), detail });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { url, message: e.to_string() })
    }
}
