//! The security suite: every finding of the security review, reproduced against the real
//! `helix up` (with and without tokens), asserting the fixed behaviour. Run by `tests/run` as part
//! of `cargo test` (a test target of the `helix` package, so it has the binary).
//!
//! - `bind`: a public bind needs tokens.
//! - `browser`: DNS rebinding (`Host`), cross-origin requests (`Origin`, content types), CORS.
//! - `tokens`: 401/403 for every documented operation by scope, project limits, the local token.
//! - `files`: client paths stay under the roots, no file content in errors, no symlink escapes,
//!   private permissions.
//! - `sandbox`: a phase finds none of the service's secrets; rlimits, timeouts, no survivors.
//! - `secrets`: pipeline secrets are never stored and are masked; masked config and upstream errors.
//! - `learning`: who may teach the healer, and hints that stay data.
//! - `audit`: operator actions are spans naming the token.

mod audit;
mod bind;
mod browser;
mod files;
mod learning;
mod sandbox;
mod secrets;
mod support;
mod tokens;
