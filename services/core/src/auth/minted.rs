//! Keys minted while the services run: a caller that may call LLMs asks the gateway for a key
//! narrower than its own (one project, a cost cap, an expiry) to hand to a process it starts, an
//! agent CLI above all. The agent then holds a credential that can do nothing but call models for
//! that project until the cap is spent, instead of the orchestrator's own token.
//!
//! Only digests are kept (as for configured tokens); the value exists in the answer that minted
//! it and in the environment of the process it was made for. Minted keys live in this process's
//! memory: they do not survive a restart and are not shared between replicas (an agent's key is
//! as short-lived as its attempt). Expired keys are refused and dropped on the next mint.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{Principal, Secret, digest, generate_token};

/// Keys that may exist at once: minting more is refused until some expire or are revoked.
pub const MAX_MINTED: usize = 4096;

/// Why a key could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("{MAX_MINTED} minted keys exist; revoke some or wait for them to expire")]
    Full,
}

#[derive(Debug)]
struct Minted {
    principal: Principal,
    expires_at_ms: i64,
}

/// The minted keys, by digest.
#[derive(Debug, Default)]
pub struct MintedKeys {
    keys: RwLock<HashMap<[u8; 32], Minted>>,
}

impl MintedKeys {
    /// A new key for `principal`, valid until `expires_at_ms` (Unix ms).
    pub fn mint(&self, principal: Principal, expires_at_ms: i64, now_ms: i64) -> Result<Secret, MintError> {
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.retain(|_, m| m.expires_at_ms > now_ms);
        if keys.len() >= MAX_MINTED {
            return Err(MintError::Full);
        }
        let token = generate_token();
        keys.insert(digest(token.expose()), Minted { principal, expires_at_ms });
        Ok(token)
    }

    /// The principal of a key with this digest, if it exists and has not expired.
    pub fn find(&self, digest: &[u8; 32], now_ms: i64) -> Option<Principal> {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.get(digest).filter(|m| m.expires_at_ms > now_ms).map(|m| m.principal.clone())
    }

    /// Removes the key whose principal has the minted id `id`; whether one existed.
    pub fn revoke(&self, id: &str) -> bool {
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = keys.len();
        keys.retain(|_, m| m.principal.minted.as_deref() != Some(id));
        keys.len() != before
    }

    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The principal a minted key stands for: `parent`'s rights narrowed to the LLM scope and one
/// project, marked with the key's id (`minted`).
pub fn narrowed(parent: &Principal, id: &str, project: &str) -> Principal {
    Principal {
        id: Arc::from(format!("minted:{id}")),
        scopes: super::Scopes::of(&[super::Scope::Llm]),
        projects: Some(Arc::from(vec![project.to_owned()])),
        gateway_key: parent.gateway_key,
        minted: Some(Arc::from(id)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::auth::{Authenticator, Scope};

    #[test]
    fn a_minted_key_is_its_narrowed_principal_until_it_expires_or_is_revoked() {
        let a = Authenticator::open();
        let parent = Principal::anonymous();
        let now = 1_000_000;
        let key = a.mint(narrowed(&parent, "k1", "shop"), now + 60_000, now).unwrap();
        let p = a.identify_at(None, Some(key.expose()), now + 1).unwrap().unwrap();
        assert_eq!(p.minted.as_deref(), Some("k1"));
        assert!(p.allows(Scope::Llm) && !p.allows(Scope::RunsWrite) && !p.allows(Scope::Admin));
        assert_eq!(p.sole_project(), Some("shop"));
        // as a bearer token too
        let bearer = format!("Bearer {}", key.expose());
        assert!(a.identify_at(Some(&bearer), None, now + 1).unwrap().is_some());
        // expired: an invalid token
        assert!(a.identify_at(None, Some(key.expose()), now + 60_000).is_err());
        let other = a.mint(narrowed(&parent, "k2", "shop"), now + 60_000, now).unwrap();
        assert!(a.revoke_minted("k2"));
        assert!(!a.revoke_minted("k2"));
        assert!(a.identify_at(None, Some(other.expose()), now + 1).is_err());
    }

    #[test]
    fn minting_is_bounded_and_expired_keys_make_room() {
        let keys = MintedKeys::default();
        let p = Principal::anonymous();
        for i in 0..MAX_MINTED {
            keys.mint(narrowed(&p, &i.to_string(), "x"), 100, 0).unwrap();
        }
        assert_eq!(keys.mint(narrowed(&p, "over", "x"), 100, 0), Err(MintError::Full));
        assert!(keys.mint(narrowed(&p, "later", "x"), 200, 100).is_ok(), "the expired ones were dropped");
        assert_eq!(keys.len(), 1);
    }
}
