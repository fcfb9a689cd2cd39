//! Flaky tests end to end: a cargo test that fails every other run (its counter lives outside the
//! workspace), found by re-running it alone, recorded with the real healer (`GET /v1/flaky`), and
//! quarantined or failed as the phase says; known-flaky tests are re-run in a phase that does not
//! ask for it.

use super::*;

const FLAKY_TEST: &str = r#"#[cfg(test)]
mod tests {
    #[test]
    fn steady() {}

    #[test]
    fn every_other_run() {
        let path = std::env::var("FLAKY_COUNTER").expect("FLAKY_COUNTER");
        let n: u32 = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        std::fs::write(&path, (n + 1).to_string()).expect("count");
        assert!(n % 2 == 1, "failed on run {n} (every even run fails)");
    }
}
"#;

fn crate_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"flaky\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("src/lib.rs"), FLAKY_TEST).expect("write");
    dir
}

fn pipeline(scratch: &Path, flaky_table: &str) -> String {
    format!(
        r#"name = "flaky"

[[phase]]
name = "test"
kind = "command"
run = ["true"]
retries = 0
{flaky_table}

[phase.env]
CARGO_TARGET_DIR = {target}
FLAKY_COUNTER = {counter}
CARGO_TERM_COLOR = "never"

[[phase.gate]]
name = "unit tests"
kind = "command"
run = ["cargo", "test", "--offline", "-q"]
timeout = "5m"
"#,
        target = path_str(&scratch.join("target")),
        counter = path_str(&scratch.join("counter")),
    )
}

#[tokio::test]
async fn a_test_failing_every_other_run_is_found_flaky_quarantined_or_failed_and_known_next_time() {
    let o = Orch::start().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let ws = crate_dir();

    // quarantined: the gate warns, the run succeeds with a warning
    let table = "\n[phase.flaky]\nreruns = 2\nquarantine = true\n";
    let done = o.run_inline(&pipeline(scratch.path(), table), "flaky-tests", Some(ws.path())).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let attempt = &attempts(&done["phases"][0])[0];
    assert_eq!(attempt["status"], "passed_with_warnings", "{attempt:#}");
    let g = gate(attempt, "unit tests");
    assert_eq!(g["flaky"], json!(["tests::every_other_run"]), "{g:#}");
    assert_eq!(g["severity"], "warn", "{g:#}");
    assert!(g["detail"].as_str().is_some_and(|d| d.contains("quarantined")), "{g:#}");
    let events = o.events(id_of(&done)).await;
    assert!(events.contains("event: flaky"), "{events}");

    // the healer lists it for the project
    let healer = o.helix.url(ServiceKind::Healer);
    let list = get_json(&o.http, &format!("{healer}/v1/flaky?project=flaky-tests")).await;
    let tests = list["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 1, "{list:#}");
    assert_eq!(
        (tests[0]["test"].as_str(), tests[0]["runner"].as_str()),
        (Some("tests::every_other_run"), Some("cargo"))
    );
    assert_eq!(tests[0]["times"], 1);
    assert!(tests[0]["signature"].as_str().is_some_and(|s| s.len() == 64));

    // without quarantine (the default) the gate fails, as flaky
    let table = "\n[phase.flaky]\nreruns = 2\n";
    let failed = o.run_inline(&pipeline(scratch.path(), table), "flaky-tests", Some(ws.path())).await;
    assert_eq!(failed["status"], "needs_human", "{failed:#}");
    let attempt = &attempts(&failed["failed"])[0];
    assert_eq!(attempt["heal"]["failure_class"], "flaky", "{attempt:#}");
    assert_eq!(gate(attempt, "unit tests")["flaky"], json!(["tests::every_other_run"]));

    // a phase that asks nothing: the known-flaky test is re-run at once all the same
    let plain = o.run_inline(&pipeline(scratch.path(), ""), "flaky-tests", Some(ws.path())).await;
    let attempt = &attempts(&plain["failed"])[0];
    assert_eq!(gate(attempt, "unit tests")["flaky"], json!(["tests::every_other_run"]), "{attempt:#}");
    let list = get_json(&o.http, &format!("{healer}/v1/flaky?project=flaky-tests")).await;
    assert_eq!(list["tests"][0]["times"], 3, "{list:#}");

    // in another project it is not known: no re-run, a plain failure
    let other = o.run_inline(&pipeline(scratch.path(), ""), "elsewhere", Some(ws.path())).await;
    let attempt = &attempts(&other["failed"])[0];
    let g = gate(attempt, "unit tests");
    // (its first run is an even one, so it fails, and nothing re-runs it)
    assert_eq!(g["passed"], false, "{g:#}");
    assert!(g.get("flaky").is_none_or(|f| f.as_array().is_none_or(Vec::is_empty)), "{g:#}");
    assert_ne!(attempt["heal"]["failure_class"], "flaky");
    o.helix.stop().await;
}
