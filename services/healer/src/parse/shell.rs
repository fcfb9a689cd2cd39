//! Shells and command-line programs: `bash: line 1: helm: command not found`,
//! `sh: 1: helm: not found`, `zsh: command not found: helm`, `cat: x: No such file or directory`.

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{RawDiagnostic, Severity, rank};

static SHELL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?P<shell>(?:/usr)?(?:/bin/)?(?:ba|z|da|k|fi)?sh)(?:: line (?P<line>\d+)|: (?P<line2>\d+))?: (?P<msg>.+)$",
    )
});
static PROGRAM: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?P<prog>[A-Za-z][\w.+-]{0,40}): (?P<msg>.*(?:No such file or directory|Permission denied|Is a directory|Not a directory|File exists|Operation not permitted|cannot access|cannot stat|cannot open|cannot create|No space left on device|Read-only file system|missing operand|invalid option|unrecognized option).*)$",
    )
});

/// Phrases a program's error line carries (the PROGRAM regex's alternatives), checked with a
/// plain substring scan before any regex runs: most lines of a log have none of them.
const PROGRAM_NEEDLES: &[&str] = &[
    "No such file",
    "Permission denied",
    "Is a directory",
    "Not a directory",
    "File exists",
    "Operation not permitted",
    "cannot ",
    "No space left",
    "Read-only file system",
    "missing operand",
    "invalid option",
    "unrecognized option",
];

fn shellish(line: &str) -> bool {
    let l = line.trim_start_matches("/usr").trim_start_matches("/bin/");
    ["sh:", "bash:", "zsh:", "dash:", "ksh:", "fish:"].iter().any(|p| l.starts_with(p))
}

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    for i in 0..input.lines.len() {
        if input.is_claimed(i) {
            continue;
        }
        let line = input.lines[i].trim_end();
        if shellish(line)
            && let Some(c) = SHELL.captures(line)
        {
            let mut d = RawDiagnostic {
                tool: c["shell"].rsplit('/').next().unwrap_or("sh").to_owned(),
                severity: Some(Severity::Error),
                message: line.to_owned(),
                span: (i, i),
                rank: rank::ERROR,
                ..RawDiagnostic::default()
            };
            if let Some(l) = c.name("line").or(c.name("line2")) {
                d.params.insert("line".to_owned(), l.as_str().to_owned());
            }
            out.push(d);
        } else if line.contains(": ")
            && PROGRAM_NEEDLES.iter().any(|n| line.contains(n))
            && let Some(c) = PROGRAM.captures(line)
            && !matches!(&c["prog"], "error" | "warning" | "note" | "Error" | "fatal")
        {
            out.push(RawDiagnostic {
                tool: c["prog"].to_owned(),
                severity: Some(Severity::Error),
                message: line.to_owned(),
                span: (i, i),
                rank: rank::ERROR,
                ..RawDiagnostic::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn shells_and_programs() {
        let d = parse("bash: line 1: helm: command not found\n", None);
        assert_eq!((d[0].tool.as_str(), d[0].params.get("line").map(String::as_str)), ("bash", Some("1")));
        let d = parse("sh: 1: pnpm: not found\n", None);
        assert_eq!(d[0].tool, "sh");
        let d = parse("cat: build/out.bin: No such file or directory\n", None);
        assert_eq!(d[0].tool, "cat");
    }
}
