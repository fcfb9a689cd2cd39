//! Lines no dedicated parser explained but that say something failed: keyword matches, grouped
//! by event with the template miner (a log that repeats one error a thousand times, with another
//! error in between, yields both errors, not the first twenty repeats), at most [`MAX_GENERIC`].

use std::sync::LazyLock;

use regex::Regex;

use super::{Input, re};
use crate::model::{RawDiagnostic, Severity, rank};

/// A runaway log must not turn into thousands of diagnostics.
pub const MAX_GENERIC: usize = 20;

/// Error-looking lines examined per output; beyond this the rest of a runaway log is ignored.
const MAX_CANDIDATES: usize = 20_000;

/// Lines after a headline kept as its context (where patterns look for a name the headline does
/// not carry: `Error: Reference to undeclared input variable` / `... with the name "region"`),
/// and how far ahead they are looked for; each is cut to [`CONTEXT_BYTES`].
const CONTEXT_LINES: usize = 6;
const CONTEXT_REACH: usize = 12;
const CONTEXT_BYTES: usize = 512;

static ERRORISH: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?-u:\b)(?:error|errors|fatal|panic|panicked|exception|traceback|failed|failure|fail|denied|refused|not found|no such|cannot|can't|could not|couldn't|unable to|timed? ?out|killed|segmentation fault|core dumped|aborted|undefined|unresolved|missing|invalid|unexpected|overloaded|too many requests|exceeded|out of memory|no space|disk full|quota|oom|permission|unreachable|unavailable|forbidden|unauthori[sz]ed|not allowed|illegal|abort|crash(?:ed)?|broken|corrupt(?:ed)?|violation|rejected|expired|deadlock|conflict|unsupported|not supported|incompatible|mismatch|unrecognized|unknown (?:option|command|flag)|does not exist|doesn't exist|not matched|no matches found|no response|not recognized|unterminated|within string)(?-u:\b)",
    )
});
/// Findings of security scanners, which often print no error word at all
/// (`src/settings.py:12: secret detected: AWS access key id`): they must become diagnostics, so
/// that the `security` patterns can classify them wherever they sit in the output.
static SECURITY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:secret|api[ _-]?key|access[ _-]?key|token|credential|password|private[ _-]key)s? (?:detected|leaked|exposed|found)|(?-u:\b)(?:gitleaks|trufflehog|detect-secrets)(?-u:\b)|(?-u:\b)CVE-\d{4}-\d{4,}(?-u:\b)|vulnerabilit(?:y|ies) (?:found|detected)|(?:integrity|signature) check failed",
    )
});
/// Summary lines that only repeat that something above failed: used only when nothing else
/// was found.
static TRAILER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:\d+ (?:errors?|warnings?)(?: (?:and \d+ warnings? )?generated)?\.?|(?:[\w.-]+: )?found \d+ (?:fatal )?errors?.*|fail(?:ed)?(?:\s.*)?|failed \(.*\)|collect2: error: ld returned.*|for more information about this error.*|error: aborting due to.*|compilation terminated\.|make(?:\[\d+\])?: \*\*\* .*error \d+|error: recipe .*|error: process completed with exit code \d+\.?|exit status \d+|.*elifecycle.*|=+ .* =+|tests?: .*failed.*|error: command failed with exit code \d+\.?|.*returned non-zero exit status \d+\.?|.*exited with (?:code|status) \d+\.?|> task \S+ failed|build failed.*|build failure|failure: build failed.*|execution failed for task.*|\* what went wrong:|ninja: build stopped.*|test suites?: .*failed.*|\[error\] (?:to see the full stack trace|re-run maven|for more information about the errors|\[help \d+\]).*|error: build failed.*)$",
    )
});
static WARNISH: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\W*(?:warn|warning)\b"));

pub fn parse(input: &mut Input, out: &mut Vec<RawDiagnostic>) {
    let hint_tool = input.hint.clone().unwrap_or_else(|| "generic".to_owned());
    let mut count = 0;
    let mut trailers = Vec::new();
    let mut miner = crate::mining::Miner::new();
    let mut events = std::collections::HashSet::new();
    let mut candidates = 0;
    for i in 0..input.lines.len() {
        if count >= MAX_GENERIC || candidates >= MAX_CANDIDATES {
            break;
        }
        if input.is_claimed(i) {
            continue;
        }
        let line = input.lines[i].trim();
        if line.len() < 4 || line.len() > 2000 {
            continue;
        }
        // most lines say nothing went wrong: one cheap keyword scan decides
        let errorish = ERRORISH.is_match(line) || SECURITY.is_match(line);
        if !errorish && !line.contains("exit") && !line.contains("===") {
            continue;
        }
        if TRAILER.is_match(line) {
            trailers.push(i);
            continue;
        }
        if !errorish {
            continue;
        }
        candidates += 1;
        // one diagnostic per event: a repeat of a template already reported adds nothing
        let id = miner.add(line);
        if !events.insert(miner.canonical(id)) {
            continue;
        }
        let warning = WARNISH.is_match(line);
        out.push(RawDiagnostic {
            tool: hint_tool.clone(),
            severity: Some(if warning { Severity::Warning } else { Severity::Error }),
            message: line.to_owned(),
            span: (i, i),
            rank: rank::GENERIC - i32::from(warning),
            context: context_after(input, i),
            ..RawDiagnostic::default()
        });
        count += 1;
    }
    // Nothing but a summary (`make: *** [all] Error 1`): that is better than nothing.
    if out.is_empty()
        && let Some(&i) = trailers.first()
    {
        out.push(RawDiagnostic {
            tool: hint_tool,
            severity: Some(Severity::Error),
            message: input.lines[i].trim().to_owned(),
            span: (i, i),
            rank: rank::GENERIC - 5,
            ..RawDiagnostic::default()
        });
    }
}

/// The non-blank lines after line `i` that no parser claimed, bounded in count, reach and size.
fn context_after(input: &Input, i: usize) -> Vec<String> {
    let end = input.lines.len().min(i + 1 + CONTEXT_REACH);
    (i + 1..end)
        .filter(|&j| !input.is_claimed(j))
        .map(|j| input.lines[j].trim())
        .filter(|l| !l.is_empty())
        .take(CONTEXT_LINES)
        .map(|l| {
            let mut cut = l.len().min(CONTEXT_BYTES);
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            l[..cut].to_owned()
        })
        .collect()
}
