//! Test harness: Helix services started in-process on port 0, exactly as `helix up` starts them,
//! and talked to over real HTTP.

pub mod chromium;
pub mod fake_provider;
pub mod postgres;

use std::path::Path;

use helix::stack::Stack;
use helix_core::{HelixConfig, ServiceKind};

/// A configuration for tests: every port 0 (any free port), data under `dir`.
pub fn test_config(dir: &Path) -> HelixConfig {
    HelixConfig {
        orchestrator_port: 0,
        trace_collector_port: 0,
        breaker_gateway_port: 0,
        healer_port: 0,
        data_dir: dir.join("data"),
        workers: 1,
        shutdown_grace_secs: 5,
        orchestrator: helix_core::OrchestratorConfig {
            // tests name pipeline files and workdirs in temporary directories
            roots: vec![std::env::temp_dir(), std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))],
            ..helix_core::OrchestratorConfig::default()
        },
        ..HelixConfig::default()
    }
}

/// All four services with their data in a fresh temporary directory.
pub struct Helix {
    pub stack: Stack,
    pub config: HelixConfig,
    // kept alive until the services stop
    pub dir: tempfile::TempDir,
}

impl Helix {
    pub async fn start() -> Helix {
        Helix::start_with(|_| {}).await
    }

    /// Starts all four services after `adjust` changed the test configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut HelixConfig)) -> Helix {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let stack = Stack::start(&config, &ServiceKind::ALL).await.expect("services start");
        Helix { stack, config, dir }
    }

    pub fn url(&self, kind: ServiceKind) -> String {
        self.stack.url(kind).expect("service runs")
    }

    pub async fn stop(self) {
        self.stack.stop().await.expect("clean stop");
    }
}

/// The gateway serves model `name` from the fake provider at `fake_url`: one OpenAI-protocol
/// deployment, `fake-openai`, calling `upstream_model`.
pub fn serve_from_fake(
    gw: &mut helix_core::gateway_config::BreakerGatewayConfig,
    fake_url: String,
    name: &str,
    upstream_model: &str,
) {
    use helix_core::gateway_config::{DeploymentConfig, ModelChainConfig, ProviderKind};
    gw.deployments.push(DeploymentConfig {
        id: "fake-openai".to_owned(),
        provider: ProviderKind::Openai,
        base_url: fake_url,
        model: upstream_model.to_owned(),
        api_key_env: None,
        max_in_flight: None,
        breaker: None,
        responses_api: false,
    });
    gw.models.push(ModelChainConfig { name: name.to_owned(), chain: vec!["fake-openai".to_owned()] });
}

/// An HTTP client that does not follow redirects (tests look at them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Asserts that `res` is an RFC 9457 problem with `status` and `code`, and returns its body.
pub async fn expect_problem(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let content_type =
        res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(content_type.starts_with("application/problem+json"), "content type {content_type}");
    let request_id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: serde_json::Value = res.json().await.expect("problem body is json");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["type"], format!("urn:helix:error:{code}"), "{body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert_eq!(body["request_id"].as_str().map(str::to_owned), request_id, "{body}");
    body
}

/// GET `url` and parse the JSON answer, whatever its status.
pub async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url).send().await.expect("send").json().await.expect("json body")
}

/// POST `body` as JSON to `url` and parse the JSON answer, whatever its status.
pub async fn post_json(http: &reqwest::Client, url: &str, body: &impl serde::Serialize) -> serde_json::Value {
    http.post(url).json(body).send().await.expect("send").json().await.expect("json body")
}
