//! `helix`: see `helix --help`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use helix::cli::{Cli, Command, PatternsCommand, RunArgs, TraceCommand};
use helix::heal;
use helix::stack::Stack;
use helix_core::ServiceKind;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // before any thread exists: a service keeps its secrets out of its phases' reach
    let isolation = match &cli.command {
        Command::Up(_) | Command::Serve { .. } => helix::isolate::isolate().err(),
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, isolation)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, isolation: Option<String>) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => serve(&args, &ServiceKind::ALL, isolation).await,
        Command::Serve { service, run } => serve(&run, &[service.into()], isolation).await,
        Command::Openapi { write, check, dir, service } => {
            openapi(write, check, &dir, service.map(Into::into))
        }
        Command::Heal { file, tool, json, patterns, command } => {
            let set = heal::patterns(patterns.as_deref())?;
            if command.is_empty() {
                let text = heal::read_input(&file)?;
                heal::heal(&text, tool.as_deref(), None, json, &set)
            } else {
                let (text, code) = heal::run_command(&command)?;
                if code == 0 {
                    return Ok(ExitCode::SUCCESS);
                }
                eprintln!();
                let tool =
                    tool.or_else(|| command.first().map(|c| c.rsplit('/').next().unwrap_or(c).to_owned()));
                heal::heal(&text, tool.as_deref(), Some(code), json, &set)?;
                Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
            }
        }
        Command::Check { dir, json, fresh_machine, patterns } => {
            heal::check(&dir, json, fresh_machine, &heal::patterns(patterns.as_deref())?)
        }
        Command::Patterns { command } => match command {
            PatternsCommand::Search { query, limit, patterns } => {
                heal::search(&query.join(" "), limit, &heal::patterns(patterns.as_deref())?)
            }
            PatternsCommand::Lint { dir } => heal::lint(&dir),
        },
        Command::Trace { command: TraceCommand::Import { file, project, url } } => {
            let text = heal::read_input(&file)?;
            let client = helix::client::client(&url, std::time::Duration::from_secs(120))?;
            let res = client.import_claude_stream_json(text.into_bytes(), project.as_deref()).await?;
            let accepted = res["accepted"].as_u64().unwrap_or(0);
            for id in res["trace_ids"].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
                println!("trace {id}: {url}/v1/traces/{id}");
            }
            for s in res["skipped"].as_array().into_iter().flatten() {
                eprintln!("skipped line {}: {}", s["index"], s["reason"].as_str().unwrap_or_default());
            }
            println!("imported {accepted} spans");
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace { command: TraceCommand::Show { target, phase, json, follow, url, orchestrator } } => {
            // a run id: its trace (what `helix run` printed as the run)
            let target = helix::trace_view::run_trace(&orchestrator, &target).await?.unwrap_or(target);
            if follow {
                helix::trace_view::follow(&url, &target, json).await
            } else {
                helix::trace_view::show(&url, &target, phase.as_deref(), json).await
            }
        }
        Command::Costs { by, bucket, from, to, json, url } => {
            let mut query = format!("/v1/costs?group_by={by}");
            for (k, v) in [("bucket", bucket), ("from", from), ("to", to)] {
                if let Some(v) = v {
                    query.push_str(&format!("&{k}={}", v.replace('+', "%2B")));
                }
            }
            let client = helix::client::client(&url, std::time::Duration::from_secs(30))?;
            let report = client.get_json_value(&query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", helix::costs_view::render(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { pipeline, project, workdir, detach, json, orchestrator } => Ok(helix::runs_view::run(
            &orchestrator.url,
            &pipeline,
            project.as_deref(),
            workdir.as_deref(),
            detach,
            json,
        )
        .await),
        Command::Plan { pipeline, project, json, orchestrator } => {
            Ok(helix::runs_view::plan(&orchestrator.url, &pipeline, project.as_deref(), json).await)
        }
        Command::Runs { project, limit, json, orchestrator } => {
            helix::runs_view::runs(&orchestrator.url, project.as_deref(), limit, json).await
        }
        Command::Resume { token, from_checkpoint, decision, json, orchestrator } => {
            Ok(helix::runs_view::resume(&orchestrator.url, &token, from_checkpoint, decision, json).await)
        }
        Command::Replay { run, phase, recorded, json, orchestrator } => {
            helix::runs_view::replay(&orchestrator.url, &run, &phase, recorded, json).await
        }
        Command::Cancel { run, orchestrator } => helix::runs_view::cancel(&orchestrator.url, &run).await,
        Command::Mine { file } => heal::mine(&heal::read_input(&file)?),
        Command::Config(args) => {
            let loaded = args.load()?;
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            print!(
                "{}",
                toml::to_string(&loaded.config.redacted()).context("cannot print the configuration")?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(args: &RunArgs, kinds: &[ServiceKind], isolation: Option<String>) -> anyhow::Result<ExitCode> {
    let loaded = args.load()?;
    let cfg = loaded.config;
    helix_core::telemetry::init(cfg.log_format, &cfg.log_level);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if let Some(why) = isolation {
        tracing::warn!("{why}: phases may be able to read this process's environment");
    }

    let stack = Stack::start(&cfg, kinds).await?;
    println!("helix {} running (data in {})", helix_core::VERSION, cfg.data_dir.display());
    for s in stack.services() {
        println!("  {:<16} {:<24} swagger: {}/swagger-ui/", s.kind().name(), s.url(), s.url());
    }
    println!("press Ctrl-C to stop");

    let signal = shutdown_signal().await;
    tracing::info!(signal, grace_secs = cfg.shutdown_grace_secs, "shutting down");
    // A second signal during the grace period stops at once.
    tokio::spawn(async {
        shutdown_signal().await;
        eprintln!("second signal: exiting without waiting for in-flight requests");
        std::process::exit(130);
    });
    stack.stop().await?;
    tracing::info!("shutdown complete");
    Ok(ExitCode::SUCCESS)
}

/// Waits for SIGINT or SIGTERM and names it.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

fn openapi(
    write: bool,
    check: bool,
    dir: &std::path::Path,
    service: Option<ServiceKind>,
) -> anyhow::Result<ExitCode> {
    if !write && !check {
        let kind = service.context("name a service, or pass --write or --check")?;
        print!("{}", helix_http::openapi::to_committed_json(&helix::openapi_document(kind)));
        return Ok(ExitCode::SUCCESS);
    }
    let mut stale = Vec::new();
    for (kind, doc) in helix::openapi_documents() {
        let path = dir.join(format!("{}.json", kind.name()));
        let want = helix_http::openapi::to_committed_json(&doc);
        if write {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(&path, want).with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}", path.display());
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    if stale.is_empty() {
        if check {
            println!("openapi documents are up to date");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("stale openapi documents (run `helix openapi --write`): {}", stale.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
