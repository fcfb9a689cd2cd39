//! The orchestrator's promises under hostile checks (issue 12): timeouts are their own failure,
//! a security finding stops at once, every heal decision and re-ask is a span, a healed run's
//! trace is ok, cost is counted once and in the run's project, a replay is its own trace.

use helix_core::gateway_config::PriceConfig;

use super::*;

/// The spans of `trace_id` once `ready` holds for them (the emitter sends in batches: poll, for
/// at most 20 s).
pub(super) async fn spans_when(
    o: &Orch,
    trace_id: &str,
    what: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> (Value, Vec<Value>) {
    let collector = o.helix.url(ServiceKind::TraceCollector);
    let start = Instant::now();
    loop {
        let res = o.http.get(format!("{collector}/v1/traces/{trace_id}")).send().await.expect("send");
        let tree: Value = if res.status() == 200 { res.json().await.expect("json") } else { Value::Null };
        let mut spans = Vec::new();
        flatten(&tree["spans"], &mut spans);
        if ready(&spans) {
            return (tree, spans);
        }
        assert!(start.elapsed() < Duration::from_secs(20), "trace {trace_id}: no {what}: {tree:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

#[tokio::test]
async fn a_timeout_is_its_own_failure_retried_after_a_backoff_or_given_up_when_asked() {
    let o = Orch::start().await;
    let pipeline = r#"name = "hangs"

[[phase]]
name = "wait"
kind = "command"
shell = true
run = "echo waiting for the server; sleep 30"
timeout = "1s"
retries = 1
"#;
    let done = o.run_inline(pipeline, "timeouts", None).await;
    assert_eq!(done["status"], "needs_human", "{done:#}");
    let tries = attempts(&done["failed"]);
    assert_eq!(tries.len(), 2, "retried once: {done:#}");
    let heal = &tries[0]["heal"];
    assert_eq!(heal["failure_class"], "timeout", "{heal:#}");
    assert_eq!(heal["action"], "retry_backoff", "{heal:#}");
    assert!(heal["backoff_ms"].as_u64().is_some(), "{heal:#}");
    let message = heal["message"].as_str().expect("message");
    assert!(message.contains("timed out after 1"), "{message}");
    assert!(!message.contains("gate exit_code failed"), "{message}");
    assert_eq!(tries[1]["heal"]["failure_class"], "timeout");
    assert_eq!(tries[1]["heal"]["action"], "give_up");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("timed out"), "{done:#}");

    // the killed command's span is there, an error, and each heal decision says why
    let trace_id = done["trace_id"].as_str().expect("trace id");
    let (_, spans) = spans_when(&o, trace_id, "two tool spans and two heal spans", |s| {
        s.iter().filter(|s| s["kind"] == "tool_call").count() >= 2
            && s.iter().filter(|s| s["kind"] == "heal").count() >= 2
            && s.iter().any(|s| s["kind"] == "run")
    })
    .await;
    let tools: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "tool_call").collect();
    assert!(tools.iter().all(|t| t["status"] == "error"), "{tools:#?}");
    let heals: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "heal").collect();
    let story: Vec<(Value, Value, Value)> = heals
        .iter()
        .map(|h| {
            let a = &h["attributes"];
            (a["helix.attempt"].clone(), a["helix.heal.class"].clone(), a["helix.heal.action"].clone())
        })
        .collect();
    assert!(story.contains(&(json!(1), json!("timeout"), json!("retry_backoff"))), "{story:?}");
    assert!(story.contains(&(json!(2), json!("timeout"), json!("give_up"))), "{story:?}");
    let backoff = heals.iter().find(|h| h["attributes"]["helix.attempt"] == 1).expect("first heal");
    assert!(backoff["attributes"]["helix.heal.backoff_ms"].as_u64().is_some(), "{backoff:#}");

    // on_timeout = "give_up": the first timeout stops the phase
    let give_up = pipeline.replace("retries = 1", "retries = 3\non_timeout = \"give_up\"");
    let done = o.run_inline(&give_up, "timeouts", None).await;
    assert_eq!(done["status"], "needs_human", "{done:#}");
    let tries = attempts(&done["failed"]);
    assert_eq!(tries.len(), 1, "{done:#}");
    assert_eq!(
        (tries[0]["heal"]["failure_class"].as_str(), tries[0]["heal"]["action"].as_str()),
        (Some("timeout"), Some("give_up"))
    );
    o.helix.stop().await;
}

#[tokio::test]
async fn a_security_finding_stops_at_once_whatever_else_the_tool_printed() {
    let o = Orch::start().await;
    // the finding is neither first nor last, and the tool ends on a generic summary line
    let pipeline = r#"name = "scanner"

[[phase]]
name = "scan"
kind = "command"
shell = true
run = "echo 'scanning 14 files'; echo 'src/settings.py:12: secret detected: AWS access key id'; echo 'Error: 1 finding, see above'; exit 1"
retries = 3
"#;
    let done = o.run_inline(pipeline, "scanner", None).await;
    assert_eq!(done["status"], "escalated", "{done:#}");
    let tries = attempts(&done["failed"]);
    assert_eq!(tries.len(), 1, "not retried: {done:#}");
    assert_eq!(tries[0]["heal"]["failure_class"], "security", "{:#}", tries[0]["heal"]);
    assert_eq!(tries[0]["heal"]["action"], "escalate");
    o.helix.stop().await;
}

#[tokio::test]
async fn a_healed_run_has_an_ok_trace_and_its_heal_spans_tell_the_fix() {
    let o = Orch::start().await;
    let source = fixture("heal");
    let view = o.start_run(json!({"pipeline_path": source.join("pipeline.toml"), "project": "healed"})).await;
    let done = o.wait_final(id_of(&view)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let trace_id = done["trace_id"].as_str().expect("trace id");
    let (tree, spans) = spans_when(&o, trace_id, "the run span and a heal span", |s| {
        s.iter().any(|s| s["kind"] == "run") && s.iter().any(|s| s["kind"] == "heal")
    })
    .await;
    assert_eq!(tree["summary"]["status"], "ok", "the run healed: {:#}", tree["summary"]);
    let heal = spans.iter().find(|s| s["kind"] == "heal").expect("heal");
    let a = &heal["attributes"];
    assert_eq!((a["helix.attempt"].as_u64(), a["helix.heal.class"].as_str()), (Some(1), Some("environment")));
    assert!(a["helix.heal.fix"].as_str().is_some_and(|f| f.contains("PyYAML")), "{heal:#}");
    assert!(a["helix.heal.fix_source"].as_str().is_some(), "{heal:#}");
    // the failed first attempt stays an error in the tree
    assert!(spans.iter().any(|s| s["kind"] == "tool_call" && s["status"] == "error"), "{spans:#?}");

    // the collector lists it with the succeeded, not the failed, runs
    let collector = o.helix.url(ServiceKind::TraceCollector);
    let failed = get_json(&o.http, &format!("{collector}/v1/traces?project=healed&status=error")).await;
    assert!(!failed.to_string().contains(trace_id), "{failed:#}");
    o.helix.stop().await;
}

#[tokio::test]
async fn llm_cost_is_counted_once_in_the_runs_project_and_reasks_are_spans_and_events() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| {
        let gw = &mut c.breaker_gateway;
        gw.max_retries = 0;
        serve_smart_from(gw, fake_url);
        gw.prices.push(PriceConfig {
            model: "gpt-4o".to_owned(),
            input: 2.5,
            output: 10.0,
            cache_read: 0.0,
            cache_write: 0.0,
        });
    })
    .await;
    let done = o.run_inline(LLM_PIPELINE, "costly", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let llm = &attempts(&done["phases"][0])[0]["llm"];
    let spent = llm["cost_usd"].as_f64().expect("cost");
    assert!(spent > 0.0, "the fake's usage is priced: {llm:#}");

    let trace_id = done["trace_id"].as_str().expect("trace id");
    let (tree, spans) = spans_when(&o, trace_id, "the run span and both LLM calls", |s| {
        s.iter().any(|s| s["kind"] == "run") && s.iter().filter(|s| s["kind"] == "llm_call").count() >= 2
    })
    .await;
    // cost only on the LLM call spans; the phase and run carry derived totals
    let priced: Vec<&Value> =
        spans.iter().filter(|s| s["attributes"].get("helix.cost_usd").is_some()).collect();
    assert!(priced.iter().all(|s| s["kind"] == "llm_call"), "{priced:#?}");
    let sum: f64 = priced.iter().filter_map(|s| s["attributes"]["helix.cost_usd"].as_f64()).sum();
    assert!((sum - spent).abs() < 1e-9, "spans {sum} vs recorded {spent}");
    let total = tree["summary"]["cost_usd"].as_f64().expect("trace cost");
    assert!((total - spent).abs() < 1e-9, "trace total {total} vs {spent}");
    // the gateway's spans are in the run's project
    for s in spans.iter().filter(|s| s["kind"] == "llm_call") {
        assert_eq!(s["project"], "costly", "{s:#}");
    }
    // the re-ask is a span and an event
    assert_eq!(named(&spans, "reask 1").len(), 1, "{spans:#?}");
    let events = o.events(id_of(&done)).await;
    assert!(events.contains("event: reask") && events.contains("re-asked"), "{events}");
    // and the project's cost is what was spent, once
    let collector = o.helix.url(ServiceKind::TraceCollector);
    let costs = get_json(&o.http, &format!("{collector}/v1/costs?group_by=project")).await;
    let row = costs["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["key"] == "costly"))
        .unwrap_or_else(|| panic!("{costs:#}"));
    assert!((row["cost_usd"].as_f64().unwrap_or(0.0) - spent).abs() < 1e-9, "{costs:#}");
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_replay_is_told_it_is_one_runs_under_its_own_id_and_trace_and_shows_the_diff() {
    let o = Orch::start().await;
    let pipeline = r#"name = "replayed"

[[phase]]
name = "who"
kind = "command"
shell = true
run = "echo \"replay=${HELIX_REPLAY:-0} run=$HELIX_RUN_ID of=${HELIX_REPLAY_OF:-none}\" | tee who.txt"
"#;
    let done = o.run_inline(pipeline, "replayed", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let id = id_of(&done);
    let res = o.post(&format!("/v1/runs/{id}/phases/who/replay"), &json!({})).await;
    assert_eq!(res.status(), 200);
    let replay: Value = res.json().await.expect("json");
    let replay_id = replay["replay_id"].as_str().expect("replay id");
    assert_ne!(replay_id, id);
    let who = read(&Path::new(replay["workspace"].as_str().expect("workspace")).join("who.txt"));
    assert_eq!(who.trim(), format!("replay=1 run={replay_id} of={id}"));
    assert_eq!(replay["same_output"], false, "{replay:#}");
    let diff = replay["output_diff"].as_str().expect("diff");
    assert!(diff.contains(&format!("-replay=0 run={id}")) && diff.contains("+replay=1"), "{diff}");
    // its own trace, whose root links to the run's
    let trace = replay["trace_id"].as_str().expect("trace");
    assert_ne!(trace, done["trace_id"].as_str().expect("trace id"));
    let (_, spans) = spans_when(&o, trace, "the replay's root span", |s| {
        s.iter().any(|s| s["attributes"].get("helix.replay.of_run").is_some())
    })
    .await;
    let root = spans.iter().find(|s| s["attributes"].get("helix.replay.of_run").is_some()).expect("root");
    assert_eq!(root["attributes"]["helix.replay.of_run"], id, "{root:#}");
    assert_eq!(root["attributes"]["helix.replay.of_trace"], done["trace_id"], "{root:#}");
    o.helix.stop().await;
}

#[tokio::test]
async fn command_gate_argv_is_rendered_in_runs_and_in_plans() {
    let o = Orch::start().await;
    let pipeline = r#"name = "rendered"
[variables]
python = "python3"
word = "hello"

[[phase]]
name = "write"
kind = "command"
run = ["{{python}}", "-c", "open('out.txt', 'w').write('{{word}}')"]

[[phase.gate]]
name = "check"
kind = "command"
run = ["{{python}}", "-c", "import sys; sys.exit(open('out.txt').read() != '{{word}}')"]
"#;
    let res =
        o.post("/v1/runs", &json!({"pipeline": pipeline, "project": "rendered", "dry_run": true})).await;
    let status = res.status().as_u16();
    let plan: Value = res.json().await.expect("json");
    assert!(status == 200 || status == 201, "{plan:#}");
    let text = plan.to_string();
    assert!(!text.contains("{{python}}"), "the plan shows argv as it will run: {plan:#}");
    let gates = plan["phases"][0]["gates"].as_array().unwrap_or_else(|| panic!("{plan:#}"));
    assert!(gates.iter().any(|g| g.as_str().is_some_and(|g| g.contains("python3 -c"))), "{gates:?}");

    let done = o.run_inline(pipeline, "rendered", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let tries = attempts(&done["phases"][0]);
    assert_eq!(tries.len(), 1, "{done:#}");
    assert_eq!(gate(&tries[0], "check")["passed"], true, "{:#}", tries[0]);
    o.helix.stop().await;
}

/// Live processes whose environment says they belong to run `id`, after waiting (at most 10 s)
/// for them to go.
fn processes_left(id: &str) -> Vec<u32> {
    let entry = format!("HELIX_RUN_ID={id}");
    let find = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
                    && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                        s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
                    })
            })
            .collect()
    };
    let start = Instant::now();
    loop {
        let left = find();
        if left.is_empty() || start.elapsed() > Duration::from_secs(10) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn no_process_outlives_its_phase_not_even_a_setsid_daemon_of_a_phase_that_passed() {
    let o = Orch::start().await;
    let pipeline = r#"name = "daemons"

[[phase]]
name = "spawn"
kind = "command"
shell = true
run = "setsid sleep 47 </dev/null >/dev/null 2>&1 & (sleep 48 </dev/null >/dev/null 2>&1 &) ; sleep 49 >/dev/null 2>&1 & echo spawned"

[[phase]]
name = "next"
kind = "command"
run = ["true"]
"#;
    let done = o.run_inline(pipeline, "daemons", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let left = processes_left(id_of(&done));
    assert!(left.is_empty(), "processes of the run outlived it: {left:?}");
    o.helix.stop().await;
}

#[tokio::test]
async fn an_output_gate_sees_an_error_line_in_the_middle_of_megabytes_of_output() {
    let o = Orch::start().await;
    // 3 MB of noise with one ERROR line in the middle: beyond what is kept of the output
    let pipeline = r#"name = "long-log"

[[phase]]
name = "noisy"
kind = "command"
run = ["python3", "-c", "import sys\nline = 'x' * 99 + '\\n'\nfor i in range(30000):\n    sys.stdout.write(line)\n    if i == 15000:\n        sys.stdout.write('ERROR: disk quota exceeded at row 15000\\n')\n"]
retries = 0

[[phase.gate]]
name = "no errors"
kind = "output_matches"
regex = "(?m)^ERROR"
negate = true
"#;
    let done = o.run_inline(pipeline, "long-log", None).await;
    assert_eq!(done["status"], "needs_human", "the gate saw the line: {done:#}");
    let tries = attempts(&done["failed"]);
    let g = gate(&tries[0], "no errors");
    assert_eq!(g["passed"], false, "{g:#}");
    let cut = &tries[0]["outcome"]["output_truncated"];
    assert!(cut.as_u64().is_some_and(|n| n > 1_000_000), "the kept output was cut: {cut}");
    o.helix.stop().await;
}
