//! Minting keys for agents: `POST /v1/keys` and its companions, without HTTP types.
//!
//! A caller that may call LLMs gets a key narrower than itself: the LLM scope only, one project
//! it may bill to, an optional cost cap and an expiry (see `helix_core::auth::minted`). The
//! orchestrator mints one per agent attempt, so the agent CLI never holds the orchestrator's own
//! token, and its budget is enforced here rather than trusted to the agent. A minted key cannot
//! mint further keys. Only the principal that minted a key (or an admin) may read or revoke it;
//! to anyone else it does not exist.

use helix_core::auth::{Authenticator, Principal, Scope, minted};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::GatewayState;
use crate::accounting::KeyUsage;
use crate::error::GatewayError;

/// Longest life of a minted key.
pub const MAX_TTL_SECONDS: u64 = 86_400;
/// A key's life when the request names none.
pub const DEFAULT_TTL_SECONDS: u64 = 3_600;
/// Largest cap a key may be given, in USD (a bound against typos, not a policy).
pub const MAX_CAP_USD: f64 = 1_000_000.0;

/// What a key is minted for.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The project its calls bill to: one the caller may bill to (the caller's own when unset).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f](?:[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f])?$"
    )]
    pub project: Option<String>,
    /// USD the key may spend; calls after it is spent get 429 `budget_exceeded`. Unset: no cap
    /// beyond the project's daily budget.
    #[schema(exclusive_minimum = 0.0, maximum = 1000000.0)]
    pub max_cost_usd: Option<f64>,
    /// Seconds until it expires (1 to 86,400; default 3,600).
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(default, deserialize_with = "helix_core::json::lenient_int_opt")]
    pub ttl_seconds: Option<u64>,
}

/// A minted key. `key` is shown once, here: the gateway keeps only its digest.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MintedKey {
    pub id: String,
    pub key: String,
    pub project: String,
    pub max_cost_usd: Option<f64>,
    pub expires_at_unix_ms: i64,
}

fn may_see(caller: &Principal, usage: &KeyUsage) -> bool {
    caller.allows(Scope::Admin) || *caller.id == usage.minted_by
}

impl GatewayState {
    /// Mints a key for `caller` as `req` asks.
    pub fn mint_key(
        &self,
        auth: &Authenticator,
        caller: &Principal,
        req: &MintRequest,
    ) -> Result<MintedKey, GatewayError> {
        if caller.minted.is_some() {
            return Err(GatewayError::Forbidden("a minted key cannot mint keys".to_owned()));
        }
        let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        if ttl == 0 || ttl > MAX_TTL_SECONDS {
            return Err(GatewayError::InvalidRequest(format!(
                "ttl_seconds must be between 1 and {MAX_TTL_SECONDS}, got {ttl}"
            )));
        }
        if let Some(c) = req.max_cost_usd
            && !(c.is_finite() && c > 0.0 && c <= MAX_CAP_USD)
        {
            return Err(GatewayError::InvalidRequest(format!(
                "max_cost_usd must be a number above 0 and at most {MAX_CAP_USD}, got {c}"
            )));
        }
        if let Some(p) = &req.project
            && p.chars().count() > 128
        {
            return Err(GatewayError::InvalidRequest("project must be at most 128 characters".to_owned()));
        }
        let project = self.project_for(caller, req.project.as_deref())?;
        let now = helix_core::time::now_ms();
        let expires = now.saturating_add(i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX));
        let id = format!("key_{}", uuid::Uuid::new_v4().simple());
        let key = auth
            .mint(minted::narrowed(caller, &id, &project.name), expires, now)
            .map_err(|e| GatewayError::TooManyKeys(e.to_string()))?;
        self.caps.insert(
            KeyUsage {
                id: id.clone(),
                project: project.name.to_string(),
                max_cost_usd: req.max_cost_usd,
                spent_usd: 0.0,
                calls: 0,
                refused: 0,
                created_at_unix_ms: now,
                expires_at_unix_ms: expires,
                minted_by: caller.id.to_string(),
            },
            now,
        );
        Ok(MintedKey {
            id,
            key: key.expose().to_owned(),
            project: project.name.to_string(),
            max_cost_usd: req.max_cost_usd,
            expires_at_unix_ms: expires,
        })
    }

    /// What key `id` has spent.
    pub fn key_usage(&self, caller: &Principal, id: &str) -> Result<KeyUsage, GatewayError> {
        self.caps
            .get(id)
            .filter(|u| may_see(caller, u))
            .ok_or_else(|| GatewayError::UnknownKey(id.to_owned()))
    }

    /// Revokes key `id`; answers what it had spent.
    pub fn revoke_key(
        &self,
        auth: &Authenticator,
        caller: &Principal,
        id: &str,
    ) -> Result<KeyUsage, GatewayError> {
        let usage = self.key_usage(caller, id)?;
        auth.revoke_minted(id);
        self.caps.remove(id);
        Ok(usage)
    }
}
