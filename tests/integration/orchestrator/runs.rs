//! Runs end to end: healing, gates, outputs, dry runs, replays, resumes, bulkheads, LLM phases.

use super::*;

#[tokio::test]
async fn a_missing_module_is_healed_offline_and_the_healer_learns_the_fix() {
    let o = Orch::start().await;
    let source = fixture("heal");
    let before = read(&source.join("requirements.txt"));
    let view = o.start_run(json!({"pipeline_path": source.join("pipeline.toml"), "project": "heal"})).await;
    let done = o.wait_final(id_of(&view)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");

    let phase = &done["phases"][0];
    assert_eq!((phase["name"].as_str(), phase["status"].as_str()), (Some("test"), Some("passed")));
    let tries = attempts(phase);
    assert_eq!(tries.len(), 2, "{phase:#}");
    let first = &tries[0];
    assert!(
        first["outcome"]["output"].as_str().is_some_and(|o| o.contains("No module named 'yaml'")),
        "{first:#}"
    );
    let heal = &first["heal"];
    assert_eq!(heal["action"], "fix_applied", "{heal:#}");
    assert_eq!(heal["failure_class"], "environment", "{heal:#}");
    let patch = heal["fix"]["patch"].as_str().expect("patch");
    assert!(patch.contains("+++ b/requirements.txt") && patch.contains("+PyYAML"), "{patch}");
    assert_eq!(tries[1]["patches"], json!([patch]), "the retry ran with the fix applied");
    assert_eq!(tries[1]["status"], "passed");

    // the fix is in the final workspace, not in the source directory
    let requirements = read(&workspace(&done).join("requirements.txt"));
    assert!(requirements.lines().any(|l| l.trim() == "PyYAML"), "{requirements}");
    assert_eq!(read(&source.join("requirements.txt")), before, "the fixture itself is untouched");

    // the healer learned: the signature has the fix, with a success
    let signature = heal["signature"].as_str().expect("signature");
    let healer = o.helix.url(ServiceKind::Healer);
    let report = get_json(&o.http, &format!("{healer}/v1/signatures/{signature}")).await;
    let fixes = report["fixes"].as_array().unwrap_or_else(|| panic!("{report:#}"));
    assert!(
        fixes.iter().any(|f| f["successes"].as_u64() >= Some(1)
            && f["description"].as_str().is_some_and(|d| d.contains("PyYAML"))),
        "{report:#}"
    );

    // the whole story is one trace in the collector (the emitter sends in batches: poll)
    let collector = o.helix.url(ServiceKind::TraceCollector);
    let trace_id = done["trace_id"].as_str().expect("trace id");
    let start = Instant::now();
    let want = ["run", "phase", "gate", "heal"];
    loop {
        let res = o.http.get(format!("{collector}/v1/traces/{trace_id}")).send().await.expect("send");
        let tree: Value = if res.status() == 200 { res.json().await.expect("json") } else { Value::Null };
        let mut spans = Vec::new();
        flatten(&tree["spans"], &mut spans);
        let kinds: Vec<&str> = spans.iter().filter_map(|s| s["kind"].as_str()).collect();
        if want.iter().all(|k| kinds.contains(k)) {
            let heal_span = spans.iter().find(|s| s["kind"] == "heal").expect("heal span");
            assert_eq!(heal_span["attributes"]["helix.heal.action"], "fix_applied", "{heal_span:#}");
            assert!(spans.iter().all(|s| s["trace_id"] == trace_id));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "trace {trace_id} has only {kinds:?}: {tree:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    o.helix.stop().await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_after_a_backoff() {
    let o = Orch::start().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let counter = scratch.path().join("attempts");
    let pipeline = format!(
        r#"name = "transient"
[variables]
counter = {counter}

[[phase]]
name = "fetch"
kind = "command"
shell = true
run = '''
n=$(cat "$counter" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$counter"
if [ "$n" -lt 2 ]; then echo "curl: (56) Recv failure: Connection reset by peer" >&2; exit 56; fi
echo fetched
'''
"#,
        counter = path_str(&counter)
    );
    let done = o.run_inline(&pipeline, "transient", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let tries = attempts(&done["phases"][0]);
    assert_eq!(tries.len(), 2, "{done:#}");
    let heal = &tries[0]["heal"];
    assert_eq!(heal["failure_class"], "transient", "{heal:#}");
    assert_eq!(heal["action"], "retry_backoff", "{heal:#}");
    assert_eq!(heal["backoff_ms"], 20, "the configured first backoff: {heal:#}");
    assert_eq!(tries[0]["outcome"]["exit_code"], 56);
    assert_eq!(read(&counter).trim(), "2");
    o.helix.stop().await;
}

#[tokio::test]
async fn a_deterministic_failure_gets_hints_then_needs_a_human_and_the_webhook_is_called() {
    let (hook, mut calls) = webhook(Duration::ZERO).await;
    let o = Orch::start_with(|c| c.orchestrator.escalation_webhook = Some(hook.clone())).await;
    let pipeline = r#"name = "hints"

[[phase]]
name = "compute"
kind = "command"
run = ["python3", "-c", "import os; open('hints.txt', 'w').write(os.environ.get('HELIX_HINTS', '')); frobnicate()"]
"#;
    let done = o.run_inline(pipeline, "hints", None).await;
    assert_eq!(done["status"], "needs_human", "{done:#}");
    assert!(done["phases"].as_array().is_some_and(Vec::is_empty));
    let failed = &done["failed"];
    assert_eq!(failed["name"], "compute");
    assert_eq!(failed["status"], "needs_human");
    let tries = attempts(failed);
    assert_eq!(tries.len(), 3, "{failed:#}");
    assert!(tries[0]["env"].get("HELIX_HINTS").is_none(), "no hints before the first failure");
    for (i, t) in tries.iter().enumerate() {
        assert!(
            t["outcome"]["output"].as_str().is_some_and(|o| o.contains("NameError")),
            "attempt {}: {t:#}",
            i + 1
        );
    }
    for t in &tries[..2] {
        let heal = &t["heal"];
        assert_eq!(heal["failure_class"], "deterministic", "{heal:#}");
        assert_eq!(heal["action"], "retry_with_hints", "{heal:#}");
        assert!(heal["hints"].as_str().is_some_and(|h| !h.trim().is_empty()), "{heal:#}");
    }
    for t in &tries[1..] {
        let hints = t["env"]["HELIX_HINTS"].as_str().unwrap_or_default();
        assert!(!hints.trim().is_empty(), "attempt {} got hints: {t:#}", t["n"]);
    }
    assert_eq!(tries[1]["env"]["HELIX_HINTS"], tries[0]["heal"]["hints"]);
    assert_eq!(tries[2]["heal"]["action"], "give_up");
    // the process itself saw them (a failed phase's attempt directories are kept)
    let seen = read(&o.run_dir(id_of(&done)).join("work/00-compute/attempt-2/hints.txt"));
    assert_eq!(Some(seen.as_str()), tries[1]["env"]["HELIX_HINTS"].as_str());
    assert!(done["reason"].as_str().is_some_and(|r| r.contains("compute")), "{done:#}");

    let events = o.events(id_of(&done)).await;
    assert!(events.contains("event: escalation"), "{events}");
    assert!(events.contains("event: run_finished"), "{events}");

    let call = tokio::time::timeout(Duration::from_secs(10), calls.recv())
        .await
        .expect("the webhook is called")
        .expect("a body");
    assert_eq!(call["run_id"], done["id"], "{call:#}");
    assert_eq!(call["status"], "needs_human", "{call:#}");
    assert_eq!(call["phase"], "compute", "{call:#}");
    assert!(call["resume_token"].as_str().is_some_and(|t| !t.is_empty()), "{call:#}");
    assert_eq!(call["trace_id"], done["trace_id"]);
    // the report a human reads: what was tried, the diagnostics, the failed output, where to look
    let report = call["report"].as_str().expect("a report");
    assert!(report.contains("## Phase `compute` (command): what was tried"), "{report}");
    assert_eq!(report.matches("| retry_with_hints |").count(), 2, "{report}");
    assert!(report.contains("| give_up |"), "{report}");
    assert!(report.contains("NameError") && report.contains("## Primary diagnostics"), "{report}");
    assert!(report.contains(done["trace_id"].as_str().expect("trace")), "{report}");
    assert!(report.contains("helix resume hxr_"), "{report}");
    let file = read(&o.run_dir(id_of(&done)).join("escalation.md"));
    assert_eq!(file, report, "the same report is in the run's directory");
    o.helix.stop().await;
}

/// A run shows its final status as soon as its last checkpoint is written; from then on it must
/// act like one. The escalation webhook is called after that checkpoint, and a slow receiver
/// (here 3 s; the orchestrator waits up to 5 s) must not keep the run "running" meanwhile.
#[tokio::test]
async fn a_run_that_shows_needs_human_can_be_resumed_at_once() {
    let (hook, mut calls) = webhook(Duration::from_secs(3)).await;
    let o = Orch::start_with(|c| c.orchestrator.escalation_webhook = Some(hook.clone())).await;
    let scratch = tempfile::tempdir().expect("scratch");
    let fixed = scratch.path().join("fixed");
    let pipeline = format!(
        "name = \"fixable\"\n[variables]\nfixed = {}\n\n[[phase]]\nname = \"check\"\nkind = \"command\"\n\
         run = [\"test\", \"-e\", \"{{{{fixed}}}}\"]\nretries = 0\n",
        path_str(&fixed)
    );
    let view = o.start_run(json!({"pipeline": pipeline, "project": "fixable"})).await;
    let id = id_of(&view);
    let stopped = o.wait_final(id).await;
    assert_eq!(stopped["status"], "needs_human", "{stopped:#}");
    // a human fixes the cause and resumes
    std::fs::write(&fixed, "").expect("fix");
    let res = o.post(&format!("/v1/runs/{id}/resume"), &json!({})).await;
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    let call =
        tokio::time::timeout(Duration::from_secs(10), calls.recv()).await.expect("webhook").expect("body");
    assert_eq!(call["status"], "needs_human");
    assert_eq!(
        status, 202,
        "GET showed needs_human, but the resume was refused while the webhook was being called: {body}"
    );
    assert_eq!(o.wait_final(id).await["status"], "succeeded");
    o.helix.stop().await;
}

#[tokio::test]
async fn a_security_failure_escalates_after_one_attempt() {
    let (hook, mut calls) = webhook(Duration::ZERO).await;
    let o = Orch::start_with(|c| c.orchestrator.escalation_webhook = Some(hook.clone())).await;
    let pipeline = r#"name = "scan"

[[phase]]
name = "scan"
kind = "command"
shell = true
run = "echo 'ERROR: secret detected in config.py' >&2; exit 1"

[[phase]]
name = "never"
kind = "command"
run = ["true"]
"#;
    let done = o.run_inline(pipeline, "security", None).await;
    assert_eq!(done["status"], "escalated", "{done:#}");
    let failed = &done["failed"];
    assert_eq!(failed["name"], "scan");
    assert_eq!(failed["status"], "escalated");
    let tries = attempts(failed);
    assert_eq!(tries.len(), 1, "stopped at once: {failed:#}");
    assert_eq!(tries[0]["heal"]["failure_class"], "security");
    assert_eq!(tries[0]["heal"]["action"], "escalate");
    assert_eq!(done["next_phase"], 0);
    assert!(o.events(id_of(&done)).await.contains("event: escalation"));
    let call =
        tokio::time::timeout(Duration::from_secs(10), calls.recv()).await.expect("webhook").expect("body");
    assert_eq!(call["status"], "escalated", "{call:#}");
    o.helix.stop().await;
}

/// A pipeline over the gates fixture: `report` passes with a warning, `feature` adds a test case
/// with `verdict` and writes `feature.json`, judged against the baseline of the test suite.
fn gates_pipeline(verdict: &str, feature_json: &str) -> String {
    format!(
        r#"name = "gates"
[variables]
verdict = {verdict}
feature_json = {feature_json}

[[phase]]
name = "report"
kind = "command"
shell = true
run = '''printf '{{"passed": 3, "failed": 0}}' > report.json; echo "warning: the report format is deprecated"'''
[[phase.gate]]
kind = "json_schema"
file = "report.json"
schema = {{ type = "object", required = ["passed", "failed"], properties = {{ passed = {{ type = "integer" }} }} }}
[[phase.gate]]
name = "no warnings"
kind = "output_matches"
regex = "(?i)warning"
negate = true
on_fail = "warn"

[[phase]]
name = "feature"
kind = "command"
shell = true
run = 'printf "%s\n" "$verdict" > cases/feature.case; printf "%s" "$feature_json" > feature.json'
retries = 0
[[phase.gate]]
kind = "json_schema"
file = "feature.json"
schema = {{ type = "object", required = ["done"], properties = {{ done = {{ type = "boolean" }} }} }}
[[phase.gate]]
name = "suite"
kind = "command"
run = ["python3", "runtests.py"]
baseline = true
"#,
        verdict = toml_str(verdict),
        feature_json = toml_str(feature_json),
    )
}

#[tokio::test]
async fn gates_warn_compare_with_the_baseline_and_check_json_schemas() {
    let o = Orch::start().await;
    let source = fixture("gates");

    // a passing test added, a known failure still failing: no new failures, the gate passes
    let good = o.run_inline(&gates_pipeline("pass", r#"{"done": true}"#), "gates", Some(&source)).await;
    assert_eq!(good["status"], "succeeded", "{good:#}");
    let report = &good["phases"][0];
    assert_eq!(report["status"], "passed_with_warnings", "{report:#}");
    let a = &attempts(report)[0];
    assert_eq!(gate(a, "json_schema")["passed"], true, "{a:#}");
    let warn = gate(a, "no warnings");
    assert_eq!(
        (warn["passed"].as_bool(), warn["severity"].as_str()),
        (Some(false), Some("warn")),
        "{warn:#}"
    );
    let feature = &good["phases"][1];
    assert_eq!(feature["status"], "passed", "{feature:#}");
    let suite = gate(&attempts(feature)[0], "suite");
    assert_eq!(suite["passed"], true, "{suite:#}");
    let detail = suite["detail"].as_str().expect("detail");
    assert!(detail.contains("no new test failures") && detail.contains("known_bug"), "{detail}");

    // a failing test added and an invalid JSON file: both gates fail, naming why
    let bad = o.run_inline(&gates_pipeline("fail", r#"{"done": "yes"}"#), "gates", Some(&source)).await;
    assert_eq!(bad["status"], "needs_human", "{bad:#}");
    assert_eq!(bad["phases"][0]["status"], "passed_with_warnings");
    let failed = &bad["failed"];
    assert_eq!(failed["name"], "feature");
    let tries = attempts(failed);
    assert_eq!(tries.len(), 1, "retries = 0: {failed:#}");
    let suite = gate(&tries[0], "suite");
    assert_eq!(suite["passed"], false, "{suite:#}");
    let detail = suite["detail"].as_str().expect("detail");
    assert!(detail.contains("1 new test failures") && detail.contains("cases/feature.case"), "{detail}");
    assert!(!detail.contains("known_bug"), "the known failure is not new: {detail}");
    let schema = gate(&tries[0], "json_schema");
    assert_eq!(schema["passed"], false, "{schema:#}");
    assert!(schema["detail"].as_str().is_some_and(|d| d.contains("/done")), "{schema:#}");
    o.helix.stop().await;
}

/// Every path under `root` whose file name contains `name`.
fn find_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().contains(name) {
                found.push(path.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn hostile_values_stay_data_in_argv_and_in_shell_phases() {
    let o = Orch::start().await;
    let values = [
        ("semi", "a; touch pwned"),
        ("subst", "$(touch pwned)"),
        ("tick", "`touch pwned`"),
        ("quotes", r#"it's "quoted" 'twice'"#),
        ("newline", "first line\nsecond; touch pwned"),
    ];
    let variables: String = values.iter().map(|(k, v)| format!("{k} = {}\n", toml_str(v))).collect();
    let pipeline = format!(
        r#"name = "hostile"
[variables]
{variables}
[[phase]]
name = "argv"
kind = "command"
run = ["python3", "-c", "import json, sys; json.dump(sys.argv[1:], open('argv.json', 'w'))", "{{{{semi}}}}", "{{{{subst}}}}", "{{{{tick}}}}", "{{{{quotes}}}}", "{{{{newline}}}}"]

[[phase]]
name = "shell"
kind = "command"
shell = true
run = '''
printf '%s\n' $semi $subst $tick > unquoted.txt
printf '%s' "$quotes" > quotes.txt
printf '%s' "$newline" > newline.txt
echo '{{{{semi}}}}' > template.txt
'''
"#
    );
    let done = o.run_inline(&pipeline, "hostile", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let ws = workspace(&done);

    let argv: Vec<String> = serde_json::from_str(&read(&ws.join("argv.json"))).expect("argv json");
    let want: Vec<&str> = values.iter().map(|(_, v)| *v).collect();
    assert_eq!(argv, want, "each value is one argument, unchanged");
    assert_eq!(
        read(&ws.join("unquoted.txt")),
        "a;\ntouch\npwned\n$(touch\npwned)\n`touch\npwned`\n",
        "split into words, never evaluated"
    );
    assert_eq!(read(&ws.join("quotes.txt")), values[3].1);
    assert_eq!(read(&ws.join("newline.txt")), values[4].1);
    assert_eq!(read(&ws.join("template.txt")), "{{semi}}\n", "no placeholders in shell scripts");
    let env = &attempts(&done["phases"][1])[0]["env"];
    for (k, v) in values {
        assert_eq!(env[k], v, "{env:#}");
    }

    let pwned = find_named(o.helix.dir.path(), "pwned");
    assert!(pwned.is_empty(), "{pwned:?}");
    assert!(!Path::new("pwned").exists() && !Path::new(env!("CARGO_MANIFEST_DIR")).join("pwned").exists());
    o.helix.stop().await;
}

#[tokio::test]
async fn paths_out_of_the_workspace_are_refused_at_parse_time_with_line_and_key() {
    let o = Orch::start().await;
    // (what follows `run` in the phase, the key the error names, text of the offending line)
    let cases = [
        (
            "[[phase.gate]]\nkind = \"files_exist\"\npaths = [\"../x\"]",
            "phase[0].gate[0].paths[0]",
            "paths = ",
        ),
        (
            "[[phase.gate]]\nkind = \"json_schema\"\nfile = \"/etc/passwd\"\nschema = { type = \"object\" }",
            "phase[0].gate[0].file",
            "file = ",
        ),
        (
            "[[phase.gate]]\nkind = \"files_exist\"\npaths = [\"ok\", \"a/../../b\"]",
            "phase[0].gate[0].paths[1]",
            "paths = ",
        ),
        ("outputs = [\"/tmp/elsewhere\"]", "phase[0].outputs[0]", "outputs = "),
        ("inputs = [\"src/**\", \"../**\"]", "phase[0].inputs[1]", "inputs = "),
    ];
    for (rest, key, line_needle) in cases {
        let pipeline = format!(
            "name = \"escape\"\n\n[[phase]]\nname = \"p\"\nkind = \"command\"\nrun = [\"true\"]\n{rest}\n"
        );
        let res = o.post("/v1/runs", &json!({"pipeline": pipeline})).await;
        let body = expect_problem(res, 400, "invalid_pipeline").await;
        let detail = body["detail"].as_str().expect("detail");
        let line = line_of(&pipeline, line_needle);
        assert!(detail.contains(&format!("line {line}")) && detail.contains(key), "{key}: {detail}");
    }
    let runs = get_json(&o.http, &format!("{}/v1/runs", o.url)).await;
    assert_eq!(runs["runs"], json!([]), "no run was created");
    o.helix.stop().await;
}

#[tokio::test]
async fn gates_do_not_follow_a_symlink_out_of_the_workspace() {
    let o = Orch::start().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let outside = scratch.path().join("outside.json");
    // if a gate followed the link, both gates below would pass
    std::fs::write(&outside, r#"{"secret": true}"#).expect("write");
    let pipeline = format!(
        r#"name = "links"
[variables]
outside = {outside}

[[phase]]
name = "link"
kind = "command"
shell = true
run = 'ln -s "$outside" link.json'

[[phase]]
name = "check"
kind = "command"
run = ["true"]
retries = 0
[[phase.gate]]
kind = "files_exist"
paths = ["link.json"]
[[phase.gate]]
kind = "json_schema"
file = "link.json"
schema = {{ type = "object" }}
"#,
        outside = path_str(&outside)
    );
    let done = o.run_inline(&pipeline, "links", None).await;
    assert_eq!(done["status"], "needs_human", "{done:#}");
    assert_eq!(done["phases"][0]["name"], "link");
    let failed = &done["failed"];
    assert_eq!(failed["name"], "check");
    // the link survived the checkpoint as a link: the gates saw it (a failed phase's attempt
    // directories are kept)
    let seen = o.run_dir(id_of(&done)).join("work/01-check/attempt-1/link.json");
    assert!(seen.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()), "{}", seen.display());
    assert_eq!(std::fs::read_link(&seen).ok(), Some(outside.clone()));
    let a = &attempts(failed)[0];
    for kind in ["files_exist", "json_schema"] {
        let g = gate(a, kind);
        assert_eq!(g["passed"], false, "{g:#}");
        assert!(g["detail"].as_str().is_some_and(|d| d.contains("symbolic link")), "{g:#}");
    }
    assert_eq!(read(&outside), r#"{"secret": true}"#);
    o.helix.stop().await;
}

#[tokio::test]
async fn declared_outputs_must_be_produced_and_inputs_and_outputs_are_recorded() {
    let o = Orch::start().await;
    let src = tempfile::tempdir().expect("src");
    std::fs::create_dir_all(src.path().join("src/pkg")).expect("mkdir");
    std::fs::write(src.path().join("src/pkg/a.py"), "A = 1\n").expect("write");
    std::fs::write(src.path().join("README"), "read me\n").expect("write");
    let pipeline = r#"name = "outputs"
[[phase]]
name = "build"
kind = "command"
shell = true
run = "mkdir -p out/sub && cp src/pkg/a.py out/sub/a.py"
inputs = ["src/**"]
outputs = ["out/**"]

[[phase]]
name = "forgetful"
kind = "command"
run = ["true"]
retries = 0
outputs = ["report.json"]
"#;
    let view = o.run_inline(pipeline, "outputs", Some(src.path())).await;
    assert_eq!(view["status"], "needs_human", "{view:#}");
    let build = &attempts(&view["phases"][0])[0];
    assert_eq!(build["inputs"], json!(["src/pkg/a.py"]), "{build:#}");
    assert_eq!(build["outputs"], json!(["out/sub/a.py"]), "{build:#}");
    let forgot = &attempts(&view["failed"])[0];
    let g = gate(forgot, "outputs");
    assert_eq!(g["passed"], false);
    assert!(g["detail"].as_str().is_some_and(|d| d.contains("report.json")), "{g:#}");
    o.helix.stop().await;
}

#[tokio::test]
async fn a_dry_run_plans_without_creating_or_executing_anything() {
    let o = Orch::start().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let marker = scratch.path().join("executed");
    let pipeline = format!(
        r#"name = "plan-me"
[variables]
marker = {marker}

[[phase]]
name = "touch"
kind = "command"
run = ["touch", "{{{{marker}}}}"]
timeout = "30s"
[[phase.gate]]
kind = "files_exist"
paths = ["out.txt"]
"#,
        marker = path_str(&marker)
    );
    let res = o.post("/v1/runs", &json!({"pipeline": pipeline, "project": "plans", "dry_run": true})).await;
    assert_eq!(res.status(), 200);
    let plan: Value = res.json().await.expect("plan");
    assert_eq!(plan["pipeline"], "plan-me", "{plan:#}");
    assert_eq!(plan["project"], "plans");
    let phase = &plan["phases"][0];
    let action = phase["action"].as_str().expect("action");
    assert!(action.starts_with("touch ") && action.contains(marker.to_str().expect("utf-8")), "{action}");
    assert_eq!(phase["timeout_secs"], 30);
    assert_eq!(phase["gates"].as_array().map(Vec::len), Some(2), "exit code + files_exist: {phase:#}");
    assert_eq!(phase["problems"], json!([]));

    let runs = get_json(&o.http, &format!("{}/v1/runs", o.url)).await;
    assert_eq!(runs["runs"], json!([]), "a dry run is not a run");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "nothing was executed");
    let runs_dir = o.helix.config.data_dir.join("orchestrator").join("runs");
    let entries = std::fs::read_dir(&runs_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries, 0, "nothing written under {}", runs_dir.display());
    o.helix.stop().await;
}

#[tokio::test]
async fn replay_reproduces_a_deterministic_phase_and_shows_what_changed_in_another() {
    let o = Orch::start().await;
    let pipeline = r#"name = "replays"

[[phase]]
name = "hello"
kind = "command"
shell = true
run = "echo hello > greeting.txt; echo said hello"

[[phase]]
name = "stamp"
kind = "command"
shell = true
run = "date +%s%N > stamp; echo stamped"
"#;
    let done = o.run_inline(pipeline, "replays", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let id = id_of(&done);

    let res = o.post(&format!("/v1/runs/{id}/phases/0/replay"), &json!({})).await;
    assert_eq!(res.status(), 200);
    let same: Value = res.json().await.expect("json");
    assert_eq!(same["phase"], "hello", "{same:#}");
    assert_eq!(same["passed"], true, "{same:#}");
    assert_eq!(same["same_output"], true, "{same:#}");
    assert_eq!(same["changes"], json!([]), "{same:#}");
    assert!(Path::new(same["workspace"].as_str().expect("replay dir")).join("greeting.txt").is_file());

    let res = o.post(&format!("/v1/runs/{id}/phases/stamp/replay"), &json!({})).await;
    assert_eq!(res.status(), 200);
    let changed: Value = res.json().await.expect("json");
    assert_eq!(changed["index"], 1, "{changed:#}");
    assert_eq!(changed["same_output"], true, "stdout is the same: {changed:#}");
    let changes = changed["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{changed:#}");
    assert_eq!(
        (changes[0]["path"].as_str(), changes[0]["change"].as_str()),
        (Some("stamp"), Some("modified"))
    );
    let diff = changes[0]["diff"].as_str().expect("diff");
    assert!(diff.contains("\n-") && diff.contains("\n+"), "{diff}");

    // the run itself is unchanged by replays
    let after = o.view(id).await;
    assert_eq!(after["checkpoints"], done["checkpoints"]);
    o.helix.stop().await;
}

#[tokio::test]
async fn a_cancelled_run_resumes_without_redoing_completed_phases() {
    let o = Orch::start().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let flag = scratch.path().join("hold");
    let counter = scratch.path().join("first-ran");
    std::fs::write(&flag, "").expect("flag");
    let pipeline = format!(
        r#"name = "hold"
[variables]
flag = {flag}
counter = {counter}

[[phase]]
name = "first"
kind = "command"
shell = true
run = 'echo ran >> "$counter"; echo one > one.txt'

[[phase]]
name = "second"
kind = "command"
shell = true
run = 'if [ -e "$flag" ]; then sleep 600; fi; echo two > two.txt'
"#,
        flag = path_str(&flag),
        counter = path_str(&counter)
    );
    let view = o.start_run(json!({"pipeline": pipeline, "project": "hold"})).await;
    let id = id_of(&view).to_owned();
    // the first phase is checkpointed and the second is sleeping
    o.wait_until(&id, "second phase", |v| v["next_phase"] == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let asked = Instant::now();
    let res = o.post(&format!("/v1/runs/{id}/cancel"), &json!({})).await;
    assert_eq!(res.status(), 202);
    let cancelled = o.wait_final(&id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    // the phase would sleep for ten minutes: ending well before is the cancel at work
    assert!(asked.elapsed() < Duration::from_secs(120), "cancelled in {:?}", asked.elapsed());
    let token = cancelled["resume_token"].as_str().expect("resume token").to_owned();
    // a damaged token (one character changed; tokens are read in any letter case) names no
    // checkpoint: refused
    let mut damaged: Vec<char> = token.chars().collect();
    let i = damaged.len() / 2;
    damaged[i] = if damaged[i].eq_ignore_ascii_case(&'a') { 'b' } else { 'a' };
    let damaged: String = damaged.into_iter().collect();
    let res = o.post(&format!("/v1/runs/{id}/resume"), &json!({"token": damaged})).await;
    let body = expect_problem(res, 404, "not_found").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("checksum")), "{body:#}");
    assert_eq!(o.view(&id).await["status"], "cancelled");

    std::fs::remove_file(&flag).expect("remove flag");
    let res = o.post_after_final(&format!("/v1/runs/{id}/resume"), &json!({"token": token}), 409).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap_or_default());
    let done = o.wait_final(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let phases = done["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 2, "{done:#}");
    assert_eq!(attempts(&phases[0]).len(), 1, "the completed phase was not redone");
    assert_eq!(read(&counter), "ran\n", "the first phase ran once");
    assert_eq!(phases[1]["status"], "passed");
    let ws = workspace(&done);
    assert_eq!((read(&ws.join("one.txt")), read(&ws.join("two.txt"))), ("one\n".into(), "two\n".into()));
    let seqs = done["checkpoints"].as_array().expect("checkpoints").len();
    assert!(seqs >= 4, "start, first, cancel, resume and after: {done:#}");

    // a succeeded run has nothing to resume, and a run not running cannot be cancelled
    let res = o.post(&format!("/v1/runs/{id}/resume"), &json!({})).await;
    expect_problem(res, 409, "conflict").await;
    let res = o.post_after_final(&format!("/v1/runs/{id}/cancel"), &json!({}), 202).await;
    expect_problem(res, 409, "conflict").await;
    o.helix.stop().await;
}

#[tokio::test]
async fn concurrent_runs_all_succeed_with_intact_checkpoints() {
    let o = Orch::start_with(|c| c.orchestrator.max_runs_per_project = 8).await;
    let pipeline = r#"name = "many"

[[phase]]
name = "a"
kind = "command"
shell = true
run = 'echo "$HELIX_PHASE" >> log.txt; sleep 0.1'

[[phase]]
name = "b"
kind = "command"
shell = true
run = 'echo "$HELIX_PHASE" >> log.txt; sleep 0.1'

[[phase]]
name = "c"
kind = "command"
shell = true
run = 'echo "$HELIX_PHASE" >> log.txt; sleep 0.1'
"#;
    let starts = (0..8).map(|i| {
        let project = if i % 2 == 0 { "alpha" } else { "beta" };
        o.start_run(json!({"pipeline": pipeline, "project": project}))
    });
    let views = futures_util::future::join_all(starts).await;
    for view in &views {
        let id = id_of(view);
        let done = o.wait_final(id).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(done["checkpoints"], json!([1, 2, 3, 4]), "{done:#}");
        assert_eq!(read(&workspace(&done).join("log.txt")), "a\nb\nc\n");
        let dir = o.run_dir(id).join("checkpoints");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("checkpoints dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = read(&entry.path());
            let cp: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
            assert_eq!(format!("{:06}.json", cp["seq"].as_u64().expect("seq")), name);
            seen.push(cp["seq"].as_u64().expect("seq"));
        }
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3, 4], "{}", dir.display());
    }
    let listed = get_json(&o.http, &format!("{}/v1/runs?project=alpha", o.url)).await;
    assert_eq!(listed["runs"].as_array().map(Vec::len), Some(4), "{listed:#}");
    o.helix.stop().await;
}

#[tokio::test]
async fn the_project_bulkhead_refuses_a_second_run_with_retry_after() {
    let o = Orch::start_with(|c| c.orchestrator.max_runs_per_project = 1).await;
    let pipeline =
        "name = \"sleepy\"\n\n[[phase]]\nname = \"sleep\"\nkind = \"command\"\nrun = [\"sleep\", \"30\"]\n";
    let first = o.start_run(json!({"pipeline": pipeline, "project": "busy"})).await;

    let res = o.post("/v1/runs", &json!({"pipeline": pipeline, "project": "busy"})).await;
    let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    expect_problem(res, 429, "concurrency_limit").await;
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 0)), "Retry-After");

    let other = o.start_run(json!({"pipeline": pipeline, "project": "calm"})).await;
    for view in [&first, &other] {
        let id = id_of(view);
        assert_eq!(o.post(&format!("/v1/runs/{id}/cancel"), &json!({})).await.status(), 202);
        assert_eq!(o.wait_final(id).await["status"], "cancelled");
    }
    // the slot is free again once the run stopped
    let res = o.post_after_final("/v1/runs", &json!({"pipeline": pipeline, "project": "busy"}), 429).await;
    let status = res.status();
    let text = res.text().await.expect("body");
    assert_eq!(status, 201, "{text}");
    let again: Value = serde_json::from_str(&text).expect("json");
    o.post(&format!("/v1/runs/{}/cancel", id_of(&again)), &json!({})).await;
    o.wait_final(id_of(&again)).await;
    o.helix.stop().await;
}

#[tokio::test]
async fn an_llm_answer_is_reasked_until_it_fits_the_schema_and_replays_from_the_recording() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| {
        let gw = &mut c.breaker_gateway;
        gw.max_retries = 0;
        serve_smart_from(gw, fake_url);
    })
    .await;
    let calls = || fake.requests_to("/v1/chat/completions").len();

    let done = o.run_inline(LLM_PIPELINE, "llm", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let tries = attempts(&done["phases"][0]);
    assert_eq!(tries.len(), 1, "the re-ask is within the attempt: {done:#}");
    let llm = &tries[0]["llm"];
    assert_eq!(llm["answers"].as_array().map(Vec::len), Some(2), "{llm:#}");
    assert_eq!(llm["requests"].as_array().map(Vec::len), Some(2), "{llm:#}");
    let rejections = llm["rejections"].as_array().expect("rejections");
    assert_eq!(rejections.len(), 1, "{llm:#}");
    assert!(rejections[0].to_string().contains("want string"), "{rejections:?}");
    assert_eq!(llm["deployment"], "fake-openai");
    assert!(llm["input_tokens"].as_u64().is_some_and(|t| t > 0), "{llm:#}");
    assert!(tries[0]["prompt"].as_str().is_some_and(|p| p.starts_with("Give the verdict")));
    assert_eq!(calls(), 2);
    // the re-ask told the model what was wrong
    let second = &fake.requests_to("/v1/chat/completions")[1].body;
    let messages = second["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "{second:#}");
    assert!(messages[2]["content"].as_str().is_some_and(|c| c.contains("does not satisfy")), "{second:#}");

    let written: Value = serde_json::from_str(&read(&workspace(&done).join("verdict.json"))).expect("json");
    assert_eq!(written, json!({"verdict": "ok"}));

    let id = id_of(&done);
    let res = o.post(&format!("/v1/runs/{id}/phases/judge/replay?recorded=true"), &json!({})).await;
    assert_eq!(res.status(), 200);
    let replay: Value = res.json().await.expect("json");
    assert_eq!(replay["recorded"], true, "{replay:#}");
    assert_eq!(replay["passed"], true, "{replay:#}");
    assert_eq!(replay["same_output"], true, "{replay:#}");
    assert_eq!(replay["changes"], json!([]), "{replay:#}");
    assert_eq!(calls(), 2, "a recorded replay calls nobody");

    // without the recording it asks again (the fake is deterministic: the same answers)
    let res = o.post(&format!("/v1/runs/{id}/phases/judge/replay"), &json!({})).await;
    assert_eq!(res.status(), 200);
    let live: Value = res.json().await.expect("json");
    assert_eq!(
        (live["recorded"].as_bool(), live["same_output"].as_bool()),
        (Some(false), Some(true)),
        "{live:#}"
    );
    assert_eq!(calls(), 4);
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn an_open_circuit_at_the_gateway_is_waited_out_not_retried_into() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| {
        let gw = &mut c.breaker_gateway;
        gw.max_retries = 0;
        gw.breaker.open_secs = 1;
        serve_smart_from(gw, fake_url);
    })
    .await;
    let gateway = o.helix.url(ServiceKind::BreakerGateway);
    let res =
        o.http.post(format!("{gateway}/v1/circuits/fake-openai/force-open")).send().await.expect("send");
    assert!(res.status().is_success(), "{}", res.status());
    let started = Instant::now();
    let view = o.start_run(json!({"pipeline": LLM_PIPELINE, "project": "circuits"})).await;
    // the first call is refused (503 circuit_open, Retry-After 1 s); close the circuit meanwhile
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = o.http.post(format!("{gateway}/v1/circuits/fake-openai/reset")).send().await.expect("send");
    assert!(res.status().is_success());
    let done = o.wait_final(id_of(&view)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(attempts(&done["phases"][0]).len(), 1, "the open circuit was waited out within the attempt");
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited for Retry-After");
    assert_eq!(
        fake.requests_to("/v1/chat/completions").len(),
        2,
        "the provider saw only the calls after the reset"
    );
    let metrics =
        o.http.get(format!("{gateway}/metrics")).send().await.expect("send").text().await.expect("text");
    let refused: f64 = metrics
        .lines()
        .find(|l| l.starts_with("helix_gateway_rejected_total") && l.contains("breaker_open"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(refused, 1.0, "one refused call, no retry storm:\n{metrics}");
    o.helix.stop().await;
}

#[tokio::test]
async fn bad_requests_are_problems_that_say_what_is_wrong() {
    let o = Orch::start().await;
    let ok = "name = \"p\"\n\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n";

    let res = o.post("/v1/runs", &json!({"pipeline": ok, "colour": "red"})).await;
    let body = expect_problem(res, 400, "invalid_request").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("colour")), "{body:#}");

    let typo =
        "name = \"p\"\n\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\ntimout = \"1m\"\n";
    let res = o.post("/v1/runs", &json!({"pipeline": typo})).await;
    let body = expect_problem(res, 400, "invalid_pipeline").await;
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("line 7") && detail.contains("phase[0].timout"), "{detail}");
    assert!(detail.contains("`timeout`"), "the allowed keys are listed: {detail}");

    let res = o.post("/v1/runs", &json!({"pipeline": "name = \"p\"\n[[phase]\n"})).await;
    let body = expect_problem(res, 400, "invalid_pipeline").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("line 2")), "{body:#}");

    let res = o.post("/v1/runs", &json!({"project": "nothing"})).await;
    expect_problem(res, 400, "invalid_request").await;

    // outside the roots: refused before anything is looked at, existing or not
    let res = o.post("/v1/runs", &json!({"pipeline_path": "/nonexistent/pipeline.toml"})).await;
    let body = expect_problem(res, 403, "path_not_allowed").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("/nonexistent/pipeline.toml")), "{body:#}");
    let missing = std::env::temp_dir().join("helix-no-such-dir/pipeline.toml");
    let res = o.post("/v1/runs", &json!({"pipeline_path": missing})).await;
    expect_problem(res, 404, "not_found").await;

    let res = o.http.get(format!("{}/v1/runs/nonexistent", o.url)).send().await.expect("send");
    expect_problem(res, 404, "not_found").await;
    let res = o.http.get(format!("{}/v1/runs/..%2F..%2Fetc", o.url)).send().await.expect("send");
    assert!([400, 404].contains(&res.status().as_u16()), "{}", res.status());

    let res = o.post("/v1/runs/nonexistent/resume", &json!({"token": "garbage"})).await;
    expect_problem(res, 404, "not_found").await;
    let res = o.post("/v1/runs/nonexistent/resume", &json!({})).await;
    expect_problem(res, 404, "not_found").await;
    let res = o.post("/v1/runs/nonexistent/cancel", &json!({})).await;
    expect_problem(res, 404, "not_found").await;
    o.helix.stop().await;
}

/// Issue 12, point 1: the token `helix run` prints first names checkpoint 1; after later
/// checkpoints it must not re-run completed phases. It is refused (409, with the latest token);
/// `from_checkpoint` forks a new run instead, with its lineage, leaving the original as it was.
#[tokio::test]
async fn an_older_token_is_refused_with_the_latest_and_from_checkpoint_forks() {
    let o = Orch::start().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let counter = scratch.path().join("first-ran");
    let pipeline = format!(
        r#"name = "stale"
[variables]
counter = {counter}

[[phase]]
name = "first"
kind = "command"
shell = true
run = 'echo ran >> "$counter"; echo one > one.txt'

[[phase]]
name = "second"
kind = "command"
shell = true
retries = 0
run = 'exit 3'
"#,
        counter = path_str(&counter)
    );
    let view = o.start_run(json!({"pipeline": pipeline, "project": "stale"})).await;
    let id = id_of(&view).to_owned();
    let first_token = view["resume_token"].as_str().expect("first token").to_owned();
    assert_eq!(view["checkpoint"], 1, "{view:#}");
    let failed = o.wait_final(&id).await;
    assert_eq!(failed["status"], "needs_human", "{failed:#}");
    let latest = failed["resume_token"].as_str().expect("latest token").to_owned();
    assert_ne!(latest, first_token);

    let res = o.post(&format!("/v1/runs/{id}/resume"), &json!({"token": first_token})).await;
    let body = expect_problem(res, 409, "conflict").await;
    assert_eq!(body["resume_token"], json!(latest), "the answer names the latest token: {body:#}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("checkpoint 1")), "{body:#}");
    assert_eq!(read(&counter), "ran\n", "nothing was re-run");

    let res =
        o.post(&format!("/v1/runs/{id}/resume"), &json!({"token": first_token, "from_checkpoint": 1})).await;
    assert_eq!(res.status(), 202);
    let fork: serde_json::Value = res.json().await.expect("fork view");
    let fork_id = id_of(&fork).to_owned();
    assert_ne!(fork_id, id);
    assert_eq!(fork["forked_from"]["run"], json!(id), "{fork:#}");
    assert_eq!(fork["forked_from"]["checkpoint"], 1);
    assert_ne!(fork["trace_id"], failed["trace_id"]);
    let forked = o.wait_final(&fork_id).await;
    assert_eq!(forked["status"], "needs_human", "{forked:#}");
    assert_eq!(read(&counter), "ran\nran\n", "the fork ran the first phase again, as asked");
    // the original is untouched
    assert_eq!(o.view(&id).await["resume_token"], json!(latest));
    // a checkpoint the run never wrote
    let res = o.post(&format!("/v1/runs/{id}/resume"), &json!({"from_checkpoint": 99})).await;
    expect_problem(res, 404, "not_found").await;
    o.helix.stop().await;
}
