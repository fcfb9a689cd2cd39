//! Coding agents as phases: what the orchestrator needs to run an agent CLI (Claude Code, Codex,
//! or any command printing one of their stream formats) and to see its work as it happens.
//!
//! [`profile`] builds each CLI's argv and environment, pointed at the breaker-gateway with the
//! attempt's key; [`stream`] turns the agent's JSON-lines output into trace steps (model turns,
//! tool calls) live.

pub mod profile;
pub mod stream;
