//! What a web page in the user's browser can do to a Helix on loopback: nothing. DNS rebinding is
//! stopped by the `Host` check, cross-origin "simple" requests by the `Origin` check and the
//! content-type rules, even without tokens; CORS is opt-in.

use serde_json::{Value, json};

use crate::support::{Options, Up, Upstream, gateway_config, http};

fn up_with_gateway(upstream: &Upstream, extra: &str) -> Up {
    Up::start(Options {
        config: format!("{}{extra}", gateway_config(&upstream.url, None)),
        ..Options::default()
    })
}

async fn runs(up: &Up) -> usize {
    let v: Value = http()
        .get(format!("{}/v1/runs", up.url("orchestrator")))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    v["runs"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn dns_rebinding_is_refused_and_runs_nothing() {
    let upstream = Upstream::openai_answering("hi");
    let up = up_with_gateway(&upstream, "");
    let marker = up.dir.path().join("pwned");
    let pipeline = format!(
        "name = \"x\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"touch\", {}]\n",
        serde_json::to_string(marker.to_str().expect("utf-8")).expect("toml string")
    );
    let port = up.authority("orchestrator").rsplit(':').next().expect("port").to_owned();
    for host in
        [format!("evil.example:{port}"), format!("127.0.0.1.nip.io:{port}"), "localhost.evil.com".to_owned()]
    {
        let res = http()
            .post(format!("{}/v1/runs", up.url("orchestrator")))
            .header("host", &host)
            .json(&json!({"pipeline": pipeline}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 421, "{host}");
        let body: Value = res.json().await.expect("problem");
        assert_eq!(body["code"], "host_not_allowed");
        // reading is refused too: the page learns nothing
        let res = http()
            .get(format!("{}/v1/runs", up.url("orchestrator")))
            .header("host", &host)
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 421, "{host}");
    }
    let res = http()
        .post(format!("{}/v1/chat/completions", up.url("breaker-gateway")))
        .header("host", "evil.example")
        .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 421);
    assert_eq!(runs(&up).await, 0, "no run was started");
    assert!(!marker.exists());
    assert_eq!(upstream.requests(), 0, "nothing was billed upstream");
    // the names of this machine work
    let res = http()
        .get(format!("{}/health", up.url("healer")))
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn cross_origin_simple_requests_change_nothing() {
    let upstream = Upstream::openai_answering("hi");
    let up = up_with_gateway(&upstream, "");
    let evil = "http://evil.example";
    let chat = json!({"model": "smart", "messages": [{"role": "user", "content": "x"}]}).to_string();
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let url = format!("{}{path}", up.url("breaker-gateway"));
        // what a page's fetch or form can send without a preflight
        for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let res = http()
                .post(&url)
                .header("origin", evil)
                .header("content-type", ct)
                .body(chat.clone())
                .send()
                .await
                .expect("send");
            assert_eq!(res.status(), 403, "{path} {ct}");
            // without an Origin (a form on an old browser, a proxy that strips it): the type alone
            let res =
                http().post(&url).header("content-type", ct).body(chat.clone()).send().await.expect("send");
            assert_eq!(res.status(), 415, "{path} {ct}");
        }
        let res = http()
            .post(&url)
            .header("origin", evil)
            .header("content-type", "application/json")
            .body(chat.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(
            res.status(),
            403,
            "{path}: a JSON POST from a page needs a preflight we never grant, and is refused anyway"
        );
    }
    assert_eq!(upstream.requests(), 0, "nothing was billed upstream");

    // an empty POST to a breaker command from a page
    let gw = up.url("breaker-gateway");
    for cmd in ["force-open", "disable", "reset"] {
        let res = http()
            .post(format!("{gw}/v1/circuits/up/{cmd}"))
            .header("origin", evil)
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 403, "{cmd}");
        let body: Value = res.json().await.expect("problem");
        assert_eq!(body["code"], "origin_not_allowed");
    }
    let circuits: Value =
        http().get(format!("{gw}/v1/circuits")).send().await.expect("send").json().await.expect("json");
    assert_eq!(circuits["circuits"][0]["state"], "closed", "{circuits}");

    // a run from a page
    let res = http().post(format!("{}/v1/runs", up.url("orchestrator"))).header("origin", evil)
        .json(&json!({"pipeline": "name = \"x\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n"}))
        .send().await.expect("send");
    assert_eq!(res.status(), 403);
    assert_eq!(runs(&up).await, 0);

    // the healer's text/plain analyze: from the command line yes, from a page no
    let healer = format!("{}/v1/analyze", up.url("healer"));
    let log = "ModuleNotFoundError: No module named 'yaml'";
    let res = http().post(&healer).header("content-type", "text/plain").body(log).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let res = http()
        .post(&healer)
        .header("content-type", "text/plain")
        .header("origin", evil)
        .body(log)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 403);
    let res = http()
        .post(&healer)
        .header("content-type", "text/plain")
        .header("origin", "null")
        .body(log)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 403, "sandboxed frames and files send Origin: null");

    // the service's own pages (Swagger UI's "Try it out") are same-origin
    let own = format!("http://{}", up.authority("healer"));
    let res = http()
        .post(format!("{}/v1/fingerprint", up.url("healer")))
        .header("origin", own)
        .json(&json!({"text": "boom"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn cors_is_off_by_default_and_opens_only_to_configured_origins() {
    let upstream = Upstream::openai_answering("hi");
    let up = up_with_gateway(&upstream, "[auth]\ncors_origins = [\"https://app.example.com\"]\n");
    let url = format!("{}/v1/fingerprint", up.url("healer"));
    let preflight = |origin: &'static str| {
        http()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, authorization")
            .send()
    };
    let res = preflight("https://app.example.com").await.expect("send");
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(res.headers()["access-control-allow-headers"].to_str().expect("ascii").contains("authorization"));
    let res = preflight("https://evil.example").await.expect("send");
    assert_eq!(res.status(), 403);
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let res = http()
        .post(&url)
        .header("origin", "https://app.example.com")
        .json(&json!({"text": "boom"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com");
    // and without configuration, nobody
    let plain = up_with_gateway(&upstream, "");
    let res = http()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/fingerprint", plain.url("healer")))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 403);
}
