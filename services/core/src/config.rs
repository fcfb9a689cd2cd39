//! Configuration: one TOML file, `HELIX_*` environment variables, command-line flags.
//!
//! Precedence is defaults < file < environment < flags. [`load`] is a pure function of the file
//! text, the environment map and the flags, so every rule here is tested without touching the
//! process environment or the disk; the `helix` binary does the reading.
//!
//! Unknown keys and bad values stop start-up with an error naming the key (and, for the file,
//! the line). Unknown `HELIX_*` variables only produce a warning: other programs use that prefix
//! too (the Helix editor reads `HELIX_RUNTIME`), and refusing to start because of them would be
//! hostile.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::service::ServiceKind;

/// Environment variables with the `HELIX_` prefix that are not configuration keys.
/// (The CLI's service URLs, the gateway key of LLM phases, and what phases get from the
/// orchestrator.)
const NON_CONFIG_ENV: &[&str] = &[
    "HELIX_CONFIG",
    "HELIX_HINTS",
    "HELIX_GATEWAY_KEY",
    "HELIX_RUN_ID",
    "HELIX_PHASE",
    "HELIX_ATTEMPT",
    "HELIX_ORCHESTRATOR_URL",
    "HELIX_TRACE_COLLECTOR_URL",
    "HELIX_HEALER_URL",
    "HELIX_BREAKER_GATEWAY_URL",
    "HELIX_TOKEN",
    "HELIX_ENV_FD",
];

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The whole Helix configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HelixConfig {
    /// Address every service binds to.
    pub host: String,
    pub orchestrator_port: u16,
    pub trace_collector_port: u16,
    pub breaker_gateway_port: u16,
    pub healer_port: u16,
    /// Root of everything the services store; each service uses `<data_dir>/<service>`.
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    /// A tracing filter directive such as `info` or `helix_healer=debug,info`. `RUST_LOG`, when
    /// set, wins.
    pub log_level: String,
    /// Largest request body any service accepts; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    /// HTTP worker threads per service; 0 means one per CPU core.
    pub workers: usize,
    pub healer: HealerConfig,
    pub trace_collector: TraceCollectorConfig,
    pub breaker_gateway: crate::gateway_config::BreakerGatewayConfig,
    pub orchestrator: OrchestratorConfig,
    pub auth: crate::auth::AuthConfig,
    pub peers: PeersConfig,
}

/// Where a service finds the others when they run apart (replicas behind a load balancer, a
/// Kubernetes Service, another host). Unset: the same `host` with the configured ports, which
/// is what `helix up` and one machine need. `helix up` always uses the services it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    /// e.g. `http://helix-healer:7703`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healer_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_collector_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_gateway_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator_url: Option<String>,
}

/// How phases are isolated from the service and from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// bubblewrap when it is installed and works here, else the fallback (see `none`).
    #[default]
    Auto,
    /// bubblewrap or nothing: a phase fails to start when bwrap cannot run.
    Bwrap,
    /// No namespaces: phases still run with a clean environment, rlimits and in their own
    /// process group, and the service's memory is not readable by other users.
    None,
}

/// Resource limits of each process of a phase (rlimits); 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhaseLimitsConfig {
    /// CPU seconds per process (RLIMIT_CPU).
    pub cpu_secs: u64,
    /// Address space per process in bytes (RLIMIT_AS).
    pub address_space_bytes: u64,
    /// Largest file a process may write, in bytes (RLIMIT_FSIZE).
    pub file_size_bytes: u64,
    /// Processes of the user (RLIMIT_NPROC; not enforced for root outside a sandbox).
    pub processes: u64,
}

impl Default for PhaseLimitsConfig {
    fn default() -> Self {
        PhaseLimitsConfig {
            cpu_secs: 3600,
            address_space_bytes: 128 << 30,
            file_size_bytes: 16 << 30,
            processes: 4096,
        }
    }
}

/// `[orchestrator]`: how pipelines run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// Runs of one project executing at once; more are refused with 429 (a bulkhead).
    pub max_runs_per_project: usize,
    /// First wait before retrying a transient failure; doubles with each attempt.
    pub retry_backoff_ms: u64,
    /// Called with a JSON body when a run needs a human or is escalated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation_webhook: Option<String>,
    /// Name of the environment variable holding the gateway key LLM phases use (the key itself
    /// never goes into a file).
    pub gateway_key_env: String,
    /// Longest an LLM phase waits for one answer from the gateway.
    pub llm_timeout_secs: u64,
    /// Files and directories never copied into checkpoints (gitignore-like, no `**`).
    pub exclude: Vec<String>,
    /// Directories `pipeline_path` and `workdir` must be inside; empty: the directory the
    /// service was started in.
    pub roots: Vec<PathBuf>,
    /// Runs executing at once over all projects; more get 429.
    pub max_runs: usize,
    /// Wall-clock limit of a phase (and of a command gate) that sets no `timeout`.
    pub phase_timeout_secs: u64,
    /// Resource limits of phase processes, unless a pipeline or phase sets its own.
    pub limits: PhaseLimitsConfig,
    /// How phases are isolated (`auto`, `bwrap`, `none`).
    pub sandbox: SandboxMode,
    /// A file of `NAME=value` lines: secrets pipelines may name (`secrets = ["NAME"]`) besides the
    /// service's environment. Read when a phase starts, never copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_file: Option<PathBuf>,
    /// Every this many seconds, resume runs whose owner died (their lock is free, their latest
    /// checkpoint says running): replicas sharing one data directory take over each other's
    /// runs, and a restarted orchestrator its own, with no `helix resume`. 0 (the default)
    /// leaves interrupted runs for `helix resume`.
    pub takeover_secs: u64,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            max_runs_per_project: 4,
            retry_backoff_ms: 1000,
            escalation_webhook: None,
            gateway_key_env: "HELIX_GATEWAY_KEY".to_owned(),
            llm_timeout_secs: 300,
            exclude: vec![
                ".git/".to_owned(),
                ".helix/".to_owned(),
                "__pycache__/".to_owned(),
                "node_modules/".to_owned(),
                "target/".to_owned(),
                ".venv/".to_owned(),
            ],
            roots: Vec::new(),
            max_runs: 16,
            phase_timeout_secs: 3600,
            limits: PhaseLimitsConfig::default(),
            sandbox: SandboxMode::Auto,
            secrets_file: None,
            takeover_secs: 0,
        }
    }
}

/// `[trace_collector]`: storage of traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceCollectorConfig {
    /// Events older than this many days are removed (whole segments); 0 keeps everything.
    pub retention_days: u64,
    /// The event log is kept below this many bytes, oldest segments first; 0 means no limit.
    pub retention_bytes: u64,
    /// Forward every stored span to this OTLP/HTTP traces endpoint
    /// (e.g. `http://tempo:4318/v1/traces`), resuming after outages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_otlp_endpoint: Option<String>,
    /// Largest OTLP request body (`/v1/traces`, `/v1/logs`, `/v1/metrics`) after decompression.
    /// Separate from `max_body_bytes` because SDKs send big batches and drop a refused one whole.
    pub otlp_max_body_bytes: usize,
    /// Also flag spans far faster or cheaper than their baseline as anomalies (off: only slow
    /// and costly outliers count).
    pub flag_fast_and_cheap: bool,
}

impl Default for TraceCollectorConfig {
    fn default() -> Self {
        TraceCollectorConfig {
            retention_days: 30,
            retention_bytes: 10 * 1024 * 1024 * 1024,
            export_otlp_endpoint: None,
            otlp_max_body_bytes: 64 * 1024 * 1024,
            flag_fast_and_cheap: false,
        }
    }
}

/// `[healer]`: the error pattern engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealerConfig {
    /// A directory of pattern files (`*.toml`) used instead of the seed patterns compiled into
    /// the binary; invalid files stop start-up naming file and line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patterns_dir: Option<PathBuf>,
    /// Serve hints drawn from fixes other projects recorded. Off by default: a fix description is
    /// text anyone with `healer:write` can write, and a hint ends up in other projects' prompts.
    pub share_hints: bool,
    /// Signatures without a successful fix that were not seen for this many days are forgotten;
    /// 0 keeps them.
    pub retention_days: u64,
    /// At most this many signatures are kept (memory and disk stay bounded): the least recently
    /// seen are forgotten first, those with a successful fix last; 0 means no limit.
    pub max_signatures: usize,
    /// A model name of the breaker-gateway (`[[breaker_gateway.models]]`): the root cause of an
    /// analysis that no pattern or cue classified (category `unknown`) is sent to it, as a
    /// bounded excerpt with secrets masked, and its answer (category, key, template, fix) is
    /// cached by signature and listed in `matches` as `source: llm`. Off (unset) by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_model: Option<String>,
    /// How long one LLM analysis may take before the analysis answers without it.
    pub llm_timeout_secs: u64,
    /// A PostgreSQL URL (`postgres://user:password@host:5432/db`): occurrences, fixes and
    /// outcomes go to that database, shared by every replica pointed at it, instead of the
    /// embedded learning log. Unset (the default) keeps the embedded log. Treated as a secret:
    /// never printed; prefer `HELIX_HEALER__DATABASE_URL` to a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Default for HealerConfig {
    fn default() -> Self {
        HealerConfig {
            patterns_dir: None,
            share_hints: false,
            retention_days: 90,
            max_signatures: 100_000,
            llm_model: None,
            llm_timeout_secs: 30,
            database_url: None,
        }
    }
}

impl Default for HelixConfig {
    fn default() -> Self {
        HelixConfig {
            host: "127.0.0.1".to_owned(),
            orchestrator_port: ServiceKind::Orchestrator.default_port(),
            trace_collector_port: ServiceKind::TraceCollector.default_port(),
            breaker_gateway_port: ServiceKind::BreakerGateway.default_port(),
            healer_port: ServiceKind::Healer.default_port(),
            data_dir: PathBuf::from(".helix"),
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            max_body_bytes: 8 * 1024 * 1024,
            shutdown_grace_secs: 30,
            workers: 0,
            healer: HealerConfig::default(),
            trace_collector: TraceCollectorConfig::default(),
            breaker_gateway: crate::gateway_config::BreakerGatewayConfig::default(),
            orchestrator: OrchestratorConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            peers: PeersConfig::default(),
        }
    }
}

impl HelixConfig {
    /// The configured port of a service.
    pub fn port(&self, kind: ServiceKind) -> u16 {
        match kind {
            ServiceKind::Orchestrator => self.orchestrator_port,
            ServiceKind::TraceCollector => self.trace_collector_port,
            ServiceKind::BreakerGateway => self.breaker_gateway_port,
            ServiceKind::Healer => self.healer_port,
        }
    }

    /// The base URL a service of this configuration is reached at from its peers: the bind
    /// host (a wildcard address reached over loopback) and the service's port.
    pub fn peer_url(&self, kind: ServiceKind) -> String {
        let configured = match kind {
            ServiceKind::Healer => &self.peers.healer_url,
            ServiceKind::TraceCollector => &self.peers.trace_collector_url,
            ServiceKind::BreakerGateway => &self.peers.breaker_gateway_url,
            ServiceKind::Orchestrator => &self.peers.orchestrator_url,
        };
        if let Some(url) = configured.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            return url.trim_end_matches('/').to_owned();
        }
        let host = match self.host.as_str() {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
            h => h,
        };
        format!("http://{host}:{}", self.port(kind))
    }

    /// Where a service keeps its files.
    pub fn service_data_dir(&self, kind: ServiceKind) -> PathBuf {
        self.data_dir.join(kind.name())
    }

    /// The config key of a service's port, as used in the file and in error messages.
    pub fn port_key(kind: ServiceKind) -> &'static str {
        match kind {
            ServiceKind::Orchestrator => "orchestrator_port",
            ServiceKind::TraceCollector => "trace_collector_port",
            ServiceKind::BreakerGateway => "breaker_gateway_port",
            ServiceKind::Healer => "healer_port",
        }
    }

    /// Checks values that are well-typed but still wrong.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| Err(ConfigError::Invalid { key: key.to_owned(), message });
        if self.host.trim().is_empty() {
            return invalid("host", "must not be empty".to_owned());
        }
        for (i, a) in ServiceKind::ALL.iter().enumerate() {
            for b in &ServiceKind::ALL[i + 1..] {
                let (pa, pb) = (self.port(*a), self.port(*b));
                if pa != 0 && pa == pb {
                    return invalid(
                        HelixConfig::port_key(*b),
                        format!("port {pb} is already used by {}", HelixConfig::port_key(*a)),
                    );
                }
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".to_owned());
        }
        if self.max_body_bytes < 1024 {
            return invalid(
                "max_body_bytes",
                format!("{} is below the minimum of 1024", self.max_body_bytes),
            );
        }
        if self.trace_collector.otlp_max_body_bytes < 1024 {
            return invalid(
                "trace_collector.otlp_max_body_bytes",
                format!("{} is below the minimum of 1024", self.trace_collector.otlp_max_body_bytes),
            );
        }
        if self.shutdown_grace_secs > 3600 {
            return invalid(
                "shutdown_grace_secs",
                format!("{} is above the maximum of 3600", self.shutdown_grace_secs),
            );
        }
        if self.workers > 1024 {
            return invalid("workers", format!("{} is above the maximum of 1024", self.workers));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid("log_level", format!("{:?} is not a valid filter: {e}", self.log_level));
        }
        if let Err((key, message)) = self.breaker_gateway.validate() {
            return Err(ConfigError::Invalid { key, message });
        }
        if let Err((key, message)) = self.auth.validate() {
            return Err(ConfigError::Invalid { key, message });
        }
        if self.orchestrator.max_runs == 0 {
            return invalid("orchestrator.max_runs", "must be at least 1".to_owned());
        }
        if self.orchestrator.phase_timeout_secs == 0 {
            return invalid("orchestrator.phase_timeout_secs", "must be at least 1".to_owned());
        }
        Ok(())
    }

    /// The configuration as `helix config` prints it: passwords in URLs masked.
    pub fn redacted(&self) -> HelixConfig {
        let mut c = self.clone();
        let mask = |v: &mut Option<String>| {
            if let Some(u) = v.as_mut() {
                *u = crate::redact::url_password(u);
            }
        };
        mask(&mut c.breaker_gateway.redis_url);
        mask(&mut c.healer.database_url);
        mask(&mut c.trace_collector.export_otlp_endpoint);
        mask(&mut c.orchestrator.escalation_webhook);
        c.breaker_gateway.collector_url = crate::redact::url_password(&c.breaker_gateway.collector_url);
        for d in &mut c.breaker_gateway.deployments {
            d.base_url = crate::redact::url_password(&d.base_url);
        }
        c
    }

    /// Whether tokens are configured, so the services require them.
    pub fn tokens_configured(&self) -> bool {
        !self.auth.tokens.is_empty() || self.auth.local_token
    }
}

/// A configuration file's name (for messages) and text.
#[derive(Debug, Clone, Copy)]
pub struct ConfigFile<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

/// A value given on the command line: the config key, the flag as the user typed it (for
/// messages) and the raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    pub key: String,
    pub flag: String,
    pub value: String,
}

impl FlagValue {
    pub fn new(key: &str, flag: &str, value: impl ToString) -> FlagValue {
        FlagValue { key: key.to_owned(), flag: flag.to_owned(), value: value.to_string() }
    }
}

/// The loaded configuration and what was noticed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub config: HelixConfig,
    /// Things worth a warning at start-up (unknown `HELIX_*` variables).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML, has an unknown key or a value of the wrong type. The message
    /// of the TOML parser names line, column and key.
    #[error("invalid config file {path}: {message}")]
    File { path: String, message: String },
    #[error("invalid environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid flag {flag}: {message}")]
    Flag { flag: String, message: String },
    #[error("invalid config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Loads the configuration: defaults, then the file, then `HELIX_*` variables of `env`, then
/// flags. Pure: the caller reads the file and the process environment.
///
/// Environment variable names map to keys by dropping the prefix and lowercasing:
/// `HELIX_HEALER_PORT` sets `healer_port`; a double underscore descends into a table
/// (`HELIX_GATEWAY__REDIS_URL` sets `gateway.redis_url`).
pub fn load(
    file: Option<ConfigFile<'_>>,
    env: &BTreeMap<String, String>,
    flags: &[FlagValue],
) -> Result<LoadedConfig, ConfigError> {
    let mut config = match file {
        Some(f) => toml::from_str::<HelixConfig>(f.text).map_err(|e| ConfigError::File {
            path: f.path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?,
        None => HelixConfig::default(),
    };
    let mut warnings = Vec::new();

    for (var, value) in env {
        let Some(rest) = var.strip_prefix("HELIX_") else { continue };
        if NON_CONFIG_ENV.contains(&var.as_str()) || rest.is_empty() {
            continue;
        }
        let key = rest.to_lowercase().replace("__", ".");
        match set_key(&config, &key, value) {
            Ok(next) => config = next,
            Err(SetError::UnknownKey) => {
                warnings.push(format!("ignoring environment variable {var}: no config key `{key}`"))
            }
            Err(SetError::Value(message)) => {
                return Err(ConfigError::Env { var: var.clone(), message });
            }
        }
    }

    for flag in flags {
        config = set_key(&config, &flag.key, &flag.value).map_err(|e| ConfigError::Flag {
            flag: flag.flag.clone(),
            message: match e {
                SetError::UnknownKey => format!("no config key `{}`", flag.key),
                SetError::Value(m) => m,
            },
        })?;
    }

    config.validate()?;
    Ok(LoadedConfig { config, warnings })
}

enum SetError {
    UnknownKey,
    Value(String),
}

/// Returns `config` with the dotted `key` set from the raw string `raw`. The raw string is read
/// as the type the key has now (integer, boolean, float or string), so `HELIX_HOST=1234` stays
/// a string while `HELIX_HEALER_PORT=abc` is rejected.
fn set_key(config: &HelixConfig, key: &str, raw: &str) -> Result<HelixConfig, SetError> {
    let mut root = toml::Value::try_from(config)
        .map_err(|e| SetError::Value(format!("cannot represent the configuration: {e}")))?;
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().ok_or(SetError::UnknownKey)?;
    let mut table = match &mut root {
        toml::Value::Table(t) => t,
        _ => return Err(SetError::UnknownKey),
    };
    for part in parents {
        let entry = table.entry((*part).to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(SetError::UnknownKey),
        };
    }
    let value = match table.get(*last) {
        Some(toml::Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| SetError::Value(format!("expected an integer, got {raw:?}")))?,
        Some(toml::Value::Boolean(_)) => match raw.trim().to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(SetError::Value(format!("expected true or false, got {raw:?}"))),
        },
        Some(toml::Value::Float(_)) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| SetError::Value(format!("expected a number, got {raw:?}")))?,
        Some(toml::Value::Array(items)) if items.iter().all(toml::Value::is_str) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        Some(toml::Value::Table(_)) | Some(toml::Value::Array(_)) => {
            return Err(SetError::Value(format!(
                "`{key}` is a table or list and cannot be set from a single value"
            )));
        }
        _ => toml::Value::String(raw.to_owned()),
    };
    table.insert((*last).to_owned(), value);
    root.try_into::<HelixConfig>().map_err(|e| {
        let message = e.message().to_owned();
        if message.starts_with("unknown field") { SetError::UnknownKey } else { SetError::Value(message) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn file(text: &str) -> Option<ConfigFile<'_>> {
        Some(ConfigFile { path: "helix.toml", text })
    }

    #[test]
    fn no_config_at_all_gives_embedded_defaults() {
        let loaded = load(None, &BTreeMap::new(), &[]).expect("defaults load");
        assert_eq!(loaded.config, HelixConfig::default());
        assert_eq!(loaded.config.orchestrator_port, 7700);
        assert_eq!(loaded.config.trace_collector_port, 7701);
        assert_eq!(loaded.config.breaker_gateway_port, 7702);
        assert_eq!(loaded.config.healer_port, 7703);
        assert_eq!(loaded.config.data_dir, PathBuf::from(".helix"));
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn file_values_are_read() {
        let text = "host = \"0.0.0.0\"\nhealer_port = 9000\nlog_format = \"json\"\n";
        let c = load(file(text), &BTreeMap::new(), &[]).expect("load").config;
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.healer_port, 9000);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.orchestrator_port, 7700);
    }

    #[test]
    fn unknown_key_in_file_is_named_with_its_line() {
        let text = "host = \"127.0.0.1\"\nhelaer_port = 9000\n";
        let err = load(file(text), &BTreeMap::new(), &[]).expect_err("must fail").to_string();
        assert!(err.contains("helaer_port"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("helix.toml"), "{err}");
    }

    #[test]
    fn bad_value_in_file_is_named() {
        let err =
            load(file("healer_port = 70000\n"), &BTreeMap::new(), &[]).expect_err("must fail").to_string();
        assert!(err.contains("healer_port") || err.contains("line 1"), "{err}");
        let err =
            load(file("log_format = \"xml\"\n"), &BTreeMap::new(), &[]).expect_err("must fail").to_string();
        assert!(err.contains("xml") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let text = "healer_port = 1001\ntrace_collector_port = 1002\nbreaker_gateway_port = 1003\n";
        let e = env(&[("HELIX_TRACE_COLLECTOR_PORT", "2002"), ("HELIX_BREAKER_GATEWAY_PORT", "2003")]);
        let flags = [FlagValue::new("breaker_gateway_port", "--breaker-gateway-port", 3003)];
        let c = load(file(text), &e, &flags).expect("load").config;
        assert_eq!(c.healer_port, 1001);
        assert_eq!(c.trace_collector_port, 2002);
        assert_eq!(c.breaker_gateway_port, 3003);
    }

    #[test]
    fn env_values_keep_the_key_type() {
        let e = env(&[("HELIX_HOST", "1234"), ("HELIX_DATA_DIR", "/var/lib/helix")]);
        let c = load(None, &e, &[]).expect("load").config;
        assert_eq!(c.host, "1234");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/helix"));
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let err = load(None, &env(&[("HELIX_HEALER_PORT", "abc")]), &[]).expect_err("must fail");
        assert!(matches!(&err, ConfigError::Env { var, .. } if var == "HELIX_HEALER_PORT"), "{err}");
        let err = load(None, &env(&[("HELIX_HEALER_PORT", "99999")]), &[]).expect_err("must fail");
        assert!(err.to_string().contains("HELIX_HEALER_PORT"), "{err}");
        let err = load(None, &env(&[("HELIX_LOG_FORMAT", "xml")]), &[]).expect_err("must fail");
        assert!(err.to_string().contains("HELIX_LOG_FORMAT"), "{err}");
    }

    #[test]
    fn unknown_env_variables_warn_but_do_not_stop() {
        let e =
            env(&[("HELIX_RUNTIME", "/usr/lib/helix/runtime"), ("HELIX_CONFIG", "x.toml"), ("PATH", "/bin")]);
        let loaded = load(None, &e, &[]).expect("load");
        assert_eq!(loaded.config, HelixConfig::default());
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("HELIX_RUNTIME"));
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = load(file("healer_port = 7700\n"), &BTreeMap::new(), &[]).expect_err("clash");
        assert!(
            err.to_string().contains("healer_port") && err.to_string().contains("orchestrator_port"),
            "{err}"
        );
        let err = load(file("max_body_bytes = 10\n"), &BTreeMap::new(), &[]).expect_err("small");
        assert!(err.to_string().contains("max_body_bytes"), "{err}");
        let err = load(file("log_level = \"info,[=\"\n"), &BTreeMap::new(), &[]).expect_err("filter");
        assert!(err.to_string().contains("log_level"), "{err}");
        // port 0 (any free port) may repeat: tests bind every service on port 0
        let zeros =
            "orchestrator_port = 0\ntrace_collector_port = 0\nbreaker_gateway_port = 0\nhealer_port = 0\n";
        assert!(load(file(zeros), &BTreeMap::new(), &[]).is_ok());
    }

    #[test]
    fn nested_sections_from_file_and_env() {
        let c = load(file("[healer]\npatterns_dir = \"/etc/helix/patterns\"\n"), &BTreeMap::new(), &[])
            .expect("load")
            .config;
        assert_eq!(c.healer.patterns_dir, Some(PathBuf::from("/etc/helix/patterns")));
        let c = load(None, &env(&[("HELIX_HEALER__PATTERNS_DIR", "/p")]), &[]).expect("load").config;
        assert_eq!(c.healer.patterns_dir, Some(PathBuf::from("/p")));
        let err = load(file("[healer]\npatterns = 1\n"), &BTreeMap::new(), &[]).expect_err("unknown");
        assert!(err.to_string().contains("patterns") && err.to_string().contains("line 2"), "{err}");
        let loaded = load(None, &env(&[("HELIX_HEALER__NOPE", "1")]), &[]).expect("warning only");
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn bad_flag_is_named() {
        let flags = [FlagValue::new("workers", "--workers", "many")];
        let err = load(None, &BTreeMap::new(), &flags).expect_err("must fail");
        assert!(err.to_string().contains("--workers"), "{err}");
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&HelixConfig::default()).expect("serialize");
        let c = load(file(&text), &BTreeMap::new(), &[]).expect("load").config;
        assert_eq!(c, HelixConfig::default());
    }
}
