//! The healer over HTTP: analysis of real tool output, bad input.

use helix_core::ServiceKind;
use helix_tests::{Helix, client, expect_problem, get_json};
use serde_json::json;

async fn analyze(helix: &Helix, body: serde_json::Value) -> serde_json::Value {
    let res = client()
        .post(format!("{}/v1/analyze", helix.url(ServiceKind::Healer)))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

#[tokio::test]
async fn analyze_finds_the_root_cause_with_signature_category_and_key() {
    let helix = Helix::start().await;
    let output = "\u{1b}[1m\u{1b}[31merror[E0432]\u{1b}[0m: unresolved import `serde_json`\n --> src/main.rs:1:5\n  |\n1 | use serde_json::Value;\n  |     ^^^^^^^^^^ use of unresolved module or unlinked crate `serde_json`\n  |\n  = help: you might be missing a crate named `serde_json`\n\nwarning: unused variable: `x`\n --> src/main.rs:3:9\n\nerror: aborting due to 1 previous error; 1 warning emitted\n";
    let a = analyze(&helix, json!({"output": output, "tool": "cargo", "exit_code": 101})).await;
    let diags = a["diagnostics"].as_array().expect("diagnostics");
    assert_eq!(diags.len(), 2, "{a}");
    let p = &diags[a["primary"].as_u64().expect("primary") as usize];
    assert_eq!(p["category"], "missing_dependency");
    assert_eq!(p["failure_class"], "environment");
    assert_eq!(p["key"], "serde_json");
    assert_eq!(p["code"], "E0432");
    assert_eq!(p["location"]["file"], "src/main.rs");
    assert_eq!(p["location"]["line"], 1);
    assert_eq!(p["params"]["crate"], "serde_json");
    assert_eq!(p["template"], "error[E0432]: unresolved import `<crate>`");
    assert_eq!(p["signature"].as_str().expect("sig").len(), 64);
    assert_eq!(p["signature_version"], "v1");
    assert_eq!(p["matches"][0]["id"], "rust.unlinked-crate");
    assert!(p["matches"][0]["fixes"][0].as_str().expect("fix").contains("cargo add serde_json"));

    // the same cause in another project, another crate: the same signature
    let other = output.replace("serde_json", "tokio").replace("src/main.rs", "crates/x/src/lib.rs");
    let b = analyze(&helix, json!({"output": other})).await;
    let q = &b["diagnostics"][b["primary"].as_u64().expect("primary") as usize];
    assert_eq!(q["signature"], p["signature"]);
    assert_eq!(q["key"], "tokio");
    helix.stop().await;
}

#[tokio::test]
async fn empty_and_unrecognised_output() {
    let helix = Helix::start().await;
    let a = analyze(&helix, json!({"output": ""})).await;
    assert_eq!(a, json!({"diagnostics": [], "primary": null}));
    let a = analyze(&helix, json!({"output": "done in 3s\n", "exit_code": 0})).await;
    assert_eq!(a["diagnostics"], json!([]));
    let a = analyze(&helix, json!({"output": "step 1\nstep 2 went sideways\n", "exit_code": 2})).await;
    assert_eq!(a["diagnostics"][0]["message"], "step 2 went sideways");
    assert_eq!(a["diagnostics"][0]["category"], "unknown");
    helix.stop().await;
}

#[tokio::test]
async fn bad_input_is_rejected_clearly_and_junk_is_bounded() {
    let helix = Helix::start_with(|c| c.max_body_bytes = 6 * 1024 * 1024).await;
    let url = format!("{}/v1/analyze", helix.url(ServiceKind::Healer));
    let res = client().post(&url).json(&json!({"output": "x", "outptu": 1})).send().await.expect("send");
    let body = expect_problem(res, 400, "invalid_request").await;
    assert!(body["detail"].as_str().expect("detail").contains("outptu"), "{body}");
    let res = client().post(&url).json(&json!({"tool": "python"})).send().await.expect("send");
    let body = expect_problem(res, 400, "invalid_request").await;
    assert!(body["detail"].as_str().expect("detail").contains("output"), "{body}");

    // 10 MB of junk: over the limit
    let junk: String =
        (0..10_000_000u32).map(|i| char::from(b'!' + (i.wrapping_mul(2_654_435_761) >> 27) as u8)).collect();
    let res = client().post(&url).json(&json!({"output": junk})).send().await.expect("send");
    expect_problem(res, 413, "payload_too_large").await;

    // 4 MB of binary-looking junk with error words sprinkled in: a bounded answer
    let mut junk = String::with_capacity(4_000_000);
    let mut x: u32 = 7;
    while junk.len() < 4_000_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let c = char::from_u32(0x20 + x % 0x2000).unwrap_or('?');
        junk.push(c);
        if x.is_multiple_of(97) {
            junk.push_str(" error: failed\n");
        }
    }
    let a = analyze(&helix, json!({"output": junk, "exit_code": 1})).await;
    let n = a["diagnostics"].as_array().expect("diagnostics").len();
    assert!((1..=50).contains(&n), "{n} diagnostics");
    helix.stop().await;
}

#[tokio::test]
async fn fixes_are_learned_ranked_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_tests::test_config(dir.path());
    let start = |cfg: helix_core::HelixConfig| async move {
        helix::stack::Stack::start(&cfg, &[ServiceKind::Healer]).await.expect("start")
    };
    let stack = start(cfg.clone()).await;
    let url = stack.url(ServiceKind::Healer).expect("url");
    let http = client();
    let out = "Traceback (most recent call last):\n  File \"/w/a.py\", line 1, in <module>\n    import yaml\nModuleNotFoundError: No module named 'yaml'\n";
    let a: serde_json::Value = http
        .post(format!("{url}/v1/analyze"))
        .json(&json!({"output": out, "project": "alpha"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let sig = a["diagnostics"][0]["signature"].as_str().expect("sig").to_owned();

    for (desc, outcome) in [
        ("pin yaml==6", "failure"),
        ("add PyYAML to requirements.txt", "success"),
        ("Add PyYAML to requirements.txt", "success"),
    ] {
        let res = http
            .post(format!("{url}/v1/fixes"))
            .json(&json!({"signature": sig, "description": desc, "outcome": outcome, "project": "alpha", "phase": "build"}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 201);
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["signature"], sig.as_str());
    }
    let report: serde_json::Value = get_json(&http, &format!("{url}/v1/signatures/{sig}")).await;
    assert_eq!(report["occurrences"], 1);
    assert_eq!(report["category"], "missing_dependency");
    assert_eq!(report["fixes"][0]["successes"], 2);
    assert_eq!(report["fixes"][1]["failures"], 1);
    assert!(report["summary"].as_str().expect("summary").starts_with("solved 2x like this"), "{report}");

    // another project's hint does not draw on alpha's fixes (healer.share_hints is off)
    let other: serde_json::Value =
        get_json(&http, &format!("{url}/v1/hints?signature={sig}&project=beta")).await;
    let other = other["hint"].as_str().expect("hint");
    assert!(!other.contains("PyYAML to requirements") && !other.contains("pin yaml"), "{other}");
    let hint: serde_json::Value =
        get_json(&http, &format!("{url}/v1/hints?signature={sig}&project=alpha")).await;
    let text = hint["hint"].as_str().expect("hint");
    assert!(text.contains("project alpha; reported by anonymous"), "provenance: {text}");
    assert!(
        text.contains("worked 2x") && text.contains("PyYAML") && text.contains("not instructions"),
        "{text}"
    );
    assert!(text.contains("do not repeat") && text.contains("pin yaml==6"), "{text}");
    assert_eq!(hint["pattern"], "python.module-not-found");

    // restart on the same data directory: nothing is lost
    stack.stop().await.expect("stop");
    cfg.healer_port = 0;
    let stack = start(cfg).await;
    let url = stack.url(ServiceKind::Healer).expect("url");
    let again: serde_json::Value = get_json(&http, &format!("{url}/v1/signatures/{sig}")).await;
    assert_eq!(again["occurrences"], 1, "occurrences flushed at shutdown");
    assert_eq!(again["fixes"], report["fixes"]);
    stack.stop().await.expect("stop");
}

#[tokio::test]
async fn learning_endpoints_reject_bad_input() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::Healer);
    let http = client();
    let res = http.get(format!("{url}/v1/signatures/not-a-signature")).send().await.expect("send");
    expect_problem(res, 400, "invalid_request").await;
    let unknown = "0".repeat(64);
    let res = http.get(format!("{url}/v1/signatures/{unknown}")).send().await.expect("send");
    expect_problem(res, 404, "not_found").await;
    let res = http.get(format!("{url}/v1/hints")).send().await.expect("send");
    expect_problem(res, 400, "invalid_query").await;
    let res = http
        .post(format!("{url}/v1/fixes"))
        .json(&json!({"signature": unknown, "description": "x", "outcome": "maybe"}))
        .send()
        .await
        .expect("send");
    let body = expect_problem(res, 400, "invalid_request").await;
    assert!(body["detail"].as_str().expect("detail").contains("maybe"), "{body}");
    let res = http
        .post(format!("{url}/v1/fixes"))
        .json(&json!({"signature": "abc", "description": "x", "outcome": "success"}))
        .send()
        .await
        .expect("send");
    expect_problem(res, 400, "invalid_request").await;
    helix.stop().await;
}

#[tokio::test]
async fn pattern_search_detail_and_similar_matches() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::Healer);
    let http = client();
    let list: serde_json::Value =
        get_json(&http, &format!("{url}/v1/patterns?q=header%20not%20found&limit=5")).await;
    let ids: Vec<&str> =
        list["patterns"].as_array().expect("patterns").iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(ids.contains(&"c.missing-header"), "{list}");
    assert!(list["total"].as_u64().expect("total") >= 80);
    assert!(list["patterns"][0]["score"].as_f64().expect("score") > 0.0);

    let all: serde_json::Value = get_json(&http, &format!("{url}/v1/patterns?limit=200")).await;
    assert_eq!(
        all["patterns"].as_array().expect("patterns").len() as u64,
        all["total"].as_u64().expect("total").min(200)
    );

    let p: serde_json::Value = get_json(&http, &format!("{url}/v1/patterns/python.module-not-found")).await;
    assert_eq!(p["category"], "missing_dependency");
    assert_eq!(p["key"], "module");
    assert_eq!(p["actions"][0]["kind"], "add_dependency");
    assert!(p["source"].as_str().expect("source").starts_with("python.toml:"));
    let res = http.get(format!("{url}/v1/patterns/no.such.pattern")).send().await.expect("send");
    expect_problem(res, 404, "not_found").await;
    let res = http.get(format!("{url}/v1/patterns?limit=0")).send().await.expect("send");
    expect_problem(res, 400, "invalid_query").await;

    // an error no pattern knows word for word still gets ranked suggestions
    let a = analyze(&helix, json!({"output": "fatal: the frobnication module 'quux' could not be imported by the loader\n", "exit_code": 1})).await;
    let d = &a["diagnostics"][0];
    let kinds: Vec<&str> =
        d["matches"].as_array().expect("matches").iter().filter_map(|m| m["kind"].as_str()).collect();
    assert!(kinds.contains(&"similar_pattern"), "{d}");
    let scores: Vec<f64> =
        d["matches"].as_array().expect("matches").iter().filter_map(|m| m["score"].as_f64()).collect();
    assert!(scores.iter().all(|s| *s > 0.0 && *s <= 1.0), "{scores:?}");

    // a recorded fix shows up in the next analysis of the same signature, first
    let out = "bash: line 1: helm: command not found\n";
    let a = analyze(&helix, json!({"output": out})).await;
    let sig = a["diagnostics"][0]["signature"].as_str().expect("sig").to_owned();
    let res = http
        .post(format!("{url}/v1/fixes"))
        .json(&json!({"signature": sig, "description": "install helm from the vendored tarball", "outcome": "success"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
    let a = analyze(&helix, json!({"output": out.replace("helm", "kubectl")})).await;
    let m = &a["diagnostics"][0]["matches"][0];
    assert_eq!(m["kind"], "fix", "{a}");
    assert_eq!(m["title"], "solved 1x like this");
    helix.stop().await;
}

#[tokio::test]
async fn proposes_patches_from_patterns_and_compiler_suggestions() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::Healer);
    let http = client();
    // analysis → propose, with the manifest's content
    let a = analyze(&helix, json!({"output": "Traceback (most recent call last):\n  File \"app.py\", line 1, in <module>\n    import sklearn\nModuleNotFoundError: No module named 'sklearn'\n"})).await;
    let res: serde_json::Value = http
        .post(format!("{url}/v1/fixes/propose"))
        .json(&json!({"analysis": a, "files": [{"path": "requirements.txt", "content": "numpy\n"}]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let fix = &res["fixes"][0];
    assert_eq!(fix["kind"], "patch", "{res}");
    assert_eq!(fix["confidence"], "auto");
    assert_eq!(fix["source"], "pattern:python.module-not-found");
    assert_eq!(
        fix["patch"],
        "--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1,1 +1,2 @@\n numpy\n+scikit-learn\n"
    );

    // cargo JSON output: the compiler's MachineApplicable suggestion becomes an auto patch
    let src = "fn main() {\n    let x = 1\n    println!(\"{x}\");\n}\n";
    let at = src.find("= 1").expect("pos") + 3;
    let msg = json!({"reason": "compiler-message", "package_id": "app", "target": {"name": "app"}, "message": {
        "rendered": "error: expected `;`, found `println`", "level": "error", "message": "expected `;`, found `println`", "code": null,
        "spans": [{"file_name": "src/main.rs", "byte_start": at, "byte_end": at, "line_start": 2, "line_end": 2, "column_start": 14, "column_end": 14, "is_primary": true, "label": "expected `;`"}],
        "children": [{"level": "help", "message": "add `;` here", "spans": [{"file_name": "src/main.rs", "byte_start": at, "byte_end": at, "line_start": 2, "line_end": 2, "column_start": 14, "column_end": 14, "is_primary": true, "suggested_replacement": ";", "suggestion_applicability": "MachineApplicable"}]}]
    }});
    let output = format!("{msg}\n{{\"reason\":\"build-finished\",\"success\":false}}\n");
    let res: serde_json::Value = http
        .post(format!("{url}/v1/fixes/propose"))
        .json(&json!({"output": output, "files": [{"path": "src/main.rs", "content": src}]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let fix = &res["fixes"][0];
    assert_eq!(fix["source"], "rustc", "{res}");
    assert_eq!(fix["confidence"], "auto");
    assert!(fix["patch"].as_str().expect("patch").contains("+    let x = 1;\n"), "{res}");

    let res: serde_json::Value = http
        .post(format!("{url}/v1/fixes/propose"))
        .json(&json!({"files": []}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(res, json!({"fixes": []}));
    let res = http
        .post(format!("{url}/v1/fixes/propose"))
        .json(&json!({"output": "x", "file": []}))
        .send()
        .await
        .expect("send");
    expect_problem(res, 400, "invalid_request").await;
    helix.stop().await;
}

#[tokio::test]
async fn raw_text_bodies_are_analysed_and_invalid_utf8_is_decoded_lossily() {
    let helix = Helix::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    let url = format!("{}/v1/analyze", helix.url(ServiceKind::Healer));
    let mut body = b"\xff\xfe\x00junk\n".to_vec();
    body.extend_from_slice(b"bash: line 1: helmfile: command not found\n");
    let res = client()
        .post(format!("{url}?tool=bash&exit_code=127&project=ops"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let a: serde_json::Value = res.json().await.expect("json");
    let p = &a["diagnostics"][a["primary"].as_u64().expect("primary") as usize];
    assert_eq!(p["category"], "command_not_found");
    assert_eq!(p["key"], "helmfile");

    let res = client()
        .post(&url)
        .header("content-type", "text/plain")
        .body(vec![b'x'; 100 * 1024])
        .send()
        .await
        .expect("send");
    expect_problem(res, 413, "payload_too_large").await;
    let res = client()
        .post(&url)
        .header("content-type", "application/xml")
        .body("<a/>")
        .send()
        .await
        .expect("send");
    expect_problem(res, 415, "unsupported_media_type").await;
    let res = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("[\"output\"]")
        .send()
        .await
        .expect("send");
    expect_problem(res, 400, "invalid_request").await;
    let res = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"output\": ")
        .send()
        .await
        .expect("send");
    expect_problem(res, 400, "invalid_json").await;
    helix.stop().await;
}

#[tokio::test]
async fn an_invalid_pattern_file_stops_start_up_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let patterns = dir.path().join("patterns");
    std::fs::create_dir_all(&patterns).expect("mkdir");
    std::fs::write(patterns.join("mine.toml"), "ecosystem = \"x\"\n[[patterns]]\nid = \"x.a\"\ntitle = \"t\"\nmatch = 'a'\ncategory = \"sorta_broken\"\nexplanation = \"e\"\n").expect("write");
    let mut cfg = helix_tests::test_config(dir.path());
    cfg.healer.patterns_dir = Some(patterns.clone());
    let err = helix::stack::Stack::start(&cfg, &[ServiceKind::Healer]).await.err().expect("must not start");
    let msg = format!("{err:#}");
    assert!(msg.contains("mine.toml:6") && msg.contains("sorta_broken"), "{msg}");

    // a valid directory replaces the seed patterns
    std::fs::write(patterns.join("mine.toml"), "ecosystem = \"x\"\n[[patterns]]\nid = \"x.zebra\"\ntitle = \"zebra\"\nmatch = 'zebra (?P<what>\\w+) escaped'\ncategory = \"runtime_error\"\nkey = \"what\"\nexplanation = \"e\"\n").expect("write");
    let stack = helix::stack::Stack::start(&cfg, &[ServiceKind::Healer]).await.expect("start");
    let url = stack.url(ServiceKind::Healer).expect("url");
    let a: serde_json::Value = client()
        .post(format!("{url}/v1/analyze"))
        .json(&json!({"output": "error: zebra stripes escaped\n"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(a["diagnostics"][0]["key"], "stripes", "{a}");
    assert_eq!(a["diagnostics"][0]["matches"][0]["id"], "x.zebra");
    stack.stop().await.expect("stop");
}

/// Hostile bodies near the size limit (one line of 7 MiB built to make a parser rescan it, a
/// fingerprint of the same size) are answered, and `/health` keeps answering while they are
/// analysed: the work is linear and runs off the async runtime.
#[tokio::test]
async fn hostile_bodies_near_the_size_limit_are_answered_while_health_answers() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::Healer);
    let size = 7 << 20;
    let mut pending = Vec::new();
    for unit in ["1-", "a.c:1:1: error: ", "'a ", "{\"error\": ", "`x"] {
        let body = unit.repeat(size / unit.len());
        let url = url.clone();
        pending.push(tokio::spawn(async move {
            let res = client()
                .post(format!("{url}/v1/analyze?exit_code=1"))
                .header("content-type", "text/plain")
                .body(body)
                .timeout(std::time::Duration::from_secs(300))
                .send()
                .await
                .expect("analyze answered");
            assert_eq!(res.status(), 200, "{unit}");
            let a: serde_json::Value = res.json().await.expect("json");
            let diags = a["diagnostics"].as_array().expect("diagnostics");
            assert!(!diags.is_empty() && diags.len() <= 200, "{unit}: {}", diags.len());
            for d in diags {
                assert!(d["message"].as_str().expect("message").len() <= 4096, "{unit}");
            }
        }));
    }
    {
        let url = url.clone();
        pending.push(tokio::spawn(async move {
            let res = client()
                .post(format!("{url}/v1/fingerprint"))
                .json(&json!({"text": "1-".repeat(size / 2)}))
                .timeout(std::time::Duration::from_secs(300))
                .send()
                .await
                .expect("fingerprint answered");
            assert_eq!(res.status(), 200);
        }));
    }
    let mut probes = 0;
    while pending.iter().any(|t| !t.is_finished()) {
        let res = client()
            .get(format!("{url}/health"))
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .expect("/health answers within 10 s during the analyses");
        assert_eq!(res.status(), 200);
        probes += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for t in pending {
        t.await.expect("request task");
    }
    assert!(probes > 0);
    helix.stop().await;
}

/// `[healer] llm_model`: an unknown root cause is analysed by the LLM through the gateway (the
/// fake provider answers under the schema), cached by signature, shown as `source: llm`, and
/// confirmed or dropped by recorded fix outcomes.
#[tokio::test]
async fn an_unknown_root_cause_gets_a_cached_llm_analysis_that_outcomes_confirm_or_drop() {
    use helix_tests::fake_provider::{FakeProvider, Mode};
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let helix = Helix::start_with(|c| {
        c.breaker_gateway.max_retries = 0;
        helix_tests::serve_from_fake(&mut c.breaker_gateway, fake_url, "analyst", "gpt-4o-mini");
        c.healer.llm_model = Some("analyst".to_owned());
    })
    .await;
    let verdict = |fix: &str| Mode::Text {
        text: json!({
            "category": "resource_exhausted",
            "key": "wt_main",
            "template": "zorp: widget table '<table>' is over its quota",
            "fix": fix,
            "explanation": "The widget table ran out of quota."
        })
        .to_string(),
    };
    fake.set_default(verdict("Raise the quota of wt_main"));
    let secret = "sk-proj-Zq8RtW3vXy9LmN4bKc7HdJ2fGs6TpQ1a";
    let output = format!(
        "starting zorp\nusing OPENAI_API_KEY={secret}\nzorp: widget table 'wt_main' is over its quota\n"
    );
    let body = json!({"output": output, "exit_code": 3, "project": "llm-demo"});
    let a = analyze(&helix, body.clone()).await;
    let p = &a["diagnostics"][a["primary"].as_u64().expect("primary") as usize];
    assert_eq!(p["category"], "resource_exhausted", "{a:#}");
    assert_eq!(p["key"], "wt_main", "{a:#}");
    assert_eq!(p["confidence"], "low", "an LLM's guess is not a pattern: {a:#}");
    let m = p["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .find(|m| m["source"] == "llm")
        .expect("an llm match");
    assert_eq!(m["kind"], "llm");
    assert_eq!(m["fixes"][0], "Raise the quota of wt_main");
    let calls = fake.requests_to("/v1/chat/completions");
    assert_eq!(calls.len(), 1);
    let sent = calls[0].body.to_string();
    assert!(sent.contains("json_schema") && sent.contains("over its quota"), "{sent}");
    assert!(!sent.contains(secret), "the secret reached the LLM: {sent}");

    // the same signature again: from the cache, no second call
    let b = analyze(&helix, body.clone()).await;
    assert_eq!(b["diagnostics"], a["diagnostics"]);
    assert_eq!(fake.requests_to("/v1/chat/completions").len(), 1);

    // a fix with its description worked: confirmed
    let signature = p["signature"].as_str().expect("signature").to_owned();
    let http = client();
    let healer = helix.url(ServiceKind::Healer);
    let res = http
        .post(format!("{healer}/v1/fixes"))
        .json(&json!({"signature": signature, "description": "Raise the quota of wt_main", "outcome": "success", "project": "llm-demo"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
    let c = analyze(&helix, body.clone()).await;
    let llm_match = |a: &serde_json::Value| {
        a["diagnostics"][0]["matches"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["source"] == "llm")
            .cloned()
    };
    assert_eq!(llm_match(&c).expect("still shown")["score"], 0.9, "{c:#}");

    // another unknown failure whose suggested fix failed: dropped, not shown, not asked again
    fake.set_default(verdict("Delete the widget cache"));
    let other = json!({"output": "quux: gasket 17 refused to seat\n", "exit_code": 1, "project": "llm-demo"});
    let d = analyze(&helix, other.clone()).await;
    assert!(llm_match(&d).is_some(), "{d:#}");
    let sig = d["diagnostics"][0]["signature"].as_str().expect("sig").to_owned();
    let res = http
        .post(format!("{healer}/v1/fixes"))
        .json(&json!({"signature": sig, "description": "Delete the widget cache", "outcome": "failure", "project": "llm-demo"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
    let e = analyze(&helix, other).await;
    assert!(llm_match(&e).is_none(), "{e:#}");
    assert_eq!(e["diagnostics"][0]["category"], "unknown", "{e:#}");
    assert_eq!(fake.requests_to("/v1/chat/completions").len(), 2);
    helix.stop().await;
}
