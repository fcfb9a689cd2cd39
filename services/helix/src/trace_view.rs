//! `helix trace TRACE_OR_PROJECT`: one trace as a span tree in the terminal.
//!
//! Why here and not in the collector: the collector answers JSON for every client; reading a
//! trace while a pipeline misbehaves should need nothing but a terminal. So this module fetches
//! `GET /v1/traces/{id}` (for a project: its newest trace from `GET /v1/traces?project=`)
//! through [`ServiceClient`], and [`render`] turns that JSON into text. [`render`] is a pure
//! function of the collector's answer (no I/O, no clock, colours only when asked), so the whole
//! layout is unit-tested without a server.
//!
//! Layout: one line per span, indented as a tree, with the offset from the trace's start, the
//! duration, a status marker (✓ ok, ✗ error, · unset) and a summary by kind (tool name,
//! arguments and result; model, tokens and cost; phase name). Spans with a `helix.anomaly`
//! attribute are marked `!` with the reason. Then a table of per-phase metrics and the total.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use helix_core::client::{ClientError, ServiceClient, encode_query};
use helix_core::trace::{Event, SpanKind, SpanStatus, attr};
use serde::Deserialize;

/// Attribute naming why a span is anomalous (set by anomaly detection; shown when present).
pub const HELIX_ANOMALY: &str = "helix.anomaly";

/// Longest argument or result summary shown on a tool call line, in characters.
const SUMMARY_CHARS: usize = 60;

/// Fetches the trace (`target` is a trace id or a project) and prints it: the tree, or with
/// `json` the collector's JSON. Errors are one-line messages for `main` to print.
pub async fn show(url: &str, target: &str, phase: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let client = crate::client::client(url, Duration::from_secs(30))?;
    let trace = fetch(&client, target).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
        return Ok(ExitCode::SUCCESS);
    }
    let color = std::io::stdout().is_terminal();
    let text = render(&trace, &Options { phase, color }).map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `--follow`: the tree so far (when there is one), then one line per span as it is stored,
/// from the collector's live feed, until the feed ends or the user stops it. For a trace id,
/// spans of that trace; for a project, all of the project's spans. `json`: one JSON object per
/// line (the feed's items) instead.
pub async fn follow(url: &str, target: &str, json: bool) -> anyhow::Result<ExitCode> {
    use futures_util::StreamExt;
    let client = crate::client::client(url, Duration::from_secs(30))?;
    let color = std::io::stdout().is_terminal();
    let painter = Painter(color);
    let target = target.trim();
    let trace_id = is_trace_id(target).then(|| target.to_ascii_lowercase());
    // subscribe first, so nothing stored while the tree is fetched is missed
    let path = match &trace_id {
        Some(_) => "/v1/stream".to_owned(),
        None => format!("/v1/stream?project={}", encode_query(target)),
    };
    let mut feed = std::pin::pin!(client.sse(&path).await.map_err(|e| explain(e, url))?);
    match fetch(&client, target).await {
        Ok(trace) if !json => {
            print!("{}", render(&trace, &Options { phase: None, color }).map_err(anyhow::Error::msg)?)
        }
        Ok(_) => {}
        // a project with nothing yet: wait for its first spans
        Err(_) if trace_id.is_none() => println!("waiting for spans of project {target} …"),
        Err(e) => return Err(e),
    }
    while let Some(item) = feed.next().await {
        let (event, data) = item.map_err(|e| explain(e, url))?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) else { continue };
        if event == "span" {
            let Ok(span) = serde_json::from_value::<Event>(v["span"].clone()) else { continue };
            if trace_id.as_deref().is_some_and(|t| t != span.trace_id) {
                continue;
            }
            if json {
                println!("{data}");
            } else {
                println!("{} {}", &span.trace_id[..8], label(&span, &painter, false));
            }
        } else if event == "anomaly" {
            if trace_id.as_deref().is_some_and(|t| v["anomaly"]["trace_id"].as_str() != Some(t)) {
                continue;
            }
            if json {
                println!("{data}");
            } else {
                println!(
                    "{} {}",
                    painter.yellow("! anomaly:"),
                    v["anomaly"]["reason"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The trace of run `target` when it is a run id (a UUID), asked of the orchestrator at `url`.
pub async fn run_trace(url: &str, target: &str) -> anyhow::Result<Option<String>> {
    let t = target.trim();
    if !is_run_id(t) {
        return Ok(None);
    }
    let client = crate::client::client(url, Duration::from_secs(30))?;
    let run = client.get_json_value(&format!("/v1/runs/{}", encode_query(t))).await.map_err(|e| match e {
        ClientError::Status { status: 404, .. } => anyhow!("no run {t} at {url}"),
        ClientError::Transport { message, .. } => {
            anyhow!("{t} is a run id: cannot reach the orchestrator at {url} to find its trace (pass --orchestrator): {message}")
        }
        e => anyhow!("{e}"),
    })?;
    Ok(run["trace_id"].as_str().map(str::to_owned))
}

/// Whether `s` is a run id: a UUID in its hyphenated form (8-4-4-4-12 hex digits).
pub fn is_run_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `s` is a trace id (32 hex digits) rather than a project name.
pub fn is_trace_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn fetch(client: &ServiceClient, target: &str) -> anyhow::Result<serde_json::Value> {
    let url = client.base_url().to_owned();
    let target = target.trim();
    if target.is_empty() {
        return Err(anyhow!("name a trace id (32 hex digits) or a project"));
    }
    let id = if is_trace_id(target) {
        target.to_ascii_lowercase()
    } else {
        let list = client
            .get_json_value(&format!("/v1/traces?project={}&limit=1", encode_query(target)))
            .await
            .map_err(|e| explain(e, &url))?;
        list["traces"][0]["trace_id"]
            .as_str()
            .ok_or_else(|| anyhow!("project {target:?} has no traces at {url}"))?
            .to_owned()
    };
    client.get_json_value(&format!("/v1/traces/{id}")).await.map_err(|e| match e {
        ClientError::Status { status: 404, .. } => anyhow!("no trace {id} at {url}"),
        e => explain(e, &url),
    })
}

fn explain(e: ClientError, url: &str) -> anyhow::Error {
    match e {
        ClientError::Transport { message, .. } => anyhow!(
            "cannot reach the trace-collector at {url} (start it with `helix up`, or pass --url): {message}"
        ),
        e => anyhow!("{e}"),
    }
}

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// Only spans of this phase, with their ancestors for context.
    pub phase: Option<&'a str>,
    /// ANSI colours.
    pub color: bool,
}

/// `GET /v1/traces/{id}`'s answer.
#[derive(Debug, Deserialize)]
struct Tree {
    summary: Summary,
    #[serde(default)]
    spans: Vec<Node>,
}

#[derive(Debug, Deserialize)]
struct Summary {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    start_unix_nanos: u64,
    #[serde(default)]
    end_unix_nanos: u64,
    #[serde(default)]
    spans: u64,
    #[serde(default)]
    status: SpanStatus,
}

#[derive(Debug, Deserialize)]
struct Node {
    span: Event,
    #[serde(default)]
    offset_nanos: u64,
    #[serde(default)]
    duration_nanos: u64,
    #[serde(default)]
    children: Vec<Node>,
}

/// Metrics of one phase, or of the whole trace.
#[derive(Debug, Default, Clone)]
struct Metrics {
    start: Option<u64>,
    end: u64,
    spans: u64,
    tool_calls: u64,
    llm_calls: u64,
    errors: u64,
    tokens_in: u64,
    tokens_out: u64,
    cost_usd: f64,
}

impl Metrics {
    fn add(&mut self, n: &Node) {
        let e = &n.span;
        self.start = Some(self.start.map_or(n.offset_nanos, |s| s.min(n.offset_nanos)));
        self.end = self.end.max(n.offset_nanos.saturating_add(n.duration_nanos));
        self.spans += 1;
        match e.kind {
            SpanKind::ToolCall => self.tool_calls += 1,
            SpanKind::LlmCall => {
                self.llm_calls += 1;
                self.tokens_in += tokens(e, attr::GEN_AI_USAGE_INPUT_TOKENS);
                self.tokens_out += tokens(e, attr::GEN_AI_USAGE_OUTPUT_TOKENS);
            }
            _ => {}
        }
        if e.status == SpanStatus::Error {
            self.errors += 1;
        }
        // like the collector's summary: the sum of every span's cost
        self.cost_usd += e.number(attr::HELIX_COST_USD).unwrap_or(0.0);
    }

    fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start.unwrap_or(self.end))
    }
}

fn tokens(e: &Event, key: &str) -> u64 {
    e.number(key).filter(|n| n.is_finite() && *n > 0.0).map_or(0, |n| n as u64)
}

/// The phase a span belongs to: its own `phase`, a phase span's name, else its parent's.
fn phase_of(e: &Event, inherited: Option<&str>) -> Option<String> {
    if let Some(p) = e.phase.as_deref().filter(|p| !p.is_empty()) {
        return Some(p.to_owned());
    }
    if e.kind == SpanKind::Phase {
        return Some(e.name.strip_prefix("phase ").unwrap_or(&e.name).trim().to_owned());
    }
    inherited.map(str::to_owned)
}

/// Renders the collector's `GET /v1/traces/{trace_id}` answer as text: header, span tree,
/// per-phase metrics and total. Fails when the JSON is not a trace, or `phase` names no phase
/// of the trace.
pub fn render(trace: &serde_json::Value, opts: &Options<'_>) -> Result<String, String> {
    let tree = Tree::deserialize(trace).map_err(|e| format!("unexpected trace JSON: {e}"))?;
    let p = Painter(opts.color);

    // metrics, over every span whatever the filter
    let mut total = Metrics::default();
    let mut phases: Vec<(String, Metrics)> = Vec::new();
    fn collect(n: &Node, inherited: Option<&str>, total: &mut Metrics, phases: &mut Vec<(String, Metrics)>) {
        let phase = phase_of(&n.span, inherited);
        total.add(n);
        if let Some(name) = &phase {
            match phases.iter_mut().find(|(p, _)| p == name) {
                Some((_, m)) => m.add(n),
                None => {
                    let mut m = Metrics::default();
                    m.add(n);
                    phases.push((name.clone(), m));
                }
            }
        }
        for c in &n.children {
            collect(c, phase.as_deref(), total, phases);
        }
    }
    for n in &tree.spans {
        collect(n, None, &mut total, &mut phases);
    }
    if let Some(want) = opts.phase
        && !phases.iter().any(|(p, _)| p == want)
    {
        let known: Vec<&str> = phases.iter().map(|(p, _)| p.as_str()).collect();
        return Err(format!(
            "trace {} has no phase {want:?} (phases: {})",
            tree.summary.trace_id,
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        ));
    }

    let mut out = String::new();
    // header
    let s = &tree.summary;
    let _ = writeln!(out, "{} {}  {}", p.bold("trace"), s.trace_id, p.bold(&s.name));
    let mut facts = Vec::new();
    if let Some(project) = &s.project {
        facts.push(format!("project {project}"));
    }
    if let Some(run) = &s.run {
        facts.push(format!("run {run}"));
    }
    facts.push(format!("{} spans", s.spans.max(total.spans)));
    let trace_nanos = s.end_unix_nanos.saturating_sub(s.start_unix_nanos).max(total.duration());
    facts.push(duration(trace_nanos));
    facts.push(format!("{} {}", p.mark(s.status), status_word(s.status)));
    facts.push(format!("${:.4}", total.cost_usd));
    let _ = writeln!(out, "{}", facts.join(" · "));
    if let Some(want) = opts.phase {
        let _ = writeln!(out, "{}", p.dim(&format!("phase {want} only (with its ancestors)")));
    }
    out.push('\n');

    // tree
    let mut lines = Vec::new();
    let kept: Vec<&Node> = tree.spans.iter().filter(|n| keeps(n, None, opts.phase)).collect();
    for n in kept {
        tree_lines(n, None, "", None, opts.phase, &p, &mut lines);
    }
    if lines.is_empty() {
        lines.push(p.dim("(no spans)"));
    }
    for l in lines {
        let _ = writeln!(out, "{l}");
    }

    // metrics
    out.push('\n');
    let shown: Vec<&(String, Metrics)> =
        phases.iter().filter(|(name, _)| opts.phase.is_none_or(|w| w == name)).collect();
    let width = shown.iter().map(|(n, _)| n.chars().count()).chain([5, "total".len()]).max().unwrap_or(5);
    let _ = writeln!(
        out,
        "{}",
        p.bold(&format!(
            "{:<width$}  {:>9}  {:>5}  {:>5}  {:>6}  {:>10}  {:>10}  {:>9}",
            "phase", "duration", "tools", "llm", "errors", "tokens in", "tokens out", "cost"
        ))
    );
    let row = |name: &str, m: &Metrics, dur: u64| {
        format!(
            "{name:<width$}  {:>9}  {:>5}  {:>5}  {:>6}  {:>10}  {:>10}  {:>9}",
            duration(dur),
            m.tool_calls,
            m.llm_calls,
            m.errors,
            thousands(m.tokens_in),
            thousands(m.tokens_out),
            format!("${:.4}", m.cost_usd),
        )
    };
    for (name, m) in shown {
        let _ = writeln!(out, "{}", row(name, m, m.duration()));
    }
    let _ = writeln!(out, "{}", p.bold(&row("total", &total, trace_nanos)));
    Ok(out)
}

/// Whether a node is shown: every node without a filter; with one, the phase's spans and their
/// ancestors.
fn keeps(n: &Node, inherited: Option<&str>, want: Option<&str>) -> bool {
    let Some(want) = want else { return true };
    let phase = phase_of(&n.span, inherited);
    phase.as_deref() == Some(want) || n.children.iter().any(|c| keeps(c, phase.as_deref(), Some(want)))
}

/// Appends the lines of `n` and its kept descendants. `last` is None for a root, else whether
/// `n` is its parent's last shown child.
fn tree_lines(
    n: &Node,
    inherited: Option<&str>,
    prefix: &str,
    last: Option<bool>,
    want: Option<&str>,
    p: &Painter,
    lines: &mut Vec<String>,
) {
    let phase = phase_of(&n.span, inherited);
    let (guide, child_prefix) = match last {
        None => (String::new(), String::new()),
        Some(true) => (format!("{prefix}└─ "), format!("{prefix}   ")),
        Some(false) => (format!("{prefix}├─ "), format!("{prefix}│  ")),
    };
    // ancestors kept only for context are dimmed
    let context = want.is_some_and(|w| phase.as_deref() != Some(w));
    let label = label(&n.span, p, context);
    lines.push(format!(
        "{} {} {} {}{}",
        p.dim(&format!("{:>9}", format!("+{}", seconds(n.offset_nanos)))),
        format_args!("{:>8}", duration(n.duration_nanos)),
        p.mark(n.span.status),
        p.dim(&guide),
        label
    ));
    let kids: Vec<&Node> = n.children.iter().filter(|c| keeps(c, phase.as_deref(), want)).collect();
    let count = kids.len();
    for (i, c) in kids.into_iter().enumerate() {
        tree_lines(c, phase.as_deref(), &child_prefix, Some(i + 1 == count), want, p, lines);
    }
}

/// The kind-specific summary of one span.
fn label(e: &Event, p: &Painter, context: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    let name = e.name.trim();
    match e.kind {
        SpanKind::Run => parts.push(p.bold(name)),
        SpanKind::Phase => {
            let phase = phase_of(e, None).unwrap_or_default();
            parts.push(p.bold(&format!("phase {phase}")));
        }
        SpanKind::ToolCall => {
            let tool = e
                .text(attr::GEN_AI_TOOL_NAME)
                .unwrap_or_else(|| name.strip_prefix("execute_tool ").unwrap_or(name));
            parts.push(format!("{} {}", p.cyan("tool"), p.bold(tool)));
            if let Some(args) = e.text(attr::HELIX_TOOL_ARGUMENTS).map(summary).filter(|s| !s.is_empty()) {
                parts.push(args);
            }
            if let Some(result) = e.text(attr::HELIX_TOOL_RESULT).map(summary).filter(|s| !s.is_empty()) {
                parts.push(format!("→ {result}"));
            }
        }
        SpanKind::LlmCall => {
            let model = e
                .text(attr::GEN_AI_REQUEST_MODEL)
                .or_else(|| e.text(attr::GEN_AI_RESPONSE_MODEL))
                .unwrap_or(name);
            parts.push(format!("{} {}", p.magenta("llm"), p.bold(model)));
            let (i, o) =
                (tokens(e, attr::GEN_AI_USAGE_INPUT_TOKENS), tokens(e, attr::GEN_AI_USAGE_OUTPUT_TOKENS));
            if e.attributes.contains_key(attr::GEN_AI_USAGE_INPUT_TOKENS)
                || e.attributes.contains_key(attr::GEN_AI_USAGE_OUTPUT_TOKENS)
            {
                parts.push(format!("{} in / {} out tokens", thousands(i), thousands(o)));
            }
        }
        SpanKind::Heal => {
            // why the run retried: the attempt that failed, its class, and what was done
            let action =
                e.text("helix.heal.action").unwrap_or_else(|| name.strip_prefix("heal ").unwrap_or(name));
            parts.push(format!("{} {}", p.cyan("heal"), p.bold(action)));
            let mut why = Vec::new();
            if let Some(n) = e.number("helix.attempt") {
                why.push(format!("attempt {n}"));
            }
            if let Some(class) = e.text("helix.heal.class") {
                why.push(class.to_owned());
            }
            if let Some(ms) = e.number("helix.heal.backoff_ms") {
                why.push(format!("backoff {}", duration((ms.max(0.0) as u64).saturating_mul(1_000_000))));
            }
            if let Some(fix) = e.text("helix.heal.fix") {
                why.push(format!("fix: {}", summary(fix)));
            }
            if !why.is_empty() {
                parts.push(why.join(" · "));
            }
        }
        kind => {
            // a span named after its kind ("gate exit_code", "heal retry") is not labelled twice
            let word = kind_word(kind);
            let rest = name.strip_prefix(word).filter(|r| r.starts_with(' ')).map_or(name, str::trim_start);
            parts.push(format!("{} {}", p.cyan(word), rest));
        }
    }
    // why a heal, retry or interruption happened, in its own words
    if !matches!(e.kind, SpanKind::Run | SpanKind::Phase | SpanKind::ToolCall | SpanKind::LlmCall)
        && let Some(m) = e.text("helix.heal.message").map(summary).filter(|m| !m.is_empty())
    {
        parts.push(format!("— {m}"));
    }
    if e.kind != SpanKind::Run
        && let Some(cost) = e.number(attr::HELIX_COST_USD)
    {
        parts.push(format!("${cost:.4}"));
    }
    let mut text = parts.join("  ");
    if context {
        text = p.dim(&text);
    }
    if e.status == SpanStatus::Error {
        let msg = e.status_message.as_deref().map(summary).filter(|m| !m.is_empty());
        text.push_str(&p.red(&format!("  ✗ {}", msg.as_deref().unwrap_or("error"))));
    }
    if let Some(reason) = e.attributes.get(HELIX_ANOMALY) {
        let reason = reason.as_str().map(summary).unwrap_or_else(|| summary(&reason.to_string()));
        text.push_str(&p.yellow(&format!("  ! anomaly: {reason}")));
    }
    text
}

fn kind_word(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Run => "run",
        SpanKind::Phase => "phase",
        SpanKind::ToolCall => "tool",
        SpanKind::LlmCall => "llm",
        SpanKind::Gate => "gate",
        SpanKind::Retry => "retry",
        SpanKind::Fallback => "fallback",
        SpanKind::Circuit => "circuit",
        SpanKind::Heal => "heal",
        SpanKind::Other => "span",
    }
}

fn status_word(s: SpanStatus) -> &'static str {
    match s {
        SpanStatus::Ok => "ok",
        SpanStatus::Error => "error",
        SpanStatus::Unset => "unset",
    }
}

/// One line of at most [`SUMMARY_CHARS`] characters: whitespace runs collapsed, cut with `…`.
fn summary(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= SUMMARY_CHARS {
        flat
    } else {
        let mut cut: String = flat.chars().take(SUMMARY_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

/// `1.250s` (with a minus sign never: offsets are from the trace's start).
fn seconds(nanos: u64) -> String {
    format!("{}.{:03}s", nanos / 1_000_000_000, (nanos % 1_000_000_000) / 1_000_000)
}

/// `850ms`, `1.250s`, `2m05.3s`.
fn duration(nanos: u64) -> String {
    if nanos < 1_000_000_000 {
        let ms = nanos as f64 / 1e6;
        if ms < 10.0 { format!("{ms:.1}ms") } else { format!("{}ms", nanos / 1_000_000) }
    } else if nanos < 60_000_000_000 {
        seconds(nanos)
    } else {
        let secs = nanos / 1_000_000_000;
        format!("{}m{:02}.{}s", secs / 60, secs % 60, (nanos % 1_000_000_000) / 100_000_000)
    }
}

/// `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// ANSI colours when on.
struct Painter(bool);

impl Painter {
    fn paint(&self, s: &str, code: &str) -> String {
        if self.0 && !s.is_empty() { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_owned() }
    }
    fn bold(&self, s: &str) -> String {
        self.paint(s, "1")
    }
    fn dim(&self, s: &str) -> String {
        self.paint(s, "2")
    }
    fn red(&self, s: &str) -> String {
        self.paint(s, "31")
    }
    fn yellow(&self, s: &str) -> String {
        self.paint(s, "33")
    }
    fn magenta(&self, s: &str) -> String {
        self.paint(s, "35")
    }
    fn cyan(&self, s: &str) -> String {
        self.paint(s, "36")
    }
    fn mark(&self, s: SpanStatus) -> String {
        match s {
            SpanStatus::Ok => self.paint("✓", "32"),
            SpanStatus::Error => self.paint("✗", "31"),
            SpanStatus::Unset => self.dim("·"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const T0: u64 = 1_764_082_800_000_000_000;
    const MS: u64 = 1_000_000;

    /// A span node as the collector sends it; times in milliseconds from the trace's start.
    fn node(
        id: u64,
        name: &str,
        kind: &str,
        (start, end): (u64, u64),
        extra: Value,
        children: Vec<Value>,
    ) -> Value {
        let mut span = json!({
            "schema_version": 1, "trace_id": TRACE, "span_id": format!("{id:016x}"), "name": name,
            "kind": kind, "start_unix_nanos": T0 + start * MS, "end_unix_nanos": T0 + end * MS,
            "status": "ok", "project": "webshop"
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            span[k] = v.clone();
        }
        json!({"span": span, "offset_nanos": start * MS, "duration_nanos": (end - start) * MS, "children": children})
    }

    fn sample() -> Value {
        let long_args = format!(r#"{{"command": "cargo test --workspace {}"}}"#, "x".repeat(100));
        let planning = node(
            2,
            "phase planning",
            "phase",
            (0, 2000),
            json!({"phase": "planning"}),
            vec![node(
                3,
                "chat claude-sonnet-4-5",
                "llm_call",
                (100, 1600),
                json!({"phase": "planning", "attributes": {
                    "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": 340, "helix.cost_usd": 0.012}}),
                vec![],
            )],
        );
        let development = node(
            4,
            "phase development",
            "phase",
            (2000, 12500),
            json!({"phase": "development", "status": "error", "status_message": "tests failed"}),
            vec![
                node(
                    5,
                    "execute_tool bash",
                    "tool_call",
                    (2100, 2400),
                    json!({"attributes": {"gen_ai.tool.name": "bash", "helix.tool.arguments": long_args,
                        "helix.tool.result": "test result: FAILED. 3 passed; 1 failed"}}),
                    vec![],
                ),
                node(
                    6,
                    "chat claude-opus",
                    "llm_call",
                    (2500, 9000),
                    json!({"phase": "development", "attributes": {
                        "gen_ai.request.model": "claude-opus-4-1", "gen_ai.usage.input_tokens": 15000,
                        "gen_ai.usage.output_tokens": 2100, "helix.cost_usd": 0.3}}),
                    vec![],
                ),
                node(
                    7,
                    "execute_tool edit",
                    "tool_call",
                    (9100, 9200),
                    json!({"phase": "development", "status": "error", "status_message": "file not found",
                        "attributes": {"gen_ai.tool.name": "edit", "helix.tool.arguments": "src/lib.rs",
                        "helix.anomaly": "same failing call repeated 3 times"}}),
                    vec![],
                ),
            ],
        );
        let root =
            node(1, "run webshop", "run", (0, 12500), json!({"run": "r-7"}), vec![planning, development]);
        json!({
            "summary": {"trace_id": TRACE, "name": "run webshop", "project": "webshop", "run": "r-7",
                "start_unix_nanos": T0, "end_unix_nanos": T0 + 12500 * MS, "spans": 7, "status": "error",
                "phases": ["planning", "development"], "cost_usd": 0.312},
            "spans": [root]
        })
    }

    fn plain(phase: Option<&str>) -> String {
        render(&sample(), &Options { phase, color: false }).expect("render")
    }

    fn row<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name:?} in\n{text}"))
    }

    fn line<'a>(text: &'a str, needle: &str) -> &'a str {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
    }

    #[test]
    fn heal_and_gate_spans_say_why_a_run_retried_without_doubled_labels() {
        let phase = node(
            2,
            "phase test",
            "phase",
            (0, 900),
            json!({"phase": "test"}),
            vec![
                node(
                    3,
                    "gate exit_code",
                    "gate",
                    (100, 100),
                    json!({"phase": "test", "status": "error",
                    "status_message": "exit code 1, expected 0"}),
                    vec![],
                ),
                node(
                    4,
                    "heal fix_applied",
                    "heal",
                    (110, 110),
                    json!({"phase": "test", "attributes": {
                    "helix.heal.action": "fix_applied", "helix.heal.class": "environment",
                    "helix.attempt": 1, "helix.heal.fix": "add PyYAML to requirements.txt",
                    "helix.heal.message": "No module named 'yaml'"}}),
                    vec![],
                ),
                node(
                    5,
                    "heal retry_backoff",
                    "heal",
                    (400, 400),
                    json!({"phase": "test", "attributes": {
                    "helix.heal.action": "retry_backoff", "helix.heal.class": "timeout",
                    "helix.attempt": 2, "helix.heal.backoff_ms": 1500}}),
                    vec![],
                ),
            ],
        );
        let root = node(1, "run calc", "run", (0, 900), json!({"run": "r-1"}), vec![phase]);
        let tree = json!({
            "summary": {"trace_id": TRACE, "name": "run calc", "project": "webshop", "run": "r-1",
                "start_unix_nanos": T0, "end_unix_nanos": T0 + 900 * MS, "spans": 5, "status": "ok",
                "phases": ["test"], "cost_usd": 0.0},
            "spans": [root]
        });
        let out = render(&tree, &Options { phase: None, color: false }).expect("render");
        assert!(!out.contains("gate gate"), "{out}");
        assert!(line(&out, "gate exit_code").contains("✗ exit code 1, expected 0"), "{out}");
        let fix = line(&out, "heal fix_applied");
        assert!(
            fix.contains(
                "attempt 1 · environment · fix: add PyYAML to requirements.txt  — No module named 'yaml'"
            ),
            "{fix}"
        );
        assert!(line(&out, "heal retry_backoff").contains("attempt 2 · timeout · backoff 1.500s"), "{out}");
        assert!(out.lines().nth(1).expect("facts").contains("✓ ok"), "{out}");
    }

    #[test]
    fn header_names_the_trace_and_its_totals() {
        let out = plain(None);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(format!("trace {TRACE}  run webshop").as_str()));
        assert_eq!(lines.next(), Some("project webshop · run r-7 · 7 spans · 12.500s · ✗ error · $0.3120"));
    }

    #[test]
    fn tool_call_line_has_tool_name_arguments_and_result() {
        let out = plain(None);
        let l = line(&out, "tool bash");
        assert!(l.starts_with("  +2.100s    300ms ✓ "), "{l}");
        assert!(l.contains(r#"{"command": "cargo test --workspace xxx"#), "{l}");
        assert!(l.contains("→ test result: FAILED. 3 passed; 1 failed"), "{l}");
        // the arguments are cut to SUMMARY_CHARS
        let args = l.split("tool bash  ").nth(1).and_then(|r| r.split("  → ").next()).expect("args");
        assert_eq!(args.chars().count(), SUMMARY_CHARS, "{args}");
        assert!(args.ends_with('…'));
    }

    #[test]
    fn llm_line_has_model_tokens_and_cost() {
        let out = plain(None);
        let l = line(&out, "llm claude-sonnet-4-5");
        assert!(l.contains("1,200 in / 340 out tokens"), "{l}");
        assert!(l.contains("$0.0120"), "{l}");
        assert!(l.starts_with("  +0.100s   1.500s ✓ "), "{l}");
    }

    #[test]
    fn tree_guides_and_errors_and_anomalies() {
        let out = plain(None);
        assert!(line(&out, "✓ run webshop").starts_with("  +0.000s  12.500s ✓ run webshop"), "{out}");
        assert!(line(&out, "phase planning").contains("✓ ├─ phase planning"), "{out}");
        assert!(line(&out, "llm claude-sonnet").contains("✓ │  └─ llm"), "{out}");
        let dev = line(&out, "phase development");
        assert!(dev.contains("✗ └─ phase development  ✗ tests failed"), "{dev}");
        let edit = line(&out, "tool edit");
        assert!(edit.contains("✗    └─ tool edit  src/lib.rs  ✗ file not found"), "{edit}");
        assert!(edit.contains("! anomaly: same failing call repeated 3 times"), "{edit}");
        assert!(!out.contains('\x1b'), "no colours when not asked");
    }

    #[test]
    fn phase_metrics_and_total() {
        let out = plain(None);
        let cols = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            cols(row(&out, "phase")),
            ["phase", "duration", "tools", "llm", "errors", "tokens", "in", "tokens", "out", "cost"]
        );
        assert_eq!(
            cols(row(&out, "planning")),
            ["planning", "2.000s", "0", "1", "0", "1,200", "340", "$0.0120"]
        );
        // the bash call has no phase of its own: it inherits development from its parent
        assert_eq!(
            cols(row(&out, "development")),
            ["development", "10.500s", "2", "1", "2", "15,000", "2,100", "$0.3000"]
        );
        assert_eq!(
            cols(row(&out, "total")),
            ["total", "12.500s", "2", "2", "2", "16,200", "2,440", "$0.3120"]
        );
    }

    #[test]
    fn phase_filter_keeps_ancestors_for_context() {
        let out = plain(Some("planning"));
        assert!(out.contains("phase planning only"), "{out}");
        assert!(out.contains("run webshop"), "the root stays as context:\n{out}");
        assert!(out.contains("└─ phase planning"), "planning is now the last child shown:\n{out}");
        assert!(out.contains("llm claude-sonnet-4-5"));
        assert!(!out.contains("tool bash") && !out.contains("phase development"), "{out}");
        assert!(out.contains("\nplanning "), "{out}");
        assert!(!out.contains("\ndevelopment "), "only the chosen phase's metrics:\n{out}");
        assert!(out.contains("\ntotal "));

        let out = plain(Some("development"));
        assert!(out.contains("tool bash") && out.contains("tool edit") && !out.contains("claude-sonnet"));

        let err =
            render(&sample(), &Options { phase: Some("deploy"), color: false }).expect_err("no such phase");
        assert!(err.contains("no phase \"deploy\"") && err.contains("planning, development"), "{err}");
    }

    #[test]
    fn colours_only_when_asked_and_bad_json_is_an_error() {
        let out = render(&sample(), &Options { phase: None, color: true }).expect("render");
        assert!(out.contains("\x1b[32m✓\x1b[0m") && out.contains("\x1b[31m✗\x1b[0m"));
        assert!(render(&json!({"traces": []}), &Options::default()).is_err());
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(duration(850 * MS), "850ms");
        assert_eq!(duration(1_250 * MS), "1.250s");
        assert_eq!(duration(125_300 * MS), "2m05.3s");
        assert_eq!(duration(400_000), "0.4ms");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(summary("a\n  b\tc"), "a b c");
        assert!(is_trace_id(TRACE) && is_trace_id(&TRACE.to_uppercase()) && !is_trace_id("webshop"));
        assert!(is_run_id("fd63bcb3-b6a5-4354-a281-4fe24b001427"));
        assert!(
            !is_run_id("fd63bcb3b6a54354a2814fe24b001427") && !is_run_id("web-shop") && !is_run_id(TRACE)
        );
        assert_eq!(encode_query("a b&c"), "a%20b%26c");
    }
}
