#![allow(clippy::unwrap_used)]

use super::*;

fn feed(lines: &[&str]) -> (Vec<(usize, Step)>, Outcome) {
    let mut s = AgentStream::new();
    let mut steps = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        for step in s.push(l, (i as u64 + 1) * 1000) {
            steps.push((i, step));
        }
    }
    let (rest, outcome) = s.finish(lines.len() as u64 * 1000 + 1000);
    steps.extend(rest.into_iter().map(|s| (lines.len(), s)));
    (steps, outcome)
}

const CLAUDE: &[&str] = &[
    r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-sonnet-4-5","tools":["Read","Edit"]}"#,
    r#"{"type":"assistant","session_id":"s-1","message":{"id":"msg_1","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Let me read it."}],"usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":5}}}"#,
    r#"{"type":"assistant","session_id":"s-1","message":{"id":"msg_1","model":"claude-sonnet-4-5","content":[{"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"/w/app.py"}}],"usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":20}}}"#,
    r#"{"type":"user","session_id":"s-1","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"def main():\n    pritn('hi')"}]}]}}"#,
    r#"{"type":"assistant","session_id":"s-1","message":{"id":"msg_2","model":"claude-sonnet-4-5","content":[{"type":"tool_use","id":"toolu_2","name":"Edit","input":{"file_path":"/w/app.py","old_string":"pritn","new_string":"print"}}],"usage":{"input_tokens":30,"output_tokens":40}}}"#,
    r#"{"type":"user","session_id":"s-1","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_2","content":"permission denied","is_error":true}]}}"#,
    r#"{"type":"stream_event","event":{}}"#,
    r#"{"type":"assistant","session_id":"s-1","message":{"id":"msg_3","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Done."}],"usage":{"input_tokens":50,"output_tokens":2}}}"#,
    r#"{"type":"result","subtype":"success","is_error":false,"session_id":"s-1","result":"Done.","num_turns":3,"total_cost_usd":0.0123}"#,
];

#[test]
fn claude_code_steps_arrive_as_they_complete_with_tokens_and_tool_summaries() {
    let (steps, o) = feed(CLAUDE);
    // the first turn closes when its tool result arrives (line 3), the tool with it
    let kinds: Vec<(usize, &str)> = steps
        .iter()
        .map(|(i, s)| (*i, if matches!(s, Step::Turn { .. }) { "turn" } else { "tool" }))
        .collect();
    assert_eq!(kinds, vec![(3, "turn"), (3, "tool"), (5, "turn"), (5, "tool"), (8, "turn")]);
    let Step::Turn { id, tokens, start, end, .. } = &steps[0].1 else { panic!() };
    assert_eq!(id, "msg_1");
    // a message split over two lines is counted once, at its largest usage; input includes cache reads
    assert_eq!(*tokens, Tokens { input: 100, output: 20, cache_read: 90, cache_write: 0 });
    assert_eq!((*start, *end), (1000, 3000), "from the line before it to its last line");
    let Step::Tool { name, arguments, result, is_error, start, end, .. } = &steps[1].1 else { panic!() };
    assert_eq!(name, "Read");
    assert_eq!(arguments, r#"{"file_path":"/w/app.py"}"#);
    assert_eq!(result.as_deref(), Some("def main(): pritn('hi')"));
    assert!(!is_error);
    assert_eq!((*start, *end), (3000, 4000));
    let Step::Tool { name, is_error, .. } = &steps[3].1 else { panic!() };
    assert_eq!((name.as_str(), *is_error), ("Edit", true));
    assert_eq!(o.format, Some(Format::ClaudeCode));
    assert_eq!(o.session.as_deref(), Some("s-1"));
    assert_eq!(o.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!((o.turns, o.tool_calls), (3, 2));
    assert_eq!(o.tokens.output, 62);
    assert_eq!(o.reported_cost_usd, Some(0.0123));
    assert_eq!(o.final_text.as_deref(), Some("Done."));
    assert_eq!(o.error, None);
    assert!(!o.budget_exceeded);
    assert_eq!(o.skipped_lines, 1, "the stream_event line");
}

#[test]
fn claude_code_over_budget_is_told_apart_from_a_crash() {
    let lines = [
        r#"{"type":"system","subtype":"init","session_id":"s-2"}"#,
        r#"{"type":"assistant","message":{"id":"m","model":"<synthetic>","content":[{"type":"text","text":"API Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"budget_exceeded\",\"message\":\"budget of 0.01 USD spent\"}}"}]}}"#,
        r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 429 budget_exceeded","session_id":"s-2"}"#,
    ];
    let (steps, o) = feed(&lines);
    assert!(steps.is_empty(), "Claude Code's own notice is no model turn: {steps:?}");
    assert!(o.budget_exceeded);
    assert_eq!(o.error.as_deref(), Some("API Error: 429 budget_exceeded"));
    let (_, crash) = feed(&[r#"{"type":"result","subtype":"error_during_execution","is_error":false}"#]);
    assert_eq!(crash.error.as_deref(), Some("error_during_execution"));
    assert!(!crash.budget_exceeded);
}

const CODEX: &[&str] = &[
    r#"{"type":"thread.started","thread_id":"th-9"}"#,
    r#"{"type":"turn.started"}"#,
    r#"{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Looking**"}}"#,
    r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc 'pytest -q'","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
    r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc 'pytest -q'","aggregated_output":"1 failed\n  NameError: pritn","exit_code":1,"status":"failed"}}"#,
    r#"{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"/w/app.py","kind":"update"}],"status":"completed"}}"#,
    r#"{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Fixed the typo."}}"#,
    r#"{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":200,"output_tokens":345}}"#,
    "not json at all",
];

#[test]
fn codex_items_become_tool_steps_and_turns_carry_usage() {
    let (steps, o) = feed(CODEX);
    assert_eq!(steps.len(), 3, "{steps:?}");
    let (i, Step::Tool { name, arguments, result, is_error, start, end, .. }) = &steps[0] else { panic!() };
    assert_eq!(*i, 4);
    assert_eq!(name, "shell");
    assert_eq!(arguments, "bash -lc 'pytest -q'");
    assert_eq!(result.as_deref(), Some("1 failed NameError: pritn"));
    assert!(is_error, "a non-zero exit");
    assert_eq!((*start, *end), (4000, 5000), "from item.started to item.completed");
    let (_, Step::Tool { name, arguments, is_error, start, end, .. }) = &steps[1] else { panic!() };
    assert_eq!((name.as_str(), arguments.as_str(), *is_error), ("apply_patch", "update /w/app.py", false));
    assert_eq!(start, end, "a change reported only when done has no duration");
    let (i, Step::Turn { tokens, start, end, .. }) = &steps[2] else { panic!() };
    assert_eq!(*i, 7);
    assert_eq!(*tokens, Tokens { input: 1200, output: 345, cache_read: 200, cache_write: 0 });
    assert_eq!((*start, *end), (2000, 8000));
    assert_eq!(o.format, Some(Format::Codex));
    assert_eq!(o.session.as_deref(), Some("th-9"));
    assert_eq!(o.final_text.as_deref(), Some("Fixed the typo."));
    assert_eq!((o.turns, o.tool_calls), (1, 2));
    assert_eq!(o.skipped_lines, 1);
}

#[test]
fn codex_failures_and_open_calls_at_the_end() {
    let lines = [
        r#"{"type":"thread.started","thread_id":"t"}"#,
        r#"{"type":"turn.started"}"#,
        r#"{"type":"item.started","item":{"id":"c1","type":"command_execution","command":"sleep 100","status":"in_progress"}}"#,
        r#"{"type":"error","message":"unexpected status 429 Too Many Requests: {\"error\":{\"code\":\"budget_exceeded\"}}"}"#,
        r#"{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too Many Requests (budget)"}}"#,
    ];
    let (steps, o) = feed(&lines);
    assert_eq!(steps.len(), 1);
    let (i, Step::Tool { name, result, start, end, .. }) = &steps[0] else { panic!() };
    assert_eq!(
        (*i, name.as_str(), result.as_ref()),
        (lines.len(), "shell", None),
        "closed by finish, no result"
    );
    assert_eq!((*start, *end), (3000, 6000));
    assert!(o.budget_exceeded);
    assert!(o.error.as_deref().unwrap().starts_with("exceeded retry limit"));
}

#[test]
fn summaries_are_bounded_and_whitespace_collapsed() {
    let long = "x ".repeat(500);
    let s = summary(&long);
    assert!(s.chars().count() <= SUMMARY_CHARS + 1, "{}", s.chars().count());
    assert!(s.ends_with('…'));
    assert_eq!(summary("  a\n\tb  "), "a b");
    // a tool result of any shape never panics and keeps the text it has
    let mut st = AgentStream::new();
    st.push(r#"{"type":"assistant","message":{"id":"m","content":[{"type":"tool_use","id":"t","name":"Bash","input":"ls"}]}}"#, 1);
    let out = st.push(r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":{"text":"ok"}}]}}"#, 2);
    assert!(
        matches!(&out[..], [Step::Turn { .. }, Step::Tool { result: Some(r), arguments, .. }] if r == "ok" && arguments == "ls")
    );
}

#[test]
fn unknown_lines_and_results_without_calls_are_skipped_not_fatal() {
    let (steps, o) = feed(&[
        r#"{"type":"hello"}"#,
        "[1,2]",
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"never","content":"x"}]}}"#,
        r#"{"type":"assistant"}"#,
    ]);
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(o.skipped_lines, 3);
    assert_eq!(o.format, Some(Format::ClaudeCode));
}

/// Real output of the pinned CLIs (tests/api/agents.sh versions) against the gateway in front of
/// the fake provider's agent mode: one Bash / exec_command call, its result, a final text.
#[test]
fn real_claude_code_and_codex_transcripts_parse() {
    let claude = include_str!("fixtures/claude-code-2.1.332.jsonl");
    let lines: Vec<&str> = claude.lines().collect();
    let (steps, o) = feed(&lines);
    let tools: Vec<&Step> = steps.iter().map(|(_, s)| s).filter(|s| matches!(s, Step::Tool { .. })).collect();
    assert_eq!(tools.len(), 1, "{steps:?}");
    let Step::Tool { name, arguments, result, is_error, .. } = tools[0] else { panic!() };
    assert_eq!(name, "Bash");
    assert!(arguments.contains("echo hi > agent_out.txt"), "{arguments}");
    assert_eq!(result.as_deref(), Some("(Bash completed with no output)"));
    assert!(!is_error);
    assert_eq!((o.turns, o.tool_calls), (2, 1));
    assert!(o.tokens.input > 0 && o.tokens.output > 0, "{:?}", o.tokens);
    assert_eq!(o.reported_cost_usd, Some(0.036123));
    assert!(o.final_text.as_deref().is_some_and(|t| t.starts_with("done:")));
    assert_eq!(o.error, None);
    assert!(o.session.is_some());

    let codex = include_str!("fixtures/codex-0.171.0.jsonl");
    let lines: Vec<&str> = codex.lines().collect();
    let (steps, o) = feed(&lines);
    assert_eq!(steps.len(), 2, "{steps:?}");
    let Step::Tool { name, arguments, result, is_error, .. } = &steps[0].1 else { panic!() };
    assert_eq!((name.as_str(), *is_error), ("shell", false));
    assert!(arguments.contains("echo hi > agent_out.txt"), "{arguments}");
    assert_eq!(result.as_deref(), Some("hi"));
    let Step::Turn { tokens, .. } = &steps[1].1 else { panic!() };
    assert_eq!((tokens.input, tokens.output), (6264, 26));
    // Codex's warning item (unknown model metadata) is no failure
    assert_eq!(o.error, None);
    assert!(o.final_text.as_deref().is_some_and(|t| t.starts_with("done:")));
}
