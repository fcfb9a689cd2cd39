//! The one access layer every request passes before it reaches a handler: the `Host` check, the
//! browser (`Origin`, content type) checks, CORS, and who the caller is and whether its token
//! allows the operation.
//!
//! The rules of each operation come from the service's own OpenAPI document: an operation's
//! `security` names its scope (`security: [{"bearer": ["runs:write"]}]`; an empty requirement
//! `{}` marks it public), and its `requestBody` the media types it takes. So what Swagger UI shows
//! is what is enforced, and a route cannot be added without deciding who may call it: a routed
//! path that the document does not describe needs `admin` (and the OpenAPI tests fail for it).
//!
//! Order, and why:
//! 1. `Host` (421 `host_not_allowed`): a DNS-rebinding page is refused before anything else.
//! 2. CORS preflight (`OPTIONS` with `Access-Control-Request-Method`): answered here for origins
//!    in `auth.cors_origins`, refused for others.
//! 3. For requests that change state: `Origin` (403 `origin_not_allowed`), then the content type
//!    (415): a cross-origin page can send `text/plain`, form and multipart bodies without a
//!    preflight, so an operation only takes those when its document says so.
//! 4. The token (401 `unauthorized`, 403 `forbidden`), from `Authorization: Bearer` or
//!    `x-api-key`. The caller's [`Principal`] goes into the request's extensions for the handler
//!    ([`Caller`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use helix_core::auth::{self, Authenticator, Principal, ProbeAccess, Refusal, Scope};
use helix_core::{ErrorCode, HelixConfig};
use serde_json::Value;

/// Who may reach the services, shared by every service of a process.
#[derive(Debug)]
pub struct Access {
    pub authenticator: Arc<Authenticator>,
    pub allowed_hosts: Vec<String>,
    pub cors_origins: Vec<String>,
    pub probes: ProbeAccess,
}

impl Access {
    /// No tokens (every caller anonymous), default Host and Origin rules: for tests and for
    /// services run on loopback without configuration.
    pub fn open() -> Access {
        Access {
            authenticator: Arc::new(Authenticator::open()),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            probes: ProbeAccess::Loopback,
        }
    }

    /// The rules of `[auth]` with the tokens of `authenticator`.
    pub fn from_config(cfg: &HelixConfig, authenticator: Arc<Authenticator>) -> Access {
        Access {
            authenticator,
            allowed_hosts: cfg.auth.allowed_hosts.clone(),
            cors_origins: cfg.auth.cors_origins.clone(),
            probes: cfg.auth.probes,
        }
    }
}

/// What one operation requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Public,
    /// `/ready` and `/metrics`: see [`ProbeAccess`].
    Probe,
    Scope(Scope),
}

#[derive(Debug, Clone)]
struct Operation {
    rule: Rule,
    /// Media types of the request body, None when the operation declares no body.
    accepts: Option<Vec<String>>,
}

/// Paths the HTTP runtime serves itself: documentation, no data.
const RUNTIME_PUBLIC: &[&str] = &["/", "/swagger-ui", "/swagger-ui/{_:.*}", "/openapi.json"];
/// Paths whose readers are monitoring systems.
const PROBES: &[&str] = &["/ready", "/metrics"];

/// A refused request: the code, the detail, and for a 401 whether `x-api-key` is accepted too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: ErrorCode,
    pub detail: String,
}

/// The rules of one service: [`Access`] plus its operations, read from its OpenAPI document.
#[derive(Debug)]
pub struct Policy {
    access: Arc<Access>,
    /// Keyed by actix resource pattern (the same text as the OpenAPI path) and method.
    ops: HashMap<String, Vec<(Method, Operation)>>,
    /// LLM routes need a token when gateway keys exist; every other route when `[auth]` tokens do.
    gateway: bool,
}

/// The scope named by an OpenAPI `security` array; `Ok(None)` for a public operation.
fn scope_of(security: Option<&Value>) -> Result<Option<Scope>, String> {
    let Some(reqs) = security.and_then(Value::as_array) else {
        return Err("declares no security".to_owned());
    };
    if reqs.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())) {
        return Ok(None);
    }
    let named = reqs
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|o| o.values())
        .filter_map(Value::as_array)
        .flatten();
    match named.filter_map(Value::as_str).next() {
        Some(s) => Scope::parse(s).map(Some).ok_or_else(|| format!("names the unknown scope {s:?}")),
        None => Err("declares security without a scope".to_owned()),
    }
}

impl Policy {
    /// Reads the rules of every operation of `doc`. Operations that declare no scope need
    /// `admin` (and are reported by [`Policy::problems`]).
    pub fn new(doc: &utoipa::openapi::OpenApi, access: Arc<Access>, gateway: bool) -> Policy {
        let mut ops: HashMap<String, Vec<(Method, Operation)>> = HashMap::new();
        let doc = serde_json::to_value(doc).unwrap_or(Value::Null);
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let Ok(m) = method.to_ascii_uppercase().parse::<Method>() else { continue };
                let rule = if PROBES.contains(&path.as_str()) {
                    Rule::Probe
                } else {
                    match scope_of(op.get("security")) {
                        Ok(None) => Rule::Public,
                        Ok(Some(s)) => Rule::Scope(s),
                        Err(_) => Rule::Scope(Scope::Admin),
                    }
                };
                let accepts = op
                    .pointer("/requestBody/content")
                    .and_then(Value::as_object)
                    .map(|c| c.keys().map(|k| k.to_ascii_lowercase()).collect());
                ops.entry(path.clone()).or_default().push((m, Operation { rule, accepts }));
            }
        }
        Policy { access, ops, gateway }
    }

    /// Every operation of `doc` that declares no usable scope, as `METHOD path: why` (a test
    /// asserts there are none).
    pub fn problems(doc: &utoipa::openapi::OpenApi) -> Vec<String> {
        let doc = serde_json::to_value(doc).unwrap_or(Value::Null);
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                if let Err(why) = scope_of(op.get("security")) {
                    out.push(format!("{} {path}: {why}", method.to_ascii_uppercase()));
                }
            }
        }
        out
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    fn operation(&self, req: &ServiceRequest) -> Option<Operation> {
        let pattern = req.match_pattern()?;
        if RUNTIME_PUBLIC.contains(&pattern.as_str()) {
            return Some(Operation { rule: Rule::Public, accepts: None });
        }
        match self.ops.get(&pattern) {
            Some(methods) => methods.iter().find(|(m, _)| m == req.method()).map(|(_, op)| op.clone()),
            // routed but undocumented: only an admin
            None => Some(Operation { rule: Rule::Scope(Scope::Admin), accepts: None }),
        }
    }

    /// The CORS headers for a request from an origin of `auth.cors_origins`, if it is one.
    pub fn cors_origin(&self, req: &HttpRequest) -> Option<String> {
        let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
        let listed = self
            .access
            .cors_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin.trim()));
        listed.then(|| origin.trim().to_owned())
    }

    /// The host a request is addressed to (HTTP/2 carries it as the URI's authority).
    fn host(req: &ServiceRequest) -> Option<String> {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
    }

    /// The `Host` rule (see [`auth::host_allowed`]); a request without any host (HTTP/1.0) is no
    /// browser's and passes.
    pub fn check_host(&self, req: &ServiceRequest) -> Result<(), Denied> {
        if let Some(h) = Policy::host(req)
            && !auth::host_allowed(&h, &self.access.allowed_hosts)
        {
            return Err(Denied {
                code: ErrorCode::HostNotAllowed,
                detail: format!(
                    "this service does not answer to the host {:?}; add it to `auth.allowed_hosts` if it is yours",
                    h.chars().take(100).collect::<String>()
                ),
            });
        }
        Ok(())
    }

    /// Checks `req` (after [`Policy::check_host`]); on success the caller's principal is in its
    /// extensions (when the route is not public).
    pub fn check(&self, req: &ServiceRequest) -> Result<(), Denied> {
        let headers = req.headers();
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let host = Policy::host(req);
        let Some(op) = self.operation(req) else {
            // no route: the router answers 404 or 405
            return Ok(());
        };
        let method = req.method();
        let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
        if mutating {
            if let Some(origin) = text(header::ORIGIN)
                && !auth::origin_allowed(origin, host.as_deref(), &self.access.cors_origins)
            {
                return Err(Denied {
                    code: ErrorCode::OriginNotAllowed,
                    detail: format!(
                        "requests from the page origin {:?} may not change anything here; add it to `auth.cors_origins` to allow it",
                        origin.chars().take(100).collect::<String>()
                    ),
                });
            }
            check_media_type(req, op.accepts.as_deref())?;
        }
        let scope = match op.rule {
            Rule::Public => return Ok(()),
            Rule::Probe => {
                let loopback = req.peer_addr().is_some_and(|a| is_loopback(a.ip()));
                match self.access.probes {
                    ProbeAccess::Open => return Ok(()),
                    ProbeAccess::Loopback if loopback => return Ok(()),
                    _ => Scope::OpsRead,
                }
            }
            Rule::Scope(s) => s,
        };
        let a = &self.access.authenticator;
        let enforced = a.is_enforced() || (self.gateway && scope == Scope::Llm && a.gateway_enforced());
        let principal = a
            .authorize(
                scope,
                enforced,
                text(header::AUTHORIZATION),
                headers.get("x-api-key").and_then(|v| v.to_str().ok()),
            )
            .map_err(|r| Denied {
                code: match r {
                    Refusal::Missing(_) | Refusal::Invalid => ErrorCode::Unauthorized,
                    Refusal::Scope { .. } => ErrorCode::Forbidden,
                },
                detail: r.to_string(),
            })?;
        req.extensions_mut().insert(principal);
        Ok(())
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Media types a page of another origin can send without a CORS preflight.
const SIMPLE_MEDIA_TYPES: &[&str] =
    &["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"];

fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// A body's media type must be one the operation declares when it is one a browser can send
/// cross-origin without asking (or missing), and JSON when the operation takes only JSON.
fn check_media_type(req: &ServiceRequest, accepts: Option<&[String]>) -> Result<(), Denied> {
    let headers = req.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let has_body = length.is_some_and(|l| l > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return Ok(());
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let declared = accepts.unwrap_or(&[]);
    let json_only = declared.is_empty() || declared.iter().all(|d| d == "application/json");
    let refused = if media.is_empty() || SIMPLE_MEDIA_TYPES.contains(&media.as_str()) {
        !declared.contains(&media)
    } else {
        json_only && !is_json(&media)
    };
    if !refused {
        return Ok(());
    }
    let want = if declared.is_empty() { "application/json".to_owned() } else { declared.join(" or ") };
    let got = if media.is_empty() { "no content type".to_owned() } else { format!("{media:?}") };
    Err(Denied { code: ErrorCode::UnsupportedMediaType, detail: format!("send {want}, not {got}") })
}

/// The caller of a request, for handlers: `Caller(principal)`. Anonymous on public routes.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Caller, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let p = req.extensions().get::<Principal>().cloned().unwrap_or_else(Principal::anonymous);
        std::future::ready(Ok(Caller(p)))
    }
}

/// The principal of a request (anonymous when the route is public or tokens are off).
pub fn principal(req: &HttpRequest) -> Principal {
    req.extensions().get::<Principal>().cloned().unwrap_or_else(Principal::anonymous)
}
