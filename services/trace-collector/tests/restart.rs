//! A restart resumes the baselines from their snapshot and replays only what came after it: the
//! same baselines and anomalies as before the restart, nothing counted twice.

use helix_core::trace::Event;
use helix_trace_collector::CollectorState;

fn phase(i: u64, secs: u64) -> Event {
    let start = 1_764_000_000_000_000_000 + i * 1_000_000_000_000;
    serde_json::from_value(serde_json::json!({
        "trace_id": format!("{:032x}", i + 1), "span_id": format!("{:016x}", 1),
        "name": "phase development", "kind": "phase", "project": "webshop", "phase": "development",
        "start_unix_nanos": start, "end_unix_nanos": start + secs * 1_000_000_000
    }))
    .expect("event")
}

#[test]
fn baselines_survive_a_restart_from_their_snapshot_plus_the_events_after_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = helix_core::HelixConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
    // the phases are from 2025: kept from retention, which may remove a sealed segment at a reopen
    cfg.trace_collector.retention_days = 0;
    let before;
    {
        let state = CollectorState::open(&cfg).expect("open");
        for i in 0..10 {
            state.ingest(vec![phase(i, 270 + i)]).expect("ingest");
        }
        state.save_baselines().expect("save");
        // stored after the snapshot: must be replayed at the next start, exactly once
        state.ingest(vec![phase(10, 280), phase(11, 900)]).expect("ingest");
        before = state.baselines.lock().expect("lock").list();
        assert_eq!(state.baselines.lock().expect("lock").recent(None, 10).len(), 1, "the 900 s phase");
    }
    let state = CollectorState::open(&cfg).expect("reopen");
    let after = state.baselines.lock().expect("lock").list();
    assert_eq!(after, before);
    let duration = after.iter().find(|b| b.metric == helix_trace_collector::anomaly::Metric::Duration);
    assert_eq!(duration.expect("duration baseline").stats.samples, 12, "nothing counted twice");
    assert_eq!(state.baselines.lock().expect("lock").recent(None, 10).len(), 1, "the anomaly once");
    drop(state);

    // the snapshot really is what the next start builds on (not a replay of the whole log):
    // rewrite its duration values and they show up
    let path = dir.path().join("trace-collector/baselines.json");
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    for series in saved["baselines"]["series"].as_array_mut().expect("series") {
        if series[1] == "duration" {
            series[2] = serde_json::json!(vec![1.0; 10]);
        }
    }
    std::fs::write(&path, serde_json::to_vec(&saved).expect("json")).expect("write");
    let state = CollectorState::open(&cfg).expect("reopen");
    let list = state.baselines.lock().expect("lock").list();
    let duration = list.iter().find(|b| b.metric == helix_trace_collector::anomaly::Metric::Duration);
    assert_eq!(duration.expect("duration baseline").stats.median, 1.0);
}
