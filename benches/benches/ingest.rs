//! Durable ingest: the trace-collector's log store appending batches of 1,000 events (encode,
//! group-commit write, fsync, index), side by side with a raw append + fsync of the same bytes
//! on the same disk, in the same run. Target (issue 4): >= 200,000 events/s, and at least half
//! of the raw rate.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use helix_core::trace::Event;
use helix_trace_collector::store::EventStore;
use helix_trace_collector::store::log::LogStore;

fn batch(seq: u64) -> Vec<Event> {
    (0..1000u64)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "trace_id": format!("{:032x}", seq * 1000 + i / 50 + 1),
                "span_id": format!("{:016x}", i + 1),
                "parent_span_id": if i % 50 == 0 { None } else { Some(format!("{:016x}", (i / 50) * 50 + 1)) },
                "name": "execute_tool bash",
                "kind": "tool_call",
                "start_unix_nanos": 1_764_000_000_000_000_000u64 + i * 1_000_000,
                "end_unix_nanos": 1_764_000_000_000_000_000u64 + i * 1_000_000 + 750_000,
                "status": "ok",
                "project": "webshop",
                "phase": "development",
                "attributes": {
                    "gen_ai.tool.name": "bash",
                    "helix.tool.arguments": "cargo test --workspace --locked",
                    "helix.tool.result": "test result: ok. 117 passed; 0 failed",
                    "helix.cost_usd": 0.0004
                }
            }))
            .expect("event")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = LogStore::open(&dir.path().join("events")).expect("open");
    let template = batch(0);
    let bytes: usize = template.iter().map(|e| serde_json::to_vec(e).map(|v| v.len() + 8).unwrap_or(0)).sum();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(30);
    let mut seq = 1;
    group.bench_function("log_store_batch_1000", |b| {
        b.iter_batched(
            || {
                seq += 1;
                batch(seq)
            },
            |events| store.append(black_box(events)).expect("append"),
            criterion::BatchSize::LargeInput,
        )
    });
    // the floor: the same number of bytes appended and fsynced, nothing else
    let raw_path = dir.path().join("raw.log");
    let mut raw = std::fs::OpenOptions::new().create(true).append(true).open(&raw_path).expect("raw");
    let payload = vec![b'x'; bytes];
    group.bench_function("raw_append_fsync_same_bytes", |b| {
        b.iter(|| {
            raw.write_all(black_box(&payload)).expect("write");
            raw.sync_data().expect("fsync");
        })
    });
    group.finish();
    println!("batch of 1000 events = {bytes} bytes on disk");
}

criterion_group!(benches, bench);
criterion_main!(benches);
