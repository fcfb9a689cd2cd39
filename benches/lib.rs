//! Benchmarks live in `benches/*.rs`; see the README performance section.
