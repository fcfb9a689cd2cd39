//! The gateway's model status (`GET /v1/models/{id}`, its `helix` extension): whether a model's
//! chain can take a call now, for the orchestrator's simplified mode.

use super::{ClientError, ServiceClient, encode_query};

impl ServiceClient {
    /// Whether model `model`'s chain has a deployment whose breaker admits calls (`None`: the
    /// gateway did not say).
    pub async fn model_available(
        &self,
        model: &str,
        api_key: Option<&str>,
    ) -> Result<Option<bool>, ClientError> {
        let url = format!("{}/v1/models/{}", self.base, encode_query(model));
        let res = self
            .request_as(reqwest::Method::GET, &url, api_key)
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: url.clone(), message: e.to_string() })?;
        let v: serde_json::Value = Self::json_answer(url, res).await?;
        Ok(v.pointer("/helix/available").and_then(serde_json::Value::as_bool))
    }
}
