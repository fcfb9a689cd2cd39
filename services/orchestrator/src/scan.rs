//! Gate patterns matched against a command's whole output as it streams.
//!
//! What a phase keeps of its output is bounded (the first and last half of
//! `max_output_bytes`), but an `output_matches` gate must judge everything the command printed:
//! an `ERROR` in the middle of 3 MB must fail a negated "no errors" gate. So while the command
//! runs, its (masked) output passes through an [`OutputScan`]: the patterns are matched over a
//! window that slides along the stream, in memory bounded by [`OVERLAP`] plus one batch,
//! whatever the output's size, and in time linear in it (each byte is scanned at most about
//! twice). A match that spans more than [`OVERLAP`] bytes can only be seen in the kept output.

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

/// Bytes of the previous window scanned again with the next, so a match crossing a batch
/// boundary is found (from a line start where there is one).
pub const OVERLAP: usize = 64 * 1024;
/// Bytes collected before a scan: large batches keep the rescanned overlap a small share.
const BATCH: usize = 256 * 1024;

/// Where a pattern first matched in the whole output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    /// 1-based line number in the whole output.
    pub line_no: usize,
    /// That line (shortened).
    pub line: String,
}

/// See the module docs.
#[derive(Debug)]
pub struct OutputScan {
    patterns: Vec<(String, Option<Regex>)>,
    hits: Vec<Option<Hit>>,
    /// The tail of the last window (starting at a line start when one was in reach).
    carry: Vec<u8>,
    pending: Vec<u8>,
    /// Newlines before `carry`.
    lines_before: usize,
}

impl OutputScan {
    /// Scans for `patterns` (invalid ones never match; the gate reports them).
    pub fn new(patterns: &[String]) -> OutputScan {
        OutputScan {
            patterns: patterns.iter().map(|p| (p.clone(), Regex::new(p).ok())).collect(),
            hits: vec![None; patterns.len()],
            carry: Vec::new(),
            pending: Vec::new(),
            lines_before: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.patterns.is_empty() {
            return;
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= BATCH {
            self.scan();
        }
    }

    /// The first hit of each pattern, by pattern text.
    pub fn finish(mut self) -> Vec<(String, Option<Hit>)> {
        if !self.pending.is_empty() {
            self.scan();
        }
        self.patterns.into_iter().map(|(p, _)| p).zip(self.hits).collect()
    }

    fn scan(&mut self) {
        let mut window = std::mem::take(&mut self.carry);
        window.append(&mut self.pending);
        for ((_, re), hit) in self.patterns.iter().zip(self.hits.iter_mut()) {
            let (Some(re), None) = (re, hit.as_ref()) else { continue };
            if let Some(m) = re.find(&window) {
                let before = &window[..m.start()];
                let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let line_end = window[m.start()..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(window.len(), |i| m.start() + i);
                let line = String::from_utf8_lossy(&window[line_start..line_end]);
                *hit = Some(Hit {
                    line_no: self.lines_before + count_newlines(before) + 1,
                    line: shorten(&line, 200),
                });
            }
        }
        // keep the last OVERLAP bytes, from the first line start within them if there is one
        let mut keep_from = window.len().saturating_sub(OVERLAP);
        if keep_from > 0
            && let Some(i) = window[keep_from..].iter().position(|&b| b == b'\n')
            && keep_from + i + 1 < window.len()
        {
            keep_from += i + 1;
        }
        self.lines_before += count_newlines(&window[..keep_from]);
        window.drain(..keep_from);
        self.carry = window;
    }
}

fn count_newlines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]], patterns: &[&str]) -> Vec<Option<Hit>> {
        let mut s = OutputScan::new(&patterns.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>());
        for c in chunks {
            s.push(c);
        }
        s.finish().into_iter().map(|(_, h)| h).collect()
    }

    #[test]
    fn a_line_in_the_middle_of_megabytes_is_found_with_its_line_number() {
        let filler = "ok fine\n".repeat(200_000); // 1.6 MB
        let text = format!("{filler}ERROR: disk full\n{filler}");
        // fed in odd chunk sizes, so lines and the match cross chunk and batch boundaries
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(4093).collect();
        let hits = scan(&chunks, &["ERROR", "(?m)^never$", "disk\\s+full"]);
        let h = hits[0].as_ref().expect("found");
        assert_eq!((h.line_no, h.line.as_str()), (200_001, "ERROR: disk full"));
        assert_eq!(hits[1], None);
        assert_eq!(hits[2].as_ref().map(|h| h.line_no), Some(200_001));
    }

    #[test]
    fn a_match_across_a_batch_boundary_and_an_invalid_pattern() {
        let mut text = "x".repeat(BATCH - 3).into_bytes();
        text.extend_from_slice(b"needle\n");
        let hits = scan(&[&text[..BATCH], &text[BATCH..]], &["needle", "(unclosed"]);
        assert_eq!(hits[0].as_ref().map(|h| h.line_no), Some(1));
        assert_eq!(hits[1], None);
    }
}
