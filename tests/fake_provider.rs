//! A scripted fake LLM provider on loopback, speaking the OpenAI and Anthropic HTTP APIs.
//!
//! The breaker-gateway's whole job is to react to what upstream providers do: rate limits, outages,
//! slow or stalled streams, broken connections, garbage bodies. The real providers cannot be reached
//! from tests (and would not misbehave on demand), so this server stands in for them — it is the
//! only test double in the project, standing in for the outside world, never for our own code.
//!
//! It answers deterministically so tests can compute expected bodies and costs: the answer text is
//! `"echo: " + <text of the last user message>`, input tokens are the whitespace-separated words of
//! all messages (plus the system prompt), output tokens the words of the answer (of the JSON
//! arguments string for a tool call).
//!
//! Besides chat completions and messages it answers the side endpoints a gateway passes on: the
//! model list, Anthropic's `POST /v1/messages/count_tokens` (the word count), OpenAI's
//! `POST /v1/embeddings` (8 numbers derived from each input's text) and the legacy
//! `POST /v1/completions` (`"echo: " + <prompt>`).
//!
//! Behaviour is scripted with [`Mode`]s: a FIFO queue of [`ScriptEntry`]s (each optionally
//! restricted to a path or a model) consumed one per generation request, a default mode when the
//! queue has nothing for a request, and an `x-fake-mode` header that overrides both for one request.
//! Scripting works from Rust ([`FakeProvider`]), over HTTP (`/_fake/...`, for the Python SDK tests
//! that run the `fake-provider` binary) or through that header (which also travels through the
//! gateway, since unknown headers are passed on).
//!
//! Every provider request is recorded ([`RecordedRequest`]) so tests can count upstream calls
//! (retries, fallbacks), check the key and headers the gateway sent and that unknown body fields
//! arrived untouched. In-flight requests are counted until their response body is finished or
//! dropped, and the maximum is kept for bulkhead tests.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::body::{BodyStream, SizedStream};
use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::{Stream, StreamExt, future, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The request header whose value (the JSON of a [`Mode`]) overrides the script for one request.
pub const MODE_HEADER: &str = "x-fake-mode";

/// Request bodies up to this size are accepted: the gateway may forward big prompts.
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// Above this size an answer is streamed in fixed-size pieces instead of one piece per word, so a
/// huge answer does not become millions of SSE events.
const WORD_PIECES_UP_TO: usize = 4096;
const BIG_PIECE: usize = 16 << 10;

/// Non-streaming bodies are sent in this many pieces when a stall or cut needs "chunks" to count.
const BODY_PIECES: usize = 8;

/// How long a cut stream waits after its last chunk before dropping the connection.
const CUT_FLUSH_PAUSE: Duration = Duration::from_millis(50);

/// How the fake answers one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// A normal answer: `"echo: " + <last user text>`.
    Ok,
    /// A call of the request's first tool with arguments `{"echo": <last user text>}`; a normal
    /// answer when the request has no tools.
    ToolCall,
    /// One turn of a coding agent's tool loop. When the conversation's last turn (the messages
    /// after the last assistant message) holds a tool result — an Anthropic `tool_result` block in
    /// a user message, an OpenAI `role: tool` message — the answer is the text
    /// `"done: " + <that result's text>`. Otherwise it is a call of the declared tool named `tool`
    /// (or else the first declared tool with that name in another case) with `arguments`, and a
    /// normal answer when the request declares no such tool.
    Agent {
        tool: String,
        #[serde(default = "empty_object")]
        arguments: Value,
    },
    /// An error status with the provider's error body (or `body` verbatim), plus `Retry-After`
    /// (seconds) and/or `retry-after-ms` headers when given.
    Status {
        code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
    },
    /// Waits `ms` before sending the response head, then answers as [`Mode::Ok`].
    SlowFirstByte { ms: u64 },
    /// Sends `after_chunks` chunks (SSE events, or eighths of a non-streaming body), then nothing
    /// for `ms` with the connection open, then the rest. The stall always comes before the end.
    StalledStream { after_chunks: usize, ms: u64 },
    /// Sends `after_chunks` chunks, then drops the connection without ending the body.
    CutStream { after_chunks: usize },
    /// 200 with `application/json` and a truncated JSON body (streaming: an SSE event whose data is
    /// truncated JSON, then a normal end).
    InvalidJson,
    /// 200 with a valid answer whose text is exactly `bytes` bytes long.
    Huge { bytes: usize },
    /// 200 with a valid answer whose text is exactly `text` (a scripted reply: a diff, a JSON
    /// object).
    Text { text: String },
}

fn empty_object() -> Value {
    json!({})
}

impl Mode {
    /// An error status with the provider's error body and no retry headers.
    pub fn status(code: u16) -> Mode {
        Mode::Status { code, retry_after_secs: None, retry_after_ms: None, body: None }
    }

    /// A 429 with the provider's rate-limit body and `Retry-After: secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Mode {
        Mode::Status { code: 429, retry_after_secs: Some(retry_after_secs), retry_after_ms: None, body: None }
    }

    /// The value to send in the [`MODE_HEADER`] header.
    pub fn header_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One entry of the script queue: a mode, optionally only for requests to `path` and/or for `model`.
///
/// In JSON the mode's fields are inline: `{"mode": "status", "code": 429, "model": "gpt-4o"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptEntry {
    #[serde(flatten)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ScriptEntry {
    pub fn new(mode: Mode) -> ScriptEntry {
        ScriptEntry { mode, model: None, path: None }
    }

    /// Restricts the entry to requests for `model`.
    pub fn for_model(mut self, model: impl Into<String>) -> ScriptEntry {
        self.model = Some(model.into());
        self
    }

    /// Restricts the entry to requests to `path` (e.g. `/v1/messages`).
    pub fn for_path(mut self, path: impl Into<String>) -> ScriptEntry {
        self.path = Some(path.into());
        self
    }

    fn matches(&self, endpoint: Endpoint, path: &str, model: Option<&str>) -> bool {
        // the model list is not a generation: only entries naming its path apply to it, so a
        // gateway probing models does not eat entries meant for completions
        let path_ok = match &self.path {
            Some(p) => p == path,
            None => endpoint.is_generation(),
        };
        let model_ok = self.model.as_deref().is_none_or(|m| Some(m) == model);
        path_ok && model_ok
    }
}

impl From<Mode> for ScriptEntry {
    fn from(mode: Mode) -> ScriptEntry {
        ScriptEntry::new(mode)
    }
}

/// How to start a [`FakeProvider`].
#[derive(Clone)]
pub struct FakeOptions {
    /// When set, OpenAI requests must carry `Authorization: Bearer <key>`; when unset any (or no)
    /// key is accepted.
    pub openai_key: Option<String>,
    /// When set, Anthropic requests must carry `x-api-key: <key>`; when unset any (or no) key is
    /// accepted.
    pub anthropic_key: Option<String>,
    /// What `GET /v1/models` lists.
    pub models: Vec<String>,
    /// The port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

impl Default for FakeOptions {
    fn default() -> FakeOptions {
        FakeOptions {
            openai_key: None,
            anthropic_key: None,
            models: ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-haiku-4-5"]
                .map(str::to_owned)
                .to_vec(),
            port: 0,
        }
    }
}

impl fmt::Debug for FakeOptions {
    // keys stay out of Debug output, even fake ones: tests copy patterns from here
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeOptions")
            .field("openai_key", &self.openai_key.as_ref().map(|_| "<redacted>"))
            .field("anthropic_key", &self.anthropic_key.as_ref().map(|_| "<redacted>"))
            .field("models", &self.models)
            .field("port", &self.port)
            .finish()
    }
}

/// One request the fake received on a provider path (control requests under `/_fake` are not
/// recorded).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 1 for the first request since start (not reset by [`FakeProvider::reset`]).
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// The query string without `?`, empty when none.
    pub query: String,
    /// Lower-case names; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, `null` when it was empty or not JSON.
    pub body: Value,
    /// Microseconds since the fake started (monotonic, for measuring backoff between attempts).
    pub at_us: u64,
    /// Wall-clock arrival time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The mode that answered; `None` when the request was rejected before (auth, missing
    /// `anthropic-version`, malformed body, bad `x-fake-mode`).
    pub mode: Option<Mode>,
}

impl RecordedRequest {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The `model` of the body.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Arrival time since the fake started.
    pub fn at(&self) -> Duration {
        Duration::from_micros(self.at_us)
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let secret = matches!(k.as_str(), "authorization" | "x-api-key" | "api-key");
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("seq", &self.seq)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body", &self.body)
            .field("at_us", &self.at_us)
            .field("mode", &self.mode)
            .finish()
    }
}

/// A snapshot of the fake's counters, also served at `GET /_fake/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FakeState {
    pub request_count: usize,
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub queued: usize,
    pub default: Mode,
}

struct Script {
    queue: VecDeque<ScriptEntry>,
    default: Mode,
    requests: Vec<RecordedRequest>,
    models: Vec<String>,
}

struct Shared {
    script: Mutex<Script>,
    openai_key: Option<String>,
    anthropic_key: Option<String>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    seq: AtomicU64,
    started: Instant,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        // a panicking test thread must not take the fake down for the other tests
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> FakeState {
        let script = self.script();
        FakeState {
            request_count: script.requests.len(),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            max_in_flight: self.max_in_flight.load(Ordering::SeqCst),
            queued: script.queue.len(),
            default: script.default.clone(),
        }
    }

    fn reset(&self) {
        let mut script = self.script();
        script.queue.clear();
        script.default = Mode::Ok;
        script.requests.clear();
        self.max_in_flight.store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Counts a provider request as in flight until dropped; it lives in the response body so a
/// streaming response counts until its last byte is sent or the connection is gone.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running fake provider. Dropping it stops the server too (without waiting).
pub struct FakeProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: ServerHandle,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeProvider").field("url", &self.url()).finish()
    }
}

impl FakeProvider {
    /// Starts on 127.0.0.1 with a free port, no key checking and the default model list.
    pub async fn start() -> FakeProvider {
        FakeProvider::start_with(FakeOptions::default()).await
    }

    pub async fn start_with(options: FakeOptions) -> FakeProvider {
        FakeProvider::try_start_with(options).await.expect("fake provider starts")
    }

    /// Starts the server on its own thread with its own actix system, so it works the same under
    /// `#[tokio::test]`, `#[actix_web::test]` and a plain `main`.
    pub async fn try_start_with(options: FakeOptions) -> io::Result<FakeProvider> {
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                queue: VecDeque::new(),
                default: Mode::Ok,
                requests: Vec::new(),
                models: options.models,
            }),
            openai_key: options.openai_key,
            anthropic_key: options.anthropic_key,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            started: Instant::now(),
        });
        let listener = TcpListener::bind(("127.0.0.1", options.port))?;
        let addr = listener.local_addr()?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<io::Result<ServerHandle>>();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let for_server = Arc::clone(&shared);
        std::thread::Builder::new().name(format!("fake-provider-{}", addr.port())).spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                let data = web::Data::new(for_server);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
                        .service(
                            web::scope("/_fake")
                                .route("/script", web::post().to(control_script))
                                .route("/default", web::put().to(control_default))
                                .route("/reset", web::post().to(control_reset))
                                .route("/requests", web::get().to(control_requests))
                                .route("/state", web::get().to(control_state)),
                        )
                        .default_service(web::to(provider))
                })
                .workers(1)
                .disable_signals()
                .listen(listener);
                let server = match server {
                    Ok(server) => server.run(),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(server.handle()));
                // a failed run only means the server is gone, which `stop` waits for anyway
                let _ = server.await;
            });
            let _ = stopped_tx.send(());
        })?;
        let handle = ready_rx.await.map_err(|_| io::Error::other("fake provider thread ended early"))??;
        Ok(FakeProvider { shared, addr, handle, stopped: Some(stopped_rx) })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash or `/v1`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends modes to the script queue, for any model and path.
    pub fn script(&self, modes: impl IntoIterator<Item = Mode>) {
        self.script_entries(modes.into_iter().map(ScriptEntry::new));
    }

    /// Appends modes to the script queue that only apply to requests for `model`.
    pub fn script_for_model(&self, model: &str, modes: impl IntoIterator<Item = Mode>) {
        self.script_entries(modes.into_iter().map(|m| ScriptEntry::new(m).for_model(model)));
    }

    /// Appends entries to the script queue.
    pub fn script_entries(&self, entries: impl IntoIterator<Item = ScriptEntry>) {
        self.shared.script().queue.extend(entries);
    }

    /// The mode for requests the queue has no entry for (initially [`Mode::Ok`]).
    pub fn set_default(&self, mode: Mode) {
        self.shared.script().default = mode;
    }

    /// Replaces what `GET /v1/models` lists.
    pub fn set_models(&self, models: impl IntoIterator<Item = String>) {
        self.shared.script().models = models.into_iter().collect();
    }

    /// All recorded provider requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.script().requests.clone()
    }

    /// Recorded requests to `path`, oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.shared.script().requests.iter().filter(|r| r.path == path).cloned().collect()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.script().requests.last().cloned()
    }

    pub fn request_count(&self) -> usize {
        self.shared.script().requests.len()
    }

    /// Script entries not consumed yet.
    pub fn queued(&self) -> usize {
        self.shared.script().queue.len()
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests in flight at once since start or the last [`FakeProvider::reset`].
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> FakeState {
        self.shared.state()
    }

    /// Empties the queue and the recorded requests, sets the default back to [`Mode::Ok`] and the
    /// in-flight maximum to the current count. Keys and models stay.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops the server, dropping open connections (stalled streams included), and waits for its
    /// thread to end.
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if self.stopped.is_some() {
            // the stop command is sent when `stop` is called; the returned future only waits
            drop(self.handle.stop(false));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// control endpoints

fn control_error(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": message }))
}

async fn control_script(body: web::Bytes, shared: web::Data<Arc<Shared>>) -> HttpResponse {
    match serde_json::from_slice::<Vec<ScriptEntry>>(&body) {
        Ok(entries) => {
            let mut script = shared.script();
            script.queue.extend(entries);
            HttpResponse::Ok().json(json!({ "queued": script.queue.len() }))
        }
        Err(e) => control_error(format!("invalid script (expected a list of modes): {e}")),
    }
}

async fn control_default(body: web::Bytes, shared: web::Data<Arc<Shared>>) -> HttpResponse {
    match serde_json::from_slice::<Mode>(&body) {
        Ok(mode) => {
            shared.script().default = mode.clone();
            HttpResponse::Ok().json(json!({ "default": mode }))
        }
        Err(e) => control_error(format!("invalid mode: {e}")),
    }
}

async fn control_reset(shared: web::Data<Arc<Shared>>) -> HttpResponse {
    shared.reset();
    HttpResponse::NoContent().finish()
}

async fn control_requests(shared: web::Data<Arc<Shared>>) -> HttpResponse {
    let requests = shared.script().requests.clone();
    HttpResponse::Ok().json(requests)
}

async fn control_state(shared: web::Data<Arc<Shared>>) -> HttpResponse {
    HttpResponse::Ok().json(shared.state())
}

// ---------------------------------------------------------------------------------------------
// provider endpoints

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Models(Protocol),
    ChatCompletions,
    Messages,
    CountTokens,
    Embeddings,
    Completions,
    Responses,
    Unknown(Protocol),
}

impl Endpoint {
    fn of(method: &str, path: &str, headers: &BTreeMap<String, String>) -> Endpoint {
        // the Anthropic SDK always sends anthropic-version, the OpenAI SDK never does
        let guess = if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") {
            Protocol::Anthropic
        } else {
            Protocol::OpenAi
        };
        match (method, path) {
            ("GET", "/v1/models") => Endpoint::Models(guess),
            ("POST", "/v1/chat/completions") => Endpoint::ChatCompletions,
            ("POST", "/v1/messages") => Endpoint::Messages,
            ("POST", "/v1/messages/count_tokens") => Endpoint::CountTokens,
            ("POST", "/v1/embeddings") => Endpoint::Embeddings,
            ("POST", "/v1/completions") => Endpoint::Completions,
            ("POST", "/v1/responses") => Endpoint::Responses,
            _ => Endpoint::Unknown(guess),
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Endpoint::Models(p) | Endpoint::Unknown(p) => p,
            Endpoint::ChatCompletions
            | Endpoint::Embeddings
            | Endpoint::Completions
            | Endpoint::Responses => Protocol::OpenAi,
            Endpoint::Messages | Endpoint::CountTokens => Protocol::Anthropic,
        }
    }

    /// Whether unrestricted script entries and the default mode apply (token counting is a side
    /// request, like the model list: only entries naming its path apply to it).
    fn is_generation(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Messages
                | Endpoint::Embeddings
                | Endpoint::Completions
                | Endpoint::Responses
        )
    }

    /// The body fields the provider refuses a request without.
    fn required_fields(self) -> &'static [&'static str] {
        match self {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::CountTokens => &["model", "messages"],
            Endpoint::Embeddings => &["model", "input"],
            Endpoint::Completions => &["model", "prompt"],
            Endpoint::Responses => &["model", "input"],
            Endpoint::Models(_) | Endpoint::Unknown(_) => &[],
        }
    }
}

/// A response before delivery: its pieces are what stalls and cuts count.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    chunks: Vec<web::Bytes>,
    streaming: bool,
}

impl Reply {
    fn json(status: StatusCode, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            chunks: vec![web::Bytes::from(body.to_string())],
            streaming: false,
        }
    }

    fn sse(events: Vec<String>) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: "text/event-stream; charset=utf-8",
            headers: vec![("cache-control", "no-cache".to_owned())],
            chunks: events.into_iter().map(web::Bytes::from).collect(),
            streaming: true,
        }
    }
}

enum Delivery {
    Normal,
    Stall { after: usize, pause: Duration },
    Cut { after: usize },
}

/// What the fake does with one provider request.
enum Decision {
    /// Refused before any scripting applies, as the real provider would refuse it.
    Rejected(Reply),
    Answer(Mode),
}

async fn provider(req: HttpRequest, body: web::Bytes, shared: web::Data<Arc<Shared>>) -> HttpResponse {
    let guard = InFlight::enter(&shared);
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let headers = header_map(&req);
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let endpoint = Endpoint::of(&method, &path, &headers);
    let protocol = endpoint.protocol();

    let decision = match check_request(&shared, endpoint, &headers, json.as_ref()) {
        Err(reply) => Decision::Rejected(reply),
        Ok(Some(overridden)) => Decision::Answer(overridden),
        Ok(None) => {
            let model = json.as_ref().and_then(|b| b.get("model")).and_then(Value::as_str);
            let mut script = shared.script();
            let scripted = script.queue.iter().position(|e| e.matches(endpoint, &path, model));
            Decision::Answer(match scripted.and_then(|i| script.queue.remove(i)) {
                Some(entry) => entry.mode,
                None if endpoint.is_generation() => script.default.clone(),
                None => Mode::Ok,
            })
        }
    };

    let at_us = u64::try_from(shared.started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    shared.script().requests.push(RecordedRequest {
        seq,
        method,
        path,
        query: req.query_string().to_owned(),
        headers,
        body: json.clone().unwrap_or(Value::Null),
        at_us,
        unix_ms,
        mode: match &decision {
            Decision::Answer(mode) => Some(mode.clone()),
            Decision::Rejected(_) => None,
        },
    });

    let (mut reply, delivery) = match decision {
        Decision::Rejected(reply) => (reply, Delivery::Normal),
        Decision::Answer(mode) => {
            if let Mode::SlowFirstByte { ms } = mode {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let reply = match endpoint {
                Endpoint::Models(p) => {
                    let models = shared.script().models.clone();
                    models_reply(p, &models, &mode)
                }
                Endpoint::ChatCompletions | Endpoint::Messages => {
                    generation_reply(protocol, json.as_ref().unwrap_or(&Value::Null), &mode, seq)
                }
                Endpoint::CountTokens => count_tokens_reply(json.as_ref().unwrap_or(&Value::Null), &mode),
                Endpoint::Embeddings => embeddings_reply(json.as_ref().unwrap_or(&Value::Null), &mode),
                Endpoint::Completions => completions_reply(json.as_ref().unwrap_or(&Value::Null), &mode, seq),
                Endpoint::Responses => responses_reply(json.as_ref().unwrap_or(&Value::Null), &mode, seq),
                Endpoint::Unknown(p) => {
                    error_reply(p, 404, &format!("Invalid URL ({} {})", req.method(), req.path()))
                }
            };
            let delivery = match mode {
                Mode::StalledStream { after_chunks, ms } => {
                    Delivery::Stall { after: after_chunks, pause: Duration::from_millis(ms) }
                }
                Mode::CutStream { after_chunks } => Delivery::Cut { after: after_chunks },
                _ => Delivery::Normal,
            };
            (reply, delivery)
        }
    };
    let id_header = match protocol {
        Protocol::OpenAi => "x-request-id",
        Protocol::Anthropic => "request-id",
    };
    reply.headers.push((id_header, format!("req_fake{seq}")));
    deliver(reply, delivery, guard)
}

fn header_map(req: &HttpRequest) -> BTreeMap<String, String> {
    let mut map = BTreeMap::<String, String>::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match map.entry(name.as_str().to_owned()) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                e.get_mut().push_str(", ");
                e.get_mut().push_str(&value);
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(value);
            }
        }
    }
    map
}

/// The checks the real providers make before looking at the request, in their order; `Ok` carries
/// the `x-fake-mode` override if any.
fn check_request(
    shared: &Shared,
    endpoint: Endpoint,
    headers: &BTreeMap<String, String>,
    body: Option<&Value>,
) -> Result<Option<Mode>, Reply> {
    let protocol = endpoint.protocol();
    match protocol {
        Protocol::OpenAi => {
            if let Some(key) = &shared.openai_key {
                match headers.get("authorization") {
                    None => {
                        return Err(error_reply(
                            protocol,
                            401,
                            "You didn't provide an API key. You need to provide your API key in an \
                             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                        ));
                    }
                    Some(sent) if sent.strip_prefix("Bearer ") != Some(key.as_str()) => {
                        return Err(error_reply(protocol, 401, "Incorrect API key provided."));
                    }
                    Some(_) => {}
                }
            }
        }
        Protocol::Anthropic => {
            if let Some(key) = &shared.anthropic_key {
                match headers.get("x-api-key") {
                    None => return Err(error_reply(protocol, 401, "x-api-key header is required")),
                    Some(sent) if sent != key => {
                        return Err(error_reply(protocol, 401, "invalid x-api-key"));
                    }
                    Some(_) => {}
                }
            }
            if !headers.contains_key("anthropic-version") {
                return Err(error_reply(protocol, 400, "anthropic-version: header is required"));
            }
        }
    }
    let overridden = match headers.get(MODE_HEADER) {
        None => None,
        Some(raw) => match serde_json::from_str::<Mode>(raw) {
            Ok(mode) => Some(mode),
            Err(e) => return Err(error_reply(protocol, 400, &format!("invalid {MODE_HEADER} header: {e}"))),
        },
    };
    let required = endpoint.required_fields();
    if !required.is_empty() {
        let Some(body) = body.filter(|b| b.is_object()) else {
            return Err(error_reply(protocol, 400, "the request body is not a valid JSON object"));
        };
        for field in required {
            let present = match *field {
                "model" => body.get("model").and_then(Value::as_str).is_some(),
                "messages" => body.get("messages").and_then(Value::as_array).is_some(),
                other => body.get(other).is_some_and(|v| v.is_string() || v.is_array()),
            };
            if !present {
                return Err(error_reply(protocol, 400, &format!("{field}: Field required")));
            }
        }
        // the gateway must add it when it translates an OpenAI request, where it is optional
        if endpoint == Endpoint::Messages && body.get("max_tokens").and_then(Value::as_u64).is_none() {
            return Err(error_reply(protocol, 400, "max_tokens: Field required"));
        }
    }
    Ok(overridden)
}

// ---------------------------------------------------------------------------------------------
// bodies

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The error body each provider sends for `status`.
fn error_body(protocol: Protocol, status: u16, message: &str) -> Value {
    match protocol {
        Protocol::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", Some("invalid_api_key")),
                404 => ("invalid_request_error", Some("model_not_found")),
                429 => ("requests", Some("rate_limit_exceeded")),
                500.. => ("server_error", None),
                _ => ("invalid_request_error", None),
            };
            json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
        }
        Protocol::Anthropic => {
            let kind = match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                500.. => "api_error",
                _ => "invalid_request_error",
            };
            json!({ "type": "error", "error": { "type": kind, "message": message } })
        }
    }
}

fn error_reply(protocol: Protocol, status: u16, message: &str) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Reply::json(code, &error_body(protocol, status, message))
}

fn scripted_message(status: u16) -> String {
    match status {
        400 => "fake provider: scripted invalid request".to_owned(),
        401 => "fake provider: scripted authentication failure".to_owned(),
        404 => "fake provider: scripted unknown model".to_owned(),
        429 => "Rate limit reached for requests (fake provider)".to_owned(),
        500 => "The server had an error while processing your request (fake provider)".to_owned(),
        503 => "The engine is currently overloaded, please try again later (fake provider)".to_owned(),
        529 => "Overloaded (fake provider)".to_owned(),
        _ => format!("fake provider: scripted status {status}"),
    }
}

fn status_reply(protocol: Protocol, mode: &Mode) -> Reply {
    let Mode::Status { code, retry_after_secs, retry_after_ms, body } = mode else {
        return error_reply(protocol, 500, "fake provider: not a status mode");
    };
    let mut reply = match body {
        Some(body) => {
            Reply::json(StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body)
        }
        None => error_reply(protocol, *code, &scripted_message(*code)),
    };
    if let Some(secs) = retry_after_secs {
        reply.headers.push(("retry-after", secs.to_string()));
    }
    if let Some(ms) = retry_after_ms {
        reply.headers.push(("retry-after-ms", ms.to_string()));
    }
    reply
}

fn invalid_json_reply(protocol: Protocol, stream: bool, seq: u64) -> Reply {
    let truncated = match protocol {
        Protocol::OpenAi => format!(
            r#"{{"id":"chatcmpl-fake{seq}","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assis"#
        ),
        Protocol::Anthropic => {
            format!(r#"{{"id":"msg_fake{seq}","type":"message","role":"assistant","content":[{{"type":"te"#)
        }
    };
    if stream {
        let events = match protocol {
            Protocol::OpenAi => vec![format!("data: {truncated}\n\n"), "data: [DONE]\n\n".to_owned()],
            Protocol::Anthropic => vec![
                format!("event: message_start\ndata: {truncated}\n\n"),
                sse_event("message_stop", &json!({ "type": "message_stop" })),
            ],
        };
        return Reply::sse(events);
    }
    Reply {
        status: StatusCode::OK,
        content_type: "application/json",
        headers: Vec::new(),
        chunks: vec![web::Bytes::from(truncated)],
        streaming: false,
    }
}

fn models_reply(protocol: Protocol, models: &[String], mode: &Mode) -> Reply {
    match mode {
        Mode::Status { .. } => return status_reply(protocol, mode),
        Mode::InvalidJson => {
            return Reply {
                status: StatusCode::OK,
                content_type: "application/json",
                headers: Vec::new(),
                chunks: vec![web::Bytes::from_static(br#"{"object":"list","data":[{"id":"#)],
                streaming: false,
            };
        }
        _ => {}
    }
    let body = match protocol {
        Protocol::OpenAi => json!({
            "object": "list",
            "data": models
                .iter()
                .map(|id| json!({ "id": id, "object": "model", "created": 1_700_000_000, "owned_by": "fake-provider" }))
                .collect::<Vec<_>>(),
        }),
        Protocol::Anthropic => json!({
            "data": models
                .iter()
                .map(|id| json!({
                    "type": "model",
                    "id": id,
                    "display_name": id,
                    "created_at": "2025-01-01T00:00:00Z",
                }))
                .collect::<Vec<_>>(),
            "has_more": false,
            "first_id": models.first(),
            "last_id": models.last(),
        }),
    };
    Reply::json(StatusCode::OK, &body)
}

/// What the fake reads from a generation request.
struct Exchange {
    model: String,
    stream: bool,
    include_usage: bool,
    input_tokens: u64,
    last_user: String,
    /// The names of the declared tools, in order.
    tools: Vec<String>,
    /// The text of the last tool result of the conversation's last turn, if it has one.
    tool_result: Option<String>,
}

impl Exchange {
    fn read(body: &Value) -> Exchange {
        let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let system = body.get("system").map(content_text).unwrap_or_default();
        let input_tokens = count_words(&system)
            + messages
                .iter()
                .map(|m| count_words(&m.get("content").map(content_text).unwrap_or_default()))
                .sum::<u64>();
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content"))
            .map(content_text)
            .unwrap_or_default();
        // OpenAI nests the name under "function", Anthropic has it at the top
        let tools = body
            .get("tools")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|t| t.pointer("/function/name").or_else(|| t.get("name")).and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        // the last turn: what came after the model last spoke
        let last_turn =
            match messages.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant")) {
                Some(i) => &messages[i + 1..],
                None => messages,
            };
        let tool_result = last_turn
            .iter()
            .flat_map(|m| {
                let content = m.get("content").unwrap_or(&Value::Null);
                let results: Vec<String> = match m.get("role").and_then(Value::as_str) {
                    Some("tool") => vec![content_text(content)],
                    Some("user") => content
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or(&[])
                        .iter()
                        .filter(|part| part.get("type").and_then(Value::as_str) == Some("tool_result"))
                        .map(|part| part.get("content").map(content_text).unwrap_or_default())
                        .collect(),
                    _ => Vec::new(),
                };
                results
            })
            .next_back();
        Exchange {
            model: body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            input_tokens,
            last_user,
            tools,
            tool_result,
        }
    }

    /// The declared tool named `name`, or else the first one whose name matches it in any case.
    fn find_tool(&self, name: &str) -> Option<&str> {
        self.tools
            .iter()
            .find(|t| *t == name)
            .or_else(|| self.tools.iter().find(|t| t.eq_ignore_ascii_case(name)))
            .map(String::as_str)
    }
}

enum Answer {
    Text(String),
    Tool { id_seq: u64, name: String, input: Value, arguments: String },
}

impl Answer {
    fn output_tokens(&self) -> u64 {
        match self {
            Answer::Text(text) => count_words(text),
            Answer::Tool { arguments, .. } => count_words(arguments),
        }
    }
}

/// Whitespace-separated words: the fake's token count.
pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The text of a message `content`: a string, or the text of its text blocks (and of tool results)
/// joined with spaces.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => part.get("text").and_then(Value::as_str).map(str::to_owned),
                Some("tool_result") => part.get("content").map(content_text),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text of [`Mode::Huge`]: words, so it still streams and counts like text.
fn huge_text(bytes: usize) -> String {
    let mut text = "lorem ".repeat(bytes / 6 + 1);
    text.truncate(bytes);
    text
}

/// Splits `text` into pieces of at most about `size` bytes on char boundaries.
fn split_str(text: &str, size: usize) -> Vec<String> {
    let size = size.max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        pieces.push(text[start..end].to_owned());
        start = end;
    }
    if pieces.is_empty() {
        pieces.push(String::new());
    }
    pieces
}

/// The streamed pieces of an answer text: one per word, like tokens, unless it is huge.
fn text_pieces(text: &str) -> Vec<String> {
    if text.len() > WORD_PIECES_UP_TO {
        return split_str(text, BIG_PIECE);
    }
    let pieces: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
    if pieces.is_empty() { vec![String::new()] } else { pieces }
}

/// The streamed pieces of tool-call arguments: a few fragments that are not valid JSON alone.
fn argument_pieces(arguments: &str) -> Vec<String> {
    split_str(arguments, arguments.len().div_ceil(3))
}

fn generation_reply(protocol: Protocol, body: &Value, mode: &Mode, seq: u64) -> Reply {
    let exchange = Exchange::read(body);
    let answer = match mode {
        Mode::Status { .. } => return status_reply(protocol, mode),
        Mode::InvalidJson => return invalid_json_reply(protocol, exchange.stream, seq),
        Mode::Huge { bytes } => Answer::Text(huge_text(*bytes)),
        Mode::Text { text } => Answer::Text(text.clone()),
        Mode::ToolCall => match exchange.tools.first() {
            Some(name) => {
                let input = json!({ "echo": exchange.last_user });
                Answer::Tool { id_seq: seq, name: name.clone(), arguments: input.to_string(), input }
            }
            None => Answer::Text(format!("echo: {}", exchange.last_user)),
        },
        Mode::Agent { tool, arguments } => match (&exchange.tool_result, exchange.find_tool(tool)) {
            (Some(result), _) => Answer::Text(format!("done: {}", result.trim())),
            (None, Some(name)) => Answer::Tool {
                id_seq: seq,
                name: name.to_owned(),
                arguments: arguments.to_string(),
                input: arguments.clone(),
            },
            (None, None) => Answer::Text(format!("echo: {}", exchange.last_user)),
        },
        Mode::Ok | Mode::SlowFirstByte { .. } | Mode::StalledStream { .. } | Mode::CutStream { .. } => {
            Answer::Text(format!("echo: {}", exchange.last_user))
        }
    };
    match (protocol, exchange.stream) {
        (Protocol::OpenAi, false) => Reply::json(StatusCode::OK, &openai_completion(&exchange, answer, seq)),
        (Protocol::OpenAi, true) => Reply::sse(openai_events(&exchange, &answer, seq)),
        (Protocol::Anthropic, false) => {
            Reply::json(StatusCode::OK, &anthropic_message(&exchange, answer, seq))
        }
        (Protocol::Anthropic, true) => Reply::sse(anthropic_events(&exchange, &answer, seq)),
    }
}

fn openai_usage(exchange: &Exchange, answer: &Answer) -> Value {
    let (input, output) = (exchange.input_tokens, answer.output_tokens());
    json!({ "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output })
}

fn openai_completion(exchange: &Exchange, answer: Answer, seq: u64) -> Value {
    let usage = openai_usage(exchange, &answer);
    let (message, finish_reason) = match answer {
        Answer::Text(text) => (json!({ "role": "assistant", "content": text, "refusal": null }), "stop"),
        Answer::Tool { id_seq, name, arguments, .. } => (
            json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "tool_calls": [{
                    "id": format!("call_fake{id_seq}"),
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }],
            }),
            "tool_calls",
        ),
    };
    json!({
        "id": format!("chatcmpl-fake{seq}"),
        "object": "chat.completion",
        "created": now_secs(),
        "model": exchange.model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason }],
        "usage": usage,
        "system_fingerprint": null,
    })
}

fn openai_events(exchange: &Exchange, answer: &Answer, seq: u64) -> Vec<String> {
    let id = format!("chatcmpl-fake{seq}");
    let created = now_secs();
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": exchange.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        // with include_usage every chunk carries "usage", null until the last one
        if exchange.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        format!("data: {chunk}\n\n")
    };
    let choice = |delta: Value, finish_reason: Value| json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }]);
    let mut events = Vec::new();
    let finish_reason = match answer {
        Answer::Text(text) => {
            events.push(chunk(
                choice(json!({ "role": "assistant", "content": "", "refusal": null }), Value::Null),
                None,
            ));
            for piece in text_pieces(text) {
                events.push(chunk(choice(json!({ "content": piece }), Value::Null), None));
            }
            "stop"
        }
        Answer::Tool { id_seq, name, arguments, .. } => {
            let start = json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "index": 0,
                    "id": format!("call_fake{id_seq}"),
                    "type": "function",
                    "function": { "name": name, "arguments": "" },
                }],
            });
            events.push(chunk(choice(start, Value::Null), None));
            for piece in argument_pieces(arguments) {
                let delta = json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] });
                events.push(chunk(choice(delta, Value::Null), None));
            }
            "tool_calls"
        }
    };
    events.push(chunk(choice(json!({}), json!(finish_reason)), None));
    if exchange.include_usage {
        events.push(chunk(json!([]), Some(openai_usage(exchange, answer))));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

fn anthropic_usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    })
}

fn anthropic_message(exchange: &Exchange, answer: Answer, seq: u64) -> Value {
    let usage = anthropic_usage(exchange.input_tokens, answer.output_tokens());
    let (content, stop_reason) = match answer {
        Answer::Text(text) => (json!([{ "type": "text", "text": text }]), "end_turn"),
        Answer::Tool { id_seq, name, input, .. } => (
            json!([{ "type": "tool_use", "id": format!("toolu_fake{id_seq}"), "name": name, "input": input }]),
            "tool_use",
        ),
    };
    json!({
        "id": format!("msg_fake{seq}"),
        "type": "message",
        "role": "assistant",
        "model": exchange.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage,
    })
}

fn sse_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn anthropic_events(exchange: &Exchange, answer: &Answer, seq: u64) -> Vec<String> {
    let start = json!({
        "type": "message_start",
        "message": {
            "id": format!("msg_fake{seq}"),
            "type": "message",
            "role": "assistant",
            "model": exchange.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            // like the real API: the output count here is a placeholder, message_delta has the total
            "usage": anthropic_usage(exchange.input_tokens, 1),
        },
    });
    let mut events = vec![sse_event("message_start", &start)];
    let (block, deltas, stop_reason) = match answer {
        Answer::Text(text) => (
            json!({ "type": "text", "text": "" }),
            text_pieces(text)
                .into_iter()
                .map(|t| json!({ "type": "text_delta", "text": t }))
                .collect::<Vec<_>>(),
            "end_turn",
        ),
        Answer::Tool { id_seq, name, arguments, .. } => (
            json!({ "type": "tool_use", "id": format!("toolu_fake{id_seq}"), "name": name, "input": {} }),
            argument_pieces(arguments)
                .into_iter()
                .map(|p| json!({ "type": "input_json_delta", "partial_json": p }))
                .collect(),
            "tool_use",
        ),
    };
    events.push(sse_event(
        "content_block_start",
        &json!({ "type": "content_block_start", "index": 0, "content_block": block }),
    ));
    events.push(sse_event("ping", &json!({ "type": "ping" })));
    for delta in deltas {
        events.push(sse_event(
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": 0, "delta": delta }),
        ));
    }
    events.push(sse_event("content_block_stop", &json!({ "type": "content_block_stop", "index": 0 })));
    events.push(sse_event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": answer.output_tokens() },
        }),
    ));
    events.push(sse_event("message_stop", &json!({ "type": "message_stop" })));
    events
}

// ---------------------------------------------------------------------------------------------
// side endpoints: token counting, embeddings, legacy completions

/// A 200 `application/json` answer whose body is the start of a JSON document, cut off.
fn truncated_json(start: String) -> Reply {
    Reply {
        status: StatusCode::OK,
        content_type: "application/json",
        headers: Vec::new(),
        chunks: vec![web::Bytes::from(start)],
        streaming: false,
    }
}

/// `POST /v1/messages/count_tokens`: the input tokens the same request would report from
/// `/v1/messages`.
fn count_tokens_reply(body: &Value, mode: &Mode) -> Reply {
    match mode {
        Mode::Status { .. } => status_reply(Protocol::Anthropic, mode),
        Mode::InvalidJson => truncated_json(r#"{"input_tokens":"#.to_owned()),
        _ => Reply::json(StatusCode::OK, &json!({ "input_tokens": Exchange::read(body).input_tokens })),
    }
}

/// The inputs of an embeddings or legacy completions request (`input` / `prompt`): a string, an
/// array of strings, one array of token ids or an array of them. Each comes with its token count:
/// words for text, ids for token arrays.
fn batch_inputs(input: &Value) -> Vec<(String, u64)> {
    let one = |item: &Value| match item {
        Value::String(text) => (text.clone(), count_words(text)),
        Value::Array(ids) => (item.to_string(), ids.len() as u64),
        other => (other.to_string(), 1),
    };
    match input {
        Value::Array(items) if !items.is_empty() && !items.iter().all(Value::is_number) => {
            items.iter().map(one).collect()
        }
        other => vec![one(other)],
    }
}

/// `dimensions` numbers in [-1, 1] derived from `text` (FNV-1a, one seed per dimension), with three
/// decimals so they print exactly.
fn embedding_of(text: &str, dimensions: usize) -> Vec<f64> {
    (0..dimensions as u64)
        .map(|seed| {
            let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for byte in text.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            (((hash >> 11) % 2001) as f64 - 1000.0) / 1000.0
        })
        .collect()
}

/// Standard base64 with padding, for `encoding_format: "base64"` embeddings.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Embeddings have 8 dimensions unless the request asks for `dimensions` (at most this many).
const EMBEDDING_DIMENSIONS: usize = 8;
const MAX_EMBEDDING_DIMENSIONS: usize = 4096;

/// `POST /v1/embeddings` in OpenAI's shape; `encoding_format: "base64"` (what the OpenAI SDKs ask
/// for by default) sends the little-endian f32s base64-encoded.
fn embeddings_reply(body: &Value, mode: &Mode) -> Reply {
    match mode {
        Mode::Status { .. } => return status_reply(Protocol::OpenAi, mode),
        Mode::InvalidJson => {
            return truncated_json(
                r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,"#.to_owned(),
            );
        }
        _ => {}
    }
    let dimensions = body.get("dimensions").and_then(Value::as_u64).map_or(EMBEDDING_DIMENSIONS, |d| {
        usize::try_from(d).unwrap_or(usize::MAX).clamp(1, MAX_EMBEDDING_DIMENSIONS)
    });
    let base64_encoded = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let inputs = batch_inputs(body.get("input").unwrap_or(&Value::Null));
    let tokens: u64 = inputs.iter().map(|(_, n)| n).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, (text, _))| {
            let numbers = embedding_of(text, dimensions);
            let embedding = if base64_encoded {
                let bytes: Vec<u8> = numbers.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(numbers)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Reply::json(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": body.get("model").and_then(Value::as_str).unwrap_or_default(),
            "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        }),
    )
}

/// `POST /v1/completions`, the legacy text completions: one choice per prompt, `"echo: " +
/// <prompt>` (or the [`Mode::Huge`] text), streamed when asked like chat completions are.
fn completions_reply(body: &Value, mode: &Mode, seq: u64) -> Reply {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    match mode {
        Mode::Status { .. } => return status_reply(Protocol::OpenAi, mode),
        Mode::InvalidJson => {
            let start =
                format!(r#"{{"id":"cmpl-fake{seq}","object":"text_completion","choices":[{{"text":"ec"#);
            if stream {
                return Reply::sse(vec![format!("data: {start}\n\n"), "data: [DONE]\n\n".to_owned()]);
            }
            return truncated_json(start);
        }
        _ => {}
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
    let prompts = batch_inputs(body.get("prompt").unwrap_or(&Value::Null));
    let texts: Vec<String> = prompts
        .iter()
        .map(|(prompt, _)| match mode {
            Mode::Huge { bytes } => huge_text(*bytes),
            Mode::Text { text } => text.clone(),
            _ => format!("echo: {prompt}"),
        })
        .collect();
    let input: u64 = prompts.iter().map(|(_, n)| n).sum();
    let output: u64 = texts.iter().map(|t| count_words(t)).sum();
    let usage =
        json!({ "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output });
    let id = format!("cmpl-fake{seq}");
    let created = now_secs();
    let choice = |index: usize, text: &str, finish_reason: Value| json!({ "text": text, "index": index, "logprobs": null, "finish_reason": finish_reason });
    if !stream {
        let choices: Vec<Value> =
            texts.iter().enumerate().map(|(i, t)| choice(i, t, json!("stop"))).collect();
        return Reply::json(
            StatusCode::OK,
            &json!({
                "id": id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
                "system_fingerprint": null,
            }),
        );
    }
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({ "id": id, "object": "text_completion", "created": created, "model": model, "choices": choices });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        format!("data: {chunk}\n\n")
    };
    let mut events = Vec::new();
    for (index, text) in texts.iter().enumerate() {
        for piece in text_pieces(text) {
            events.push(chunk(json!([choice(index, &piece, Value::Null)]), None));
        }
        events.push(chunk(json!([choice(index, "", json!("stop"))]), None));
    }
    if body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true) {
        events.push(chunk(json!([]), Some(usage)));
    }
    events.push("data: [DONE]\n\n".to_owned());
    Reply::sse(events)
}

/// The text of the last user input of a Responses request (`input` a string, or items whose
/// last user message holds text).
fn responses_input_text(body: &Value) -> String {
    match body.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .rev()
            .find(|i| i.get("role").and_then(Value::as_str) == Some("user"))
            .map(|i| content_text(i.get("content").unwrap_or(&Value::Null)))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// `POST /v1/responses`, OpenAI's Responses API, for deployments that serve it themselves:
/// `"echo: " + <last user input>` as one message item (a call of the first function tool in
/// [`Mode::ToolCall`]), tokens counted in words (instructions and every input text in, the answer
/// out), streamed as the Responses events when asked.
fn responses_reply(body: &Value, mode: &Mode, seq: u64) -> Reply {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    match mode {
        Mode::Status { .. } => return status_reply(Protocol::OpenAi, mode),
        Mode::InvalidJson => return truncated_json(format!(r#"{{"id":"resp_fake{seq}","object":"resp"#)),
        _ => {}
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
    let text = responses_input_text(body);
    let mut input = body.get("instructions").and_then(Value::as_str).map_or(0, count_words);
    input += match body.get("input") {
        Some(Value::Array(items)) => {
            items.iter().map(|i| count_words(&content_text(i.get("content").unwrap_or(&Value::Null)))).sum()
        }
        _ => count_words(&text),
    };
    let tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|t| t.iter().find(|t| t.get("type").and_then(Value::as_str) == Some("function")))
        .and_then(|t| t.get("name").and_then(Value::as_str));
    let (item, answer) = match (mode, tool) {
        (Mode::ToolCall, Some(name)) => {
            let arguments = json!({ "echo": text }).to_string();
            let item = json!({ "type": "function_call", "id": format!("fc_fake{seq}"), "call_id": format!("call_fake{seq}"),
                               "name": name, "arguments": arguments, "status": "completed" });
            (item, text.clone())
        }
        _ => {
            let answer = match mode {
                Mode::Huge { bytes } => huge_text(*bytes),
                Mode::Text { text: t } => t.clone(),
                _ => format!("echo: {text}"),
            };
            let item = json!({ "type": "message", "id": format!("msg_fake{seq}"), "status": "completed", "role": "assistant",
                               "content": [{ "type": "output_text", "text": answer, "annotations": [] }] });
            (item, answer)
        }
    };
    let output = count_words(&answer);
    let usage = json!({ "input_tokens": input, "input_tokens_details": { "cached_tokens": 0 },
                        "output_tokens": output, "output_tokens_details": { "reasoning_tokens": 0 },
                        "total_tokens": input + output });
    let response = |status: &str, output: Value, usage: Value| {
        json!({ "id": format!("resp_fake{seq}"), "object": "response", "created_at": now_secs(), "status": status,
                "model": model, "output": output, "usage": usage, "error": null, "incomplete_details": null })
    };
    if !stream {
        return Reply::json(StatusCode::OK, &response("completed", json!([item]), usage));
    }
    let mut n = 0u64;
    let mut event = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(n);
        n += 1;
        format!("event: {name}\ndata: {data}\n\n")
    };
    let mut events = vec![
        event("response.created", json!({ "response": response("in_progress", json!([]), Value::Null) })),
        event("response.in_progress", json!({ "response": response("in_progress", json!([]), Value::Null) })),
    ];
    let item_id = item["id"].clone();
    if item["type"] == "message" {
        let mut open = item.clone();
        open["status"] = json!("in_progress");
        open["content"] = json!([]);
        events.push(event("response.output_item.added", json!({ "output_index": 0, "item": open })));
        events.push(event("response.content_part.added", json!({ "item_id": item_id, "output_index": 0, "content_index": 0,
                                                                "part": { "type": "output_text", "text": "", "annotations": [] } })));
        for piece in text_pieces(&answer) {
            events.push(event(
                "response.output_text.delta",
                json!({ "item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece }),
            ));
        }
        events.push(event(
            "response.output_text.done",
            json!({ "item_id": item_id, "output_index": 0, "content_index": 0, "text": answer }),
        ));
    } else {
        let mut open = item.clone();
        open["status"] = json!("in_progress");
        open["arguments"] = json!("");
        events.push(event("response.output_item.added", json!({ "output_index": 0, "item": open })));
        events.push(event(
            "response.function_call_arguments.delta",
            json!({ "item_id": item_id, "output_index": 0, "delta": item["arguments"] }),
        ));
        events.push(event(
            "response.function_call_arguments.done",
            json!({ "item_id": item_id, "output_index": 0, "arguments": item["arguments"] }),
        ));
    }
    events.push(event("response.output_item.done", json!({ "output_index": 0, "item": item })));
    events.push(event(
        "response.completed",
        json!({ "response": response("completed", json!([item]), usage) }),
    ));
    Reply::sse(events)
}

// ---------------------------------------------------------------------------------------------
// delivery

fn split_bytes(body: web::Bytes, pieces: usize) -> Vec<web::Bytes> {
    let size = body.len().div_ceil(pieces).max(1);
    (0..body.len()).step_by(size).map(|start| body.slice(start..(start + size).min(body.len()))).collect()
}

fn body_stream(
    chunks: Vec<web::Bytes>,
    delivery: Delivery,
    guard: InFlight,
) -> impl Stream<Item = Result<web::Bytes, io::Error>> + 'static {
    let mut head = chunks;
    // stalls and cuts always come before the end, so a client can never mistake them for it
    let before_end = |after: usize, len: usize| after.min(len.saturating_sub(1));
    let (pause, tail, cut) = match delivery {
        Delivery::Normal => (None, Vec::new(), false),
        Delivery::Stall { after, pause } => {
            let tail = head.split_off(before_end(after, head.len()));
            (Some(pause), tail, false)
        }
        Delivery::Cut { after } => {
            head.truncate(before_end(after, head.len()));
            (None, Vec::new(), true)
        }
    };
    let pause = stream::iter(pause)
        .then(|pause| tokio::time::sleep(pause))
        .filter_map(|()| future::ready(None::<Result<web::Bytes, io::Error>>));
    // an error ends the body without its terminator: actix drops the connection mid-body
    // the pause before it lets actix flush the head and chunks: an error found in the same poll
    // would drop them with the connection
    let cut = stream::iter(cut.then_some(CUT_FLUSH_PAUSE)).then(|pause| async move {
        tokio::time::sleep(pause).await;
        Err(io::Error::other("fake provider cut the stream"))
    });
    stream::iter(head.into_iter().map(Ok))
        .chain(pause)
        .chain(stream::iter(tail.into_iter().map(Ok)))
        .chain(cut)
        .map(move |item| {
            // the body owns the in-flight guard: the request counts until the body is done or dropped
            let _in_flight = &guard;
            item
        })
}

fn deliver(reply: Reply, delivery: Delivery, guard: InFlight) -> HttpResponse {
    let mut chunks = reply.chunks;
    if !reply.streaming && !matches!(delivery, Delivery::Normal) {
        chunks = split_bytes(chunks.concat().into(), BODY_PIECES);
    }
    let total: usize = chunks.iter().map(web::Bytes::len).sum();
    let mut builder = HttpResponse::build(reply.status);
    builder.content_type(reply.content_type);
    for header in reply.headers {
        builder.insert_header(header);
    }
    let body = body_stream(chunks, delivery, guard);
    if reply.streaming {
        builder.body(BodyStream::new(body))
    } else {
        builder.body(SizedStream::new(total as u64, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().expect("client")
    }

    fn openai(fake: &FakeProvider, body: Value) -> reqwest::RequestBuilder {
        http().post(format!("{}/v1/chat/completions", fake.url())).bearer_auth("sk-test").json(&body)
    }

    fn anthropic(fake: &FakeProvider, body: Value) -> reqwest::RequestBuilder {
        http()
            .post(format!("{}/v1/messages", fake.url()))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
    }

    fn chat(model: &str, text: &str) -> Value {
        json!({ "model": model, "messages": [{ "role": "user", "content": text }] })
    }

    fn message(model: &str, text: &str) -> Value {
        json!({ "model": model, "max_tokens": 100, "messages": [{ "role": "user", "content": text }] })
    }

    fn with(mut body: Value, key: &str, value: Value) -> Value {
        body[key] = value;
        body
    }

    /// (event name, data) of each SSE event in `text`.
    fn parse_sse(text: &str) -> Vec<(Option<String>, String)> {
        text.split("\n\n")
            .filter(|block| !block.trim().is_empty())
            .map(|block| {
                let mut event = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = Some(name.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                (event, data)
            })
            .collect()
    }

    fn header(res: &reqwest::Response, name: &str) -> Option<String> {
        res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    async fn sse_of(res: reqwest::Response) -> Vec<(Option<String>, String)> {
        assert_eq!(res.status(), 200);
        assert!(header(&res, "content-type").is_some_and(|c| c.starts_with("text/event-stream")));
        parse_sse(&res.text().await.expect("stream body"))
    }

    /// The OpenAI chunks of a stream (all but `[DONE]`), checking it ends with `[DONE]`.
    fn openai_chunks(events: &[(Option<String>, String)]) -> Vec<Value> {
        let (last, chunks) = events.split_last().expect("events");
        assert_eq!(last.1, "[DONE]");
        chunks.iter().map(|(_, data)| serde_json::from_str(data).expect("chunk is json")).collect()
    }

    #[test]
    fn modes_and_entries_have_a_flat_json_shape() {
        let entry: ScriptEntry =
            serde_json::from_str(r#"{"mode":"status","code":429,"retry_after_secs":3,"model":"gpt-4o"}"#)
                .expect("entry");
        assert_eq!(entry, ScriptEntry::new(Mode::rate_limited(3)).for_model("gpt-4o"));
        let bare: ScriptEntry =
            serde_json::from_str(r#"{"mode":"cut_stream","after_chunks":2}"#).expect("bare");
        assert_eq!(bare, ScriptEntry::new(Mode::CutStream { after_chunks: 2 }));
        assert_eq!(
            serde_json::to_value(ScriptEntry::new(Mode::Huge { bytes: 5 }).for_path("/v1/messages"))
                .expect("json"),
            json!({ "mode": "huge", "bytes": 5, "path": "/v1/messages" })
        );
        assert_eq!(Mode::SlowFirstByte { ms: 7 }.header_value(), r#"{"mode":"slow_first_byte","ms":7}"#);
    }

    #[tokio::test]
    async fn openai_answers_with_the_echo_and_word_counts() {
        let fake = FakeProvider::start().await;
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                { "role": "system", "content": "be very brief" },
                { "role": "user", "content": "hello big world" },
                { "role": "assistant", "content": "sure" },
                { "role": "user", "content": [{ "type": "text", "text": "say hi" }, { "type": "text", "text": "please" }] },
            ],
        });
        let res = openai(&fake, body).send().await.expect("send");
        assert_eq!(res.status(), 200);
        assert!(header(&res, "content-type").is_some_and(|c| c.starts_with("application/json")));
        assert!(header(&res, "x-request-id").is_some());
        let answer: Value = res.json().await.expect("json");
        assert_eq!(answer["object"], "chat.completion");
        assert!(answer["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")), "{answer}");
        assert!(answer["created"].as_u64().is_some_and(|c| c > 1_600_000_000));
        assert_eq!(answer["model"], "gpt-4o");
        assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
        assert_eq!(answer["choices"][0]["message"]["content"], "echo: say hi please");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        // 3 + 3 + 1 + 3 words in, "echo: say hi please" out
        assert_eq!(
            answer["usage"],
            json!({ "prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14 })
        );
        fake.stop().await;
    }

    #[tokio::test]
    async fn openai_streams_role_content_finish_and_usage_only_when_asked() {
        let fake = FakeProvider::start().await;
        let body = with(chat("gpt-4o-mini", "one two three"), "stream", json!(true));
        let chunks = openai_chunks(&sse_of(openai(&fake, body.clone()).send().await.expect("send")).await);
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "gpt-4o-mini"));
        assert!(chunks.iter().all(|c| c.get("usage").is_none()), "no usage unless asked");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let content: Vec<&str> =
            chunks[1..].iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert!(content.len() >= 3, "several content chunks: {content:?}");
        assert_eq!(content.concat(), "echo: one two three");
        let last = chunks.last().expect("finish chunk");
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["choices"][0]["delta"], json!({}));

        let body = with(body, "stream_options", json!({ "include_usage": true }));
        let chunks = openai_chunks(&sse_of(openai(&fake, body).send().await.expect("send")).await);
        let (usage, rest) = chunks.split_last().expect("usage chunk");
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"], json!({ "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7 }));
        assert!(rest.iter().all(|c| c["usage"].is_null()));
        assert_eq!(rest.last().expect("finish")["choices"][0]["finish_reason"], "stop");
        fake.stop().await;
    }

    #[tokio::test]
    async fn anthropic_answers_with_the_echo_and_word_counts() {
        let fake = FakeProvider::start().await;
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "system": [{ "type": "text", "text": "you are a parrot" }],
            "messages": [{ "role": "user", "content": [{ "type": "text", "text": "polly wants" }] }],
        });
        let res = anthropic(&fake, body).send().await.expect("send");
        assert_eq!(res.status(), 200);
        assert!(header(&res, "request-id").is_some());
        let answer: Value = res.json().await.expect("json");
        assert!(answer["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{answer}");
        assert_eq!(answer["type"], "message");
        assert_eq!(answer["role"], "assistant");
        assert_eq!(answer["model"], "claude-sonnet-4-5");
        assert_eq!(answer["content"], json!([{ "type": "text", "text": "echo: polly wants" }]));
        assert_eq!(answer["stop_reason"], "end_turn");
        assert!(answer["stop_sequence"].is_null());
        assert_eq!(
            answer["usage"],
            json!({
                "input_tokens": 6,
                "output_tokens": 3,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            })
        );
        fake.stop().await;
    }

    #[tokio::test]
    async fn anthropic_streams_the_real_event_sequence() {
        let fake = FakeProvider::start().await;
        let body = with(message("claude-haiku-4-5", "a b c d"), "stream", json!(true));
        let events = sse_of(anthropic(&fake, body).send().await.expect("send")).await;
        let names: Vec<&str> = events.iter().map(|(e, _)| e.as_deref().expect("named event")).collect();
        let deltas = names.iter().filter(|n| **n == "content_block_delta").count();
        assert!(deltas >= 2, "several deltas: {names:?}");
        let mut expected = vec!["message_start", "content_block_start", "ping"];
        expected.extend(std::iter::repeat_n("content_block_delta", deltas));
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(names, expected);
        let data: Vec<Value> = events.iter().map(|(_, d)| serde_json::from_str(d).expect("json")).collect();
        for (name, d) in names.iter().zip(&data) {
            assert_eq!(d["type"], *name, "event name matches data type");
        }
        assert_eq!(data[0]["message"]["usage"]["input_tokens"], 4);
        assert_eq!(data[0]["message"]["model"], "claude-haiku-4-5");
        assert_eq!(data[1]["content_block"], json!({ "type": "text", "text": "" }));
        let text: String = data
            .iter()
            .filter(|d| d["type"] == "content_block_delta")
            .map(|d| {
                assert_eq!(d["delta"]["type"], "text_delta");
                d["delta"]["text"].as_str().expect("text").to_owned()
            })
            .collect();
        assert_eq!(text, "echo: a b c d");
        let delta = &data[data.len() - 2];
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 5);
        fake.stop().await;
    }

    #[tokio::test]
    async fn tool_call_mode_calls_the_first_tool_in_openai_shape() {
        let fake = FakeProvider::start().await;
        fake.set_default(Mode::ToolCall);
        let tools = json!([
            { "type": "function", "function": { "name": "lookup", "parameters": { "type": "object" } } },
            { "type": "function", "function": { "name": "other" } },
        ]);
        let body = with(chat("gpt-4o", "find my keys"), "tools", tools);
        let answer: Value =
            openai(&fake, body.clone()).send().await.expect("send").json().await.expect("json");
        let choice = &answer["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert!(choice["message"]["content"].is_null());
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "lookup");
        let arguments = call["function"]["arguments"].as_str().expect("arguments are a string");
        assert_eq!(
            serde_json::from_str::<Value>(arguments).expect("json"),
            json!({ "echo": "find my keys" })
        );
        assert_eq!(answer["usage"]["completion_tokens"], count_words(arguments));

        let body = with(body, "stream", json!(true));
        let chunks = openai_chunks(&sse_of(openai(&fake, body).send().await.expect("send")).await);
        let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(first["function"]["name"], "lookup");
        assert!(first["id"].as_str().is_some_and(|id| id.starts_with("call_")));
        let fragments: Vec<&str> = chunks[1..]
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert!(fragments.len() >= 2, "arguments come in fragments: {fragments:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&fragments.concat()).expect("json"),
            json!({ "echo": "find my keys" })
        );
        assert_eq!(chunks.last().expect("finish")["choices"][0]["finish_reason"], "tool_calls");
        fake.stop().await;
    }

    #[tokio::test]
    async fn tool_call_mode_uses_tool_use_blocks_in_anthropic_shape() {
        let fake = FakeProvider::start().await;
        let body =
            with(message("claude-sonnet-4-5", "weather in oslo"), "tools", json!([{ "name": "weather" }]));
        let res = anthropic(&fake, body.clone())
            .header(MODE_HEADER, Mode::ToolCall.header_value())
            .send()
            .await
            .expect("send");
        let answer: Value = res.json().await.expect("json");
        assert_eq!(answer["stop_reason"], "tool_use");
        let block = &answer["content"][0];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "weather");
        assert!(block["id"].as_str().is_some_and(|id| id.starts_with("toolu_")));
        assert_eq!(block["input"], json!({ "echo": "weather in oslo" }));

        let body = with(body, "stream", json!(true));
        let res = anthropic(&fake, body).header(MODE_HEADER, Mode::ToolCall.header_value()).send().await;
        let events = sse_of(res.expect("send")).await;
        let data: Vec<Value> = events.iter().map(|(_, d)| serde_json::from_str(d).expect("json")).collect();
        assert_eq!(data[1]["content_block"]["type"], "tool_use");
        assert_eq!(data[1]["content_block"]["input"], json!({}));
        let partial: Vec<&str> = data
            .iter()
            .filter(|d| d["delta"]["type"] == "input_json_delta")
            .filter_map(|d| d["delta"]["partial_json"].as_str())
            .collect();
        assert!(partial.len() >= 2, "{partial:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&partial.concat()).expect("json"),
            json!({ "echo": "weather in oslo" })
        );
        let delta = data.iter().find(|d| d["type"] == "message_delta").expect("message_delta");
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        fake.stop().await;
    }

    #[tokio::test]
    async fn tool_call_mode_without_tools_answers_text() {
        let fake = FakeProvider::start().await;
        fake.script([Mode::ToolCall]);
        let answer: Value =
            openai(&fake, chat("gpt-4o", "no tools")).send().await.expect("send").json().await.expect("json");
        assert_eq!(answer["choices"][0]["message"]["content"], "echo: no tools");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        fake.stop().await;
    }

    #[tokio::test]
    async fn agent_mode_calls_the_named_tool_then_answers_the_tool_result() {
        let fake = FakeProvider::start().await;
        let arguments = json!({ "command": "echo hi > out.txt" });
        let agent = Mode::Agent { tool: "Bash".to_owned(), arguments: arguments.clone() };
        assert_eq!(
            serde_json::from_str::<Mode>(
                r#"{"mode":"agent","tool":"Bash","arguments":{"command":"echo hi > out.txt"}}"#
            )
            .expect("mode"),
            agent
        );
        fake.set_default(agent);

        // OpenAI: the tool is matched in any case; its arguments are sent verbatim
        let tools = json!([
            { "type": "function", "function": { "name": "read", "parameters": { "type": "object" } } },
            { "type": "function", "function": { "name": "bash", "parameters": { "type": "object" } } },
        ]);
        let first = with(chat("gpt-4o", "write the file"), "tools", tools);
        let answer: Value =
            openai(&fake, first.clone()).send().await.expect("send").json().await.expect("json");
        let call = &answer["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(call["function"]["name"], "bash");
        let sent = call["function"]["arguments"].as_str().expect("arguments");
        assert_eq!(serde_json::from_str::<Value>(sent).expect("json"), arguments);

        let mut second = first.clone();
        let history = second["messages"].as_array_mut().expect("messages");
        history.push(json!({ "role": "assistant", "content": null, "tool_calls": [call] }));
        history.push(json!({ "role": "tool", "tool_call_id": call["id"], "content": " hi\n" }));
        let answer: Value =
            openai(&fake, second.clone()).send().await.expect("send").json().await.expect("json");
        assert_eq!(answer["choices"][0]["message"]["content"], "done: hi");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        let chunks = openai_chunks(
            &sse_of(openai(&fake, with(second, "stream", json!(true))).send().await.expect("send")).await,
        );
        let text: String =
            chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "done: hi");
        let chunks = openai_chunks(
            &sse_of(openai(&fake, with(first, "stream", json!(true))).send().await.expect("send")).await,
        );
        assert_eq!(chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "bash");
        assert_eq!(chunks.last().expect("finish")["choices"][0]["finish_reason"], "tool_calls");

        // Anthropic, streaming: a tool_use block of the named tool
        let first = with(
            with(
                message("claude-sonnet-4-5", "write the file"),
                "tools",
                json!([{ "name": "Read" }, { "name": "Bash" }]),
            ),
            "stream",
            json!(true),
        );
        let events = sse_of(anthropic(&fake, first.clone()).send().await.expect("send")).await;
        let data: Vec<Value> = events.iter().map(|(_, d)| serde_json::from_str(d).expect("json")).collect();
        assert_eq!(data[1]["content_block"]["type"], "tool_use");
        assert_eq!(data[1]["content_block"]["name"], "Bash");
        let partial: String = data.iter().filter_map(|d| d["delta"]["partial_json"].as_str()).collect();
        assert_eq!(serde_json::from_str::<Value>(&partial).expect("json"), arguments);

        // a tool result in the last user message (after a mid-conversation system message) ends it
        let mut second = with(first, "stream", json!(false));
        let history = second["messages"].as_array_mut().expect("messages");
        history.push(json!({ "role": "system", "content": "environment" }));
        history.push(json!({ "role": "assistant", "content": [
            { "type": "tool_use", "id": "toolu_1", "name": "Bash", "input": arguments },
        ] }));
        history.push(json!({ "role": "user", "content": [
            { "type": "tool_result", "tool_use_id": "toolu_1", "content": [{ "type": "text", "text": "hi" }] },
            { "type": "text", "text": "<system-reminder>keep going</system-reminder>" },
        ] }));
        let answer: Value = anthropic(&fake, second).send().await.expect("send").json().await.expect("json");
        assert_eq!(answer["content"], json!([{ "type": "text", "text": "done: hi" }]));
        assert_eq!(answer["stop_reason"], "end_turn");

        // no such tool: a normal answer
        let answer: Value =
            anthropic(&fake, with(message("claude", "no bash"), "tools", json!([{ "name": "Read" }])))
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
        assert_eq!(answer["content"][0]["text"], "echo: no bash");
        fake.stop().await;
    }

    #[tokio::test]
    async fn count_tokens_counts_the_words_a_message_would_report() {
        let fake = FakeProvider::start().await;
        // the default mode is for generations; token counting is not one
        fake.set_default(Mode::status(500));
        let body = json!({
            "model": "claude-sonnet-4-5",
            "system": "be brief",
            "messages": [{ "role": "user", "content": [{ "type": "text", "text": "count these three" }] }],
        });
        let res = http()
            .post(format!("{}/v1/messages/count_tokens", fake.url()))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.expect("json"), json!({ "input_tokens": 5 }));
        let unversioned = http()
            .post(format!("{}/v1/messages/count_tokens", fake.url()))
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(unversioned.status(), 400);
        fake.stop().await;
    }

    #[tokio::test]
    async fn embeddings_are_derived_from_each_input() {
        let fake = FakeProvider::start().await;
        let post = |body: Value| {
            http().post(format!("{}/v1/embeddings", fake.url())).bearer_auth("sk-test").json(&body).send()
        };
        let one: Value = post(json!({ "model": "text-embedding-3-small", "input": "hello world" }))
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(one["object"], "list");
        assert_eq!(one["model"], "text-embedding-3-small");
        assert_eq!(one["usage"], json!({ "prompt_tokens": 2, "total_tokens": 2 }));
        let vector = one["data"][0]["embedding"].as_array().expect("floats").clone();
        assert_eq!(
            (one["data"][0]["object"].as_str(), one["data"][0]["index"].as_u64()),
            (Some("embedding"), Some(0))
        );
        assert_eq!(vector.len(), 8);
        assert!(vector.iter().all(|x| x.as_f64().is_some_and(|x| (-1.0..=1.0).contains(&x))), "{vector:?}");

        let batch: Value = post(json!({ "model": "m", "input": ["hello world", "something else"] }))
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let data = batch["data"].as_array().expect("data");
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["embedding"].as_array(), Some(&vector), "the same input, the same numbers");
        assert_ne!(data[1]["embedding"], data[0]["embedding"]);
        assert_eq!(data[1]["index"], 1);
        assert_eq!(batch["usage"]["prompt_tokens"], 4);

        // base64: the same numbers as little-endian f32s
        let encoded: Value =
            post(json!({ "model": "m", "input": "hello world", "encoding_format": "base64" }))
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
        let expected: Vec<u8> =
            vector.iter().flat_map(|x| (x.as_f64().expect("float") as f32).to_le_bytes()).collect();
        assert_eq!(encoded["data"][0]["embedding"], json!(base64(&expected)));
        assert_eq!(base64(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw==");
        assert_eq!(base64(b"any carnal pleasu"), "YW55IGNhcm5hbCBwbGVhc3U=");
        assert_eq!(base64(b"any carnal pleasur"), "YW55IGNhcm5hbCBwbGVhc3Vy");

        let tokens: Value = post(json!({ "model": "m", "input": [1, 2, 3], "dimensions": 3 }))
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(tokens["data"].as_array().map(Vec::len), Some(1));
        assert_eq!(tokens["data"][0]["embedding"].as_array().map(Vec::len), Some(3));
        assert_eq!(tokens["usage"]["prompt_tokens"], 3);
        assert_eq!(post(json!({ "model": "m" })).await.expect("send").status(), 400);
        fake.script([Mode::status(429)]);
        assert_eq!(post(json!({ "model": "m", "input": "x" })).await.expect("send").status(), 429);
        fake.stop().await;
    }

    #[tokio::test]
    async fn legacy_completions_echo_the_prompt() {
        let fake = FakeProvider::start().await;
        let post = |body: Value| {
            http().post(format!("{}/v1/completions", fake.url())).bearer_auth("sk-test").json(&body).send()
        };
        let answer: Value = post(json!({ "model": "gpt-3.5-turbo-instruct", "prompt": "say this" }))
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(answer["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")), "{answer}");
        assert_eq!(answer["object"], "text_completion");
        assert!(answer["created"].as_u64().is_some_and(|c| c > 1_600_000_000));
        assert_eq!(answer["model"], "gpt-3.5-turbo-instruct");
        assert_eq!(
            answer["choices"],
            json!([{ "text": "echo: say this", "index": 0, "logprobs": null, "finish_reason": "stop" }])
        );
        assert_eq!(answer["usage"], json!({ "prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5 }));

        let batch: Value = post(json!({ "model": "m", "prompt": ["a", "b c"] }))
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(batch["choices"][1]["text"], "echo: b c");
        assert_eq!(batch["choices"][1]["index"], 1);

        let events = sse_of(
            post(json!({ "model": "m", "prompt": "one two", "stream": true, "stream_options": { "include_usage": true } }))
                .await
                .expect("send"),
        )
        .await;
        let chunks = openai_chunks(&events);
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
        assert_eq!(text, "echo: one two");
        assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks.last().expect("usage")["usage"]["completion_tokens"], 3);
        assert_eq!(post(json!({ "model": "m" })).await.expect("send").status(), 400);
        fake.stop().await;
    }

    #[tokio::test]
    async fn status_modes_send_each_providers_error_shape_and_retry_headers() {
        let fake = FakeProvider::start().await;
        fake.script([
            Mode::Status { code: 429, retry_after_secs: Some(2), retry_after_ms: Some(1500), body: None },
            Mode::status(500),
            Mode::status(503),
            Mode::status(400),
        ]);
        let expectations = [
            (429, "requests", Some("rate_limit_exceeded")),
            (500, "server_error", None),
            (503, "server_error", None),
            (400, "invalid_request_error", None),
        ];
        for (i, (status, kind, code)) in expectations.into_iter().enumerate() {
            let res = openai(&fake, chat("gpt-4o", "hi")).send().await.expect("send");
            assert_eq!(res.status().as_u16(), status);
            let (retry_after, retry_after_ms) = (header(&res, "retry-after"), header(&res, "retry-after-ms"));
            if i == 0 {
                assert_eq!((retry_after.as_deref(), retry_after_ms.as_deref()), (Some("2"), Some("1500")));
            } else {
                assert_eq!((retry_after, retry_after_ms), (None, None));
            }
            let body: Value = res.json().await.expect("json");
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert_eq!(body["error"]["code"], json!(code), "{body}");
            assert!(body["error"]["param"].is_null());
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }

        fake.script([
            Mode::rate_limited(7),
            Mode::status(529),
            Mode::status(500),
            Mode::status(503),
            Mode::status(400),
        ]);
        let expectations = [
            (429, "rate_limit_error"),
            (529, "overloaded_error"),
            (500, "api_error"),
            (503, "api_error"),
            (400, "invalid_request_error"),
        ];
        for (i, (status, kind)) in expectations.into_iter().enumerate() {
            let res = anthropic(&fake, message("claude-sonnet-4-5", "hi")).send().await.expect("send");
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(header(&res, "retry-after"), (i == 0).then(|| "7".to_owned()));
            let body: Value = res.json().await.expect("json");
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }

        let custom = json!({ "error": { "message": "quota", "type": "insufficient_quota" } });
        fake.script([Mode::Status {
            code: 429,
            retry_after_secs: None,
            retry_after_ms: Some(20),
            body: Some(custom.clone()),
        }]);
        let res = openai(&fake, chat("gpt-4o", "hi")).send().await.expect("send");
        assert_eq!(res.status(), 429);
        assert_eq!(header(&res, "retry-after-ms").as_deref(), Some("20"));
        assert_eq!(res.json::<Value>().await.expect("json"), custom);
        fake.stop().await;
    }

    #[tokio::test]
    async fn status_modes_also_fail_streaming_requests_before_the_stream() {
        let fake = FakeProvider::start().await;
        fake.script([Mode::status(529)]);
        let res =
            anthropic(&fake, with(message("claude", "x"), "stream", json!(true))).send().await.expect("send");
        assert_eq!(res.status(), 529);
        assert!(header(&res, "content-type").is_some_and(|c| c.starts_with("application/json")));
        fake.stop().await;
    }

    #[tokio::test]
    async fn slow_first_byte_delays_the_response_head() {
        let fake = FakeProvider::start().await;
        fake.script([Mode::SlowFirstByte { ms: 400 }]);
        let started = Instant::now();
        let res = openai(&fake, chat("gpt-4o", "slow")).send().await.expect("send");
        assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
        let answer: Value = res.json().await.expect("json");
        assert_eq!(answer["choices"][0]["message"]["content"], "echo: slow");
        // the next request is not delayed: the mode was used up
        openai(&fake, chat("gpt-4o", "fast")).send().await.expect("send");
        let modes: Vec<Option<Mode>> = fake.requests().into_iter().map(|r| r.mode).collect();
        assert_eq!(modes, [Some(Mode::SlowFirstByte { ms: 400 }), Some(Mode::Ok)]);
        fake.stop().await;
    }

    #[tokio::test]
    async fn cut_stream_breaks_the_body_on_the_client() {
        let fake = FakeProvider::start().await;
        fake.script([Mode::CutStream { after_chunks: 2 }, Mode::CutStream { after_chunks: 50 }]);
        let res = openai(&fake, with(chat("gpt-4o", "one two three four"), "stream", json!(true)))
            .send()
            .await
            .expect("head arrives");
        assert_eq!(res.status(), 200);
        let mut body = res.bytes_stream();
        let mut received = Vec::new();
        let mut failed = false;
        while let Some(item) = body.next().await {
            match item {
                Ok(bytes) => received.extend_from_slice(&bytes),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the body ends in an error");
        let events = parse_sse(&String::from_utf8_lossy(&received));
        assert_eq!(events.len(), 2, "{events:?}");

        // asking for more chunks than there are still cuts before the end
        let res = anthropic(&fake, with(message("claude", "x y"), "stream", json!(true)))
            .send()
            .await
            .expect("head");
        assert!(res.text().await.is_err());

        fake.script([Mode::CutStream { after_chunks: 3 }]);
        let res = openai(&fake, chat("gpt-4o", "plain")).send().await.expect("head arrives");
        assert_eq!(res.status(), 200);
        assert!(res.bytes().await.is_err(), "a non-streaming body is cut too");
        fake.stop().await;
    }

    #[tokio::test]
    async fn stalled_stream_trips_a_client_read_timeout() {
        let fake = FakeProvider::start().await;
        let impatient = reqwest::Client::builder()
            .no_proxy()
            .read_timeout(Duration::from_millis(500))
            .build()
            .expect("client");
        fake.script([Mode::StalledStream { after_chunks: 1, ms: 5_000 }]);
        let res = impatient
            .post(format!("{}/v1/chat/completions", fake.url()))
            .json(&with(chat("gpt-4o", "wait for it"), "stream", json!(true)))
            .send()
            .await
            .expect("head arrives");
        let mut body = res.bytes_stream();
        let first = body.next().await.expect("a first chunk").expect("first chunk arrives");
        assert_eq!(parse_sse(&String::from_utf8_lossy(&first)).len(), 1);
        let stalled = body.next().await.expect("an item").expect_err("the stream stalls");
        assert!(stalled.is_timeout(), "{stalled}");

        fake.script([Mode::StalledStream { after_chunks: 0, ms: 5_000 }]);
        let res = impatient
            .post(format!("{}/v1/messages", fake.url()))
            .header("anthropic-version", "2023-06-01")
            .json(&message("claude", "plain"))
            .send()
            .await
            .expect("head arrives before the stall");
        assert_eq!(res.status(), 200);
        let stalled = res.bytes().await.expect_err("the body stalls");
        assert!(stalled.is_timeout(), "{stalled}");
        fake.stop().await;
    }

    #[tokio::test]
    async fn stalled_stream_resumes_after_the_pause() {
        let fake = FakeProvider::start().await;
        fake.script([Mode::StalledStream { after_chunks: 2, ms: 300 }]);
        let started = Instant::now();
        let res = openai(&fake, with(chat("gpt-4o", "patience"), "stream", json!(true))).send().await;
        let chunks = openai_chunks(&sse_of(res.expect("send")).await);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let content: String =
            chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(content, "echo: patience");
        fake.stop().await;
    }

    #[tokio::test]
    async fn invalid_json_mode_sends_a_truncated_json_body() {
        let fake = FakeProvider::start().await;
        fake.set_default(Mode::InvalidJson);
        for res in [
            openai(&fake, chat("gpt-4o", "x")).send().await.expect("send"),
            anthropic(&fake, message("claude", "x")).send().await.expect("send"),
        ] {
            assert_eq!(res.status(), 200);
            assert!(header(&res, "content-type").is_some_and(|c| c.starts_with("application/json")));
            let text = res.text().await.expect("body");
            assert!(text.starts_with('{'), "{text}");
            assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        }
        let events = sse_of(
            openai(&fake, with(chat("gpt-4o", "x"), "stream", json!(true))).send().await.expect("send"),
        )
        .await;
        assert!(serde_json::from_str::<Value>(&events[0].1).is_err());
        assert_eq!(events.last().expect("end").1, "[DONE]");
        fake.stop().await;
    }

    #[tokio::test]
    async fn huge_mode_sends_a_valid_body_of_the_asked_size() {
        let fake = FakeProvider::start().await;
        let bytes = 20_000_000;
        fake.script([Mode::Huge { bytes }, Mode::Huge { bytes: 100_000 }]);
        let res = openai(&fake, chat("gpt-4o", "big")).send().await.expect("send");
        assert_eq!(res.status(), 200);
        let length = res.content_length().expect("content length");
        assert!(length > bytes as u64);
        let answer: Value = res.json().await.expect("valid json");
        let text = answer["choices"][0]["message"]["content"].as_str().expect("text");
        assert_eq!(text.len(), bytes);
        assert_eq!(answer["usage"]["completion_tokens"], count_words(text));

        let events = sse_of(
            anthropic(&fake, with(message("claude", "big"), "stream", json!(true)))
                .send()
                .await
                .expect("send"),
        )
        .await;
        let text: String = events
            .iter()
            .map(|(_, d)| serde_json::from_str::<Value>(d).expect("json"))
            .filter_map(|d| d["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text.len(), 100_000);
        fake.stop().await;
    }

    #[tokio::test]
    async fn script_queue_runs_in_order_with_model_and_path_restrictions() {
        let fake = FakeProvider::start().await;
        fake.script_for_model("model-b", [Mode::status(429)]);
        fake.script([Mode::status(500), Mode::status(503)]);
        fake.script_entries([ScriptEntry::new(Mode::status(529)).for_path("/v1/messages")]);
        let status = |res: reqwest::Response| res.status().as_u16();

        // model-a skips the entry meant for model-b
        assert_eq!(status(openai(&fake, chat("model-a", "1")).send().await.expect("send")), 500);
        assert_eq!(status(openai(&fake, chat("model-b", "2")).send().await.expect("send")), 429);
        // the model list does not eat unrestricted entries
        let models = http().get(format!("{}/v1/models", fake.url())).send().await.expect("send");
        assert_eq!(models.status(), 200);
        assert_eq!(status(openai(&fake, chat("model-b", "3")).send().await.expect("send")), 503);
        // only the /v1/messages entry is left: OpenAI requests get the default
        assert_eq!(fake.queued(), 1);
        assert_eq!(status(openai(&fake, chat("model-a", "4")).send().await.expect("send")), 200);
        assert_eq!(status(anthropic(&fake, message("model-a", "5")).send().await.expect("send")), 529);
        assert_eq!(fake.queued(), 0);

        // the header overrides the queue for one request without consuming it
        fake.script([Mode::status(503)]);
        let res = openai(&fake, chat("model-a", "6"))
            .header(MODE_HEADER, Mode::status(400).header_value())
            .send()
            .await;
        assert_eq!(status(res.expect("send")), 400);
        assert_eq!(fake.queued(), 1);
        assert_eq!(status(openai(&fake, chat("model-a", "7")).send().await.expect("send")), 503);

        // the default applies to every request the queue has nothing for
        fake.set_default(Mode::status(500));
        assert_eq!(status(openai(&fake, chat("model-a", "8")).send().await.expect("send")), 500);
        assert_eq!(status(anthropic(&fake, message("model-a", "9")).send().await.expect("send")), 500);

        let res =
            openai(&fake, chat("model-a", "10")).header(MODE_HEADER, "{\"mode\":\"nonsense\"}").send().await;
        let res = res.expect("send");
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.expect("json");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(MODE_HEADER)), "{body}");

        let modes: Vec<Option<Mode>> =
            fake.requests_to("/v1/chat/completions").into_iter().map(|r| r.mode).collect();
        assert_eq!(modes[..2], [Some(Mode::status(500)), Some(Mode::status(429))]);
        assert_eq!(modes.last(), Some(&None));
        fake.stop().await;
    }

    #[tokio::test]
    async fn requests_are_recorded_with_headers_and_untouched_bodies() {
        let fake = FakeProvider::start().await;
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "messages": [{ "role": "user", "content": "hi" }],
            "metadata": { "user_id": "u-1" },
            "x_unknown": { "nested": [1, 2.5, null, "s"] },
        });
        let res = http()
            .post(format!("{}/v1/messages?beta=true", fake.url()))
            .header("x-api-key", "sk-ant-upstream")
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "tools-2024-04-04")
            .header("x-custom", "kept")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 200);
        openai(&fake, chat("gpt-4o", "second")).send().await.expect("send");
        http().get(format!("{}/v1/models", fake.url())).send().await.expect("send");

        assert_eq!(fake.request_count(), 3);
        let requests = fake.requests();
        let first = &requests[0];
        assert_eq!(
            (first.method.as_str(), first.path.as_str(), first.query.as_str()),
            ("POST", "/v1/messages", "beta=true")
        );
        assert_eq!(first.body, body);
        assert_eq!(first.model(), Some("claude-sonnet-4-5"));
        assert_eq!(first.header("X-Api-Key"), Some("sk-ant-upstream"));
        assert_eq!(first.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(first.header("anthropic-beta"), Some("tools-2024-04-04"));
        assert_eq!(first.header("x-custom"), Some("kept"));
        assert_eq!(first.mode, Some(Mode::Ok));
        assert_eq!(requests[1].header("authorization"), Some("Bearer sk-test"));
        assert_eq!((requests[2].method.as_str(), &requests[2].body), ("GET", &Value::Null));
        assert!(requests.windows(2).all(|w| w[0].seq < w[1].seq && w[0].at() <= w[1].at()));
        assert!(requests[0].unix_ms > 1_600_000_000_000);
        let debug = format!("{requests:?}");
        assert!(!debug.contains("sk-ant-upstream") && !debug.contains("sk-test"), "{debug}");
        assert_eq!(fake.last_request().map(|r| r.path), Some("/v1/models".to_owned()));

        fake.reset();
        assert_eq!(fake.request_count(), 0);
        fake.stop().await;
    }

    #[tokio::test]
    async fn http_control_endpoints_script_reset_and_list() {
        let fake = FakeProvider::start().await;
        let http = http();
        let url = fake.url();
        let script = json!([
            { "mode": "status", "code": 429, "retry_after_ms": 10, "model": "m-1" },
            { "mode": "slow_first_byte", "ms": 1 },
        ]);
        let res = http.post(format!("{url}/_fake/script")).json(&script).send().await.expect("send");
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.expect("json")["queued"], 2);
        let res = http
            .put(format!("{url}/_fake/default"))
            .json(&json!({ "mode": "status", "code": 503 }))
            .send()
            .await;
        assert_eq!(res.expect("send").status(), 200);
        let bad = http
            .post(format!("{url}/_fake/script"))
            .json(&json!({ "mode": "ok" }))
            .send()
            .await
            .expect("send");
        assert_eq!(bad.status(), 400);

        assert_eq!(openai(&fake, chat("m-2", "a")).send().await.expect("send").status(), 200);
        assert_eq!(openai(&fake, chat("m-1", "b")).send().await.expect("send").status(), 429);
        assert_eq!(openai(&fake, chat("m-1", "c")).send().await.expect("send").status(), 503);

        let recorded: Vec<RecordedRequest> =
            http.get(format!("{url}/_fake/requests")).send().await.expect("send").json().await.expect("json");
        assert_eq!(recorded, fake.requests());
        let modes: Vec<Option<Mode>> = recorded.into_iter().map(|r| r.mode).collect();
        assert_eq!(
            modes,
            [
                Some(Mode::SlowFirstByte { ms: 1 }),
                Some(Mode::Status {
                    code: 429,
                    retry_after_secs: None,
                    retry_after_ms: Some(10),
                    body: None
                }),
                Some(Mode::status(503))
            ]
        );
        let state: FakeState =
            http.get(format!("{url}/_fake/state")).send().await.expect("send").json().await.expect("json");
        assert_eq!((state.request_count, state.queued, state.default), (3, 0, Mode::status(503)));

        let res = http.post(format!("{url}/_fake/reset")).send().await.expect("send");
        assert!(res.status().is_success());
        assert_eq!(fake.request_count(), 0);
        assert_eq!(fake.state().default, Mode::Ok);
        assert_eq!(openai(&fake, chat("m-1", "d")).send().await.expect("send").status(), 200);
        fake.stop().await;
    }

    #[tokio::test]
    async fn in_flight_is_counted_until_the_body_is_done() {
        let fake = FakeProvider::start().await;
        fake.set_default(Mode::SlowFirstByte { ms: 800 });
        let client = http();
        let calls = (0..5).map(|i| {
            client
                .post(format!("{}/v1/chat/completions", fake.url()))
                .json(&chat("gpt-4o", &format!("call {i}")))
                .send()
        });
        let answers = futures_util::future::join_all(calls).await;
        assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|r| r.status() == 200)));
        assert_eq!(fake.max_in_flight(), 5);
        drop(answers);
        let deadline = Instant::now() + Duration::from_secs(5);
        while fake.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fake.in_flight(), 0);

        // a stalled stream stays in flight while it stalls
        fake.reset();
        fake.script([Mode::StalledStream { after_chunks: 1, ms: 2_000 }]);
        let res = openai(&fake, with(chat("gpt-4o", "s"), "stream", json!(true))).send().await.expect("send");
        assert_eq!(fake.in_flight(), 1);
        drop(res);
        fake.stop().await;
    }

    #[tokio::test]
    async fn keys_are_checked_when_configured() {
        let fake = FakeProvider::start_with(FakeOptions {
            openai_key: Some("sk-right".to_owned()),
            anthropic_key: Some("sk-ant-right".to_owned()),
            ..FakeOptions::default()
        })
        .await;
        let url = fake.url();
        let post = |path: &str| http().post(format!("{url}{path}"));
        for res in [
            post("/v1/chat/completions").json(&chat("gpt-4o", "x")).send().await,
            post("/v1/chat/completions").bearer_auth("sk-wrong").json(&chat("gpt-4o", "x")).send().await,
        ] {
            let res = res.expect("send");
            assert_eq!(res.status(), 401);
            let body: Value = res.json().await.expect("json");
            assert_eq!(body["error"]["type"], "invalid_request_error");
            assert_eq!(body["error"]["code"], "invalid_api_key");
            assert!(body["error"]["param"].is_null());
            assert!(!body.to_string().contains("sk-"), "the key is not echoed: {body}");
        }
        let ok = post("/v1/chat/completions").bearer_auth("sk-right").json(&chat("gpt-4o", "x")).send().await;
        assert_eq!(ok.expect("send").status(), 200);

        let versioned = |key: Option<&str>| {
            let req =
                post("/v1/messages").header("anthropic-version", "2023-06-01").json(&message("claude", "x"));
            match key {
                Some(key) => req.header("x-api-key", key),
                None => req,
            }
        };
        for res in [versioned(None).send().await, versioned(Some("sk-ant-wrong")).send().await] {
            let res = res.expect("send");
            assert_eq!(res.status(), 401);
            let body: Value = res.json().await.expect("json");
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "authentication_error");
        }
        assert_eq!(versioned(Some("sk-ant-right")).send().await.expect("send").status(), 200);

        let unversioned =
            post("/v1/messages").header("x-api-key", "sk-ant-right").json(&message("claude", "x"));
        let res = unversioned.send().await.expect("send");
        assert_eq!(res.status(), 400);
        assert_eq!(res.json::<Value>().await.expect("json")["error"]["type"], "invalid_request_error");

        let no_max_tokens =
            versioned(Some("sk-ant-right")).json(&chat("claude", "x")).send().await.expect("send");
        assert_eq!(no_max_tokens.status(), 400);

        // rejected requests are recorded, without a mode, and consume no script entry
        fake.script([Mode::status(503)]);
        assert_eq!(versioned(None).send().await.expect("send").status(), 401);
        assert_eq!(fake.queued(), 1);
        assert_eq!(fake.last_request().map(|r| r.mode), Some(None));
        assert!(
            !format!("{:?}", FakeOptions { openai_key: Some("sk-secret".into()), ..FakeOptions::default() })
                .contains("sk-secret")
        );
        fake.stop().await;
    }

    #[tokio::test]
    async fn models_lists_the_configured_models_in_both_shapes() {
        let fake = FakeProvider::start_with(FakeOptions {
            models: vec!["m-one".to_owned(), "m-two".to_owned()],
            ..FakeOptions::default()
        })
        .await;
        let url = format!("{}/v1/models", fake.url());
        let list: Value = http().get(&url).send().await.expect("send").json().await.expect("json");
        assert_eq!(list["object"], "list");
        let ids: Vec<&str> =
            list["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str()).collect();
        assert_eq!(ids, ["m-one", "m-two"]);
        assert!(
            list["data"]
                .as_array()
                .expect("data")
                .iter()
                .all(|m| { m["object"] == "model" && m["created"].is_u64() && m["owned_by"].is_string() })
        );

        fake.set_models(["m-three".to_owned()]);
        let list: Value = http()
            .get(&url)
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(list["data"][0]["type"], "model");
        assert_eq!(list["data"][0]["id"], "m-three");
        assert_eq!((list["has_more"].as_bool(), list["first_id"].as_str()), (Some(false), Some("m-three")));

        fake.script_entries([ScriptEntry::new(Mode::status(500)).for_path("/v1/models")]);
        assert_eq!(http().get(&url).send().await.expect("send").status(), 500);
        fake.stop().await;
    }

    #[actix_web::test]
    async fn runs_under_the_actix_test_runtime_and_stops() {
        let fake = FakeProvider::start().await;
        let url = fake.url();
        assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with('/'));
        let res = openai(&fake, chat("gpt-4o", "actix")).send().await.expect("send");
        assert_eq!(res.status(), 200);
        fake.stop().await;
        let gone = http().post(format!("{url}/v1/chat/completions")).json(&chat("gpt-4o", "x")).send().await;
        assert!(gone.is_err(), "nothing listens after stop");
    }

    #[tokio::test]
    async fn stop_ends_a_stalled_stream() {
        let fake = FakeProvider::start().await;
        fake.script([Mode::StalledStream { after_chunks: 1, ms: 60_000 }]);
        let res = openai(&fake, with(chat("gpt-4o", "s"), "stream", json!(true))).send().await.expect("send");
        let started = Instant::now();
        fake.stop().await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(res.text().await.is_err(), "the open stream is dropped");
    }
}
