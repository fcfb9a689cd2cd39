//! Template mining: all 16,000 messages of the Loghub-2k samples (tests/fixtures/loghub) through
//! a fresh miner per iteration, so template discovery is part of what is measured.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use helix_healer::mining::Miner;
use std::hint::black_box;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/loghub");

/// The `Content` column of every structured Loghub file in [`DIR`], file by file.
fn messages() -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .expect("fixture folder")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_2k.log_structured.csv"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("readable fixture")).into_owned();
        let mut records = csv_records(&text).into_iter();
        let header = records.next().expect("header row");
        let content = header.iter().position(|h| h == "Content").expect("Content column");
        out.extend(records.filter(|r| r.len() > content).map(|mut r| r.swap_remove(content)));
    }
    out
}

/// Records of a CSV text: `"`-quoted fields may hold commas, newlines and `""`.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field, mut quoted) = (Vec::new(), Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

fn bench(c: &mut Criterion) {
    let messages = messages();
    assert_eq!(messages.len(), 16_000, "the eight Loghub-2k samples");
    let mut group = c.benchmark_group("mining");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("loghub_16000_messages", |b| {
        b.iter(|| {
            let mut miner = Miner::new();
            for m in &messages {
                black_box(miner.add(black_box(m)));
            }
            black_box(miner.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
