//! Gateway keys and projects: which project a call bills to, and its limits.
//!
//! Who a caller is is decided once, for every service, by the shared access layer
//! (`helix_http::access`): gateway keys are tokens there with the scope `llm` and the project
//! they bill to, compared by SHA-256 digest in constant time, their values read from the
//! environment variables the configuration names and never kept. What the gateway adds is what a
//! key means for billing: this table maps the caller, and the project its request names in
//! [`PROJECT_HEADER`], to its [`Project`] (budget, bulkhead). With no keys configured, calls
//! that name no project bill to project `default` without a budget.
//!
//! A project's limits are those of the first gateway key billing to it, whoever calls for it: a
//! call an admin token makes for project `shop` (the orchestrator's, for a run of `shop`) spends
//! `shop`'s budget as a call with `shop`'s key does.

use std::fmt;
use std::sync::Arc;

use helix_core::auth::Principal;
use helix_core::gateway_config::GatewayKeyConfig;

/// The project used for a call whose caller names none.
pub const DEFAULT_PROJECT: &str = "default";

/// The request header naming the project a call is made for: the orchestrator sends the run's
/// project with its LLM calls. A caller not limited to projects may name any; one limited to
/// projects only one of its own; a gateway key only its own project.
pub const PROJECT_HEADER: &str = "x-helix-project";

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

/// Why the project a request names cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectRefused {
    /// Not a project name (a 400).
    #[error("{0}")]
    Invalid(String),
    /// A project the caller may not bill to (a 403).
    #[error("{0}")]
    Forbidden(String),
}

/// Checks a project name a client sent: not blank, no surrounding white space, no control
/// characters, at most [`helix_core::trace::MAX_NAME`] bytes (what a span's project may be, so
/// the call's spans are stored under exactly that name). Config names projects without other
/// rules (`auth.tokens[].projects` only must not be empty), and neither does this.
pub fn check_project_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a project name must not be empty".to_owned());
    }
    if name.trim() != name {
        return Err(format!("project name {name:?} has white space around it"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("project name {name:?} contains control characters"));
    }
    let max = helix_core::trace::MAX_NAME;
    if name.len() > max {
        return Err(format!("a project name must be at most {max} bytes (this one has {})", name.len()));
    }
    Ok(())
}

/// The configured keys' projects, by their position in `[[breaker_gateway.keys]]`.
pub struct KeyRing {
    projects: Vec<Project>,
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
        }
    }

    /// Project `name` with the limits of the first gateway key billing to it; unlimited when no
    /// key does.
    pub fn project(&self, name: &str) -> Project {
        self.projects.iter().find(|p| &*p.name == name).cloned().unwrap_or_else(|| Project::unlimited(name))
    }

    /// The project a caller's calls bill to when they name none: a gateway key's own, else the
    /// one project a token is limited to, else `default`.
    pub fn project_of(&self, caller: &Principal) -> Project {
        if let Some(p) = caller.gateway_key.and_then(|i| self.projects.get(i)) {
            return p.clone();
        }
        self.project(caller.sole_project().unwrap_or(DEFAULT_PROJECT))
    }

    /// The project of a call whose request named `named` in [`PROJECT_HEADER`] (`None`: it
    /// named none, see [`KeyRing::project_of`]). A gateway key keeps its own project (the header
    /// may only repeat it); a token limited to projects may name one of its own; any other
    /// caller (admin, the internal token, anonymous on loopback) any valid name.
    pub fn project_for(&self, caller: &Principal, named: Option<&str>) -> Result<Project, ProjectRefused> {
        let Some(name) = named else {
            return Ok(self.project_of(caller));
        };
        check_project_name(name).map_err(|e| ProjectRefused::Invalid(format!("{PROJECT_HEADER}: {e}")))?;
        if let Some(own) = caller.gateway_key.and_then(|i| self.projects.get(i)) {
            if &*own.name != name {
                return Err(ProjectRefused::Forbidden(format!(
                    "gateway key {:?} bills to project {:?}: {PROJECT_HEADER} may only repeat it, not name {name:?}",
                    &*caller.id, &*own.name
                )));
            }
            return Ok(own.clone());
        }
        caller.check_project(name).map_err(ProjectRefused::Forbidden)?;
        Ok(self.project(name))
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
            minted: None,
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
        // a token limited to a project that has a key bills with that key's limits
        let limited = ring.project_of(&caller(None, Some(&["alpha"])));
        assert_eq!((limited.daily_budget_usd, limited.max_in_flight), (Some(5.0), Some(3)));
    }

    #[test]
    fn a_named_project_is_taken_when_the_caller_may_bill_to_it() {
        let ring =
            KeyRing::from_config(&[key("A", "alpha", Some(5.0), Some(3)), key("B", "beta", None, None)]);
        let caller = |gateway_key, projects: Option<&[&str]>| Principal {
            id: Arc::from("x"),
            scopes: Scopes::of(&[Scope::Llm]),
            projects: projects.map(|ps| Arc::from(ps.iter().map(|p| p.to_string()).collect::<Vec<_>>())),
            gateway_key,
            minted: None,
        };
        let admin = Principal { scopes: Scopes::of(&[Scope::Admin]), ..Principal::anonymous() };
        // unlimited callers name any project, with its key's limits when it has one
        let alpha = ring.project_for(&admin, Some("alpha")).expect("admin names any project");
        assert_eq!(
            (&*alpha.name, alpha.daily_budget_usd, alpha.max_in_flight),
            ("alpha", Some(5.0), Some(3))
        );
        let free = ring.project_for(&Principal::anonymous(), Some("web shop")).expect("anonymous too");
        assert_eq!(free, Project::unlimited("web shop"));
        assert_eq!(ring.project_for(&admin, None).expect("none named"), Project::unlimited(DEFAULT_PROJECT));

        // limited callers: one of their own projects only
        let two = caller(None, Some(&["alpha", "shop"]));
        assert_eq!(&*ring.project_for(&two, Some("shop")).expect("its own").name, "shop");
        let e = ring.project_for(&two, Some("beta")).expect_err("not its project");
        assert!(matches!(&e, ProjectRefused::Forbidden(m) if m.contains("\"beta\"")), "{e:?}");

        // a gateway key keeps its project: the header may repeat it, nothing else
        let key_a = caller(Some(0), Some(&["alpha"]));
        assert_eq!(ring.project_for(&key_a, Some("alpha")).expect("repeats it"), ring.project("alpha"));
        let e = ring.project_for(&key_a, Some("beta")).expect_err("another project");
        assert!(
            matches!(&e, ProjectRefused::Forbidden(m) if m.contains("bills to project \"alpha\"")),
            "{e:?}"
        );

        // invalid names are refused before anything else, whoever calls
        let long = "p".repeat(helix_core::trace::MAX_NAME + 1);
        for bad in ["", "  ", " alpha", "al\tpha", "line\nbreak", long.as_str()] {
            for who in [&admin, &key_a, &two] {
                let e = ring.project_for(who, Some(bad)).expect_err(bad);
                assert!(
                    matches!(&e, ProjectRefused::Invalid(m) if m.starts_with(PROJECT_HEADER)),
                    "{bad:?}: {e:?}"
                );
            }
        }
        let longest = "é".repeat(helix_core::trace::MAX_NAME / 2);
        assert_eq!(check_project_name(&longest), Ok(()));
        assert_eq!(check_project_name("team-a/webshop.v2"), Ok(()));
    }
}
