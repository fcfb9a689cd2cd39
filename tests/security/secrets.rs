//! Secrets a pipeline names reach its commands and nothing else: not the run's records, not the
//! events, traces or logs; every occurrence in captured output is masked. Credentials in the
//! configuration and in upstream errors are masked too.

use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Options, Up, Upstream, found_under, gateway_config, helix, http, outputs, unique,
};

#[tokio::test]
async fn a_pipeline_secret_is_given_to_the_command_masked_and_stored_nowhere() {
    let secret = unique("deploy-");
    let up = Up::start(Options { env: vec![("DEPLOY_TOKEN".into(), secret.clone())], ..Options::default() });
    std::fs::create_dir_all(up.dir.path().join("work")).expect("mkdir");
    let pipeline = "name = \"deploy\"\nsecrets = [\"DEPLOY_TOKEN\"]\n[[phase]]\nname = \"push\"\nkind = \"command\"\nshell = true\n\
                    run = 'echo \"using token=$DEPLOY_TOKEN\"; echo \"$DEPLOY_TOKEN\" >&2; test -n \"$DEPLOY_TOKEN\" && echo given'\n\
                    [[phase]]\nname = \"fail\"\nkind = \"command\"\nshell = true\nretries = 0\nrun = 'echo \"error: bad token $DEPLOY_TOKEN\"; exit 1'\n";
    let run = up.run(None, pipeline).await;
    let out = outputs(&run);
    assert!(out.contains("using token=***") && out.contains("given"), "{out}");
    let text = run.to_string();
    assert!(!text.contains(&secret), "GET /v1/runs/ID shows the secret: {text}");
    // the collector got the run's trace (the failure, the heal attempt): none of it holds the secret
    let trace_id = run["trace_id"].as_str().expect("trace id");
    let collector = up.url("trace-collector");
    let start = std::time::Instant::now();
    let trace: Value = loop {
        let res = http().get(format!("{collector}/v1/traces/{trace_id}")).send().await.expect("send");
        if res.status() == 200 {
            let t: Value = res.json().await.expect("json");
            if t.to_string().contains("phase fail") {
                break t;
            }
        }
        assert!(start.elapsed() < DEADLINE, "the run's trace did not arrive");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(!trace.to_string().contains(&secret), "the trace holds the secret");
    // and on disk: run.json, checkpoints, events, blobs, the collector's log, the healer's log
    let leaks = found_under(&up.data(), &secret);
    assert!(leaks.is_empty(), "the secret was written to {leaks:?}");
    assert!(!up.stderr().contains(&secret), "the log holds the secret");
}

#[tokio::test]
async fn credential_like_values_in_env_tables_and_unknown_secrets_are_refused() {
    let up = Up::start(Options::default());
    for (table, key) in [
        ("[env]\nOPENAI_API_KEY = \"sk-live-abcdefghijklmnop\"\n", "OPENAI_API_KEY"),
        ("[env]\nTOKEN_X = \"ghp_abcdefghijklmnop1234\"\n", "TOKEN_X"),
    ] {
        let pipeline =
            format!("name = \"p\"\n{table}[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n");
        let res = up.start_run(None, json!({"pipeline": pipeline})).await;
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["code"], "invalid_pipeline");
        assert!(body["detail"].as_str().is_some_and(|d| d.contains(key) && d.contains("secrets")), "{body}");
    }
    let pipeline = "name = \"p\"\nsecrets = [\"NOT_SET_ANYWHERE_SECRET\"]\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n";
    let res = up.start_run(None, json!({"pipeline": pipeline})).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("NOT_SET_ANYWHERE_SECRET")), "{body}");
}

#[test]
fn helix_config_masks_passwords_in_urls() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = helix(dir.path())
        .arg("config")
        .env("HELIX_BREAKER_GATEWAY__REDIS_URL", "redis://:s3cr3t-pw@127.0.0.1:6379/0")
        .env("HELIX_ORCHESTRATOR__ESCALATION_WEBHOOK", "https://hook-user:hook-pw@hooks.example/x")
        .output()
        .expect("helix config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("s3cr3t-pw") && !text.contains("hook-pw"), "{text}");
    assert!(text.contains("redis://:***@127.0.0.1:6379/0") && text.contains("hook-user:***@"), "{text}");
}

#[tokio::test]
async fn an_upstream_error_that_echoes_the_key_is_relayed_masked() {
    let key = unique("sk-upstream-");
    let body = json!({"error": {"message": format!("Incorrect API key provided: {key}. Also tried Bearer {key}"), "type": "invalid_request_error", "code": "invalid_api_key"}});
    let upstream = Upstream::start(401, body.to_string());
    let up = Up::start(Options {
        config: gateway_config(&upstream.url, Some("UPSTREAM_KEY")),
        env: vec![("UPSTREAM_KEY".into(), key.clone())],
        ..Options::default()
    });
    let gw = up.url("breaker-gateway");
    let chat = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});
    for (path, stream) in
        [("/v1/chat/completions", false), ("/v1/messages", false), ("/v1/chat/completions", true)]
    {
        let mut req = chat.clone();
        req["stream"] = json!(stream);
        req["max_tokens"] = json!(10);
        let res = http().post(format!("{gw}{path}")).json(&req).send().await.expect("send");
        let text = res.text().await.expect("body");
        assert!(!text.contains(&key), "{path} stream={stream}: {text}");
        assert!(text.contains("Incorrect API key provided"), "the message itself is kept: {text}");
    }
    assert!(
        upstream.seen.lock().expect("seen").iter().any(|s| s.path == "/v1/chat/completions"
            && s.headers.iter().any(|(k, v)| k == "authorization" && v.contains(&key))),
        "the key did go upstream"
    );
    assert!(!up.stderr().contains(&key));
    assert!(found_under(&up.data(), &key).is_empty());
}
