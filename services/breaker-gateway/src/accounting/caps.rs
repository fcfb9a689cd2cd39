//! Cost caps of minted keys (`POST /v1/keys`): what each may still spend.
//!
//! A minted key is a narrowed principal in the shared authenticator
//! (`helix_core::auth::minted`); its cap lives here, by the key's id, because only the gateway
//! knows what calls cost. The check comes before a call, the charge after it: a call that starts
//! under the cap finishes even if it ends above it (its cost is only known at its end), and the
//! next one is refused. That is how an agent's budget is enforced: the agent's loop makes many
//! calls, and the one after the cap is spent gets a 429 the agent reports and stops on.
//!
//! In memory, like the keys: a restart ends every minted key along with its cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use utoipa::ToSchema;

/// A minted key's cap and what it has used (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KeyUsage {
    pub id: String,
    /// The project its calls bill to.
    pub project: String,
    /// USD it may spend; `None`: no cap beyond the project's daily budget.
    pub max_cost_usd: Option<f64>,
    pub spent_usd: f64,
    /// Calls admitted with it.
    pub calls: u64,
    /// Calls refused because the cap was spent.
    pub refused: u64,
    pub created_at_unix_ms: i64,
    pub expires_at_unix_ms: i64,
    /// The principal that minted it (a token id, or `anonymous`).
    pub minted_by: String,
}

/// The cap of a key is spent: no further call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("budget_exceeded: key {id} has spent ${spent_usd:.4} of its ${max_usd:.4} budget")]
pub struct CapSpent {
    pub id: String,
    pub spent_usd: f64,
    pub max_usd: f64,
}

#[derive(Debug, Default)]
pub struct KeyCaps {
    caps: Mutex<HashMap<Arc<str>, KeyUsage>>,
}

impl KeyCaps {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, KeyUsage>> {
        self.caps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a new key's cap; drops those of expired keys.
    pub fn insert(&self, usage: KeyUsage, now_ms: i64) {
        let mut caps = self.lock();
        caps.retain(|_, u| u.expires_at_unix_ms > now_ms);
        caps.insert(Arc::from(usage.id.as_str()), usage);
    }

    /// Admits one call of key `id`: refused once what it spent reached its cap.
    pub fn admit(&self, id: &str) -> Result<(), CapSpent> {
        let mut caps = self.lock();
        let Some(u) = caps.get_mut(id) else { return Ok(()) };
        if let Some(max) = u.max_cost_usd
            && u.spent_usd >= max
        {
            u.refused += 1;
            return Err(CapSpent { id: id.to_owned(), spent_usd: u.spent_usd, max_usd: max });
        }
        u.calls += 1;
        Ok(())
    }

    /// Adds a finished call's cost to key `id`.
    pub fn charge(&self, id: &str, usd: f64) {
        if let Some(u) = self.lock().get_mut(id)
            && usd.is_finite()
            && usd > 0.0
        {
            u.spent_usd += usd;
        }
    }

    pub fn get(&self, id: &str) -> Option<KeyUsage> {
        self.lock().get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<KeyUsage> {
        self.lock().remove(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(id: &str, max: Option<f64>, expires: i64) -> KeyUsage {
        KeyUsage {
            id: id.to_owned(),
            project: "p".to_owned(),
            max_cost_usd: max,
            spent_usd: 0.0,
            calls: 0,
            refused: 0,
            created_at_unix_ms: 0,
            expires_at_unix_ms: expires,
            minted_by: "anonymous".to_owned(),
        }
    }

    #[test]
    fn a_call_is_admitted_until_the_cap_is_spent_and_the_one_after_is_refused() {
        let caps = KeyCaps::default();
        caps.insert(usage("k", Some(0.10), 1_000), 0);
        assert!(caps.admit("k").is_ok());
        caps.charge("k", 0.06);
        assert!(caps.admit("k").is_ok(), "under the cap");
        caps.charge("k", 0.06);
        let e = caps.admit("k").expect_err("spent");
        assert!((e.spent_usd - 0.12).abs() < 1e-9 && (e.max_usd - 0.10).abs() < 1e-9, "{e:?}");
        let u = caps.get("k").expect("kept");
        assert_eq!((u.calls, u.refused), (2, 1));
        // a key without a cap, or one the gateway does not know, is never refused here
        caps.insert(usage("free", None, 1_000), 0);
        caps.charge("free", 100.0);
        assert!(caps.admit("free").is_ok() && caps.admit("unknown").is_ok());
        // NaN and negative costs change nothing
        caps.charge("k", f64::NAN);
        caps.charge("k", -1.0);
        assert!((caps.get("k").expect("k").spent_usd - 0.12).abs() < 1e-9);
        // expired caps go when the next key is minted
        caps.insert(usage("later", None, 5_000), 2_000);
        assert!(caps.get("k").is_none() && caps.get("later").is_some());
        assert!(caps.remove("later").is_some() && caps.get("later").is_none());
    }
}
