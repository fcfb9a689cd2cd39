//! The healer's flaky tests (`POST /v1/flaky`, `GET /v1/flaky`), for the orchestrator.

use serde::{Deserialize, Serialize};

use super::{ClientError, ServiceClient, encode_query};

/// A test that failed and then passed when re-run alone.
#[derive(Debug, Clone, Serialize)]
pub struct FlakyReport {
    pub test: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A test the healer knows as flaky.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FlakyTest {
    pub test: String,
    pub signature: String,
    pub runner: Option<String>,
    pub phases: Vec<String>,
    pub times: u32,
    pub last_seen: String,
}

#[derive(Deserialize)]
struct FlakyList {
    tests: Vec<FlakyTest>,
}

impl ServiceClient {
    /// `POST /v1/flaky`: answers the test's signature.
    pub async fn report_flaky(&self, report: &FlakyReport) -> Result<String, ClientError> {
        let v: serde_json::Value = self.post_json("/v1/flaky", report).await?;
        Ok(v.get("signature").and_then(|s| s.as_str()).unwrap_or_default().to_owned())
    }

    /// `GET /v1/flaky?project=`: the project's flaky tests.
    pub async fn flaky_tests(&self, project: &str) -> Result<Vec<FlakyTest>, ClientError> {
        let list: FlakyList =
            self.get_json(&format!("/v1/flaky?project={}&limit=1000", encode_query(project))).await?;
        Ok(list.tests)
    }
}
