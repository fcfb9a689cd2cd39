//! One auth model for every service: each documented operation needs its scope (401 without a
//! token, 403 with one that lacks it), tokens may be limited to projects, the local token lets
//! the command line on the same machine in.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::support::{Options, Up, Upstream, gateway_config, helix, http};

pub const ADMIN: &str = "tok-admin-0123456789abcdef";
pub const READER: &str = "tok-reader-0123456789abcdef";
pub const OPS: &str = "tok-ops-0123456789abcdef";
pub const CI: &str = "tok-ci-0123456789abcdef";
pub const WRITER: &str = "tok-writer-0123456789abcdef";
pub const GATEWAY_KEY: &str = "gk-shop-0123456789abcdef";

/// `helix up` with an admin, a reader (every `:read` scope), an ops token (`ops:read` only), a
/// CI token (runs of project `shop`), a healer writer (project `web`) and a gateway key.
pub fn up_with_tokens(upstream: &Upstream, extra: &str) -> Up {
    let config = format!(
        "{}{extra}\
         [[breaker_gateway.keys]]\nkey_env = \"GK_SHOP\"\nproject = \"shop\"\n\
         [[auth.tokens]]\nid = \"admin\"\ntoken_env = \"T_ADMIN\"\nscopes = [\"admin\"]\n\
         [[auth.tokens]]\nid = \"reader\"\ntoken_env = \"T_READER\"\nscopes = [\"runs:read\", \"traces:read\", \"healer:read\", \"ops:read\"]\n\
         [[auth.tokens]]\nid = \"ops\"\ntoken_env = \"T_OPS\"\nscopes = [\"ops:read\"]\n\
         [[auth.tokens]]\nid = \"ci\"\ntoken_env = \"T_CI\"\nscopes = [\"runs:write\", \"runs:read\"]\nprojects = [\"shop\"]\n\
         [[auth.tokens]]\nid = \"writer\"\ntoken_env = \"T_WRITER\"\nscopes = [\"healer:write\", \"healer:read\"]\nprojects = [\"web\"]\n",
        gateway_config(&upstream.url, None)
    );
    let env = [
        ("T_ADMIN", ADMIN),
        ("T_READER", READER),
        ("T_OPS", OPS),
        ("T_CI", CI),
        ("T_WRITER", WRITER),
        ("GK_SHOP", GATEWAY_KEY),
    ];
    Up::start(Options {
        config,
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Options::default()
    })
}

/// A concrete path for an OpenAPI path template.
fn concrete(path: &str) -> String {
    path.replace("{signature}", &"0".repeat(64))
        .replace("{trace_id}", &"1".repeat(32))
        .replace("{phase}", "0")
        .replace("{id}", "no-such-thing")
}

/// A request of `method` to `url` with a body the operation could take.
fn request(method: &str, url: &str, path: &str) -> reqwest::RequestBuilder {
    let c = http();
    match method {
        "get" => c.get(url),
        "delete" => c.delete(url),
        _ => {
            let body = match path {
                "/v1/events" => "[]",
                _ => "{}",
            };
            let ct = if path == "/v1/import/claude-stream-json" {
                "application/x-ndjson"
            } else {
                "application/json"
            };
            c.post(url).header("content-type", ct).body(body)
        }
    }
}

#[tokio::test]
async fn every_documented_operation_needs_its_scope() {
    let upstream = Upstream::openai_answering("hi");
    let up = up_with_tokens(&upstream, "");
    let mut checked = 0;
    for service in ["orchestrator", "trace-collector", "breaker-gateway", "healer"] {
        let base = up.url(service);
        // the document is public (Swagger UI reads it) and declares the schemes
        let doc: Value =
            http().get(format!("{base}/openapi.json")).send().await.expect("doc").json().await.expect("json");
        let schemes = doc["components"]["securitySchemes"].as_object().expect("securitySchemes");
        assert_eq!(schemes["bearer"]["scheme"], "bearer", "{service}");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("operations") {
                let url = format!("{base}{}", concrete(path));
                let security = op["security"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} declares no security"));
                let scope = security
                    .iter()
                    .filter_map(Value::as_object)
                    .flat_map(|o| o.values())
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter_map(Value::as_str)
                    .next();
                let Some(scope) = scope else {
                    // public: documentation and liveness
                    let res = request(method, &url, path).send().await.expect("send");
                    assert!(
                        res.status() != 401 && res.status() != 403,
                        "{method} {path} is public: {}",
                        res.status()
                    );
                    continue;
                };
                if path == "/ready" || path == "/metrics" {
                    // probes: open to this machine (auth.probes = "loopback")
                    let res = request(method, &url, path).send().await.expect("send");
                    assert!(res.status().is_success(), "{method} {path} from loopback: {}", res.status());
                    continue;
                }
                let res = request(method, &url, path).send().await.expect("send");
                assert_eq!(res.status(), 401, "{service} {method} {path} without a token");
                assert!(res.headers().contains_key("www-authenticate"), "{method} {path}");
                let res = request(method, &url, path)
                    .bearer_auth("tok-unknown-0123456789abcdef")
                    .send()
                    .await
                    .expect("send");
                assert_eq!(res.status(), 401, "{method} {path} with an unknown token");
                let lacking = if scope == "ops:read" { CI } else { OPS };
                let res = request(method, &url, path).bearer_auth(lacking).send().await.expect("send");
                assert_eq!(res.status(), 403, "{service} {method} {path} ({scope}) with a token lacking it");
                let right = match scope {
                    "llm" => GATEWAY_KEY,
                    s if s.ends_with(":read") => READER,
                    _ => ADMIN,
                };
                let res = request(method, &url, path).bearer_auth(right).send().await.expect("send");
                assert!(
                    res.status() != 401 && res.status() != 403,
                    "{method} {path} with {scope}: {}",
                    res.status()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} operations checked");
    // no error names a token
    assert!(!up.stderr().contains(ADMIN) && !up.stderr().contains(GATEWAY_KEY));
}

#[tokio::test]
async fn provider_routes_refuse_in_the_providers_shape_and_take_x_api_key() {
    let upstream = Upstream::openai_answering("hi");
    let up = up_with_tokens(&upstream, "");
    let gw = up.url("breaker-gateway");
    let chat = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});
    let res = http().post(format!("{gw}/v1/chat/completions")).json(&chat).send().await.expect("send");
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    let res = http()
        .post(format!("{gw}/v1/messages"))
        .header("x-api-key", OPS)
        .json(&chat)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("permission_error")),
        "{body}"
    );
    let res = http()
        .post(format!("{gw}/v1/chat/completions"))
        .header("x-api-key", GATEWAY_KEY)
        .json(&chat)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let res = http()
        .post(format!("{gw}/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .json(&chat)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    // a gateway key is for LLM calls only
    let res = http()
        .post(format!("{gw}/v1/circuits/up/force-open"))
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 403);
    let res =
        http().post(format!("{gw}/v1/circuits/up/force-open")).bearer_auth(ADMIN).send().await.expect("send");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn probes_need_a_token_when_configured_so() {
    let upstream = Upstream::openai_answering("hi");
    let up = up_with_tokens(&upstream, "[auth]\nprobes = \"token\"\n");
    for (service, path) in [("healer", "/ready"), ("breaker-gateway", "/metrics"), ("orchestrator", "/ready")]
    {
        let url = format!("{}{path}", up.url(service));
        assert_eq!(http().get(&url).send().await.expect("send").status(), 401, "{path}");
        assert_eq!(http().get(&url).bearer_auth(OPS).send().await.expect("send").status(), 200, "{path}");
        assert_eq!(
            http().get(format!("{}/health", up.url(service))).send().await.expect("send").status(),
            200
        );
    }
}

#[tokio::test]
async fn a_token_limited_to_a_project_sees_and_starts_only_its_runs() {
    let upstream = Upstream::openai_answering("hi");
    let up = up_with_tokens(&upstream, "");
    let pipeline = "name = \"p\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n";
    let res = up.start_run(Some(CI), json!({"pipeline": pipeline, "project": "other"})).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.expect("json")["code"], "forbidden");
    let res = up.start_run(Some(CI), json!({"pipeline": pipeline})).await;
    assert_eq!(res.status(), 201, "the token's only project is the default");
    let own: Value = res.json().await.expect("json");
    assert_eq!(own["project"], "shop");
    let res = up.start_run(Some(ADMIN), json!({"pipeline": pipeline, "project": "other"})).await;
    assert_eq!(res.status(), 201);
    let other: Value = res.json().await.expect("json");
    let other_id = other["id"].as_str().expect("id");
    up.wait_final(Some(ADMIN), other_id).await;
    let orch = up.url("orchestrator");
    let list: Value = http()
        .get(format!("{orch}/v1/runs"))
        .bearer_auth(CI)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let projects: Vec<&str> =
        list["runs"].as_array().expect("runs").iter().filter_map(|r| r["project"].as_str()).collect();
    assert_eq!(projects, ["shop"], "{list}");
    for (method, path) in [
        ("get", format!("/v1/runs/{other_id}")),
        ("get", format!("/v1/runs/{other_id}/events")),
        ("post", format!("/v1/runs/{other_id}/resume")),
    ] {
        let req = if method == "get" {
            http().get(format!("{orch}{path}"))
        } else {
            http().post(format!("{orch}{path}"))
        };
        assert_eq!(req.bearer_auth(CI).send().await.expect("send").status(), 404, "{path}");
    }
    // a new project name does not get around the global limit
    let limited =
        Up::start(Options { config: "[orchestrator]\nmax_runs = 1\n".into(), ..Options::default() });
    let slow = "name = \"s\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"sleep\", \"600\"]\n";
    assert_eq!(limited.start_run(None, json!({"pipeline": slow, "project": "one"})).await.status(), 201);
    let res = limited.start_run(None, json!({"pipeline": slow, "project": "two"})).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.json::<Value>().await.expect("json")["code"], "concurrency_limit");
}

#[tokio::test]
async fn the_local_token_is_private_and_the_command_line_uses_it() {
    let up = Up::start(Options {
        config: "data_dir = \"data\"\n[auth]\nlocal_token = true\n".into(),
        ..Options::default()
    });
    let file = up.data().join("local-token");
    let mode = std::fs::metadata(&file).expect("local token written").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let token = std::fs::read_to_string(&file).expect("read").trim().to_owned();
    let orch = up.url("orchestrator");
    assert_eq!(
        http().get(format!("{orch}/v1/runs")).send().await.expect("send").status(),
        401,
        "tokens are required now"
    );
    assert_eq!(
        http().get(format!("{orch}/v1/runs")).bearer_auth(&token).send().await.expect("send").status(),
        200
    );
    // the CLI in the same directory (same helix.toml, same data dir) needs no flag
    let out = helix(up.dir.path()).args(["runs", "--url", orch]).output().expect("helix runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // elsewhere it has no token, and says so
    let elsewhere = tempfile::tempdir().expect("tmp");
    let out = helix(elsewhere.path()).args(["runs", "--url", orch]).output().expect("helix runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    // HELIX_TOKEN works anywhere
    let out = helix(elsewhere.path())
        .args(["runs", "--url", orch])
        .env("HELIX_TOKEN", &token)
        .output()
        .expect("helix runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
