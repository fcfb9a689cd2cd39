//! LLM repair end to end (`[phase.repair]`): a failure no fix of the healer's solves is sent to
//! the gateway (the fake provider answers a scripted diff), the diff is checked and applied by the
//! next attempt, and its outcome is recorded with the healer, which learns it: the next run with
//! the same failure is healed from the learned fix with no LLM call at all, and a variant naming
//! another key gets the fix re-based.

use helix_tests::fake_provider::{FakeProvider, Mode};

use super::*;

const TYPO_APP: &str = "def hello():\n    return \"hello\"\n\n\nprint(TYPO())\n";

fn repair_answer(patch: &str) -> Mode {
    Mode::Text { text: json!({"explanation": "call the function that exists", "patch": patch}).to_string() }
}

fn typo_patch(typo: &str) -> String {
    format!("--- a/app.py\n+++ b/app.py\n@@ -5,1 +5,1 @@\n-print({typo}())\n+print(hello())\n")
}

fn python_pipeline() -> String {
    r#"name = "typo"

[[phase]]
name = "run"
kind = "command"
run = ["python3", "app.py"]
retries = 2

[phase.repair]
model = "smart"
max_reasks = 1
"#
    .to_owned()
}

async fn workdir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

#[tokio::test]
async fn a_typo_is_repaired_by_a_scripted_diff_and_the_next_run_heals_from_the_learned_fix() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| {
        c.breaker_gateway.max_retries = 0;
        serve_smart_from(&mut c.breaker_gateway, fake_url);
    })
    .await;
    let calls = || fake.requests_to("/v1/chat/completions").len();

    // the first answer's diff does not apply (wrong context): re-asked with the reason
    fake.script([repair_answer(&typo_patch("nope")), repair_answer(&typo_patch("helo"))]);
    let ws = workdir_with(&[("app.py", &TYPO_APP.replace("TYPO", "helo"))]).await;
    let done = o.run_inline(&python_pipeline(), "repairs", Some(ws.path())).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let tries = attempts(&done["phases"][0]);
    assert_eq!(tries.len(), 2, "{done:#}");
    let heal = &tries[0]["heal"];
    assert_eq!(heal["action"], "fix_applied", "{heal:#}");
    assert_eq!(heal["fix"]["origin"], "llm_repair", "{heal:#}");
    assert_eq!(heal["fix"]["key"], "helo", "{heal:#}");
    assert_eq!(heal["repair"]["calls"], 2, "{heal:#}");
    assert!(heal["fix"]["source"].as_str().is_some_and(|s| s.starts_with("llm repair (smart)")), "{heal:#}");
    assert_eq!(calls(), 2);
    // what the model was shown: the error, where it points, the file's text
    let asked = fake.requests_to("/v1/chat/completions")[0].body.to_string();
    assert!(asked.contains("NameError: name 'helo' is not defined"), "{asked}");
    assert!(asked.contains("### app.py (lines 1-5 of 5)") && asked.contains("print(helo())"), "{asked}");
    let reasked = fake.requests_to("/v1/chat/completions")[1].body.to_string();
    assert!(reasked.contains("does not apply to the workspace"), "the re-ask says why: {reasked}");
    assert_eq!(
        std::fs::read_to_string(workspace(&done).join("app.py")).expect("app"),
        TYPO_APP.replace("TYPO", "hello")
    );
    // the healer learned it
    let sig = heal["signature"].as_str().expect("signature");
    let healer = o.helix.url(ServiceKind::Healer);
    let report = get_json(&o.http, &format!("{healer}/v1/signatures/{sig}?project=repairs")).await;
    let learned = &report["fixes"][0];
    assert_eq!(
        (learned["source"].as_str(), learned["learned"].as_bool()),
        (Some("llm_repair"), Some(true)),
        "{report:#}"
    );

    // the same failure again: healed from the learned fix, no LLM call
    let again = o.run_inline(&python_pipeline(), "repairs", Some(ws.path())).await;
    assert_eq!(again["status"], "succeeded", "{again:#}");
    let heal = &attempts(&again["phases"][0])[0]["heal"];
    assert_eq!(heal["action"], "fix_applied", "{heal:#}");
    assert!(
        heal["fix"]["source"].as_str().is_some_and(|s| s.contains("learned from an LLM repair")),
        "{heal:#}"
    );
    assert!(heal["repair"].is_null(), "{heal:#}");
    assert_eq!(calls(), 2, "healed with zero LLM calls");

    // the same kind of error naming another name: the learned patch re-based on it
    let other = workdir_with(&[("app.py", &TYPO_APP.replace("TYPO", "hllo"))]).await;
    let rebased = o.run_inline(&python_pipeline(), "repairs", Some(other.path())).await;
    assert_eq!(rebased["status"], "succeeded", "{rebased:#}");
    let fix = &attempts(&rebased["phases"][0])[0]["heal"]["fix"];
    assert!(fix["patch"].as_str().is_some_and(|p| p.contains("-print(hllo())")), "{fix:#}");
    assert_eq!(calls(), 2, "re-based, not asked again");
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_rust_type_mismatch_is_repaired_and_a_diff_leaving_the_workspace_is_refused() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| {
        c.breaker_gateway.max_retries = 0;
        serve_smart_from(&mut c.breaker_gateway, fake_url);
    })
    .await;
    let target = tempfile::tempdir().expect("cargo target dir");
    let main = "fn main() {\n    let port: u16 = \"8080\";\n    println!(\"{port}\");\n}\n";
    let ws = workdir_with(&[
        (
            "Cargo.toml",
            "[package]\nname = \"mismatch\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        ),
        ("src/main.rs", main),
    ])
    .await;
    let escape = "--- a/../escape.rs\n+++ b/../escape.rs\n@@ -0,0 +1,1 @@\n+pwned\n";
    let fixed = "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -2,1 +2,1 @@\n-    let port: u16 = \"8080\";\n+    let port: u16 = 8080;\n";
    fake.script([repair_answer(escape), repair_answer(fixed)]);
    let pipeline = format!(
        r#"name = "rust-types"

[[phase]]
name = "build"
kind = "command"
run = ["cargo", "build", "--offline", "--quiet"]
retries = 1
timeout = "5m"

[phase.env]
CARGO_TARGET_DIR = {target}
CARGO_TERM_COLOR = "never"

[phase.repair]
model = "smart"
"#,
        target = path_str(target.path())
    );
    let done = o.run_inline(&pipeline, "rust-repairs", Some(ws.path())).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let heal = &attempts(&done["phases"][0])[0]["heal"];
    assert_eq!(heal["fix"]["origin"], "llm_repair", "{heal:#}");
    assert_eq!(heal["repair"]["calls"], 2, "the escaping diff was refused and re-asked: {heal:#}");
    let asked = fake.requests_to("/v1/chat/completions")[0].body.to_string();
    assert!(asked.contains("mismatched types") && asked.contains("let port: u16 = \\\"8080\\\";"), "{asked}");
    let reasked = fake.requests_to("/v1/chat/completions")[1].body.to_string();
    assert!(reasked.contains("cannot be used"), "{reasked}");
    assert!(!ws.path().parent().expect("parent").join("escape.rs").exists());
    assert!(
        std::fs::read_to_string(workspace(&done).join("src/main.rs")).expect("main").contains("u16 = 8080;")
    );
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn an_escalation_after_a_failed_repair_carries_an_adr_proposal_drafted_by_the_repair_model() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let (hook, mut calls) = webhook(Duration::ZERO).await;
    let o = Orch::start_with(|c| {
        c.breaker_gateway.max_retries = 0;
        c.orchestrator.escalation_webhook = Some(hook.clone());
        serve_smart_from(&mut c.breaker_gateway, fake_url);
    })
    .await;
    // the repair answers a diff that does not apply (so the last attempt fails too); then the
    // ADR draft
    let adr = "## Context\nThe greeting is called by a name that does not exist.\n\n## Options\n1. Rename\n2. Alias\n\n## Recommendation\nRename ZQX-ADR.";
    fake.script([repair_answer(&typo_patch("nope")), Mode::Text { text: adr.to_owned() }]);
    let ws = workdir_with(&[("app.py", &TYPO_APP.replace("TYPO", "helo"))]).await;
    let pipeline =
        python_pipeline().replace("retries = 2", "retries = 1").replace("max_reasks = 1", "max_reasks = 0");
    let done = o.run_inline(&pipeline, "adr", Some(ws.path())).await;
    assert_eq!(done["status"], "needs_human", "{done:#}");
    let call = tokio::time::timeout(Duration::from_secs(30), calls.recv())
        .await
        .expect("the webhook")
        .expect("a body");
    let report = call["report"].as_str().expect("report");
    let asked = fake.requests_to("/v1/chat/completions");
    assert!(
        report.contains("## ADR proposal (a draft by smart, to be reviewed)"),
        "{report}\n{:#?}",
        asked.iter().map(|r| r.body.to_string()).collect::<Vec<_>>()
    );
    assert!(report.contains("Rename ZQX-ADR"), "{report}");
    assert_eq!(asked.len(), 2, "one repair, one ADR draft");
    assert!(asked[1].body.to_string().contains("what was tried"), "the draft is made from the report");
    let file = read(&o.run_dir(id_of(&done)).join("escalation.md"));
    assert_eq!(file, report);
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_decision_gate_stops_for_a_person_with_an_adr_draft_and_passes_with_the_answer() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let (hook, mut calls) = webhook(Duration::ZERO).await;
    let o = Orch::start_with(|c| {
        c.breaker_gateway.max_retries = 0;
        c.orchestrator.escalation_webhook = Some(hook.clone());
        serve_smart_from(&mut c.breaker_gateway, fake_url);
    })
    .await;
    fake.set_default(Mode::Text {
        text:
            "## Context\nTwo stores.\n## Options\n1. SQLite\n2. Postgres\n## Recommendation\nPostgres ZQX-DB."
                .to_owned(),
    });
    let pipeline = r#"name = "decide"

[[phase]]
name = "design"
kind = "command"
run = ["true"]

[[phase.gate]]
name = "database"
kind = "decision"
question = "Which database should the service use: SQLite or Postgres?"
model = "smart"

[[phase]]
name = "after"
kind = "command"
run = ["true"]
"#;
    let done = o.run_inline(pipeline, "decisions", None).await;
    assert_eq!(done["status"], "needs_human", "{done:#}");
    let tries = attempts(&done["failed"]);
    assert_eq!(tries.len(), 1, "a decision is not retried: {done:#}");
    assert_eq!(tries[0]["heal"]["failure_class"], "decision");
    assert_eq!(tries[0]["heal"]["action"], "ask_human");
    let call = tokio::time::timeout(Duration::from_secs(30), calls.recv())
        .await
        .expect("the webhook")
        .expect("a body");
    let report = call["report"].as_str().expect("report");
    assert!(report.contains("Which database should the service use"), "{report}");
    assert!(report.contains("Postgres ZQX-DB") && report.contains("## ADR proposal"), "{report}");

    // answered with the resume: the gate passes with it, and the run goes on
    let id = id_of(&done).to_owned();
    let res = o
        .post_after_final(
            &format!("/v1/runs/{id}/resume"),
            &json!({"decision": "Postgres, for the replicas"}),
            409,
        )
        .await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap_or_default());
    let resumed = o.wait_final(&id).await;
    assert_eq!(resumed["status"], "succeeded", "{resumed:#}");
    let g = gate(&attempts(&resumed["phases"][0]).last().cloned().expect("attempt"), "database").clone();
    assert_eq!(g["passed"], true, "{g:#}");
    assert!(g["detail"].as_str().is_some_and(|d| d.contains("decided: Postgres, for the replicas")), "{g:#}");

    // a finished run takes no decision; an empty one is refused before anything
    let res = o.post(&format!("/v1/runs/{id}/resume"), &json!({"decision": "x"})).await;
    assert_eq!(res.status(), 409);
    let res = o.post(&format!("/v1/runs/{id}/resume"), &json!({"decision": "  "})).await;
    assert_eq!(res.status(), 400);
    o.helix.stop().await;
    fake.stop().await;
}
