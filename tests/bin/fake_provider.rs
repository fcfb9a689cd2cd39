//! `fake-provider`: the scripted fake LLM provider as a standalone process, for the Python SDK
//! tests (which cannot start it in-process) and for poking at the gateway by hand. It is scripted
//! over HTTP (`/_fake/...`) or with the `x-fake-mode` request header.

use std::io::Write;
use std::process::ExitCode;

use helix_tests::fake_provider::{FakeOptions, FakeProvider};

const USAGE: &str = "usage: fake-provider [--port N] [--openai-key KEY] [--anthropic-key KEY] \
                     [--models a,b,c]";

fn parse(args: impl IntoIterator<Item = String>) -> Result<FakeOptions, String> {
    let mut options = FakeOptions::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        if !matches!(flag.as_str(), "--port" | "--openai-key" | "--anthropic-key" | "--models") {
            return Err(format!("unknown argument {flag}"));
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => options.port = value.parse().map_err(|e| format!("invalid port {value}: {e}"))?,
            "--openai-key" => options.openai_key = Some(value),
            "--anthropic-key" => options.anthropic_key = Some(value),
            "--models" => {
                options.models =
                    value.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect();
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(options)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("fake-provider: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeProvider::try_start_with(options).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-provider: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // the one line the test scripts wait for; flushed because stdout is a pipe there
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", fake.url());
    let _ = stdout.flush();
    let _ = tokio::signal::ctrl_c().await;
    fake.stop().await;
    ExitCode::SUCCESS
}
