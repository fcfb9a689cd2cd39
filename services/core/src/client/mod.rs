//! Typed HTTP clients of the Helix services.
//!
//! Services never link each other's crates; when one needs another (the orchestrator calls the
//! healer, the collector and the gateway), it goes through these clients over the documented
//! HTTP API, so a service can run in another process or on another machine unchanged.
//!
//! The answer types here are the caller's view, not the services' own: only the fields a caller
//! reads, every one defaulted and unknown ones ignored, so a service can add fields without
//! breaking its callers.
//!
//! Timeouts: [`ServiceClient::new`] bounds every request (and the connection) by one timeout,
//! right for quick calls. An LLM call may take minutes; give it a longer bound per client with
//! [`ServiceClient::with_timeout`] (the connect timeout stays short) or per call with
//! [`ServiceClient::chat_completion_with_timeout`].
//!
//! Errors: a 429 or 503 answer is [`ClientError::Busy`], with the service's `Retry-After` and
//! error code, so a caller can wait as asked instead of retrying at once; the gateway answers 503
//! `circuit_open` when every deployment of a model has its breaker open
//! ([`ClientError::is_circuit_open`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod check;
pub mod flaky;
pub mod keys;
pub mod models;

use crate::Health;
use crate::trace::Event;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url} answered {status}: {detail}")]
    Status { url: String, status: u16, detail: String },
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    /// 429 or 503: the service cannot take the request now (busy, budget spent, circuit open,
    /// disk behind); `retry_after` is its `Retry-After`, when it sent one.
    #[error("{url} answered {status}: {detail}")]
    Busy {
        url: String,
        status: u16,
        /// The error code of the answer (`circuit_open`, `concurrency_limit`, `budget_exceeded`,
        /// `unavailable`, ...), from a problem or a provider-shaped error body.
        code: Option<String>,
        detail: String,
        retry_after: Option<Duration>,
    },
}

impl ClientError {
    /// The HTTP status the service answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } | ClientError::Busy { status, .. } => Some(*status),
            ClientError::Transport { .. } | ClientError::Decode { .. } => None,
        }
    }

    /// How long the service asked the caller to wait (`Retry-After` of a 429 or 503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Busy { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error code of a 429 or 503 answer.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Busy { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The breaker-gateway refused the call because every deployment of the model has its
    /// circuit open: retrying before [`ClientError::retry_after`] only adds load.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, ClientError::Busy { status: 503, code: Some(c), .. } if c == "circuit_open")
    }

    /// Whether the same request may succeed later: the service was unreachable or timed out, was
    /// busy (429, 503), or failed on its side (408, 5xx). Other 4xx and undecodable answers will
    /// not change by retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::Busy { .. } => true,
            ClientError::Status { status, .. } => *status == 408 || *status >= 500,
            ClientError::Decode { .. } => false,
        }
    }
}

/// A client of one service at a base URL such as `http://127.0.0.1:7703`.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    base: String,
    http: reqwest::Client,
    /// Overrides the client's overall timeout per request (see [`ServiceClient::with_timeout`]).
    timeout: Option<Duration>,
    /// Sent as `Authorization: Bearer` with every request (see [`ServiceClient::with_token`]).
    token: Option<crate::auth::Secret>,
}

impl ServiceClient {
    /// `timeout` bounds each whole request.
    pub fn new(base_url: &str, timeout: Duration) -> Result<ServiceClient, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ClientError::Transport { url: base_url.to_owned(), message: e.to_string() })?;
        Ok(ServiceClient {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            timeout: None,
            token: None,
        })
    }

    /// The token this client sends, if any.
    pub fn token(&self) -> Option<&crate::auth::Secret> {
        self.token.as_ref()
    }

    /// The same client, sending `token` (a Helix token) with every request.
    pub fn with_token(mut self, token: Option<crate::auth::Secret>) -> ServiceClient {
        self.token = token;
        self
    }

    /// The same client (same connections, same connect timeout) with each request bounded by
    /// `timeout` instead: for slow operations such as LLM calls.
    pub fn with_timeout(&self, timeout: Duration) -> ServiceClient {
        ServiceClient { timeout: Some(timeout), ..self.clone() }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.request_as(method, url, None)
    }

    /// A request bearing `token` instead of the client's own (a gateway key for an LLM call).
    fn request_as(&self, method: reqwest::Method, url: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut b = self.http.request(method, url);
        if let Some(t) = token.or(self.token.as_ref().map(crate::auth::Secret::expose)) {
            b = b.bearer_auth(t);
        }
        match self.timeout {
            Some(t) => b.timeout(t),
            None => b,
        }
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
            .request(reqwest::Method::POST, &url)
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
        let mut req = http.get(&url).header("accept", "text/event-stream");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let res = req
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
        let bytes = Self::success_body(url.clone(), res).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { url, message: e.to_string() })
    }

    /// The body of a 2xx answer; any other status as its error.
    async fn success_body(url: String, res: reqwest::Response) -> Result<bytes::Bytes, ClientError> {
        let status = res.status();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = res
            .bytes()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let (detail, code) = error_detail(&bytes);
        let status = status.as_u16();
        Err(match status {
            429 | 503 => ClientError::Busy { url, status, code, detail, retry_after },
            _ => ClientError::Status { url, status, detail },
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .request(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        Self::json_answer(url, res).await
    }

    /// `POST {path}` with a JSON body (or none) answered as untyped JSON (the CLI's runs
    /// commands); `timeout` overrides the client's for this call.
    pub async fn post_json_value(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.request(reqwest::Method::POST, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let res = req
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

    async fn post_json<B: Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .request(reqwest::Method::POST, &url)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        Self::json_answer(url, res).await
    }

    // --- healer ---

    /// `POST /v1/analyze` on a healer: the diagnostics of a failed command's output, classified,
    /// with the root cause as `primary`. The whole answer is kept in [`Analysis::raw`] (to pass
    /// on to [`ServiceClient::propose`]).
    pub async fn analyze(&self, req: &AnalyzeRequest) -> Result<Analysis, ClientError> {
        let raw: Value = self.post_json("/v1/analyze", req).await?;
        let url = format!("{}/v1/analyze", self.base);
        let mut analysis: Analysis = serde_json::from_value(raw.clone())
            .map_err(|e| ClientError::Decode { url, message: e.to_string() })?;
        analysis.raw = raw;
        Ok(analysis)
    }

    /// `POST /v1/fixes/propose` on a healer: machine-applicable fixes (unified diffs against the
    /// files sent, or commands), each with a confidence. The healer applies nothing.
    pub async fn propose(&self, req: &ProposeRequest) -> Result<Proposals, ClientError> {
        self.post_json("/v1/fixes/propose", req).await
    }

    /// `POST /v1/fixes` on a healer: records a fix attempt and its outcome (durable when this
    /// returns); answers the healer's record (`id`, `signature`, `recorded_at`).
    pub async fn record_fix(&self, req: &FixRequest) -> Result<Value, ClientError> {
        self.post_json("/v1/fixes", req).await
    }

    /// `GET /v1/hints?signature=&project=` on a healer: prompt-ready text from the fixes that
    /// worked for `signature` before (in `project`, unless the healer shares hints); `None` when
    /// the healer knows nothing about it (404).
    pub async fn hint(&self, signature: &str, project: Option<&str>) -> Result<Option<Hint>, ClientError> {
        let mut path = format!("/v1/hints?signature={}", encode_query(signature));
        if let Some(p) = project {
            path.push_str("&project=");
            path.push_str(&encode_query(p));
        }
        match self.get_json(&path).await {
            Ok(h) => Ok(Some(h)),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/signatures/{signature}?project=` on a healer: what it knows about `signature`,
    /// its fixes ranked by success; with `project`, only the fixes recorded for that project (a
    /// token limited to projects may name only its own: else a 403). `None` when the healer never
    /// saw the signature (404).
    pub async fn signature_report(
        &self,
        signature: &str,
        project: Option<&str>,
    ) -> Result<Option<SignatureReport>, ClientError> {
        let mut path = format!("/v1/signatures/{}", encode_query(signature));
        if let Some(p) = project {
            path.push_str("?project=");
            path.push_str(&encode_query(p));
        }
        match self.get_json(&path).await {
            Ok(r) => Ok(Some(r)),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/fixes/known?project=&phase=` on a healer: the fixes with a patch recorded for
    /// `project` (and `phase`), one per signature and patch, most successes first, then the most
    /// recently tried (at most 50). A token limited to projects may name only its own (else a
    /// 403).
    pub async fn known_fixes(
        &self,
        project: &str,
        phase: Option<&str>,
    ) -> Result<Vec<KnownFix>, ClientError> {
        let mut path = format!("/v1/fixes/known?project={}", encode_query(project));
        if let Some(p) = phase {
            path.push_str("&phase=");
            path.push_str(&encode_query(p));
        }
        let answer: KnownFixes = self.get_json(&path).await?;
        Ok(answer.fixes)
    }

    // --- trace-collector ---

    /// `POST /v1/events` on a trace-collector: stores `events` (durable when this returns);
    /// answers the collector's `IngestResult` (`accepted`, and `rejected` with index and reason
    /// for each invalid event). A collector whose disk is behind answers 503 with `Retry-After`
    /// ([`ClientError::Busy`]).
    pub async fn post_events(&self, events: &[Event]) -> Result<Value, ClientError> {
        self.post_json("/v1/events", events).await
    }

    /// `GET /v1/baselines` on a trace-collector: `{"baselines": [...]}`, each with `kind`
    /// (`phase`, `model`), `subject`, `metric`, `stats` and `last`. The route has no filter, so
    /// with `project` the answer is narrowed here: that project's phases (subject
    /// `"{project} / {phase}"`) and every model (models are not per project).
    pub async fn baselines(&self, project: Option<&str>) -> Result<Value, ClientError> {
        let mut v: Value = self.get_json("/v1/baselines").await?;
        if let (Some(p), Some(list)) = (project, v.get_mut("baselines").and_then(Value::as_array_mut)) {
            let prefix = format!("{p} / ");
            list.retain(|b| match b.get("kind").and_then(Value::as_str) {
                Some("phase") => {
                    b.get("subject").and_then(Value::as_str).is_some_and(|s| s.starts_with(&prefix))
                }
                _ => true,
            });
        }
        Ok(v)
    }

    // --- breaker-gateway ---

    /// `POST /v1/chat/completions` on a breaker-gateway, not streaming (a `stream` field of
    /// `body` is set to false): `body` is an OpenAI chat request (`model` names a chain or a
    /// deployment of the gateway). `api_key` is a gateway key (`Authorization: Bearer`), when
    /// the gateway has keys configured; `traceparent` (see [`crate::ids::traceparent`]) puts the
    /// gateway's span of the call into the caller's trace. Bounded by the client's timeout (see
    /// [`ServiceClient::with_timeout`]).
    pub async fn chat_completion(
        &self,
        body: &Value,
        api_key: Option<&str>,
        traceparent: Option<&str>,
    ) -> Result<ChatAnswer, ClientError> {
        self.chat_completion_with_timeout(body, api_key, traceparent, None).await
    }

    /// [`ServiceClient::chat_completion`] bounded by `timeout` (the client's own when `None`).
    pub async fn chat_completion_with_timeout(
        &self,
        body: &Value,
        api_key: Option<&str>,
        traceparent: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<ChatAnswer, ClientError> {
        self.chat_completion_for(body, api_key, traceparent, timeout, None).await
    }

    /// [`ServiceClient::chat_completion_with_timeout`] made for `project` (`x-helix-project`):
    /// the gateway bills and traces the call to that project when the caller may name it (a
    /// service token may; a gateway key keeps its own project).
    pub async fn chat_completion_for(
        &self,
        body: &Value,
        api_key: Option<&str>,
        traceparent: Option<&str>,
        timeout: Option<Duration>,
        project: Option<&str>,
    ) -> Result<ChatAnswer, ClientError> {
        let url = format!("{}/v1/chat/completions", self.base);
        let mut body = body.clone();
        if let Some(o) = body.as_object_mut()
            && o.contains_key("stream")
        {
            o.insert("stream".to_owned(), Value::Bool(false));
        }
        let mut req = self.request_as(reqwest::Method::POST, &url, api_key).json(&body);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        if let Some(p) = project {
            req = req.header("x-helix-project", p);
        }
        let res = req.send().await.map_err(|e| ClientError::Transport {
            url: url.clone(),
            // the key rides in a header and is never part of the message
            message: e.without_url().to_string(),
        })?;
        let header =
            |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
        let cost_usd =
            header("x-helix-cost-usd").and_then(|v| v.parse::<f64>().ok()).filter(|c| c.is_finite());
        let deployment = header("x-helix-deployment").filter(|d| !d.is_empty());
        let raw: Value = Self::json_answer(url.clone(), res).await?;
        ChatAnswer::from_openai(raw, cost_usd, deployment)
            .map_err(|message| ClientError::Decode { url, message })
    }
}

/// `Retry-After` in seconds (integer or decimal; the HTTP-date form is not used by Helix).
fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs = v.trim().parse::<f64>().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// A human detail and the error code of an error body: a problem (`detail`, `code`), a
/// provider-shaped error (`error.message`, `error.code` or `error.type`, as the gateway's proxy
/// routes answer), else the start of the body.
fn error_detail(body: &[u8]) -> (String, Option<String>) {
    #[derive(Deserialize)]
    struct ProblemBody {
        detail: String,
        code: String,
    }
    if let Ok(p) = serde_json::from_slice::<ProblemBody>(body) {
        return (format!("{} ({})", p.detail, p.code), Some(p.code));
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(message) = v.pointer("/error/message").and_then(Value::as_str)
    {
        let code = ["/error/code", "/error/type"]
            .iter()
            .find_map(|p| v.pointer(p).and_then(Value::as_str))
            .map(str::to_owned);
        let detail = match &code {
            Some(c) => format!("{message} ({c})"),
            None => message.to_owned(),
        };
        return (detail, code);
    }
    (String::from_utf8_lossy(body).chars().take(200).collect(), None)
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

// --- the healer's API, as a caller reads it ---

/// `POST /v1/analyze`: raw output of a failed command and what is known about it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalyzeRequest {
    /// stdout and stderr as printed.
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Which tool printed it (`python`, `cargo`, ...), a hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

/// The answer of `POST /v1/analyze`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Analysis {
    pub diagnostics: Vec<Diagnostic>,
    /// Index of the root cause in `diagnostics`.
    pub primary: Option<usize>,
    /// The whole answer as the healer sent it (what `POST /v1/fixes/propose` takes as its
    /// `analysis`).
    #[serde(skip)]
    pub raw: Value,
}

impl Analysis {
    /// The root cause, if there is one.
    pub fn primary_diagnostic(&self) -> Option<&Diagnostic> {
        self.diagnostics.get(self.primary?)
    }
}

/// One classified diagnostic of an [`Analysis`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Diagnostic {
    /// 64 hex digits: the stable fingerprint of this kind of error.
    pub signature: String,
    /// `missing_dependency`, `unresolved_symbol`, `syntax_error`, `transient`, ... (see the
    /// healer's `Category`).
    pub category: String,
    /// How to handle it: `transient` (retry as is), `deterministic` (retry with a fix),
    /// `environment` (fix the environment), `security` (stop and escalate).
    pub failure_class: String,
    /// `error`, `warning` or `note`.
    pub severity: String,
    pub tool: String,
    /// The headline as the tool printed it.
    pub message: String,
    /// The headline with its variable parts as `<name>` placeholders.
    pub template: String,
    /// The parameter a fix needs (a module name, ...).
    pub key: Option<String>,
    /// The tool's own code (`E0425`, `TS2304`, an HTTP status).
    pub code: Option<String>,
    pub location: Option<Location>,
}

/// Where in the code a diagnostic points.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Location {
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// A file of the workspace, sent with a [`ProposeRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceFile {
    /// Relative to the workspace root.
    pub path: String,
    pub content: String,
}

/// `POST /v1/fixes/propose`: an analysis (or raw output to analyse) and the files fixes may edit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposeRequest {
    /// An analysis as `POST /v1/analyze` answered it ([`Analysis::raw`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Value>,
    /// Or raw output to analyse first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Tool hint for `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Contents of the files fixes may edit (manifests, the files diagnostics point at).
    #[serde(default)]
    pub files: Vec<WorkspaceFile>,
    /// Paths present in the workspace, to choose the right manifest.
    #[serde(default)]
    pub listing: Vec<String>,
}

/// The answer of `POST /v1/fixes/propose`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Proposals {
    /// Those for the primary diagnostic first.
    pub fixes: Vec<ProposedFix>,
}

/// One proposed fix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProposedFix {
    /// Index of the diagnostic it fixes.
    pub diagnostic: usize,
    pub signature: String,
    /// `rustc` or `pattern:<id>`.
    pub source: String,
    /// `patch`, `command`, `retry` or `info`.
    pub kind: String,
    /// `auto` (safe unattended), `suggest` (review first) or `needs_input`.
    pub confidence: String,
    pub description: String,
    /// Files the patch touches.
    pub files: Vec<String>,
    /// A unified diff, for `kind: patch`.
    pub patch: Option<String>,
    /// A command, for `kind: command`.
    pub command: Option<String>,
}

/// `POST /v1/fixes`: a fix attempt for a signature, and how it went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FixRequest {
    pub signature: String,
    /// What was done (1 to 4000 characters).
    pub description: String,
    /// `success` or `failure`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `healer`, `llm_repair`, `agent` or `human`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The answer of `GET /v1/hints`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hint {
    pub signature: String,
    /// Text to put into an agent's prompt.
    pub hint: String,
    /// How many recorded fixes it draws on.
    pub fixes: u64,
    /// The pattern it draws on.
    pub pattern: Option<String>,
}

/// The answer of `GET /v1/signatures/{signature}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignatureReport {
    pub signature: String,
    pub signature_version: String,
    /// The message with its variable parts named, e.g. `No module named '<module>'`.
    pub template: Option<String>,
    pub category: Option<String>,
    pub tool: Option<String>,
    /// The pattern that classified it.
    pub pattern: Option<String>,
    pub occurrences: u64,
    /// RFC 3339.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub projects: Vec<String>,
    /// Ranked by successes, then success rate, then recency.
    pub fixes: Vec<ReportedFix>,
    /// The sequences of healing actions that got it to pass, most often first.
    #[serde(default)]
    pub paths: Vec<ReportedPath>,
    /// One line for humans, e.g. "solved 3x like this: ...".
    pub summary: String,
}

/// A fix in a [`SignatureReport`], with its track record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportedFix {
    pub description: String,
    /// A unified diff, when the fix had one.
    pub patch: Option<String>,
    pub successes: u32,
    pub failures: u32,
    /// `success` or `failure`.
    pub last_outcome: String,
    /// RFC 3339.
    pub last_attempt: String,
    pub projects: Vec<String>,
    /// Ids of the tokens that reported it.
    pub reported_by: Vec<String>,
    /// `healer`, `llm_repair`, `agent` or `human`, when reported.
    #[serde(default)]
    pub source: Option<String>,
    /// The diagnostic's key the fix was made for.
    #[serde(default)]
    pub key: Option<String>,
    /// An LLM repair that worked and never failed.
    #[serde(default)]
    pub learned: bool,
}

/// A success path in a [`SignatureReport`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportedPath {
    pub steps: Vec<String>,
    pub successes: u32,
    pub projects: Vec<String>,
    pub phases: Vec<String>,
}

/// What `POST /v1/paths` records.
#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    pub signature: String,
    pub steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

impl ServiceClient {
    /// `POST /v1/paths` on a healer.
    pub async fn record_path(&self, report: &PathReport) -> Result<(), ClientError> {
        let _: Value = self.post_json("/v1/paths", report).await?;
        Ok(())
    }
}

/// A fix of `GET /v1/fixes/known`: a patch recorded for the project, with its track record there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KnownFix {
    pub signature: String,
    /// The latest attempt's description.
    pub description: String,
    /// The latest attempt's patch, a unified diff.
    pub patch: String,
    pub successes: u32,
    pub failures: u32,
    /// `success` or `failure`.
    pub last_outcome: String,
    /// RFC 3339.
    pub last_attempt: String,
}

/// The answer of `GET /v1/fixes/known`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KnownFixes {
    fixes: Vec<KnownFix>,
}

// --- the gateway's answer ---

/// A non-streaming chat completion through the breaker-gateway.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatAnswer {
    /// The first choice's text (its text parts joined, when the content is a list of parts);
    /// empty when it has none (a tool call).
    pub content: String,
    /// The model that answered, as the upstream reported it.
    pub model: String,
    /// Why generation stopped (`stop`, `length`, `tool_calls`, ...).
    pub finish_reason: Option<String>,
    /// `usage.prompt_tokens`.
    pub usage_in: u64,
    /// `usage.completion_tokens`.
    pub usage_out: u64,
    /// `x-helix-cost-usd`: what the call cost (priced models only).
    pub cost_usd: Option<f64>,
    /// `x-helix-deployment`: the deployment that answered.
    pub deployment: Option<String>,
    /// The whole answer.
    pub raw: Value,
}

impl ChatAnswer {
    fn from_openai(
        raw: Value,
        cost_usd: Option<f64>,
        deployment: Option<String>,
    ) -> Result<ChatAnswer, String> {
        let choice = raw
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| "a chat completion without choices".to_owned())?;
        let content = match choice.pointer("/message/content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<String>()
            }
            _ => String::new(),
        };
        let text = |p: &str| raw.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let count = |p: &str| raw.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        Ok(ChatAnswer {
            content,
            model: text("/model").unwrap_or_default(),
            finish_reason: choice.get("finish_reason").and_then(Value::as_str).map(str::to_owned),
            usage_in: count("/usage/prompt_tokens"),
            usage_out: count("/usage/completion_tokens"),
            cost_usd,
            deployment,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The clients against a loopback HTTP/1.1 responder answering with canned bodies shaped as
    //! the services' OpenAPI documents describe them (helix-core cannot link the services; the
    //! end-to-end tests against the real ones live in `tests/`).

    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;

    /// A request the responder saw.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).expect("json body")
        }
    }

    /// `(status, extra headers, body)` of an answer.
    type Answer = (u16, Vec<(&'static str, String)>, String);

    /// Serves every connection on its own thread (one request each, then `connection: close`),
    /// answering with `answer`; returns the base URL and what it saw.
    fn responder(
        answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, answer) = (seen.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(mut sock) = sock else { return };
                let (log, answer) = (log.clone(), answer.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.lines();
                    let mut start = lines.next().expect("request line").split(' ');
                    let (method, target) = (start.next().expect("method"), start.next().expect("target"));
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .map_or(0, |(_, v)| v.parse().expect("content-length"));
                    while buf.len() < head_end + length {
                        match sock.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let req = Seen {
                        method: method.to_owned(),
                        target: target.to_owned(),
                        headers,
                        body: buf[head_end..head_end + length].to_vec(),
                    };
                    let (status, extra, body) = answer(&req);
                    log.lock().expect("log").push(req);
                    let content_type = if status >= 400 && body.contains("urn:helix:error:") {
                        "application/problem+json"
                    } else {
                        "application/json"
                    };
                    let mut out = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n",
                        body.len()
                    );
                    for (k, v) in extra {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&body);
                    let _ = sock.write_all(out.as_bytes());
                });
            }
        });
        (base, seen)
    }

    fn client(base: &str) -> ServiceClient {
        ServiceClient::new(base, Duration::from_secs(5)).expect("client")
    }

    fn problem(status: u16, code: &str, detail: &str) -> String {
        json!({
            "type": format!("urn:helix:error:{code}"), "title": "t", "status": status,
            "detail": detail, "code": code, "request_id": "r1"
        })
        .to_string()
    }

    const SIG: &str = "3f0a8c1d9e2b4f6a8c0e1d3f5a7b9c2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c";

    /// A healer analysis with every documented field (and one it may add later).
    fn analysis() -> Value {
        json!({
            "diagnostics": [
                {
                    "signature": "1".repeat(64), "signature_version": "v1", "category": "unknown",
                    "failure_class": "deterministic", "tool": "shell", "severity": "warning",
                    "message": "warning: x", "template": "warning: x", "params": {}, "lines": [0, 0],
                    "matches": []
                },
                {
                    "signature": SIG, "signature_version": "v1", "category": "missing_dependency",
                    "failure_class": "deterministic", "tool": "python", "severity": "error",
                    "message": "ModuleNotFoundError: No module named 'yaml'",
                    "template": "ModuleNotFoundError: No module named '<module>'",
                    "params": {"module": "yaml"}, "lines": [1, 4], "key": "yaml", "code": null,
                    "location": {"file": "app.py", "line": 1, "column": null},
                    "matches": [{"kind": "pattern", "id": "python.module-not-found", "title": "t",
                                 "score": 1.0, "explanation": "e", "fixes": ["pip install PyYAML"]}],
                    "suggestions": [], "added_later": {"x": 1}
                }
            ],
            "primary": 1
        })
    }

    #[tokio::test]
    async fn analyze_sends_the_json_request_and_reads_the_primary_diagnostic() {
        let (base, seen) = responder(|_| (200, vec![], analysis().to_string()));
        let req = AnalyzeRequest {
            output: "Traceback ...\nModuleNotFoundError: No module named 'yaml'\n".to_owned(),
            command: Some("python app.py".to_owned()),
            exit_code: Some(1),
            project: Some("shop".to_owned()),
            tool: None,
        };
        let a = client(&base).analyze(&req).await.expect("analysis");
        let p = a.primary_diagnostic().expect("primary");
        assert_eq!((p.signature.as_str(), p.failure_class.as_str()), (SIG, "deterministic"));
        assert_eq!(
            (p.category.as_str(), p.key.as_deref(), p.code.as_deref()),
            ("missing_dependency", Some("yaml"), None)
        );
        assert_eq!(p.location.as_ref().map(|l| (l.file.as_str(), l.line)), Some(("app.py", Some(1))));
        assert_eq!(a.raw, analysis(), "the whole answer is kept for propose");

        let seen = seen.lock().expect("seen")[0].clone();
        assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/v1/analyze"));
        assert_eq!(seen.header("content-type"), Some("application/json"));
        // the healer's AnalyzeRequest has additionalProperties: false and nullable fields
        assert_eq!(
            seen.json(),
            json!({"output": req.output, "command": "python app.py", "exit_code": 1, "project": "shop"})
        );

        let (base, _) = responder(|_| (200, vec![], json!({"diagnostics": [], "primary": null}).to_string()));
        let empty = client(&base).analyze(&AnalyzeRequest::default()).await.expect("empty analysis");
        assert!(empty.diagnostics.is_empty() && empty.primary_diagnostic().is_none());
    }

    #[tokio::test]
    async fn propose_record_fix_and_hints() {
        let patch = "--- /dev/null\n+++ b/requirements.txt\n@@ -0,0 +1,1 @@\n+PyYAML\n";
        let (base, seen) = responder(move |req| {
            match (req.method.as_str(), req.target.as_str()) {
            ("POST", "/v1/fixes/propose") => (
                200,
                vec![],
                json!({"fixes": [{
                    "diagnostic": 1, "signature": SIG, "source": "pattern:python.module-not-found",
                    "kind": "patch", "confidence": "auto", "description": "add PyYAML to requirements.txt",
                    "files": ["requirements.txt"], "patch": patch, "command": null
                }]})
                .to_string(),
            ),
            ("POST", "/v1/fixes") => (
                201,
                vec![],
                json!({"id": "f1", "signature": SIG, "recorded_at": "2026-01-01T00:00:00.000Z"}).to_string(),
            ),
            ("GET", t) if t == format!("/v1/hints?signature={SIG}") => (
                200,
                vec![],
                json!({"signature": SIG, "hint": "add PyYAML", "fixes": 2, "pattern": "python.module-not-found"})
                    .to_string(),
            ),
            ("GET", "/v1/hints?signature=bad") => {
                (400, vec![], problem(400, "invalid_query", "signature must be 64 hex digits"))
            }
            _ => (404, vec![], problem(404, "not_found", "nothing known")),
        }
        });
        let c = client(&base);
        let req = ProposeRequest {
            analysis: Some(analysis()),
            files: vec![WorkspaceFile { path: "requirements.txt".to_owned(), content: String::new() }],
            listing: vec!["requirements.txt".to_owned(), "app.py".to_owned()],
            ..ProposeRequest::default()
        };
        let fixes = c.propose(&req).await.expect("proposals").fixes;
        assert_eq!(fixes.len(), 1);
        let f = &fixes[0];
        assert_eq!(
            (f.kind.as_str(), f.confidence.as_str(), f.patch.as_deref()),
            ("patch", "auto", Some(patch))
        );
        assert_eq!(
            (f.diagnostic, f.files.clone(), f.command.clone()),
            (1, vec!["requirements.txt".to_owned()], None)
        );
        let sent = seen.lock().expect("seen")[0].json();
        assert_eq!(
            sent,
            json!({"analysis": analysis(), "files": [{"path": "requirements.txt", "content": ""}],
                   "listing": ["requirements.txt", "app.py"]})
        );

        let fix = FixRequest {
            signature: SIG.to_owned(),
            description: "add PyYAML to requirements.txt".to_owned(),
            outcome: "success".to_owned(),
            patch: Some(patch.to_owned()),
            project: Some("shop".to_owned()),
            phase: None,
            source: None,
            key: None,
        };
        let recorded = c.record_fix(&fix).await.expect("recorded");
        assert_eq!(recorded["id"], "f1");
        assert_eq!(
            seen.lock().expect("seen")[1].json(),
            json!({"signature": SIG, "description": fix.description, "outcome": "success",
                   "patch": patch, "project": "shop"})
        );

        let hint = c.hint(SIG, None).await.expect("hint").expect("known");
        assert_eq!(
            (hint.hint.as_str(), hint.fixes, hint.pattern.as_deref()),
            ("add PyYAML", 2, Some("python.module-not-found"))
        );
        assert_eq!(c.hint(&"0".repeat(64), None).await.expect("unknown is no error"), None);
        let e = c.hint("bad", None).await.expect_err("400");
        assert!(
            matches!(&e, ClientError::Status { status: 400, detail, .. }
                if detail == "signature must be 64 hex digits (invalid_query)"),
            "{e:?}"
        );
        assert!(!e.is_transient() && e.retry_after().is_none());
    }

    #[tokio::test]
    async fn signature_reports_and_known_fixes() {
        let patch = "--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1 +1,2 @@\n flask\n+PyYAML\n";
        let (base, seen) = responder(move |req| match (req.method.as_str(), req.target.as_str()) {
            ("GET", t) if t.starts_with(&format!("/v1/signatures/{SIG}")) => (
                200,
                vec![],
                json!({
                    "signature": SIG, "signature_version": "v1", "template": "No module named '<module>'",
                    "category": "missing_dependency", "tool": "python", "pattern": null, "occurrences": 3,
                    "first_seen": "2026-01-01T00:00:00.000Z", "last_seen": "2026-01-02T00:00:00.000Z",
                    "projects": ["web app"],
                    "fixes": [{"description": "add PyYAML", "patch": patch, "successes": 2, "failures": 1,
                               "last_outcome": "success", "last_attempt": "2026-01-02T00:00:00.000Z",
                               "projects": ["web app"], "reported_by": ["ci"], "added_later": true},
                              {"description": "restart", "successes": 0, "failures": 1,
                               "last_outcome": "failure", "last_attempt": "2026-01-01T00:00:00.000Z",
                               "projects": [], "reported_by": []}],
                    "summary": "solved 2x like this: add PyYAML", "added_later": {"x": 1}
                })
                .to_string(),
            ),
            ("GET", t) if t.starts_with("/v1/fixes/known?project=web%20app") => (
                200,
                vec![],
                json!({"fixes": [{"signature": SIG, "description": "add PyYAML", "patch": patch,
                                  "successes": 2, "failures": 1, "last_outcome": "success",
                                  "last_attempt": "2026-01-02T00:00:00.000Z", "added_later": 1}]})
                .to_string(),
            ),
            ("GET", t) if t.starts_with("/v1/fixes/known?project=api") => {
                (403, vec![], problem(403, "forbidden", "token \"ci\" may not access project \"api\""))
            }
            _ => (404, vec![], problem(404, "not_found", "never seen")),
        });
        let c = client(&base);
        let r = c.signature_report(SIG, Some("web app")).await.expect("report").expect("known");
        assert_eq!((r.occurrences, r.summary.as_str()), (3, "solved 2x like this: add PyYAML"));
        assert_eq!((r.category.as_deref(), r.pattern.as_deref()), (Some("missing_dependency"), None));
        assert_eq!(r.fixes.len(), 2);
        let f = &r.fixes[0];
        assert_eq!(
            (f.description.as_str(), f.patch.as_deref(), f.successes, f.failures),
            ("add PyYAML", Some(patch), 2, 1)
        );
        assert_eq!(
            (f.projects.clone(), f.reported_by.clone()),
            (vec!["web app".to_owned()], vec!["ci".to_owned()])
        );
        assert_eq!(r.fixes[1].patch, None);
        assert!(c.signature_report(SIG, None).await.expect("report").is_some());
        assert_eq!(c.signature_report(&"0".repeat(64), Some("web")).await.expect("404 is no error"), None);
        // the signature is a path segment and the project a query value: both percent-encoded
        assert_eq!(c.signature_report("a/b?c", Some("x&y=z")).await.expect("404"), None);

        let fixes = c.known_fixes("web app", Some("build & test")).await.expect("known fixes");
        assert_eq!(
            fixes,
            [KnownFix {
                signature: SIG.to_owned(),
                description: "add PyYAML".to_owned(),
                patch: patch.to_owned(),
                successes: 2,
                failures: 1,
                last_outcome: "success".to_owned(),
                last_attempt: "2026-01-02T00:00:00.000Z".to_owned(),
            }]
        );
        assert_eq!(c.known_fixes("web app", None).await.expect("known fixes").len(), 1);
        let e = c.known_fixes("api", None).await.expect_err("403");
        assert!(
            matches!(&e, ClientError::Status { status: 403, detail, .. } if detail.ends_with("(forbidden)")),
            "{e:?}"
        );

        let targets: Vec<String> = seen.lock().expect("seen").iter().map(|s| s.target.clone()).collect();
        assert_eq!(
            targets,
            [
                format!("/v1/signatures/{SIG}?project=web%20app"),
                format!("/v1/signatures/{SIG}"),
                format!("/v1/signatures/{}?project=web", "0".repeat(64)),
                "/v1/signatures/a%2Fb%3Fc?project=x%26y%3Dz".to_owned(),
                "/v1/fixes/known?project=web%20app&phase=build%20%26%20test".to_owned(),
                "/v1/fixes/known?project=web%20app".to_owned(),
                "/v1/fixes/known?project=api".to_owned(),
            ]
        );
    }

    fn event(i: u64) -> Event {
        serde_json::from_value(json!({
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": format!("{:016x}", i + 1),
            "name": "phase build", "kind": "phase", "start_unix_nanos": i, "end_unix_nanos": i + 10
        }))
        .expect("event")
    }

    #[tokio::test]
    async fn events_are_posted_as_an_array_and_back_pressure_is_busy_with_retry_after() {
        let (base, seen) = responder(|req| {
            let n = serde_json::from_slice::<Vec<Value>>(&req.body).expect("array").len();
            if n == 3 {
                (
                    503,
                    vec![("retry-after", "2".to_owned())],
                    problem(503, "unavailable", "the disk is behind"),
                )
            } else {
                (200, vec![], json!({"accepted": n, "rejected": []}).to_string())
            }
        });
        let c = client(&base);
        let events = [event(1), event(2)];
        let ok = c.post_events(&events).await.expect("stored");
        assert_eq!(ok["accepted"], 2);
        let sent: Vec<Event> = serde_json::from_slice(&seen.lock().expect("seen")[0].body).expect("events");
        assert_eq!(sent, events);

        let e = c.post_events(&[event(1), event(2), event(3)]).await.expect_err("busy");
        assert!(
            matches!(&e, ClientError::Busy { status: 503, code: Some(c), retry_after: Some(d), .. }
                if c == "unavailable" && *d == Duration::from_secs(2)),
            "{e:?}"
        );
        assert!(e.is_transient() && !e.is_circuit_open());
        assert_eq!((e.status(), e.code()), (Some(503), Some("unavailable")));
    }

    #[tokio::test]
    async fn baselines_are_narrowed_to_a_project_on_the_client() {
        let stats = json!({"samples": 5, "median": 1.0, "mad": 0.1, "p95": 2.0});
        let list = json!({"baselines": [
            {"kind": "model", "subject": "gpt-4.1", "metric": "cost", "stats": stats, "last": 1.0},
            {"kind": "phase", "subject": "shop / build", "metric": "duration", "stats": stats, "last": 1.0},
            {"kind": "phase", "subject": "shopping / build", "metric": "duration", "stats": stats, "last": 1.0},
            {"kind": "phase", "subject": "blog / test", "metric": "cost", "stats": stats, "last": 1.0}
        ]});
        let body = list.to_string();
        let (base, seen) = responder(move |_| (200, vec![], body.clone()));
        let c = client(&base);
        assert_eq!(c.baselines(None).await.expect("all"), list);
        let shop = c.baselines(Some("shop")).await.expect("shop");
        let subjects: Vec<&str> = shop["baselines"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|b| b["subject"].as_str())
            .collect();
        assert_eq!(subjects, ["gpt-4.1", "shop / build"]);
        assert!(seen.lock().expect("seen").iter().all(|s| s.target == "/v1/baselines"));
    }

    #[tokio::test]
    async fn chat_completion_reads_the_answer_headers_and_the_gateways_refusals() {
        let (base, seen) = responder(|req| {
            let body = req.json();
            match body["model"].as_str() {
                Some("smart") => (
                    200,
                    vec![("x-helix-cost-usd", "0.0012".to_owned()), ("x-helix-deployment", "openai-main".to_owned())],
                    json!({
                        "id": "c1", "object": "chat.completion", "model": "gpt-4.1-2025-04-14",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "hello"}}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
                    })
                    .to_string(),
                ),
                Some("down") => (
                    503,
                    vec![("retry-after", "7".to_owned())],
                    json!({"error": {"message": "every deployment of \"down\" is unavailable (circuit open); retry in 7s",
                                     "type": "api_error", "param": null, "code": "circuit_open"}})
                    .to_string(),
                ),
                Some("busy") => (
                    429,
                    vec![("retry-after", "1".to_owned())],
                    json!({"error": {"message": "too many calls", "type": "rate_limit_error",
                                     "param": null, "code": "concurrency_limit"}})
                    .to_string(),
                ),
                _ => (
                    404,
                    vec![],
                    json!({"error": {"message": "no model", "type": "invalid_request_error",
                                     "param": null, "code": "not_found"}})
                    .to_string(),
                ),
            }
        });
        let c = client(&base);
        let tp = crate::ids::traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        let body = json!({"model": "smart", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let a = c.chat_completion(&body, Some("hk-secret"), Some(&tp)).await.expect("answer");
        assert_eq!((a.content.as_str(), a.model.as_str()), ("hello", "gpt-4.1-2025-04-14"));
        assert_eq!((a.usage_in, a.usage_out, a.cost_usd), (12, 3, Some(0.0012)));
        assert_eq!(
            (a.deployment.as_deref(), a.finish_reason.as_deref()),
            (Some("openai-main"), Some("stop"))
        );
        assert_eq!(a.raw["id"], "c1");
        let sent = seen.lock().expect("seen")[0].clone();
        assert_eq!((sent.method.as_str(), sent.target.as_str()), ("POST", "/v1/chat/completions"));
        assert_eq!(sent.header("authorization"), Some("Bearer hk-secret"));
        assert_eq!(sent.header("traceparent"), Some(tp.as_str()));
        assert_eq!(sent.json()["stream"], false, "never a stream");

        let down = json!({"model": "down", "messages": []});
        let e = c.chat_completion(&down, None, None).await.expect_err("circuit open");
        assert!(e.is_circuit_open() && e.is_transient(), "{e:?}");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.to_string().contains("circuit open"), "{e}");
        assert_eq!(seen.lock().expect("seen")[1].header("authorization"), None);

        let e = c.chat_completion(&json!({"model": "busy"}), None, None).await.expect_err("429");
        assert_eq!(
            (e.status(), e.code(), e.retry_after()),
            (Some(429), Some("concurrency_limit"), Some(Duration::from_secs(1)))
        );
        assert!(!e.is_circuit_open());
        let e = c.chat_completion(&json!({"model": "x"}), None, None).await.expect_err("404");
        assert!(
            matches!(&e, ClientError::Status { status: 404, detail, .. } if detail == "no model (not_found)"),
            "{e:?}"
        );
        assert!(!e.is_transient());
    }

    #[tokio::test]
    async fn a_per_call_timeout_bounds_a_slow_answer() {
        let (base, _) = responder(|_| {
            std::thread::sleep(Duration::from_millis(1500));
            (200, vec![], json!({"choices": [{"message": {"content": "late"}}]}).to_string())
        });
        let quick = ServiceClient::new(&base, Duration::from_millis(150)).expect("client");
        // the answer comes after 1.5 s: the error (not the answer) is the bound at work
        let e = quick.chat_completion(&json!({"model": "m"}), None, None).await.expect_err("timeout");
        assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
        // a longer bound for this call, or for the whole client, lets it finish
        let a = quick
            .chat_completion_with_timeout(&json!({"model": "m"}), None, None, Some(Duration::from_secs(10)))
            .await
            .expect("answer");
        assert_eq!(a.content, "late");
        let a = quick
            .with_timeout(Duration::from_secs(10))
            .chat_completion(&json!({"model": "m"}), None, None)
            .await;
        assert_eq!(a.expect("answer").content, "late");
    }
}
