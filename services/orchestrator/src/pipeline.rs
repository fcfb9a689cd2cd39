//! The pipeline definition (`pipeline.toml`): what runs, in which order, judged by which gates.
//!
//! A pipeline is validated whole before anything runs, because a typo found in phase 5 after
//! four phases of work is exactly the unpredictability the orchestrator exists to remove. The
//! file is read through toml's spanned document rather than plain serde so that *every* error,
//! structural or semantic (a duplicate phase name, an invalid regex, a prompt naming a phase that
//! runs later), names its line and key: `line 7: phase[1].timout: unknown field ...`.
//!
//! The parsed [`Pipeline`] is the resolved form the runner, checkpoints and `helix plan` share:
//! defaults are filled in (including the implicit `exit_code = 0` gate of command phases), schema
//! files are read and inlined, so [`Pipeline::fingerprint`] covers everything a replay depends on.
//!
//! # Format
//!
//! ```toml
//! name = "calc"                       # required
//! description = "Fix and test the calculator"
//!
//! [variables]                         # template variables, also exported to commands as env
//! module = "calc"
//! python = "python3"
//!
//! [env]                               # environment of every phase
//! PYTHONDONTWRITEBYTECODE = "1"
//!
//! [[phase]]
//! name = "install"                    # [A-Za-z0-9_-], unique
//! kind = "command"
//! run = ["{{python}}", "-m", "pip", "install", "-r", "requirements.txt"]  # argv, no shell
//! timeout = "10m"                     # "500ms", "30s", "10m", "1h", "1h30m" or seconds (600)
//! stall_timeout = "2m"                # no output for this long: killed, reported as a stall
//! on_timeout = "retry"                # a timeout or stall (failure class `timeout`): "retry"
//!                                     # after a backoff (default: a hang is often transient),
//!                                     # "retry_with_hints" (the healer's hints, as for a
//!                                     # deterministic failure) or "give_up" (needs_human at once)
//! retries = 2                         # retries after the first attempt (default 2: 3 attempts)
//! preflight = true                    # first apply the fixes that solved this phase before,
//!                                     # and the auto fixes of the healer's static check
//!                                     # (POST /v1/check) of the phase's workspace
//!
//! [[phase]]
//! name = "test"
//! kind = "command"
//! run = "$python -m pytest -q tests/test_$module.py"   # a string needs shell = true; the
//! shell = true                        # variables reach the script as environment variables
//! inputs = ["src/**", "tests/**"]
//! outputs = ["report.json"]
//!
//! [phase.env]
//! PYTEST_ADDOPTS = "-p no:cacheprovider"
//!
//! [phase.repair]                      # a failure no fix of the healer's solves: one LLM call
//! model = "claude-sonnet"             # through the gateway asks for a unified diff; one that
//! max_reasks = 1                      # applies is tried by the next attempt and, when it works,
//! max_patch_bytes = 65536             # learned by the healer (used first next time, no LLM call)
//!
//! [phase.flaky]                       # a failed test gate: each failed test re-run alone (pytest
//! reruns = 2                          # node id, cargo test NAME -- --exact, go test -run, jest -t)
//! quarantine = true                   # all passed again: flaky, the gate warns (default: fails);
//!                                     # known-flaky tests are re-run even without this table
//!
//! [[phase.gate]]                      # without an exit_code gate, a command phase gets
//! kind = "exit_code"                  # `exit_code`, expect = 0, as its first gate
//! expect = 0
//!
//! [[phase.gate]]
//! kind = "files_exist"
//! paths = ["report.json"]
//! non_empty = true
//!
//! [[phase.gate]]
//! name = "no warnings"
//! kind = "output_matches"
//! regex = "(?i)warning"
//! negate = true
//! on_fail = "warn"                    # "fail" (default) or "warn": passed_with_warnings
//!
//! [[phase.gate]]
//! kind = "json_schema"
//! file = "report.json"
//! schema = { type = "object", required = ["passed"] }   # or schema_file = "report.schema.json"
//!
//! [[phase.gate]]
//! name = "database"
//! kind = "decision"                   # asks a person once the other gates pass: the run stops
//! question = "SQLite or Postgres?"    # needs_human; `helix resume TOKEN --decision TEXT` answers
//! model = "claude-sonnet"             # optional: drafts an ADR proposal for the report
//!
//! [[phase.gate]]
//! name = "whole suite"
//! kind = "command"
//! run = ["{{python}}", "-m", "pytest", "-q"]
//! baseline = true                     # pass when no test fails that failed not before the phase
//! timeout = "15m"
//!
//! [[phase]]
//! name = "summary"
//! kind = "llm"
//! model = "claude-sonnet"
//! system = "You are a terse release engineer."
//! prompt = """Summarise the test run of {{module}} as JSON.
//! {{phases.test.output}}"""           # {{var}}: variables, env, outputs of earlier phases
//! schema = { type = "object", required = ["summary"], properties = { summary = { type = "string" } } }
//! max_reasks = 2                      # re-asks with the validation error (default 2)
//! max_tokens = 800
//! output = "summary.json"             # the answer is written to this workspace file
//!
//! [[phase]]
//! name = "fix"
//! kind = "agent"                      # a coding-agent CLI working in the workspace
//! agent = "claude-code"               # "claude-code", "codex", or "generic" (then `run`, an
//!                                     # argv with {{prompt}}, e.g. ["my-agent", "{{prompt}}"])
//! program = "/opt/claude/bin/claude"  # optional: another binary than the profile's
//! model = "claude-sonnet-4-5"         # optional: the model the agent asks the gateway for
//! prompt = "Fix what {{phases.summary.output}} reports."
//! allowed_tools = ["Read", "Edit", "Bash"]   # Claude Code's --allowedTools
//! max_turns = 30                      # Claude Code's --max-turns (1 to 1000)
//! max_cost_usd = 2.5                  # all attempts together; the gateway stops the agent
//! stall_timeout = "5m"                # agents get the same gates (exit_code first), timeouts,
//!                                     # retries and containment as command phases
//! ```
//!
//! Secrets and limits (both also per phase, which then wins):
//!
//! ```toml
//! secrets = ["PYPI_TOKEN"]            # from the service's environment or orchestrator.secrets_file,
//!                                     # given to commands as environment variables when they start;
//!                                     # never stored, masked (***) in every output Helix keeps
//! timeout = "2h"                      # the default of phases without their own (else
//!                                     # orchestrator.phase_timeout_secs, 1 h)
//! on_timeout = "give_up"              # likewise the default of phases without their own
//! [limits]                            # rlimits of every process (defaults: [orchestrator.limits])
//! cpu = "30m"                         # CPU time per process
//! memory = "8GiB"                     # address space per process
//! file_size = "2GiB"                  # largest file written
//! processes = 512                     # processes of the user
//! ```
//!
//! `[variables]` and `env` tables are stored with the run (and shown by the API), so a value that
//! looks like a credential, or a variable whose name says it holds one (`*_KEY`, `*_TOKEN`,
//! `*SECRET*`, `*PASSWORD*`), is refused there: name it in `secrets` instead.
//!
//! Paths (`inputs`, `outputs`, gate `paths` and `file`, `output`) are relative to the phase
//! workspace and may not contain `..`. A placeholder is `{{name}}` (spaces inside the braces
//! allowed) with a name made of letters, digits, `_` and dotted parts; other text in braces is
//! left alone. Placeholders are rendered in argv elements and LLM prompts, never in shell scripts.
//!
//! `inputs` and `outputs` are globs ([`glob_matches`]: `*`, `?`, `**`). The files matching them
//! are recorded with each attempt; every `outputs` glob must match a file once the phase ran,
//! or the attempt fails (an implicit `outputs` gate), as a build tool fails a step that did not
//! produce what it declared.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::exec::{CommandSpec, Rlimits};
use crate::gates::{self, Gate, GateCheck, Severity};

/// Retries after the first attempt when a phase does not set `retries` (3 attempts in all).
pub const DEFAULT_RETRIES: u32 = 2;
/// Re-asks of an LLM phase whose answer fails its schema, when `max_reasks` is not set.
pub const DEFAULT_MAX_REASKS: u32 = 2;
const MAX_RETRIES: u32 = 10;
const MAX_REASKS: u32 = 10;
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest pipeline file read from disk.
pub const MAX_PIPELINE_BYTES: u64 = 1 << 20;

/// A validated pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    /// Environment of every phase.
    pub env: BTreeMap<String, String>,
    /// Template variables (also exported to commands as environment variables).
    pub variables: BTreeMap<String, String>,
    pub phases: Vec<Phase>,
    /// Names of secrets every phase gets (values resolved when a command starts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// rlimits of every phase's processes.
    #[serde(default, skip_serializing_if = "is_unlimited")]
    pub limits: Rlimits,
}

fn is_unlimited(r: &Rlimits) -> bool {
    *r == Rlimits::default()
}

/// One phase of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub kind: PhaseKind,
    /// Files or globs the phase reads, relative to its workspace.
    pub inputs: Vec<String>,
    /// Files or globs the phase produces, relative to its workspace.
    pub outputs: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(rename = "timeout_ms", with = "crate::exec::duration_ms::option")]
    pub timeout: Option<Duration>,
    #[serde(rename = "stall_timeout_ms", with = "crate::exec::duration_ms::option")]
    pub stall_timeout: Option<Duration>,
    /// Before the first attempt, apply the fixes that solved this phase's earlier failures in
    /// this project (the healer's record: at least one success, no failure).
    #[serde(default)]
    pub preflight: bool,
    /// What a timeout or stall leads to.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Retries after the first attempt; see [`Phase::max_attempts`].
    pub retries: u32,
    pub gates: Vec<Gate>,
    /// Names of secrets this phase gets besides the pipeline's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// rlimits of this phase's processes (over the pipeline's).
    #[serde(default, skip_serializing_if = "is_unlimited")]
    pub limits: Rlimits,
    /// LLM repair of failures no fix of the healer's solves (`[phase.repair]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    /// Re-runs of failed tests alone (`[phase.flaky]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flaky: Option<Flaky>,
    /// What an LLM or agent phase falls back to (`[phase.simplified]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simplified: Option<Simplified>,
}

/// `[phase.simplified]`: the last step of "model A → model B → simplified mode". Used for an
/// attempt when the gateway says every deployment of the phase's model chain is open, or when an
/// agent phase's budget is nearly spent; the phase then ends `passed_with_warnings`, degraded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Simplified {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Agents: fewer turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// Agents: the most a simplified attempt may spend (within what is left of the phase's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// LLM phases: a shorter answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl Phase {
    /// This phase as its `[phase.simplified]` table makes it, if it has one.
    pub fn simplified(&self) -> Option<Phase> {
        let s = self.simplified.as_ref()?;
        let mut p = self.clone();
        match &mut p.kind {
            PhaseKind::Llm { model, prompt, max_tokens, .. } => {
                if let Some(m) = &s.model {
                    model.clone_from(m);
                }
                if let Some(t) = &s.prompt {
                    prompt.clone_from(t);
                }
                if s.max_tokens.is_some() {
                    *max_tokens = s.max_tokens;
                }
            }
            PhaseKind::Agent(a) => {
                if s.model.is_some() {
                    a.model.clone_from(&s.model);
                }
                if let Some(t) = &s.prompt {
                    a.prompt.clone_from(t);
                }
                if s.max_turns.is_some() {
                    a.max_turns = s.max_turns;
                }
            }
            PhaseKind::Command { .. } => return None,
        }
        Some(p)
    }
}

/// `[phase.flaky]`: when a test gate fails, each failed test is re-run alone up to `reruns`
/// times; one that passes is flaky (see `crate::flaky`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flaky {
    pub reruns: u32,
    /// A gate whose failures were all flaky passes with a warning (instead of failing).
    pub quarantine: bool,
}

impl Flaky {
    /// What known-flaky tests get in a phase without `[phase.flaky]`: re-run, never quarantined.
    pub const KNOWN: Flaky = Flaky { reruns: 2, quarantine: false };
}

/// `[phase.repair]`: one LLM call through the gateway asks for a unified diff that fixes the
/// failure; a diff that applies is tried on the next attempt and reported to the healer, which
/// learns it (see `engine::repair`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repair {
    pub model: String,
    /// Re-asks when the diff does not apply (with the reason).
    pub max_reasks: u32,
    /// Largest diff accepted, in bytes.
    pub max_patch_bytes: u32,
}

/// What the orchestrator does after an attempt was killed by its timeout or as a stall.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Retry after a backoff, as a transient failure.
    #[default]
    Retry,
    /// Retry with the healer's hints, as a deterministic failure.
    RetryWithHints,
    /// Stop at once: `needs_human`.
    GiveUp,
}

impl OnTimeout {
    fn parse(text: &str) -> Option<OnTimeout> {
        match text {
            "retry" => Some(OnTimeout::Retry),
            "retry_with_hints" => Some(OnTimeout::RetryWithHints),
            "give_up" => Some(OnTimeout::GiveUp),
            _ => None,
        }
    }
}

impl Phase {
    /// Attempts before the phase is given up (`needs_human`): `retries + 1`.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }
}

/// What a phase does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PhaseKind {
    /// A program (argv elements may hold `{{var}}` placeholders) or a shell script.
    Command { run: CommandSpec },
    /// A prompt sent through the breaker-gateway.
    Llm {
        model: String,
        /// Template with `{{var}}` and `{{phases.NAME.output}}` placeholders.
        prompt: String,
        system: Option<String>,
        /// JSON Schema the answer must satisfy (inline or read from `schema_file`).
        schema: Option<Value>,
        /// Re-asks with the validation error when the answer does not satisfy `schema`.
        max_reasks: u32,
        max_tokens: Option<u32>,
        /// Workspace file the answer is written to.
        output: Option<String>,
    },
    /// A coding-agent CLI working in the workspace (see [`AgentPhase`]).
    Agent(AgentPhase),
}

/// What an agent phase runs (`kind = "agent"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentPhase {
    /// `claude-code`, `codex` or `generic`.
    pub agent: crate::agent::profile::Profile,
    /// The CLI to start instead of the profile's (`claude`, `codex`); may hold `{{var}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// `generic` only: the command (argv) that starts the agent; `{{prompt}}` is the prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<String>,
    /// Template with `{{var}}` and `{{phases.NAME.output}}` placeholders.
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// What all attempts of the phase may spend on model calls together, enforced by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

impl PhaseKind {
    pub fn name(&self) -> &'static str {
        match self {
            PhaseKind::Command { .. } => "command",
            PhaseKind::Llm { .. } => "llm",
            PhaseKind::Agent(_) => "agent",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A key is unknown, missing, of the wrong type or has an invalid value.
    #[error("line {line}: {key}: {message}")]
    Invalid { line: usize, key: String, message: String },
    /// The text is not TOML.
    #[error("line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("cannot read pipeline {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An error in a pipeline file, with the file's path.
    #[error("{path}: {inner}")]
    File { path: String, inner: Box<PipelineError> },
    /// An error in a file read on a client's behalf: where, never what (see [`Pipeline::load`]).
    #[error(
        "line {line}, column {column}: not a valid pipeline (the file's text is not shown to API \
         clients; `helix plan FILE` on the machine that has it says what is wrong)"
    )]
    Redacted { line: usize, column: usize },
}

impl PipelineError {
    /// The line the error is on, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            PipelineError::Invalid { line, .. }
            | PipelineError::Syntax { line, .. }
            | PipelineError::Redacted { line, .. } => Some(*line),
            PipelineError::Read { .. } => None,
            PipelineError::File { inner, .. } => inner.line(),
        }
    }
}

impl Pipeline {
    /// Parses and validates a pipeline given as text. `schema_file` keys are refused (there is no
    /// directory to read them from); use [`Pipeline::parse_in`] or [`Pipeline::load`].
    pub fn parse(text: &str) -> Result<Pipeline, PipelineError> {
        parse(text, None)
    }

    /// Parses and validates a pipeline whose `schema_file` paths are relative to `base_dir`.
    pub fn parse_in(text: &str, base_dir: &Path) -> Result<Pipeline, PipelineError> {
        parse(text, Some(base_dir))
    }

    /// Reads, parses and validates a pipeline file named by an API client: errors name the
    /// file, line and column but never quote it (the file may not be a pipeline at all, and its
    /// text is not the caller's to see). Only regular files up to [`MAX_PIPELINE_BYTES`].
    pub fn load(path: &Path) -> Result<Pipeline, PipelineError> {
        Pipeline::load_verbose(path).map_err(|e| match e {
            PipelineError::File { path, inner } => {
                let redacted = match *inner {
                    PipelineError::Syntax { line, column, .. } => PipelineError::Redacted { line, column },
                    PipelineError::Invalid { line, .. } => PipelineError::Redacted { line, column: 1 },
                    other => other,
                };
                PipelineError::File { path, inner: Box::new(redacted) }
            }
            other => other,
        })
    }

    /// [`Pipeline::load`] with errors that quote the line and name the key: for a file the
    /// user reads anyway (the command line checks a pipeline file before sending its path).
    pub fn load_verbose(path: &Path) -> Result<Pipeline, PipelineError> {
        use std::io::Read;
        let shown = path.display().to_string();
        let read_err = |source| PipelineError::Read { path: shown.clone(), source };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() || meta.len() > MAX_PIPELINE_BYTES {
            let why = if meta.is_file() { "it is larger than 1 MiB" } else { "it is not a regular file" };
            return Err(read_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why)));
        }
        let mut bytes = Vec::new();
        file.take(MAX_PIPELINE_BYTES + 1).read_to_end(&mut bytes).map_err(read_err)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_err(std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        parse(&text, Some(base)).map_err(|e| PipelineError::File { path: shown, inner: Box::new(e) })
    }

    /// SHA-256 (hex) of the pipeline's canonical JSON form: equal for equal pipelines whatever the
    /// formatting, key order or comments of their files.
    pub fn fingerprint(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut text = String::new();
        canonical_json(&value, &mut text);
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// The phase named `name` and its index.
    pub fn phase(&self, name: &str) -> Option<(usize, &Phase)> {
        self.phases.iter().enumerate().find(|(_, p)| p.name == name)
    }

    /// The secrets phase `index` gets: the pipeline's, then its own.
    pub fn secrets_for(&self, index: usize) -> Vec<String> {
        let mut names = self.secrets.clone();
        for n in self.phases.get(index).map(|p| p.secrets.as_slice()).unwrap_or_default() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }

    /// The rlimits of phase `index` over `defaults`: the pipeline's, then the phase's.
    pub fn limits_for(&self, index: usize, defaults: Rlimits) -> Rlimits {
        let phase = self.phases.get(index).map(|p| p.limits).unwrap_or_default();
        defaults.overlaid(self.limits).overlaid(phase)
    }

    /// Variables and environment of phase `index`: the pipeline's variables, overridden by its
    /// `env`, overridden by the phase's `env`. This is both the environment given to the phase's
    /// commands and the template variables (the runner adds `phases.NAME.output` entries for
    /// prompts).
    pub fn vars_for(&self, index: usize) -> BTreeMap<String, String> {
        let mut vars = self.variables.clone();
        vars.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(phase) = self.phases.get(index) {
            vars.extend(phase.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        vars
    }
}

/// Whether a workspace path (`/`-separated) matches a glob of `inputs`/`outputs`: `*` and `?`
/// within one path segment, `**` any number of whole segments (`src/**`, `**/*.py`); a plain
/// path matches itself and, as a directory, everything below it.
pub fn glob_matches(glob: &str, path: &str) -> bool {
    fn segment(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => segment(&p[1..], s) || (!s.is_empty() && segment(p, &s[1..])),
            (Some(b'?'), Some(_)) => segment(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => segment(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn segments(g: &[&str], p: &[&str]) -> bool {
        match (g.first(), p.first()) {
            (None, None) => true,
            (Some(&"**"), _) => segments(&g[1..], p) || (!p.is_empty() && segments(g, &p[1..])),
            (Some(gs), Some(ps)) => segment(gs.as_bytes(), ps.as_bytes()) && segments(&g[1..], &p[1..]),
            // a plain directory path covers what is below it
            (None, Some(_)) => false,
            (Some(_), None) => false,
        }
    }
    let g: Vec<&str> = glob.trim_matches('/').split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    let p: Vec<&str> = path.split('/').collect();
    segments(&g, &p) || (!glob.contains(['*', '?']) && p.len() > g.len() && segments(&g, &p[..g.len()]))
}

/// A `{{name}}` with no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown template variable {}", .names.iter().map(|n| format!("{{{{{n}}}}}")).collect::<Vec<_>>().join(", "))]
pub struct TemplateError {
    pub names: Vec<String>,
}

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}").expect("placeholder regex")
});

/// The names of the placeholders of `template`, in order of appearance.
pub fn placeholders(template: &str) -> Vec<String> {
    PLACEHOLDER.captures_iter(template).map(|c| c[1].to_owned()).collect()
}

/// Replaces every `{{name}}` of `template` with its value in `vars`. Values are inserted as they
/// are (a value containing `{{x}}` is not expanded again). Any unknown name is an error.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let mut unknown = Vec::new();
    let out = PLACEHOLDER.replace_all(template, |c: &regex::Captures<'_>| match vars.get(&c[1]) {
        Some(v) => v.clone(),
        None => {
            if !unknown.contains(&c[1].to_owned()) {
                unknown.push(c[1].to_owned());
            }
            String::new()
        }
    });
    if unknown.is_empty() { Ok(out.into_owned()) } else { Err(TemplateError { names: unknown }) }
}

/// `spec` with the placeholders of its argv elements rendered; shell scripts are returned as
/// they are (their variables come from the environment).
pub fn render_command(
    spec: &CommandSpec,
    vars: &BTreeMap<String, String>,
) -> Result<CommandSpec, TemplateError> {
    match spec {
        CommandSpec::Argv(argv) => {
            Ok(CommandSpec::Argv(argv.iter().map(|a| render(a, vars)).collect::<Result<_, _>>()?))
        }
        CommandSpec::Shell(script) => Ok(CommandSpec::Shell(script.clone())),
    }
}

/// Parses `"500ms"`, `"30s"`, `"10m"`, `"1h"`, `"2d"` and sums like `"1h30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    static PART: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(\d+)(ms|s|m|h|d)").expect("duration regex"));
    let expected = || {
        format!(
            "invalid duration {text:?}, expected e.g. \"30s\", \"10m\", \"1h30m\" or seconds as an integer"
        )
    };
    let mut total = Duration::ZERO;
    let mut end = 0;
    for c in PART.captures_iter(text) {
        let m = c.get(0).ok_or_else(expected)?;
        if m.start() != end {
            return Err(expected());
        }
        end = m.end();
        let n: u64 = c[1].parse().map_err(|_| expected())?;
        let unit = match &c[2] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => Duration::from_secs(86400),
        };
        let part = unit.checked_mul(u32::try_from(n).map_err(|_| expected())?).ok_or_else(expected)?;
        total = total.checked_add(part).ok_or_else(expected)?;
    }
    if end == 0 || end != text.len() {
        return Err(expected());
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Reading the spanned document

type Res<T> = Result<T, PipelineError>;

fn invalid(line: usize, key: impl Into<String>, message: impl Into<String>) -> PipelineError {
    PipelineError::Invalid { line, key: key.into(), message: message.into() }
}

/// Byte offsets of line starts, to turn spans into 1-based line numbers.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        Lines(std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset).max(1)
    }

    fn column(&self, offset: usize) -> usize {
        offset - self.0[self.line(offset) - 1] + 1
    }
}

/// A table of the document with its key path (`phase[1].gate[0]`).
#[derive(Clone, Copy)]
struct Tab<'a, 'i> {
    lines: &'a Lines,
    map: &'a DeTable<'i>,
    path: &'a str,
    /// Offset of the table's header (or inline table), for errors about missing keys.
    start: usize,
}

type Entry<'a, 'i> = (&'a Spanned<std::borrow::Cow<'i, str>>, &'a Spanned<DeValue<'i>>);

impl<'a, 'i> Tab<'a, 'i> {
    fn key(&self, k: &str) -> String {
        if self.path.is_empty() { k.to_owned() } else { format!("{}.{k}", self.path) }
    }

    fn line(&self) -> usize {
        self.lines.line(self.start)
    }

    fn find(&self, k: &str) -> Option<Entry<'a, 'i>> {
        self.map.iter().find(|(key, _)| key.get_ref() == k)
    }

    fn line_of(&self, k: &str) -> usize {
        self.find(k).map_or_else(|| self.line(), |(key, _)| self.lines.line(key.span().start))
    }

    /// An error about key `k` (on its line, or the table's when it is missing).
    fn err(&self, k: &str, message: impl Into<String>) -> PipelineError {
        invalid(self.line_of(k), self.key(k), message)
    }

    fn missing(&self, k: &str, what: &str) -> PipelineError {
        self.err(k, format!("missing required key `{k}` ({what})"))
    }

    /// Unknown keys are errors; `misplaced` explains keys that exist elsewhere.
    fn check_keys(&self, allowed: &[&str], misplaced: impl Fn(&str) -> Option<String>) -> Res<()> {
        let mut keys: Vec<_> = self.map.iter().map(|(k, _)| k).collect();
        keys.sort_by_key(|k| k.span().start);
        for k in keys {
            let name = k.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let message = misplaced(name).unwrap_or_else(|| {
                let list = allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
                format!("unknown field `{name}`, expected one of {list}")
            });
            return Err(invalid(self.lines.line(k.span().start), self.key(name), message));
        }
        Ok(())
    }

    fn type_err(&self, k: &str, want: &str, got: &DeValue<'_>) -> PipelineError {
        self.err(k, format!("expected {want}, found {}", got.type_str()))
    }

    fn str(&self, k: &str) -> Res<Option<String>> {
        match self.find(k) {
            None => Ok(None),
            Some((_, v)) => match v.get_ref() {
                DeValue::String(s) => Ok(Some(s.to_string())),
                other => Err(self.type_err(k, "a string", other)),
            },
        }
    }

    fn req_str(&self, k: &str, what: &str) -> Res<String> {
        let s = self.str(k)?.ok_or_else(|| self.missing(k, what))?;
        if s.trim().is_empty() {
            return Err(self.err(k, "must not be empty"));
        }
        Ok(s)
    }

    fn bool(&self, k: &str) -> Res<Option<bool>> {
        match self.find(k) {
            None => Ok(None),
            Some((_, v)) => match v.get_ref() {
                DeValue::Boolean(b) => Ok(Some(*b)),
                other => Err(self.type_err(k, "true or false", other)),
            },
        }
    }

    fn int(&self, k: &str) -> Res<Option<i64>> {
        match self.find(k) {
            None => Ok(None),
            Some((_, v)) => match v.get_ref() {
                DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                    .map(Some)
                    .map_err(|_| self.err(k, "integer out of range")),
                other => Err(self.type_err(k, "an integer", other)),
            },
        }
    }

    /// A number (integer or float), finite.
    fn float(&self, k: &str) -> Res<Option<f64>> {
        match self.find(k) {
            None => Ok(None),
            Some((_, v)) => {
                let n = match v.get_ref() {
                    DeValue::Integer(_) => self.int(k)?.map(|i| i as f64),
                    DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
                    other => return Err(self.type_err(k, "a number", other)),
                };
                match n {
                    Some(n) if n.is_finite() => Ok(Some(n)),
                    _ => Err(self.err(k, "must be a finite number")),
                }
            }
        }
    }

    fn bounded(&self, k: &str, min: i64, max: i64) -> Res<Option<u32>> {
        match self.int(k)? {
            None => Ok(None),
            Some(n) if n < min || n > max => {
                Err(self.err(k, format!("must be between {min} and {max}, got {n}")))
            }
            Some(n) => Ok(Some(u32::try_from(n).map_err(|_| self.err(k, "out of range"))?)),
        }
    }

    /// An array of strings, each with its line.
    fn str_list(&self, k: &str) -> Res<Option<Vec<(String, usize)>>> {
        let Some((_, v)) = self.find(k) else { return Ok(None) };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.type_err(k, "an array of strings", v.get_ref()));
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), self.lines.line(item.span().start))),
                other => {
                    let line = self.lines.line(item.span().start);
                    return Err(invalid(
                        line,
                        format!("{}[{i}]", self.key(k)),
                        format!("expected a string, found {}", other.type_str()),
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    /// Relative workspace paths (or globs).
    fn paths(&self, k: &str) -> Res<Vec<String>> {
        let list = self.str_list(k)?.unwrap_or_default();
        for (i, (p, line)) in list.iter().enumerate() {
            gates::check_relative_path(p)
                .map_err(|e| invalid(*line, format!("{}[{i}]", self.key(k)), format!("{p:?}: {e}")))?;
        }
        Ok(list.into_iter().map(|(p, _)| p).collect())
    }

    fn sub(&self, k: &str) -> Res<Option<(&'a DeTable<'i>, usize)>> {
        match self.find(k) {
            None => Ok(None),
            Some((_, v)) => match v.get_ref() {
                DeValue::Table(t) => Ok(Some((t, v.span().start))),
                other => Err(self.type_err(k, "a table", other)),
            },
        }
    }

    /// `[[k]]` tables (or an inline array of tables).
    fn sub_array(&self, k: &str) -> Res<Vec<(&'a DeTable<'i>, usize)>> {
        let Some((_, v)) = self.find(k) else { return Ok(Vec::new()) };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.type_err(k, "an array of tables ([[...]])", v.get_ref()));
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(t) => out.push((t, item.span().start)),
                other => {
                    let line = self.lines.line(item.span().start);
                    return Err(invalid(
                        line,
                        format!("{}[{i}]", self.key(k)),
                        format!("expected a table, found {}", other.type_str()),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A table of environment-style names to string values (integers and booleans are written
    /// as text).
    fn name_map(&self, k: &str) -> Res<BTreeMap<String, String>> {
        let Some((table, _)) = self.sub(k)? else { return Ok(BTreeMap::new()) };
        let mut out = BTreeMap::new();
        for (key, v) in table.iter() {
            let name = key.get_ref().to_string();
            let line = self.lines.line(key.span().start);
            let path = format!("{}.{name}", self.key(k));
            if !is_var_name(&name) {
                return Err(invalid(
                    line,
                    path,
                    "names are letters, digits and `_`, not starting with a digit",
                ));
            }
            let value = match v.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) => i.to_string(),
                DeValue::Boolean(b) => b.to_string(),
                other => {
                    return Err(invalid(
                        line,
                        path,
                        format!("expected a string, found {}", other.type_str()),
                    ));
                }
            };
            if looks_secret(&name, &value) {
                return Err(invalid(
                    line,
                    path,
                    format!(
                        "looks like a secret, and this table is stored with the run: write \
                         `secrets = [\"{name}\"]` and give {name} to the orchestrator's environment \
                         or orchestrator.secrets_file"
                    ),
                ));
            }
            out.insert(name, value);
        }
        Ok(out)
    }

    /// `secrets = ["NAME", ...]`: variable names, none also given a value in `tables`.
    fn secret_names(&self, k: &str, tables: &[&BTreeMap<String, String>]) -> Res<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for (i, (name, line)) in self.str_list(k)?.unwrap_or_default().into_iter().enumerate() {
            let path = format!("{}[{i}]", self.key(k));
            if !is_var_name(&name) {
                return Err(invalid(
                    line,
                    path,
                    "names are letters, digits and `_`, not starting with a digit",
                ));
            }
            if name.starts_with("HELIX_") {
                return Err(invalid(line, path, "HELIX_* variables are Helix's own"));
            }
            if tables.iter().any(|t| t.contains_key(&name)) {
                return Err(invalid(
                    line,
                    path,
                    format!("{name} also has a value in [variables] or an env table"),
                ));
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// `[limits]`: `cpu` (a duration), `memory` and `file_size` (bytes, or "512MiB", "8GiB"),
    /// `processes`.
    fn limits(&self, k: &str) -> Res<Rlimits> {
        let Some((table, start)) = self.sub(k)? else { return Ok(Rlimits::default()) };
        let path = self.key(k);
        let tab = self.child(table, start, &path);
        tab.check_keys(LIMIT_KEYS, |_| None)?;
        let size = |key: &str| -> Res<Option<u64>> {
            let Some((_, v)) = tab.find(key) else { return Ok(None) };
            let n = match v.get_ref() {
                DeValue::Integer(_) => tab.int(key)?.and_then(|i| u64::try_from(i).ok()),
                DeValue::String(s) => parse_size(s),
                other => return Err(tab.type_err(key, "a size such as \"8GiB\" or bytes", other)),
            };
            match n {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(tab.err(key, "must be a size greater than 0, such as \"512MiB\" or \"8GiB\"")),
            }
        };
        let processes = match tab.int("processes")? {
            None => None,
            Some(n) if n >= 1 => Some(n.unsigned_abs()),
            Some(_) => return Err(tab.err("processes", "must be at least 1")),
        };
        Ok(Rlimits {
            cpu_secs: tab.duration("cpu")?.map(|d| d.as_secs().max(1)),
            address_space_bytes: size("memory")?,
            file_size_bytes: size("file_size")?,
            processes,
        })
    }

    fn duration(&self, k: &str) -> Res<Option<Duration>> {
        let Some((_, v)) = self.find(k) else { return Ok(None) };
        let d = match v.get_ref() {
            DeValue::Integer(_) => {
                let secs = self.int(k)?.unwrap_or(0);
                if secs <= 0 {
                    return Err(self.err(k, "must be greater than 0"));
                }
                Duration::from_secs(secs.unsigned_abs())
            }
            DeValue::String(s) => parse_duration(s).map_err(|e| self.err(k, e))?,
            other => return Err(self.type_err(k, "a duration such as \"30s\" or seconds", other)),
        };
        if d.is_zero() {
            return Err(self.err(k, "must be greater than 0"));
        }
        if d > MAX_DURATION {
            return Err(self.err(k, "must be at most 7 days"));
        }
        Ok(Some(d))
    }

    fn child<'b>(&self, map: &'b DeTable<'i>, start: usize, path: &'b str) -> Tab<'b, 'i>
    where
        'a: 'b,
    {
        Tab { lines: self.lines, map, path, start }
    }
}

/// A size: bytes, or a number with `K`, `M`, `G`, `T` (powers of 1024; `KiB`, `KB` and `k` too).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// A variable that should be a secret: a credential-shaped value, or a name that says it holds
/// one (with a value that is not a path to a file).
fn looks_secret(name: &str, value: &str) -> bool {
    let path_like = value.starts_with('/') || value.starts_with("./") || value.starts_with("~/");
    helix_core::redact::is_key_like(value)
        || (helix_core::redact::is_secret_name(name) && value.len() >= 4 && !path_like)
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_phase_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with(['-', '_'])
}

fn to_json(v: &DeValue<'_>) -> Result<Value, String> {
    Ok(match v {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => Value::from(
            i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| "integer out of range".to_owned())?,
        ),
        DeValue::Float(f) => {
            let x: f64 = f.as_str().parse().map_err(|_| format!("invalid number {}", f.as_str()))?;
            serde_json::Number::from_f64(x)
                .map(Value::Number)
                .ok_or_else(|| format!("{x} is not a JSON number"))?
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => {
            Value::Array(items.iter().map(|i| to_json(i.get_ref())).collect::<Result<_, _>>()?)
        }
        DeValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.get_ref().to_string(), to_json(v.get_ref())?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline

const TOP_KEYS: &[&str] =
    &["name", "description", "variables", "env", "phase", "secrets", "limits", "timeout", "on_timeout"];
const PHASE_KEYS: &[&str] = &[
    "name",
    "kind",
    "inputs",
    "outputs",
    "env",
    "timeout",
    "stall_timeout",
    "on_timeout",
    "preflight",
    "retries",
    "gate",
    "secrets",
    "limits",
    "repair",
    "flaky",
    "simplified",
];
const LIMIT_KEYS: &[&str] = &["cpu", "memory", "file_size", "processes"];
const COMMAND_KEYS: &[&str] = &["run", "shell"];
const LLM_KEYS: &[&str] =
    &["model", "prompt", "system", "schema", "schema_file", "max_reasks", "max_tokens", "output"];
const AGENT_KEYS: &[&str] =
    &["agent", "program", "run", "prompt", "model", "max_turns", "allowed_tools", "max_cost_usd"];
/// Each phase kind and the keys that belong to it (besides [`PHASE_KEYS`]).
const KIND_KEYS: &[(&str, &[&str])] = &[("command", COMMAND_KEYS), ("llm", LLM_KEYS), ("agent", AGENT_KEYS)];
/// Most turns an agent phase may allow.
const MAX_AGENT_TURNS: i64 = 1000;
/// Largest `max_cost_usd` (a bound against typos, as the gateway's).
const MAX_AGENT_COST_USD: f64 = 1_000_000.0;
const GATE_KEYS: &[&str] = &["name", "kind", "on_fail"];
const GATE_KINDS: &[(&str, &[&str])] = &[
    ("exit_code", &["expect"]),
    ("files_exist", &["paths", "non_empty"]),
    ("output_matches", &["regex", "negate"]),
    ("json_schema", &["file", "schema", "schema_file"]),
    ("command", &["run", "shell", "baseline", "timeout"]),
    ("decision", &["question", "model"]),
];

/// What the templates of one phase may refer to.
struct Scope<'s> {
    vars: BTreeSet<String>,
    phase_names: &'s [String],
    index: usize,
}

fn parse(text: &str, base: Option<&Path>) -> Res<Pipeline> {
    let lines = Lines::new(text);
    let doc = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let line = lines.line(offset);
        let source = text.lines().nth(line - 1).unwrap_or("").trim();
        let message = format!("{} (in `{}`)", one_line(e.message()), source);
        PipelineError::Syntax { line, column: lines.column(offset), message }
    })?;
    let root = Tab { lines: &lines, map: doc.get_ref(), path: "", start: 0 };
    root.check_keys(TOP_KEYS, |k| {
        (k == "phases" || k == "phases.gate")
            .then(|| format!("unknown field `{k}`; phases are written as [[phase]] tables"))
    })?;
    let name = root.req_str("name", "the pipeline's name")?;
    if name.contains('\n') || name.len() > 128 {
        return Err(root.err("name", "must be a single line of at most 128 characters"));
    }
    let description = root.str("description")?;
    let variables = root.name_map("variables")?;
    let env = root.name_map("env")?;
    let secrets = root.secret_names("secrets", &[&variables, &env])?;
    let limits = root.limits("limits")?;
    let tables = root.sub_array("phase")?;
    if tables.is_empty() {
        return Err(invalid(1, "phase", "a pipeline needs at least one [[phase]]"));
    }

    // Names first, so that templates can tell a later phase from an unknown one.
    let paths: Vec<String> = (0..tables.len()).map(|i| format!("phase[{i}]")).collect();
    let mut names: Vec<String> = Vec::new();
    for (i, (map, start)) in tables.iter().enumerate() {
        let tab = root.child(map, *start, &paths[i]);
        let name = tab.req_str("name", "the phase's name")?;
        if !is_phase_name(&name) {
            return Err(tab.err(
                "name",
                format!("invalid phase name {name:?}: use letters, digits, `_` and `-` (at most 64)"),
            ));
        }
        if let Some(first) = names.iter().position(|n| *n == name) {
            return Err(tab.err("name", format!("duplicate phase name {name:?} (also phase[{first}])")));
        }
        names.push(name);
    }

    let mut phases = Vec::new();
    for (i, (map, start)) in tables.iter().enumerate() {
        let tab = root.child(map, *start, &paths[i]);
        phases.push(parse_phase(tab, &names, i, &variables, &env, base)?);
    }
    // a pipeline-wide `timeout` is the default of its phases (resolved here, like every default)
    if let Some(t) = root.duration("timeout")? {
        for p in phases.iter_mut().filter(|p| p.timeout.is_none()) {
            p.timeout = Some(t);
        }
    }
    if let Some(policy) = on_timeout(&root)? {
        for (p, (map, start)) in phases.iter_mut().zip(&tables) {
            if root.child(map, *start, "").find("on_timeout").is_none() {
                p.on_timeout = policy;
            }
        }
    }
    Ok(Pipeline { name, description, env, variables, phases, secrets, limits })
}

fn parse_phase(
    tab: Tab<'_, '_>,
    names: &[String],
    index: usize,
    variables: &BTreeMap<String, String>,
    pipeline_env: &BTreeMap<String, String>,
    base: Option<&Path>,
) -> Res<Phase> {
    let kinds = || KIND_KEYS.iter().map(|(k, _)| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
    let kind = tab.req_str("kind", &kinds())?;
    let Some((_, own)) = KIND_KEYS.iter().find(|(k, _)| *k == kind) else {
        return Err(tab.err("kind", format!("unknown phase kind {kind:?}, expected one of {}", kinds())));
    };
    let allowed: Vec<&str> = PHASE_KEYS.iter().chain(own.iter()).copied().collect();
    tab.check_keys(&allowed, |k| {
        KIND_KEYS
            .iter()
            .find(|(_, keys)| keys.contains(&k))
            .map(|(other, _)| format!("`{k}` belongs to {other} phases, this phase is kind = {kind:?}"))
    })?;

    let env = tab.name_map("env")?;
    let mut vars: BTreeSet<String> = variables.keys().cloned().collect();
    vars.extend(pipeline_env.keys().cloned());
    vars.extend(env.keys().cloned());
    let scope = Scope { vars, phase_names: names, index };

    let retries = tab.bounded("retries", 0, i64::from(MAX_RETRIES))?.unwrap_or(DEFAULT_RETRIES);
    let kind = match kind.as_str() {
        "command" => PhaseKind::Command {
            run: parse_run(&tab, &scope)?.ok_or_else(|| tab.missing("run", "the command"))?,
        },
        "agent" => PhaseKind::Agent(parse_agent(&tab, &scope)?),
        _ => parse_llm(&tab, &scope, base)?,
    };
    // a command or an agent is a process: its exit code is judged unless a gate says how
    let process = matches!(kind, PhaseKind::Command { .. } | PhaseKind::Agent(_));

    let gate_paths: Vec<String> =
        (0..tab.sub_array("gate")?.len()).map(|j| tab.key(&format!("gate[{j}]"))).collect();
    let mut gates = Vec::new();
    let mut gate_names: Vec<String> = Vec::new();
    for (j, (map, start)) in tab.sub_array("gate")?.into_iter().enumerate() {
        let gtab = tab.child(map, start, &gate_paths[j]);
        let gate = parse_gate(&gtab, &scope, process, base)?;
        if let Some(name) = &gate.name {
            if gate_names.contains(name) {
                return Err(gtab.err("name", format!("duplicate gate name {name:?} in this phase")));
            }
            gate_names.push(name.clone());
        }
        gates.push(gate);
    }
    if process && !gates.iter().any(|g| matches!(g.check, GateCheck::ExitCode { .. })) {
        gates.insert(0, Gate::default_exit_code());
    }

    let secrets = tab.secret_names("secrets", &[variables, pipeline_env, &env])?;
    let simplified = parse_simplified(&tab, &scope, &kind)?;
    Ok(Phase {
        name: names[index].clone(),
        kind,
        inputs: tab.paths("inputs")?,
        outputs: tab.paths("outputs")?,
        env,
        timeout: tab.duration("timeout")?,
        stall_timeout: tab.duration("stall_timeout")?,
        preflight: tab.bool("preflight")?.unwrap_or(false),
        on_timeout: on_timeout(&tab)?.unwrap_or_default(),
        retries,
        gates,
        secrets,
        limits: tab.limits("limits")?,
        repair: parse_repair(&tab)?,
        flaky: parse_flaky(&tab)?,
        simplified,
    })
}

fn parse_simplified(tab: &Tab<'_, '_>, scope: &Scope<'_>, kind: &PhaseKind) -> Res<Option<Simplified>> {
    let Some((map, start)) = tab.sub("simplified")? else { return Ok(None) };
    let path = tab.key("simplified");
    let t = tab.child(map, start, &path);
    let keys: &[&str] = match kind {
        PhaseKind::Llm { .. } => &["prompt", "model", "max_tokens"],
        PhaseKind::Agent(_) => &["prompt", "model", "max_turns", "max_cost_usd"],
        PhaseKind::Command { .. } => {
            return Err(tab.err("simplified", "[phase.simplified] is for llm and agent phases"));
        }
    };
    t.check_keys(keys, |k| Some(format!("`{k}` cannot be simplified for a {} phase", kind.name())))?;
    let prompt = t.str("prompt")?;
    if let Some(p) = &prompt {
        check_template(&t, "prompt", p, scope, true)?;
    }
    let max_cost_usd = t.float("max_cost_usd")?;
    if let Some(c) = max_cost_usd
        && !(c > 0.0 && c <= MAX_AGENT_COST_USD)
    {
        return Err(
            t.err("max_cost_usd", format!("must be above 0 and at most {MAX_AGENT_COST_USD}, got {c}"))
        );
    }
    Ok(Some(Simplified {
        prompt,
        model: t.str("model")?.filter(|m| !m.trim().is_empty()),
        max_turns: t.bounded("max_turns", 1, MAX_AGENT_TURNS)?,
        max_cost_usd,
        max_tokens: t.bounded("max_tokens", 1, i64::from(u32::MAX))?,
    }))
}

const MAX_FLAKY_RERUNS: i64 = 10;

fn parse_flaky(tab: &Tab<'_, '_>) -> Res<Option<Flaky>> {
    let Some((map, start)) = tab.sub("flaky")? else { return Ok(None) };
    let path = tab.key("flaky");
    let f = tab.child(map, start, &path);
    f.check_keys(&["reruns", "quarantine"], |_| None)?;
    Ok(Some(Flaky {
        reruns: f.bounded("reruns", 1, MAX_FLAKY_RERUNS)?.unwrap_or(2),
        quarantine: f.bool("quarantine")?.unwrap_or(false),
    }))
}

const REPAIR_KEYS: &[&str] = &["model", "max_reasks", "max_patch_bytes"];
const DEFAULT_REPAIR_PATCH_BYTES: u32 = 64 * 1024;

fn parse_repair(tab: &Tab<'_, '_>) -> Res<Option<Repair>> {
    let Some((map, start)) = tab.sub("repair")? else { return Ok(None) };
    let path = tab.key("repair");
    let r = tab.child(map, start, &path);
    r.check_keys(REPAIR_KEYS, |_| None)?;
    Ok(Some(Repair {
        model: r.req_str("model", "the model that writes the repair")?,
        max_reasks: r.bounded("max_reasks", 0, i64::from(MAX_REASKS))?.unwrap_or(1),
        max_patch_bytes: r.bounded("max_patch_bytes", 1, 1 << 20)?.unwrap_or(DEFAULT_REPAIR_PATCH_BYTES),
    }))
}

/// `run` (+ `shell`) of a command phase or gate.
fn parse_run(tab: &Tab<'_, '_>, scope: &Scope<'_>) -> Res<Option<CommandSpec>> {
    let shell = tab.bool("shell")?.unwrap_or(false);
    let Some((_, value)) = tab.find("run") else {
        if tab.find("shell").is_some() {
            return Err(tab.missing("run", "the script"));
        }
        return Ok(None);
    };
    match value.get_ref() {
        DeValue::String(script) if shell => {
            if script.trim().is_empty() {
                return Err(tab.err("run", "the script is empty"));
            }
            Ok(Some(CommandSpec::Shell(script.to_string())))
        }
        DeValue::String(_) => Err(tab.err(
            "run",
            "a string runs through a shell only with `shell = true`; to run a program directly, give an array: \
             run = [\"cargo\", \"test\"]",
        )),
        DeValue::Array(_) if shell => {
            Err(tab.err("shell", "shell = true needs `run` to be the script as one string, not an array"))
        }
        DeValue::Array(_) => {
            let argv: Vec<String> = tab.str_list("run")?.unwrap_or_default().into_iter().map(|(s, _)| s).collect();
            match argv.first() {
                None => return Err(tab.err("run", "the command is empty")),
                Some(p) if p.trim().is_empty() => return Err(tab.err("run", "the program name (first element) is empty")),
                Some(_) => {}
            }
            for arg in &argv {
                check_template(tab, "run", arg, scope, false)?;
            }
            Ok(Some(CommandSpec::Argv(argv)))
        }
        other => Err(tab.type_err("run", "an array of strings (or a string with shell = true)", other)),
    }
}

fn parse_agent(tab: &Tab<'_, '_>, scope: &Scope<'_>) -> Res<AgentPhase> {
    use crate::agent::profile::Profile;
    let name = tab.req_str("agent", "\"claude-code\", \"codex\" or \"generic\"")?;
    let agent = Profile::parse(&name).ok_or_else(|| {
        tab.err(
            "agent",
            format!("unknown agent {name:?}, expected \"claude-code\", \"codex\" or \"generic\""),
        )
    })?;
    let prompt = tab.req_str("prompt", "the task, a template")?;
    check_template(tab, "prompt", &prompt, scope, true)?;
    let program = tab.str("program")?;
    if let Some(p) = &program {
        if p.trim().is_empty() {
            return Err(tab.err("program", "must not be empty"));
        }
        check_template(tab, "program", p, scope, false)?;
    }
    let run: Vec<String> = tab.str_list("run")?.unwrap_or_default().into_iter().map(|(s, _)| s).collect();
    match agent {
        Profile::Generic => {
            if run.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(tab.missing(
                    "run",
                    "the command that starts a generic agent, e.g. [\"my-agent\", \"{{prompt}}\"]",
                ));
            }
            if program.is_some() {
                return Err(tab.err(
                    "program",
                    "a generic agent is started by `run`; `program` is for claude-code and codex",
                ));
            }
            // `{{prompt}}` is the rendered prompt
            let mut with_prompt =
                Scope { vars: scope.vars.clone(), phase_names: scope.phase_names, index: scope.index };
            with_prompt.vars.insert("prompt".to_owned());
            for arg in &run {
                check_template(tab, "run", arg, &with_prompt, false)?;
            }
        }
        _ if !run.is_empty() => {
            return Err(tab.err("run", format!("`run` starts a generic agent; a {name} agent is started by its profile (name another binary with `program`)")));
        }
        _ => {}
    }
    let max_cost_usd = tab.float("max_cost_usd")?;
    if let Some(c) = max_cost_usd
        && !(c > 0.0 && c <= MAX_AGENT_COST_USD)
    {
        return Err(
            tab.err("max_cost_usd", format!("must be above 0 and at most {MAX_AGENT_COST_USD}, got {c}"))
        );
    }
    let allowed_tools: Vec<String> =
        tab.str_list("allowed_tools")?.unwrap_or_default().into_iter().map(|(s, _)| s).collect();
    if let Some(t) = allowed_tools.iter().find(|t| t.trim().is_empty() || t.contains(',')) {
        return Err(
            tab.err("allowed_tools", format!("{t:?} is not a tool name (one per element, no commas)"))
        );
    }
    Ok(AgentPhase {
        agent,
        program,
        run,
        prompt,
        model: tab.str("model")?.filter(|m| !m.trim().is_empty()),
        max_turns: tab.bounded("max_turns", 1, MAX_AGENT_TURNS)?,
        allowed_tools,
        max_cost_usd,
    })
}

fn parse_llm(tab: &Tab<'_, '_>, scope: &Scope<'_>, base: Option<&Path>) -> Res<PhaseKind> {
    let model = tab.req_str("model", "the model to call")?;
    let prompt = tab.req_str("prompt", "the prompt template")?;
    check_template(tab, "prompt", &prompt, scope, true)?;
    let system = tab.str("system")?;
    if let Some(system) = &system {
        check_template(tab, "system", system, scope, true)?;
    }
    let schema = parse_schema(tab, base)?;
    let output = tab.str("output")?;
    if let Some(o) = &output {
        gates::check_relative_path(o).map_err(|e| tab.err("output", e))?;
    }
    Ok(PhaseKind::Llm {
        model,
        prompt,
        system,
        schema,
        max_reasks: tab.bounded("max_reasks", 0, i64::from(MAX_REASKS))?.unwrap_or(DEFAULT_MAX_REASKS),
        max_tokens: tab.bounded("max_tokens", 1, i64::from(u32::MAX))?,
        output,
    })
}

/// `schema` (inline table, or JSON text) or `schema_file`, checked to be a valid JSON Schema.
fn parse_schema(tab: &Tab<'_, '_>, base: Option<&Path>) -> Res<Option<Value>> {
    let (key, schema) = match (tab.find("schema"), tab.str("schema_file")?) {
        (Some(_), Some(_)) => {
            return Err(tab.err("schema_file", "give either `schema` or `schema_file`, not both"));
        }
        (None, None) => return Ok(None),
        (Some((_, v)), None) => {
            let value = match v.get_ref() {
                DeValue::String(s) => {
                    serde_json::from_str(s).map_err(|e| tab.err("schema", format!("not valid JSON: {e}")))?
                }
                DeValue::Table(_) | DeValue::Boolean(_) => {
                    to_json(v.get_ref()).map_err(|e| tab.err("schema", e))?
                }
                other => return Err(tab.type_err("schema", "a table (or JSON text)", other)),
            };
            ("schema", value)
        }
        (None, Some(file)) => {
            let Some(base) = base else {
                return Err(tab.err(
                    "schema_file",
                    "schema_file needs a pipeline read from a file; give the schema inline with `schema = {...}`",
                ));
            };
            gates::check_relative_path(&file).map_err(|e| tab.err("schema_file", e))?;
            let text = std::fs::read_to_string(base.join(&file))
                .map_err(|e| tab.err("schema_file", format!("cannot read {file}: {e}")))?;
            let value = serde_json::from_str(&text)
                .map_err(|e| tab.err("schema_file", format!("{file} is not valid JSON: {e}")))?;
            ("schema_file", value)
        }
    };
    gates::check_schema(&schema).map_err(|e| tab.err(key, e.to_string()))?;
    Ok(Some(schema))
}

fn parse_gate(tab: &Tab<'_, '_>, scope: &Scope<'_>, command_phase: bool, base: Option<&Path>) -> Res<Gate> {
    let kinds = || GATE_KINDS.iter().map(|(k, _)| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
    let kind = tab.req_str("kind", &format!("one of {}", kinds()))?;
    let Some((_, own)) = GATE_KINDS.iter().find(|(k, _)| *k == kind) else {
        return Err(tab.err("kind", format!("unknown gate kind {kind:?}, expected one of {}", kinds())));
    };
    let allowed: Vec<&str> = GATE_KEYS.iter().chain(own.iter()).copied().collect();
    tab.check_keys(&allowed, |k| {
        GATE_KINDS
            .iter()
            .find(|(_, keys)| keys.contains(&k))
            .map(|(other, _)| format!("`{k}` belongs to {other} gates, this gate is kind = {kind:?}"))
    })?;
    let name = tab.str("name")?;
    let on_fail = match tab.str("on_fail")?.as_deref() {
        None | Some("fail") => Severity::Fail,
        Some("warn") => Severity::Warn,
        Some(other) => {
            return Err(tab.err("on_fail", format!("expected \"fail\" or \"warn\", got {other:?}")));
        }
    };
    let check = match kind.as_str() {
        "exit_code" => {
            if !command_phase {
                return Err(tab.err("kind", "exit_code gates apply to command and agent phases only"));
            }
            let expect = tab.int("expect")?.unwrap_or(0);
            let expect = i32::try_from(expect).map_err(|_| tab.err("expect", "out of range"))?;
            GateCheck::ExitCode { expect }
        }
        "files_exist" => {
            if tab.find("paths").is_none() {
                return Err(tab.missing("paths", "the files that must exist"));
            }
            let paths = tab.paths("paths")?;
            if paths.is_empty() {
                return Err(tab.err("paths", "list at least one path"));
            }
            GateCheck::FilesExist { paths, non_empty: tab.bool("non_empty")?.unwrap_or(false) }
        }
        "output_matches" => {
            let regex = tab.req_str("regex", "the pattern")?;
            regex::Regex::new(&regex)
                .map_err(|e| tab.err("regex", format!("invalid regex: {}", one_line(&e.to_string()))))?;
            GateCheck::OutputMatches { regex, negate: tab.bool("negate")?.unwrap_or(false) }
        }
        "decision" => {
            let question = tab.req_str("question", "what the person is asked to decide")?;
            if question.len() > 4000 {
                return Err(tab.err("question", "must be at most 4000 bytes"));
            }
            GateCheck::Decision { question, model: tab.str("model")?.filter(|m| !m.trim().is_empty()) }
        }
        "json_schema" => {
            let file = tab.req_str("file", "the JSON file to check")?;
            gates::check_relative_path(&file).map_err(|e| tab.err("file", e))?;
            let schema = parse_schema(tab, base)?.ok_or_else(|| tab.missing("schema", "or `schema_file`"))?;
            GateCheck::JsonSchema { file, schema }
        }
        _ => {
            let run = parse_run(tab, scope)?.ok_or_else(|| tab.missing("run", "the command"))?;
            GateCheck::Command {
                run,
                baseline: tab.bool("baseline")?.unwrap_or(false),
                timeout: tab.duration("timeout")?,
            }
        }
    };
    Ok(Gate { name, on_fail, check })
}

fn on_timeout(tab: &Tab<'_, '_>) -> Res<Option<OnTimeout>> {
    tab.str("on_timeout")?
        .map(|s| {
            OnTimeout::parse(&s).ok_or_else(|| {
                tab.err(
                    "on_timeout",
                    format!("expected \"retry\", \"retry_with_hints\" or \"give_up\", got {s:?}"),
                )
            })
        })
        .transpose()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every placeholder of `template` must be a known variable, or (in prompts) the output of an
/// earlier phase.
fn check_template(tab: &Tab<'_, '_>, key: &str, template: &str, scope: &Scope<'_>, prompts: bool) -> Res<()> {
    for name in placeholders(template) {
        if let Some(rest) = name.strip_prefix("phases.") {
            let Some(phase) = rest.strip_suffix(".output").filter(|p| !p.contains('.')) else {
                return Err(tab.err(
                    key,
                    format!(
                        "unknown placeholder {{{{{name}}}}}; a phase's output is {{{{phases.NAME.output}}}}"
                    ),
                ));
            };
            if !prompts {
                return Err(
                    tab.err(key, format!("{{{{{name}}}}}: phase outputs can be used in llm prompts only"))
                );
            }
            match scope.phase_names.iter().position(|n| n == phase) {
                None => return Err(tab.err(key, format!("{{{{{name}}}}}: no phase is named {phase:?}"))),
                Some(i) if i == scope.index => {
                    return Err(tab.err(key, format!("{{{{{name}}}}}: a phase cannot use its own output")));
                }
                Some(i) if i > scope.index => {
                    return Err(tab.err(
                        key,
                        format!("{{{{{name}}}}}: phase {phase:?} (phase[{i}]) runs after this one"),
                    ));
                }
                Some(_) => {}
            }
        } else if !scope.vars.contains(&name) {
            return Err(tab.err(
                key,
                format!("unknown template variable {{{{{name}}}}}; declare it under [variables] or in an env table"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn globs_match_paths_as_documented() {
        assert!(glob_matches("src/**", "src/a.py") && glob_matches("src/**", "src/x/y/z.py"));
        assert!(!glob_matches("src/**", "tests/a.py"));
        assert!(glob_matches("**/*.py", "a.py") && glob_matches("**/*.py", "x/y/a.py"));
        assert!(!glob_matches("**/*.py", "x/a.pyc"));
        assert!(
            glob_matches("report.json", "report.json") && !glob_matches("report.json", "report.json.bak")
        );
        assert!(glob_matches("out", "out/a/b.txt"), "a plain directory covers its files");
        assert!(glob_matches("data/?.csv", "data/1.csv") && !glob_matches("data/?.csv", "data/10.csv"));
        assert!(glob_matches("./build/*.o", "build/main.o"));
    }

    /// The example of the module documentation, so that it stays valid.
    fn doc_example() -> String {
        let source = include_str!("pipeline.rs");
        let mut lines =
            source.lines().map_while(|l| l.strip_prefix("//!")).map(|l| l.strip_prefix(' ').unwrap_or(l));
        let mut out = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```toml" {
                break;
            }
        }
        for line in lines {
            if line.trim() == "```" {
                break;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn err(text: &str) -> String {
        Pipeline::parse(text).expect_err("invalid pipeline").to_string()
    }

    const MINIMAL: &str =
        "name = \"p\"\n\n[[phase]]\nname = \"build\"\nkind = \"command\"\nrun = [\"true\"]\n";

    #[test]
    fn secrets_are_named_never_given_and_credential_like_values_are_refused() {
        let text = "name = \"p\"\nsecrets = [\"PYPI_TOKEN\"]\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\nsecrets = [\"DB_PASSWORD\", \"PYPI_TOKEN\"]\n";
        let p = Pipeline::parse(text).expect("secrets");
        assert_eq!(p.secrets_for(0), ["PYPI_TOKEN", "DB_PASSWORD"]);
        assert!(!serde_json::to_string(&p).expect("json").contains("=\""));
        for (env, key) in [
            ("[env]\nOPENAI_API_KEY = \"whatever-123\"\n", "env.OPENAI_API_KEY"),
            ("[env]\nX = \"sk-proj-abcdefghijklmnop\"\n", "env.X"),
            ("[variables]\nGITHUB_TOKEN = \"ghp_x\"\n", "variables.GITHUB_TOKEN"),
            ("[env]\nDB_PASSWORD = \"hunter22\"\n", "env.DB_PASSWORD"),
        ] {
            let e = err(&MINIMAL.replace("name = \"p\"\n", &format!("name = \"p\"\n{env}")));
            assert!(e.contains(key) && e.contains("looks like a secret") && e.contains("secrets = ["), "{e}");
        }
        // a path to a key file, a setting that only mentions a key, are fine
        let ok = MINIMAL.replace(
            "name = \"p\"\n",
            "name = \"p\"\n[env]\nGOOGLE_APPLICATION_CREDENTIALS = \"/etc/gcp.json\"\nKEYBOARD = \"us\"\n",
        );
        Pipeline::parse(&ok).expect("paths and harmless names");
        let e = err(&MINIMAL.replace("name = \"p\"\n", "name = \"p\"\nsecrets = [\"bad name\"]\n"));
        assert!(e.contains("secrets[0]"), "{e}");
        let e =
            err(&MINIMAL.replace("name = \"p\"\n", "name = \"p\"\nsecrets = [\"X\"]\n[env]\nX = \"1\"\n"));
        assert!(e.contains("also has a value"), "{e}");
    }

    #[test]
    fn a_pipeline_timeout_is_the_default_of_its_phases() {
        let text = "name = \"p\"\ntimeout = \"2h\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n\
                    [[phase]]\nname = \"b\"\nkind = \"command\"\nrun = [\"true\"]\ntimeout = \"5m\"\n";
        let p = Pipeline::parse(text).expect("timeouts");
        assert_eq!(p.phases[0].timeout, Some(Duration::from_secs(7200)));
        assert_eq!(p.phases[1].timeout, Some(Duration::from_secs(300)));
        assert!(err(&text.replace("\"2h\"", "\"forever\"")).contains("line 2: timeout"));
    }

    #[test]
    fn limits_of_the_pipeline_and_the_phase() {
        let text = "name = \"p\"\n[limits]\ncpu = \"30m\"\nmemory = \"8GiB\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n[phase.limits]\nmemory = 1048576\nprocesses = 64\nfile_size = \"1M\"\n";
        let p = Pipeline::parse(text).expect("limits");
        let defaults = Rlimits {
            cpu_secs: Some(1),
            address_space_bytes: Some(2),
            file_size_bytes: Some(3),
            processes: Some(4),
        };
        assert_eq!(
            p.limits_for(0, defaults),
            Rlimits {
                cpu_secs: Some(1800),
                address_space_bytes: Some(1 << 20),
                file_size_bytes: Some(1 << 20),
                processes: Some(64)
            }
        );
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("512 MB"), Some(512 << 20));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("1.5G"), None);
        let e = err(&text.replace("memory = 1048576", "memory = \"lots\""));
        assert!(e.contains("phase[0].limits.memory"), "{e}");
        let e = err(&text.replace("processes = 64", "procs = 64"));
        assert!(e.contains("procs"), "{e}");
    }

    #[test]
    fn the_documented_example_parses_to_what_it_says() {
        let text = doc_example();
        assert!(text.contains("[[phase.gate]]"), "{text}");
        let p = Pipeline::parse(&text).expect("doc example");
        assert_eq!(p.name, "calc");
        assert_eq!(p.variables["module"], "calc");
        assert_eq!(p.phases.len(), 4);

        let install = &p.phases[0];
        assert_eq!(install.timeout, Some(Duration::from_secs(600)));
        assert_eq!(install.stall_timeout, Some(Duration::from_secs(120)));
        assert_eq!(install.max_attempts(), 3);
        assert_eq!(install.gates, [Gate::default_exit_code()], "implicit exit code gate");

        let test = &p.phases[1];
        assert_eq!(
            test.repair,
            Some(Repair { model: "claude-sonnet".into(), max_reasks: 1, max_patch_bytes: 65536 })
        );
        let PhaseKind::Agent(fix) = &p.phases[3].kind else { panic!("the agent phase") };
        assert_eq!(fix.agent, crate::agent::profile::Profile::ClaudeCode);
        assert_eq!((fix.max_turns, fix.max_cost_usd), (Some(30), Some(2.5)));
        assert_eq!(p.phases[3].stall_timeout, Some(Duration::from_secs(300)));
        assert_eq!(
            test.kind,
            PhaseKind::Command {
                run: CommandSpec::Shell("$python -m pytest -q tests/test_$module.py".into())
            }
        );
        assert_eq!(test.inputs, ["src/**", "tests/**"]);
        assert_eq!(test.env["PYTEST_ADDOPTS"], "-p no:cacheprovider");
        let kinds: Vec<_> = test.gates.iter().map(|g| g.check.kind()).collect();
        assert_eq!(
            kinds,
            ["exit_code", "files_exist", "output_matches", "json_schema", "decision", "command"]
        );
        assert_eq!(test.gates[2].on_fail, Severity::Warn);
        assert_eq!(test.gates[2].display_name(), "no warnings");
        assert_eq!(
            test.gates[4].check,
            GateCheck::Decision {
                question: "SQLite or Postgres?".into(),
                model: Some("claude-sonnet".into())
            }
        );
        assert_eq!(
            test.gates[5].check,
            GateCheck::Command {
                run: CommandSpec::Argv(vec!["{{python}}".into(), "-m".into(), "pytest".into(), "-q".into()]),
                baseline: true,
                timeout: Some(Duration::from_secs(900)),
            }
        );
        let GateCheck::JsonSchema { schema, .. } = &test.gates[3].check else { panic!("json_schema gate") };
        assert_eq!(schema, &json!({"type": "object", "required": ["passed"]}));

        let PhaseKind::Llm { model, prompt, schema, max_reasks, max_tokens, output, system } =
            &p.phases[2].kind
        else {
            panic!("llm phase")
        };
        assert_eq!(model, "claude-sonnet");
        assert!(prompt.ends_with("{{phases.test.output}}"));
        assert_eq!(system.as_deref(), Some("You are a terse release engineer."));
        assert_eq!(schema.as_ref().map(|s| &s["required"]), Some(&json!(["summary"])));
        assert_eq!((*max_reasks, *max_tokens, output.as_deref()), (2, Some(800), Some("summary.json")));
        assert!(p.phases[2].gates.is_empty(), "llm phases get no implicit gate");
    }

    #[test]
    fn unknown_keys_name_line_and_path() {
        let text = "name = \"p\"\n\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n\n\
                    [[phase]]\nname = \"b\"\nkind = \"command\"\ntimout = \"10s\"\nrun = [\"true\"]\n";
        let e = err(text);
        assert!(
            e.starts_with("line 11: phase[1].timout: unknown field `timout`, expected one of `name`, `kind`"),
            "{e}"
        );
        assert!(e.contains("`timeout`"), "{e}");
        assert_eq!(Pipeline::parse(text).expect_err("invalid").line(), Some(11));

        let e = err("name = \"p\"\nverbose = true\n");
        assert!(e.starts_with("line 2: verbose: unknown field `verbose`"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[phase.gate]]\nkind = \"files_exist\"\npaths = [\"a\"]\nnonempty = true\n"
        ));
        assert!(e.starts_with("line 11: phase[0].gate[0].nonempty: unknown field `nonempty`"), "{e}");
        let e = err(&format!("{MINIMAL}model = \"x\"\n"));
        assert_eq!(
            e,
            "line 7: phase[0].model: `model` belongs to llm phases, this phase is kind = \"command\""
        );
        let e = err(&format!("{MINIMAL}\n[[phase.gate]]\nkind = \"exit_code\"\nregex = \"x\"\n"));
        assert_eq!(
            e,
            "line 10: phase[0].gate[0].regex: `regex` belongs to output_matches gates, this gate is kind = \"exit_code\""
        );
        let e = err("name = \"p\"\n[[phases]]\nname = \"a\"\n");
        assert!(e.contains("[[phase]]"), "{e}");
    }

    #[test]
    fn syntax_and_type_errors_name_the_line() {
        let e = err("name = \"p\"\n[[phase]]\nrun = [\"a\",\nname = 2\n");
        assert!(e.starts_with("line 4, column 6: unexpected `=`"), "{e}");
        assert!(e.ends_with("(in `name = 2`)"), "{e}");
        let e = err("name = \"p\"\nname = \"q\"\n");
        assert_eq!(e, "line 2, column 1: duplicate key (in `name = \"q\"`)");
        let e = err(&MINIMAL.replace("run = [\"true\"]", "run = [\"true\", 3]"));
        assert_eq!(e, "line 6: phase[0].run[1]: expected a string, found integer");
        let e = err(&format!("{MINIMAL}retries = \"many\"\n"));
        assert_eq!(e, "line 7: phase[0].retries: expected an integer, found string");
        let e = err(&format!("{MINIMAL}retries = 99\n"));
        assert_eq!(e, "line 7: phase[0].retries: must be between 0 and 10, got 99");
        let e = err("name = \"p\"\nphase = 3\n");
        assert!(e.starts_with("line 2: phase: expected an array of tables"), "{e}");
        let e = err(
            "name = \"p\"\n[env]\nX = [1]\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n",
        );
        assert_eq!(e, "line 3: env.X: expected a string, found array");
        let e = err("name = \"p\"\n[variables]\n\"my var\" = \"1\"\n");
        assert!(e.starts_with("line 3: variables.my var: names are letters"), "{e}");
    }

    #[test]
    fn missing_and_empty_things() {
        assert_eq!(
            err("description = \"x\"\n"),
            "line 1: name: missing required key `name` (the pipeline's name)"
        );
        assert_eq!(err("name = \"p\"\n"), "line 1: phase: a pipeline needs at least one [[phase]]");
        let e = err("name = \"p\"\n\n[[phase]]\nkind = \"command\"\n");
        assert_eq!(e, "line 3: phase[0].name: missing required key `name` (the phase's name)");
        let e = err("name = \"p\"\n\n[[phase]]\nname = \"a\"\n");
        assert!(e.starts_with("line 3: phase[0].kind: missing required key `kind`"), "{e}");
        let e = err("name = \"p\"\n\n[[phase]]\nname = \"a\"\nkind = \"command\"\n");
        assert_eq!(e, "line 3: phase[0].run: missing required key `run` (the command)");
        assert_eq!(err(&MINIMAL.replace("[\"true\"]", "[]")), "line 6: phase[0].run: the command is empty");
        assert!(err(&MINIMAL.replace("[\"true\"]", "[\"\", \"x\"]")).contains("program name"));
        let e = err("name = \"p\"\n[[phase]]\nname = \"a\"\nkind = \"llm\"\nmodel = \"m\"\n");
        assert_eq!(e, "line 2: phase[0].prompt: missing required key `prompt` (the prompt template)");
        let e = err("name = \"p\"\n[[phase]]\nname = \"a\"\nkind = \"robot\"\n");
        assert!(e.starts_with("line 4: phase[0].kind: unknown phase kind \"robot\""), "{e}");
        let e = err("name = \"p\"\n[[phase]]\nname = \"a\"\nkind = \"agent\"\n");
        assert!(e.starts_with("line 2: phase[0].agent: missing required key `agent`"), "{e}");
    }

    #[test]
    fn shell_strings_need_shell_true() {
        let e = err(&MINIMAL.replace("[\"true\"]", "\"cargo test\""));
        assert!(
            e.starts_with("line 6: phase[0].run: a string runs through a shell only with `shell = true`"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}shell = true\n"));
        assert!(e.starts_with("line 7: phase[0].shell: shell = true needs `run` to be the script"), "{e}");
        let p = Pipeline::parse(&MINIMAL.replace("[\"true\"]", "\"echo $X\"\nshell = true")).expect("shell");
        assert_eq!(p.phases[0].kind, PhaseKind::Command { run: CommandSpec::Shell("echo $X".into()) });
        // Shell scripts are not templates: braces are left to the shell.
        assert!(Pipeline::parse(&MINIMAL.replace("[\"true\"]", "\"echo {{nope}}\"\nshell = true")).is_ok());
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let two = "name = \"p\"\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n\
                   [[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n";
        assert_eq!(err(two), "line 7: phase[1].name: duplicate phase name \"a\" (also phase[0])");
        assert!(
            err(&MINIMAL.replace("\"build\"", "\"bad name\""))
                .starts_with("line 4: phase[0].name: invalid phase name")
        );
        assert_eq!(
            err(&format!("{MINIMAL}timeout = 0\n")),
            "line 7: phase[0].timeout: must be greater than 0"
        );
        assert_eq!(
            err(&format!("{MINIMAL}timeout = \"0s\"\n")),
            "line 7: phase[0].timeout: must be greater than 0"
        );
        assert!(
            err(&format!("{MINIMAL}stall_timeout = \"ten\"\n"))
                .starts_with("line 7: phase[0].stall_timeout: invalid duration")
        );
        let e =
            err(&format!("{MINIMAL}\n[[phase.gate]]\nkind = \"output_matches\"\nregex = \"(unclosed\"\n"));
        assert!(e.starts_with("line 10: phase[0].gate[0].regex: invalid regex"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[phase.gate]]\nkind = \"json_schema\"\nfile = \"a.json\"\nschema = {{ type = \"objekt\" }}\n"
        ));
        assert!(e.starts_with("line 11: phase[0].gate[0].schema: invalid JSON Schema"), "{e}");
        let e = err(&format!("{MINIMAL}outputs = [\"ok\", \"../escape\"]\n"));
        assert!(e.starts_with("line 7: phase[0].outputs[1]: \"../escape\": `..` is not allowed"), "{e}");
        let e = err(&format!("{MINIMAL}inputs = [\"/etc/passwd\"]\n"));
        assert!(e.contains("absolute paths are not allowed"), "{e}");
        let e = err(&format!("{MINIMAL}\n[[phase.gate]]\nkind = \"files_exist\"\npaths = []\n"));
        assert_eq!(e, "line 10: phase[0].gate[0].paths: list at least one path");
        let e = err(&format!("{MINIMAL}\n[[phase.gate]]\nkind = \"exit_code\"\non_fail = \"ignore\"\n"));
        assert_eq!(e, "line 10: phase[0].gate[0].on_fail: expected \"fail\" or \"warn\", got \"ignore\"");
        let dup = format!(
            "{MINIMAL}\n[[phase.gate]]\nname = \"g\"\nkind = \"exit_code\"\n\n[[phase.gate]]\nname = \"g\"\nkind = \"exit_code\"\n"
        );
        assert_eq!(err(&dup), "line 13: phase[0].gate[1].name: duplicate gate name \"g\" in this phase");
        let e = err(&format!("{MINIMAL}\n[[phase.gate]]\nkind = \"coverage\"\n"));
        assert!(e.starts_with("line 9: phase[0].gate[0].kind: unknown gate kind \"coverage\""), "{e}");
    }

    const LLM_PIPELINE: &str = "name = \"p\"\n[variables]\nlang = \"rust\"\n\
        [[phase]]\nname = \"first\"\nkind = \"command\"\nrun = [\"true\"]\n\
        [[phase]]\nname = \"ask\"\nkind = \"llm\"\nmodel = \"m\"\nprompt = \"PROMPT\"\n\
        [[phase]]\nname = \"last\"\nkind = \"command\"\nrun = [\"true\"]\n";

    #[test]
    fn prompts_may_only_use_known_variables_and_earlier_outputs() {
        let with = |prompt: &str| Pipeline::parse(&LLM_PIPELINE.replace("PROMPT", prompt));
        assert!(with("{{lang}} {{ phases.first.output }}").is_ok());
        let e = |prompt: &str| with(prompt).expect_err("invalid prompt").to_string();
        assert_eq!(
            e("{{language}}"),
            "line 12: phase[1].prompt: unknown template variable {{language}}; declare it under [variables] or in an env table"
        );
        assert_eq!(
            e("{{phases.last.output}}"),
            "line 12: phase[1].prompt: {{phases.last.output}}: phase \"last\" (phase[2]) runs after this one"
        );
        assert_eq!(
            e("{{phases.ask.output}}"),
            "line 12: phase[1].prompt: {{phases.ask.output}}: a phase cannot use its own output"
        );
        assert_eq!(
            e("{{phases.nope.output}}"),
            "line 12: phase[1].prompt: {{phases.nope.output}}: no phase is named \"nope\""
        );
        assert!(e("{{phases.first.stdout}}").contains("a phase's output is {{phases.NAME.output}}"));
        // Not placeholders: left alone.
        assert!(with("{json: {a: 1}} {{ not a name }} {{}}").is_ok());
        // argv may use variables but not phase outputs.
        let argv = LLM_PIPELINE.replace(
            "run = [\"true\"]\n[[phase]]\nname = \"ask\"",
            "run = [\"echo\", \"{{lang}}\"]\n[[phase]]\nname = \"ask\"",
        );
        assert!(Pipeline::parse(&argv.replace("PROMPT", "x")).is_ok());
        let bad = LLM_PIPELINE.replace("PROMPT", "x").replace(
            "name = \"last\"\nkind = \"command\"\nrun = [\"true\"]",
            "name = \"last\"\nkind = \"command\"\nrun = [\"echo\", \"{{phases.ask.output}}\"]",
        );
        assert!(Pipeline::parse(&bad).expect_err("argv output").to_string().contains("llm prompts only"));
    }

    #[test]
    fn agent_phases_parse_with_their_profile_and_round_trip() {
        let text = r#"name = "a"

[[phase]]
name = "plan"
kind = "llm"
model = "m"
prompt = "plan it"

[[phase]]
name = "dev"
kind = "agent"
agent = "claude-code"
program = "{{CLAUDE}}"
prompt = "Do {{phases.plan.output}}"
model = "claude-sonnet-4-5"
max_turns = 12
allowed_tools = ["Read", "Edit", "Bash(cargo test:*)"]
max_cost_usd = 1.5
variables = {}

[phase.env]
CLAUDE = "/opt/claude"
"#
        .replace("variables = {}\n", "");
        let p = Pipeline::parse(&text).expect("agent phase");
        let PhaseKind::Agent(a) = &p.phases[1].kind else { panic!("agent") };
        assert_eq!(a.agent, crate::agent::profile::Profile::ClaudeCode);
        assert_eq!((a.max_turns, a.max_cost_usd), (Some(12), Some(1.5)));
        assert_eq!(a.allowed_tools.len(), 3);
        assert_eq!(p.phases[1].kind.name(), "agent");
        // a process: its exit code is judged
        assert!(matches!(p.phases[1].gates[0].check, GateCheck::ExitCode { expect: 0 }));
        // stored in run.json and read back the same
        let back: Pipeline = serde_json::from_str(&serde_json::to_string(&p).expect("json")).expect("read");
        assert_eq!(back, p);
        // an integer budget is a number too
        let whole = text.replace("max_cost_usd = 1.5", "max_cost_usd = 2");
        let PhaseKind::Agent(a) = &Pipeline::parse(&whole).expect("integer").phases[1].kind else { panic!() };
        assert_eq!(a.max_cost_usd, Some(2.0));
        let e = Pipeline::parse(&text.replace("max_cost_usd = 1.5", "max_cost_usd = nan"))
            .expect_err("nan")
            .to_string();
        assert!(e.contains("max_cost_usd"), "{e}");
    }

    #[test]
    fn llm_schema_inline_json_text_or_file() {
        let inline = LLM_PIPELINE
            .replace("PROMPT", "x")
            .replace("model = \"m\"", "model = \"m\"\nschema = '{\"type\": \"array\"}'");
        let p = Pipeline::parse(&inline).expect("json text schema");
        let PhaseKind::Llm { schema, max_reasks, .. } = &p.phases[1].kind else { panic!("llm") };
        assert_eq!(schema, &Some(json!({"type": "array"})));
        assert_eq!(*max_reasks, DEFAULT_MAX_REASKS);

        let by_file = LLM_PIPELINE
            .replace("PROMPT", "x")
            .replace("model = \"m\"", "model = \"m\"\nschema_file = \"s.json\"");
        let e = Pipeline::parse(&by_file).expect_err("no base dir").to_string();
        assert!(
            e.starts_with("line 12: phase[1].schema_file: schema_file needs a pipeline read from a file"),
            "{e}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pipeline.toml"), &by_file).expect("write");
        let e = Pipeline::load_verbose(&dir.path().join("pipeline.toml"))
            .expect_err("missing schema file")
            .to_string();
        assert!(e.contains("pipeline.toml: line 12: phase[1].schema_file: cannot read s.json"), "{e}");
        // for API clients only where, not what
        let e =
            Pipeline::load(&dir.path().join("pipeline.toml")).expect_err("missing schema file").to_string();
        assert!(e.contains("pipeline.toml: line 12, column 1: not a valid pipeline"), "{e}");
        assert!(!e.contains("schema_file") && !e.contains("s.json"), "{e}");
        std::fs::write(dir.path().join("s.json"), r#"{"type": "object", "required": ["a"]}"#).expect("write");
        let p = Pipeline::load(&dir.path().join("pipeline.toml")).expect("load");
        let PhaseKind::Llm { schema, .. } = &p.phases[1].kind else { panic!("llm") };
        assert_eq!(schema, &Some(json!({"type": "object", "required": ["a"]})));

        let both = by_file.replace("schema_file", "schema = { type = \"object\" }\nschema_file");
        assert!(Pipeline::parse(&both).expect_err("both").to_string().contains("not both"));
        let e = Pipeline::load(&dir.path().join("missing.toml")).expect_err("no file").to_string();
        assert!(e.starts_with("cannot read pipeline"), "{e}");
    }

    #[test]
    fn defaults_and_exit_code_gate() {
        let p = Pipeline::parse(MINIMAL).expect("minimal");
        let phase = &p.phases[0];
        assert_eq!((phase.retries, phase.max_attempts(), phase.timeout), (DEFAULT_RETRIES, 3, None));
        assert_eq!(phase.gates, [Gate::default_exit_code()]);
        // An explicit exit_code gate replaces the implicit one.
        let own = Pipeline::parse(&format!("{MINIMAL}\n[[phase.gate]]\nkind = \"exit_code\"\nexpect = 3\n"))
            .expect("gate");
        assert_eq!(own.phases[0].gates.len(), 1);
        assert_eq!(own.phases[0].gates[0].check, GateCheck::ExitCode { expect: 3 });
        // Other gates come after the implicit one.
        let more =
            Pipeline::parse(&format!("{MINIMAL}\n[[phase.gate]]\nkind = \"files_exist\"\npaths = [\"x\"]\n"))
                .expect("gate");
        assert_eq!(more.phases[0].gates[0], Gate::default_exit_code());
        let e = err(&LLM_PIPELINE
            .replace("prompt = \"PROMPT\"", "prompt = \"x\"\n[[phase.gate]]\nkind = \"exit_code\""));
        assert!(e.contains("exit_code gates apply to command and agent phases only"), "{e}");
    }

    #[test]
    fn on_timeout_defaults_to_retry_inherits_the_pipelines_and_names_a_bad_value() {
        assert_eq!(Pipeline::parse(MINIMAL).expect("minimal").phases[0].on_timeout, OnTimeout::Retry);
        let two = "name = \"p\"\non_timeout = \"give_up\"\n\n[[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"true\"]\n\n[[phase]]\nname = \"b\"\nkind = \"command\"\nrun = [\"true\"]\non_timeout = \"retry_with_hints\"\n";
        let p = Pipeline::parse(two).expect("pipeline");
        assert_eq!(
            p.phases.iter().map(|p| p.on_timeout).collect::<Vec<_>>(),
            [OnTimeout::GiveUp, OnTimeout::RetryWithHints]
        );
        let e = err(&format!("{MINIMAL}on_timeout = \"later\"\n"));
        assert!(e.starts_with("line 7: phase[0].on_timeout: expected \"retry\""), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "10", "1.5s", "10 m", "m", "5x", "1h 30m", "-1s", "99999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let p = Pipeline::parse(&format!("{MINIMAL}timeout = 90\nstall_timeout = \"1m30s\"\n"))
            .expect("durations");
        assert_eq!(p.phases[0].timeout, Some(Duration::from_secs(90)));
        assert_eq!(p.phases[0].stall_timeout, Some(Duration::from_secs(90)));
        assert!(err(&format!("{MINIMAL}timeout = \"8d\"\n")).contains("at most 7 days"));
    }

    #[test]
    fn templates_render_once_and_name_unknown_variables() {
        let vars: BTreeMap<String, String> = [
            ("a".to_owned(), "$(rm -rf /) {{b}}".to_owned()),
            ("phases.x.output".to_owned(), "out".to_owned()),
        ]
        .into();
        assert_eq!(render("<{{a}}> {{ phases.x.output }}", &vars), Ok("<$(rm -rf /) {{b}}> out".to_owned()));
        let e = render("{{a}} {{b}} {{c}} {{b}}", &vars).expect_err("unknown");
        assert_eq!(e.names, ["b", "c"]);
        assert_eq!(e.to_string(), "unknown template variable {{b}}, {{c}}");
        assert_eq!(placeholders("{{a}} {x} {{ b.c }} {{1x}}"), ["a", "b.c"]);
        let spec = CommandSpec::Argv(vec!["pytest".into(), "-k".into(), "{{a}}".into()]);
        assert_eq!(
            render_command(&spec, &vars),
            Ok(CommandSpec::Argv(vec!["pytest".into(), "-k".into(), "$(rm -rf /) {{b}}".into()]))
        );
        let script = CommandSpec::Shell("echo {{a}}".into());
        assert_eq!(render_command(&script, &vars), Ok(script.clone()));
    }

    #[test]
    fn vars_for_layers_variables_pipeline_env_and_phase_env() {
        let text = "name = \"p\"\n[variables]\nA = \"var\"\nB = \"var\"\nC = \"var\"\n[env]\nB = \"env\"\nC = \"env\"\nN = 1\n\
                    [[phase]]\nname = \"a\"\nkind = \"command\"\nrun = [\"echo\", \"{{C}}\"]\n[phase.env]\nC = \"phase\"\n";
        let p = Pipeline::parse(text).expect("pipeline");
        let vars = p.vars_for(0);
        assert_eq!(
            (vars["A"].as_str(), vars["B"].as_str(), vars["C"].as_str(), vars["N"].as_str()),
            ("var", "env", "phase", "1")
        );
        let PhaseKind::Command { run } = &p.phases[0].kind else { panic!("command") };
        assert_eq!(render_command(run, &vars), Ok(CommandSpec::Argv(vec!["echo".into(), "phase".into()])));
    }

    #[test]
    fn fingerprint_ignores_formatting_and_sees_changes() {
        let a = Pipeline::parse(MINIMAL).expect("a");
        let reformatted = "# comment\nname='p'\n[[phase]]\nrun=['true']\nkind='command'\nname='build'\n";
        let b = Pipeline::parse(reformatted).expect("b");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        let c = Pipeline::parse(&MINIMAL.replace("true", "false")).expect("c");
        assert_ne!(a.fingerprint(), c.fingerprint());
        // Key order inside an inline schema does not matter either.
        let s1 = format!(
            "{MINIMAL}[[phase.gate]]\nkind = \"json_schema\"\nfile = \"a\"\nschema = {{ type = \"object\", required = [\"x\"] }}\n"
        );
        let s2 = s1.replace("type = \"object\", required = [\"x\"]", "required = [\"x\"], type = \"object\"");
        let (p1, p2) = (Pipeline::parse(&s1).expect("s1"), Pipeline::parse(&s2).expect("s2"));
        assert_eq!(p1.fingerprint(), p2.fingerprint());
    }

    #[test]
    fn pipeline_round_trips_through_json() {
        let p = Pipeline::parse(&doc_example()).expect("doc example");
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["phases"][0]["timeout_ms"], 600_000);
        assert_eq!(json["phases"][2]["kind"]["type"], "llm");
        let back: Pipeline = serde_json::from_value(json).expect("back");
        assert_eq!(back, p);
        assert_eq!(back.fingerprint(), p.fingerprint());
        assert_eq!(p.phase("summary").map(|(i, _)| i), Some(2));
    }
}
