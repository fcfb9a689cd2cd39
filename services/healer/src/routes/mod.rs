//! Thin HTTP handlers: parse, call the domain, shape the answer.

pub mod analyze;
pub mod check;
pub mod fingerprint;
pub mod flaky;
pub mod learning;
pub mod metrics;
pub mod paths;
pub mod patterns;
pub mod propose;
