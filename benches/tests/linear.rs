//! The healer runs in linear time on any input (issue 16): for every adversarial shape of
//! `helix_benches::adversarial`, the time per byte of analysis, fingerprinting and template mining
//! at 8 MiB stays within 4x of that at 64 KiB. A quadratic path is 128x there, so the bound is
//! loose enough for a busy machine: each figure is the best of three runs, and a shape that misses
//! it is measured again (up to three times) before the test fails. No absolute time is asserted.
//! `cargo bench -p helix-benches --bench linear` prints the whole table.

use std::hint::black_box;

use helix_benches::adversarial::SHAPES;
use helix_benches::best_of;
use helix_healer::analyze::{Request, analyze};
use helix_healer::patterns::PatternSet;

const SMALL: usize = 64 << 10;
const LARGE: usize = 8 << 20;
const BOUND: f64 = 4.0;

fn per_byte(op: &str, input: &str, patterns: &PatternSet) -> f64 {
    let took = best_of(3, &mut || match op {
        "analyze" => {
            black_box(analyze(
                &Request { output: input, exit_code: Some(1), ..Request::default() },
                patterns,
            ));
        }
        "fingerprint" => {
            black_box(helix_healer::signature::fingerprint(input));
        }
        _ => {
            black_box(helix_healer::mining::mine(input.lines()));
        }
    });
    took.as_secs_f64() / input.len().max(1) as f64
}

#[test]
fn time_per_byte_is_flat_from_64_kib_to_8_mib() {
    let patterns = PatternSet::seed().expect("seed patterns");
    let mut failures = Vec::new();
    for shape in SHAPES {
        let small = (shape.make)(SMALL);
        let large = (shape.make)(LARGE);
        assert!(large.len() >= LARGE, "{}: {} bytes", shape.name, large.len());
        for op in ["analyze", "fingerprint", "mine"] {
            let mut ratio = f64::INFINITY;
            for _ in 0..3 {
                let (s, l) = (per_byte(op, &small, &patterns), per_byte(op, &large, &patterns));
                // a floor of 1 ns a byte for the small side: below it the ratio measures timer noise
                ratio = ratio.min(l / s.max(1e-9));
                if ratio <= BOUND {
                    break;
                }
            }
            println!("{:<18} {op:<12} 8 MiB / 64 KiB per byte: {ratio:.2}x", shape.name);
            if ratio > BOUND {
                failures.push(format!("{} {op}: {ratio:.1}x", shape.name));
            }
        }
    }
    assert!(failures.is_empty(), "time per byte grows with the input: {failures:?}");
}

#[test]
fn analysis_of_hostile_input_is_bounded_in_what_it_returns() {
    let patterns = PatternSet::seed().expect("seed patterns");
    // ten thousand distinct errors, and one line of 8 MiB (a masked part is longer than the text it
    // replaces: `1-` becomes `<number>-`, hence the template bound of 8x)
    let many =
        helix_benches::adversarial::lines(1 << 20, |i| format!("src/f{i}.c:{i}:1: error: 'v{i}' undeclared"));
    let a = analyze(&Request { output: &many, exit_code: Some(1), ..Request::default() }, &patterns);
    assert!(a.diagnostics.len() <= helix_healer::analyze::MAX_DIAGNOSTICS, "{}", a.diagnostics.len());
    assert!(a.primary.is_some());
    let long = helix_benches::adversarial::repeat("1-", LARGE);
    let a = analyze(&Request { output: &long, exit_code: Some(1), ..Request::default() }, &patterns);
    let d = &a.diagnostics[a.primary.expect("the failed command's last line")];
    assert!(d.message.len() <= helix_healer::parse::MAX_LINE_BYTES, "{}", d.message.len());
    assert!(d.template.len() <= 8 * helix_healer::signature::MAX_MESSAGE_BYTES, "{}", d.template.len());
    assert!(d.params.len() <= 40, "{}", d.params.len());
    let f = helix_healer::signature::fingerprint(&long);
    assert!(f.template.len() <= 8 * helix_healer::signature::MAX_MESSAGE_BYTES);
}
