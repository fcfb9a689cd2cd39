//! Analysis throughput on typical compiler and test-runner output: mostly progress and passing
//! lines with a few real errors, as a CI log looks. Target (issue 3): >= 50 MB/s on one core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use helix_healer::analyze::{Request, analyze};
use helix_healer::patterns::PatternSet;

/// About 1 MB of CI-like output built from real tool formats and the error corpus.
fn typical_output() -> String {
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/corpus/errors-dev.jsonl"
    ))
    .expect("corpus fixture");
    let errors: Vec<String> = corpus
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["output"].as_str().map(str::to_owned))
        .collect();
    let mut out = String::with_capacity(1 << 20);
    let mut i = 0usize;
    while out.len() < 1 << 20 {
        for k in 0..40 {
            match k % 5 {
                0 => out.push_str(&format!(
                    "   Compiling helix-crate-{i} v0.{k}.3 (/home/ci/work/helix/crates/c{i})\n"
                )),
                1 => out.push_str(&format!("test tests::case_{i}_{k} ... ok\n")),
                2 => out.push_str(&format!(
                    "tests/test_mod_{k}.py::test_feature_{i} PASSED                        [ {k:>2}%]\n"
                )),
                3 => out.push_str(&format!(
                    "[{i:>5}/{k:>5}] Building CXX object src/CMakeFiles/core.dir/module_{k}.cpp.o\n"
                )),
                _ => out.push_str(&format!(
                    "npm http fetch GET 200 https://registry.example/pkg-{i} {k}ms (cache hit)\n"
                )),
            }
        }
        out.push_str(&errors[i % errors.len()]);
        out.push('\n');
        i += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let patterns = PatternSet::seed().expect("seed patterns");
    let output = typical_output();
    let mut group = c.benchmark_group("analyze");
    group.throughput(Throughput::Bytes(output.len() as u64));
    group.sample_size(20);
    group.bench_function("typical_ci_log_1mb", |b| {
        b.iter(|| {
            black_box(analyze(&Request { output: black_box(&output), ..Request::default() }, &patterns))
        })
    });
    // one small failure, the orchestrator's common case
    let one = "Traceback (most recent call last):\n  File \"/w/app.py\", line 2, in <module>\n    import yaml\nModuleNotFoundError: No module named 'yaml'\n";
    group.throughput(Throughput::Bytes(one.len() as u64));
    group.sample_size(100);
    group.bench_function("single_traceback", |b| {
        b.iter(|| black_box(analyze(&Request { output: black_box(one), ..Request::default() }, &patterns)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
