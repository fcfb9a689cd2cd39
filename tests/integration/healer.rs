//! The healer over HTTP: analysis of real tool output, bad input.

use helix_core::ServiceKind;
use helix_tests::{Helix, client, expect_problem};
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
        if x % 97 == 0 {
            junk.push_str(" error: failed\n");
        }
    }
    let a = analyze(&helix, json!({"output": junk, "exit_code": 1})).await;
    let n = a["diagnostics"].as_array().expect("diagnostics").len();
    assert!((1..=50).contains(&n), "{n} diagnostics");
    helix.stop().await;
}
