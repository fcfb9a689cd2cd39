//! `POST /v1/chat/completions`, `POST /v1/messages` and `GET /v1/models`: the routes an official
//! SDK calls once its `base_url` points at the gateway.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::GatewayState;
use crate::accounting::PROJECT_HEADER;
use crate::calls::overhead_ms;
use crate::error::GatewayError;
use crate::protocol::{self, Protocol};
use crate::proxy::{Endpoint, ProxyRequest, ProxyResponse};

/// The body of a generation request: the provider's own, passed on untouched when the deployment
/// speaks the same protocol (unknown fields included). The gateway only needs `model`; the
/// upstream validates the rest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// A model name configured on the gateway (`[[breaker_gateway.models]]`) or a deployment id.
    #[schema(example = "claude-sonnet")]
    pub model: String,
    /// Server-sent events instead of one JSON answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// A Responses API request (OpenAI's own fields; those the gateway does not map are listed in
/// the operation's description).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResponsesRequest {
    /// A model name configured on the gateway (`[[breaker_gateway.models]]`) or a deployment id.
    #[schema(example = "gpt-helix")]
    pub model: String,
    /// A user message as a string, or input items (`message`, `function_call`,
    /// `function_call_output`, `custom_tool_call(_output)`, `reasoning`).
    #[schema(value_type = Object)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The Responses events instead of one JSON answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// A response of this gateway (or of a `responses_api` deployment) the call continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// `false`: the response is not kept for a later `previous_response_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
}

/// An error in OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiError {
    pub error: OpenAiErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(required = true)]
    pub param: Option<String>,
    /// For errors of the gateway itself, its error code (`circuit_open`, `budget_exceeded`, ...).
    #[schema(required = true)]
    pub code: Option<String>,
}

/// An error in Anthropic's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnthropicError {
    /// Always `error`.
    #[serde(rename = "type")]
    #[schema(example = "error")]
    pub kind: String,
    pub error: AnthropicErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// Either provider's error, by the protocol the request looked like.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProviderError {
    OpenAi(OpenAiError),
    Anthropic(AnthropicError),
}

/// `GET /v1/models` in either provider's shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ModelList {
    OpenAi(OpenAiModelList),
    Anthropic(AnthropicModelList),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<OpenAiModel>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModel {
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds (when the gateway started).
    pub created: i64,
    pub owned_by: String,
    /// `GET /v1/models/{id}` only: whether the chain can take a call now (SDKs ignore it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helix: Option<ModelStatus>,
}

/// Whether a model's chain can take a call: at least one deployment whose breaker is not open
/// (closed or half-open).
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelStatus {
    pub available: bool,
    /// Each deployment of the chain, in order, with its breaker's state.
    pub deployments: Vec<DeploymentStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentStatus {
    pub id: String,
    pub state: crate::breaker::State,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnthropicModelList {
    pub data: Vec<AnthropicModel>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnthropicModel {
    /// Always `model`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub display_name: String,
    /// RFC 3339 (when the gateway started).
    pub created_at: String,
    /// `GET /v1/models/{id}` only: whether the chain can take a call now (SDKs ignore it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helix: Option<ModelStatus>,
}

/// The protocol a proxy route answers in (None for other routes): `/v1/messages` Anthropic's,
/// `/v1/chat/completions` OpenAI's, `/v1/models` Anthropic's when the client sent
/// `anthropic-version`.
pub fn protocol_of_path(req: &HttpRequest) -> Option<Protocol> {
    match req.path() {
        "/v1/messages" => Some(Protocol::Anthropic),
        "/v1/messages/count_tokens" => Some(Protocol::Anthropic),
        "/v1/chat/completions" | "/v1/responses" | "/v1/embeddings" | "/v1/completions" => {
            Some(Protocol::OpenAi)
        }
        p if p.starts_with("/v1/models/") && req.headers().contains_key("anthropic-version") => {
            Some(Protocol::Anthropic)
        }
        p if p.starts_with("/v1/models/") => Some(Protocol::OpenAi),
        "/v1/models" if req.headers().contains_key("anthropic-version") => Some(Protocol::Anthropic),
        "/v1/models" => Some(Protocol::OpenAi),
        _ => None,
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The project the request names in `x-helix-project` (UTF-8, once), if it names one. An empty
/// value names none (as an absent header), the way HTTP treats empty list headers.
fn named_project(req: &HttpRequest) -> Result<Option<&str>, GatewayError> {
    let mut values = req.headers().get_all(PROJECT_HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(GatewayError::InvalidRequest(format!("{PROJECT_HEADER} is given more than once")));
    }
    std::str::from_utf8(value.as_bytes())
        .map(|v| Some(v).filter(|v| !v.trim().is_empty()))
        .map_err(|_| GatewayError::InvalidRequest(format!("{PROJECT_HEADER} is not UTF-8")))
}

/// Create a chat completion (OpenAI)
///
/// OpenAI's Chat Completions API: point the OpenAI SDK's `base_url` at `<gateway>/v1`. The model
/// is a chain configured on the gateway (or a deployment id); the request is served by the first
/// deployment of the chain whose breaker and bulkhead admit it, translated when that deployment
/// speaks Anthropic's protocol, retried and falling back as configured. With gateway keys
/// configured, send one as `Authorization: Bearer <key>`. The call bills to, and is traced under,
/// the key's project, or the one `x-helix-project` names when the caller may use it (a token not
/// limited to projects, such as the orchestrator's for a run). Errors are in OpenAI's shape;
/// upstream errors other than those listed are passed on with their status. `x-helix-deployment`
/// names the deployment that answered (absent when a stream's head had to be sent before any
/// deployment answered), `x-helix-fallback-from` the first of the chain when another one
/// answered, `x-helix-cost-usd` the cost of a non-streaming answer.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "llm",
    operation_id = "chat_completions",
    security(("bearer" = ["llm"]), ("api_key" = ["llm"])),
    params(("x-helix-project" = Option<String>, Header, description = "the project the call bills to and is traced under (the orchestrator sends a run's): any project for a token not limited to projects, one of its own for a token limited to some; a gateway key's calls stay its project, which this may only repeat")),
    request_body(content = ChatRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the completion, or with `stream: true` server-sent `chat.completion.chunk` events ending with `data: [DONE]`",
            content((Object = "application/json"), (String = "text/event-stream")),
            headers(
                ("x-helix-deployment" = String, description = "the deployment that answered"),
                ("x-helix-fallback-from" = String, description = "the first deployment of the chain, when another one answered"),
                ("x-helix-cost-usd" = String, description = "the cost of the call in USD (non-streaming, priced models)"),
                ("x-helix-overhead-ms" = String, description = "time spent in the gateway itself")
            )),
        (status = 400, description = "the body is not a JSON object with a `model`, `x-helix-project` is not a project name, or the upstream rejected it", body = OpenAiError, content_type = "application/json"),
        (status = 401, description = "missing or unknown gateway key", body = OpenAiError, content_type = "application/json"),
        (status = 404, description = "the model is not configured on the gateway", body = OpenAiError, content_type = "application/json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = OpenAiError, content_type = "application/json"),
        (status = 429, description = "the project's daily budget is spent, or too many calls in flight (see `Retry-After`)", body = OpenAiError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a retry can succeed"))),
        (status = 502, description = "no deployment gave a usable answer", body = OpenAiError, content_type = "application/json"),
        (status = 503, description = "every deployment of the model has its circuit open (see `Retry-After`)", body = OpenAiError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a breaker admits a probe"))),
        (status = "4XX", description = "an upstream client error, passed on", body = OpenAiError, content_type = "application/json"),
        (status = "5XX", description = "an upstream error after retries and fallbacks, passed on", body = OpenAiError, content_type = "application/json")
    )
)]
pub async fn chat_completions(
    state: web::Data<GatewayState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    proxy_call(state, req, body, Protocol::OpenAi, Api::Native(Endpoint::Generate)).await
}

/// Create a message (Anthropic)
///
/// Anthropic's Messages API: point the Anthropic SDK's `base_url` at the gateway. Served like
/// `/v1/chat/completions` (chains, breakers, retries, fallbacks, translation to OpenAI-compatible
/// deployments and back); with gateway keys configured, send one as `x-api-key`. Errors are in
/// Anthropic's shape; streams are Anthropic's server-sent events.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "llm",
    operation_id = "messages",
    security(("bearer" = ["llm"]), ("api_key" = ["llm"])),
    params(("x-helix-project" = Option<String>, Header, description = "the project the call bills to and is traced under (the orchestrator sends a run's): any project for a token not limited to projects, one of its own for a token limited to some; a gateway key's calls stay its project, which this may only repeat")),
    request_body(content = ChatRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the message, or with `stream: true` Anthropic's server-sent events ending with `message_stop`",
            content((Object = "application/json"), (String = "text/event-stream")),
            headers(
                ("x-helix-deployment" = String, description = "the deployment that answered"),
                ("x-helix-fallback-from" = String, description = "the first deployment of the chain, when another one answered"),
                ("x-helix-cost-usd" = String, description = "the cost of the call in USD (non-streaming, priced models)"),
                ("x-helix-overhead-ms" = String, description = "time spent in the gateway itself")
            )),
        (status = 400, description = "the body is not a JSON object with a `model`, `x-helix-project` is not a project name, or the upstream rejected it", body = AnthropicError, content_type = "application/json"),
        (status = 401, description = "missing or unknown gateway key", body = AnthropicError, content_type = "application/json"),
        (status = 404, description = "the model is not configured on the gateway", body = AnthropicError, content_type = "application/json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = AnthropicError, content_type = "application/json"),
        (status = 429, description = "the project's daily budget is spent, or too many calls in flight (see `Retry-After`)", body = AnthropicError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a retry can succeed"))),
        (status = 502, description = "no deployment gave a usable answer", body = AnthropicError, content_type = "application/json"),
        (status = 503, description = "every deployment of the model has its circuit open (see `Retry-After`)", body = AnthropicError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a breaker admits a probe"))),
        (status = "4XX", description = "an upstream client error, passed on", body = AnthropicError, content_type = "application/json"),
        (status = "5XX", description = "an upstream error after retries and fallbacks, passed on", body = AnthropicError, content_type = "application/json")
    )
)]
pub async fn messages(
    state: web::Data<GatewayState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    proxy_call(state, req, body, Protocol::Anthropic, Api::Native(Endpoint::Generate)).await
}

/// Create a response (OpenAI Responses API)
///
/// OpenAI's Responses API, as Codex and the Vercel AI SDK's OpenAI provider call it: point the
/// client's base URL at `<gateway>/v1`. The request is turned into Chat Completions and served
/// through the model's chain like `/v1/chat/completions` (breakers, retries, fallbacks,
/// translation to Anthropic deployments), and the answer turned back: a `response` object, or with
/// `stream: true` the Responses events (`response.created`, `response.output_item.added`,
/// `response.output_text.delta`, `response.function_call_arguments.delta`, ...,
/// `response.completed`; `error` and `response.failed` on failure). Function and custom tools,
/// `instructions`, `text.format`, `reasoning.effort` and `tool_choice` are mapped; hosted tools
/// (web search, file search, ...) cannot be and are refused with a 400. `previous_response_id`
/// continues a response this gateway process stored (the most recent ones, in memory; not those
/// sent with `store: false`); an unknown id is a 400. The answer keeps the model name asked for.
#[utoipa::path(
    post,
    path = "/v1/responses",
    tag = "llm",
    operation_id = "responses",
    security(("bearer" = ["llm"]), ("api_key" = ["llm"])),
    params(("x-helix-project" = Option<String>, Header, description = "the project the call bills to and is traced under (see `/v1/chat/completions`)")),
    request_body(content = ResponsesRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the response, or with `stream: true` the Responses server-sent events ending with `response.completed`, then a `: helix {...}` comment with the deployment and cost",
            content((Object = "application/json"), (String = "text/event-stream")),
            headers(
                ("x-helix-deployment" = String, description = "the deployment that answered"),
                ("x-helix-fallback-from" = String, description = "the first deployment of the chain, when another one answered"),
                ("x-helix-cost-usd" = String, description = "the cost of the call in USD (non-streaming, priced models)"),
                ("x-helix-overhead-ms" = String, description = "time spent in the gateway itself")
            )),
        (status = 400, description = "the body is not a Responses request the gateway can serve (hosted tools, file inputs, an unknown `previous_response_id`), or the upstream rejected it", body = OpenAiError, content_type = "application/json"),
        (status = 401, description = "missing or unknown gateway key", body = OpenAiError, content_type = "application/json"),
        (status = 404, description = "the model is not configured on the gateway", body = OpenAiError, content_type = "application/json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = OpenAiError, content_type = "application/json"),
        (status = 429, description = "the project's daily budget is spent, or too many calls in flight (see `Retry-After`)", body = OpenAiError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a retry can succeed"))),
        (status = 502, description = "no deployment gave a usable answer", body = OpenAiError, content_type = "application/json"),
        (status = 503, description = "every deployment of the model has its circuit open (see `Retry-After`)", body = OpenAiError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a breaker admits a probe"))),
        (status = "4XX", description = "an upstream client error, passed on", body = OpenAiError, content_type = "application/json"),
        (status = "5XX", description = "an upstream error after retries and fallbacks, passed on", body = OpenAiError, content_type = "application/json")
    )
)]
pub async fn responses(
    state: web::Data<GatewayState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    proxy_call(state, req, body, Protocol::OpenAi, Api::Responses).await
}

/// `{"input_tokens": N}` estimated by the gateway, marked `x-helix-token-count: estimated`.
fn estimated_count(body: &[u8]) -> HttpResponse {
    let json = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    HttpResponse::Ok()
        .insert_header(("x-helix-token-count", "estimated"))
        .json(serde_json::json!({"input_tokens": protocol::estimate::input_tokens(&json)}))
}

/// Count tokens of a message (Anthropic)
///
/// Anthropic's `POST /v1/messages/count_tokens`, which Claude Code calls every turn. Forwarded to
/// the first Anthropic deployment of the model's chain whose breaker admits it (breakers, retries
/// and fallbacks as for `/v1/messages`). When the chain has no Anthropic deployment, or none of
/// them could answer (429, 5xx, circuits open), the gateway estimates the count itself and says
/// so with `x-helix-token-count: estimated`: about four characters per token over the system
/// prompt, message texts, tool inputs and results and tool definitions, plus a few tokens per
/// message and tool and 1,600 per image. Costs nothing and is not charged.
#[utoipa::path(
    post,
    path = "/v1/messages/count_tokens",
    tag = "llm",
    operation_id = "count_tokens",
    security(("bearer" = ["llm"]), ("api_key" = ["llm"])),
    params(("x-helix-project" = Option<String>, Header, description = "the project the call is traced under (see `/v1/chat/completions`)")),
    request_body(content = ChatRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "`{\"input_tokens\": N}`, from an Anthropic deployment or estimated",
            content((Object = "application/json")),
            headers(
                ("x-helix-token-count" = String, description = "`estimated` when the gateway estimated the count"),
                ("x-helix-deployment" = String, description = "the deployment that counted")
            )),
        (status = 400, description = "the body is not a JSON object with a `model`, or the upstream rejected it", body = AnthropicError, content_type = "application/json"),
        (status = 401, description = "missing or unknown gateway key", body = AnthropicError, content_type = "application/json"),
        (status = 404, description = "the model is not configured on the gateway", body = AnthropicError, content_type = "application/json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = AnthropicError, content_type = "application/json"),
        (status = 429, description = "too many calls of the project in flight (see `Retry-After`)", body = AnthropicError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a retry can succeed")))
    )
)]
pub async fn count_tokens(
    state: web::Data<GatewayState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    proxy_call(state, req, body, Protocol::Anthropic, Api::Native(Endpoint::CountTokens)).await
}

/// Create embeddings (OpenAI)
///
/// OpenAI's `POST /v1/embeddings`, through the model's chain like `/v1/chat/completions`
/// (breakers, retries, fallbacks, budgets, cost from `prompt_tokens`). Only OpenAI-protocol
/// deployments serve it: Anthropic deployments of the chain are skipped, and a chain without an
/// OpenAI deployment is a 400. The answer keeps the model name asked for.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "llm",
    operation_id = "embeddings",
    security(("bearer" = ["llm"]), ("api_key" = ["llm"])),
    params(("x-helix-project" = Option<String>, Header, description = "the project the call bills to and is traced under (see `/v1/chat/completions`)")),
    request_body(content = ChatRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the embeddings (`object: list`)", content((Object = "application/json")),
            headers(
                ("x-helix-deployment" = String, description = "the deployment that answered"),
                ("x-helix-cost-usd" = String, description = "the cost of the call in USD (priced models)")
            )),
        (status = 400, description = "the body is not a JSON object with a `model`, the chain has no OpenAI deployment, or the upstream rejected it", body = OpenAiError, content_type = "application/json"),
        (status = 401, description = "missing or unknown gateway key", body = OpenAiError, content_type = "application/json"),
        (status = 404, description = "the model is not configured on the gateway", body = OpenAiError, content_type = "application/json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = OpenAiError, content_type = "application/json"),
        (status = 429, description = "the project's daily budget is spent, or too many calls in flight (see `Retry-After`)", body = OpenAiError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a retry can succeed"))),
        (status = 502, description = "no deployment gave a usable answer", body = OpenAiError, content_type = "application/json"),
        (status = 503, description = "every deployment of the model has its circuit open (see `Retry-After`)", body = OpenAiError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a breaker admits a probe")))
    )
)]
pub async fn embeddings(
    state: web::Data<GatewayState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    proxy_call(state, req, body, Protocol::OpenAi, Api::Native(Endpoint::Embeddings)).await
}

/// Create a completion (OpenAI, legacy)
///
/// OpenAI's legacy `POST /v1/completions` (`prompt` in, `choices[].text` out, streaming too),
/// which many OpenAI-compatible servers (vLLM, llama.cpp, Ollama) still serve. Through the
/// model's chain like `/v1/chat/completions`; only OpenAI-protocol deployments serve it (Anthropic
/// deployments are skipped; a chain without an OpenAI deployment is a 400).
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "llm",
    operation_id = "completions",
    security(("bearer" = ["llm"]), ("api_key" = ["llm"])),
    params(("x-helix-project" = Option<String>, Header, description = "the project the call bills to and is traced under (see `/v1/chat/completions`)")),
    request_body(content = ChatRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the completion (`object: text_completion`), or with `stream: true` its chunks ending with `data: [DONE]`",
            content((Object = "application/json"), (String = "text/event-stream")),
            headers(
                ("x-helix-deployment" = String, description = "the deployment that answered"),
                ("x-helix-cost-usd" = String, description = "the cost of the call in USD (non-streaming, priced models)")
            )),
        (status = 400, description = "the body is not a JSON object with a `model`, the chain has no OpenAI deployment, or the upstream rejected it", body = OpenAiError, content_type = "application/json"),
        (status = 401, description = "missing or unknown gateway key", body = OpenAiError, content_type = "application/json"),
        (status = 404, description = "the model is not configured on the gateway", body = OpenAiError, content_type = "application/json"),
        (status = 413, description = "body larger than `max_body_bytes`", body = OpenAiError, content_type = "application/json"),
        (status = 429, description = "the project's daily budget is spent, or too many calls in flight (see `Retry-After`)", body = OpenAiError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a retry can succeed"))),
        (status = 502, description = "no deployment gave a usable answer", body = OpenAiError, content_type = "application/json"),
        (status = 503, description = "every deployment of the model has its circuit open (see `Retry-After`)", body = OpenAiError, content_type = "application/json",
            headers(("retry-after" = String, description = "seconds until a breaker admits a probe")))
    )
)]
pub async fn completions(
    state: web::Data<GatewayState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    proxy_call(state, req, body, Protocol::OpenAi, Api::Native(Endpoint::Completions)).await
}

/// The API a proxy route speaks: its protocol's own, or the Responses API on top of Chat
/// Completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Native(Endpoint),
    Responses,
}

/// Body, key, JSON, budget and bulkhead, then the proxy; see the module docs of `calls`.
async fn proxy_call(
    state: web::Data<GatewayState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    protocol: Protocol,
    api: Api,
) -> HttpResponse {
    let started = Instant::now();
    let refuse = |e: GatewayError, model: &str| {
        state.count_refused(protocol, model, e.code().status());
        e.provider_response(protocol)
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return refuse(GatewayError::from_payload(&e), ""),
    };
    // the access layer checked the key before the body was read; the project it may name is
    // checked here
    let caller = helix_http::access::principal(&req);
    let project = match named_project(&req).and_then(|named| state.project_for(&caller, named)) {
        Ok(p) => p,
        Err(e) => return refuse(e, ""),
    };
    // a Responses call goes through the proxy as Chat Completions
    let (body, responses) = match api {
        Api::Native(_) => (body, None),
        Api::Responses => {
            let named = protocol::RequestHead::parse(&body).ok().and_then(|h| h.model);
            // an unknown model is a 404 whatever else is wrong with the call, as on the other routes
            if let Some(m) = named.as_ref().filter(|m| state.proxy.chain_of(m).is_none()) {
                return refuse(GatewayError::UnknownModel(m.clone()), m);
            }
            let model = named.unwrap_or_default();
            let native =
                |m: &str| state.proxy.chain_of(m).is_some_and(|c| c.iter().any(|d| d.cfg.responses_api));
            match crate::responses::prepare(&state.responses, &project.name, &body, native) {
                Ok(p) => (p.chat.clone(), Some(p)),
                Err(e) => return refuse(e, &model),
            }
        }
    };
    // validated whole, but only `model` and `stream` are read: the body is forwarded as it came
    let head = match protocol::RequestHead::parse(&body) {
        Ok(h) => h,
        Err(e) => return refuse(GatewayError::InvalidJson(e.to_string()), ""),
    };
    if !head.is_object {
        return refuse(GatewayError::InvalidRequest("the body must be a JSON object".to_owned()), "");
    }
    let model = head.model.clone().unwrap_or_default();
    let endpoint = match api {
        Api::Native(e) => e,
        Api::Responses => Endpoint::Generate,
    };
    if endpoint == Endpoint::CountTokens {
        // counted by an Anthropic deployment of the chain, else estimated (see protocol::estimate)
        let counted =
            state.proxy.chain_of(&model).map(|c| c.iter().any(|d| d.protocol == Protocol::Anthropic));
        if counted == Some(false) {
            state.count_refused(protocol, &model, 200);
            return estimated_count(&body);
        }
    }
    let admitted = match state.admit(&caller, project, protocol, header(&req, "traceparent")).await {
        Ok(a) => a,
        Err(e) => return refuse(e, &model),
    };
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        // the gateway's own: the upstream gets its own traceparent and no project names
        .filter(|(k, _)| k.as_str() != "traceparent" && k.as_str() != PROJECT_HEADER)
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    // the upstream call is a child of the gateway's span
    headers.push(("traceparent".to_owned(), admitted.trace.traceparent()));

    let mut request = ProxyRequest::new(protocol, body.clone(), head, headers).at(endpoint);
    if let Some(r) = &responses {
        request = request.with_responses(r.raw.clone(), r.native_only, r.context());
    }
    let (response, report) = state.proxy.handle(request).await;
    if let ProxyResponse::Full { status, .. } = &response
        && endpoint == Endpoint::CountTokens
        && (*status == 429 || *status >= 500)
    {
        // no Anthropic deployment could count: a count of the right size keeps the client going
        state.settle(&admitted, &model, &report).await;
        return estimated_count(&body);
    }
    match response {
        ProxyResponse::Full { status, headers, body } => {
            // an upstream error may echo the key it was sent
            let body = if status >= 400 { state.proxy.redact_body(body) } else { body };
            let body = match &responses {
                Some(r) if (200..300).contains(&status) => r.answer(&body, report.passthrough),
                _ => body,
            };
            let cost = state.settle(&admitted, &model, &report).await;
            let mut res =
                HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
            for (k, v) in &headers {
                res.append_header((k.as_str(), v.as_str()));
            }
            if let Some(c) = cost.filter(|_| (200..300).contains(&status)) {
                res.insert_header(("x-helix-cost-usd", c.to_string()));
            }
            res.insert_header(("x-helix-overhead-ms", format!("{:.3}", overhead_ms(started, &report))));
            let mut res = res.body(body);
            if status >= 400 {
                res.extensions_mut().insert(helix_http::middleware::OwnErrorShape);
            }
            res
        }
        ProxyResponse::Stream { status, headers, body, done } => {
            let mut res = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
            for (k, v) in &headers {
                res.append_header((k.as_str(), v.as_str()));
            }
            res.insert_header(("x-helix-overhead-ms", format!("{:.3}", overhead_ms(started, &report))));
            // usage is known when the stream ends; the permit in `admitted` is held until then.
            // Settled in a task of its own, so that a client going away cannot skip it; the
            // stream's last word is a comment with the cost (SDKs ignore comments).
            let accounting = state.clone();
            let (cost_tx, cost_rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let mut report = done.await.unwrap_or(report);
                // a Responses stream the proxy turned back: its turn, for previous_response_id
                // (kept before the stream ends, so that the client's next call finds it)
                if let (Some(r), Some(output)) = (&responses, report.responses_output.take()) {
                    r.keep_turn(output);
                }
                let cost = accounting.settle(&admitted, &model, &report).await;
                let _ = cost_tx.send(crate::calls::cost_comment(&report, cost));
            });
            let events = stream::unfold(Some((body, cost_rx)), |tail| async move {
                let (mut rx, cost_rx) = tail?;
                match rx.recv().await {
                    Some(chunk) => Some((Ok::<_, actix_web::Error>(chunk), Some((rx, cost_rx)))),
                    None => {
                        // bounded: the report follows the stream's end at once
                        let comment = tokio::time::timeout(std::time::Duration::from_secs(5), cost_rx)
                            .await
                            .ok()?
                            .ok()?;
                        Some((Ok(Bytes::from(comment)), None))
                    }
                }
            });
            res.streaming(events)
        }
    }
}

/// List models
///
/// The model names configured on the gateway, then the deployment ids not already listed (a
/// deployment id is a chain of one). OpenAI's list shape, or Anthropic's when the request has an
/// `anthropic-version` header. With gateway keys configured, a key is required.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "llm",
    operation_id = "list_models",
    security(("bearer" = ["llm"]), ("api_key" = ["llm"])),
    params(("anthropic-version" = Option<String>, Header, description = "present: answer in Anthropic's shape")),
    responses(
        (status = 200, description = "the models, in the shape of the client's provider", body = ModelList),
        (status = 401, description = "missing or unknown gateway key", body = ProviderError, content_type = "application/json")
    )
)]
pub async fn models(state: web::Data<GatewayState>, req: HttpRequest) -> HttpResponse {
    let protocol =
        if req.headers().contains_key("anthropic-version") { Protocol::Anthropic } else { Protocol::OpenAi };
    let cfg = &state.proxy.cfg;
    let mut ids: Vec<&str> = cfg.models.iter().map(|m| m.name.as_str()).collect();
    for d in &cfg.deployments {
        if !ids.contains(&d.id.as_str()) {
            ids.push(&d.id);
        }
    }
    let list = match protocol {
        Protocol::OpenAi => ModelList::OpenAi(OpenAiModelList {
            object: "list".to_owned(),
            data: ids
                .iter()
                .map(|id| OpenAiModel {
                    id: (*id).to_owned(),
                    object: "model".to_owned(),
                    created: state.started_unix_ms / 1000,
                    owned_by: "helix".to_owned(),
                    helix: None,
                })
                .collect(),
        }),
        Protocol::Anthropic => {
            let created_at = helix_core::time::rfc3339_ms(state.started_unix_ms);
            ModelList::Anthropic(AnthropicModelList {
                data: ids
                    .iter()
                    .map(|id| AnthropicModel {
                        kind: "model".to_owned(),
                        id: (*id).to_owned(),
                        display_name: (*id).to_owned(),
                        created_at: created_at.clone(),
                        helix: None,
                    })
                    .collect(),
                has_more: false,
                first_id: ids.first().map(|s| (*s).to_owned()),
                last_id: ids.last().map(|s| (*s).to_owned()),
            })
        }
    };
    HttpResponse::Ok().json(list)
}

/// One model in either provider's shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ModelInfo {
    OpenAi(OpenAiModel),
    Anthropic(AnthropicModel),
}

/// Get a model
///
/// A model name the gateway serves: a configured chain (also a name a chain's glob matches,
/// such as `claude-sonnet-4-5` for `claude-*`) or a deployment id. OpenAI's shape, or Anthropic's
/// when the request has an `anthropic-version` header; an unknown name is a 404 in that shape.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "llm",
    operation_id = "get_model",
    security(("bearer" = ["llm"]), ("api_key" = ["llm"])),
    params(
        ("id" = String, Path, description = "the model name"),
        ("anthropic-version" = Option<String>, Header, description = "present: answer in Anthropic's shape")
    ),
    responses(
        (status = 200, description = "the model, in the shape of the client's provider", body = ModelInfo),
        (status = 401, description = "missing or unknown gateway key", body = ProviderError, content_type = "application/json"),
        (status = 404, description = "the gateway serves no such model", body = ProviderError, content_type = "application/json")
    )
)]
pub async fn model(state: web::Data<GatewayState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    let protocol =
        if req.headers().contains_key("anthropic-version") { Protocol::Anthropic } else { Protocol::OpenAi };
    let id = id.into_inner();
    let Some(chain) = state.proxy.chain_of(&id) else {
        return GatewayError::UnknownModel(id).provider_response(protocol);
    };
    let mut deployments = Vec::with_capacity(chain.len());
    for d in chain.iter() {
        if let Some(s) = state.proxy.breakers.snapshot(&d.cfg.id).await {
            deployments.push(DeploymentStatus { id: d.cfg.id.clone(), state: s.state });
        }
    }
    let available = deployments
        .iter()
        .any(|d| matches!(d.state, crate::breaker::State::Closed | crate::breaker::State::HalfOpen));
    let helix = Some(ModelStatus { available, deployments });
    let info = match protocol {
        Protocol::OpenAi => ModelInfo::OpenAi(OpenAiModel {
            id: id.clone(),
            object: "model".to_owned(),
            created: state.started_unix_ms / 1000,
            owned_by: "helix".to_owned(),
            helix,
        }),
        Protocol::Anthropic => ModelInfo::Anthropic(AnthropicModel {
            kind: "model".to_owned(),
            display_name: id.clone(),
            id,
            created_at: helix_core::time::rfc3339_ms(state.started_unix_ms),
            helix,
        }),
    };
    HttpResponse::Ok().json(info)
}
