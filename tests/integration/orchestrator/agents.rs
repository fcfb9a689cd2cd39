//! Agent phases end to end: a `generic` agent (examples/agent-pipeline/mini_agent.py, a real tool
//! loop over the Anthropic Messages API) run by the orchestrator against the real gateway in
//! front of the fake provider's agent mode, with the real healer and trace-collector. The real
//! Claude Code and Codex CLIs run the same kind of phase in tests/api/agents.sh.

use helix_core::gateway_config::PriceConfig;
use helix_tests::fake_provider::{FakeProvider, Mode};

use super::promises::{named, spans_when};
use super::*;

fn mini_agent() -> String {
    path_str(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agent-pipeline/mini_agent.py"))
}

/// The gateway serves `smart` from the fake, priced so that calls cost something.
fn priced_gateway(c: &mut HelixConfig, fake_url: String) {
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
}

fn agent_pipeline(extra: &str) -> String {
    format!(
        r#"name = "agentic"

[[phase]]
name = "develop"
kind = "agent"
agent = "generic"
run = ["python3", {agent}, "{{{{prompt}}}}"]
prompt = "Write answer.txt, then say done."
{extra}
"#,
        agent = mini_agent(),
    )
}

fn agent_mode(fake: &FakeProvider, command: &str) {
    fake.set_default(Mode::Agent { tool: "Bash".to_owned(), arguments: json!({ "command": command }) });
}

#[tokio::test]
async fn an_agent_phase_calls_models_through_the_gateway_with_its_own_key_and_its_tool_calls_are_live_spans()
{
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| priced_gateway(c, fake_url)).await;
    let scratch = tempfile::tempdir().expect("tmp");
    let release = scratch.path().join("release");
    agent_mode(&fake, "echo fixed > answer.txt && cat answer.txt");
    let pipeline = agent_pipeline(&format!(
        r#"max_cost_usd = 5
env = {{ MINI_AGENT_WAIT_FOR = {release} }}

[[phase.gate]]
kind = "files_exist"
paths = ["answer.txt"]
"#,
        release = path_str(&release)
    ));
    let view = o.start_run(json!({"pipeline": pipeline, "project": "agents"})).await;
    let id = id_of(&view).to_owned();
    let trace_id = view["trace_id"].as_str().expect("trace id").to_owned();

    // the tool call is in the trace while the agent still works (it waits for `release`)
    let (_, spans) = spans_when(&o, &trace_id, "the agent's tool call, live", |s| {
        !named(s, "execute_tool Bash").is_empty()
    })
    .await;
    assert_eq!(o.view(&id).await["status"], "running", "seen before the run ended");
    let tool = named(&spans, "execute_tool Bash")[0];
    assert_eq!(tool["kind"], "tool_call", "{tool:#}");
    assert!(
        tool["attributes"]["helix.tool.arguments"].as_str().is_some_and(|a| a.contains("echo fixed")),
        "{tool:#}"
    );
    assert!(
        tool["attributes"]["helix.tool.result"].as_str().is_some_and(|r| r.contains("fixed")),
        "{tool:#}"
    );
    std::fs::write(&release, "go").expect("release the agent");

    let done = o.wait_final(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(std::fs::read_to_string(workspace(&done).join("answer.txt")).expect("answer"), "fixed\n");
    let tries = attempts(&done["phases"][0]);
    assert_eq!(tries.len(), 1, "{done:#}");
    let agent = &tries[0]["agent"];
    assert_eq!(agent["profile"], "generic", "{agent:#}");
    assert_eq!(agent["format"], "claude-stream-json", "{agent:#}");
    assert_eq!((agent["turns"].as_u64(), agent["tool_calls"].as_u64()), (Some(2), Some(1)), "{agent:#}");
    assert!(agent["final_text"].as_str().is_some_and(|t| t.starts_with("done: fixed")), "{agent:#}");
    let cost = agent["cost_usd"].as_f64().expect("cost");
    assert!(cost > 0.0, "the gateway metered the agent's calls on its key: {agent:#}");
    assert!((done["phases"][0]["cost_usd"].as_f64().expect("phase cost") - cost).abs() < 1e-12, "{done:#}");
    assert_eq!(agent["budget_exceeded"], false);

    // both model calls went through the gateway, billed to the run's project, in the run's trace
    let calls = fake.requests_to("/v1/chat/completions");
    assert_eq!(calls.len(), 2, "two turns, translated to the OpenAI deployment");
    let (_, spans) = spans_when(&o, &trace_id, "the gateway's two calls and the run", |s| {
        s.iter().filter(|s| s["kind"] == "llm_call").count() >= 2 && s.iter().any(|s| s["kind"] == "run")
    })
    .await;
    let attempt_span = named(&spans, "invoke_agent generic");
    assert_eq!(attempt_span.len(), 1, "{spans:#?}");
    let attempt_id = attempt_span[0]["span_id"].clone();
    for s in spans.iter().filter(|s| s["kind"] == "llm_call") {
        assert_eq!(s["project"], "agents", "{s:#}");
        assert_eq!(s["parent_span_id"], attempt_id, "the gateway's span is under the attempt: {s:#}");
    }
    assert_eq!(named(&spans, "execute_tool Bash")[0]["parent_span_id"], attempt_id);
    assert_eq!(
        spans.iter().filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with("turn "))).count(),
        2
    );
    // cost is counted once: only the gateway's spans carry it
    let priced: Vec<&Value> =
        spans.iter().filter(|s| s["attributes"].get("helix.cost_usd").is_some()).collect();
    assert!(priced.iter().all(|s| s["kind"] == "llm_call"), "{priced:#?}");
    let sum: f64 = priced.iter().filter_map(|s| s["attributes"]["helix.cost_usd"].as_f64()).sum();
    assert!((sum - cost).abs() < 1e-9, "spans {sum} vs the key's {cost}");

    // the key the agent held is in nothing recorded, and no longer works
    let record = serde_json::to_string(&done).expect("json");
    assert!(!record.contains("hxt_"), "a minted key in the run record");
    let events = o.events(&id).await;
    assert!(!events.contains("hxt_"), "a minted key in the events");
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn an_agent_over_its_budget_is_stopped_by_the_gateway_and_reported_as_such() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| priced_gateway(c, fake_url)).await;
    agent_mode(&fake, "echo working");
    // a budget the first call spends: the second is refused before it reaches the provider
    let pipeline = agent_pipeline("max_cost_usd = 0.000001\nretries = 2\n");
    let done = o.run_inline(&pipeline, "budgets", None).await;
    assert_eq!(done["status"], "needs_human", "{done:#}");
    let tries = attempts(&done["failed"]);
    assert_eq!(tries.len(), 1, "no retry: nothing is left to spend: {done:#}");
    let agent = &tries[0]["agent"];
    assert_eq!(agent["budget_exceeded"], true, "{agent:#}");
    assert!(agent["cost_usd"].as_f64().is_some_and(|c| c > 0.000001), "{agent:#}");
    let heal = &tries[0]["heal"];
    assert_eq!(heal["failure_class"], "budget_exceeded", "{heal:#}");
    assert!(heal["message"].as_str().is_some_and(|m| m.contains("budget_exceeded")), "{heal:#}");
    assert!(tries[0]["error"].is_null(), "not a crash: {:#}", tries[0]);
    assert_eq!(fake.requests_to("/v1/chat/completions").len(), 1, "the refused call never left the gateway");
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_failed_check_goes_into_the_next_attempts_prompt() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| priced_gateway(c, fake_url)).await;
    // the agent writes down the prompt it got; the check wants the retry context in it
    agent_mode(&fake, "printf '%s' \"$AGENT_PROMPT\" > prompt.txt && echo written");
    let pipeline = agent_pipeline(
        r#"retries = 2

[[phase.gate]]
name = "context"
kind = "command"
shell = true
run = "grep -q 'What failed last time' prompt.txt || { echo 'error: prompt.txt lacks the marker ZQX-1729' >&2; exit 1; }"
"#,
    );
    let done = o.run_inline(&pipeline, "retries", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let tries = attempts(&done["phases"][0]);
    assert_eq!(tries.len(), 2, "{done:#}");
    assert_eq!(tries[0]["heal"]["action"], "retry_with_hints", "{:#}", tries[0]);
    let second = tries[1]["prompt"].as_str().expect("prompt");
    assert!(second.starts_with("Write answer.txt"), "{second}");
    assert!(second.contains("## What failed last time"), "{second}");
    assert!(second.contains("> Check `context` (command) failed"), "{second}");
    assert!(second.contains("ZQX-1729"), "the gate's output is quoted: {second}");
    assert!(!tries[0]["prompt"].as_str().expect("first").contains("What failed"));
    // what the agent was really sent
    let sent = fake.requests_to("/v1/chat/completions");
    assert!(sent.iter().any(|r| r.body.to_string().contains("ZQX-1729")), "the provider saw the context");
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn agent_phases_are_checked_when_the_pipeline_is_read() {
    let o = Orch::start().await;
    let cases = [
        ("agent = \"cursor\"\nprompt = \"x\"", "unknown agent"),
        ("agent = \"generic\"\nprompt = \"x\"", "missing required key `run`"),
        ("agent = \"codex\"\nprompt = \"x\"\nrun = [\"codex\"]", "`run` starts a generic agent"),
        ("agent = \"codex\"\nprompt = \"x\"\nmax_cost_usd = 0", "max_cost_usd"),
        ("agent = \"codex\"\nprompt = \"x\"\nmax_cost_usd = \"1\"", "expected a number"),
        ("agent = \"codex\"\nprompt = \"x\"\nmax_turns = 0", "max_turns"),
        ("agent = \"codex\"\nprompt = \"{{nope}}\"", "nope"),
        ("agent = \"codex\"\nprompt = \"x\"\nschema = {}", "belongs to llm phases"),
        ("agent = \"codex\"\nprompt = \"x\"\nallowed_tools = [\"Read,Write\"]", "allowed_tools"),
    ];
    for (body, wants) in cases {
        let pipeline = format!("name = \"p\"\n\n[[phase]]\nname = \"a\"\nkind = \"agent\"\n{body}\n");
        let res = o.post("/v1/runs", &json!({"pipeline": pipeline, "project": "p"})).await;
        let problem = expect_problem(res, 400, "invalid_pipeline").await;
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains(wants)), "{body}: {problem:#}");
    }
    // a dry run shows what would start
    let plan_body = json!({"pipeline": agent_pipeline("max_cost_usd = 2"), "project": "p", "dry_run": true});
    let res = o.post("/v1/runs", &plan_body).await;
    let status = res.status().as_u16();
    let plan: Value = res.json().await.expect("json");
    assert!(status == 200 || status == 201, "{plan:#}");
    let text = plan.to_string();
    assert!(text.contains("generic agent (python3") && text.contains("$2"), "{plan:#}");
    o.helix.stop().await;
}

#[tokio::test]
async fn with_every_deployment_of_its_chain_open_a_phase_runs_simplified_and_passes_degraded() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| {
        priced_gateway(c, fake_url.clone());
        let gw = &mut c.breaker_gateway;
        gw.deployments.push(helix_core::gateway_config::DeploymentConfig {
            id: "fake-small".to_owned(),
            provider: ProviderKind::Openai,
            base_url: fake_url,
            model: "gpt-4o-mini".to_owned(),
            api_key_env: None,
            max_in_flight: None,
            breaker: None,
            responses_api: false,
        });
        gw.models.push(ModelChainConfig { name: "small".to_owned(), chain: vec!["fake-small".to_owned()] });
    })
    .await;
    let gateway = o.helix.url(ServiceKind::BreakerGateway);
    let res =
        o.http.post(format!("{gateway}/v1/circuits/fake-openai/force-open")).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let pipeline = r#"name = "degrades"

[[phase]]
name = "summary"
kind = "llm"
model = "smart"
prompt = "Summarise the release notes in detail."

[phase.simplified]
model = "small"
prompt = "One line: what changed?"
max_tokens = 50
"#;
    let done = o.run_inline(pipeline, "degraded", None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["phases"][0]["status"], "passed_with_warnings", "{done:#}");
    let attempt = &attempts(&done["phases"][0])[0];
    assert!(
        attempt["degraded"].as_str().is_some_and(|d| d.contains("model smart's chain is open")),
        "{attempt:#}"
    );
    let sent = fake.requests_to("/v1/chat/completions");
    assert_eq!(sent.len(), 1, "the open chain is not called");
    assert_eq!(sent[0].body["model"], "gpt-4o-mini");
    assert!(sent[0].body.to_string().contains("One line: what changed?"));
    assert_eq!(sent[0].body["max_tokens"], 50);
    let events = o.events(id_of(&done)).await;
    assert!(events.contains("event: degraded"), "{events}");
    let trace_id = done["trace_id"].as_str().expect("trace");
    let (_, spans) = spans_when(&o, trace_id, "the degraded attempt", |s| {
        s.iter().any(|s| s["attributes"].get("helix.degraded").is_some())
    })
    .await;
    assert!(!spans.is_empty());

    // with the chain closed again, the same pipeline runs as written
    let res = o.http.post(format!("{gateway}/v1/circuits/fake-openai/reset")).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let normal = o.run_inline(pipeline, "degraded", None).await;
    assert_eq!(normal["phases"][0]["status"], "passed", "{normal:#}");
    assert!(attempts(&normal["phases"][0])[0].get("degraded").is_none());
    o.helix.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn an_agent_phase_near_the_end_of_its_budget_runs_simplified() {
    let fake = FakeProvider::start().await;
    let fake_url = fake.url();
    let o = Orch::start_with(|c| priced_gateway(c, fake_url)).await;
    // the first attempt spends most of the budget and fails its check; the second is simplified
    agent_mode(&fake, "echo working > answer.txt");
    let pipeline = agent_pipeline(
        r#"max_cost_usd = 0.00015
retries = 1

[phase.simplified]
prompt = "Just write answer.txt."
max_turns = 3

[[phase.gate]]
kind = "files_exist"
paths = ["never.txt"]
"#,
    );
    let done = o.run_inline(&pipeline, "nearly-spent", None).await;
    let tries = attempts(&done["failed"]);
    assert_eq!(tries.len(), 2, "{done:#}");
    assert!(tries[0].get("degraded").is_none());
    let second = &tries[1];
    assert!(second["degraded"].as_str().is_some_and(|d| d.contains("budget is nearly spent")), "{second:#}");
    assert!(second["prompt"].as_str().is_some_and(|p| p.starts_with("Just write answer.txt.")), "{second:#}");
    o.helix.stop().await;
    fake.stop().await;
}
