//! The orchestrator's own costs (issue 6 targets):
//! - checkpoint of a 1,000-file workspace where 10 files changed (snapshot with the previous
//!   manifest as hint, blobs and checkpoint fsynced): <= 20 ms;
//! - resume start: from the resume call until the interrupted phase's command runs, with a
//!   1,000-file workspace materialised for it: <= 100 ms;
//! - orchestration overhead per phase (everything but the phase's own command: fresh workspace,
//!   gates, snapshot, checkpoint, events): <= 5 ms.
//!
//! The engine runs with its peers (healer, collector, gateway) unreachable on loopback: phases
//! pass, so none is called on the measured path, and trace events queue in the emitter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use helix_core::client::ServiceClient;
use helix_orchestrator::checkpoint::{self, Blobs, Exclude, RunLock};
use helix_orchestrator::emit::Emitter;
use helix_orchestrator::engine::{Clients, Engine, EngineSettings, RunStatus, StartRequest};
use helix_orchestrator::pipeline::Pipeline;

/// A workspace of `n` files of ~2 KB in 20 directories, all with an mtime an hour ago (older than
/// the snapshot's racy window, as files materialised from a checkpoint are).
fn workspace(dir: &Path, n: usize) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..n {
        let sub = dir.join(format!("pkg{:02}", i % 20));
        std::fs::create_dir_all(&sub).expect("dir");
        let path = sub.join(format!("file{i:04}.py"));
        let line = format!("def f{i}(x):\n    return x * {i}  # padding padding padding padding padding\n");
        std::fs::write(&path, line.repeat(24)).expect("write");
        std::fs::File::options().write(true).open(&path).expect("open").set_modified(old).expect("mtime");
    }
}

fn engine(root: &Path, rt: &tokio::runtime::Runtime) -> Arc<Engine> {
    let _guard = rt.enter();
    // nothing listens on port 9 of loopback: peers are unreachable
    let peer = || ServiceClient::new("http://127.0.0.1:9", Duration::from_millis(200)).expect("client");
    let clients = Clients { healer: peer(), collector: peer(), gateway: peer() };
    let emitter = Emitter::for_client(&clients.collector, 1_000_000);
    let settings = EngineSettings { max_runs_per_project: 64, ..EngineSettings::default() };
    Arc::new(Engine::open(root, clients, emitter, settings).expect("engine"))
}

fn pipeline(text: &str) -> Pipeline {
    Pipeline::parse(text).expect("pipeline")
}

async fn finish(engine: &Engine, id: &str) -> helix_orchestrator::engine::RunView {
    engine.wait(id).await;
    engine.view(id).await.expect("view")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let tmp = tempfile::tempdir().expect("tmp");

    // checkpoint: snapshot of 1,000 files (10 changed) + checkpoint write, both durable
    {
        let root = tmp.path().join("ckpt");
        let ws = tmp.path().join("ws");
        workspace(&ws, 1000);
        let blobs = Blobs::open(&root).expect("blobs");
        let exclude = Exclude::none();
        let base = checkpoint::snapshot(&ws, &blobs, &exclude).expect("snapshot");
        let run = checkpoint::run_dir(&root, "bench").expect("run dir");
        let lock = RunLock::acquire(&run).expect("lock");
        let mut seq = lock.next_seq().expect("seq");
        let mut round = 0u64;
        c.bench_function("orchestrator/checkpoint_1000_files_10_changed", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    for i in 0..10 {
                        let path = ws.join(format!("pkg{:02}", i % 20)).join(format!("file{i:04}.py"));
                        std::fs::write(&path, format!("changed in round {round}\n").repeat(40))
                            .expect("change");
                    }
                    let t = Instant::now();
                    let m =
                        checkpoint::snapshot_with_hint(&ws, &blobs, &exclude, Some(&base)).expect("snapshot");
                    lock.write_checkpoint(seq, &m).expect("checkpoint");
                    total += t.elapsed();
                    seq += 1;
                    assert_eq!(base.diff(&m).len(), 10);
                }
                total
            })
        });
    }

    // overhead per phase: what one more phase adds to a run (runs of 1 and of 11 phases of
    // `true`, the commands' own time taken out); the run's own start (snapshotting the source
    // directory) and end (the final workspace) are not per phase
    for files in [10usize, 1000] {
        let root = tmp.path().join(format!("overhead-{files}"));
        let src = tmp.path().join(format!("src-{files}"));
        workspace(&src, files);
        let engine = engine(&root, &rt);
        let pipeline_of = |n: usize| {
            let phases: String = (0..n)
                .map(|i| format!("[[phase]]\nname = \"p{i}\"\nkind = \"command\"\nrun = [\"true\"]\n"))
                .collect();
            pipeline(&format!("name = \"overhead\"\n{phases}"))
        };
        let (one, eleven) = (pipeline_of(1), pipeline_of(11));
        let run = |p: Pipeline| {
            let engine = engine.clone();
            let src = src.clone();
            async move {
                let t = Instant::now();
                let req = StartRequest { pipeline: p, project: "bench".to_owned(), source_dir: Some(src) };
                let view = engine.start(req).await.expect("start");
                let view = finish(&engine, &view.id).await;
                let elapsed = t.elapsed();
                assert_eq!(view.status, RunStatus::Succeeded);
                let own: Duration = view
                    .phases
                    .iter()
                    .flat_map(|ph| &ph.attempts)
                    .filter_map(|a| a.outcome.as_ref().map(|o| o.duration))
                    .sum();
                elapsed.saturating_sub(own)
            }
        };
        c.bench_function(&format!("orchestrator/overhead_per_phase_{files}_files"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let short = run(one.clone()).await;
                        let long = run(eleven.clone()).await;
                        total += long.saturating_sub(short) / 10;
                    }
                    total
                })
            })
        });
    }

    // resume start: a run cancelled in its first phase, resumed; until that phase's command runs
    {
        let root = tmp.path().join("resume");
        let src = tmp.path().join("src-resume");
        workspace(&src, 1000);
        let engine = engine(&root, &rt);
        let stamp = tmp.path().join("stamp");
        let go = tmp.path().join("go");
        let mut vars = BTreeMap::new();
        vars.insert("STAMP", stamp.display().to_string());
        vars.insert("GO", go.display().to_string());
        let p = pipeline(&format!(
            "name = \"resume\"\n[variables]\nSTAMP = \"{}\"\nGO = \"{}\"\n[[phase]]\nname = \"work\"\nkind = \"command\"\nshell = true\nrun = \"date +%s%N > \\\"$STAMP\\\"; [ -e \\\"$GO\\\" ] || sleep 30\"\n",
            vars["STAMP"], vars["GO"]
        ));
        c.bench_function("orchestrator/resume_start_1000_files", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let _ = std::fs::remove_file(&go);
                        let _ = std::fs::remove_file(&stamp);
                        let req = StartRequest {
                            pipeline: p.clone(),
                            project: "bench".to_owned(),
                            source_dir: Some(src.clone()),
                        };
                        let view = engine.start(req).await.expect("start");
                        while !stamp.exists() {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        engine.cancel(&view.id).expect("cancel");
                        let v = finish(&engine, &view.id).await;
                        assert_eq!(v.status, RunStatus::Cancelled);
                        std::fs::write(&go, "").expect("go");
                        let _ = std::fs::remove_file(&stamp);
                        let t0 = SystemTime::now();
                        engine.resume_at(&view.id, None, None).await.expect("resume");
                        while !stamp_ready(&stamp) {
                            tokio::time::sleep(Duration::from_micros(500)).await;
                        }
                        let started: u64 =
                            std::fs::read_to_string(&stamp).expect("stamp").trim().parse().expect("ns");
                        let t0_ns =
                            t0.duration_since(SystemTime::UNIX_EPOCH).expect("epoch").as_nanos() as u64;
                        total += Duration::from_nanos(started.saturating_sub(t0_ns));
                        let v = finish(&engine, &view.id).await;
                        assert_eq!(v.status, RunStatus::Succeeded);
                    }
                    total
                })
            })
        });
    }
}

/// The stamp file exists and holds a whole number (written by `date`, maybe not yet flushed).
fn stamp_ready(path: &PathBuf) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.trim().parse::<u64>().is_ok())
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(10));
    targets = bench
}
criterion_main!(benches);
