//! A phase runs as the same user as Helix, so without care it reads Helix's secrets from
//! `/proc`. These tests plant keys in Helix's environment and let a phase look everywhere it can,
//! with bubblewrap (the default when installed) and without it (`sandbox = "none"`).

use serde_json::Value;

use crate::support::{Options, Up, outputs, unique};

/// Reads every environment it can see, and what its parent was started with.
const SNOOP: &str = "for f in /proc/$PPID/environ /proc/1/environ /proc/*/environ; do cat \"$f\" 2>/dev/null | tr '\\0' '\\n'; done > seen.txt; \
                     cat /proc/$PPID/cmdline 2>/dev/null | tr '\\0' ' ' >> seen.txt; \
                     echo \"looked at $(wc -l < seen.txt) lines\"; cat seen.txt";

async fn snoop(sandbox: &str) {
    let planted: Vec<(String, String)> = [
        ("OPENAI_API_KEY", "sk-planted-"),
        ("HELIX_GATEWAY_KEY", "gk-planted-"),
        ("DB_PASSWORD", "pw-planted-"),
    ]
    .iter()
    .map(|(k, p)| (k.to_string(), unique(p)))
    .collect();
    let up = Up::start(Options {
        config: format!("[orchestrator]\nsandbox = \"{sandbox}\"\n"),
        env: planted.clone(),
        ..Options::default()
    });
    std::fs::create_dir_all(up.dir.path().join("work")).expect("mkdir");
    let pipeline = format!(
        "name = \"snoop\"\n[[phase]]\nname = \"look\"\nkind = \"command\"\nshell = true\nrun = {}\n",
        serde_json::to_string(SNOOP).expect("toml string")
    );
    let run = up.run(None, &pipeline).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let out = outputs(&run);
    assert!(out.contains("looked at"), "{out}");
    let seen = std::fs::read_to_string(
        std::path::Path::new(run["workspace"].as_str().expect("workspace")).join("seen.txt"),
    )
    .expect("what the phase saw");
    assert!(seen.contains("PATH="), "the phase did read environments: {seen}");
    for (name, value) in &planted {
        assert!(!seen.contains(value) && !out.contains(value), "sandbox {sandbox}: the phase found {name}");
    }
}

#[tokio::test]
async fn a_phase_finds_none_of_the_services_secrets_in_a_sandbox() {
    snoop("auto").await;
}

#[tokio::test]
async fn a_phase_finds_none_of_the_services_secrets_without_a_sandbox() {
    snoop("none").await;
}

#[tokio::test]
async fn phases_have_rlimits_and_a_timeout_by_default_and_per_phase() {
    let up = Up::start(Options {
        config: "[orchestrator]\nphase_timeout_secs = 3\n".into(),
        ..Options::default()
    });
    std::fs::create_dir_all(up.dir.path().join("work")).expect("mkdir");
    let pipeline = "name = \"limits\"\n\
        [[phase]]\nname = \"defaults\"\nkind = \"command\"\nshell = true\nrun = \"echo cpu=$(ulimit -t) as=$(ulimit -v)\"\n\
        [[phase]]\nname = \"own\"\nkind = \"command\"\nshell = true\nrun = \"echo cpu=$(ulimit -t) as=$(ulimit -v)\"\n\
        [phase.limits]\ncpu = \"7s\"\nmemory = \"2GiB\"\n";
    let run = up.run(None, pipeline).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let out = outputs(&run);
    assert!(out.contains(&format!("cpu=3600 as={}", 128u64 << 20)), "{out}");
    assert!(out.contains(&format!("cpu=7 as={}", 2u64 << 20)), "{out}");
    // a phase without a timeout of its own gets the default
    let run = up.run(None, "name = \"slow\"\n[[phase]]\nname = \"s\"\nkind = \"command\"\nrun = [\"sleep\", \"600\"]\nretries = 0\n").await;
    assert_ne!(run["status"], "succeeded");
    let attempt: &Value = &run["failed"]["attempts"][0];
    assert_eq!(attempt["outcome"]["timed_out"], true, "{attempt:#}");
}

#[tokio::test]
async fn nothing_a_phase_starts_outlives_it() {
    let up = Up::start(Options::default());
    std::fs::create_dir_all(up.dir.path().join("work")).expect("mkdir");
    let marker = format!("601.{}", std::process::id());
    let pipeline = format!(
        "name = \"daemon\"\n[[phase]]\nname = \"d\"\nkind = \"command\"\nshell = true\nrun = \"setsid sleep {marker} > /dev/null 2>&1 & echo started\"\n"
    );
    let run = up.run(None, &pipeline).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let want: Vec<u8> = format!("sleep\0{marker}\0").into_bytes();
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(survivors.is_empty(), "a daemon started by the phase still runs: {survivors:?}");
}
