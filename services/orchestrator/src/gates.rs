//! Quality gates: the checks a phase must pass before the pipeline moves on.
//!
//! A gate turns "the command ended" into "the phase did what it promised": the exit code, the
//! files it had to produce, what its output says, whether a JSON answer fits its schema, and
//! whether the tests still pass. Each result carries a readable `detail` (expected vs seen),
//! because it is what a person or the healer reads when the phase fails.
//!
//! Test gates have a baseline mode because real projects often have known-failing tests: before
//! the phase runs, the runner records which tests fail ([`record_baseline`]); afterwards the gate
//! fails only on failures that were not there before, so an agent is judged on what it broke,
//! not on what it inherited.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exec::{self, Cancel, CommandSpec, Limits};
use crate::testsummary::{self, TestSummary};

/// The start of a pending decision gate's detail.
pub const DECISION_PENDING: &str = "a human decision is needed: ";

/// How long a command gate may run when its `timeout` is not set.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Output of a failed command gate kept in its result (the end of it, where summaries are).
const GATE_OUTPUT_KEPT: usize = 64 * 1024;

/// Largest JSON file a `json_schema` gate reads.
const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// Schema errors listed in a gate's detail.
const MAX_SCHEMA_ERRORS: usize = 20;

/// What a failing gate does to its phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The phase fails.
    #[default]
    Fail,
    /// The phase passes with a warning (`passed_with_warnings`).
    Warn,
}

/// One gate of a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub name: Option<String>,
    #[serde(default)]
    pub on_fail: Severity,
    pub check: GateCheck,
}

impl Gate {
    /// The gate's name, or its kind when it has none.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.check.kind().to_owned())
    }

    /// The gate every command phase has unless it declares its own `exit_code` gate.
    pub fn default_exit_code() -> Gate {
        Gate { name: None, on_fail: Severity::Fail, check: GateCheck::ExitCode { expect: 0 } }
    }
}

/// What a gate checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GateCheck {
    /// The phase's command exited with `expect`.
    ExitCode { expect: i32 },
    /// Every path exists in the workspace (and, with `non_empty`, is a non-empty file or
    /// directory).
    FilesExist { paths: Vec<String>, non_empty: bool },
    /// The phase's combined output matches `regex` (with `negate`: does not match).
    OutputMatches { regex: String, negate: bool },
    /// A JSON file of the workspace satisfies a JSON Schema.
    JsonSchema { file: String, schema: Value },
    /// A command run in the workspace after the phase exits 0, or, with `baseline`, has no test
    /// failures that the baseline recorded before the phase did not have.
    Command {
        run: CommandSpec,
        baseline: bool,
        #[serde(rename = "timeout_ms", with = "crate::exec::duration_ms::option")]
        timeout: Option<Duration>,
    },
    /// A decision only a person can make: the run stops for it (`needs_human`, with the question
    /// in its escalation report and, with `model`, an ADR proposal drafted), and passes once the
    /// answer comes with the resume (`POST /v1/runs/{id}/resume` with `decision`).
    Decision {
        question: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
}

impl GateCheck {
    /// The kind as written in `pipeline.toml`.
    pub fn kind(&self) -> &'static str {
        match self {
            GateCheck::ExitCode { .. } => "exit_code",
            GateCheck::FilesExist { .. } => "files_exist",
            GateCheck::OutputMatches { .. } => "output_matches",
            GateCheck::JsonSchema { .. } => "json_schema",
            GateCheck::Command { .. } => "command",
            GateCheck::Decision { .. } => "decision",
        }
    }
}

/// What the gate is judged on.
#[derive(Debug, Clone, Copy)]
pub struct GateContext<'a> {
    /// The phase's workspace; every path of a gate is relative to it and may not leave it.
    pub workspace: &'a Path,
    /// The phase's combined output (stdout and stderr, or an LLM phase's answer), as kept.
    pub output: &'a str,
    /// Bytes cut from the middle of `output`: then `output_matches` gates are judged on
    /// `scanned`, their patterns' hits in the whole stream.
    pub output_truncated: u64,
    pub scanned: &'a [(String, Option<crate::scan::Hit>)],
    /// The phase command's exit code (`None`: killed, or not a command phase).
    pub exit_code: Option<i32>,
    /// Environment of command gates (added to the inherited allow-list, see [`exec::run`]).
    pub env: &'a BTreeMap<String, String>,
    /// The baseline recorded before the phase by [`record_baseline`], for baseline gates.
    pub baseline: Option<&'a TestSummary>,
    pub cancel: &'a Cancel,
    /// What command gates run in: the phase's sandbox, rlimits and secrets.
    pub jail: &'a exec::Jail,
    /// Wall-clock limit of a command gate that sets no `timeout`.
    pub default_timeout: Duration,
}

/// The verdict of one gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub kind: String,
    pub passed: bool,
    pub severity: Severity,
    /// What was expected and what was seen.
    pub detail: String,
    /// Test summary read from a command gate's output.
    pub summary: Option<TestSummary>,
    /// The end of a failed command gate's output (for the healer and the person reading).
    pub output: Option<String>,
    /// Failed tests that passed when re-run alone (see `crate::flaky`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flaky: Vec<String>,
}

/// A phase's verdict over all its gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseGateStatus {
    Passed,
    PassedWithWarnings,
    Failed,
}

/// Failed `fail` gates fail the phase; failed `warn` gates only mark it.
pub fn phase_status(results: &[GateResult]) -> PhaseGateStatus {
    let failed = |s| results.iter().any(|r| !r.passed && r.severity == s);
    if failed(Severity::Fail) {
        PhaseGateStatus::Failed
    } else if failed(Severity::Warn) {
        PhaseGateStatus::PassedWithWarnings
    } else {
        PhaseGateStatus::Passed
    }
}

/// Judges one gate.
pub async fn evaluate(gate: &Gate, ctx: &GateContext<'_>) -> GateResult {
    let verdict = match &gate.check {
        GateCheck::ExitCode { expect } => exit_code(*expect, ctx.exit_code),
        GateCheck::FilesExist { paths, non_empty } => files_exist(ctx.workspace, paths, *non_empty),
        GateCheck::OutputMatches { regex, negate } => match ctx.scanned.iter().find(|(p, _)| p == regex) {
            // the kept output is cut: judge the whole stream
            Some((_, hit)) if ctx.output_truncated > 0 => streamed_matches(hit.as_ref(), regex, *negate),
            _ => output_matches(ctx.output, regex, *negate),
        },
        GateCheck::JsonSchema { file, schema } => json_schema(ctx.workspace, file, schema),
        GateCheck::Command { run, baseline, timeout } => command(run, *baseline, *timeout, ctx).await,
        // the engine answers decisions from the run's state; on its own a decision is pending
        GateCheck::Decision { question, .. } => Verdict::new(false, format!("{DECISION_PENDING}{question}")),
    };
    GateResult {
        name: gate.display_name(),
        kind: gate.check.kind().to_owned(),
        passed: verdict.passed,
        severity: gate.on_fail,
        detail: verdict.detail,
        summary: verdict.summary,
        output: verdict.output,
        flaky: Vec::new(),
    }
}

/// For a `command` gate in baseline mode: runs its command in `workspace` (before the phase) and
/// returns the test summary of its output. `None` for other gates, or when the output has no
/// recognisable test summary; the gate then requires exit code 0.
pub async fn record_baseline(
    gate: &Gate,
    workspace: &Path,
    env: &BTreeMap<String, String>,
    cancel: &Cancel,
    jail: &exec::Jail,
) -> Option<TestSummary> {
    let GateCheck::Command { run, baseline: true, timeout } = &gate.check else { return None };
    let limits = gate_limits(*timeout, DEFAULT_GATE_TIMEOUT);
    let outcome = exec::run_jailed(run, workspace, env, &limits, cancel, None, jail).await.ok()?;
    if outcome.timed_out || outcome.cancelled || outcome.stalled {
        return None;
    }
    testsummary::parse(&outcome.output)
}

struct Verdict {
    passed: bool,
    detail: String,
    summary: Option<TestSummary>,
    output: Option<String>,
}

impl Verdict {
    fn new(passed: bool, detail: impl Into<String>) -> Verdict {
        Verdict { passed, detail: detail.into(), summary: None, output: None }
    }
}

fn exit_code(expect: i32, seen: Option<i32>) -> Verdict {
    match seen {
        Some(code) if code == expect => Verdict::new(true, format!("exit code {code}")),
        Some(code) => Verdict::new(false, format!("expected exit code {expect}, got {code}")),
        None => {
            Verdict::new(false, format!("expected exit code {expect}, the command did not exit on its own"))
        }
    }
}

fn files_exist(workspace: &Path, paths: &[String], non_empty: bool) -> Verdict {
    let mut missing = Vec::new();
    let mut empty = Vec::new();
    let mut refused = Vec::new();
    for p in paths {
        let full = match resolve_in(workspace, p) {
            Ok(full) => full,
            Err(why) => {
                refused.push(format!("{p} ({why})"));
                continue;
            }
        };
        match std::fs::metadata(&full) {
            Err(_) => missing.push(p.as_str()),
            Ok(m) if non_empty && m.is_file() && m.len() == 0 => empty.push(p.as_str()),
            Ok(m) if non_empty && m.is_dir() && dir_is_empty(&full) => empty.push(p.as_str()),
            Ok(_) => {}
        }
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing: {}", missing.join(", ")));
    }
    if !empty.is_empty() {
        problems.push(format!("empty: {}", empty.join(", ")));
    }
    if !refused.is_empty() {
        problems.push(format!("refused: {}", refused.join(", ")));
    }
    if problems.is_empty() {
        let what = if non_empty { "present and non-empty" } else { "present" };
        Verdict::new(true, format!("all {} paths {what}", paths.len()))
    } else {
        Verdict::new(false, problems.join("; "))
    }
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(true)
}

fn output_matches(output: &str, pattern: &str, negate: bool) -> Verdict {
    let re = match regex::Regex::new(pattern) {
        Ok(re) => re,
        Err(e) => return Verdict::new(false, format!("invalid regex /{pattern}/: {e}")),
    };
    let found = re.find(output).map(|m| {
        let line_no = output[..m.start()].matches('\n').count() + 1;
        let line_start = output[..m.start()].rfind('\n').map_or(0, |i| i + 1);
        let line_end = output[m.start()..].find('\n').map_or(output.len(), |i| m.start() + i);
        (line_no, shorten(&output[line_start..line_end], 200))
    });
    match (found, negate) {
        (Some((n, line)), false) => {
            Verdict::new(true, format!("output matches /{pattern}/ at line {n}: {line}"))
        }
        (None, false) => {
            Verdict::new(false, format!("expected the output to match /{pattern}/; no part of it does"))
        }
        (None, true) => Verdict::new(true, format!("output does not match /{pattern}/")),
        (Some((n, line)), true) => Verdict::new(
            false,
            format!("expected the output not to match /{pattern}/; line {n} does: {line}"),
        ),
    }
}

/// [`output_matches`] from the first hit in the whole (streamed) output.
fn streamed_matches(hit: Option<&crate::scan::Hit>, pattern: &str, negate: bool) -> Verdict {
    match (hit, negate) {
        (Some(h), false) => {
            Verdict::new(true, format!("output matches /{pattern}/ at line {}: {}", h.line_no, h.line))
        }
        (None, false) => {
            Verdict::new(false, format!("expected the output to match /{pattern}/; no part of it does"))
        }
        (None, true) => Verdict::new(true, format!("output does not match /{pattern}/")),
        (Some(h), true) => Verdict::new(
            false,
            format!("expected the output not to match /{pattern}/; line {} does: {}", h.line_no, h.line),
        ),
    }
}

/// `gate` with the placeholders of its command's argv rendered from `vars` (as the phase's own
/// argv is).
pub fn rendered(
    gate: &Gate,
    vars: &BTreeMap<String, String>,
) -> Result<Gate, crate::pipeline::TemplateError> {
    let mut g = gate.clone();
    if let GateCheck::Command { run, .. } = &mut g.check {
        *run = crate::pipeline::render_command(run, vars)?;
    }
    Ok(g)
}

/// The patterns of `gates`' `output_matches` checks (to scan a command's whole output for).
pub fn output_patterns(gates: &[Gate]) -> Vec<String> {
    let mut out: Vec<String> = gates
        .iter()
        .filter_map(|g| match &g.check {
            GateCheck::OutputMatches { regex, .. } => Some(regex.clone()),
            _ => None,
        })
        .collect();
    out.dedup();
    out
}

fn json_schema(workspace: &Path, file: &str, schema: &Value) -> Verdict {
    let full = match resolve_in(workspace, file) {
        Ok(full) => full,
        Err(why) => return Verdict::new(false, format!("{file}: {why}")),
    };
    let text = match std::fs::metadata(&full) {
        Err(_) => return Verdict::new(false, format!("{file} does not exist")),
        Ok(m) if m.len() > MAX_JSON_BYTES => {
            return Verdict::new(
                false,
                format!("{file} is {} bytes, more than the {MAX_JSON_BYTES} read", m.len()),
            );
        }
        Ok(_) => match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => return Verdict::new(false, format!("cannot read {file}: {e}")),
        },
    };
    let instance: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Verdict::new(false, format!("{file} is not valid JSON: {e}")),
    };
    match validate_json(schema, &instance) {
        Ok(errors) if errors.is_empty() => Verdict::new(true, format!("{file} satisfies the schema")),
        Ok(errors) => Verdict::new(
            false,
            format!("{file} does not satisfy the schema ({} errors): {}", errors.len(), errors.join("; ")),
        ),
        Err(e) => Verdict::new(false, e.to_string()),
    }
}

async fn command(
    run: &CommandSpec,
    baseline_mode: bool,
    timeout: Option<Duration>,
    ctx: &GateContext<'_>,
) -> Verdict {
    let limits = gate_limits(timeout, ctx.default_timeout);
    let outcome =
        match exec::run_jailed(run, ctx.workspace, ctx.env, &limits, ctx.cancel, None, ctx.jail).await {
            Ok(o) => o,
            Err(e) => return Verdict::new(false, format!("cannot run the gate command: {e}")),
        };
    let summary = testsummary::parse(&outcome.output);
    let counts = summary.as_ref().map(describe_summary);
    let tail = || Some(tail(&outcome.output, GATE_OUTPUT_KEPT).to_owned());
    let with = |passed: bool, detail: String| Verdict {
        passed,
        detail,
        summary: summary.clone(),
        output: if passed { None } else { tail() },
    };
    if outcome.timed_out || outcome.stalled || outcome.cancelled {
        return with(false, format!("the gate command {}", outcome.describe()));
    }
    let strict = |prefix: &str| {
        let seen = outcome.describe();
        let counts = counts.as_deref().map(|c| format!("; {c}")).unwrap_or_default();
        with(outcome.exit_code == Some(0), format!("{prefix}{seen}{counts}"))
    };
    if !baseline_mode {
        return strict("");
    }
    let Some(baseline) = ctx.baseline else {
        return strict("no baseline was recorded, so exit code 0 is required; got ");
    };
    let Some(now) = &summary else {
        return with(
            false,
            format!(
                "no test summary in the gate's output ({}), cannot compare with the baseline",
                outcome.describe()
            ),
        );
    };
    let new = now.new_failures(baseline);
    if new.is_empty() {
        let known = if now.failed == 0 {
            String::new()
        } else {
            format!("; still failing as in the baseline: {}", list(now.failures.iter(), 10))
        };
        with(true, format!("no new test failures ({}){known}", describe_summary(now)))
    } else {
        with(
            false,
            format!(
                "{} new test failures: {} ({}; the baseline had {} failing)",
                new.len(),
                list(new.iter(), 20),
                describe_summary(now),
                baseline.failed
            ),
        )
    }
}

fn gate_limits(timeout: Option<Duration>, default: Duration) -> Limits {
    Limits { timeout: Some(timeout.unwrap_or(default)), ..Limits::default() }
}

fn describe_summary(s: &TestSummary) -> String {
    let mut text = format!("{} passed, {} failed", s.passed, s.failed);
    if s.skipped > 0 {
        text.push_str(&format!(", {} skipped", s.skipped));
    }
    text
}

fn list<'a>(items: impl ExactSizeIterator<Item = &'a String>, max: usize) -> String {
    let n = items.len();
    let mut text = items.take(max).cloned().collect::<Vec<_>>().join(", ");
    if n > max {
        text.push_str(&format!(" and {} more", n - max));
    }
    text
}

fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `rel` inside `workspace`: relative, without `..`, and (when it exists) not leading out of the
/// workspace through a symbolic link.
pub fn resolve_in(workspace: &Path, rel: &str) -> Result<PathBuf, String> {
    check_relative_path(rel)?;
    let full = workspace.join(rel);
    if let Ok(real) = full.canonicalize() {
        let root = workspace.canonicalize().map_err(|e| format!("workspace: {e}"))?;
        if !real.starts_with(&root) {
            return Err("leads out of the workspace through a symbolic link".to_owned());
        }
    }
    Ok(full)
}

/// A path a pipeline may name: relative, not empty, no `..` component.
pub fn check_relative_path(rel: &str) -> Result<(), String> {
    if rel.is_empty() {
        return Err("empty path".to_owned());
    }
    if rel.contains('\0') {
        return Err("path contains a NUL byte".to_owned());
    }
    let path = Path::new(rel);
    if path.is_absolute() {
        return Err("absolute paths are not allowed; paths are relative to the workspace".to_owned());
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("`..` is not allowed; paths stay inside the workspace".to_owned());
    }
    Ok(())
}

/// A JSON Schema that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON Schema: {0}")]
pub struct SchemaError(pub String);

/// Refuses every external `$ref`: schemas are self-contained, and validating must not read files
/// or reach the network.
struct NoLoader;

impl boon::UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("external references are not supported ({url})").into())
    }
}

const SCHEMA_URL: &str = "file:///helix/schema.json";

fn compile(schema: &Value) -> Result<(boon::Schemas, boon::SchemaIndex), SchemaError> {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.use_loader(Box::new(NoLoader));
    compiler.set_default_draft(boon::Draft::V2020_12);
    compiler.enable_format_assertions();
    compiler.add_resource(SCHEMA_URL, schema.clone()).map_err(|e| SchemaError(format!("{e:#}")))?;
    let index = compiler.compile(SCHEMA_URL, &mut schemas).map_err(|e| SchemaError(format!("{e:#}")))?;
    Ok((schemas, index))
}

/// Checks that `schema` is a valid JSON Schema (draft 2020-12 unless it names its `$schema`).
pub fn check_schema(schema: &Value) -> Result<(), SchemaError> {
    compile(schema).map(|_| ())
}

/// Validates `instance` against `schema`: the list of errors, each naming the instance path
/// (`at /items/0/price: ...`); empty when it is valid. At most 20 errors are listed.
pub fn validate_json(schema: &Value, instance: &Value) -> Result<Vec<String>, SchemaError> {
    let (schemas, index) = compile(schema)?;
    let Err(error) = schemas.validate(instance, index) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    collect_leaves(&error, &mut out);
    if out.len() > MAX_SCHEMA_ERRORS {
        let more = out.len() - MAX_SCHEMA_ERRORS;
        out.truncate(MAX_SCHEMA_ERRORS);
        out.push(format!("and {more} more"));
    }
    Ok(out)
}

fn collect_leaves(e: &boon::ValidationError<'_, '_>, out: &mut Vec<String>) {
    if e.causes.is_empty() {
        let at = e.instance_location.to_string();
        let at = if at.is_empty() { "/".to_owned() } else { at };
        out.push(format!("at {at}: {}", e.kind));
    }
    for cause in &e.causes {
        collect_leaves(cause, out);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        env: BTreeMap<String, String>,
        cancel: Cancel,
        jail: exec::Jail,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().expect("tempdir"),
                env: BTreeMap::new(),
                cancel: Cancel::new(),
                jail: exec::Jail::default(),
            }
        }

        fn write(&self, rel: &str, content: &str) {
            let path = self.dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        }

        fn ctx<'a>(
            &'a self,
            output: &'a str,
            exit: Option<i32>,
            baseline: Option<&'a TestSummary>,
        ) -> GateContext<'a> {
            GateContext {
                workspace: self.dir.path(),
                output,
                output_truncated: 0,
                scanned: &[],
                exit_code: exit,
                env: &self.env,
                baseline,
                cancel: &self.cancel,
                jail: &self.jail,
                default_timeout: DEFAULT_GATE_TIMEOUT,
            }
        }
    }

    fn gate(check: GateCheck) -> Gate {
        Gate { name: None, on_fail: Severity::Fail, check }
    }

    fn shell(script: &str, baseline: bool) -> GateCheck {
        GateCheck::Command { run: CommandSpec::Shell(script.to_owned()), baseline, timeout: None }
    }

    #[tokio::test]
    async fn exit_code_gate() {
        let f = Fixture::new();
        let g = gate(GateCheck::ExitCode { expect: 0 });
        let ok = evaluate(&g, &f.ctx("", Some(0), None)).await;
        assert!(ok.passed && ok.name == "exit_code" && ok.kind == "exit_code");
        let bad = evaluate(&g, &f.ctx("", Some(2), None)).await;
        assert!(!bad.passed);
        assert_eq!(bad.detail, "expected exit code 0, got 2");
        let killed = evaluate(&g, &f.ctx("", None, None)).await;
        assert!(!killed.passed && killed.detail.contains("did not exit"), "{}", killed.detail);
        let expect_one = gate(GateCheck::ExitCode { expect: 1 });
        assert!(evaluate(&expect_one, &f.ctx("", Some(1), None)).await.passed);
    }

    #[tokio::test]
    async fn files_exist_gate() {
        let f = Fixture::new();
        f.write("out/report.txt", "hello");
        f.write("empty.txt", "");
        std::fs::create_dir(f.dir.path().join("emptydir")).expect("mkdir");
        let present = gate(GateCheck::FilesExist {
            paths: vec!["out/report.txt".into(), "empty.txt".into()],
            non_empty: false,
        });
        let r = evaluate(&present, &f.ctx("", Some(0), None)).await;
        assert!(r.passed, "{}", r.detail);

        let strict = gate(GateCheck::FilesExist {
            paths: vec!["out/report.txt".into(), "empty.txt".into(), "emptydir".into(), "nope.txt".into()],
            non_empty: true,
        });
        let r = evaluate(&strict, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed);
        assert_eq!(r.detail, "missing: nope.txt; empty: empty.txt, emptydir");
    }

    #[tokio::test]
    async fn files_exist_refuses_paths_leaving_the_workspace() {
        let f = Fixture::new();
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "x").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), f.dir.path().join("link"))
            .expect("symlink");
        let g = gate(GateCheck::FilesExist { paths: vec!["link".into(), "../x".into()], non_empty: false });
        let r = evaluate(&g, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed);
        assert!(r.detail.contains("link (leads out of the workspace"), "{}", r.detail);
        assert!(r.detail.contains("../x (`..` is not allowed"), "{}", r.detail);
        assert!(resolve_in(f.dir.path(), "/etc/passwd").is_err());
    }

    #[tokio::test]
    async fn output_matches_gate_and_negation() {
        let f = Fixture::new();
        let output = "compiling\nwarning: unused\nall good\n";
        let g = gate(GateCheck::OutputMatches { regex: "(?m)^all good$".into(), negate: false });
        let r = evaluate(&g, &f.ctx(output, Some(0), None)).await;
        assert!(r.passed);
        assert!(r.detail.contains("line 3: all good"), "{}", r.detail);
        let missing = gate(GateCheck::OutputMatches { regex: "PASSED".into(), negate: false });
        let r = evaluate(&missing, &f.ctx(output, Some(0), None)).await;
        assert!(!r.passed && r.detail.contains("no part of it does"), "{}", r.detail);

        let no_warnings = gate(GateCheck::OutputMatches { regex: "warning:".into(), negate: true });
        let r = evaluate(&no_warnings, &f.ctx(output, Some(0), None)).await;
        assert!(!r.passed);
        assert_eq!(r.detail, "expected the output not to match /warning:/; line 2 does: warning: unused");
        assert!(evaluate(&no_warnings, &f.ctx("clean\n", Some(0), None)).await.passed);
    }

    #[test]
    fn command_gates_render_their_argv_and_patterns_are_collected() {
        let g = gate(GateCheck::Command {
            run: CommandSpec::Argv(vec!["{{python}}".into(), "-m".into(), "pytest".into()]),
            baseline: false,
            timeout: None,
        });
        let vars = BTreeMap::from([("python".to_owned(), "python3".to_owned())]);
        let r = rendered(&g, &vars).expect("rendered");
        let GateCheck::Command { run: CommandSpec::Argv(argv), .. } = &r.check else { panic!("command") };
        assert_eq!(argv[0], "python3");
        assert!(rendered(&g, &BTreeMap::new()).is_err(), "an unknown placeholder is an error");
        let gates = [gate(GateCheck::OutputMatches { regex: "a".into(), negate: true }), g];
        assert_eq!(output_patterns(&gates), ["a"]);
    }

    #[tokio::test]
    async fn a_cut_output_is_judged_on_the_whole_stream() {
        let f = Fixture::new();
        let hit = Some(crate::scan::Hit { line_no: 9000, line: "ERROR x".into() });
        let scanned = vec![("ERROR".to_owned(), hit)];
        let mut ctx = f.ctx("head only\n[... omitted ...]\ntail only", Some(0), None);
        ctx.output_truncated = 100;
        ctx.scanned = &scanned;
        let no_errors = gate(GateCheck::OutputMatches { regex: "ERROR".into(), negate: true });
        let r = evaluate(&no_errors, &ctx).await;
        assert!(!r.passed && r.detail.contains("line 9000"), "{}", r.detail);
    }

    #[tokio::test]
    async fn json_schema_gate() {
        let f = Fixture::new();
        let schema = json!({
            "type": "object",
            "required": ["name", "items"],
            "properties": {
                "name": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"price": {"type": "number"}}}}
            }
        });
        let g = gate(GateCheck::JsonSchema { file: "out.json".into(), schema: schema.clone() });
        let r = evaluate(&g, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed && r.detail == "out.json does not exist", "{}", r.detail);

        f.write("out.json", r#"{"name": "x", "items": [{"price": 1.5}]}"#);
        let r = evaluate(&g, &f.ctx("", Some(0), None)).await;
        assert!(r.passed, "{}", r.detail);

        f.write("out.json", r#"{"items": [{"price": 1}, {"price": "free"}]}"#);
        let r = evaluate(&g, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed);
        assert!(r.detail.contains("(2 errors)"), "{}", r.detail);
        assert!(r.detail.contains("at /: missing properties 'name'"), "{}", r.detail);
        assert!(r.detail.contains("at /items/1/price: want number, but got string"), "{}", r.detail);

        f.write("out.json", "{not json");
        let r = evaluate(&g, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed && r.detail.starts_with("out.json is not valid JSON"), "{}", r.detail);
    }

    #[test]
    fn schemas_are_checked_and_self_contained() {
        assert!(check_schema(&json!({"type": "object"})).is_ok());
        let bad = check_schema(&json!({"type": "objekt"})).expect_err("bad type");
        assert!(bad.to_string().starts_with("invalid JSON Schema"), "{bad}");
        let remote = check_schema(&json!({"$ref": "http://example.com/s.json"})).expect_err("remote ref");
        assert!(remote.to_string().contains("example.com"), "{remote}");
        let local = json!({"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}});
        assert_eq!(
            validate_json(&local, &json!({"a": "x"})).expect("compiles"),
            ["at /a: want integer, but got string"]
        );
        let date = json!({"type": "string", "format": "date"});
        assert_eq!(validate_json(&date, &json!("2024-02-30")).expect("compiles").len(), 1);
    }

    #[tokio::test]
    async fn command_gate_strict() {
        let f = Fixture::new();
        let ok = gate(shell("echo 'results: 3 passed, 0 failed'", false));
        let r = evaluate(&ok, &f.ctx("", Some(0), None)).await;
        assert!(r.passed, "{}", r.detail);
        assert_eq!(r.detail, "exit code 0; 3 passed, 0 failed");
        assert_eq!(r.summary.as_ref().map(|s| s.passed), Some(3));
        assert!(r.output.is_none());

        let bad = gate(shell("echo 'results: 2 passed, 1 failed'; exit 1", false));
        let r = evaluate(&bad, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed);
        assert_eq!(r.detail, "exit code 1; 2 passed, 1 failed");
        assert!(r.output.as_deref().is_some_and(|o| o.contains("1 failed")));

        let slow = gate(GateCheck::Command {
            run: CommandSpec::Argv(vec!["sleep".into(), "30".into()]),
            baseline: false,
            timeout: Some(Duration::from_millis(200)),
        });
        let r = evaluate(&slow, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed && r.detail.starts_with("the gate command timed out"), "{}", r.detail);

        let missing = gate(GateCheck::Command {
            run: CommandSpec::Argv(vec!["helix-no-such-tool".into()]),
            baseline: false,
            timeout: None,
        });
        let r = evaluate(&missing, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed);
        assert_eq!(r.detail, "cannot run the gate command: command not found: helix-no-such-tool");
    }

    /// A fake pytest whose failing tests are the lines of `failing.txt` in the workspace.
    const FAKE_PYTEST: &str = r#"n=0; while read -r t; do echo "FAILED $t - AssertionError"; n=$((n+1)); done < failing.txt
echo "==== $n failed, 5 passed in 0.10s ===="; [ "$n" -eq 0 ]"#;

    #[tokio::test]
    async fn baseline_mode_fails_only_on_new_failures() {
        let f = Fixture::new();
        let g = gate(shell(FAKE_PYTEST, true));
        f.write("failing.txt", "tests/test_a.py::test_old\n");
        let baseline = record_baseline(&g, f.dir.path(), &f.env, &f.cancel, &f.jail).await.expect("baseline");
        assert_eq!(baseline.failed, 1);
        assert_eq!(baseline.failures.iter().collect::<Vec<_>>(), ["tests/test_a.py::test_old"]);

        // The phase did not touch the known failure: the gate passes despite exit code 1.
        let r = evaluate(&g, &f.ctx("", Some(0), Some(&baseline))).await;
        assert!(r.passed, "{}", r.detail);
        assert!(
            r.detail.contains("still failing as in the baseline: tests/test_a.py::test_old"),
            "{}",
            r.detail
        );

        // The phase broke another test.
        f.write("failing.txt", "tests/test_a.py::test_old\ntests/test_b.py::test_new\n");
        let r = evaluate(&g, &f.ctx("", Some(0), Some(&baseline))).await;
        assert!(!r.passed);
        assert_eq!(
            r.detail,
            "1 new test failures: tests/test_b.py::test_new (5 passed, 2 failed; the baseline had 1 failing)"
        );
        assert!(r.output.is_some());

        // The phase fixed the known failure.
        f.write("failing.txt", "");
        let r = evaluate(&g, &f.ctx("", Some(0), Some(&baseline))).await;
        assert!(r.passed, "{}", r.detail);
    }

    #[tokio::test]
    async fn baseline_mode_without_a_baseline_or_a_summary() {
        let f = Fixture::new();
        let unparseable = gate(shell("echo boom; exit 1", true));
        assert!(record_baseline(&unparseable, f.dir.path(), &f.env, &f.cancel, &f.jail).await.is_none());
        let r = evaluate(&unparseable, &f.ctx("", Some(0), None)).await;
        assert!(!r.passed);
        assert!(r.detail.starts_with("no baseline was recorded"), "{}", r.detail);
        let baseline = TestSummary { passed: 3, ..TestSummary::default() };
        let r = evaluate(&unparseable, &f.ctx("", Some(0), Some(&baseline))).await;
        assert!(!r.passed && r.detail.starts_with("no test summary in the gate's output"), "{}", r.detail);
        // Gates that are not baseline command gates record nothing.
        assert!(
            record_baseline(
                &gate(shell("echo '1 passed, 0 failed'", false)),
                f.dir.path(),
                &f.env,
                &f.cancel,
                &f.jail
            )
            .await
            .is_none()
        );
    }

    #[tokio::test]
    async fn command_gates_see_the_env_and_run_in_the_workspace() {
        let mut f = Fixture::new();
        f.env.insert("EXPECTED".into(), "yes".into());
        f.write("marker", "");
        let g = gate(shell("test -f marker && test \"$EXPECTED\" = yes", false));
        assert!(evaluate(&g, &f.ctx("", Some(0), None)).await.passed);
    }

    #[tokio::test]
    async fn warn_severity_and_phase_status() {
        let f = Fixture::new();
        let mut warn = gate(GateCheck::OutputMatches { regex: "warning".into(), negate: true });
        warn.on_fail = Severity::Warn;
        warn.name = Some("no warnings".into());
        let exit = gate(GateCheck::ExitCode { expect: 0 });
        let output = "warning: unused variable\n";

        let results = vec![
            evaluate(&exit, &f.ctx(output, Some(0), None)).await,
            evaluate(&warn, &f.ctx(output, Some(0), None)).await,
        ];
        assert_eq!(results[1].name, "no warnings");
        assert_eq!(results[1].severity, Severity::Warn);
        assert!(!results[1].passed);
        assert_eq!(phase_status(&results), PhaseGateStatus::PassedWithWarnings);

        let failed = vec![evaluate(&exit, &f.ctx(output, Some(1), None)).await, results[1].clone()];
        assert_eq!(phase_status(&failed), PhaseGateStatus::Failed);
        assert_eq!(phase_status(&results[..1]), PhaseGateStatus::Passed);
        assert_eq!(phase_status(&[]), PhaseGateStatus::Passed);
    }

    #[test]
    fn gates_round_trip_through_json() {
        let gates = vec![
            Gate::default_exit_code(),
            Gate {
                name: Some("tests".into()),
                on_fail: Severity::Warn,
                check: GateCheck::Command {
                    run: CommandSpec::Argv(vec!["pytest".into()]),
                    baseline: true,
                    timeout: Some(Duration::from_secs(90)),
                },
            },
            gate(GateCheck::JsonSchema { file: "a.json".into(), schema: json!({"type": "object"}) }),
        ];
        let json = serde_json::to_value(&gates).expect("json");
        assert_eq!(json[1]["check"]["timeout_ms"], 90_000);
        assert_eq!(json[1]["check"]["kind"], "command");
        assert_eq!(serde_json::from_value::<Vec<Gate>>(json).expect("back"), gates);
    }
}
