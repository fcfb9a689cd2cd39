//! Two orchestrator replicas (`helix serve orchestrator`, real processes) sharing one data
//! directory with `orchestrator.takeover_secs` set: when the owner of a running pipeline is
//! killed (`kill -9`, at seeded random moments), the other replica takes the run over by itself
//! and finishes it, and it ends exactly like an uninterrupted run. A stopped owner (SIGSTOP)
//! keeps its runs: nobody else writes them, and it finishes them once continued.
//!
//! Every child is killed when its guard is dropped, so a failing assertion leaves none behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const HELIX: &str = env!("CARGO_BIN_EXE_helix");
/// Longest wait for a run to reach a final status (a takeover included).
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Six phases; each notes its start in `trail` (outside the workspace, where nothing is
/// undone), appends to `log.txt`, writes its own file and sleeps a little.
fn pipeline(trail: &Path) -> String {
    let trail = serde_json::to_string(trail.to_str().expect("utf-8")).expect("toml string");
    let mut text = format!("name = \"takeover\"\n[variables]\ntrail = {trail}\n");
    for i in 1..=6 {
        text.push_str(&format!(
            "\n[[phase]]\nname = \"p{i}\"\nkind = \"command\"\nshell = true\nretries = 3\n\
             run = 'echo \"$HELIX_RUN_ID $HELIX_PHASE\" >> \"$trail\"; echo \"phase {i} done\" >> log.txt; \
             echo {i} > p{i}.txt; sleep 0.25'\n"
        ));
    }
    text
}

/// How often each phase of run `id` started, from the trail.
fn starts(trail: &Path, id: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(trail).unwrap_or_default().lines() {
        if let Some((run, phase)) = line.split_once(' ')
            && run == id
        {
            *out.entry(phase.to_owned()).or_default() += 1;
        }
    }
    out
}

/// Knuth's MMIX LCG: reproducible kill moments without a dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// One `helix serve orchestrator`, killed when dropped.
struct Replica {
    child: Child,
    url: String,
}

impl Replica {
    fn start(data: &Path, log: &Path) -> Replica {
        let mut cmd = Command::new(HELIX);
        for (k, _) in std::env::vars() {
            if k.starts_with("HELIX_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let mut child = cmd
            .args(["serve", "orchestrator", "--orchestrator-port", "0", "--data-dir"])
            .arg(data)
            .current_dir(data)
            .env("HELIX_ORCHESTRATOR__TAKEOVER_SECS", "1")
            .env("HELIX_ORCHESTRATOR__RETRY_BACKOFF_MS", "20")
            // no healer, collector or gateway here: the engine degrades without them
            .env("HELIX_ORCHESTRATOR__SANDBOX", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn helix serve orchestrator");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.starts_with("press Ctrl-C") {
                break;
            }
            let mut words = line.split_whitespace();
            if let (Some("orchestrator"), Some(u)) = (words.next(), words.next()) {
                url = Some(u.to_owned());
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let url = url.unwrap_or_else(|| {
            panic!("no orchestrator URL; log:\n{}", std::fs::read_to_string(log).unwrap_or_default())
        });
        Replica { child, url }
    }

    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill {sig}");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn start_run(http: &reqwest::Client, url: &str, pipeline: &str) -> String {
    let res = http
        .post(format!("{url}/v1/runs"))
        .json(&json!({"pipeline": pipeline, "project": "takeover"}))
        .send()
        .await
        .expect("start run");
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "{body:#}");
    body["id"].as_str().expect("id").to_owned()
}

async fn view(http: &reqwest::Client, url: &str, id: &str) -> Value {
    let res = http.get(format!("{url}/v1/runs/{id}")).send().await.expect("get run");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

async fn wait_final(http: &reqwest::Client, url: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = view(http, url, id).await;
        if matches!(v["status"].as_str(), Some("succeeded" | "needs_human" | "escalated" | "cancelled")) {
            return v;
        }
        assert!(start.elapsed() < RUN_DEADLINE, "run {id} did not finish: {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn checkpoints(data: &Path, id: &str) -> Vec<u64> {
    let dir = data.join("orchestrator/runs").join(id).join("checkpoints");
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok()).collect()
        })
        .unwrap_or_default();
    seqs.sort_unstable();
    seqs
}

/// The workspace the run's latest checkpoint holds: path -> (sha256, size).
fn final_workspace(data: &Path, id: &str) -> BTreeMap<String, Value> {
    let seq = *checkpoints(data, id).last().expect("a checkpoint");
    let path = data.join("orchestrator/runs").join(id).join(format!("checkpoints/{seq:06}.json"));
    let cp: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("checkpoint")).expect("json");
    cp["manifest"]["files"]
        .as_object()
        .expect("manifest")
        .iter()
        .map(|(k, v)| (k.clone(), json!([v["sha256"], v["size"]])))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owners_run_is_taken_over_by_the_other_replica_and_ends_like_an_uninterrupted_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("shared");
    std::fs::create_dir_all(&data).expect("data dir");
    let log = dir.path().join("helix.log");
    let trail = dir.path().join("trail");
    let text = pipeline(&trail);
    let http = http();

    // the reference: one run nobody interrupts
    let b = Replica::start(&data, &log);
    let reference = start_run(&http, &b.url, &text).await;
    let done = wait_final(&http, &b.url, &reference).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let expected = final_workspace(&data, &reference);
    assert_eq!(expected.len(), 7, "log.txt and p1..p6.txt: {expected:?}");

    let mut rng = Lcg(0x7a6b_0c17);
    for round in 0..3 {
        let a = Replica::start(&data, &log);
        let id = start_run(&http, &a.url, &text).await;
        // somewhere in the six phases (each ~0.25 s plus its checkpoint)
        tokio::time::sleep(Duration::from_millis(150 + rng.below(1200))).await;
        let before = checkpoints(&data, &id).len();
        a.kill9();
        let killed = Instant::now();
        // a figure for the README (not asserted: timing belongs in benches): kill -> B's first write
        while checkpoints(&data, &id).len() == before && killed.elapsed() < RUN_DEADLINE {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "round {round}: taken over {} ms after the kill (takeover_secs = 1)",
            killed.elapsed().as_millis()
        );
        let finished = wait_final(&http, &b.url, &id).await;
        assert_eq!(finished["status"], "succeeded", "round {round}: {finished:#}");
        assert_eq!(final_workspace(&data, &id), expected, "round {round}: the workspace differs");
        let started = starts(&trail, &id);
        assert_eq!(started.len(), 6, "round {round}: every phase ran: {started:?}");
        // at most the phase the kill cut short started twice; completed phases never again
        let again: usize = started.values().map(|n| n - 1).sum();
        assert!(again <= 1, "round {round}: phases ran again after the takeover: {started:?}");
        assert!(checkpoints(&data, &id).len() > before, "round {round}: B wrote the rest");
    }
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_owner_keeps_its_run_and_nobody_else_writes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("shared");
    std::fs::create_dir_all(&data).expect("data dir");
    let log = dir.path().join("helix.log");
    let trail = dir.path().join("trail");
    let http = http();
    let a = Replica::start(&data, &log);
    let b = Replica::start(&data, &log);
    let id = start_run(&http, &a.url, &pipeline(&trail)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.signal("-STOP");
    let frozen = checkpoints(&data, &id);
    // several takeover ticks of B: it must not take a run whose owner holds its lock
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(checkpoints(&data, &id), frozen, "nobody writes a stopped owner's run");
    let seen = view(&http, &b.url, &id).await;
    assert_eq!(seen["status"], "running", "its owner lives: {seen:#}");
    a.signal("-CONT");
    let done = wait_final(&http, &a.url, &id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let started = starts(&trail, &id);
    assert!(started.len() == 6 && started.values().all(|n| *n == 1), "each phase once: {started:?}");
    drop(b);
}

/// A graceful stop (SIGTERM, as a rolling update sends) leaves the owner's run as a crash would,
/// not cancelled: the other replica takes it over and finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_gracefully_leaves_its_run_to_the_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("shared");
    std::fs::create_dir_all(&data).expect("data dir");
    let log = dir.path().join("helix.log");
    let trail = dir.path().join("trail");
    let http = http();
    let mut a = Replica::start(&data, &log);
    let b = Replica::start(&data, &log);
    let id = start_run(&http, &a.url, &pipeline(&trail)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.signal("-TERM");
    let exited = a.child.wait().expect("wait");
    assert!(exited.success(), "a graceful stop exits 0: {exited}");
    let done = wait_final(&http, &b.url, &id).await;
    assert_eq!(done["status"], "succeeded", "taken over, not cancelled: {done:#}");
    let started = starts(&trail, &id);
    assert_eq!(started.len(), 6, "{started:?}");
    assert!(started.values().map(|n| n - 1).sum::<usize>() <= 1, "{started:?}");
    drop(b);
}
