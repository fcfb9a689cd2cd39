//! Start-up on defaults, health, readiness, Swagger UI.

use helix_core::ServiceKind;
use helix_tests::{Helix, client};

#[tokio::test]
async fn all_four_services_answer_health_and_ready() {
    let helix = Helix::start().await;
    let http = client();
    for kind in ServiceKind::ALL {
        let url = helix.url(kind);
        let res = http.get(format!("{url}/health")).send().await.expect("health");
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["service"], kind.name());

        let res = http.get(format!("{url}/ready")).send().await.expect("ready");
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["status"], "ready", "{kind}: {body}");
        let checks = body["checks"].as_array().expect("checks");
        assert!(checks.iter().any(|c| c["name"] == "data_dir" && c["status"] == "ok"), "{body}");
        // each service keeps its data in its own directory under data_dir
        assert!(helix.config.data_dir.join(kind.name()).is_dir());
    }
    helix.stop().await;
}

#[tokio::test]
async fn orchestrator_readiness_lists_its_peers_and_degrades_without_them() {
    let helix = Helix::start().await;
    let http = client();
    let url = helix.url(ServiceKind::Orchestrator);
    let body: serde_json::Value =
        http.get(format!("{url}/ready")).send().await.expect("ready").json().await.expect("json");
    for peer in ["healer", "trace-collector", "breaker-gateway"] {
        assert!(
            body["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .any(|c| c["name"] == peer && c["status"] == "ok"),
            "{peer} missing in {body}"
        );
    }
    helix.stop().await;

    // Alone, the orchestrator still serves, but says its peers are missing.
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_tests::test_config(dir.path());
    // peers on ports where nothing listens
    cfg.healer_port = free_port();
    cfg.trace_collector_port = free_port();
    cfg.breaker_gateway_port = free_port();
    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::Orchestrator]).await.expect("start");
    let url = stack.url(ServiceKind::Orchestrator).expect("url");
    let res = http.get(format!("{url}/ready")).send().await.expect("ready");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["status"], "degraded", "{body}");
    let healer = body["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "healer").cloned();
    assert_eq!(healer.expect("healer check")["status"], "degraded");
    stack.stop().await.expect("stop");
}

#[tokio::test]
async fn not_ready_is_a_503_problem_listing_the_checks() {
    let helix = Helix::start().await;
    let http = client();
    // the healer's data directory disappears under it
    std::fs::remove_dir_all(helix.config.data_dir.join("healer")).expect("remove");
    let res = http.get(format!("{}/ready", helix.url(ServiceKind::Healer))).send().await.expect("ready");
    let body = helix_tests::expect_problem(res, 503, "not_ready").await;
    assert_eq!(body["service"], "healer");
    assert!(body["detail"].as_str().expect("detail").contains("data_dir"), "{body}");
    assert_eq!(body["checks"][0]["status"], "down");
    helix.stop().await;
}

#[tokio::test]
async fn swagger_ui_and_its_assets_are_served_by_the_service_itself() {
    let helix = Helix::start().await;
    let http = client();
    for kind in ServiceKind::ALL {
        let url = helix.url(kind);
        let res = http.get(format!("{url}/swagger-ui/")).send().await.expect("ui");
        assert_eq!(res.status(), 200);
        let html = res.text().await.expect("html");
        assert!(html.contains("swagger-ui"), "{html}");
        // every script and stylesheet the page references comes from the service, not a CDN
        let mut assets = Vec::new();
        for attr in ["src=\"", "href=\""] {
            for part in html.split(attr).skip(1) {
                let link = part.split('"').next().unwrap_or_default();
                assert!(!link.starts_with("http"), "external asset {link}");
                assets.push(link.trim_start_matches("./").to_owned());
            }
        }
        assert!(
            assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
            "{assets:?}"
        );
        for asset in assets {
            let res = http.get(format!("{url}/swagger-ui/{asset}")).send().await.expect("asset");
            assert_eq!(res.status(), 200, "{asset}");
            assert!(!res.bytes().await.expect("bytes").is_empty(), "{asset}");
        }
        // the initializer points at the service's own document
        let init = http.get(format!("{url}/swagger-ui/swagger-initializer.js")).send().await.expect("init");
        assert!(init.text().await.expect("text").contains("/openapi.json"));
        // the bare paths lead to the UI
        for path in ["/swagger-ui", "/"] {
            let res = http.get(format!("{url}{path}")).send().await.expect("redirect");
            assert_eq!(res.status(), 307, "{path}");
            assert_eq!(res.headers()["location"], "/swagger-ui/");
        }
    }
    helix.stop().await;
}

#[tokio::test]
async fn a_taken_port_fails_start_up_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_tests::test_config(dir.path());
    cfg.healer_port = port;
    let err = helix::stack::Stack::start(&cfg, &ServiceKind::ALL).await.err().expect("must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("healer_port") && msg.contains(&port.to_string()), "{msg}");
}

fn free_port() -> u16 {
    // bound and released at once: nothing listens there during the test
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}
