//! Flaky tests: when a test gate fails, each failing test is re-run alone, up to N times; one
//! that passes on a re-run is flaky, not broken.
//!
//! Re-running one test alone needs the runner's own way of naming it, derived here from the
//! gate's argv: pytest takes the node id, `cargo test NAME -- --exact`, `go test -run '^Name$'`,
//! jest and vitest `-t NAME`. A gate whose runner is not recognised, or that is a shell script,
//! is re-run whole. Pure: the engine runs the commands and reports what it found.

use serde::{Deserialize, Serialize};

use crate::exec::CommandSpec;

/// A test runner whose tests can be re-run one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runner {
    Pytest,
    Cargo,
    Go,
    Jest,
    Vitest,
}

impl Runner {
    pub fn name(self) -> &'static str {
        match self {
            Runner::Pytest => "pytest",
            Runner::Cargo => "cargo",
            Runner::Go => "go",
            Runner::Jest => "jest",
            Runner::Vitest => "vitest",
        }
    }
}

fn base(arg: &str) -> &str {
    arg.rsplit('/').next().unwrap_or(arg)
}

/// The runner of a gate's argv, and the index its own arguments start at.
pub fn runner_of(run: &CommandSpec) -> Option<(Runner, usize)> {
    let CommandSpec::Argv(argv) = run else { return None };
    for (i, a) in argv.iter().enumerate() {
        let b = base(a);
        let next = argv.get(i + 1).map(String::as_str);
        match b {
            "pytest" | "py.test" => return Some((Runner::Pytest, i + 1)),
            _ if a == "-m" && next == Some("pytest") => return Some((Runner::Pytest, i + 2)),
            "cargo" if next == Some("test") => return Some((Runner::Cargo, i + 2)),
            "go" if next == Some("test") => return Some((Runner::Go, i + 2)),
            "jest" => return Some((Runner::Jest, i + 1)),
            "vitest" => return Some((Runner::Vitest, i + 1)),
            _ => {}
        }
    }
    None
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The gate's command narrowed to `test` alone, or `None` when the runner cannot be told (then
/// the whole gate is re-run).
pub fn isolated(run: &CommandSpec, test: &str) -> Option<CommandSpec> {
    let (runner, start) = runner_of(run)?;
    let CommandSpec::Argv(argv) = run else { return None };
    let (head, rest) = argv.split_at(start);
    let mut out: Vec<String> = head.to_vec();
    match runner {
        Runner::Pytest => {
            // options kept, the paths and `-k` selections replaced by the node id
            let mut skip_value = false;
            for a in rest {
                if skip_value {
                    skip_value = false;
                    continue;
                }
                if a == "-k" || a == "-m" {
                    skip_value = true;
                } else if a.starts_with('-') {
                    out.push(a.clone());
                }
            }
            out.push(test.to_owned());
        }
        Runner::Cargo => {
            let split = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
            out.extend(rest[..split].iter().cloned());
            out.push(test.to_owned());
            out.extend(["--".to_owned(), "--exact".to_owned()]);
            out.extend(rest[split..].iter().skip(1).cloned());
        }
        Runner::Go => {
            let mut skip_value = false;
            for a in rest {
                if skip_value {
                    skip_value = false;
                    continue;
                }
                if a == "-run" {
                    skip_value = true;
                } else if !a.starts_with("-run=") {
                    out.push(a.clone());
                }
            }
            let pattern: Vec<String> = test.split('/').map(|p| format!("^{}$", regex_escape(p))).collect();
            out.extend(["-run".to_owned(), pattern.join("/")]);
        }
        Runner::Jest | Runner::Vitest => {
            out.extend(rest.iter().cloned());
            let name = test.split(" › ").collect::<Vec<_>>().join(" ");
            out.extend(["-t".to_owned(), format!("^{}$", regex_escape(&name))]);
        }
    }
    Some(CommandSpec::Argv(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> CommandSpec {
        CommandSpec::Argv(a.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn each_runner_reruns_one_test_its_own_way() {
        let cases: [(&[&str], &str, &[&str]); 7] = [
            (
                &["python3", "-m", "pytest", "-q", "tests/"],
                "tests/test_a.py::test_x",
                &["python3", "-m", "pytest", "-q", "tests/test_a.py::test_x"],
            ),
            (
                &["pytest", "-x", "-k", "slow", "tests"],
                "tests/t.py::T::test_y",
                &["pytest", "-x", "tests/t.py::T::test_y"],
            ),
            (
                &["cargo", "test", "-q", "--", "--test-threads=1"],
                "tests::it_works",
                &["cargo", "test", "-q", "tests::it_works", "--", "--exact", "--test-threads=1"],
            ),
            (&["cargo", "test"], "a::b", &["cargo", "test", "a::b", "--", "--exact"]),
            (
                &["go", "test", "./...", "-run", "X"],
                "TestParse/empty",
                &["go", "test", "./...", "-run", "^TestParse$/^empty$"],
            ),
            (
                &["npx", "jest", "--ci"],
                "math › adds 1+1",
                &["npx", "jest", "--ci", "-t", "^math adds 1\\+1$"],
            ),
            (
                &["node_modules/.bin/vitest", "run"],
                "sum",
                &["node_modules/.bin/vitest", "run", "-t", "^sum$"],
            ),
        ];
        for (gate, test, want) in cases {
            assert_eq!(isolated(&argv(gate), test), Some(argv(want)), "{gate:?}");
        }
        assert_eq!(runner_of(&argv(&["make", "test"])), None);
        assert_eq!(isolated(&CommandSpec::Shell("pytest -q".into()), "t"), None, "a script is re-run whole");
    }
}
