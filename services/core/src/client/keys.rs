//! The gateway's minted keys (`POST /v1/keys`, `GET`/`DELETE /v1/keys/{id}`), for the
//! orchestrator: one key per agent attempt, with the phase's budget as its cap.

use serde::{Deserialize, Serialize};

use super::{ClientError, ServiceClient};
use crate::auth::Secret;

/// What a key is minted for (see the gateway's `MintRequest`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MintKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// A minted key: its id (to read or revoke it) and the key, held as a [`Secret`].
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub id: String,
    pub key: Secret,
    pub project: String,
}

/// What a minted key spent.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyUsage {
    pub id: String,
    pub project: String,
    pub max_cost_usd: Option<f64>,
    pub spent_usd: f64,
    pub calls: u64,
    pub refused: u64,
}

#[derive(Deserialize)]
struct Minted {
    id: String,
    key: String,
    project: String,
}

impl ServiceClient {
    /// `POST /v1/keys`, authenticated with `api_key` (the client's token when `None`).
    pub async fn mint_key(&self, req: &MintKey, api_key: Option<&str>) -> Result<MintedKey, ClientError> {
        let url = format!("{}/v1/keys", self.base);
        let res = self
            .request_as(reqwest::Method::POST, &url, api_key)
            .json(req)
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        let m: Minted = Self::json_answer(url, res).await?;
        Ok(MintedKey { id: m.id, key: Secret::new(m.key), project: m.project })
    }

    /// `DELETE /v1/keys/{id}`: the key is refused from now on; answers what it spent.
    pub async fn revoke_key(&self, id: &str, api_key: Option<&str>) -> Result<KeyUsage, ClientError> {
        let url = format!("{}/v1/keys/{}", self.base, super::encode_query(id));
        let res = self
            .request_as(reqwest::Method::DELETE, &url, api_key)
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        Self::json_answer(url, res).await
    }
}
