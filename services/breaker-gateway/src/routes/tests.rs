//! The proxy routes served as in production (`helix_http::server::start`, tokens and gateway keys
//! enforced by the shared access layer) in front of a scripted OpenAI-compatible upstream, with
//! the real trace-collector receiving the spans: which project a call bills to and is traced
//! under, by who calls and what `x-helix-project` says.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use helix_core::auth::{AuthConfig, Authenticator, TokenConfig};
use helix_core::gateway_config::{DeploymentConfig, GatewayKeyConfig, PriceConfig, ProviderKind};
use helix_core::trace::{Event, SpanKind};
use helix_core::{HelixConfig, ServiceKind};
use helix_http::server::{RunningService, Settings};
use serde_json::{Value, json};

use crate::{GatewayService, GatewayState};

const ADMIN: &str = "admin-token-0123456789abcdef";
const LIMITED: &str = "limited-token-0123456789abcdef";
const SHOP_KEY: &str = "shop-gateway-key-0123456789abcdef";
const MODEL: &str = "gpt-4o";

/// Headers of each request the upstream received.
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// An OpenAI-compatible upstream answering every completion with 10 + 5 tokens.
async fn upstream(seen: web::Data<Seen>, req: HttpRequest) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    seen.lock().expect("seen").push(headers);
    HttpResponse::Ok().json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_773_532_800,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": "hi", "refusal": null },
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
    }))
}

struct Stack {
    gateway: Option<RunningService>,
    state: web::Data<GatewayState>,
    url: String,
    collector: String,
    seen: Seen,
    servers: Vec<actix_web::dev::ServerHandle>,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// The gateway with an admin token, a token limited to `alpha` and `beta`, a gateway key of
    /// project `shop`, and a gateway key of project `tight` whose budget is spent (zero).
    async fn start() -> Stack {
        let dir = tempfile::tempdir().expect("tmp");
        let seen: Seen = Arc::default();
        let data = web::Data::new(seen.clone());
        let upstream = HttpServer::new(move || {
            App::new().app_data(data.clone()).route("/v1/chat/completions", web::post().to(upstream))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("bind upstream");
        let upstream_url = format!("http://127.0.0.1:{}", upstream.addrs()[0].port());
        let upstream = upstream.run();
        let mut servers = vec![upstream.handle()];
        actix_web::rt::spawn(upstream);

        let collector_cfg = HelixConfig { data_dir: dir.path().join("collector"), ..HelixConfig::default() };
        let collector_state =
            web::Data::new(helix_trace_collector::CollectorState::open(&collector_cfg).expect("collector"));
        let collector = HttpServer::new(move || {
            let state = collector_state.clone();
            App::new().configure(move |c| helix_trace_collector::configure(c, state.clone()))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("bind collector");
        let collector_url = format!("http://127.0.0.1:{}", collector.addrs()[0].port());
        let collector = collector.run();
        servers.push(collector.handle());
        actix_web::rt::spawn(collector);

        let mut cfg =
            HelixConfig { data_dir: dir.path().join("gateway"), workers: 1, ..HelixConfig::default() };
        let gw = &mut cfg.breaker_gateway;
        gw.max_retries = 0;
        gw.deployments = vec![DeploymentConfig {
            id: "oa".to_owned(),
            provider: ProviderKind::Openai,
            base_url: upstream_url,
            model: MODEL.to_owned(),
            api_key_env: None,
            max_in_flight: None,
            breaker: None,
            responses_api: false,
        }];
        gw.prices = vec![PriceConfig {
            model: MODEL.to_owned(),
            input: 2.5,
            output: 10.0,
            cache_read: 0.0,
            cache_write: 0.0,
        }];
        let key = |env: &str, project: &str, budget| GatewayKeyConfig {
            key_env: env.to_owned(),
            project: project.to_owned(),
            daily_budget_usd: budget,
            max_in_flight: None,
        };
        gw.keys = vec![key("SHOP_KEY", "shop", None), key("TIGHT_KEY", "tight", Some(0.0))];
        let token = |id: &str, env: &str, scopes: &[&str], projects: &[&str]| TokenConfig {
            id: id.to_owned(),
            token_env: Some(env.to_owned()),
            token_file: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            projects: projects.iter().map(|s| (*s).to_owned()).collect(),
        };
        cfg.auth = AuthConfig {
            tokens: vec![
                token("admin", "ADMIN_TOKEN", &["admin"], &[]),
                token("limited", "LIMITED_TOKEN", &["llm"], &["alpha", "beta"]),
            ],
            ..AuthConfig::default()
        };
        let env = |name: &str| {
            Some(
                match name {
                    "ADMIN_TOKEN" => ADMIN,
                    "LIMITED_TOKEN" => LIMITED,
                    "SHOP_KEY" => SHOP_KEY,
                    "TIGHT_KEY" => "tight-gateway-key-0123456789abcdef",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let authenticator =
            Authenticator::from_config(&cfg.auth, &cfg.breaker_gateway.keys, &env).expect("tokens");
        let access = helix_http::access::Access::from_config(&cfg, Arc::new(authenticator));
        let state = GatewayState::open_with(&cfg, Some(&collector_url), |_| None).expect("gateway");
        let service = GatewayService { state: web::Data::new(state) };
        let state = service.state().clone();
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind gateway");
        let settings = Settings::from_config(&cfg, Arc::new(access));
        let gateway = helix_http::server::start(service.into_service(), listener, &settings).expect("serve");
        assert_eq!(gateway.kind(), ServiceKind::BreakerGateway);
        Stack {
            url: gateway.url(),
            gateway: Some(gateway),
            state,
            collector: collector_url,
            seen,
            servers,
            _dir: dir,
        }
    }

    /// One call on `path` with `credential` (as `Authorization: Bearer`) and `project` (as
    /// `x-helix-project`) in a new trace: its status, its body, and the trace's id.
    async fn call(&self, path: &str, credential: &str, project: Option<&str>) -> (u16, Value, String) {
        let trace_id = crate::accounting::emitter::new_trace_id();
        let body = json!({
            "model": "oa",
            "max_tokens": 16,
            "messages": [{ "role": "user", "content": "hello" }]
        });
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(credential)
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&body);
        if let Some(p) = project {
            req = req.header("x-helix-project", p);
        }
        if path == "/v1/messages" {
            req = req.header("anthropic-version", "2023-06-01");
        }
        let res = req.send().await.expect("send");
        let status = res.status().as_u16();
        let body = res.json().await.expect("a JSON answer");
        (status, body, trace_id)
    }

    /// The gateway's span of a call, once the emitter delivered it.
    async fn span(&self, trace_id: &str) -> Event {
        assert!(self.state.emitter.flush(Duration::from_secs(10)).await, "{:?}", self.state.emitter.stats());
        let res = reqwest::get(format!("{}/v1/traces/{trace_id}", self.collector)).await.expect("get trace");
        assert_eq!(res.status(), 200, "trace {trace_id} is stored");
        let tree: Value = res.json().await.expect("json");
        let spans = tree["spans"].as_array().expect("spans");
        assert_eq!(spans.len(), 1, "{tree}");
        let span: Event = serde_json::from_value(spans[0]["span"].clone()).expect("an event");
        assert_eq!(span.kind, SpanKind::LlmCall);
        span
    }

    async fn metric(&self, project: &str) -> Option<f64> {
        let text = self.state.render_metrics().await;
        let name = format!(r#"helix_gateway_cost_usd_total{{project="{project}",model="{MODEL}"}} "#);
        text.lines().find_map(|l| l.strip_prefix(&name)).map(|v| v.parse().expect("a number"))
    }

    fn spent(&self, project: &str) -> f64 {
        let now = u64::try_from(helix_core::time::now_ms()).unwrap_or(0);
        self.state.budgets.spent_today(project, now)
    }

    async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop().await.expect("stop gateway");
        }
        for s in &self.servers {
            s.stop(true).await;
        }
    }
}

/// The error code of an answer in either provider's shape.
fn code(body: &Value) -> Option<&str> {
    // OpenAI: error.code; Anthropic: the message names it (`error.type` is Anthropic's own)
    body["error"]["code"].as_str().or_else(|| body["error"]["message"].as_str())
}

#[actix_web::test]
async fn an_admin_callers_header_sets_the_project_its_call_is_traced_and_metered_under() {
    let stack = Stack::start().await;
    let cost = 10.0 / 1e6 * 2.5 + 5.0 / 1e6 * 10.0;

    let (status, body, trace) = stack.call("/v1/chat/completions", ADMIN, Some("webshop")).await;
    assert_eq!(status, 200, "{body}");
    let span = stack.span(&trace).await;
    assert_eq!(span.project.as_deref(), Some("webshop"));
    assert_eq!(span.validate(), Ok(()));
    let metered = stack.metric("webshop").await.expect("the cost is metered under webshop");
    assert!((metered - cost).abs() < 1e-12, "{metered}");
    assert!((stack.spent("webshop") - cost).abs() < 1e-12, "charged to webshop's budget");
    // the header is the gateway's: the upstream never sees it
    let seen = stack.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].iter().all(|(k, _)| k != "x-helix-project"), "{:?}", seen[0]);

    // the same on Anthropic's route (translated to the OpenAI upstream)
    let (status, body, trace) = stack.call("/v1/messages", ADMIN, Some("webshop")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.span(&trace).await.project.as_deref(), Some("webshop"));
    assert!((stack.spent("webshop") - 2.0 * cost).abs() < 1e-12);

    // without the header: `default`, as before
    let (status, _, trace) = stack.call("/v1/chat/completions", ADMIN, None).await;
    assert_eq!(status, 200);
    assert_eq!(stack.span(&trace).await.project.as_deref(), Some("default"));
    assert!(stack.metric("default").await.is_some());

    // a named project has the limits of its key: `tight`'s budget is spent
    let (status, body, _) = stack.call("/v1/chat/completions", ADMIN, Some("tight")).await;
    assert_eq!((status, code(&body)), (429, Some("budget_exceeded")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("\"tight\""), "{body}");

    // a name that is no project name is a 400, in the client's shape
    let long = "p".repeat(helix_core::trace::MAX_NAME + 1);
    for bad in [long.as_str()] {
        let (status, body, _) = stack.call("/v1/chat/completions", ADMIN, Some(bad)).await;
        assert_eq!((status, code(&body)), (400, Some("invalid_request")), "{bad:?}: {body}");
        assert!(body["error"]["message"].as_str().unwrap_or_default().starts_with("x-helix-project"));
    }
    assert_eq!(stack.seen.lock().expect("seen").len(), 3, "refused calls never reach the upstream");
    // an empty (or blank) value names no project, like an absent header
    let (status, _, trace) = stack.call("/v1/chat/completions", ADMIN, Some(" ")).await;
    assert_eq!(status, 200);
    assert_eq!(stack.span(&trace).await.project.as_deref(), Some("default"));
    stack.stop().await;
}

#[actix_web::test]
async fn a_project_limited_caller_may_name_only_its_own_projects() {
    let stack = Stack::start().await;
    let (status, body, trace) = stack.call("/v1/chat/completions", LIMITED, Some("beta")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.span(&trace).await.project.as_deref(), Some("beta"));
    assert!(stack.metric("beta").await.is_some());

    for path in ["/v1/chat/completions", "/v1/messages"] {
        let (status, body, _) = stack.call(path, LIMITED, Some("gamma")).await;
        assert_eq!(status, 403, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("\"gamma\"") && message.contains("alpha, beta"), "{message}");
        if path == "/v1/chat/completions" {
            assert_eq!(code(&body), Some("forbidden"), "{body}");
        } else {
            assert_eq!(body["error"]["type"], "permission_error", "Anthropic's shape: {body}");
        }
    }
    assert_eq!(stack.seen.lock().expect("seen").len(), 1);
    assert!(stack.metric("gamma").await.is_none());
    assert_eq!(stack.spent("gamma"), 0.0);
    stack.stop().await;
}

#[actix_web::test]
async fn a_gateway_key_keeps_its_project_whatever_the_header_says() {
    let stack = Stack::start().await;
    let (status, body, _) = stack.call("/v1/chat/completions", SHOP_KEY, Some("webshop")).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("bills to project \"shop\""), "{message}");
    assert_eq!(stack.seen.lock().expect("seen").len(), 0);

    // repeating its project, or naming none, bills to it
    for named in [Some("shop"), None] {
        let (status, body, trace) = stack.call("/v1/chat/completions", SHOP_KEY, named).await;
        assert_eq!(status, 200, "{named:?}: {body}");
        assert_eq!(stack.span(&trace).await.project.as_deref(), Some("shop"));
    }
    assert!(stack.metric("shop").await.is_some() && stack.metric("webshop").await.is_none());
    stack.stop().await;
}

#[actix_web::test]
async fn a_minted_key_bills_to_its_project_until_its_cap_is_spent_and_only_its_minter_sees_it() {
    let stack = Stack::start().await;
    let http = reqwest::Client::new();
    let cost = 10.0 / 1e6 * 2.5 + 5.0 / 1e6 * 10.0;
    let mint = |credential: &str, body: Value| {
        http.post(format!("{}/v1/keys", stack.url)).bearer_auth(credential).json(&body).send()
    };
    // a cap of one and a half calls: the first two are admitted, the third is refused
    let res = mint(ADMIN, json!({"project": "agents", "max_cost_usd": cost * 1.5, "ttl_seconds": 600}))
        .await
        .expect("mint");
    assert_eq!(res.status(), 201);
    let minted: Value = res.json().await.expect("json");
    let (id, key) = (minted["id"].as_str().expect("id"), minted["key"].as_str().expect("key"));
    assert_eq!(minted["project"], "agents");

    let (status, body, trace) = stack.call("/v1/chat/completions", key, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.span(&trace).await.project.as_deref(), Some("agents"), "billed to its project");
    // it may not name another project, nor do anything but call models
    let (status, _, _) = stack.call("/v1/chat/completions", key, Some("shop")).await;
    assert_eq!(status, 403);
    let circuits = http.get(format!("{}/v1/circuits", stack.url)).bearer_auth(key).send().await.expect("get");
    assert_eq!(circuits.status(), 403);
    assert_eq!(mint(key, json!({})).await.expect("mint").status(), 403, "a minted key mints nothing");

    let (status, body, _) = stack.call("/v1/messages", key, None).await;
    assert_eq!(status, 200, "{body}");
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let trace_id = crate::accounting::emitter::new_trace_id();
        let res = http
            .post(format!("{}{path}", stack.url))
            .bearer_auth(key)
            .header("anthropic-version", "2023-06-01")
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&json!({"model": "oa", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 429, "{path}: the cap is spent");
        assert_eq!(res.headers().get("x-should-retry").and_then(|v| v.to_str().ok()), Some("false"));
        assert!(res.headers().get("retry-after").is_none(), "a spent cap does not come back");
        let body: Value = res.json().await.expect("json");
        assert!(code(&body).is_some_and(|c| c.contains("budget_exceeded") || c.contains("cap")), "{body}");
        if path == "/v1/chat/completions" {
            assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
        }
    }
    assert_eq!(stack.seen.lock().expect("seen").len(), 2, "refused calls never reach the upstream");

    // its usage: for its minter and admins only
    let usage =
        |credential: &str| http.get(format!("{}/v1/keys/{id}", stack.url)).bearer_auth(credential).send();
    let res = usage(ADMIN).await.expect("get");
    assert_eq!(res.status(), 200);
    let u: Value = res.json().await.expect("json");
    assert!((u["spent_usd"].as_f64().expect("spent") - 2.0 * cost).abs() < 1e-12, "{u}");
    assert_eq!((u["calls"].as_u64(), u["refused"].as_u64()), (Some(2), Some(2)), "{u}");
    assert!(!u.to_string().contains(key), "the usage never shows the key");
    assert_eq!(usage(LIMITED).await.expect("get").status(), 404, "another caller does not see it");

    // a limited token mints only for its own projects, with its own name as the minter
    let res = mint(LIMITED, json!({"project": "shop"})).await.expect("mint");
    assert_eq!(res.status(), 403);
    let res = mint(LIMITED, json!({"project": "alpha", "ttl_seconds": 60})).await.expect("mint");
    assert_eq!(res.status(), 201);
    let alpha: Value = res.json().await.expect("json");
    let alpha_id = alpha["id"].as_str().expect("id");
    let res = http.get(format!("{}/v1/keys/{alpha_id}", stack.url)).bearer_auth(LIMITED).send().await;
    assert_eq!(res.expect("get").status(), 200);
    // bad requests are problems with stable codes
    for bad in [
        json!({"max_cost_usd": -1}),
        json!({"max_cost_usd": 0}),
        json!({"ttl_seconds": 0}),
        json!({"ttl_seconds": 86_401}),
        json!({"project": " x"}),
        json!({"unknown": 1}),
    ] {
        let res = mint(ADMIN, bad.clone()).await.expect("mint");
        assert_eq!(res.status(), 400, "{bad}");
        let p: Value = res.json().await.expect("problem");
        assert!(p["code"].as_str().is_some_and(|c| c.starts_with("invalid")), "{bad}: {p}");
    }

    // revoked: refused as an unknown token, and gone
    let res =
        http.delete(format!("{}/v1/keys/{id}", stack.url)).bearer_auth(ADMIN).send().await.expect("delete");
    assert_eq!(res.status(), 200);
    let (status, _, _) = stack.call("/v1/chat/completions", key, None).await;
    assert_eq!(status, 401);
    assert_eq!(usage(ADMIN).await.expect("get").status(), 404);
    stack.stop().await;
}
