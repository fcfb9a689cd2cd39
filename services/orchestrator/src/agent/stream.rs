//! Live parsing of a coding agent's JSON-lines stream into the steps of a phase's trace.
//!
//! An agent phase runs a CLI that prints one JSON object per line while it works. This parser
//! takes those lines one at a time, as they arrive, and hands back each step the moment it is
//! complete, so the trace shows a tool call while the agent is still running rather than after a
//! later import. It is pure: the caller reads the pipe, stamps each line with the time it
//! arrived and turns the steps into spans.
//!
//! Two formats, recognised by their first usable line (so `generic` agents may print either):
//!
//! - **Claude Code** `--output-format stream-json --verbose`: `system`/`init`, `assistant` lines
//!   (one per content block, sharing `message.id` and `message.usage`), `user` lines with
//!   `tool_result` blocks, and a final `result` (cost, turns, outcome).
//! - **Codex** `exec --json`: `thread.started`, `turn.started`, `item.started` /
//!   `item.completed` (items `command_execution`, `file_change`, `mcp_tool_call`, `web_search`,
//!   `agent_message`, `reasoning`, `todo_list`), `turn.completed` with usage, `turn.failed`,
//!   `error`.
//!
//! A model turn is one [`Step::Turn`], closed when the next line no longer belongs to it (Claude:
//! another message id or a tool result; Codex: `turn.completed`), so its end time is when its last
//! line arrived. A tool call is one [`Step::Tool`], from the line asking for it to the line
//! delivering its result; calls still open when the stream ends are closed by [`AgentStream::finish`]
//! without a result. Lines that are not JSON, and line types this parser does not know, are
//! counted and skipped: agents add event types between versions, and a trace with a step missing
//! is better than a phase failed over a log line.

use std::collections::HashMap;

use serde_json::Value;

/// Longest argument and result summary, in characters.
pub const SUMMARY_CHARS: usize = 200;

/// Which stream format a line showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    ClaudeCode,
    Codex,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::ClaudeCode => "claude-stream-json",
            Format::Codex => "codex-exec-json",
        }
    }
}

/// Tokens a turn used, as the agent reported them. `input` counts every input token, cached ones
/// included (as OpenTelemetry's `gen_ai.usage.input_tokens` does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// One finished step of the agent's work. Times are Unix nanoseconds as given to
/// [`AgentStream::push`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// One model response.
    Turn { id: String, model: Option<String>, tokens: Tokens, start: u64, end: u64 },
    /// One tool call: `arguments` and `result` are whitespace-collapsed summaries.
    Tool {
        id: String,
        name: String,
        arguments: String,
        result: Option<String>,
        is_error: bool,
        start: u64,
        end: u64,
    },
}

/// What the whole stream said, once it ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub format: Option<Format>,
    /// The agent's session or thread id.
    pub session: Option<String>,
    pub model: Option<String>,
    /// The agent's own final message (Claude's `result`, Codex's last `agent_message`).
    pub final_text: Option<String>,
    /// The cost the agent reported itself (Claude Code's `total_cost_usd`).
    pub reported_cost_usd: Option<f64>,
    pub turns: u32,
    pub tool_calls: u32,
    pub tokens: Tokens,
    /// The agent said it failed, and why.
    pub error: Option<String>,
    /// The agent saw an HTTP 429 about a budget or quota: it was stopped by its budget.
    pub budget_exceeded: bool,
    /// Lines skipped (not JSON, or of a type not known here).
    pub skipped_lines: u64,
}

#[derive(Debug)]
struct OpenTurn {
    id: String,
    model: Option<String>,
    tokens: Tokens,
    start: u64,
    end: u64,
}

#[derive(Debug)]
struct OpenTool {
    name: String,
    arguments: String,
    start: u64,
}

/// The parser: feed it lines with [`AgentStream::push`], then call [`AgentStream::finish`].
#[derive(Debug, Default)]
pub struct AgentStream {
    outcome: Outcome,
    turn: Option<OpenTurn>,
    tools: HashMap<String, OpenTool>,
    /// Order in which tools were opened, to close leftovers in order.
    tool_order: Vec<String>,
    /// When the last line arrived: a turn's start is the end of what came before it.
    last_line: Option<u64>,
    /// Codex: when the current turn started.
    codex_turn_start: Option<u64>,
}

impl AgentStream {
    pub fn new() -> AgentStream {
        AgentStream::default()
    }

    /// Takes one line that arrived at `now` (Unix nanoseconds); returns the steps it completed.
    pub fn push(&mut self, line: &str, now: u64) -> Vec<Step> {
        let line = line.trim_start_matches('\u{feff}').trim();
        let mut out = Vec::new();
        if line.is_empty() {
            return out;
        }
        let Ok(Value::Object(v)) = serde_json::from_str::<Value>(line) else {
            self.outcome.skipped_lines += 1;
            return out;
        };
        let v = Value::Object(v);
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        let format = self.outcome.format.or_else(|| detect(kind));
        match format {
            Some(Format::ClaudeCode) => self.claude(kind, &v, now, &mut out),
            Some(Format::Codex) => self.codex(kind, &v, now, &mut out),
            None => self.outcome.skipped_lines += 1,
        }
        if self.outcome.format.is_none() {
            self.outcome.format = format;
        }
        self.last_line = Some(now);
        out
    }

    /// Ends the stream at `now`: closes the open turn and every tool call still waiting for its
    /// result, and returns them with the outcome.
    pub fn finish(mut self, now: u64) -> (Vec<Step>, Outcome) {
        let mut out = Vec::new();
        self.close_turn(&mut out);
        for id in std::mem::take(&mut self.tool_order) {
            if let Some(t) = self.tools.remove(&id) {
                out.push(Step::Tool {
                    id,
                    name: t.name,
                    arguments: t.arguments,
                    result: None,
                    is_error: false,
                    start: t.start,
                    end: now.max(t.start),
                });
            }
        }
        (out, self.outcome)
    }

    /// What the stream said so far.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn close_turn(&mut self, out: &mut Vec<Step>) {
        if let Some(t) = self.turn.take() {
            self.outcome.turns += 1;
            add(&mut self.outcome.tokens, t.tokens);
            out.push(Step::Turn { id: t.id, model: t.model, tokens: t.tokens, start: t.start, end: t.end });
        }
    }

    fn open_tool(&mut self, id: String, name: String, arguments: String, now: u64) {
        self.outcome.tool_calls += 1;
        if self.tools.insert(id.clone(), OpenTool { name, arguments, start: now }).is_none() {
            self.tool_order.push(id);
        }
    }

    fn close_tool(
        &mut self,
        id: &str,
        result: Option<String>,
        is_error: bool,
        now: u64,
        out: &mut Vec<Step>,
    ) {
        let Some(t) = self.tools.remove(id) else { return };
        self.tool_order.retain(|x| x != id);
        if let Some(r) = &result {
            self.note_budget(r);
        }
        out.push(Step::Tool {
            id: id.to_owned(),
            name: t.name,
            arguments: t.arguments,
            result,
            is_error,
            start: t.start,
            end: now.max(t.start),
        });
    }

    fn note_budget(&mut self, text: &str) {
        if says_budget_exceeded(text) {
            self.outcome.budget_exceeded = true;
        }
    }

    fn claude(&mut self, kind: &str, v: &Value, now: u64, out: &mut Vec<Step>) {
        match kind {
            "system" => {
                if let Some(s) = str_at(v, "session_id") {
                    self.outcome.session.get_or_insert(s);
                }
                if let Some(m) = str_at(v, "model") {
                    self.outcome.model.get_or_insert(m);
                }
            }
            "assistant" => {
                let Some(msg) = v.get("message") else {
                    self.outcome.skipped_lines += 1;
                    return;
                };
                let id = str_at(msg, "id").unwrap_or_default();
                if self.turn.as_ref().is_some_and(|t| t.id != id) {
                    self.close_turn(out);
                }
                let start = self.last_line.unwrap_or(now);
                let model = str_at(msg, "model");
                let synthetic = model.as_deref() == Some("<synthetic>");
                let turn = self.turn.get_or_insert_with(|| OpenTurn {
                    id: id.clone(),
                    model: model.clone(),
                    tokens: Tokens::default(),
                    start,
                    end: now,
                });
                turn.end = now;
                if let Some(u) = msg.get("usage") {
                    // one line per content block, each carrying the message's usage: the largest counts
                    let cache_read = u64_at(u, "cache_read_input_tokens");
                    let cache_write = u64_at(u, "cache_creation_input_tokens");
                    let t = Tokens {
                        input: u64_at(u, "input_tokens") + cache_read + cache_write,
                        output: u64_at(u, "output_tokens"),
                        cache_read,
                        cache_write,
                    };
                    turn.tokens = max_tokens(turn.tokens, t);
                }
                let blocks = msg.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
                for b in &blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("tool_use") => {
                            let call = str_at(b, "id").unwrap_or_default();
                            let name = str_at(b, "name").unwrap_or_else(|| "tool".to_owned());
                            let args = b.get("input").map(|i| summary(&compact(i))).unwrap_or_default();
                            self.open_tool(call, name, args, now);
                        }
                        Some("text") if synthetic => {
                            if let Some(t) = str_at(b, "text") {
                                self.note_budget(&t);
                            }
                        }
                        _ => {}
                    }
                }
                if synthetic {
                    // Claude Code's own notice (an API error), not a model turn
                    self.turn = None;
                }
            }
            "user" => {
                let blocks = v
                    .get("message")
                    .and_then(|m| m.get("content"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for b in &blocks {
                    if b.get("type").and_then(Value::as_str) != Some("tool_result") {
                        continue;
                    }
                    self.close_turn(out);
                    let call = str_at(b, "tool_use_id").unwrap_or_default();
                    let result = b.get("content").map(result_text).map(|t| summary(&t));
                    let is_error = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                    self.close_tool(&call, result, is_error, now, out);
                }
            }
            "result" => {
                self.close_turn(out);
                if let Some(s) = str_at(v, "session_id") {
                    self.outcome.session.get_or_insert(s);
                }
                self.outcome.reported_cost_usd = v.get("total_cost_usd").and_then(Value::as_f64);
                let text = str_at(v, "result");
                let subtype = str_at(v, "subtype").unwrap_or_default();
                let failed = v.get("is_error").and_then(Value::as_bool).unwrap_or(false)
                    || subtype.starts_with("error");
                if let Some(t) = &text {
                    self.note_budget(t);
                }
                if failed {
                    let why = text.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| subtype.clone());
                    self.outcome.error = Some(summary(&why));
                }
                self.outcome.final_text = text;
            }
            _ => self.outcome.skipped_lines += 1,
        }
    }

    fn codex(&mut self, kind: &str, v: &Value, now: u64, out: &mut Vec<Step>) {
        match kind {
            "thread.started" => {
                if let Some(s) = str_at(v, "thread_id") {
                    self.outcome.session.get_or_insert(s);
                }
            }
            "turn.started" => {
                self.codex_turn_start = Some(now);
            }
            "turn.completed" => {
                let u = v.get("usage").cloned().unwrap_or(Value::Null);
                let tokens = Tokens {
                    input: u64_at(&u, "input_tokens"),
                    output: u64_at(&u, "output_tokens"),
                    cache_read: u64_at(&u, "cached_input_tokens"),
                    cache_write: u64_at(&u, "cache_write_input_tokens"),
                };
                let start = self.codex_turn_start.take().unwrap_or(now);
                let id = format!("turn-{}", self.outcome.turns + 1);
                self.turn = Some(OpenTurn { id, model: self.outcome.model.clone(), tokens, start, end: now });
                self.close_turn(out);
            }
            "turn.failed" | "error" => {
                let msg = v
                    .get("error")
                    .and_then(|e| str_at(e, "message"))
                    .or_else(|| str_at(v, "message"))
                    .unwrap_or_else(|| kind.to_owned());
                self.note_budget(&msg);
                self.outcome.error = Some(summary(&msg));
            }
            "item.started" | "item.updated" | "item.completed" => {
                let Some(item) = v.get("item") else {
                    self.outcome.skipped_lines += 1;
                    return;
                };
                self.codex_item(kind, item, now, out);
            }
            _ => self.outcome.skipped_lines += 1,
        }
    }

    fn codex_item(&mut self, kind: &str, item: &Value, now: u64, out: &mut Vec<Step>) {
        let id = str_at(item, "id").unwrap_or_default();
        let item_type = item.get("type").and_then(Value::as_str).unwrap_or("");
        let tool = match item_type {
            "command_execution" => Some(("shell", item.get("command").map(result_text).unwrap_or_default())),
            "file_change" => Some(("apply_patch", file_changes(item))),
            "mcp_tool_call" => {
                let name = str_at(item, "tool").unwrap_or_else(|| "mcp".to_owned());
                let args = item.get("arguments").map(compact).unwrap_or_default();
                self.codex_tool(kind, &id, &name, &args, item, now, out);
                return;
            }
            "web_search" => Some(("web_search", str_at(item, "query").unwrap_or_default())),
            "agent_message" => {
                if kind == "item.completed" {
                    self.outcome.final_text = str_at(item, "text");
                }
                None
            }
            "error" => {
                if let Some(m) = str_at(item, "message") {
                    self.note_budget(&m);
                }
                None
            }
            _ => None,
        };
        if let Some((name, args)) = tool {
            self.codex_tool(kind, &id, name, &args, item, now, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn codex_tool(
        &mut self,
        kind: &str,
        id: &str,
        name: &str,
        args: &str,
        item: &Value,
        now: u64,
        out: &mut Vec<Step>,
    ) {
        if !self.tools.contains_key(id) {
            if kind == "item.updated" {
                return;
            }
            self.open_tool(id.to_owned(), name.to_owned(), summary(args), now);
        }
        if kind != "item.completed" {
            return;
        }
        let status = str_at(item, "status").unwrap_or_default();
        let exit = item.get("exit_code").and_then(Value::as_i64);
        let is_error = status == "failed" || status == "declined" || exit.is_some_and(|c| c != 0);
        let result = item
            .get("aggregated_output")
            .or_else(|| item.get("result"))
            .or_else(|| item.get("error"))
            .map(result_text)
            .or_else(|| (!status.is_empty()).then(|| status.clone()))
            .map(|t| summary(&t));
        self.close_tool(id, result, is_error, now, out);
    }
}

/// The format a line's `type` shows, if any.
fn detect(kind: &str) -> Option<Format> {
    match kind {
        "system" | "assistant" | "user" | "result" => Some(Format::ClaudeCode),
        k if k.starts_with("thread.") || k.starts_with("turn.") || k.starts_with("item.") => {
            Some(Format::Codex)
        }
        _ => None,
    }
}

/// Whether an agent's error text says it hit a budget: the gateway answers 429 with
/// `budget_exceeded` when a phase's key has spent its `max_cost_usd`.
pub fn says_budget_exceeded(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("budget_exceeded") || (t.contains("429") && t.contains("budget"))
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn add(total: &mut Tokens, t: Tokens) {
    total.input += t.input;
    total.output += t.output;
    total.cache_read += t.cache_read;
    total.cache_write += t.cache_write;
}

fn max_tokens(a: Tokens, b: Tokens) -> Tokens {
    Tokens {
        input: a.input.max(b.input),
        output: a.output.max(b.output),
        cache_read: a.cache_read.max(b.cache_read),
        cache_write: a.cache_write.max(b.cache_write),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A tool result's text: a string, or the text blocks of structured content.
fn result_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| match b {
                Value::String(s) => Some(s.clone()),
                other => other.get("text").and_then(Value::as_str).map(str::to_owned),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => String::new(),
        other => other.get("text").and_then(Value::as_str).map_or_else(|| other.to_string(), str::to_owned),
    }
}

fn file_changes(item: &Value) -> String {
    let Some(changes) = item.get("changes").and_then(Value::as_array) else { return String::new() };
    changes
        .iter()
        .map(|c| {
            let path = c.get("path").and_then(Value::as_str).unwrap_or("?");
            match c.get("kind").and_then(Value::as_str) {
                Some(k) => format!("{k} {path}"),
                None => path.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whitespace collapsed, cut to [`SUMMARY_CHARS`] characters (with `…` when cut).
pub fn summary(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count >= SUMMARY_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
