//! `kill -9` of the orchestrator at random moments of a multi-phase run, then a restart and a
//! resume, repeated: every run must end exactly like an uninterrupted one. This needs the real
//! `helix up` binary as a child process (nothing in-process survives a SIGKILL of itself), which
//! is why it lives in the `helix` package.
//!
//! The kill moments come from a seeded generator, so a failure is reproducible; every child is
//! killed when its guard is dropped, so a failing assertion leaves no `helix` behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const HELIX: &str = env!("CARGO_BIN_EXE_helix");

/// The whole kill test must end within this.
const TEST_BUDGET: Duration = Duration::from_secs(60);
/// Longest wait for one run to reach a final status.
const RUN_DEADLINE: Duration = Duration::from_secs(20);

/// Six phases, each appending its line to `log.txt`, writing its own file, then sleeping a
/// little, so that a kill lands in a phase, between phases, or while a checkpoint is written.
/// Each also notes its start in `trail`, outside the workspace, where nothing is undone, and
/// leaves a `setsid` daemon behind, which containment must kill (it carries `HELIX_RUN_ID`).
fn pipeline(trail: &Path) -> String {
    let trail = serde_json::to_string(trail.to_str().expect("utf-8")).expect("toml string");
    let mut text = format!("name = \"killable\"\n[variables]\ntrail = {trail}\n");
    for i in 1..=6 {
        text.push_str(&format!(
            "\n[[phase]]\nname = \"p{i}\"\nkind = \"command\"\nshell = true\nretries = 3\n\
             run = 'echo \"$HELIX_RUN_ID $HELIX_PHASE\" >> \"$trail\"; echo \"phase {i} done\" >> log.txt; \
             setsid sleep 41 </dev/null >/dev/null 2>&1 & echo {i} > p{i}.txt; sleep 0.15'\n"
        ));
    }
    text
}

/// How often each phase of run `id` has started, from the trail.
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

/// A 64-bit linear congruential generator (Knuth's MMIX constants): reproducible kill moments
/// without a dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// A running `helix up`, killed with SIGKILL when dropped.
struct Up {
    child: Child,
    url: String,
    collector: String,
}

impl Up {
    /// Starts `helix up` on free ports with its data in `data` and its stderr appended to
    /// `log`, and waits for its banner.
    fn start(cwd: &Path, data: &Path, log: &Path) -> Up {
        Up::start_with(cwd, data, log, &[])
    }

    /// [`Up::start`] with `env` added.
    fn start_with(cwd: &Path, data: &Path, log: &Path, env: &[(&str, &str)]) -> Up {
        let mut cmd = Command::new(HELIX);
        cmd.current_dir(cwd);
        for (k, _) in std::env::vars() {
            if k.starts_with("HELIX_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let mut child = cmd
            .args(["up", "--orchestrator-port", "0", "--trace-collector-port", "0"])
            .args(["--breaker-gateway-port", "0", "--healer-port", "0", "--data-dir"])
            .arg(data)
            .env("HELIX_ORCHESTRATOR__RETRY_BACKOFF_MS", "20")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn helix up");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        let mut collector = String::new();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.starts_with("press Ctrl-C") {
                break;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("orchestrator"), Some(u)) => url = Some(u.to_owned()),
                (Some("trace-collector"), Some(u)) => collector = u.to_owned(),
                _ => {}
            }
        }
        // nothing more is expected on stdout, but a full pipe must never block helix
        std::thread::spawn(move || lines.for_each(drop));
        let mut up = Up { child, url: String::new(), collector };
        match url {
            Some(u) => up.url = u,
            None => {
                let mut err = String::new();
                let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut err));
                panic!("helix up printed no orchestrator URL; stderr:\n{}", tail(&err, 3000));
            }
        }
        up
    }

    /// SIGKILL (`Child::kill` on Unix), and wait until the process is gone.
    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
}

/// Starts the pipeline; its id and the resume token it printed at the start.
async fn start_run(http: &reqwest::Client, url: &str, pipeline: &str) -> (String, String) {
    let res = http
        .post(format!("{url}/v1/runs"))
        .json(&json!({"pipeline": pipeline, "project": "killable"}))
        .send()
        .await
        .expect("start run");
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "{body:#}");
    (body["id"].as_str().expect("id").to_owned(), body["resume_token"].as_str().expect("token").to_owned())
}

/// Every resume token the run's events printed (one per checkpoint), in order.
fn printed_tokens(data: &Path, id: &str) -> Vec<String> {
    let path = data.join("orchestrator/runs").join(id).join("events.ndjson");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let Ok(ev) = serde_json::from_str::<Value>(line) else { continue };
        for word in ev["message"].as_str().unwrap_or_default().split_whitespace() {
            if word.starts_with("hxr_") && !out.iter().any(|t| t == word) {
                out.push(word.to_owned());
            }
        }
    }
    out
}

/// Resumes run `id` with `token`: an older token than the latest must be refused (409) naming
/// the latest, `latest`, which then resumes.
async fn resume_with(http: &reqwest::Client, url: &str, id: &str, token: &str, latest: &str) -> bool {
    let post = |t: &str| http.post(format!("{url}/v1/runs/{id}/resume")).json(&json!({"token": t})).send();
    let res = post(token).await.expect("resume");
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if token == latest {
        assert_eq!(status, 202, "resume {id} with the latest token: {body:#}");
        return false;
    }
    assert_eq!(status, 409, "an older token is refused: {body:#}");
    assert_eq!(body["resume_token"], latest, "the refusal names the latest token: {body:#}");
    let res = post(latest).await.expect("resume");
    assert_eq!(res.status(), 202, "resume {id} with the token the refusal named");
    true
}

/// Live processes whose environment says they belong to run `id`.
fn processes_of(id: &str) -> Vec<u32> {
    let entry = format!("HELIX_RUN_ID={id}");
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
                && alive(*pid)
        })
        .collect()
}

/// Waits (at most 10 s) until no process of run `id` is left; the ones left, if any.
fn survivors(id: &str) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let left = processes_of(id);
        if left.is_empty() || start.elapsed() > Duration::from_secs(10) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn view(http: &reqwest::Client, url: &str, id: &str) -> Value {
    let res = http.get(format!("{url}/v1/runs/{id}")).send().await.expect("get run");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

fn is_final(view: &Value) -> bool {
    matches!(view["status"].as_str(), Some("succeeded" | "needs_human" | "escalated" | "cancelled"))
}

async fn wait_final(http: &reqwest::Client, url: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = view(http, url, id).await;
        if is_final(&v) {
            return v;
        }
        assert!(start.elapsed() < RUN_DEADLINE, "run {id} did not finish: {v:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn resume(http: &reqwest::Client, url: &str, id: &str) {
    let res = http.post(format!("{url}/v1/runs/{id}/resume")).send().await.expect("resume");
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    assert_eq!(status, 202, "resume {id}: {body}");
}

/// Every file under `root` (symbolic links as their target) by relative path.
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).expect("read dir").flatten() {
            let rel = rel.join(e.file_name());
            let t = e.file_type().expect("file type");
            if t.is_dir() {
                stack.push(rel);
            } else if t.is_symlink() {
                let target = std::fs::read_link(e.path()).expect("link");
                out.insert(rel.display().to_string(), target.display().to_string().into_bytes());
            } else {
                out.insert(rel.display().to_string(), std::fs::read(e.path()).expect("read"));
            }
        }
    }
    out
}

/// What must not differ between an interrupted and an uninterrupted run: per phase its name,
/// status, the attempts that ended and their gate verdicts, and the workspace it left (each
/// file's path, digest and size, from the manifest of the phase's output checkpoint).
///
/// Attempts a kill cut short stay in the record on purpose (a crash loop must use up the
/// attempt budget), so they are left out here and checked on their own: each is marked
/// `interrupted`, ran no gate, and never counts as the attempt that passed.
fn phase_results(data: &Path, view: &Value) -> Vec<Value> {
    for p in view["phases"].as_array().expect("phases") {
        let attempts = p["attempts"].as_array().expect("attempts");
        for a in attempts.iter().filter(|a| a["status"] == "interrupted") {
            assert_eq!(
                a["gates"].as_array().map(Vec::len),
                Some(0),
                "an interrupted attempt ran no gate: {a:#}"
            );
            assert_eq!(a["heal"]["failure_class"], "interrupted", "{a:#}");
        }
        assert_ne!(attempts.last().map(|a| &a["status"]), Some(&json!("interrupted")), "{p:#}");
    }
    let id = view["id"].as_str().expect("id");
    view["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| {
            let seq =
                p["output_checkpoint"].as_u64().unwrap_or_else(|| panic!("no output checkpoint: {p:#}"));
            let cp = read_checkpoint(data, id, seq);
            let files: BTreeMap<String, Value> = cp["manifest"]["files"]
                .as_object()
                .unwrap_or_else(|| panic!("checkpoint {seq} has no manifest: {cp:#}"))
                .iter()
                .map(|(k, v)| (k.clone(), json!([v["sha256"], v["size"]])))
                .collect();
            let ended: Vec<&Value> = p["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["status"] != "interrupted")
                .collect();
            let gates: Vec<Value> = ended
                .iter()
                .map(|a| {
                    json!(a["gates"].as_array().map(|g| g.iter().map(|g| &g["passed"]).collect::<Vec<_>>()))
                })
                .collect();
            json!({
                "name": p["name"],
                "status": p["status"],
                "attempts": ended.len(),
                "gates": gates,
                "files": files,
            })
        })
        .collect()
}

fn read_checkpoint(data: &Path, id: &str, seq: u64) -> Value {
    let path = data.join("orchestrator/runs").join(id).join(format!("checkpoints/{seq:06}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every checkpoint file of the run parses as JSON and names its own sequence number.
fn assert_checkpoints_intact(data: &Path, id: &str) {
    let dir = data.join("orchestrator/runs").join(id).join("checkpoints");
    let mut seqs = Vec::new();
    for e in std::fs::read_dir(&dir).expect("checkpoints").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read checkpoint");
        let cp: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(format!("{:06}.json", cp["seq"].as_u64().expect("seq")), name);
        seqs.push(cp["seq"].as_u64().expect("seq"));
    }
    seqs.sort_unstable();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "checkpoint numbers have no gaps: {}", dir.display());
}

#[tokio::test]
async fn kill_9_at_random_moments_then_resume_ends_like_an_uninterrupted_run() {
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let log = dir.path().join("helix.err");
    let trail = dir.path().join("trail");
    let http = http();
    let pipeline = pipeline(&trail);

    let up = Up::start(dir.path(), &data, &log);
    let clock = Instant::now();
    let (id, _) = start_run(&http, &up.url, &pipeline).await;
    let reference = wait_final(&http, &up.url, &id).await;
    // kills land anywhere in the time an uninterrupted run takes
    let span_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX).max(100);
    assert_eq!(reference["status"], "succeeded", "{reference:#}");
    let want_files = read_tree(Path::new(reference["workspace"].as_str().expect("workspace")));
    let want_log: String = (1..=6).map(|i| format!("phase {i} done\n")).collect();
    assert_eq!(want_files.get("log.txt").map(|b| String::from_utf8_lossy(b).into_owned()), Some(want_log));
    let want_phases = phase_results(&data, &reference);
    assert_eq!(want_phases.len(), 6);

    let mut rng = Lcg(0x00c0_ffee_5eed);
    let mut up = Some(up);
    let (mut kills, mut interrupted, mut refused) = (0, 0, 0);
    let mut last = None;
    assert_eq!(survivors(&id), Vec::<u32>::new(), "the uninterrupted run left processes");
    for round in 1..=5 {
        let current = up.take().unwrap_or_else(|| Up::start(dir.path(), &data, &log));
        let (id, first_token) = start_run(&http, &current.url, &pipeline).await;
        let mut current = Some(current);
        let mut kills_this_round = 0;
        // phase → how often it had started when a restarted helix first showed it completed
        let mut completed: BTreeMap<String, usize> = BTreeMap::new();
        let done = loop {
            let u = current.take().expect("a running helix");
            // a random moment of the (rest of the) run
            // (in its first two thirds, so that on a fast machine most kills still land in it)
            tokio::time::sleep(Duration::from_millis(rng.below(span_ms * 2 / 3))).await;
            u.kill9();
            kills += 1;
            kills_this_round += 1;
            let u = Up::start(dir.path(), &data, &log);
            let v = view(&http, &u.url, &id).await;
            current = Some(u);
            if v["status"] == "succeeded" {
                break v; // it ended before the kill
            }
            assert_eq!(v["status"], "interrupted", "round {round}, kill {kills_this_round}: {v:#}");
            let started = starts(&trail, &id);
            for p in v["phases"].as_array().expect("phases") {
                let name = p["name"].as_str().expect("name").to_owned();
                let n = started.get(&name).copied().unwrap_or(0);
                assert!(n >= 1, "round {round}: {name} is completed but never started");
                completed.entry(name).or_insert(n);
            }
            let latest = v["resume_token"].as_str().unwrap_or_else(|| panic!("{v:#}")).to_owned();
            interrupted += 1;
            let url = current.as_ref().expect("helix").url.clone();
            // resume with any token the run printed: the one at its start or one of a checkpoint
            let mut printed = vec![first_token.clone()];
            printed.extend(printed_tokens(&data, &id));
            printed.dedup();
            let pick = printed[usize::try_from(rng.below(printed.len() as u64)).expect("index")].clone();
            if resume_with(&http, &url, &id, &pick, &latest).await {
                refused += 1;
            }
            // sometimes kill the resumed run again, at most three times a round
            if kills_this_round < 3 && rng.below(2) == 0 {
                continue;
            }
            break wait_final(&http, &url, &id).await;
        };
        up = current;
        assert_eq!(done["status"], "succeeded", "round {round}: {done:#}");
        let files = read_tree(Path::new(done["workspace"].as_str().expect("workspace")));
        assert_eq!(files, want_files, "round {round}: the final workspace equals the uninterrupted one");
        assert_eq!(phase_results(&data, &done), want_phases, "round {round}: per-phase results");
        let log_text = String::from_utf8_lossy(&files["log.txt"]).into_owned();
        for i in 1..=6 {
            let line = format!("phase {i} done");
            assert_eq!(log_text.lines().filter(|l| *l == line).count(), 1, "round {round}: {log_text}");
        }
        assert_checkpoints_intact(&data, &id);
        let left = survivors(&id);
        assert!(left.is_empty(), "round {round}: processes of the run survive it: {left:?}");
        let started = starts(&trail, &id);
        for (phase, n) in &completed {
            assert_eq!(started.get(phase), Some(n), "round {round}: completed phase {phase} was redone");
        }
        assert_eq!(started.len(), 6, "round {round}: every phase started: {started:?}");
        // every start is on record: a killed attempt counts (journalled before it spawns)
        for p in done["phases"].as_array().expect("phases") {
            let recorded = p["attempts"].as_array().map_or(0, Vec::len);
            let n = started.get(p["name"].as_str().expect("name")).copied().unwrap_or(0);
            assert!(
                n <= recorded,
                "round {round}: {} started {n} times, {recorded} attempts on record",
                p["name"]
            );
        }
        assert!(began.elapsed() < TEST_BUDGET, "over budget after round {round}");
        last = Some((id, first_token));
    }
    // a fork is the one way to redo completed phases: asked for with an older token and
    // `from_checkpoint`, it is a new run, and the original's side effects stay as they were
    let (id, first_token) = last.expect("a round ran");
    let url = up.as_ref().expect("helix").url.clone();
    let before = starts(&trail, &id);
    let res = http
        .post(format!("{url}/v1/runs/{id}/resume"))
        .json(&json!({"token": first_token, "from_checkpoint": 1}))
        .send()
        .await
        .expect("fork");
    assert_eq!(res.status(), 202);
    let fork: Value = res.json().await.expect("json");
    let fork_id = fork["id"].as_str().expect("fork id").to_owned();
    assert_ne!(fork_id, id);
    assert_eq!(fork["forked_from"]["run"], id.as_str(), "{fork:#}");
    let done = wait_final(&http, &url, &fork_id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let files = read_tree(Path::new(done["workspace"].as_str().expect("workspace")));
    assert_eq!(files, want_files, "the fork's workspace equals the uninterrupted one");
    assert_eq!(starts(&trail, &id), before, "forking left the original run's side effects alone");
    assert!(starts(&trail, &fork_id).values().all(|n| *n == 1), "the fork ran each phase once");
    assert!(survivors(&fork_id).is_empty(), "the fork left processes");
    eprintln!(
        "{kills} kills, {interrupted} of them interrupted a run, {refused} resumes with an older token refused \
         (uninterrupted run: {span_ms} ms)"
    );
    assert!(interrupted >= 3, "most kills should land in a run ({interrupted} of {kills} did)");
    drop(up);
}

/// Whether process `pid` exists and is not a zombie.
/// The pid of a live process whose argv is exactly `argv`.
fn with_cmdline(argv: &[&str]) -> Option<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain(std::iter::once(0))).collect();
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (std::fs::read(e.path().join("cmdline")).ok()? == want && alive(pid)).then_some(pid)
    })
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Kills `pid` (a process this test started, through a phase) if it is still there.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0
            && alive(pid)
        {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// A phase's processes run in their own process group (so that a timeout kills all of them);
/// when the orchestrator itself is killed with SIGKILL, nobody kills that group. The resumed
/// run then starts the phase again while the old copy still runs: two agents working on the
/// same task. A resume must first make sure the interrupted attempt's processes are gone.
#[tokio::test]
async fn a_resume_after_kill_9_leaves_no_process_of_the_interrupted_attempt_running() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let log = dir.path().join("helix.err");
    let pids = dir.path().join("pids");
    let flag = dir.path().join("hold");
    std::fs::write(&flag, "").expect("flag");
    let quote = |p: &Path| serde_json::to_string(p.to_str().expect("utf-8")).expect("toml string");
    // the phase's process is found by its command line: in a PID namespace (bubblewrap) the pid
    // it sees of itself is not the host's
    let marker = format!("30.{}", std::process::id());
    let pipeline = format!(
        "name = \"orphans\"\n[variables]\npids = {}\nflag = {}\n\n[[phase]]\nname = \"quiet\"\nkind = \"command\"\n\
         shell = true\nrun = 'echo $$ >> \"$pids\"; if [ -e \"$flag\" ]; then exec sleep {marker}; fi'\n",
        quote(&pids),
        quote(&flag)
    );
    let http = http();
    let up = Up::start(dir.path(), &data, &log);
    let (id, _) = start_run(&http, &up.url, &pipeline).await;
    let start = Instant::now();
    let pid = loop {
        if let Some(pid) = with_cmdline(&["sleep", &marker]) {
            break pid;
        }
        assert!(start.elapsed() < RUN_DEADLINE, "the phase did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _guard = KillOnDrop(Some(pid));
    up.kill9();
    // without a sandbox the phase outlives the orchestrator and the next owner must kill it;
    // with bubblewrap its namespace dies with the orchestrator

    std::fs::remove_file(&flag).expect("release the phase");
    let up = Up::start(dir.path(), &data, &log);
    assert_eq!(view(&http, &up.url, &id).await["status"], "interrupted");
    resume(&http, &up.url, &id).await;
    let done = wait_final(&http, &up.url, &id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let runs = std::fs::read_to_string(&pids).expect("pids");
    assert_eq!(runs.lines().count(), 2, "the phase ran again after the resume: {runs}");
    let gone = Instant::now();
    while alive(pid) && gone.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(pid) && with_cmdline(&["sleep", &marker]).is_none(),
        "process {pid} of the interrupted attempt (`sleep {marker}`) still runs after the run was resumed and succeeded"
    );
}

/// A phase that kills its orchestrator (a crash loop): each attempt is cut short, counts
/// against `retries`, shows in the trace, and after the last one the phase is given up
/// (`needs_human`) instead of run again.
#[tokio::test]
async fn a_phase_that_keeps_killing_the_orchestrator_ends_needs_human_after_its_attempts() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let log = dir.path().join("helix.err");
    let trail = dir.path().join("trail");
    let pidfile = dir.path().join("helix.pid");
    let quote = |p: &Path| serde_json::to_string(p.to_str().expect("utf-8")).expect("toml string");
    let pipeline = format!(
        "name = \"crashloop\"\n[variables]\ntrail = {}\npidfile = {}\n\n[[phase]]\nname = \"boom\"\n\
         kind = \"command\"\nshell = true\nretries = 2\n\
         run = 'echo \"$HELIX_ATTEMPT\" >> \"$trail\"; kill -9 \"$(cat \"$pidfile\")\"; sleep 30'\n\n\
         [[phase]]\nname = \"after\"\nkind = \"command\"\nrun = [\"true\"]\n",
        quote(&trail),
        quote(&pidfile)
    );
    let http = http();
    // no PID namespace, so that the phase can see (and kill) its orchestrator
    let start = |pidfile: &Path| {
        let up = Up::start_with(dir.path(), &data, &log, &[("HELIX_ORCHESTRATOR__SANDBOX", "none")]);
        std::fs::write(pidfile, up.child.id().to_string()).expect("pid file");
        up
    };
    let mut up = start(&pidfile);
    let (id, _) = start_run(&http, &up.url, &pipeline).await;
    let mut crashes = 0;
    let done = loop {
        // until the phase kills helix, or the run ends (bounded)
        let t = Instant::now();
        let finished = loop {
            if up.child.try_wait().expect("wait").is_some() {
                break None;
            }
            // helix may die under this request: that is an answer too
            if let Ok(res) = http.get(format!("{}/v1/runs/{id}", up.url)).send().await
                && let Ok(v) = res.json::<Value>().await
                && is_final(&v)
            {
                break Some(v);
            }
            assert!(t.elapsed() < Duration::from_secs(60), "neither a crash nor an end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(v) = finished {
            break v;
        }
        crashes += 1;
        assert!(crashes <= 3, "the phase ran more often than its attempts allow");
        drop(up);
        up = start(&pidfile);
        let v = view(&http, &up.url, &id).await;
        if is_final(&v) {
            break v;
        }
        assert_eq!(v["status"], "interrupted", "{v:#}");
        let latest = v["resume_token"].as_str().expect("token").to_owned();
        resume_with(&http, &up.url, &id, &latest, &latest).await;
    };
    assert_eq!(crashes, 3, "one crash per attempt");
    assert_eq!(done["status"], "needs_human", "{done:#}");
    let ran = std::fs::read_to_string(&trail).expect("trail");
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["1", "2", "3"], "each attempt ran once");
    let failed = &done["failed"];
    assert_eq!(failed["name"], "boom", "{done:#}");
    let tries = failed["attempts"].as_array().expect("attempts");
    assert_eq!(tries.len(), 3, "{failed:#}");
    assert!(
        tries.iter().all(|a| a["status"] == "interrupted" && a["heal"]["failure_class"] == "interrupted")
    );
    assert!(done["reason"].as_str().is_some_and(|r| r.contains("interrupted")), "{done:#}");
    // the trace tells each interruption
    let trace_id = done["trace_id"].as_str().expect("trace id");
    let t = Instant::now();
    loop {
        let res = http.get(format!("{}/v1/traces/{trace_id}", up.collector)).send().await.expect("trace");
        let text = if res.status() == 200 { res.text().await.expect("body") } else { String::new() };
        let n = text.matches("\"helix.heal.class\":\"interrupted\"").count();
        if n >= 3 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{n} interruption spans in the trace: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
