//! The catalogue of Helix services: names, default ports and data sub-directories.

use serde::{Deserialize, Serialize};

/// One of the four Helix services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    Orchestrator,
    TraceCollector,
    BreakerGateway,
    Healer,
}

impl ServiceKind {
    /// All services, in the order `helix up` starts them (dependencies of the orchestrator first).
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::Healer,
        ServiceKind::TraceCollector,
        ServiceKind::BreakerGateway,
        ServiceKind::Orchestrator,
    ];

    /// The kebab-case name used on the command line, in logs, file names and `/health`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Orchestrator => "orchestrator",
            ServiceKind::TraceCollector => "trace-collector",
            ServiceKind::BreakerGateway => "breaker-gateway",
            ServiceKind::Healer => "healer",
        }
    }

    /// The port the service listens on when the configuration says nothing.
    pub fn default_port(self) -> u16 {
        match self {
            ServiceKind::Orchestrator => 7700,
            ServiceKind::TraceCollector => 7701,
            ServiceKind::BreakerGateway => 7702,
            ServiceKind::Healer => 7703,
        }
    }

    /// Parses the kebab-case name (underscores are accepted too).
    pub fn from_name(name: &str) -> Option<ServiceKind> {
        let name = name.replace('_', "-");
        ServiceKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ports_are_distinct() {
        let mut ports = Vec::new();
        for kind in ServiceKind::ALL {
            assert_eq!(ServiceKind::from_name(kind.name()), Some(kind));
            ports.push(kind.default_port());
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 4);
        assert_eq!(ServiceKind::from_name("trace_collector"), Some(ServiceKind::TraceCollector));
        assert_eq!(ServiceKind::from_name("nope"), None);
    }
}
