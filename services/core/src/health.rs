//! Liveness and readiness bodies shared by every service.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Answer of `GET /health`: the process is up and serving HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the service answers at all.
    #[schema(example = "ok")]
    pub status: String,
    /// Service name, e.g. `healer`.
    #[schema(example = "healer")]
    pub service: String,
    /// Helix version.
    #[schema(example = "0.1.0")]
    pub version: String,
}

/// Overall readiness of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Every subsystem is fine.
    Ready,
    /// The service serves requests, but something it can do without is missing (a peer service,
    /// an optional backend); see the checks.
    Degraded,
    /// The service cannot serve its API; `/ready` answers 503.
    NotReady,
}

/// Status of one subsystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    /// Not working, but the service can do without it.
    Degraded,
    /// Not working, and the service needs it.
    Down,
    /// Not configured.
    Disabled,
}

/// One subsystem and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// Subsystem name, e.g. `data_dir`.
    #[schema(example = "data_dir")]
    pub name: String,
    pub status: CheckStatus,
    /// What was checked, or what is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    pub fn new(name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) -> Check {
        Check { name: name.into(), status, detail: Some(detail.into()) }
    }
}

/// Answer of `GET /ready`: each subsystem and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: ReadyStatus,
    #[schema(example = "healer")]
    pub service: String,
    pub checks: Vec<Check>,
}

impl Readiness {
    /// Derives the overall status from the checks: any `down` makes the service not ready, any
    /// `degraded` makes it degraded; `disabled` subsystems do not count.
    pub fn from_checks(service: impl Into<String>, checks: Vec<Check>) -> Readiness {
        let status = if checks.iter().any(|c| c.status == CheckStatus::Down) {
            ReadyStatus::NotReady
        } else if checks.iter().any(|c| c.status == CheckStatus::Degraded) {
            ReadyStatus::Degraded
        } else {
            ReadyStatus::Ready
        };
        Readiness { status, service: service.into(), checks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_status_follows_worst_check() {
        let ok = Check::new("a", CheckStatus::Ok, "fine");
        let off = Check::new("b", CheckStatus::Disabled, "not configured");
        let deg = Check::new("c", CheckStatus::Degraded, "peer unreachable");
        let down = Check::new("d", CheckStatus::Down, "no disk");
        assert_eq!(Readiness::from_checks("s", vec![ok.clone(), off.clone()]).status, ReadyStatus::Ready);
        assert_eq!(Readiness::from_checks("s", vec![ok.clone(), deg.clone()]).status, ReadyStatus::Degraded);
        assert_eq!(Readiness::from_checks("s", vec![deg, down, ok]).status, ReadyStatus::NotReady);
    }
}
