//! Benchmarks live in `benches/*.rs`; see the README performance section.
//!
//! This library holds what a bench and a test both need: the adversarial inputs of the healer's
//! linear-time check (`benches/benches/linear.rs` prints the figures, `tests/linear.rs` asserts
//! them loosely).

/// The shortest of `runs` timings of `f`: on a shared machine the minimum is the figure least
/// disturbed by other work.
pub fn best_of(runs: usize, f: &mut dyn FnMut()) -> std::time::Duration {
    (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Inputs built to find super-linear work in the healer: each repeats a small unit whose shape
/// makes a naive parser or regex iterator rescan the rest of the input at every step. `make(n)`
/// returns about `n` bytes.
pub mod adversarial {
    /// One named input shape.
    pub struct Shape {
        pub name: &'static str,
        pub make: fn(usize) -> String,
    }

    /// Every shape: long lines without a newline, repeated separators, quotes and brackets that
    /// never close, hex runs, numbers joined by punctuation, compiler-looking headers repeated
    /// on one line, deep stack blocks, JSON nesting, many short error lines, random text.
    pub const SHAPES: &[Shape] = &[
        Shape { name: "dash-numbers", make: |n| repeat("1-", n) },
        Shape { name: "gcc-one-line", make: |n| repeat("a.c:1:1: error: ", n) },
        Shape {
            name: "gcc-lines",
            make: |n| lines(n, |i| format!("src/f{i}.c:{i}:1: error: '{i}x' undeclared")),
        },
        Shape { name: "long-word", make: |n| repeat("a", n) },
        Shape { name: "colons", make: |n| repeat(":", n) },
        Shape { name: "slashes", make: |n| repeat("a/", n) },
        Shape { name: "dots", make: |n| repeat("a.", n) },
        Shape { name: "open-quotes", make: |n| repeat("'a ", n) },
        Shape { name: "double-quotes", make: |n| repeat("\"", n) },
        Shape { name: "backticks", make: |n| repeat("`x", n) },
        Shape { name: "open-braces", make: |n| format!("error: {}", repeat("{\"error\": ", n)) },
        Shape { name: "brackets", make: |n| repeat("[(", n) },
        Shape { name: "hex-run", make: |n| repeat("0123456789abcdef", n) },
        Shape { name: "hex-0x", make: |n| repeat("0x1f", n) },
        Shape { name: "error-words", make: |n| repeat("error failed not found ", n) },
        Shape {
            name: "error-lines",
            make: |n| lines(n, |i| format!("ERROR worker {i} failed: timeout after {i} ms")),
        },
        Shape { name: "same-error-lines", make: |n| lines(n, |_| "error: something failed".to_owned()) },
        Shape { name: "python-traceback", make: python_traceback },
        Shape {
            name: "node-stack",
            make: |n| lines(n, |i| format!("    at fn{i} (/app/src/m{i}.js:{i}:7)")),
        },
        Shape {
            name: "rust-errors",
            make: |n| {
                lines(n, |i| {
                    format!("error[E0425]: cannot find value `v{i}` in this scope\n --> src/main.rs:{i}:5")
                })
            },
        },
        Shape { name: "indented", make: |n| lines(n, |i| format!("{}x{i}", " ".repeat(i % 64))) },
        Shape { name: "blank-lines", make: |n| repeat("\n", n) },
        Shape { name: "crlf-ansi", make: |n| repeat("\x1b[31merror\x1b[0m: x\r\n", n) },
        Shape { name: "random", make: random },
    ];

    /// `unit` repeated to about `n` bytes, on one line.
    pub fn repeat(unit: &str, n: usize) -> String {
        unit.repeat(n.div_ceil(unit.len().max(1)))
    }

    /// Lines from `line(i)` until about `n` bytes.
    pub fn lines(n: usize, line: impl Fn(usize) -> String) -> String {
        let mut out = String::with_capacity(n + 128);
        let mut i = 0;
        while out.len() < n {
            out.push_str(&line(i));
            out.push('\n');
            i += 1;
        }
        out
    }

    /// One traceback whose stack grows with `n`.
    fn python_traceback(n: usize) -> String {
        let mut out = String::from("Traceback (most recent call last):\n");
        let mut i = 0;
        while out.len() < n {
            out.push_str(&format!("  File \"/app/m{i}.py\", line {i}, in f{i}\n    f{}()\n", i + 1));
            i += 1;
        }
        out.push_str("ModuleNotFoundError: No module named 'yaml'\n");
        out
    }

    /// Printable ASCII with spaces and newlines from a fixed-seed generator (xorshift), so every
    /// run sees the same text.
    fn random(n: usize) -> String {
        const ALPHABET: &[u8] = b"abcXYZ019 :/\\.-_'\"`()[]{}<>=\n\terror failed ";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
            })
            .collect()
    }
}
