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

    /// `POST /v1/import/claude-stream-json` on a trace-collector: imports a Claude Code
    /// transcript; answers the collector's import result.
    pub async fn import_claude_stream_json(
        &self,
        transcript: Vec<u8>,
        project: Option<&str>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut url = format!("{}/v1/import/claude-stream-json", self.base);
        if let Some(p) = project {
            url.push_str("?project=");
            url.push_str(&encode_query(p));
        }
        let res = self
            .http
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body(transcript)
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        Self::json_answer(url, res).await
    }

    /// Subscribes to a server-sent-events endpoint; yields `(event, data)` pairs as they come
    /// (comments and keep-alives skipped) until the server ends the stream.
    pub async fn sse(
        &self,
        path_and_query: &str,
    ) -> Result<impl futures_util::Stream<Item = Result<(String, String), ClientError>> + use<>, ClientError>
    {
        use futures_util::StreamExt;
        let url = format!("{}{path_and_query}", self.base);
        // no overall timeout: a live stream lasts as long as the server keeps it
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        let res = http
            .get(&url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        if !res.status().is_success() {
            return Err(ClientError::Status {
                url,
                status: res.status().as_u16(),
                detail: "stream refused".to_owned(),
            });
        }
        let bytes = res.bytes_stream();
        let stream = futures_util::stream::unfold(
            (bytes, String::new(), url),
            |(mut bytes, mut buf, url)| async move {
                loop {
                    if let Some(end) = buf.find("\n\n") {
                        let block: String = buf.drain(..end + 2).collect();
                        let mut event = String::from("message");
                        let mut data = Vec::new();
                        for line in block.lines() {
                            if let Some(v) = line.strip_prefix("event:") {
                                event = v.trim().to_owned();
                            } else if let Some(v) = line.strip_prefix("data:") {
                                data.push(v.trim_start().to_owned());
                            }
                        }
                        if data.is_empty() {
                            continue; // a comment or keep-alive
                        }
                        return Some((Ok((event, data.join("\n"))), (bytes, buf, url)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk)),
                        Some(Err(e)) => {
                            let err = ClientError::Transport { url: url.clone(), message: e.to_string() };
                            return Some((Err(err), (bytes, String::new(), url)));
                        }
                        None => return None,
                    }
                }
            },
        );
        Ok(stream)
    }

    async fn json_answer<T: serde::de::DeserializeOwned>(
        url: String,
        res: reqwest::Response,
    ) -> Result<T, ClientError> {
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

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        Self::json_answer(url, res).await
    }

    /// `GET {path_and_query}` (e.g. `/v1/traces?project=p&limit=1`) answered as untyped JSON, for
    /// callers that print or pass on the answer rather than interpret all of it (`helix trace`).
    pub async fn get_json_value(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        self.get_json(path_and_query).await
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode_query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
