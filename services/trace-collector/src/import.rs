//! Importer of Claude Code transcripts (`claude -p --output-format stream-json --verbose`) into
//! Helix trace events.
//!
//! Pure domain logic: the input is the transcript text, the output is the events and the lines
//! that could not be used. Reading the file or the request body is the caller's job.
//!
//! # Input
//!
//! One JSON object per line. The lines used are `system`/`init` (model, cwd, version),
//! `assistant` (one LLM response; Claude Code prints **one line per content block**, all sharing
//! `message.id` and `message.usage`, so lines are merged by `message.id`), `user` lines holding
//! `tool_result` blocks, and the final `result` line (duration, turns, cost, outcome). Any other
//! line type (`stream_event`, other `system` subtypes, future types) and any unknown field is
//! skipped silently, so newer Claude Code versions still import. A line that is not JSON, is not
//! a JSON object, or is a known type whose shape cannot be used (an `assistant` line without a
//! `message`, a `tool_result` naming a tool call never seen) is reported in
//! [`Imported::skipped`] with its 1-based line number; the other lines still import.
//!
//! # Mapping
//!
//! * **One trace per session.** Lines are grouped by `session_id` (lines without one belong to
//!   the session before them, or to the first session). The trace id is a hash of the session
//!   id; without any session id, a hash of the whole text. Span ids are hashes of the trace id
//!   and a stable key (`message.id`, `tool_use.id`). Importing the same file twice therefore
//!   yields the same ids, and a store keyed by ids takes a re-import as a duplicate. The hash is
//!   FNV-1a (128 bits) with a 64-bit finalizer: stable across platforms and versions, not
//!   cryptographic (a transcript is the importing user's own data, not an attack surface).
//! * **Root span** `claude-code session`, kind `run`: `helix.cost_usd` = the result line's
//!   `total_cost_usd`; `claude_code.*` attributes for the session id, model, version, cwd,
//!   turns, result subtype and durations; `helix.import.format = "claude-stream-json"`. Status `error` when `is_error` is true or the subtype
//!   starts with `error` (`error_max_turns`, `error_during_execution`; older versions printed
//!   `is_error: false` for those), with the subtype and a summary of `errors`/`result` as the
//!   message; `ok` otherwise; `unset` when the transcript has no result line (an interrupted
//!   run), which is said in the status message.
//! * **LLM calls.** Each assistant message is a span `chat {model}`, kind `llm_call`, with the
//!   GenAI attributes. Following OpenTelemetry, `gen_ai.usage.input_tokens` counts *all* input
//!   tokens (Anthropic's uncached `input_tokens` + `cache_read_input_tokens` +
//!   `cache_creation_input_tokens`); the cache read and write counts are also given alone
//!   (`gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens`).
//!   Usage fields are the maximum over the message's lines, so a message split in several lines
//!   is counted once. **No per-call cost**: the transcript only has the session total, and
//!   pricing the tokens here would invent numbers that could disagree with Anthropic's bill, so
//!   the cost is on the root only and sums over the trace stay right. Session token totals are
//!   likewise not repeated on the root, so summing tokens over spans does not count twice.
//!   Messages of the model `<synthetic>` are written by Claude Code itself (API error notices),
//!   not by an LLM: they become kind `other` spans carrying the text.
//! * **Tool calls.** Each `tool_use` block is a span `execute_tool {name}`, kind `tool_call`,
//!   with `gen_ai.tool.name`, `gen_ai.tool.call.id`, `helix.tool.arguments` (the input as
//!   compact JSON) and `helix.tool.result` (the result text), both whitespace-collapsed and cut
//!   to 200 characters. It starts when the message asking for it ends and ends when its
//!   `tool_result` arrives; status `error` (message = the result summary) when `is_error` is
//!   true, `ok` otherwise, `unset` when no result arrived. Tool spans are children of the root,
//!   siblings of the LLM calls, as in the OpenTelemetry GenAI agent spans: a tool runs after the
//!   response that requested it, so as a child it would lie outside its parent's time range.
//!   `claude_code.message_id` on a tool span equals `gen_ai.response.id` on the LLM span that
//!   asked for it.
//! * **Sub-agents.** Lines with `parent_tool_use_id` (messages of a `Task` sub-agent) become
//!   children of that tool call's span, so a sub-agent's work nests under the call that started
//!   it.
//! * `project`, `phase` and `run` come from [`ImportOptions`] and are set on every event.
//!
//! # Time
//!
//! When lines carry a `timestamp` (RFC 3339; Claude Code's session files under
//! `~/.claude/projects` do), those times are used: a line without one takes the time of the line
//! before it, an LLM call runs from the line before its first line to its last line, the session
//! starts `duration_ms` before its last line.
//!
//! `--output-format stream-json` lines carry no time, so then the layout is **estimated** and
//! every span says so with `helix.time.estimated = true` (baselines should not learn durations
//! from them). The session starts at [`ImportOptions::start_unix_nanos`] (without it, it is
//! taken to have ended now) and lasts the result's `duration_ms`. Of that, `duration_api_ms`
//! (time spent waiting for the API) is split evenly among the LLM calls and the rest evenly
//! among the lines delivering tool results; the spans are laid end to end in line order.
//! Without `duration_api_ms` every step gets an equal share; without `duration_ms`, each step
//! lasts 1 ms, which keeps only the order. Parallel tool calls of one message all start when the
//! message ends and each ends with the line that delivers its result.

use std::collections::{BTreeMap, HashMap};

use helix_core::time::parse_rfc3339_nanos;
use helix_core::trace::{Event, MAX_ATTRIBUTE_BYTES, MAX_NAME, SCHEMA_VERSION, SpanKind, SpanStatus, attr};
use serde_json::Value;

/// Where the imported events belong, and the anchor of an estimated time layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    pub project: Option<String>,
    pub phase: Option<String>,
    pub run: Option<String>,
    /// Start of the session, Unix nanoseconds, used when the transcript has no timestamps.
    /// Without it such a session is laid out to end now (so times, not ids, then vary between
    /// imports).
    pub start_unix_nanos: Option<u64>,
}

/// The result of an import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imported {
    /// The spans, root first, then in transcript order; all pass [`Event::validate`].
    pub events: Vec<Event>,
    /// Lines not imported: 1-based line number and why.
    pub skipped: Vec<(usize, String)>,
}

/// Attribute names of this importer (beyond [`attr`]).
const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
use crate::anomaly::TIME_ESTIMATED_ATTR as HELIX_TIME_ESTIMATED;
const HELIX_IMPORT_FORMAT: &str = "helix.import.format";

/// Longest tool argument, tool result and status summary, in characters.
const SUMMARY_CHARS: usize = 200;
/// Step length of an estimated layout when the transcript gives no duration at all.
const NOMINAL_STEP_NANOS: u64 = 1_000_000;
const NANOS_PER_MS: u64 = 1_000_000;
/// The model name Claude Code gives the messages it writes itself.
const SYNTHETIC_MODEL: &str = "<synthetic>";

/// Turns a Claude Code stream-json transcript into trace events, one trace per session.
pub fn import_claude_stream_json(text: &str, opts: &ImportOptions) -> Imported {
    let mut skipped = Vec::new();
    let mut sessions: Vec<Session> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut current: Option<usize> = None;

    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                skipped.push((no, format!("not JSON: {e}")));
                continue;
            }
        };
        if !value.is_object() {
            skipped.push((no, "not a JSON object".to_owned()));
            continue;
        }
        let sid = str_field(&value, "session_id").or_else(|| str_field(&value, "sessionId"));
        let idx = match sid {
            Some(sid) => match by_id.get(sid) {
                Some(&idx) => idx,
                None => {
                    // Lines before the first session id (none in practice) join the first session.
                    let idx = match current {
                        Some(idx) if sessions[idx].id.is_none() => idx,
                        _ => {
                            sessions.push(Session::default());
                            sessions.len() - 1
                        }
                    };
                    sessions[idx].id = Some(sid.to_owned());
                    by_id.insert(sid.to_owned(), idx);
                    idx
                }
            },
            None => current.unwrap_or_else(|| {
                sessions.push(Session::default());
                sessions.len() - 1
            }),
        };
        current = Some(idx);
        sessions[idx].lines.push((no, value));
    }

    let mut events = Vec::new();
    for session in &sessions {
        let trace_id = match &session.id {
            Some(id) => trace_id_of(&["claude-code-session", id]),
            None => trace_id_of(&["claude-code-transcript", text]),
        };
        build_trace(session, &trace_id, opts, &mut events, &mut skipped);
    }
    skipped.sort_by_key(|(no, _)| *no);
    Imported { events, skipped }
}

/// The parsed lines of one session, in file order.
#[derive(Debug, Default)]
struct Session {
    id: Option<String>,
    lines: Vec<(usize, Value)>,
}

/// One assistant message (possibly spread over several lines).
#[derive(Debug)]
struct Message {
    key: String,
    id: Option<String>,
    /// Index (in the session's lines) of its first and last line.
    first: usize,
    last: usize,
    model: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read: Option<u64>,
    cache_creation: Option<u64>,
    stop_reason: Option<String>,
    text: String,
    parent_tool_use_id: Option<String>,
}

/// One tool call and, when it arrived, its result.
#[derive(Debug)]
struct Tool {
    id: String,
    name: String,
    arguments: String,
    message: usize,
    parent_tool_use_id: Option<String>,
    /// Index of the line that asked for it and of the line that answered.
    start: usize,
    end: Option<usize>,
    result: Option<String>,
    is_error: bool,
}

/// What the `result` line says.
#[derive(Debug, Default)]
struct Outcome {
    subtype: Option<String>,
    is_error: bool,
    duration_ms: Option<u64>,
    duration_api_ms: Option<u64>,
    num_turns: Option<u64>,
    cost_usd: Option<f64>,
    /// The model that cost the most (`modelUsage[*].costUSD`): what the session cost is filed under.
    costliest_model: Option<String>,
    summary: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Message(usize),
    Tool(usize),
}

fn build_trace(
    session: &Session,
    trace_id: &str,
    opts: &ImportOptions,
    events: &mut Vec<Event>,
    skipped: &mut Vec<(usize, String)>,
) {
    let lines = &session.lines;
    let mut messages: Vec<Message> = Vec::new();
    let mut message_by_key: HashMap<String, usize> = HashMap::new();
    let mut tools: Vec<Tool> = Vec::new();
    let mut tool_by_id: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<Node> = Vec::new();
    let mut outcome: Option<Outcome> = None;
    let mut init: Option<&Value> = None;
    // Which lines start an LLM call or deliver tool results: the steps of an estimated layout.
    let mut starts_message = vec![false; lines.len()];
    let mut delivers_results = vec![false; lines.len()];

    for (li, (no, v)) in lines.iter().enumerate() {
        match str_field(v, "type") {
            Some("system") if str_field(v, "subtype") == Some("init") => {
                init.get_or_insert(v);
            }
            Some("assistant") => {
                let Some(msg) = v.get("message").filter(|m| m.is_object()) else {
                    skipped.push((*no, "assistant line without a message object".to_owned()));
                    continue;
                };
                let id = str_field(msg, "id").map(str::to_owned);
                let key = id.clone().unwrap_or_else(|| format!("line {no}"));
                let mi = match message_by_key.get(&key) {
                    Some(&mi) => mi,
                    None => {
                        messages.push(Message {
                            key: key.clone(),
                            id,
                            first: li,
                            last: li,
                            model: None,
                            input_tokens: None,
                            output_tokens: None,
                            cache_read: None,
                            cache_creation: None,
                            stop_reason: None,
                            text: String::new(),
                            parent_tool_use_id: str_field(v, "parent_tool_use_id").map(str::to_owned),
                        });
                        message_by_key.insert(key, messages.len() - 1);
                        order.push(Node::Message(messages.len() - 1));
                        starts_message[li] = true;
                        messages.len() - 1
                    }
                };
                let m = &mut messages[mi];
                m.last = li;
                if let Some(model) = str_field(msg, "model") {
                    m.model = Some(model.to_owned());
                }
                if let Some(reason) = str_field(msg, "stop_reason") {
                    m.stop_reason = Some(reason.to_owned());
                }
                if let Some(usage) = msg.get("usage") {
                    max_into(&mut m.input_tokens, u64_field(usage, "input_tokens"));
                    max_into(&mut m.output_tokens, u64_field(usage, "output_tokens"));
                    max_into(&mut m.cache_read, u64_field(usage, "cache_read_input_tokens"));
                    max_into(&mut m.cache_creation, u64_field(usage, "cache_creation_input_tokens"));
                }
                for block in msg.get("content").and_then(Value::as_array).into_iter().flatten() {
                    match str_field(block, "type") {
                        Some("text") => {
                            if let Some(t) = str_field(block, "text") {
                                if !m.text.is_empty() {
                                    m.text.push(' ');
                                }
                                m.text.push_str(t);
                            }
                        }
                        Some("tool_use") => {
                            let Some(name) = str_field(block, "name") else {
                                skipped.push((*no, "tool_use block without a name".to_owned()));
                                continue;
                            };
                            let id = str_field(block, "id")
                                .map_or_else(|| format!("line {no} block {}", tools.len()), str::to_owned);
                            if tool_by_id.contains_key(&id) {
                                continue;
                            }
                            let arguments = block
                                .get("input")
                                .map(|input| summarize(&serde_json::to_string(input).unwrap_or_default()))
                                .unwrap_or_default();
                            tools.push(Tool {
                                id: id.clone(),
                                name: name.to_owned(),
                                arguments,
                                message: mi,
                                parent_tool_use_id: m.parent_tool_use_id.clone(),
                                start: li,
                                end: None,
                                result: None,
                                is_error: false,
                            });
                            tool_by_id.insert(id, tools.len() - 1);
                            order.push(Node::Tool(tools.len() - 1));
                        }
                        _ => {}
                    }
                }
            }
            Some("user") => {
                // Prompts echoed as plain text, or as a string, carry no results: nothing to do.
                let content = v.get("message").and_then(|m| m.get("content")).and_then(Value::as_array);
                for block in content.into_iter().flatten() {
                    if str_field(block, "type") != Some("tool_result") {
                        continue;
                    }
                    let id = str_field(block, "tool_use_id").unwrap_or_default();
                    let Some(&ti) = tool_by_id.get(id) else {
                        skipped.push((*no, format!("tool_result for an unknown tool_use_id {id:?}")));
                        continue;
                    };
                    let t = &mut tools[ti];
                    if t.end.is_some() {
                        continue;
                    }
                    t.end = Some(li);
                    t.result = Some(summarize(&result_text(block.get("content"))));
                    t.is_error = block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                    delivers_results[li] = true;
                }
            }
            Some("result") => {
                // A resumed session can end more than once; the last result describes it.
                let errors: Vec<&str> = v
                    .get("errors")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let summary = if errors.is_empty() {
                    str_field(v, "result").map(summarize)
                } else {
                    Some(summarize(&errors.join("; ")))
                };
                outcome = Some(Outcome {
                    subtype: str_field(v, "subtype").map(str::to_owned),
                    is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                    duration_ms: u64_field(v, "duration_ms"),
                    duration_api_ms: u64_field(v, "duration_api_ms"),
                    num_turns: u64_field(v, "num_turns"),
                    cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
                    costliest_model: v.get("modelUsage").and_then(Value::as_object).and_then(|m| {
                        m.iter()
                            .filter_map(|(name, u)| Some((name, u.get("costUSD")?.as_f64()?)))
                            .max_by(|a, b| a.1.total_cmp(&b.1))
                            .map(|(name, _)| name.clone())
                    }),
                    summary: summary.filter(|s| !s.is_empty()),
                });
            }
            _ => {}
        }
    }

    let times = layout(lines, &starts_message, &delivers_results, outcome.as_ref(), opts);
    let estimated = times.estimated;

    let root_id = span_id_of(trace_id, "root", "");
    let mut root = new_event(trace_id, &root_id, None, "claude-code session", SpanKind::Run, opts);
    root.start_unix_nanos = times.start;
    root.end_unix_nanos = times.end;
    let a = &mut root.attributes;
    a.insert(HELIX_IMPORT_FORMAT.to_owned(), Value::from("claude-stream-json"));
    if let Some(id) = &session.id {
        set_str(a, "claude_code.session_id", id);
    }
    if let Some(init) = init {
        for (key, field) in [
            ("claude_code.model", "model"),
            ("claude_code.version", "claude_code_version"),
            ("claude_code.cwd", "cwd"),
        ] {
            if let Some(s) = str_field(init, field) {
                set_str(a, key, s);
            }
        }
    }
    match &outcome {
        Some(o) => {
            if let Some(cost) = o.cost_usd {
                a.insert(attr::HELIX_COST_USD.to_owned(), Value::from(cost));
                // the cost is filed under a model (cost by model), not under "(none)": the one
                // that cost the most, else the session's
                let model = o
                    .costliest_model
                    .clone()
                    .or_else(|| init.and_then(|i| str_field(i, "model")).map(str::to_owned));
                if let Some(m) = model {
                    set_str(a, attr::GEN_AI_REQUEST_MODEL, &m);
                }
            }
            for (key, n) in [
                ("claude_code.num_turns", o.num_turns),
                ("claude_code.duration_ms", o.duration_ms),
                ("claude_code.duration_api_ms", o.duration_api_ms),
            ] {
                if let Some(n) = n {
                    a.insert(key.to_owned(), Value::from(n));
                }
            }
            if let Some(s) = &o.subtype {
                set_str(a, "claude_code.result.subtype", s);
            }
            a.insert("claude_code.result.is_error".to_owned(), Value::from(o.is_error));
            let subtype = o.subtype.as_deref().unwrap_or("result");
            if o.is_error || subtype.starts_with("error") {
                root.status = SpanStatus::Error;
                root.status_message = Some(match &o.summary {
                    Some(s) => format!("{subtype}: {s}"),
                    None => subtype.to_owned(),
                });
            } else {
                root.status = SpanStatus::Ok;
            }
        }
        None => root.status_message = Some("the transcript has no result line (interrupted run?)".to_owned()),
    }
    finish(&mut root, estimated);
    events.push(root);

    let tool_span_id = |id: &str| span_id_of(trace_id, "tool", id);
    let parent_of = |parent_tool_use_id: &Option<String>, own: &str| match parent_tool_use_id {
        Some(p) if p != own && tool_by_id.contains_key(p) => tool_span_id(p),
        _ => root_id.clone(),
    };
    for node in order {
        match node {
            Node::Message(mi) => {
                let m = &messages[mi];
                let span_id = span_id_of(trace_id, "message", &m.key);
                let parent = parent_of(&m.parent_tool_use_id, "");
                let model = m.model.as_deref().unwrap_or("unknown");
                let synthetic = model == SYNTHETIC_MODEL;
                let (name, kind) = if synthetic {
                    ("claude-code message".to_owned(), SpanKind::Other)
                } else {
                    (format!("chat {model}"), SpanKind::LlmCall)
                };
                let mut e = new_event(trace_id, &span_id, Some(parent), &name, kind, opts);
                e.start_unix_nanos = times.before(m.first);
                e.end_unix_nanos = times.at(m.last).max(e.start_unix_nanos);
                let a = &mut e.attributes;
                if let Some(id) = &m.id {
                    set_str(a, GEN_AI_RESPONSE_ID, id);
                }
                if synthetic {
                    set_str(a, "claude_code.text", &summarize(&m.text));
                } else {
                    e.status = SpanStatus::Ok;
                    a.insert(attr::GEN_AI_OPERATION_NAME.to_owned(), Value::from("chat"));
                    a.insert(attr::GEN_AI_PROVIDER_NAME.to_owned(), Value::from("anthropic"));
                    if let Some(model) = &m.model {
                        set_str(a, attr::GEN_AI_REQUEST_MODEL, model);
                        set_str(a, attr::GEN_AI_RESPONSE_MODEL, model);
                    }
                    if let Some(reason) = &m.stop_reason {
                        a.insert(GEN_AI_RESPONSE_FINISH_REASONS.to_owned(), Value::from(vec![clip(reason)]));
                    }
                    if m.input_tokens.is_some() || m.cache_read.is_some() || m.cache_creation.is_some() {
                        let total = [m.input_tokens, m.cache_read, m.cache_creation]
                            .into_iter()
                            .flatten()
                            .fold(0u64, u64::saturating_add);
                        a.insert(attr::GEN_AI_USAGE_INPUT_TOKENS.to_owned(), Value::from(total));
                    }
                    for (key, n) in [
                        (attr::GEN_AI_USAGE_OUTPUT_TOKENS, m.output_tokens),
                        (attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, m.cache_read),
                        (GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, m.cache_creation),
                    ] {
                        if let Some(n) = n {
                            a.insert(key.to_owned(), Value::from(n));
                        }
                    }
                }
                finish(&mut e, estimated);
                events.push(e);
            }
            Node::Tool(ti) => {
                let t = &tools[ti];
                let span_id = tool_span_id(&t.id);
                let parent = parent_of(&t.parent_tool_use_id, &t.id);
                let name = format!("execute_tool {}", t.name);
                let mut e = new_event(trace_id, &span_id, Some(parent), &name, SpanKind::ToolCall, opts);
                e.start_unix_nanos = times.at(t.start);
                e.end_unix_nanos = t.end.map_or(times.end, |end| times.at(end)).max(e.start_unix_nanos);
                let a = &mut e.attributes;
                a.insert(attr::GEN_AI_OPERATION_NAME.to_owned(), Value::from("execute_tool"));
                set_str(a, attr::GEN_AI_TOOL_NAME, &t.name);
                set_str(a, attr::GEN_AI_TOOL_CALL_ID, &t.id);
                set_str(a, attr::HELIX_TOOL_ARGUMENTS, &t.arguments);
                if let Some(id) = &messages[t.message].id {
                    set_str(a, "claude_code.message_id", id);
                }
                match &t.result {
                    Some(result) => {
                        set_str(a, attr::HELIX_TOOL_RESULT, result);
                        if t.is_error {
                            e.status = SpanStatus::Error;
                            e.status_message = Some(if result.is_empty() {
                                "the tool reported an error".to_owned()
                            } else {
                                result.clone()
                            });
                        } else {
                            e.status = SpanStatus::Ok;
                        }
                    }
                    None => e.status_message = Some("no tool_result in the transcript".to_owned()),
                }
                finish(&mut e, estimated);
                events.push(e);
            }
        }
    }
}

/// The time of every line of a session, and of the session itself.
#[derive(Debug)]
struct Times {
    start: u64,
    end: u64,
    /// When line `i` was written (its timestamp, or its estimated place).
    points: Vec<u64>,
    estimated: bool,
}

impl Times {
    fn at(&self, i: usize) -> u64 {
        self.points.get(i).copied().unwrap_or(self.end)
    }

    /// The time of the line before line `i`: when the request answered by line `i` was sent.
    fn before(&self, i: usize) -> u64 {
        if i == 0 { self.start } else { self.at(i - 1).max(self.start) }
    }
}

fn layout(
    lines: &[(usize, Value)],
    starts_message: &[bool],
    delivers_results: &[bool],
    outcome: Option<&Outcome>,
    opts: &ImportOptions,
) -> Times {
    let duration = outcome.and_then(|o| o.duration_ms).map(|ms| ms.saturating_mul(NANOS_PER_MS));
    let stamps: Vec<Option<u64>> =
        lines.iter().map(|(_, v)| str_field(v, "timestamp").and_then(parse_rfc3339_nanos)).collect();

    if let Some(first) = stamps.iter().flatten().next().copied() {
        let mut last = first;
        let points: Vec<u64> = stamps
            .iter()
            .map(|s| {
                // Clocks can step back; times within a session only move forward.
                last = s.unwrap_or(last).max(last);
                last
            })
            .collect();
        let end = last;
        let start = duration.map_or(first, |d| first.min(end.saturating_sub(d)));
        return Times { start, end, points, estimated: false };
    }

    let llm_steps = starts_message.iter().filter(|b| **b).count() as u64;
    let tool_steps = delivers_results.iter().filter(|b| **b).count() as u64;
    let api = outcome.and_then(|o| o.duration_api_ms).map(|ms| ms.saturating_mul(NANOS_PER_MS));
    let (llm_step, tool_step) = match (duration, api) {
        (Some(d), Some(api)) if llm_steps > 0 => {
            let api = api.min(d);
            // No tool results: the tool time has no step to go to and stays at the end.
            let tool_step = (d - api).checked_div(tool_steps).unwrap_or(0);
            (api / llm_steps, tool_step)
        }
        (Some(d), _) if llm_steps + tool_steps > 0 => {
            let step = d / (llm_steps + tool_steps);
            (step, step)
        }
        _ => (NOMINAL_STEP_NANOS, NOMINAL_STEP_NANOS),
    };
    let mut offset = 0u64;
    let offsets: Vec<u64> = (0..lines.len())
        .map(|i| {
            if starts_message[i] {
                offset = offset.saturating_add(llm_step);
            }
            if delivers_results[i] {
                offset = offset.saturating_add(tool_step);
            }
            offset
        })
        .collect();
    let total = duration.unwrap_or(0).max(offset);
    let start = opts.start_unix_nanos.unwrap_or_else(|| {
        let now = u64::try_from(helix_core::time::now_ms()).unwrap_or(0).saturating_mul(NANOS_PER_MS);
        now.saturating_sub(total)
    });
    Times {
        start,
        end: start.saturating_add(total),
        points: offsets.into_iter().map(|o| start.saturating_add(o)).collect(),
        estimated: true,
    }
}

fn new_event(
    trace_id: &str,
    span_id: &str,
    parent: Option<String>,
    name: &str,
    kind: SpanKind,
    opts: &ImportOptions,
) -> Event {
    let name_field = |s: &Option<String>| s.as_deref().map(|s| clip_to(s, MAX_NAME).to_owned());
    Event {
        schema_version: SCHEMA_VERSION,
        trace_id: trace_id.to_owned(),
        span_id: span_id.to_owned(),
        parent_span_id: parent,
        name: clip_to(name, MAX_NAME).to_owned(),
        kind,
        start_unix_nanos: 0,
        end_unix_nanos: 0,
        status: SpanStatus::Unset,
        status_message: None,
        project: name_field(&opts.project),
        phase: name_field(&opts.phase),
        run: name_field(&opts.run),
        domain: None,
        attributes: BTreeMap::new(),
    }
}

fn finish(e: &mut Event, estimated: bool) {
    if estimated {
        e.attributes.insert(HELIX_TIME_ESTIMATED.to_owned(), Value::from(true));
    }
}

// ---- text helpers ----

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn u64_field(v: &Value, key: &str) -> Option<u64> {
    let f = v.get(key)?;
    // Some writers print whole numbers as floats (`1234.0`).
    f.as_u64().or_else(|| f.as_f64().filter(|x| x.is_finite() && *x >= 0.0).map(|x| x as u64))
}

fn max_into(slot: &mut Option<u64>, n: Option<u64>) {
    if let Some(n) = n {
        *slot = Some(slot.map_or(n, |s| s.max(n)));
    }
}

/// The text of a `tool_result` content: a string, or blocks of which text is kept and anything
/// else (images, documents) is named.
fn result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|b| match (str_field(b, "type"), str_field(b, "text")) {
                (_, Some(t)) => t.to_owned(),
                (Some(other), None) => format!("[{other}]"),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Whitespace collapsed to single spaces, cut to [`SUMMARY_CHARS`] characters (an ellipsis
/// marks a cut): enough for a trace browser's list, never the whole output.
fn summarize(s: &str) -> String {
    let mut chars = s.split_whitespace().flat_map(|w| std::iter::once(' ').chain(w.chars())).skip(1);
    let mut out: String = chars.by_ref().take(SUMMARY_CHARS).collect();
    if chars.next().is_some() {
        out.pop();
        out.push('…');
    }
    out
}

fn clip(s: &str) -> String {
    clip_to(s, MAX_ATTRIBUTE_BYTES).to_owned()
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary.
fn clip_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn set_str(a: &mut BTreeMap<String, Value>, key: &str, value: &str) {
    a.insert(key.to_owned(), Value::from(clip(value)));
}

// ---- ids ----

/// FNV-1a over the parts, each followed by 0xff (a byte UTF-8 never contains), so that
/// `["ab", "c"]` and `["a", "bc"]` differ.
fn fnv1a128(parts: &[&str]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// MurmurHash3's 64-bit finalizer: FNV's high bits depend little on the last bytes; this
/// spreads every input bit over the output (and is a bijection).
pub(crate) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

pub(crate) fn halves(parts: &[&str]) -> (u64, u64) {
    let h = fnv1a128(parts);
    let (hi, lo) = ((h >> 64) as u64, h as u64);
    let a = fmix64(lo ^ hi.rotate_left(29));
    (a, fmix64(hi ^ a))
}

/// Ids must not be all zero; a zero hash (never seen in practice) becomes 1.
pub(crate) fn non_zero(n: u64) -> u64 {
    if n == 0 { 1 } else { n }
}

fn trace_id_of(parts: &[&str]) -> String {
    let (a, b) = halves(parts);
    format!("{:016x}{:016x}", a, non_zero(b))
}

fn span_id_of(trace_id: &str, kind: &str, key: &str) -> String {
    let (a, _) = halves(&[trace_id, kind, key]);
    format!("{:016x}", non_zero(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_764_082_800_000_000_000;
    const SEC: u64 = 1_000_000_000;

    /// A transcript as `claude -p --output-format stream-json --verbose` prints it (trimmed):
    /// the first message is split into a text line and a tool_use line sharing `message.id`.
    const TRANSCRIPT: &str = r#"{"type":"system","subtype":"init","cwd":"/work/shop","session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21","tools":["Task","Bash","Read"],"mcp_servers":[],"model":"claude-sonnet-4-5-20250929","permissionMode":"acceptEdits","apiKeySource":"none","claude_code_version":"2.0.14"}
{"type":"assistant","message":{"id":"msg_01A","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Let me run the tests."}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"cache_creation_input_tokens":1000,"cache_read_input_tokens":20000,"output_tokens":12,"service_tier":"standard"}},"parent_tool_use_id":null,"session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21","uuid":"u1"}
{"type":"assistant","message":{"id":"msg_01A","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"tool_use","id":"toolu_01Bash","name":"Bash","input":{"command":"cargo test --workspace","description":"Run the tests"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"cache_creation_input_tokens":1000,"cache_read_input_tokens":20000,"output_tokens":80,"service_tier":"standard"}},"parent_tool_use_id":null,"session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21","uuid":"u2"}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_01Bash","type":"tool_result","content":"running 12 tests\n\ntest result: ok. 12 passed;   0 failed","is_error":false}]},"parent_tool_use_id":null,"session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21","uuid":"u3"}
{"type":"assistant","message":{"id":"msg_02B","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"tool_use","id":"toolu_02Read","name":"Read","input":{"file_path":"/work/shop/src/missing.rs"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"cache_creation_input_tokens":200,"cache_read_input_tokens":21000,"output_tokens":60}},"parent_tool_use_id":null,"session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21","uuid":"u4"}
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":[{"type":"text","text":"<tool_use_error>File does not exist.</tool_use_error>"}],"is_error":true,"tool_use_id":"toolu_02Read"}]},"parent_tool_use_id":null,"session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21","uuid":"u5"}
{"type":"assistant","message":{"id":"msg_03C","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"All 12 tests pass; src/missing.rs does not exist."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":4,"cache_read_input_tokens":21200,"output_tokens":25}},"parent_tool_use_id":null,"session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21","uuid":"u6"}
{"type":"result","subtype":"success","is_error":false,"duration_ms":12000,"duration_api_ms":6000,"num_turns":3,"result":"All 12 tests pass; src/missing.rs does not exist.","session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21","total_cost_usd":0.0421,"usage":{"input_tokens":12,"cache_creation_input_tokens":1200,"cache_read_input_tokens":62200,"output_tokens":165},"permission_denials":[],"uuid":"u7"}
"#;

    fn opts() -> ImportOptions {
        ImportOptions {
            project: Some("webshop".to_owned()),
            phase: Some("development".to_owned()),
            run: Some("nightly".to_owned()),
            start_unix_nanos: Some(START),
        }
    }

    fn all_valid(imported: &Imported) {
        for e in &imported.events {
            assert_eq!(e.validate(), Ok(()), "{e:?}");
        }
    }

    fn by_name<'a>(events: &'a [Event], name: &str) -> Vec<&'a Event> {
        events.iter().filter(|e| e.name == name).collect()
    }

    #[test]
    fn realistic_transcript_becomes_a_trace() {
        let imported = import_claude_stream_json(TRANSCRIPT, &opts());
        assert_eq!(imported.skipped, vec![]);
        all_valid(&imported);
        let ev = &imported.events;
        let names: Vec<&str> = ev.iter().map(|e| e.name.as_str()).collect();
        let chat = "chat claude-sonnet-4-5-20250929";
        assert_eq!(
            names,
            ["claude-code session", chat, "execute_tool Bash", chat, "execute_tool Read", chat]
        );
        assert!(ev.iter().all(|e| e.trace_id == ev[0].trace_id));
        assert!(ev.iter().all(|e| e.project.as_deref() == Some("webshop")
            && e.phase.as_deref() == Some("development")
            && e.run.as_deref() == Some("nightly")));

        // Root: the whole session, its cost and outcome.
        let root = &ev[0];
        assert_eq!(root.kind, SpanKind::Run);
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.status, SpanStatus::Ok);
        assert_eq!((root.start_unix_nanos, root.end_unix_nanos), (START, START + 12 * SEC));
        assert_eq!(root.number(attr::HELIX_COST_USD), Some(0.0421));
        assert_eq!(root.number("claude_code.num_turns"), Some(3.0));
        assert_eq!(root.text("claude_code.result.subtype"), Some("success"));
        assert_eq!(root.text("claude_code.session_id"), Some("6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21"));
        assert_eq!(root.text("claude_code.model"), Some("claude-sonnet-4-5-20250929"));
        // the session's cost is filed under its model, not "(none)"
        assert_eq!(root.text(attr::GEN_AI_REQUEST_MODEL), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(
            root.number(attr::GEN_AI_USAGE_INPUT_TOKENS),
            None,
            "tokens are counted on the calls only"
        );

        // Everything hangs off the root.
        assert!(ev[1..].iter().all(|e| e.parent_span_id.as_deref() == Some(root.span_id.as_str())));
        let mut ids: Vec<&str> = ev.iter().map(|e| e.span_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ev.len());

        // LLM calls: the split first message is one span, its usage counted once.
        let first = &ev[1];
        assert_eq!(first.kind, SpanKind::LlmCall);
        assert_eq!(first.status, SpanStatus::Ok);
        assert_eq!(first.text(attr::GEN_AI_OPERATION_NAME), Some("chat"));
        assert_eq!(first.text(attr::GEN_AI_PROVIDER_NAME), Some("anthropic"));
        assert_eq!(first.text(attr::GEN_AI_REQUEST_MODEL), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(first.text(GEN_AI_RESPONSE_ID), Some("msg_01A"));
        assert_eq!(first.number(attr::GEN_AI_USAGE_INPUT_TOKENS), Some(21_003.0));
        assert_eq!(first.number(attr::GEN_AI_USAGE_OUTPUT_TOKENS), Some(80.0));
        assert_eq!(first.number(attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS), Some(20_000.0));
        assert_eq!(first.number(GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS), Some(1000.0));
        assert_eq!(first.number(attr::HELIX_COST_USD), None, "no invented per-call cost");
        let last = &ev[5];
        assert_eq!(last.number(attr::GEN_AI_USAGE_INPUT_TOKENS), Some(21_204.0));
        assert_eq!(last.attributes[GEN_AI_RESPONSE_FINISH_REASONS], serde_json::json!(["end_turn"]));

        // Tool calls: arguments and result summaries, error status from is_error.
        let bash = &ev[2];
        assert_eq!(bash.kind, SpanKind::ToolCall);
        assert_eq!(bash.status, SpanStatus::Ok);
        assert_eq!(bash.text(attr::GEN_AI_TOOL_NAME), Some("Bash"));
        assert_eq!(bash.text(attr::GEN_AI_TOOL_CALL_ID), Some("toolu_01Bash"));
        assert_eq!(bash.text("claude_code.message_id"), Some("msg_01A"));
        let args = bash.text(attr::HELIX_TOOL_ARGUMENTS).unwrap_or_default();
        assert!(args.contains(r#""command":"cargo test --workspace""#), "{args}");
        assert_eq!(
            bash.text(attr::HELIX_TOOL_RESULT),
            Some("running 12 tests test result: ok. 12 passed; 0 failed")
        );
        let read = &ev[4];
        assert_eq!(read.status, SpanStatus::Error);
        assert_eq!(
            read.status_message.as_deref(),
            Some("<tool_use_error>File does not exist.</tool_use_error>")
        );
        assert_eq!(read.text(attr::HELIX_TOOL_RESULT), read.status_message.as_deref());

        // Estimated layout: 6 s of API time over 3 calls, 6 s of tool time over 2 results.
        let spans: Vec<(u64, u64)> = ev[1..]
            .iter()
            .map(|e| ((e.start_unix_nanos - START) / SEC, (e.end_unix_nanos - START) / SEC))
            .collect();
        assert_eq!(spans, [(0, 2), (2, 5), (5, 7), (7, 10), (10, 12)]);
        assert!(ev.iter().all(|e| e.attributes.get(HELIX_TIME_ESTIMATED) == Some(&Value::Bool(true))));
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_imports() {
        let mut lines: Vec<&str> = TRANSCRIPT.lines().collect();
        lines.insert(4, "this is not JSON {");
        lines.insert(2, "");
        lines.insert(2, r#"[1, 2]"#);
        lines.insert(1, r#"{"type":"stream_event","event":{"type":"message_start"},"session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21"}"#);
        lines.insert(1, r#"{"type":"assistant","session_id":"6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21"}"#);
        let text = lines.join("\n");
        let imported = import_claude_stream_json(&text, &opts());
        let numbers: Vec<usize> = imported.skipped.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [2, 5, 9], "{:?}", imported.skipped);
        assert!(imported.skipped[0].1.contains("without a message"));
        assert!(imported.skipped[1].1.contains("not a JSON object"));
        assert!(imported.skipped[2].1.starts_with("not JSON"));
        all_valid(&imported);
        let clean = import_claude_stream_json(TRANSCRIPT, &opts());
        assert_eq!(imported.events.len(), clean.events.len());
        let ids = |i: &Imported| i.events.iter().map(|e| e.span_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&imported), ids(&clean));
    }

    #[test]
    fn the_session_cost_is_filed_under_the_model_that_cost_the_most() {
        let text = TRANSCRIPT.replace(
            r#""total_cost_usd":0.0421,"#,
            r#""total_cost_usd":0.0421,"modelUsage":{"claude-haiku-4-5":{"costUSD":0.001},"claude-opus-4-1":{"costUSD":0.0411}},"#,
        );
        assert_ne!(text, TRANSCRIPT);
        let imported = import_claude_stream_json(&text, &opts());
        let root = imported.events.iter().find(|e| e.kind == SpanKind::Run).expect("root");
        assert_eq!(root.text(attr::GEN_AI_REQUEST_MODEL), Some("claude-opus-4-1"));
        all_valid(&imported);
    }

    #[test]
    fn reimport_gives_the_same_ids() {
        let once = import_claude_stream_json(TRANSCRIPT, &opts());
        let twice = import_claude_stream_json(TRANSCRIPT, &opts());
        assert_eq!(once, twice);
        // The ids depend on the session, not on where the events are filed or when.
        let elsewhere = import_claude_stream_json(TRANSCRIPT, &ImportOptions::default());
        let ids = |i: &Imported| {
            i.events
                .iter()
                .map(|e| (e.trace_id.clone(), e.span_id.clone(), e.parent_span_id.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&once), ids(&elsewhere));
        all_valid(&elsewhere);
        let other = TRANSCRIPT.replace("6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21", "another-session");
        let other = import_claude_stream_json(&other, &opts());
        assert_ne!(other.events[0].trace_id, once.events[0].trace_id);
        assert_ne!(other.events[0].span_id, once.events[0].span_id);
    }

    #[test]
    fn without_session_ids_the_content_names_the_trace() {
        let text = r#"{"type":"assistant","message":{"id":"m1","model":"claude-haiku-4-5","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":7,"output_tokens":2}}}
{"type":"result","subtype":"success","is_error":false,"duration_ms":500,"num_turns":1,"result":"hi"}"#;
        let a = import_claude_stream_json(text, &opts());
        let b = import_claude_stream_json(text, &opts());
        all_valid(&a);
        assert_eq!(a.events.len(), 2);
        assert_eq!(a.events[0].trace_id, b.events[0].trace_id);
        let changed = import_claude_stream_json(&text.replace("\"hi\"}", "\"hello\"}"), &opts());
        assert_ne!(a.events[0].trace_id, changed.events[0].trace_id);
        // No duration_api_ms: the only step takes the whole duration.
        assert_eq!(a.events[1].duration_nanos(), 500 * NANOS_PER_MS);
        assert_eq!(a.events[0].number(attr::HELIX_COST_USD), None);
    }

    #[test]
    fn recorded_timestamps_are_used() {
        let text = r#"{"type":"user","message":{"role":"user","content":"fix it"},"session_id":"s1","timestamp":"2025-11-25T15:00:00.000Z"}
{"type":"assistant","message":{"id":"m1","model":"claude-opus-4-1","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":10,"output_tokens":5}},"session_id":"s1","timestamp":"2025-11-25T15:00:02.500Z"}
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"a b"}]},"session_id":"s1","timestamp":"2025-11-25T16:00:03.250+01:00"}
{"type":"result","subtype":"success","is_error":false,"duration_ms":4000,"session_id":"s1"}"#;
        let imported = import_claude_stream_json(text, &opts());
        all_valid(&imported);
        let base = parse_rfc3339_nanos("2025-11-25T15:00:00Z").unwrap_or_default();
        assert_eq!(base, 1_764_082_800 * SEC);
        let ev = &imported.events;
        assert_eq!(ev.len(), 3);
        let ms = |e: &Event| {
            ((e.start_unix_nanos - base) / NANOS_PER_MS, (e.end_unix_nanos - base) / NANOS_PER_MS)
        };
        // The session started duration_ms before its last line, i.e. before the first timestamp.
        assert_eq!(ev[0].start_unix_nanos, base + 3_250 * NANOS_PER_MS - 4 * SEC);
        assert_eq!(ms(&ev[1]), (0, 2_500));
        assert_eq!(ms(&ev[2]), (2_500, 3_250));
        assert!(ev.iter().all(|e| !e.attributes.contains_key(HELIX_TIME_ESTIMATED)));
    }

    #[test]
    fn interrupted_run_and_unanswered_tool() {
        let text: String = TRANSCRIPT.lines().take(3).collect::<Vec<_>>().join("\n");
        let imported = import_claude_stream_json(&text, &opts());
        all_valid(&imported);
        let ev = &imported.events;
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].status, SpanStatus::Unset);
        assert!(ev[0].status_message.as_deref().unwrap_or_default().contains("no result line"));
        let bash = by_name(ev, "execute_tool Bash")[0];
        assert_eq!(bash.status, SpanStatus::Unset);
        assert_eq!(bash.text(attr::HELIX_TOOL_RESULT), None);
        assert_eq!(bash.end_unix_nanos, ev[0].end_unix_nanos);
        // No duration known: 1 ms steps keep the order.
        assert_eq!(ev[1].duration_nanos(), NOMINAL_STEP_NANOS);
    }

    #[test]
    fn error_results_fail_the_root() {
        let text = TRANSCRIPT.replace(
            r#""subtype":"success","is_error":false"#,
            r#""subtype":"error_max_turns","is_error":true,"errors":["Reached maximum number of turns (3)"]"#,
        );
        let imported = import_claude_stream_json(&text, &opts());
        let root = &imported.events[0];
        assert_eq!(root.status, SpanStatus::Error);
        assert_eq!(
            root.status_message.as_deref(),
            Some("error_max_turns: Reached maximum number of turns (3)")
        );
        // Older versions said is_error: false for these.
        let text = TRANSCRIPT.replace(r#""subtype":"success""#, r#""subtype":"error_during_execution""#);
        let root = &import_claude_stream_json(&text, &opts()).events[0];
        assert_eq!(root.status, SpanStatus::Error);
        assert!(
            root.status_message.as_deref().unwrap_or_default().starts_with("error_during_execution: All 12")
        );
    }

    #[test]
    fn sub_agent_work_nests_under_its_task_call() {
        let text = r#"{"type":"assistant","message":{"id":"m1","model":"claude-sonnet-4-5","content":[{"type":"tool_use","id":"task1","name":"Task","input":{"description":"explore","prompt":"find the parser"}}]},"parent_tool_use_id":null,"session_id":"s"}
{"type":"assistant","message":{"id":"m2","model":"claude-haiku-4-5","content":[{"type":"tool_use","id":"g1","name":"Grep","input":{"pattern":"parse"}}]},"parent_tool_use_id":"task1","session_id":"s"}
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"g1","content":"src/parse.rs"}]},"parent_tool_use_id":"task1","session_id":"s"}
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"task1","content":[{"type":"text","text":"It is in src/parse.rs"}]}]},"session_id":"s"}
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"nope","content":"?"}]},"session_id":"s"}"#;
        let imported = import_claude_stream_json(text, &opts());
        all_valid(&imported);
        assert_eq!(imported.skipped.len(), 1);
        assert_eq!(imported.skipped[0].0, 5);
        let ev = &imported.events;
        let task = by_name(ev, "execute_tool Task")[0];
        let sub = by_name(ev, "chat claude-haiku-4-5")[0];
        let grep = by_name(ev, "execute_tool Grep")[0];
        assert_eq!(task.parent_span_id.as_deref(), Some(ev[0].span_id.as_str()));
        assert_eq!(sub.parent_span_id.as_deref(), Some(task.span_id.as_str()));
        assert_eq!(grep.parent_span_id.as_deref(), Some(task.span_id.as_str()));
        assert!(task.start_unix_nanos <= sub.start_unix_nanos && grep.end_unix_nanos <= task.end_unix_nanos);
        assert_eq!(task.text(attr::HELIX_TOOL_RESULT), Some("It is in src/parse.rs"));
    }

    #[test]
    fn sessions_in_one_file_are_separate_traces() {
        let second =
            TRANSCRIPT.replace("6f1c2a9e-1b7d-4a43-9a53-0c7e0e4b9f21", "second").replace("msg_0", "msg_9");
        let imported = import_claude_stream_json(&format!("{TRANSCRIPT}{second}"), &opts());
        all_valid(&imported);
        assert_eq!(imported.events.len(), 12);
        let roots: Vec<&Event> = imported.events.iter().filter(|e| e.parent_span_id.is_none()).collect();
        assert_eq!(roots.len(), 2);
        assert_ne!(roots[0].trace_id, roots[1].trace_id);
    }

    #[test]
    fn synthetic_messages_are_not_llm_calls() {
        let text = r#"{"type":"assistant","message":{"id":"x","model":"<synthetic>","content":[{"type":"text","text":"API Error: 529 overloaded"}],"usage":{"input_tokens":0,"output_tokens":0}},"session_id":"s"}"#;
        let imported = import_claude_stream_json(text, &opts());
        all_valid(&imported);
        let e = &imported.events[1];
        assert_eq!(e.kind, SpanKind::Other);
        assert_eq!(e.text("claude_code.text"), Some("API Error: 529 overloaded"));
        assert_eq!(e.number(attr::GEN_AI_USAGE_INPUT_TOKENS), None);
    }

    #[test]
    fn long_values_are_cut_and_events_stay_valid() {
        let long_name = "mcp__".to_owned() + &"x".repeat(600);
        let big_output = "é ".repeat(50_000);
        let text = format!(
            r#"{{"type":"assistant","message":{{"id":"m","model":"m","content":[{{"type":"tool_use","id":"t","name":"{long_name}","input":{{"blob":"{big}"}}}}]}},"session_id":"s"}}
{{"type":"user","message":{{"content":[{{"type":"tool_result","tool_use_id":"t","content":"{big_output}"}}]}},"session_id":"s"}}"#,
            big = "y".repeat(5000)
        );
        let long_opts = ImportOptions { project: Some("p".repeat(1000)), ..opts() };
        let imported = import_claude_stream_json(&text, &long_opts);
        assert_eq!(imported.skipped, vec![]);
        all_valid(&imported);
        let tool = &imported.events[2];
        assert_eq!(tool.name.len(), MAX_NAME);
        for key in [attr::HELIX_TOOL_ARGUMENTS, attr::HELIX_TOOL_RESULT] {
            let v = tool.text(key).unwrap_or_default();
            assert_eq!(v.chars().count(), SUMMARY_CHARS, "{key}");
            assert!(v.ends_with('…'));
        }
    }

    #[test]
    fn summaries() {
        assert_eq!(summarize("  a\n\tb  c "), "a b c");
        assert_eq!(summarize(""), "");
        let exact = "z".repeat(SUMMARY_CHARS);
        assert_eq!(summarize(&exact), exact);
        let cut = summarize(&"z".repeat(SUMMARY_CHARS + 1));
        assert_eq!(cut.chars().count(), SUMMARY_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(
            result_text(Some(&serde_json::json!([{"type":"text","text":"a"},{"type":"image"}]))),
            "a [image]"
        );
        assert_eq!(clip_to("ééé", 3), "é");
    }

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let t = trace_id_of(&["a"]);
        assert_eq!(t.len(), 32);
        assert_ne!(trace_id_of(&["ab", "c"]), trace_id_of(&["a", "bc"]));
        let spans: std::collections::HashSet<String> =
            (0..10_000).map(|i| span_id_of(&t, "tool", &format!("toolu_{i}"))).collect();
        assert_eq!(spans.len(), 10_000);
        assert!(spans.iter().all(|s| s.len() == 16));
    }
}
