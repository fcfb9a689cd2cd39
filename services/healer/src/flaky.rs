//! Flaky tests: a test that failed and then passed when re-run alone, as the orchestrator
//! reports it (`POST /v1/flaky`), listed per project (`GET /v1/flaky`).
//!
//! A flaky test gets a signature of its own, derived from the test's id alone (not from its
//! failure message, which for a flaky test varies: a timeout here, an assertion there), so every
//! report of the same test adds to one record, and the orchestrator can ask whether the tests
//! that failed now are known to be flaky before deciding what the failure means.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// One report: `test` failed, then passed on a re-run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlakyRecord {
    pub signature: String,
    pub test: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<String>,
}

/// A test found flaky, with how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlakyTest {
    /// The test as its runner names it (`tests/test_x.py::test_y`, `tests::it_works`).
    pub test: String,
    /// The test's signature (`flaky` failure class).
    pub signature: String,
    /// `pytest`, `cargo`, `go`, `jest`, ... when reported.
    pub runner: Option<String>,
    /// Phases it was flaky in.
    pub phases: Vec<String>,
    /// Times it failed and then passed on a re-run.
    pub times: u32,
    /// RFC 3339.
    pub first_seen: String,
    pub last_seen: String,
}

/// The signature of a test's flakiness: its id, versioned.
pub fn signature(test: &str) -> String {
    let digest = Sha256::digest(format!("flaky-test\0v1\0{test}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The flaky tests of `project` among `records`, most often flaky first, then most recent.
pub fn collect<'a>(
    records: impl Iterator<Item = &'a FlakyRecord>,
    project: &str,
    limit: usize,
) -> Vec<FlakyTest> {
    let mut by_test: BTreeMap<&str, (FlakyTest, i64, i64)> = BTreeMap::new();
    for r in records.filter(|r| r.project.as_deref().unwrap_or(crate::store::DEFAULT_PROJECT) == project) {
        let e = by_test.entry(r.test.as_str()).or_insert_with(|| {
            (
                FlakyTest {
                    test: r.test.clone(),
                    signature: r.signature.clone(),
                    runner: r.runner.clone(),
                    phases: Vec::new(),
                    times: 0,
                    first_seen: String::new(),
                    last_seen: String::new(),
                },
                i64::MAX,
                i64::MIN,
            )
        });
        e.0.times += 1;
        if let Some(p) = &r.phase
            && !e.0.phases.contains(p)
        {
            e.0.phases.push(p.clone());
        }
        if r.runner.is_some() {
            e.0.runner.clone_from(&r.runner);
        }
        e.1 = e.1.min(r.at_ms);
        e.2 = e.2.max(r.at_ms);
    }
    let mut out: Vec<(FlakyTest, i64)> = by_test
        .into_values()
        .map(|(mut t, first, last)| {
            t.first_seen = helix_core::time::rfc3339_ms(first);
            t.last_seen = helix_core::time::rfc3339_ms(last);
            (t, last)
        })
        .collect();
    out.sort_by(|a, b| b.0.times.cmp(&a.0.times).then(b.1.cmp(&a.1)));
    out.into_iter().take(limit).map(|(t, _)| t).collect()
}
