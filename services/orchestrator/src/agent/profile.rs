//! How each agent CLI is started: its argv and environment for one attempt, pointed at Helix's
//! breaker-gateway with the attempt's own key.
//!
//! Pure: the caller renders the prompt, mints the key, makes the agent's scratch home (outside the
//! workspace, so the agent's config and logs never land in the files a gate checks) and runs the
//! result with the same containment as a command phase.
//!
//! Profiles:
//! - `claude-code`: `claude -p PROMPT --output-format stream-json --verbose`, with `--model`,
//!   `--max-turns` and `--allowedTools` from the phase; `ANTHROPIC_BASE_URL` is the gateway,
//!   `ANTHROPIC_API_KEY` the attempt's key, and Claude Code's own telemetry, updater and error
//!   reports are off (they would go around the gateway). `--no-session-persistence`: a phase
//!   attempt is not a session to resume.
//! - `codex`: `codex exec --json`, with a model provider `helix` set through `-c` overrides
//!   (base URL the gateway's `/v1`, `wire_api = "responses"`, its key read from
//!   `HELIX_AGENT_KEY`), `--ephemeral` and `--skip-git-repo-check`. Codex's own sandbox is off
//!   (`--dangerously-bypass-approvals-and-sandbox`): the phase's containment is the sandbox, and
//!   Codex refuses to create its helpers under a temporary directory.
//! - `generic`: the phase's own argv (`run`), with `{{prompt}}` in it replaced by the prompt; it
//!   gets both base URLs, the key and the phase's model (`HELIX_AGENT_MODEL`), and must print
//!   one of the two stream formats.
//!
//! The attempt's headers ([`GatewayAccess::headers`]: the run's project, the attempt's
//! `traceparent`) ride on every model call: Claude Code through `ANTHROPIC_CUSTOM_HEADERS`, Codex
//! through the provider's `http_headers`, a generic agent gets them as `HELIX_PROJECT` and
//! `TRACEPARENT` to send on.
//!
//! Every profile also gets `HELIX_AGENT_KEY` (the key), `OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL`
//! and `HOME` set to the scratch home, so no user-level config of the machine's owner (API keys in
//! `~/.claude`, `~/.codex`) is picked up.

use std::path::Path;

/// The agent CLI a phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    ClaudeCode,
    Codex,
    Generic,
}

impl Profile {
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "claude-code" => Some(Profile::ClaudeCode),
            "codex" => Some(Profile::Codex),
            "generic" => Some(Profile::Generic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::ClaudeCode => "claude-code",
            Profile::Codex => "codex",
            Profile::Generic => "generic",
        }
    }

    /// The program started when the phase names none.
    pub fn default_program(self) -> Option<&'static str> {
        match self {
            Profile::ClaudeCode => Some("claude"),
            Profile::Codex => Some("codex"),
            Profile::Generic => None,
        }
    }
}

/// What one attempt of an agent phase asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec<'a> {
    pub profile: Profile,
    /// The program to start (the profile's default when `None`); for `generic`, `run[0]`.
    pub program: Option<&'a str>,
    /// `generic` only: argv with `{{prompt}}` placeholders.
    pub run: &'a [String],
    /// The rendered prompt.
    pub prompt: &'a str,
    pub model: Option<&'a str>,
    pub max_turns: Option<u32>,
    pub allowed_tools: &'a [String],
}

/// Where the attempt's model calls go.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayAccess<'a> {
    /// The gateway's base URL, without `/v1`.
    pub url: &'a str,
    /// The attempt's key (carries its budget and project); goes only into the environment.
    pub key: &'a str,
    /// Headers every model call of the agent carries: `x-helix-project` (the run's project) and
    /// `traceparent` (the phase attempt's span), so the gateway bills the run's project and its
    /// call spans land in the run's trace under the attempt. Names are lower-case tokens, values
    /// printable ASCII (checked by [`invocation`]).
    pub headers: &'a [(String, String)],
}

/// The command to start: argv and the environment to add.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Directories to create before the start (Codex refuses a `CODEX_HOME` that does not exist).
    pub dirs: Vec<std::path::PathBuf>,
}

/// The environment variable holding the attempt's gateway key, for every profile.
pub const KEY_ENV: &str = "HELIX_AGENT_KEY";

/// Builds the invocation of `spec` against the gateway, with `home` as the agent's scratch home.
pub fn invocation(
    spec: &AgentSpec<'_>,
    gateway: &GatewayAccess<'_>,
    home: &Path,
) -> Result<Invocation, String> {
    for (name, value) in gateway.headers {
        let name_ok = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(format!("header {name:?} cannot be passed to an agent"));
        }
    }
    let url = gateway.url.trim_end_matches('/');
    let url = url.strip_suffix("/v1").unwrap_or(url);
    let home = home.to_string_lossy().into_owned();
    let mut env = vec![
        (KEY_ENV.to_owned(), gateway.key.to_owned()),
        ("HOME".to_owned(), home.clone()),
        ("ANTHROPIC_BASE_URL".to_owned(), url.to_owned()),
        ("OPENAI_BASE_URL".to_owned(), format!("{url}/v1")),
    ];
    let program = |p: Profile| spec.program.or(p.default_program()).unwrap_or_default().to_owned();
    let argv = match spec.profile {
        Profile::ClaudeCode => {
            let mut argv = vec![
                program(Profile::ClaudeCode),
                "-p".to_owned(),
                spec.prompt.to_owned(),
                "--output-format".to_owned(),
                "stream-json".to_owned(),
                "--verbose".to_owned(),
                "--no-session-persistence".to_owned(),
            ];
            if let Some(m) = spec.model {
                argv.extend(["--model".to_owned(), m.to_owned()]);
            }
            if let Some(n) = spec.max_turns {
                argv.extend(["--max-turns".to_owned(), n.to_string()]);
            }
            if !spec.allowed_tools.is_empty() {
                argv.extend(["--allowedTools".to_owned(), spec.allowed_tools.join(",")]);
            }
            env.extend(
                [
                    ("ANTHROPIC_API_KEY", gateway.key),
                    ("CLAUDE_CONFIG_DIR", &format!("{home}/.claude")),
                    ("DISABLE_TELEMETRY", "1"),
                    ("DISABLE_AUTOUPDATER", "1"),
                    ("DISABLE_ERROR_REPORTING", "1"),
                    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            if !gateway.headers.is_empty() {
                // Claude Code adds these to every API request: one `Name: value` per line
                let lines: Vec<String> = gateway.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                env.push(("ANTHROPIC_CUSTOM_HEADERS".to_owned(), lines.join("\n")));
            }
            argv
        }
        Profile::Codex => {
            let mut argv = vec![
                program(Profile::Codex),
                "exec".to_owned(),
                "--json".to_owned(),
                "--skip-git-repo-check".to_owned(),
                "--ephemeral".to_owned(),
                "--dangerously-bypass-approvals-and-sandbox".to_owned(),
            ];
            let provider = [
                "model_provider=\"helix\"".to_owned(),
                "model_providers.helix.name=\"helix\"".to_owned(),
                format!("model_providers.helix.base_url={}", toml_string(&format!("{url}/v1"))),
                format!("model_providers.helix.env_key=\"{KEY_ENV}\""),
                "model_providers.helix.wire_api=\"responses\"".to_owned(),
                "check_for_update_on_startup=false".to_owned(),
                "analytics.enabled=false".to_owned(),
            ];
            for p in provider {
                argv.extend(["-c".to_owned(), p]);
            }
            if !gateway.headers.is_empty() {
                let table: Vec<String> = gateway
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
                    .collect();
                argv.extend([
                    "-c".to_owned(),
                    format!("model_providers.helix.http_headers={{ {} }}", table.join(", ")),
                ]);
            }
            if let Some(m) = spec.model {
                argv.extend(["--model".to_owned(), m.to_owned()]);
            }
            // the prompt last, after `--`, so a prompt starting with `-` is not read as a flag
            argv.extend(["--".to_owned(), spec.prompt.to_owned()]);
            env.push(("CODEX_HOME".to_owned(), format!("{home}/.codex")));
            argv
        }
        Profile::Generic => {
            if spec.run.is_empty() {
                return Err("a generic agent needs `run`, the command that starts it".to_owned());
            }
            env.push(("OPENAI_API_KEY".to_owned(), gateway.key.to_owned()));
            env.push(("ANTHROPIC_API_KEY".to_owned(), gateway.key.to_owned()));
            if let Some(m) = spec.model {
                env.push(("HELIX_AGENT_MODEL".to_owned(), m.to_owned()));
            }
            // for a generic agent to send on: `x-helix-project` as HELIX_PROJECT, `traceparent`
            // as TRACEPARENT (the environment-variable carrier of OpenTelemetry's context)
            for (k, v) in gateway.headers {
                match k.as_str() {
                    "x-helix-project" => env.push(("HELIX_PROJECT".to_owned(), v.clone())),
                    "traceparent" => env.push(("TRACEPARENT".to_owned(), v.clone())),
                    _ => {}
                }
            }
            spec.run.iter().map(|a| replace_prompt(a, spec.prompt)).collect()
        }
    };
    let dirs = match spec.profile {
        Profile::ClaudeCode => vec![Path::new(&home).join(".claude")],
        Profile::Codex => vec![Path::new(&home).join(".codex")],
        Profile::Generic => vec![Path::new(&home).to_path_buf()],
    };
    Ok(Invocation { argv, env, dirs })
}

/// `{{prompt}}` (spaces inside the braces allowed) replaced by the prompt.
fn replace_prompt(arg: &str, prompt: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else { break };
        let inner = &rest[open + 2..open + 2 + close];
        out.push_str(&rest[..open]);
        if inner.trim() == "prompt" {
            out.push_str(prompt);
        } else {
            out.push_str(&rest[open..open + 4 + close]);
        }
        rest = &rest[open + 4 + close..];
    }
    out.push_str(rest);
    out
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const GW: GatewayAccess<'static> =
        GatewayAccess { url: "http://127.0.0.1:7300/v1/", key: "hx-key-1", headers: &[] };
    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn headers() -> Vec<(String, String)> {
        vec![("x-helix-project".to_owned(), "shop".to_owned()), ("traceparent".to_owned(), TP.to_owned())]
    }

    fn spec(profile: Profile) -> AgentSpec<'static> {
        AgentSpec {
            profile,
            program: None,
            run: &[],
            prompt: "fix it",
            model: None,
            max_turns: None,
            allowed_tools: &[],
        }
    }

    fn env<'a>(inv: &'a Invocation, k: &str) -> Option<&'a str> {
        inv.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn claude_code_streams_json_through_the_gateway_with_the_phase_limits() {
        let tools = ["Read".to_owned(), "Edit".to_owned()];
        let s = AgentSpec {
            model: Some("claude-sonnet-4-5"),
            max_turns: Some(8),
            allowed_tools: &tools,
            ..spec(Profile::ClaudeCode)
        };
        let inv = invocation(&s, &GW, Path::new("/scratch/a1")).unwrap();
        assert_eq!(
            inv.argv,
            [
                "claude",
                "-p",
                "fix it",
                "--output-format",
                "stream-json",
                "--verbose",
                "--no-session-persistence",
                "--model",
                "claude-sonnet-4-5",
                "--max-turns",
                "8",
                "--allowedTools",
                "Read,Edit"
            ]
        );
        assert_eq!(env(&inv, "ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:7300"));
        assert_eq!(env(&inv, "ANTHROPIC_API_KEY"), Some("hx-key-1"));
        assert_eq!(env(&inv, "HOME"), Some("/scratch/a1"));
        assert_eq!(env(&inv, "CLAUDE_CONFIG_DIR"), Some("/scratch/a1/.claude"));
        assert_eq!(env(&inv, "DISABLE_TELEMETRY"), Some("1"));
        assert!(!inv.argv.iter().any(|a| a.contains("hx-key-1")), "the key is never an argument");
        assert_eq!(env(&inv, "ANTHROPIC_CUSTOM_HEADERS"), None);
        let h = headers();
        let inv = invocation(&s, &GatewayAccess { headers: &h, ..GW }, Path::new("/s")).unwrap();
        assert_eq!(
            env(&inv, "ANTHROPIC_CUSTOM_HEADERS"),
            Some(format!("x-helix-project: shop\ntraceparent: {TP}").as_str())
        );
    }

    #[test]
    fn headers_that_could_smuggle_a_line_or_flag_are_refused() {
        for (k, v) in [("x-helix-project", "shop\r\nx-evil: 1"), ("X-Upper", "v"), ("", "v"), ("a b", "v")] {
            let h = vec![(k.to_owned(), v.to_owned())];
            for p in [Profile::ClaudeCode, Profile::Codex] {
                assert!(
                    invocation(&spec(p), &GatewayAccess { headers: &h, ..GW }, Path::new("/s")).is_err(),
                    "{k:?} {v:?}"
                );
            }
        }
    }

    #[test]
    fn codex_gets_a_responses_provider_pointing_at_the_gateway() {
        let s = AgentSpec {
            program: Some("/opt/codex/bin/codex"),
            prompt: "-rf everything",
            model: Some("gpt-5"),
            ..spec(Profile::Codex)
        };
        let inv = invocation(&s, &GW, Path::new("/scratch/a2")).unwrap();
        assert_eq!(&inv.argv[..3], ["/opt/codex/bin/codex", "exec", "--json"]);
        let joined = inv.argv.join(" ");
        assert!(
            joined.contains("-c model_providers.helix.base_url=\"http://127.0.0.1:7300/v1\""),
            "{joined}"
        );
        assert!(joined.contains("-c model_providers.helix.wire_api=\"responses\""), "{joined}");
        assert!(joined.contains("-c model_providers.helix.env_key=\"HELIX_AGENT_KEY\""), "{joined}");
        assert!(joined.contains("--model gpt-5"), "{joined}");
        assert_eq!(&inv.argv[inv.argv.len() - 2..], ["--", "-rf everything"], "the prompt is never a flag");
        assert_eq!(env(&inv, KEY_ENV), Some("hx-key-1"));
        assert_eq!(env(&inv, "CODEX_HOME"), Some("/scratch/a2/.codex"));
        assert_eq!(inv.dirs, [Path::new("/scratch/a2/.codex")]);
        assert!(!inv.argv.iter().any(|a| a.contains("hx-key-1")));
        let h = headers();
        let inv = invocation(&s, &GatewayAccess { headers: &h, ..GW }, Path::new("/s")).unwrap();
        let joined = inv.argv.join(" ");
        assert!(
            joined.contains(&format!("-c model_providers.helix.http_headers={{ \"x-helix-project\" = \"shop\", \"traceparent\" = \"{TP}\" }}")),
            "{joined}"
        );
    }

    #[test]
    fn generic_agents_get_the_prompt_in_their_argv_and_both_base_urls() {
        let run = ["my-agent".to_owned(), "--task={{ prompt }}".to_owned(), "{{other}}".to_owned()];
        let s = AgentSpec { run: &run, prompt: "a \"quoted\" task", ..spec(Profile::Generic) };
        let inv = invocation(&s, &GW, Path::new("/h")).unwrap();
        assert_eq!(inv.argv, ["my-agent", "--task=a \"quoted\" task", "{{other}}"]);
        assert_eq!(env(&inv, "OPENAI_BASE_URL"), Some("http://127.0.0.1:7300/v1"));
        assert_eq!(env(&inv, "OPENAI_API_KEY"), Some("hx-key-1"));
        let h = headers();
        let inv = invocation(&s, &GatewayAccess { headers: &h, ..GW }, Path::new("/h")).unwrap();
        assert_eq!((env(&inv, "HELIX_PROJECT"), env(&inv, "TRACEPARENT")), (Some("shop"), Some(TP)));
        assert!(invocation(&spec(Profile::Generic), &GW, Path::new("/h")).is_err());
    }

    #[test]
    fn profiles_parse_by_name_and_toml_strings_escape() {
        for p in [Profile::ClaudeCode, Profile::Codex, Profile::Generic] {
            assert_eq!(Profile::parse(p.name()), Some(p));
        }
        assert_eq!(Profile::parse("cursor"), None);
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
