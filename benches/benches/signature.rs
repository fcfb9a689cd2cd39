//! Fingerprinting diagnostic messages: the healer runs this for every diagnostic it sees.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const MESSAGES: &[&str] = &[
    "ModuleNotFoundError: No module named 'yaml'",
    "error[E0425]: cannot find value `conn` in this scope --> src/db/pool.rs:42:17",
    "/home/ci/work/proj2/src/main.c:12:10: fatal error: openssl/ssl.h: No such file or directory",
    "2026-11-25T10:00:01.123Z request 6f1c2a3b-1d2e-4f50-8a9b-0c1d2e3f4a5b failed at 0x7ffd5e8c after 3 retries",
    "TypeError: Cannot read properties of undefined (reading 'map') at Object.<anonymous> (/srv/app/index.js:7:15)",
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Elements(MESSAGES.len() as u64));
    group.bench_function("fingerprint_5_messages", |b| {
        b.iter(|| {
            for m in MESSAGES {
                black_box(helix_healer::signature::fingerprint(black_box(m)));
            }
        })
    });
    let long = MESSAGES.join("\n").repeat(4);
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_function("fingerprint_long_message", |b| {
        b.iter(|| black_box(helix_healer::signature::fingerprint(black_box(&long))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
