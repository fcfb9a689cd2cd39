//! Gateway keys: which project a call bills to, and its limits.
//!
//! Who a caller is is decided once, for every service, by the shared access layer
//! (`helix_http::access`): gateway keys are tokens there with the scope `llm` and the project
//! they bill to, compared by SHA-256 digest in constant time, their values read from the
//! environment variables the configuration names and never kept. What the gateway adds is what a
//! key means for billing: this table maps the caller to its [`Project`] (budget, bulkhead). With no
//! keys configured, calls bill to project `default` without a budget.

use std::fmt;
use std::sync::Arc;

use helix_core::auth::Principal;
use helix_core::gateway_config::GatewayKeyConfig;

/// The project used for a call whose caller names none.
pub const DEFAULT_PROJECT: &str = "default";

/// Who a call bills to, and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub name: Arc<str>,
    /// USD per UTC day; `None` is unlimited.
    pub daily_budget_usd: Option<f64>,
    /// Calls in flight at once; `None` means the gateway's `max_in_flight_per_key`.
    pub max_in_flight: Option<u32>,
}

impl Project {
    fn unlimited(name: &str) -> Project {
        Project { name: Arc::from(name), daily_budget_usd: None, max_in_flight: None }
    }
}

/// The configured keys' projects, by their position in `[[breaker_gateway.keys]]`.
pub struct KeyRing {
    projects: Vec<Project>,
    open: Project,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let projects: Vec<&str> = self.projects.iter().map(|p| &*p.name).collect();
        f.debug_struct("KeyRing").field("projects", &projects).finish()
    }
}

impl KeyRing {
    pub fn from_config(keys: &[GatewayKeyConfig]) -> KeyRing {
        KeyRing {
            projects: keys
                .iter()
                .map(|k| Project {
                    name: Arc::from(k.project.as_str()),
                    daily_budget_usd: k.daily_budget_usd,
                    max_in_flight: k.max_in_flight,
                })
                .collect(),
            open: Project::unlimited(DEFAULT_PROJECT),
        }
    }

    /// The project a caller's calls bill to: a gateway key's own, else the one project a token
    /// is limited to, else `default`. Without a budget unless a gateway key sets one.
    pub fn project_of(&self, caller: &Principal) -> Project {
        if let Some(p) = caller.gateway_key.and_then(|i| self.projects.get(i)) {
            return p.clone();
        }
        match caller.sole_project() {
            Some(name) => Project::unlimited(name),
            None => self.open.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use helix_core::auth::{Scope, Scopes};

    use super::*;

    fn key(env: &str, project: &str, budget: Option<f64>, max: Option<u32>) -> GatewayKeyConfig {
        GatewayKeyConfig {
            key_env: env.to_owned(),
            project: project.to_owned(),
            daily_budget_usd: budget,
            max_in_flight: max,
        }
    }

    #[test]
    fn callers_bill_to_their_keys_project_their_tokens_project_or_default() {
        let ring =
            KeyRing::from_config(&[key("A", "alpha", Some(5.0), Some(3)), key("B", "beta", None, None)]);
        let caller = |gateway_key, projects: Option<&[&str]>| Principal {
            id: Arc::from("x"),
            scopes: Scopes::of(&[Scope::Llm]),
            projects: projects.map(|ps| Arc::from(ps.iter().map(|p| p.to_string()).collect::<Vec<_>>())),
            gateway_key,
        };
        let alpha = ring.project_of(&caller(Some(0), Some(&["alpha"])));
        assert_eq!(
            (&*alpha.name, alpha.daily_budget_usd, alpha.max_in_flight),
            ("alpha", Some(5.0), Some(3))
        );
        assert_eq!(&*ring.project_of(&caller(Some(1), Some(&["beta"]))).name, "beta");
        let token = ring.project_of(&caller(None, Some(&["shop"])));
        assert_eq!((&*token.name, token.daily_budget_usd), ("shop", None));
        assert_eq!(&*ring.project_of(&caller(None, Some(&["a", "b"]))).name, DEFAULT_PROJECT);
        assert_eq!(ring.project_of(&Principal::anonymous()), Project::unlimited(DEFAULT_PROJECT));
        assert!(format!("{ring:?}").contains("alpha"));
    }
}
