//! Who may call what: scopes, tokens, principals, and the Host and Origin rules that keep browsers
//! (and DNS rebinding) out.
//!
//! One model for all four services, because the services trust each other's callers equally: a
//! token is configured once (`[[auth.tokens]]`) and works against every service, with the same
//! scopes and project limits everywhere. Gateway keys (`[[breaker_gateway.keys]]`) are tokens too,
//! with the one scope `llm` and the project they bill to.
//!
//! Why these rules:
//! - **Values never in the configuration.** A token is named by the environment variable or the
//!   file that holds it; the configuration can be printed, committed and logged. Only SHA-256
//!   digests are kept in memory, and a presented token is compared with every digest in constant
//!   time, so neither the answer nor its timing tells how much of a guess was right.
//! - **No tokens means loopback only.** Without tokens every caller is [`Principal::anonymous`]
//!   with every scope, which is safe only when no other machine can connect; start-up refuses a
//!   non-loopback bind without tokens ([`bind_refusal`]).
//! - **Host and Origin are checked even without tokens**, because the attacker a loopback-only
//!   service still faces is a web page in the user's browser: DNS rebinding makes the page's own
//!   host name resolve to 127.0.0.1 (the `Host` header then names the attacker's domain, which
//!   [`host_allowed`] refuses), and a cross-origin form or `fetch` can send "simple" requests
//!   without a CORS preflight (its `Origin` names the other site, which [`origin_allowed`]
//!   refuses).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod minted;

/// What a token may do. `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Everything, including operator actions (breaker commands).
    Admin,
    /// Start, cancel, resume and replay runs.
    RunsWrite,
    /// Read runs and their events.
    RunsRead,
    /// Send spans (Helix events, OTLP, transcripts).
    TracesWrite,
    /// Read traces, costs, baselines, anomalies and the live feed.
    TracesRead,
    /// Record fixes (what the healer learns from).
    HealerWrite,
    /// Analyse output, read signatures, hints, patterns and fix proposals.
    HealerRead,
    /// Call LLMs through the breaker-gateway (gateway keys have this scope).
    Llm,
    /// Readiness, metrics and the breakers' state.
    OpsRead,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::Admin,
        Scope::RunsWrite,
        Scope::RunsRead,
        Scope::TracesWrite,
        Scope::TracesRead,
        Scope::HealerWrite,
        Scope::HealerRead,
        Scope::Llm,
        Scope::OpsRead,
    ];

    /// The scope as written in the configuration and the OpenAPI documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::RunsWrite => "runs:write",
            Scope::RunsRead => "runs:read",
            Scope::TracesWrite => "traces:write",
            Scope::TracesRead => "traces:read",
            Scope::HealerWrite => "healer:write",
            Scope::HealerRead => "healer:read",
            Scope::Llm => "llm",
            Scope::OpsRead => "ops:read",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// What the scope allows, one line (for documents and errors).
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Admin => "everything, including breaker commands",
            Scope::RunsWrite => "start, cancel, resume and replay runs",
            Scope::RunsRead => "read runs and their events",
            Scope::TracesWrite => "send spans, OTLP and transcripts",
            Scope::TracesRead => "read traces, costs, baselines, anomalies and the live feed",
            Scope::HealerWrite => "record fixes",
            Scope::HealerRead => "analyse output; read signatures, hints, patterns, proposals",
            Scope::Llm => "call LLMs through the gateway",
            Scope::OpsRead => "readiness, metrics, breaker state",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u16);

impl Scopes {
    pub const EVERY: Scopes = Scopes(u16::MAX);

    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Whether `scope` is allowed: held directly, or through `admin`.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.0 & s.bit() != 0)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(Scope::as_str)).finish()
    }
}

/// Who is calling: the token's id (never its value), its scopes and the projects it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id from the configuration (`gateway-key:ENV` for a gateway key, `local` for
    /// the local token, `anonymous` when no tokens are configured). Goes into audit events.
    pub id: Arc<str>,
    pub scopes: Scopes,
    /// `None`: every project.
    pub projects: Option<Arc<[String]>>,
    /// For a gateway key: its position in `[[breaker_gateway.keys]]` (budget, bulkhead).
    pub gateway_key: Option<usize>,
    /// For a minted key (see [`minted`]): its id, under which the gateway keeps its cost cap.
    pub minted: Option<Arc<str>>,
}

impl Principal {
    /// The caller when no tokens are configured (loopback only): every scope, every project.
    pub fn anonymous() -> Principal {
        Principal {
            id: Arc::from("anonymous"),
            scopes: Scopes::EVERY,
            projects: None,
            gateway_key: None,
            minted: None,
        }
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.allows(scope)
    }

    /// Whether the principal may read or write data of `project`.
    pub fn may_access(&self, project: &str) -> bool {
        match &self.projects {
            None => true,
            Some(ps) => ps.iter().any(|p| p == project),
        }
    }

    /// The project a request of this principal belongs to when it names none: its only project,
    /// if it is limited to one.
    pub fn sole_project(&self) -> Option<&str> {
        match self.projects.as_deref() {
            Some([one]) => Some(one),
            _ => None,
        }
    }

    /// Checks `project` against the principal's projects; the error says which it may use.
    pub fn check_project(&self, project: &str) -> Result<(), String> {
        if self.may_access(project) {
            return Ok(());
        }
        let allowed = self.projects.as_deref().map(|p| p.join(", ")).unwrap_or_default();
        Err(format!("token {:?} may not access project {project:?} (its projects: {allowed})", &*self.id))
    }
}

/// A secret held in memory: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A new random token: `hxt_` and 64 hex digits (two v4 UUIDs: 244 random bits).
pub fn generate_token() -> Secret {
    Secret(format!("hxt_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality whose time does not depend on where the inputs differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Why a request is refused. Never holds what was presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 401: no credential.
    #[error("missing token: send `authorization: bearer <token>`{}", if *.0 { " or `x-api-key: <key>`" } else { "" })]
    Missing(bool),
    /// 401: a credential that is no configured token.
    #[error("invalid token")]
    Invalid,
    /// 403: a valid token without the scope the operation needs.
    #[error("token {id:?} lacks the scope {scope} this operation needs")]
    Scope { id: String, scope: Scope },
}

/// Why the tokens cannot be loaded. Names variables and files, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("{what}: environment variable {var} is not set")]
    MissingEnv { what: String, var: String },
    #[error("{what}: cannot read token file {path}: {message}")]
    File { what: String, path: String, message: String },
    #[error("{what}: the token is empty")]
    Empty { what: String },
    #[error("{what} and {other} hold the same token")]
    Duplicate { what: String, other: String },
    #[error("{what}: the token is shorter than {min} characters")]
    TooShort { what: String, min: usize },
}

/// Shortest token accepted from the configuration: anything shorter can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

struct Entry {
    digest: [u8; 32],
    principal: Principal,
    /// For error messages about duplicates.
    source: String,
}

/// The configured tokens, by digest, and whether any are required.
pub struct Authenticator {
    entries: Vec<Entry>,
    /// Whether tokens of `[auth]` (or the local token) exist: then every route needs one.
    enforced: bool,
    /// Whether gateway keys exist: then the gateway's LLM routes need a token.
    gateway_keys: bool,
    /// Keys minted at run time (see [`minted`]); they never make tokens required.
    minted: minted::MintedKeys,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.entries.iter().map(|e| &*e.principal.id).collect();
        f.debug_struct("Authenticator").field("tokens", &ids).field("enforced", &self.enforced).finish()
    }
}

/// Where a token comes from, as the configuration names it.
pub enum TokenSource<'a> {
    Env(&'a str),
    File(&'a Path),
    /// A value made in this process (the local token, the internal token of `helix up`).
    Value(Secret),
}

impl Authenticator {
    /// No tokens: every caller is anonymous (loopback only).
    pub fn open() -> Authenticator {
        Authenticator {
            entries: Vec::new(),
            enforced: false,
            gateway_keys: false,
            minted: minted::MintedKeys::default(),
        }
    }

    /// Adds a token. `what` names it in errors (`auth.tokens[0]`, `breaker_gateway.keys[1]`);
    /// `env` reads environment variables (in production the process environment).
    pub fn add(
        &mut self,
        what: &str,
        source: TokenSource<'_>,
        principal: Principal,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), CredentialError> {
        self.insert(what, source, principal, env, true)
    }

    /// Adds the token the services of one process call each other with. Unlike [`Authenticator::add`]
    /// it does not make tokens required: it exists because they are.
    pub fn add_internal(&mut self, token: Secret, principal: Principal) -> Result<(), CredentialError> {
        self.insert("the internal token", TokenSource::Value(token), principal, &|_| None, false)
    }

    fn insert(
        &mut self,
        what: &str,
        source: TokenSource<'_>,
        principal: Principal,
        env: &dyn Fn(&str) -> Option<String>,
        enforces: bool,
    ) -> Result<(), CredentialError> {
        let value = match source {
            TokenSource::Env(var) => env(var)
                .ok_or_else(|| CredentialError::MissingEnv { what: what.to_owned(), var: var.to_owned() })?,
            TokenSource::File(path) => std::fs::read_to_string(path).map_err(|e| CredentialError::File {
                what: what.to_owned(),
                path: path.display().to_string(),
                message: e.kind().to_string(),
            })?,
            TokenSource::Value(s) => s.0,
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(CredentialError::Empty { what: what.to_owned() });
        }
        let is_gateway_key = principal.gateway_key.is_some();
        // gateway keys predate this minimum; they stay as long as they were
        if !is_gateway_key && value.len() < MIN_TOKEN_LEN {
            return Err(CredentialError::TooShort { what: what.to_owned(), min: MIN_TOKEN_LEN });
        }
        let d = digest(value);
        // one token with two meanings would mean whichever comes first: refuse instead
        if let Some(other) = self.entries.iter().find(|e| e.digest == d) {
            return Err(CredentialError::Duplicate { what: what.to_owned(), other: other.source.clone() });
        }
        if is_gateway_key {
            self.gateway_keys = true;
        } else if enforces {
            self.enforced = true;
        }
        self.entries.push(Entry { digest: d, principal, source: what.to_owned() });
        Ok(())
    }

    /// The tokens of `[[auth.tokens]]` and the gateway keys of `[[breaker_gateway.keys]]` (each
    /// with the scope `llm` and the one project it bills to), read through `env`.
    pub fn from_config(
        auth: &AuthConfig,
        gateway_keys: &[crate::gateway_config::GatewayKeyConfig],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Authenticator, CredentialError> {
        let mut a = Authenticator::open();
        for (i, t) in auth.tokens.iter().enumerate() {
            let what = format!("auth.tokens[{i}] ({})", t.id);
            // validated by the config: exactly one source
            let source = t.source().ok_or_else(|| CredentialError::Empty { what: what.clone() })?;
            a.add(&what, source, t.principal(), env)?;
        }
        for (i, k) in gateway_keys.iter().enumerate() {
            let principal = Principal {
                id: Arc::from(format!("gateway-key:{}", k.key_env)),
                scopes: Scopes::of(&[Scope::Llm]),
                projects: Some(Arc::from(vec![k.project.clone()])),
                gateway_key: Some(i),
                minted: None,
            };
            a.add(
                &format!("breaker_gateway.keys[{i}] ({})", k.key_env),
                TokenSource::Env(&k.key_env),
                principal,
                env,
            )?;
        }
        Ok(a)
    }

    /// Whether `[auth]` tokens exist, so every route but the public ones needs one.
    pub fn is_enforced(&self) -> bool {
        self.enforced
    }

    /// Whether the gateway's LLM routes need a token (gateway keys or `[auth]` tokens exist).
    pub fn gateway_enforced(&self) -> bool {
        self.enforced || self.gateway_keys
    }

    /// The principal of a request from its `Authorization` and `x-api-key` values, or None when
    /// it presented nothing. `x-api-key` is tried first: a client may sit behind a proxy that
    /// adds an `Authorization` of its own, so a match of either is enough.
    pub fn identify(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
    ) -> Result<Option<Principal>, Refusal> {
        self.identify_at(authorization, x_api_key, crate::time::now_ms())
    }

    /// A new key standing for `principal` (see [`minted::narrowed`]) until `expires_at_ms`.
    pub fn mint(
        &self,
        principal: Principal,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<Secret, minted::MintError> {
        self.minted.mint(principal, expires_at_ms, now_ms)
    }

    /// Revokes the minted key with id `id`; whether it existed.
    pub fn revoke_minted(&self, id: &str) -> bool {
        self.minted.revoke(id)
    }

    /// [`Authenticator::identify`] at `now_ms` (which minted keys have expired).
    pub fn identify_at(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<Principal>, Refusal> {
        let candidates = [x_api_key.map(str::trim).filter(|k| !k.is_empty()), authorization.and_then(bearer)];
        let mut presented = false;
        for token in candidates.into_iter().flatten() {
            presented = true;
            let d = digest(token);
            // every entry is compared, so the time does not tell which one matched
            let mut found = None;
            for e in &self.entries {
                if ct_eq(&e.digest, &d) && found.is_none() {
                    found = Some(&e.principal);
                }
            }
            if let Some(p) = found {
                return Ok(Some(p.clone()));
            }
            if let Some(p) = self.minted.find(&d, now_ms) {
                return Ok(Some(p));
            }
        }
        if presented { Err(Refusal::Invalid) } else { Ok(None) }
    }

    /// The principal allowed to call an operation needing `scope`. `enforced` says whether this
    /// route needs a token at all ([`Authenticator::is_enforced`], or
    /// [`Authenticator::gateway_enforced`] for LLM routes). Without enforcement a request that
    /// presents a known token with the scope is that token (so its project still applies);
    /// anything else is anonymous.
    pub fn authorize(
        &self,
        scope: Scope,
        enforced: bool,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
    ) -> Result<Principal, Refusal> {
        if !enforced {
            // a known token keeps what it is limited to (a gateway key's project); anything else
            // is anonymous, as before tokens existed
            return Ok(match self.identify(authorization, x_api_key) {
                Ok(Some(p)) if p.allows(scope) => p,
                _ => Principal::anonymous(),
            });
        }
        let principal = match self.identify(authorization, x_api_key)? {
            Some(p) => p,
            None => return Err(Refusal::Missing(scope == Scope::Llm)),
        };
        if principal.allows(scope) {
            Ok(principal)
        } else {
            Err(Refusal::Scope { id: principal.id.to_string(), scope })
        }
    }
}

/// Whether the bind address `host` is reachable only from this machine.
pub fn is_loopback_bind(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The start-up error for a bind that would serve other machines without tokens, naming the
/// keys that fix it; None when the bind is fine.
pub fn bind_refusal(host: &str, tokens_configured: bool, allow_unauthenticated: bool) -> Option<String> {
    if is_loopback_bind(host) || tokens_configured || allow_unauthenticated {
        return None;
    }
    Some(format!(
        "refusing to listen on {host} without tokens: anyone who can reach it could run commands. \
         Configure `[[auth.tokens]]` (or `auth.local_token = true`), bind to 127.0.0.1 (`host`), \
         or set `auth.allow_unauthenticated = true` to accept the risk"
    ))
}

/// The host name of a `Host` header value (`name:port`, `[v6]:port`), lowercased, without a
/// trailing dot.
fn host_name(host: &str) -> String {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match h.rsplit_once(':') {
            // a bare IPv6 address has several colons and no brackets: keep it whole
            Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a request's `Host` may be served. Loopback names and IP literals always: DNS
/// rebinding needs a domain name the attacker controls, and a literal address names no one's
/// domain. Otherwise the name must be configured: exactly, as `.example.com` (that domain and
/// its subdomains), or `*` (any).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host);
    if name.is_empty() {
        return false;
    }
    if name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok() {
        return true;
    }
    allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('.').to_ascii_lowercase();
        a == "*"
            || a == name
            || a.strip_prefix('.').is_some_and(|domain| name == domain || name.ends_with(&a))
    })
}

/// Whether a browser request from `origin` may change state: the page is served by this very
/// service (same scheme-less host and port as the request's `Host`), or the origin is listed in
/// `auth.cors_origins`. `null` (sandboxed frames, files) is never allowed.
pub fn origin_allowed(origin: &str, host: Option<&str>, cors_origins: &[String]) -> bool {
    let origin = origin.trim();
    if origin.eq_ignore_ascii_case("null") || origin.is_empty() {
        return false;
    }
    if cors_origins.iter().any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    host.is_some_and(|h| h.trim().eq_ignore_ascii_case(rest.trim_end_matches('/')))
}

/// Serde shapes of `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Names the token in audit events and errors; not secret.
    pub id: String,
    /// The environment variable holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// A file holding the token (e.g. a mounted secret); read once at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<std::path::PathBuf>,
    /// `admin`, `runs:write`, `runs:read`, `traces:write`, `traces:read`, `healer:write`,
    /// `healer:read`, `llm`, `ops:read`.
    pub scopes: Vec<String>,
    /// Projects the token may touch; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
}

impl TokenConfig {
    /// The principal the token stands for (scopes already validated by the config).
    pub fn principal(&self) -> Principal {
        let scopes: Vec<Scope> = self.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
        Principal {
            id: Arc::from(self.id.as_str()),
            scopes: Scopes::of(&scopes),
            projects: (!self.projects.is_empty()).then(|| Arc::from(self.projects.clone())),
            gateway_key: None,
            minted: None,
        }
    }

    pub fn source(&self) -> Option<TokenSource<'_>> {
        match (&self.token_env, &self.token_file) {
            (Some(var), _) => Some(TokenSource::Env(var)),
            (None, Some(path)) => Some(TokenSource::File(path)),
            (None, None) => None,
        }
    }
}

/// Who may read `/ready` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeAccess {
    /// Callers on this machine without a token; others need `ops:read`.
    #[default]
    Loopback,
    /// Everyone (behind a network that only the probes reach).
    Open,
    /// Only tokens with `ops:read` (use this behind a reverse proxy on the same machine).
    Token,
}

/// `[auth]`: tokens, and what browsers and other machines may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The tokens; with none, Helix serves loopback only.
    pub tokens: Vec<TokenConfig>,
    /// Serve a non-loopback address without tokens (a warning at every start).
    pub allow_unauthenticated: bool,
    /// Write a generated admin token to `<data_dir>/local-token` (0600) at start; the CLI on
    /// this machine uses it without being told. For shared machines.
    pub local_token: bool,
    /// Host names (besides loopback names and IP addresses) requests may be addressed to:
    /// `helix.example.com`, `.example.com` (and subdomains), or `*`.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example.com`) whose pages may call the APIs (CORS); none by
    /// default. `*` allows any, for development only.
    pub cors_origins: Vec<String>,
    /// Who may read `/ready` and `/metrics`.
    pub probes: ProbeAccess,
    /// Environment variable holding the token this process sends to the other services (for
    /// services run apart with `helix serve`; `helix up` makes its own in memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token_env: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens: Vec::new(),
            allow_unauthenticated: false,
            local_token: false,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            probes: ProbeAccess::Loopback,
            client_token_env: None,
        }
    }
}

impl AuthConfig {
    /// Checks what serde cannot: `(key, message)` of the first problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut ids = std::collections::BTreeSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let key = |k: &str| format!("auth.tokens[{i}].{k}");
            if t.id.trim().is_empty()
                || !t.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c))
            {
                return Err((key("id"), "must be letters, digits and -_.:@".to_owned()));
            }
            if !ids.insert(t.id.clone()) {
                return Err((key("id"), format!("{:?} is used by another token", t.id)));
            }
            if t.token_env.is_some() == t.token_file.is_some() {
                return Err((key("token_env"), "give exactly one of token_env and token_file".to_owned()));
            }
            if t.scopes.is_empty() {
                return Err((key("scopes"), "a token needs at least one scope".to_owned()));
            }
            for s in &t.scopes {
                if Scope::parse(s).is_none() {
                    let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                    return Err((key("scopes"), format!("unknown scope {s:?}; scopes: {}", all.join(", "))));
                }
            }
            if t.projects.iter().any(|p| p.trim().is_empty()) {
                return Err((key("projects"), "project names must not be empty".to_owned()));
            }
        }
        for (i, o) in self.cors_origins.iter().enumerate() {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.trim_end_matches('/').contains(['?', '#']));
            if !ok {
                return Err((
                    format!("auth.cors_origins[{i}]"),
                    format!("{o:?} is not an origin like https://app.example.com"),
                ));
            }
        }
        for (i, h) in self.allowed_hosts.iter().enumerate() {
            if h.trim().is_empty() || h.contains(['/', ' ', ':']) {
                return Err((format!("auth.allowed_hosts[{i}]"), format!("{h:?} is not a host name")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHA: &str = "tok-alpha-0123456789abcdef";
    const BETA: &str = "tok-beta-0123456789abcdef";

    fn principal(id: &str, scopes: &[Scope], projects: Option<&[&str]>) -> Principal {
        Principal {
            id: Arc::from(id),
            scopes: Scopes::of(scopes),
            projects: projects.map(|ps| Arc::from(ps.iter().map(|p| p.to_string()).collect::<Vec<_>>())),
            gateway_key: None,
            minted: None,
        }
    }

    fn ring() -> Authenticator {
        let mut a = Authenticator::open();
        let env = |name: &str| match name {
            "ALPHA" => Some(ALPHA.to_owned()),
            "BETA" => Some(format!("  {BETA}\n")),
            _ => None,
        };
        a.add("auth.tokens[0]", TokenSource::Env("ALPHA"), principal("ci", &[Scope::RunsWrite], None), &env)
            .expect("alpha");
        a.add(
            "auth.tokens[1]",
            TokenSource::Env("BETA"),
            principal("shop", &[Scope::TracesRead], Some(&["shop"])),
            &env,
        )
        .expect("beta");
        a
    }

    #[test]
    fn scopes_parse_print_and_admin_implies_all() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("runs:delete"), None);
        let admin = Scopes::of(&[Scope::Admin]);
        assert!(Scope::ALL.iter().all(|s| admin.allows(*s)));
        let runs = Scopes::of(&[Scope::RunsRead]);
        assert!(runs.allows(Scope::RunsRead) && !runs.allows(Scope::RunsWrite) && !runs.allows(Scope::Admin));
        assert_eq!(format!("{runs:?}"), "[\"runs:read\"]");
    }

    #[test]
    fn tokens_map_to_principals_and_scopes_are_checked() {
        let a = ring();
        assert!(a.is_enforced() && a.gateway_enforced());
        let p = a.authorize(Scope::RunsWrite, true, Some(&format!("Bearer {ALPHA}")), None).expect("ci");
        assert_eq!(&*p.id, "ci");
        // x-api-key works too, and surrounding whitespace of the configured value is ignored
        let p = a.authorize(Scope::TracesRead, true, None, Some(BETA)).expect("shop");
        assert!(p.may_access("shop") && !p.may_access("other"));
        assert_eq!(p.sole_project(), Some("shop"));
        assert!(p.check_project("other").expect_err("other").contains("shop"));
        // wrong scope: 403, naming the token id and the scope, never the value
        let e = a.authorize(Scope::RunsWrite, true, None, Some(BETA)).expect_err("scope");
        assert_eq!(e, Refusal::Scope { id: "shop".into(), scope: Scope::RunsWrite });
        assert!(!e.to_string().contains(BETA));
        // nothing or garbage: 401
        assert_eq!(a.authorize(Scope::RunsRead, true, None, None), Err(Refusal::Missing(false)));
        assert_eq!(a.authorize(Scope::Llm, true, None, None), Err(Refusal::Missing(true)));
        assert_eq!(a.authorize(Scope::RunsRead, true, Some("Bearer nope"), None), Err(Refusal::Invalid));
        assert_eq!(a.authorize(Scope::RunsRead, true, Some(ALPHA), None), Err(Refusal::Missing(false)));
        assert_eq!(
            a.authorize(Scope::RunsRead, true, Some(&format!("Basic {ALPHA}")), None),
            Err(Refusal::Missing(false))
        );
        assert!(!format!("{a:?}").contains(ALPHA));
    }

    #[test]
    fn without_enforcement_callers_are_anonymous_unless_they_name_a_token() {
        let open = Authenticator::open();
        assert!(!open.is_enforced());
        assert_eq!(open.authorize(Scope::Admin, false, None, None), Ok(Principal::anonymous()));
        assert_eq!(
            open.authorize(Scope::Admin, false, Some("Bearer whatever"), None),
            Ok(Principal::anonymous())
        );
        // gateway keys only: the gateway is enforced, the rest is not; a known key keeps its limits
        let mut a = Authenticator::open();
        let mut key = principal("gateway-key:K", &[Scope::Llm], Some(&["shop"]));
        key.gateway_key = Some(0);
        a.add("breaker_gateway.keys[0]", TokenSource::Value(Secret::new("short")), key, &|_| None)
            .expect("key");
        assert!(!a.is_enforced() && a.gateway_enforced());
        let p = a.authorize(Scope::Llm, true, None, Some("short")).expect("key");
        assert_eq!(p.gateway_key, Some(0));
        assert_eq!(a.authorize(Scope::Admin, false, None, Some("short")), Ok(Principal::anonymous()));
        assert_eq!(a.authorize(Scope::Admin, false, None, None), Ok(Principal::anonymous()));
    }

    #[test]
    fn credential_errors_name_the_source_never_the_value() {
        let mut a = Authenticator::open();
        let p = principal("x", &[Scope::Admin], None);
        let e = a.add("auth.tokens[0]", TokenSource::Env("NOPE"), p.clone(), &|_| None).expect_err("missing");
        assert!(e.to_string().contains("NOPE") && e.to_string().contains("auth.tokens[0]"), "{e}");
        let e = a
            .add("auth.tokens[0]", TokenSource::Value(Secret::new("short-secret")), p.clone(), &|_| None)
            .expect_err("short");
        assert!(!e.to_string().contains("short-secret"), "{e}");
        a.add("auth.tokens[0]", TokenSource::Value(Secret::new(ALPHA)), p.clone(), &|_| None).expect("ok");
        let e = a
            .add("auth.tokens[1]", TokenSource::Value(Secret::new(ALPHA)), p.clone(), &|_| None)
            .expect_err("dup");
        assert!(e.to_string().contains("auth.tokens[0]") && !e.to_string().contains(ALPHA), "{e}");
        let e = a
            .add("auth.tokens[2]", TokenSource::File(Path::new("/nonexistent/helix-token")), p, &|_| None)
            .expect_err("file");
        assert!(e.to_string().contains("/nonexistent/helix-token"), "{e}");
        assert!(!format!("{:?}", generate_token()).contains("hxt_"));
        assert_eq!(generate_token().expose().len(), 68);
    }

    #[test]
    fn loopback_binds_and_the_refusal() {
        for h in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "a.localhost"] {
            assert!(is_loopback_bind(h), "{h}");
        }
        for h in ["0.0.0.0", "::", "192.168.1.10", "example.com"] {
            assert!(!is_loopback_bind(h), "{h}");
        }
        let e = bind_refusal("0.0.0.0", false, false).expect("refused");
        assert!(e.contains("auth.tokens") && e.contains("auth.allow_unauthenticated"), "{e}");
        assert_eq!(bind_refusal("0.0.0.0", true, false), None);
        assert_eq!(bind_refusal("0.0.0.0", false, true), None);
        assert_eq!(bind_refusal("127.0.0.1", false, false), None);
    }

    #[test]
    fn hosts_loopback_and_literals_always_names_only_when_configured() {
        let none: Vec<String> = vec![];
        for h in [
            "127.0.0.1:7700",
            "localhost:7700",
            "LOCALHOST",
            "[::1]:7700",
            "::1",
            "10.0.0.5",
            "x.localhost:1",
        ] {
            assert!(host_allowed(h, &none), "{h}");
        }
        for h in ["evil.example:7700", "evil.example", "127.0.0.1.nip.io:7700", "", "localhost.evil.com"] {
            assert!(!host_allowed(h, &none), "{h}");
        }
        let cfg = vec!["helix.example.com".to_owned(), ".corp.example".to_owned()];
        assert!(host_allowed("helix.example.com:443", &cfg));
        assert!(host_allowed("HELIX.example.com.", &cfg));
        assert!(host_allowed("a.b.corp.example", &cfg) && host_allowed("corp.example", &cfg));
        assert!(!host_allowed("xcorp.example", &cfg) && !host_allowed("evil.example.com", &cfg));
        assert!(host_allowed("anything", &["*".to_owned()]));
    }

    #[test]
    fn origins_same_host_or_configured() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed("http://127.0.0.1:7700", Some("127.0.0.1:7700"), &none));
        assert!(origin_allowed("https://helix.example.com", Some("helix.example.com"), &none));
        assert!(
            !origin_allowed("http://127.0.0.1:7701", Some("127.0.0.1:7700"), &none),
            "another port is another origin"
        );
        assert!(!origin_allowed("http://evil.example", Some("127.0.0.1:7700"), &none));
        assert!(!origin_allowed("null", Some("127.0.0.1:7700"), &none));
        assert!(!origin_allowed("http://127.0.0.1:7700", None, &none));
        let cors = vec!["https://app.example.com".to_owned()];
        assert!(origin_allowed("https://app.example.com", Some("127.0.0.1:7700"), &cors));
        assert!(!origin_allowed("https://app.example.com.evil", Some("127.0.0.1:7700"), &cors));
    }

    #[test]
    fn config_validation_names_the_key() {
        let token = |id: &str, env: Option<&str>, scopes: &[&str]| TokenConfig {
            id: id.to_owned(),
            token_env: env.map(str::to_owned),
            token_file: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            projects: vec![],
        };
        let cfg = |tokens| AuthConfig { tokens, ..AuthConfig::default() };
        assert!(cfg(vec![token("ci", Some("T"), &["runs:write"])]).validate().is_ok());
        let e = cfg(vec![token("ci", Some("T"), &["runs:delete"])]).validate().expect_err("scope");
        assert_eq!(e.0, "auth.tokens[0].scopes");
        let e = cfg(vec![token("ci", None, &["admin"])]).validate().expect_err("source");
        assert_eq!(e.0, "auth.tokens[0].token_env");
        let e = cfg(vec![token("a", Some("T"), &["admin"]), token("a", Some("U"), &["admin"])])
            .validate()
            .expect_err("dup id");
        assert_eq!(e.0, "auth.tokens[1].id");
        let e = cfg(vec![token("a b", Some("T"), &["admin"])]).validate().expect_err("id");
        assert_eq!(e.0, "auth.tokens[0].id");
        let e = AuthConfig { cors_origins: vec!["app.example.com".into()], ..AuthConfig::default() }
            .validate()
            .expect_err("origin");
        assert_eq!(e.0, "auth.cors_origins[0]");
        let p = token("ci", Some("T"), &["runs:read", "traces:read"]).principal();
        assert!(p.allows(Scope::RunsRead) && p.allows(Scope::TracesRead) && !p.allows(Scope::RunsWrite));
    }
}
