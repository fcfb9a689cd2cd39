//! Command-line arguments and how they become configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use helix_core::config::{ConfigFile, FlagValue};
use helix_core::{LoadedConfig, ServiceKind};

/// Helix makes pipelines of LLM coding agents predictable, observable, resilient and
/// self-healing.
#[derive(Debug, Parser)]
#[command(name = "helix", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all four services in this process (orchestrator 7700, trace-collector 7701,
    /// breaker-gateway 7702, healer 7703)
    Up(RunArgs),
    /// Run one service
    Serve {
        /// orchestrator, trace-collector, breaker-gateway or healer
        #[arg(value_enum)]
        service: ServiceArg,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Print, write or check the OpenAPI documents under openapi/
    Openapi {
        /// Write every service's document to DIR/<service>.json
        #[arg(long, conflicts_with = "check")]
        write: bool,
        /// Exit with an error when a file in DIR differs from the code
        #[arg(long)]
        check: bool,
        /// Directory of the committed documents
        #[arg(long, default_value = "openapi")]
        dir: PathBuf,
        /// Print this service's document (when neither --write nor --check is given)
        #[arg(value_enum, required_unless_present_any = ["write", "check"])]
        service: Option<ServiceArg>,
    },
    /// Print the effective configuration (defaults < file < HELIX_* env < flags) as TOML
    Config(RunArgs),
    /// Analyse a failed command's output: root cause, category, signature, known fixes
    ///
    /// `helix heal build.log`, `cmd 2>&1 | helix heal -`, or `helix heal -- cargo build` to run
    /// the command (no shell) and analyse its output when it fails. Exits 1 when it found errors
    /// (with `--`: the command's own exit code).
    Heal {
        /// File to analyse, or - for standard input
        #[arg(default_value = "-", conflicts_with = "command")]
        file: String,
        /// Which tool printed the output (a hint: python, cargo, tsc, ...)
        #[arg(long)]
        tool: Option<String>,
        /// Print the API's JSON instead of the report
        #[arg(long)]
        json: bool,
        /// Pattern directory to use instead of the built-in patterns
        #[arg(long, value_name = "DIR")]
        patterns: Option<PathBuf>,
        /// The command to run, after --
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Predict a workspace's failures before anything runs (static preflight)
    ///
    /// Compares what the sources use with what the manifests declare: Python imports against
    /// requirements*.txt / pyproject.toml / setup.cfg / Pipfile, JS/TS imports against
    /// package.json, Rust `use` / `extern crate` against Cargo.toml, C/C++ `#include`s of headers
    /// from a known -dev package against the Debian packages installed here (or declared by the
    /// workspace's Dockerfile / apt.txt). Each finding carries the signature and fixes the real
    /// failure would get. Runs in-process, as `POST /v1/check` does. Exits 1 when it found any.
    Check {
        /// The workspace directory
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print the API's JSON instead of the report
        #[arg(long)]
        json: bool,
        /// Do not read the installed Debian packages: check #includes only against the
        /// packages the workspace declares (what a fresh build machine would have)
        #[arg(long)]
        fresh_machine: bool,
        /// Pattern directory to use instead of the built-in patterns
        #[arg(long, value_name = "DIR")]
        patterns: Option<PathBuf>,
    },
    /// Search or validate the pattern knowledge base
    Patterns {
        #[command(subcommand)]
        command: PatternsCommand,
    },
    /// Traces: browse a trace as a span tree (`helix trace TRACE_OR_PROJECT`), or import agent
    /// transcripts into the trace-collector (`helix trace import FILE`)
    #[command(subcommand_required = false)]
    Trace {
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// Cost table from the trace-collector: `helix costs --by project --bucket day`
    Costs {
        /// project, phase, model, domain, day or week
        #[arg(long, default_value = "project")]
        by: String,
        /// Also split each group by day or week
        #[arg(long)]
        bucket: Option<String>,
        /// From this instant (RFC 3339)
        #[arg(long)]
        from: Option<String>,
        /// Until this instant (RFC 3339)
        #[arg(long)]
        to: Option<String>,
        /// Print the collector's JSON
        #[arg(long)]
        json: bool,
        /// The trace-collector's URL
        #[arg(long, env = "HELIX_TRACE_COLLECTOR_URL", default_value = "http://127.0.0.1:7701")]
        url: String,
    },
    /// Run a pipeline on the orchestrator (`helix up`) and follow it live
    ///
    /// One line per event (elapsed, phase, attempt, message), then the result: the final
    /// workspace, or the reason and `helix resume TOKEN`. Exit 0 when the run succeeded, 1 when
    /// it did not, 2 for an invalid pipeline or when the orchestrator went away mid-run.
    Run {
        /// The pipeline file (pipeline.toml)
        #[arg(value_name = "PIPELINE.toml")]
        pipeline: PathBuf,
        /// The project the run belongs to (traces, costs, baselines, bulkheads)
        #[arg(long)]
        project: Option<String>,
        /// The directory the initial workspace is copied from (default: the pipeline file's)
        #[arg(long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Print the run id and resume token, and return without following the run
        #[arg(long)]
        detach: bool,
        /// JSON lines: each event as the orchestrator sends it, then the final run
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        orchestrator: OrchestratorUrl,
    },
    /// Dry run: what a pipeline would run, in which order, with estimated cost and duration
    Plan {
        /// The pipeline file (pipeline.toml)
        #[arg(value_name = "PIPELINE.toml")]
        pipeline: PathBuf,
        /// The project whose baselines estimate the cost
        #[arg(long)]
        project: Option<String>,
        /// Print the orchestrator's JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        orchestrator: OrchestratorUrl,
    },
    /// The orchestrator's runs, newest first, with resume tokens
    Runs {
        /// Only runs of this project
        #[arg(long)]
        project: Option<String>,
        /// At most this many runs
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the orchestrator's JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        orchestrator: OrchestratorUrl,
    },
    /// Continue a run from its latest checkpoint (or fork it with --from-checkpoint), and follow
    /// it like `helix run`
    Resume {
        /// A resume token (hxr_...), or a run id to resume from its latest checkpoint
        #[arg(value_name = "TOKEN")]
        token: String,
        /// Fork instead: a new run from this (older) checkpoint of the run; completed phases
        /// after it run again. Without it, an older checkpoint's token is refused
        #[arg(long, value_name = "N")]
        from_checkpoint: Option<u32>,
        /// The answer to the decision gate the run stopped at (its escalation report asks)
        #[arg(long, value_name = "TEXT", conflicts_with = "from_checkpoint")]
        decision: Option<String>,
        /// JSON lines: each event as the orchestrator sends it, then the final run
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        orchestrator: OrchestratorUrl,
    },
    /// Re-run one phase of a run with exactly its recorded inputs and show how its outputs
    /// differ (exit 0: identical to the recording; 1: different, or the phase failed)
    Replay {
        /// The run: its id, the start of its id, or a resume token
        run: String,
        /// The phase: its name or 0-based index
        #[arg(long, value_name = "NAME_OR_INDEX")]
        phase: String,
        /// LLM phases answer from the recorded responses instead of calling the gateway again
        #[arg(long)]
        recorded: bool,
        /// Print the orchestrator's JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        orchestrator: OrchestratorUrl,
    },
    /// Cancel a running run (it stops with a checkpoint and can be resumed)
    Cancel {
        /// The run: its id, the start of its id, or a resume token
        run: String,
        #[command(flatten)]
        orchestrator: OrchestratorUrl,
    },
    /// Mine templates: one message per line in; per line "template id<TAB>template" out
    Mine {
        /// File with one message per line, or - for standard input
        #[arg(default_value = "-")]
        file: String,
    },
}

/// Where the orchestrator is, for the commands that talk to it.
#[derive(Debug, Clone, Args)]
pub struct OrchestratorUrl {
    /// The orchestrator's URL
    #[arg(long, env = "HELIX_ORCHESTRATOR_URL", default_value = "http://127.0.0.1:7700")]
    pub url: String,
}

/// `helix trace ...`. Parsed by hand (see the `Subcommand` impl below) so that
/// `helix trace TRACE_OR_PROJECT` works without a subcommand name, next to `helix trace import`.
#[derive(Debug)]
pub enum TraceCommand {
    /// Import a Claude Code transcript (`claude -p --output-format stream-json --verbose`)
    Import {
        /// Transcript file, or - for standard input
        file: String,
        /// Project to file the trace under
        project: Option<String>,
        /// The trace-collector's URL
        url: String,
    },
    /// Show one trace as a span tree: `helix trace TRACE_OR_PROJECT` (or `helix trace show ...`)
    Show {
        /// A trace id (32 hex digits), or a project name: its newest trace
        target: String,
        /// Only the spans of this phase (and their ancestors)
        phase: Option<String>,
        /// Print the collector's JSON instead of the tree
        json: bool,
        /// Keep printing spans as they arrive
        follow: bool,
        /// The trace-collector's URL
        url: String,
        /// The orchestrator's URL (to find a run's trace)
        orchestrator: String,
    },
}

/// The subcommands of `helix trace`, as clap sees them.
#[derive(Debug, Subcommand)]
enum TraceSubcommand {
    /// Import a Claude Code transcript (`claude -p --output-format stream-json --verbose`)
    Import {
        /// Transcript file, or - for standard input
        file: String,
        /// Project to file the trace under
        #[arg(long)]
        project: Option<String>,
        /// The trace-collector's URL
        #[arg(long, env = "HELIX_TRACE_COLLECTOR_URL", default_value = "http://127.0.0.1:7701")]
        url: String,
    },
    /// Show one trace as a span tree (the same as `helix trace TRACE_OR_PROJECT`; use it for a
    /// project named like a subcommand)
    Show(TraceShowArgs),
}

/// Arguments of `helix trace [show] TRACE_OR_PROJECT`.
#[derive(Debug, Clone, Args)]
struct TraceShowArgs {
    /// A trace id (32 hex digits), a run id (its trace, found through the orchestrator), or a
    /// project name: its newest trace
    #[arg(value_name = "TRACE_OR_PROJECT")]
    target: String,
    /// Only the spans of this phase (and their ancestors, for context)
    #[arg(long, value_name = "NAME")]
    phase: Option<String>,
    /// Print the collector's JSON (pretty) instead of the tree
    #[arg(long)]
    json: bool,
    /// After the tree, keep printing spans of the project (or trace) as they arrive
    #[arg(long, short = 'f')]
    follow: bool,
    /// The trace-collector's URL
    #[arg(long, env = "HELIX_TRACE_COLLECTOR_URL", default_value = "http://127.0.0.1:7701")]
    url: String,
    /// The orchestrator's URL, to find a run's trace
    #[arg(long, value_name = "URL", env = "HELIX_ORCHESTRATOR_URL", default_value = "http://127.0.0.1:7700")]
    orchestrator: String,
}

impl From<TraceShowArgs> for TraceCommand {
    fn from(a: TraceShowArgs) -> TraceCommand {
        TraceCommand::Show {
            target: a.target,
            phase: a.phase,
            json: a.json,
            follow: a.follow,
            url: a.url,
            orchestrator: a.orchestrator,
        }
    }
}

impl From<TraceSubcommand> for TraceCommand {
    fn from(s: TraceSubcommand) -> TraceCommand {
        match s {
            TraceSubcommand::Import { file, project, url } => TraceCommand::Import { file, project, url },
            TraceSubcommand::Show(a) => a.into(),
        }
    }
}

impl FromArgMatches for TraceCommand {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        if m.subcommand_name().is_some() {
            Ok(TraceSubcommand::from_arg_matches(m)?.into())
        } else {
            Ok(TraceShowArgs::from_arg_matches(m)?.into())
        }
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// `helix trace` takes either a subcommand or the arguments of `show` directly.
impl Subcommand for TraceCommand {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        TraceShowArgs::augment_args(TraceSubcommand::augment_subcommands(cmd))
            .args_conflicts_with_subcommands(true)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        TraceShowArgs::augment_args_for_update(TraceSubcommand::augment_subcommands_for_update(cmd))
            .args_conflicts_with_subcommands(true)
    }

    fn has_subcommand(name: &str) -> bool {
        TraceSubcommand::has_subcommand(name)
    }
}

#[derive(Debug, Subcommand)]
pub enum PatternsCommand {
    /// Full-text search over the patterns
    Search {
        query: Vec<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Pattern directory to use instead of the built-in patterns
        #[arg(long, value_name = "DIR")]
        patterns: Option<PathBuf>,
    },
    /// Validate a pattern directory (exit 1 naming file and line of the first problem)
    Lint {
        #[arg(default_value = "patterns")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceArg {
    Orchestrator,
    TraceCollector,
    BreakerGateway,
    Healer,
}

impl From<ServiceArg> for ServiceKind {
    fn from(s: ServiceArg) -> ServiceKind {
        match s {
            ServiceArg::Orchestrator => ServiceKind::Orchestrator,
            ServiceArg::TraceCollector => ServiceKind::TraceCollector,
            ServiceArg::BreakerGateway => ServiceKind::BreakerGateway,
            ServiceArg::Healer => ServiceKind::Healer,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Human,
    Json,
}

/// Options of the commands that run services. Each flag has the name of its config key (with
/// dashes) and overrides the file and the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Config file (TOML); default: ./helix.toml when it exists, else built-in defaults
    #[arg(long, env = "HELIX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address every service binds to
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long, value_name = "PORT")]
    pub orchestrator_port: Option<u16>,
    #[arg(long, value_name = "PORT")]
    pub trace_collector_port: Option<u16>,
    #[arg(long, value_name = "PORT")]
    pub breaker_gateway_port: Option<u16>,
    #[arg(long, value_name = "PORT")]
    pub healer_port: Option<u16>,
    /// Where the services keep their data (default ./.helix)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Log filter, e.g. info or helix_healer=debug,info (RUST_LOG wins)
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

impl RunArgs {
    fn flags(&self) -> Vec<FlagValue> {
        let mut flags = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                flags.push(FlagValue::new(key, &format!("--{}", key.replace('_', "-")), v));
            }
        };
        push("host", self.host.clone());
        push("orchestrator_port", self.orchestrator_port.map(|p| p.to_string()));
        push("trace_collector_port", self.trace_collector_port.map(|p| p.to_string()));
        push("breaker_gateway_port", self.breaker_gateway_port.map(|p| p.to_string()));
        push("healer_port", self.healer_port.map(|p| p.to_string()));
        push("data_dir", self.data_dir.as_ref().map(|p| p.display().to_string()));
        push(
            "log_format",
            self.log_format.map(|f| match f {
                LogFormatArg::Human => "human".to_owned(),
                LogFormatArg::Json => "json".to_owned(),
            }),
        );
        push("log_level", self.log_level.clone());
        flags
    }

    /// Reads the config file and the process environment, then applies the flags.
    pub fn load(&self) -> anyhow::Result<LoadedConfig> {
        let implicit = Path::new("helix.toml");
        let path = match &self.config {
            Some(p) => Some(p.clone()),
            None if implicit.is_file() => Some(implicit.to_path_buf()),
            None => None,
        };
        let text = match &path {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?,
            ),
            None => None,
        };
        let path_str = path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let file = text.as_deref().map(|text| ConfigFile { path: &path_str, text });
        // the handed-over environment of a service process (see `isolate`)
        let env: BTreeMap<String, String> = helix_core::env::vars();
        Ok(helix_core::config::load(file, &env, &self.flags())?)
    }
}
