//! Gateway keys: which project a call bills to.
//!
//! Clients authenticate with the key their SDK already sends: OpenAI SDKs send
//! `Authorization: Bearer <key>`, Anthropic SDKs send `x-api-key: <key>`. Keys are read once, at
//! start-up, from the environment variables the configuration names, so the keys never enter the
//! configuration, its output or any error. Only their SHA-256 digests are kept, and a presented
//! key is compared by digest in constant time: the time an answer takes says nothing about how
//! much of a key was right. With no keys configured the gateway is open: every call is project
//! `default`, without a budget.

use std::fmt;
use std::sync::Arc;

use helix_core::gateway_config::GatewayKeyConfig;
use sha2::{Digest, Sha256};

/// The project used for every call when no keys are configured.
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

/// Why the gateway keys cannot be loaded. Names the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("environment variable {0} (a gateway key) is not set")]
    Missing(String),
    #[error("environment variable {0} (a gateway key) is empty")]
    Empty(String),
    #[error("environment variables {0} and {1} hold the same gateway key")]
    Duplicate(String, String),
    #[error("the gateway key in {0} has an empty project name")]
    EmptyProject(String),
}

/// Why a call is not authenticated. Never contains what was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing api key: send `authorization: bearer <key>` or `x-api-key: <key>`")]
    Missing,
    #[error("invalid api key")]
    Invalid,
}

struct Entry {
    digest: [u8; 32],
    project: Project,
}

/// The configured keys, by digest.
pub struct KeyRing {
    entries: Vec<Entry>,
    open: Project,
}

impl fmt::Debug for KeyRing {
    // digests are not keys, but nothing derived from a key belongs in logs either
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let projects: Vec<&str> = self.entries.iter().map(|e| &*e.project.name).collect();
        f.debug_struct("KeyRing").field("projects", &projects).finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equality whose time does not depend on where the inputs differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

impl KeyRing {
    /// Reads every key from the variable its `key_env` names, through `env` (in production
    /// `|name| std::env::var(name).ok()`).
    pub fn from_config(
        keys: &[GatewayKeyConfig],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<KeyRing, KeyError> {
        let mut entries: Vec<(Entry, &str)> = Vec::with_capacity(keys.len());
        for k in keys {
            let value = env(&k.key_env).ok_or_else(|| KeyError::Missing(k.key_env.clone()))?;
            let value = value.trim();
            if value.is_empty() {
                return Err(KeyError::Empty(k.key_env.clone()));
            }
            if k.project.trim().is_empty() {
                return Err(KeyError::EmptyProject(k.key_env.clone()));
            }
            let d = digest(value);
            // one key billing two projects would bill whichever comes first: refuse instead
            if let Some((_, other)) = entries.iter().find(|(e, _)| e.digest == d) {
                return Err(KeyError::Duplicate((*other).to_owned(), k.key_env.clone()));
            }
            let project = Project {
                name: Arc::from(k.project.as_str()),
                daily_budget_usd: k.daily_budget_usd,
                max_in_flight: k.max_in_flight,
            };
            entries.push((Entry { digest: d, project }, &k.key_env));
        }
        Ok(KeyRing {
            entries: entries.into_iter().map(|(e, _)| e).collect(),
            open: Project { name: Arc::from(DEFAULT_PROJECT), daily_budget_usd: None, max_in_flight: None },
        })
    }

    /// Whether no keys are configured (every call is project `default`).
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// The project of a call, from its `Authorization` and `x-api-key` header values. When both
    /// are sent, a match of either is enough (`x-api-key` is tried first): a client may sit
    /// behind a proxy that adds an `Authorization` of its own.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
    ) -> Result<Project, AuthError> {
        if self.is_open() {
            return Ok(self.open.clone());
        }
        let candidates = [x_api_key.map(str::trim).filter(|k| !k.is_empty()), authorization.and_then(bearer)];
        let mut presented = false;
        for key in candidates.into_iter().flatten() {
            presented = true;
            let d = digest(key);
            // every entry is compared, so the time does not tell which one matched
            let mut found = None;
            for e in &self.entries {
                if ct_eq(&e.digest, &d) && found.is_none() {
                    found = Some(&e.project);
                }
            }
            if let Some(p) = found {
                return Ok(p.clone());
            }
        }
        Err(if presented { AuthError::Invalid } else { AuthError::Missing })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ALPHA: &str = "sk-helix-alpha-3f9c2a";
    const BETA: &str = "sk-helix-beta-77e1d0";

    fn key(env: &str, project: &str, budget: Option<f64>, max: Option<u32>) -> GatewayKeyConfig {
        GatewayKeyConfig {
            key_env: env.to_owned(),
            project: project.to_owned(),
            daily_budget_usd: budget,
            max_in_flight: max,
        }
    }

    fn ring() -> KeyRing {
        let env: HashMap<&str, &str> = [("ALPHA_KEY", ALPHA), ("BETA_KEY", BETA)].into();
        KeyRing::from_config(
            &[key("ALPHA_KEY", "alpha", Some(5.0), Some(3)), key("BETA_KEY", "beta", None, None)],
            |name| env.get(name).map(|v| (*v).to_owned()),
        )
        .expect("keys load")
    }

    #[test]
    fn bearer_and_x_api_key_map_to_their_projects() {
        let ring = ring();
        let alpha = ring.authenticate(Some(&format!("Bearer {ALPHA}")), None).expect("bearer");
        assert_eq!(&*alpha.name, "alpha");
        assert_eq!(alpha.daily_budget_usd, Some(5.0));
        assert_eq!(alpha.max_in_flight, Some(3));
        let beta = ring.authenticate(None, Some(BETA)).expect("x-api-key");
        assert_eq!(&*beta.name, "beta");
        assert_eq!(beta.daily_budget_usd, None);
        // scheme case and surrounding whitespace do not matter
        assert_eq!(
            &*ring.authenticate(Some(&format!("  bearer   {BETA} ")), None).expect("lower").name,
            "beta"
        );
        // a foreign Authorization next to a valid x-api-key still authenticates
        assert_eq!(
            &*ring.authenticate(Some("Bearer proxy-token"), Some(ALPHA)).expect("either").name,
            "alpha"
        );
        assert!(!ring.is_open());
    }

    #[test]
    fn wrong_and_missing_keys_are_refused_without_echoing_them() {
        let ring = ring();
        let wrong = format!("{ALPHA}x");
        let e = ring.authenticate(Some(&format!("Bearer {wrong}")), None).expect_err("wrong key");
        assert_eq!(e, AuthError::Invalid);
        assert!(!e.to_string().contains(&wrong));
        assert_eq!(ring.authenticate(None, Some("nope")), Err(AuthError::Invalid));
        assert_eq!(ring.authenticate(None, None), Err(AuthError::Missing));
        assert_eq!(ring.authenticate(Some("Bearer "), Some("  ")), Err(AuthError::Missing));
        // a key under another scheme is not a bearer token
        assert_eq!(ring.authenticate(Some(&format!("Basic {ALPHA}")), None), Err(AuthError::Missing));
        assert_eq!(ring.authenticate(Some(ALPHA), None), Err(AuthError::Missing));
        for e in [AuthError::Missing, AuthError::Invalid] {
            let m = e.to_string();
            assert_eq!(m, m.to_lowercase(), "lowercase messages");
        }
    }

    #[test]
    fn without_keys_every_call_is_the_default_project() {
        let ring = KeyRing::from_config(&[], |_| None).expect("no keys");
        assert!(ring.is_open());
        for (auth, x) in [(None, None), (Some("Bearer anything"), None), (None, Some("whatever"))] {
            let p = ring.authenticate(auth, x).expect("open");
            assert_eq!(
                p,
                Project { name: Arc::from("default"), daily_budget_usd: None, max_in_flight: None }
            );
        }
    }

    #[test]
    fn load_errors_name_the_variable_and_never_a_value() {
        let e = KeyRing::from_config(&[key("HELIX_TEST_ABSENT_KEY", "p", None, None)], |_| None)
            .expect_err("missing");
        assert_eq!(e, KeyError::Missing("HELIX_TEST_ABSENT_KEY".to_owned()));
        assert!(e.to_string().contains("HELIX_TEST_ABSENT_KEY"), "{e}");

        let e = KeyRing::from_config(&[key("EMPTY_KEY", "p", None, None)], |_| Some("  ".to_owned()))
            .expect_err("empty");
        assert!(e.to_string().contains("EMPTY_KEY"), "{e}");

        let same = |_: &str| Some(ALPHA.to_owned());
        let e = KeyRing::from_config(&[key("A_KEY", "a", None, None), key("B_KEY", "b", None, None)], same)
            .expect_err("duplicate");
        let m = e.to_string();
        assert!(m.contains("A_KEY") && m.contains("B_KEY") && !m.contains(ALPHA), "{m}");

        let e = KeyRing::from_config(&[key("A_KEY", " ", None, None)], same).expect_err("no project");
        assert!(e.to_string().contains("A_KEY"));
        assert!(!format!("{:?}", ring()).contains(ALPHA));
    }

    #[test]
    fn digest_comparison_tells_equal_from_different() {
        let a = digest(ALPHA);
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!ct_eq(&a, &b));
    }
}
