//! Linear time on any input (issue 16): the healer's analysis, fingerprinting and template mining
//! timed on every adversarial shape of `helix_benches::adversarial` at growing sizes, printed as
//! nanoseconds per byte, with the ratio of the largest size's per-byte time to 64 KiB's. Flat
//! rows are linear; a row whose ratio grows with the size is not. A size is skipped once the
//! previous one took longer than `HELIX_LINEAR_BUDGET_S` (5 s), so a quadratic path cannot run for
//! hours. Not a criterion bench: each figure is the best of a few runs of one large input.
//!
//! usage: cargo bench -p helix-benches --bench linear   (env: HELIX_LINEAR_MAX=8388608,
//!        HELIX_LINEAR_SHAPES=name,name to run some shapes only)

use std::hint::black_box;
use std::time::Duration;

use helix_benches::adversarial::SHAPES;
use helix_benches::best_of;
use helix_healer::analyze::{Request, analyze};
use helix_healer::patterns::PatternSet;

fn main() {
    let patterns = PatternSet::seed().expect("seed patterns");
    let max: usize = std::env::var("HELIX_LINEAR_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(8 << 20);
    let budget = Duration::from_secs_f64(
        std::env::var("HELIX_LINEAR_BUDGET_S").ok().and_then(|v| v.parse().ok()).unwrap_or(5.0),
    );
    let only: Option<Vec<String>> =
        std::env::var("HELIX_LINEAR_SHAPES").ok().map(|v| v.split(',').map(str::to_owned).collect());
    let sizes: Vec<usize> = [1 << 10, 64 << 10, 1 << 20, 8 << 20].into_iter().filter(|s| *s <= max).collect();
    println!(
        "{:<18} {:<12} {}",
        "shape",
        "operation",
        sizes.iter().map(|s| format!("{:>10}", label(*s))).collect::<String>()
    );
    for shape in SHAPES {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == shape.name)) {
            continue;
        }
        for op in ["analyze", "fingerprint", "mine"] {
            let mut row = Vec::new();
            let mut stop = false;
            for &size in &sizes {
                if stop {
                    row.push(None);
                    continue;
                }
                let input = (shape.make)(size);
                let runs = if size <= 64 << 10 { 5 } else { 2 };
                let took = best_of(runs, &mut || match op {
                    "analyze" => {
                        black_box(analyze(
                            &Request { output: &input, exit_code: Some(1), ..Request::default() },
                            &patterns,
                        ));
                    }
                    "fingerprint" => {
                        black_box(helix_healer::signature::fingerprint(&input));
                    }
                    _ => {
                        black_box(helix_healer::mining::mine(input.lines()));
                    }
                });
                stop = took > budget;
                row.push(Some(took.as_nanos() as f64 / input.len().max(1) as f64));
            }
            let base = row.get(1).copied().flatten();
            let last = row.iter().rev().find_map(|v| *v);
            let ratio = match (base, last) {
                (Some(b), Some(l)) if b > 0.0 => format!("{:.2}x", l / b),
                _ => "-".to_owned(),
            };
            let cells: String = row
                .iter()
                .map(|v| match v {
                    Some(ns) => format!("{ns:>10.1}"),
                    None => format!("{:>10}", "skipped"),
                })
                .collect();
            println!("{:<18} {:<12} {cells}   ns/byte, largest/64K {ratio}", shape.name, op);
        }
    }
}

fn label(size: usize) -> String {
    if size >= 1 << 20 { format!("{}M", size >> 20) } else { format!("{}K", size >> 10) }
}
