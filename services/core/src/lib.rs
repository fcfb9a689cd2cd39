//! `helix-core`: what every Helix service and the `helix` command line share.
//!
//! This crate holds types and pure functions only: configuration loading (a pure function of
//! file text, environment and flags), the closed table of error codes, the problem+json body,
//! health/readiness types, the service catalogue and telemetry setup. It never imports a
//! service crate; services talk to each other over HTTP, never through each other's crates.

pub mod auth;
pub mod client;
pub mod config;
pub mod emit;
pub mod env;
pub mod error;
pub mod gateway_config;
pub mod health;
pub mod ids;
pub mod json;
pub mod redact;
pub mod service;
pub mod span;
pub mod telemetry;
pub mod time;
pub mod trace;

pub use config::{
    ConfigError, HealerConfig, HelixConfig, LoadedConfig, LogFormat, OrchestratorConfig, PeersConfig,
    TraceCollectorConfig,
};
pub use error::{ErrorCode, Problem};
pub use gateway_config::{BreakerGatewayConfig, DeploymentConfig, ProviderKind};
pub use health::{Check, CheckStatus, Health, Readiness, ReadyStatus};
pub use service::ServiceKind;

/// Version of the Helix workspace, reported by `/health` and the OpenAPI documents.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
