//! The process environment as Helix reads it.
//!
//! `helix up` and `helix serve` move their environment out of the kernel's copy at start-up: they
//! re-execute themselves with only harmless variables (`PATH`, `HOME`, locale, ...) and hand the
//! rest over in memory ([`install`]). What the kernel keeps is what `/proc/PID/environ` shows to
//! any process of the same user, phases included; API keys, tokens and passwords must not be
//! there. Everything that reads a variable that may hold a secret reads it through [`var`], which
//! sees the handed-over environment, or the real one when nothing was installed (tests, other
//! commands).

use std::collections::BTreeMap;
use std::sync::OnceLock;

static PRIVATE: OnceLock<BTreeMap<String, String>> = OnceLock::new();

/// Variables that stay in the kernel's copy of the environment of a service process: nothing
/// secret, and what child processes and libraries expect. `LC_*` too.
pub const PUBLIC: &[&str] = &[
    // a path the command line reads before anything else (clap's `env`), no secret
    "HELIX_CONFIG",
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "TMPDIR",
    "PWD",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "GOPATH",
    "GOCACHE",
    "GOMODCACHE",
    "JAVA_HOME",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_RUNTIME_DIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "NO_COLOR",
];

/// Whether `name` may stay in the kernel's copy of a service's environment.
pub fn is_public(name: &str) -> bool {
    PUBLIC.contains(&name) || name.starts_with("LC_")
}

/// Installs the environment handed over at start-up. Only the first call counts.
pub fn install(vars: BTreeMap<String, String>) {
    let _ = PRIVATE.set(vars);
}

/// Whether an environment was handed over (the process was re-executed with a clean one).
pub fn is_private() -> bool {
    PRIVATE.get().is_some()
}

/// One variable.
pub fn var(name: &str) -> Option<String> {
    match PRIVATE.get() {
        Some(vars) => vars.get(name).cloned(),
        None => std::env::var(name).ok(),
    }
}

/// Every variable (unicode ones; others cannot be configuration).
pub fn vars() -> BTreeMap<String, String> {
    match PRIVATE.get() {
        Some(vars) => vars.clone(),
        None => std::env::vars().collect(),
    }
}
