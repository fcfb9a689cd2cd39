//! Reading test results out of a test runner's console output.
//!
//! A command gate that runs the tests must tell "the same 2 tests still fail" from "a new test
//! fails", which an exit code cannot. Runners already print a summary and the names of failed
//! tests; we read those lines (cargo test, pytest, go test, jest, vitest, and the plain
//! `N passed, N failed` line) rather than asking each project to configure a report format.
//! Several runners in one output (a script running two suites) add up.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Counts and failed test ids of one test run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSummary {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Ids of the failed tests as the runner names them (`tests::it_works`,
    /// `tests/test_x.py::test_y`, `TestX/sub`, `Suite › name`). May hold fewer entries than
    /// `failed` when the runner did not name every failure.
    pub failures: BTreeSet<String>,
}

impl TestSummary {
    /// Failures of `self` that `baseline` did not have. When either side did not name all its
    /// failures, ids cannot be compared, and a higher failure count is reported as
    /// `"N more failing tests than the baseline"`.
    pub fn new_failures(&self, baseline: &TestSummary) -> Vec<String> {
        let named = |s: &TestSummary| s.failures.len() as u64 >= s.failed;
        if named(self) && named(baseline) {
            return self.failures.difference(&baseline.failures).cloned().collect();
        }
        let mut new: Vec<String> = self.failures.difference(&baseline.failures).cloned().collect();
        if new.is_empty() && self.failed > baseline.failed {
            new.push(format!("{} more failing tests than the baseline", self.failed - baseline.failed));
        }
        new
    }

    fn merge(&mut self, other: TestSummary) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.failures.extend(other.failures);
    }
}

/// The summary of every test runner output recognised in `output`, or `None` when there is none.
pub fn parse(output: &str) -> Option<TestSummary> {
    let text = strip_ansi(output);
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let found: Vec<TestSummary> =
        [cargo(&lines), pytest(&lines), go(&lines), jest(&lines), vitest(&lines), plain(&lines)]
            .into_iter()
            .flatten()
            .collect();
    if found.is_empty() {
        return None;
    }
    let mut total = TestSummary::default();
    for s in found {
        total.merge(s);
    }
    // A run cut short may have named failures without printing its summary.
    total.failed = total.failed.max(total.failures.len() as u64);
    Some(total)
}

fn strip_ansi(s: &str) -> String {
    static ANSI: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07").expect("ansi regex"));
    if s.contains('\x1b') { ANSI.replace_all(s, "").into_owned() } else { s.to_owned() }
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("test summary regex")
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or(0)
}

fn cargo(lines: &[&str]) -> Option<TestSummary> {
    static RESULT: LazyLock<Regex> = LazyLock::new(|| {
        re(r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored(?:; \d+ measured)?")
    });
    static FAILED_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"^test (.+?) \.\.\. FAILED$"));
    static STDOUT_HEAD: LazyLock<Regex> = LazyLock::new(|| re(r"^---- (.+?) stdout ----$"));
    let mut s = TestSummary::default();
    let mut seen = false;
    let mut in_list = false;
    for line in lines {
        if let Some(c) = RESULT.captures(line) {
            seen = true;
            s.passed += num(&c[1]);
            s.failed += num(&c[2]);
            s.skipped += num(&c[3]);
        } else if let Some(c) = FAILED_LINE.captures(line).or_else(|| STDOUT_HEAD.captures(line)) {
            s.failures.insert(c[1].to_owned());
        } else if *line == "failures:" {
            in_list = true;
            continue;
        } else if in_list {
            // The second `failures:` block lists the names, indented by four spaces.
            match line.strip_prefix("    ") {
                Some(name) if !name.trim().is_empty() && !name.starts_with(' ') => {
                    s.failures.insert(name.trim().to_owned());
                    continue;
                }
                _ => {}
            }
        }
        in_list = false;
    }
    seen.then_some(s)
}

fn pytest(lines: &[&str]) -> Option<TestSummary> {
    static SUMMARY: LazyLock<Regex> = LazyLock::new(|| {
        let word = "(?:passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?|rerun)";
        re(&format!(r"^(?:=+ )?((?:\d+ {word}, )*\d+ {word}) in \d+(?:\.\d+)?s(?: \([0-9:.]+\))?(?: =+)?$"))
    });
    static PART: LazyLock<Regex> = LazyLock::new(|| re(r"(\d+) ([a-z]+)"));
    static FAILED: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:FAILED|ERROR) (\S+)(?: - .*)?$"));
    let mut s = TestSummary::default();
    let mut seen = false;
    for line in lines {
        if let Some(c) = SUMMARY.captures(line) {
            seen = true;
            for p in PART.captures_iter(&c[1]) {
                let n = num(&p[1]);
                match &p[2] {
                    "passed" | "xpassed" => s.passed += n,
                    "failed" | "error" | "errors" => s.failed += n,
                    "skipped" | "xfailed" => s.skipped += n,
                    _ => {}
                }
            }
        } else if let Some(c) = FAILED.captures(line) {
            s.failures.insert(c[1].to_owned());
        }
    }
    seen.then_some(s)
}

fn go(lines: &[&str]) -> Option<TestSummary> {
    static RESULT: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*--- (PASS|FAIL|SKIP): (\S+) \("));
    static PACKAGE: LazyLock<Regex> =
        LazyLock::new(|| re(r"^(ok|FAIL)\s+(\S+)\s+(?:\d+(?:\.\d+)?s|\(cached\)|\[(build|setup) failed\])"));
    let mut s = TestSummary::default();
    let mut seen = false;
    for line in lines {
        if let Some(c) = RESULT.captures(line) {
            seen = true;
            match &c[1] {
                "PASS" => s.passed += 1,
                "FAIL" => {
                    s.failed += 1;
                    s.failures.insert(c[2].to_owned());
                }
                _ => s.skipped += 1,
            }
        } else if let Some(c) = PACKAGE.captures(line) {
            seen = true;
            if let Some(what) = c.get(3) {
                s.failed += 1;
                s.failures.insert(format!("{} [{} failed]", &c[2], what.as_str()));
            }
        }
    }
    seen.then_some(s)
}

fn jest(lines: &[&str]) -> Option<TestSummary> {
    static TESTS: LazyLock<Regex> = LazyLock::new(|| re(r"^Tests:\s+(.*\d+ total)$"));
    static BULLET: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*● (.+?)\s*$"));
    static SUITE: LazyLock<Regex> = LazyLock::new(|| re(r"^FAIL (\S+)"));
    let mut s = TestSummary::default();
    let mut seen = false;
    let mut suite = None;
    for line in lines {
        if let Some(c) = TESTS.captures(line) {
            seen = true;
            add_counts(&mut s, &c[1]);
        } else if let Some(c) = SUITE.captures(line) {
            suite = Some(c[1].to_owned());
        } else if let Some(c) = BULLET.captures(line) {
            match &c[1] {
                "Console" => {}
                "Test suite failed to run" => {
                    let id = suite.as_deref().unwrap_or("test suite");
                    s.failures.insert(format!("{id} (failed to run)"));
                    s.failed += 1;
                }
                name => {
                    s.failures.insert(name.to_owned());
                }
            }
        }
    }
    seen.then_some(s)
}

/// Adds jest/vitest-style counts (`3 passed`, `1 failed`, `2 todo`, ...) of `text` to `s`.
fn add_counts(s: &mut TestSummary, text: &str) {
    static PART: LazyLock<Regex> = LazyLock::new(|| re(r"(\d+) ([a-z]+)"));
    for p in PART.captures_iter(text) {
        let n = num(&p[1]);
        match &p[2] {
            "passed" => s.passed += n,
            "failed" => s.failed += n,
            "skipped" | "todo" => s.skipped += n,
            _ => {}
        }
    }
}

fn vitest(lines: &[&str]) -> Option<TestSummary> {
    static TESTS: LazyLock<Regex> =
        LazyLock::new(|| re(r"^\s*Tests\s{2,}(\d+ [a-z]+(?: \| \d+ [a-z]+)*)\s+\(\d+\)"));
    static FAIL: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*FAIL\s+(\S+ > .+?)\s*$"));
    let mut s = TestSummary::default();
    let mut seen = false;
    for line in lines {
        if let Some(c) = TESTS.captures(line) {
            seen = true;
            add_counts(&mut s, &c[1]);
        } else if let Some(c) = FAIL.captures(line) {
            s.failures.insert(c[1].to_owned());
        }
    }
    seen.then_some(s)
}

/// `N passed, N failed[, N skipped]` alone on a line, optionally after one `word:`.
fn plain(lines: &[&str]) -> Option<TestSummary> {
    static LINE: LazyLock<Regex> =
        LazyLock::new(|| re(r"^(?:\w+: )?(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$"));
    let mut s = TestSummary::default();
    let mut seen = false;
    for line in lines {
        if let Some(c) = LINE.captures(line.trim()) {
            seen = true;
            s.passed += num(&c[1]);
            s.failed += num(&c[2]);
            s.skipped += c.get(3).map_or(0, |m| num(m.as_str()));
        }
    }
    seen.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &TestSummary) -> Vec<&str> {
        s.failures.iter().map(String::as_str).collect()
    }

    const CARGO_FAILING: &str = r#"   Compiling calc v0.1.0 (/tmp/calc)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.52s
     Running unittests src/lib.rs (target/debug/deps/calc-3f2a)

running 4 tests
test tests::adds ... ok
test tests::divides ... FAILED
test tests::parses::negative ... FAILED
test tests::slow ... ignored

failures:

---- tests::divides stdout ----

thread 'tests::divides' panicked at src/lib.rs:20:9:
assertion `left == right` failed
  left: 2
 right: 3
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

---- tests::parses::negative stdout ----
thread 'tests::parses::negative' panicked at src/lib.rs:31:9:
boom


failures:
    tests::divides
    tests::parses::negative

test result: FAILED. 1 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: test failed, to rerun pass `--lib`
"#;

    #[test]
    fn cargo_test_counts_and_names() {
        let s = parse(CARGO_FAILING).expect("summary");
        assert_eq!((s.passed, s.failed, s.skipped), (1, 2, 1));
        assert_eq!(ids(&s), ["tests::divides", "tests::parses::negative"]);
    }

    #[test]
    fn cargo_test_quiet_mode_and_several_binaries_add_up() {
        let out = "running 3 tests\n.F.\nfailures:\n\n---- it_b stdout ----\nboom\n\nfailures:\n    it_b\n\n\
                   test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\n\
                   running 5 tests\n.....\ntest result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\n\
                   running 1 test\ntest src/lib.rs - add (line 3) ... ok\n\
                   test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.2s\n";
        let s = parse(out).expect("summary");
        assert_eq!((s.passed, s.failed, s.skipped), (8, 1, 0));
        assert_eq!(ids(&s), ["it_b"]);
    }

    #[test]
    fn pytest_summary_and_failed_lines() {
        let out = "============================= test session starts ==============================\n\
                   platform linux -- Python 3.12.3, pytest-8.2.0, pluggy-1.5.0\n\
                   collected 8 items\n\n\
                   tests/test_calc.py ..F.s.F.                                               [100%]\n\n\
                   =================================== FAILURES ===================================\n\
                   ________________________________ test_divide ___________________________________\n\
                   E       assert 2 == 3\n\
                   =========================== short test summary info ============================\n\
                   FAILED tests/test_calc.py::test_divide - assert 2 == 3\n\
                   FAILED tests/test_calc.py::TestParse::test_neg[-1] - ValueError: bad\n\
                   ==================== 2 failed, 5 passed, 1 skipped in 0.12s ====================\n";
        let s = parse(out).expect("summary");
        assert_eq!((s.passed, s.failed, s.skipped), (5, 2, 1));
        assert_eq!(
            ids(&s),
            ["tests/test_calc.py::TestParse::test_neg[-1]", "tests/test_calc.py::test_divide"]
        );
    }

    #[test]
    fn pytest_quiet_collection_errors_and_colours() {
        let out = "\x1b[31mERROR tests/test_io.py - ModuleNotFoundError: No module named 'requests'\x1b[0m\n\
                   !!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!\n\
                   \x1b[31m1 error in 0.08s\x1b[0m\n";
        let s = parse(out).expect("summary");
        assert_eq!((s.passed, s.failed), (0, 1));
        assert_eq!(ids(&s), ["tests/test_io.py"]);
        let ok =
            parse("........                                   [100%]\n8 passed in 0.03s\n").expect("summary");
        assert_eq!((ok.passed, ok.failed, ok.failures.len()), (8, 0, 0));
    }

    #[test]
    fn go_test_verbose_and_build_failures() {
        let out = "=== RUN   TestAdd\n--- PASS: TestAdd (0.00s)\n=== RUN   TestDiv\n\
                   === RUN   TestDiv/by_zero\n    calc_test.go:20: want error\n\
                   --- FAIL: TestDiv (0.00s)\n    --- FAIL: TestDiv/by_zero (0.00s)\n\
                   --- SKIP: TestSlow (0.00s)\nFAIL\nFAIL\texample.com/calc\t0.004s\n\
                   ok  \texample.com/calc/parse\t(cached)\n\
                   FAIL\texample.com/calc/cmd [build failed]\nFAIL\n";
        let s = parse(out).expect("summary");
        assert_eq!((s.passed, s.failed, s.skipped), (1, 3, 1));
        assert_eq!(ids(&s), ["TestDiv", "TestDiv/by_zero", "example.com/calc/cmd [build failed]"]);
        let quiet = parse("ok  \texample.com/calc\t0.002s\n").expect("summary");
        assert_eq!(quiet.failed, 0);
    }

    #[test]
    fn jest_summary_and_bullets() {
        let out = "FAIL src/calc.test.js\n  Calculator\n    ✓ adds (2 ms)\n    ✕ divides (3 ms)\n\n\
                   \x20 ● Calculator › divides\n\n    expect(received).toBe(expected)\n\n\
                   \x20 ● Console\n\n    console.log\n      hello\n\n\
                   FAIL src/broken.test.js\n  ● Test suite failed to run\n\n    Cannot find module './nope'\n\n\
                   Test Suites: 2 failed, 1 passed, 3 total\n\
                   Tests:       1 failed, 1 skipped, 3 passed, 5 total\n\
                   Snapshots:   0 total\nTime:        1.2 s\n";
        let s = parse(out).expect("summary");
        assert_eq!((s.passed, s.failed, s.skipped), (3, 2, 1));
        assert_eq!(ids(&s), ["Calculator › divides", "src/broken.test.js (failed to run)"]);
    }

    #[test]
    fn vitest_summary_and_fail_lines() {
        let out = " ❯ src/calc.test.ts (3 tests | 1 failed) 5ms\n   × divides 3ms\n\n\
                   ⎯⎯⎯⎯⎯⎯⎯ Failed Tests 1 ⎯⎯⎯⎯⎯⎯⎯\n\n\
                   \x20FAIL  src/calc.test.ts > Calculator > divides\n\
                   AssertionError: expected 2 to be 3\n\n\
                   \x20Test Files  1 failed (1)\n\
                   \x20     Tests  1 failed | 2 passed (3)\n\
                   \x20  Start at  10:00:00\n";
        let s = parse(out).expect("summary");
        assert_eq!((s.passed, s.failed, s.skipped), (2, 1, 0));
        assert_eq!(ids(&s), ["src/calc.test.ts > Calculator > divides"]);
    }

    #[test]
    fn plain_line_and_nothing_recognised() {
        let s = parse("running my suite\nresults: 7 passed, 2 failed, 1 skipped\n").expect("summary");
        assert_eq!((s.passed, s.failed, s.skipped), (7, 2, 1));
        assert!(parse("Compiling...\nerror[E0308]: mismatched types\n").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn new_failures_by_id_and_by_count() {
        let base = parse(CARGO_FAILING).expect("summary");
        let same = base.clone();
        assert!(same.new_failures(&base).is_empty());
        let mut worse = base.clone();
        worse.failed += 1;
        worse.failures.insert("tests::fresh".into());
        assert_eq!(worse.new_failures(&base), ["tests::fresh"]);
        let mut fixed = base.clone();
        fixed.failed -= 1;
        fixed.failures.remove("tests::divides");
        assert!(fixed.new_failures(&base).is_empty());

        let counted = |failed| TestSummary { failed, ..TestSummary::default() };
        assert!(counted(2).new_failures(&counted(2)).is_empty());
        assert_eq!(counted(3).new_failures(&counted(2)), ["1 more failing tests than the baseline"]);
    }

    #[test]
    fn a_run_cut_short_still_counts_named_failures() {
        let s = parse("running 3 tests\ntest a ... ok\ntest b ... FAILED\ntest result: FAILED. 1 passed; 0 failed; 0 ignored\n")
            .expect("summary");
        assert_eq!(s.failed, 1);
    }
}
