//! A panicking handler never reaches the client as a dropped connection: it becomes a 500
//! problem with the request id, and the service keeps serving.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use futures_util::future::BoxFuture;
use helix_core::{Check, ServiceKind};
use helix_tests::{client, expect_problem};

/// A service whose one route panics, served by the real runtime. (It stands in for a future bug
/// in any handler; the runtime under test is the real one.)
struct Panicky;

async fn boom() -> HttpResponse {
    let v: Vec<u8> = Vec::new();
    // an out-of-bounds index, as a real bug would have it
    let i = v.len() + 3;
    HttpResponse::Ok().body(vec![v[i]])
}

impl helix_http::Service for Panicky {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Healer
    }
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.route("/boom", web::get().to(boom));
    }
    fn openapi(&self) -> utoipa::openapi::OpenApi {
        helix::openapi_document(ServiceKind::Healer)
    }
    fn readiness(&self) -> BoxFuture<'static, Vec<Check>> {
        Box::pin(async { Vec::new() })
    }
}

#[tokio::test]
async fn handler_panic_becomes_a_500_problem() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let settings = helix_http::Settings {
        max_body_bytes: 1 << 20,
        workers: 1,
        shutdown_grace: std::time::Duration::from_secs(1),
        access: Arc::new(helix_http::access::Access::open()),
    };
    let running = helix_http::start(Arc::new(Panicky), listener, &settings).expect("start");
    let url = running.url();
    let http = client();
    for _ in 0..3 {
        let res = http
            .get(format!("{url}/boom"))
            .header("x-request-id", "panic-1")
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(res.headers()["x-request-id"], "panic-1");
        let body = expect_problem(res, 500, "internal").await;
        assert_eq!(body["request_id"], "panic-1");
        // the panic message is logged, not sent
        assert!(!body["detail"].as_str().expect("detail").contains("index out of bounds"));
    }
    let res = http.get(format!("{url}/health")).send().await.expect("still serving");
    assert_eq!(res.status(), 200);
    running.stop().await.expect("stop");
}
