//! Preflight, static half: a phase with `preflight = true` asks the healer's `POST /v1/check`
//! about its workspace before the first attempt. A dependency the sources import but the
//! manifest lacks is reported as an event, and its `auto` fix is applied, so the phase passes on
//! its first attempt; the fix's outcome is reported to the healer.

use super::*;

fn pipeline(preflight: bool) -> String {
    format!(
        r#"name = "preflight"

[[phase]]
name = "install"
kind = "command"
# stands in for `pip install -r requirements.txt && python app.py`: passes once the manifest
# declares what app.py imports
run = ["sh", "-c", "grep -qi '^pyyaml' requirements.txt"]
retries = 0
preflight = {preflight}
"#
    )
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("requirements.txt"), "flask\n").expect("write");
    std::fs::write(dir.path().join("app.py"), "import flask\nimport yaml\n").expect("write");
    dir
}

#[tokio::test]
async fn a_missing_dependency_is_predicted_and_fixed_before_the_first_attempt() {
    let o = Orch::start().await;

    // without preflight the phase fails: the prediction is what makes the difference
    let ws = workspace();
    let done = o.run_inline(&pipeline(false), "preflight-off", Some(ws.path())).await;
    assert_ne!(done["status"], "succeeded", "{done:#}");

    let ws = workspace();
    let done = o.run_inline(&pipeline(true), "preflight-on", Some(ws.path())).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let attempts = attempts(&done["phases"][0]);
    assert_eq!(attempts.len(), 1, "{done:#}");
    assert_eq!(attempts[0]["status"], "passed", "{:#}", attempts[0]);
    let patches = attempts[0]["patches"].as_array().expect("patches");
    assert!(patches.iter().any(|p| p.as_str().is_some_and(|p| p.contains("+PyYAML"))), "{patches:?}");
    let events = o.events(id_of(&done)).await;
    assert!(events.contains("preflight_finding") && events.contains("app.py:2"), "{events}");
    assert!(events.contains("preflight: applied add PyYAML to requirements.txt"), "{events}");
}
