//! Splitting raw tool output into diagnostics.
//!
//! Each submodule recognises one family of formats and claims the lines it explains. Parsers
//! run in a fixed order, most specific first (a JSON body of an LLM provider before a Python
//! traceback before a bare `error:` line), and never claim a line an earlier parser claimed.
//! What nobody claims goes to the generic parser. All parsers are line-based with cheap
//! prefilters, and every regex runs on the `regex` crate's linear-time engine, so no input can
//! make a parser backtrack without bound.
//!
//! Linear time needs one more bound: a regex search is linear in its haystack, but a parser that
//! searches a line again from each place it stopped can scan the rest of the line every time. So
//! parsers see at most [`MAX_LINE_BYTES`] of each line (a minified bundle or a JSON blob printed on
//! one line is cut, at a character boundary), and the work per line is bounded by a constant.

mod cc;
mod generic;
mod go;
mod javac;
mod llm;
mod node;
mod python;
mod rust;
mod shell;
mod tsc;

use crate::model::{Location, RawDiagnostic};

/// The output being parsed: its lines and which of them a parser already explained.
pub struct Input<'a> {
    pub text: &'a str,
    /// The lines, each cut to [`MAX_LINE_BYTES`].
    pub lines: Vec<&'a str>,
    /// The lines cut, whole: for a parser that reads a line as one JSON document (linear).
    long: Vec<(usize, &'a str)>,
    claimed: Vec<bool>,
    /// The caller's hint of which tool printed this (`tool` in the request), lowercased.
    pub hint: Option<String>,
}

/// Bytes of a line the parsers look at; the rest of a longer line is ignored.
pub const MAX_LINE_BYTES: usize = 4096;

/// `line` cut to at most [`MAX_LINE_BYTES`], at a character boundary.
pub fn bounded(line: &str) -> &str {
    if line.len() <= MAX_LINE_BYTES {
        return line;
    }
    let mut end = MAX_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

impl<'a> Input<'a> {
    pub fn new(text: &'a str, hint: Option<&str>) -> Input<'a> {
        let mut long = Vec::new();
        let lines: Vec<&str> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let b = bounded(l);
                if b.len() < l.len() {
                    long.push((i, l));
                }
                b
            })
            .collect();
        let claimed = vec![false; lines.len()];
        Input {
            text,
            lines,
            long,
            claimed,
            hint: hint.map(|h| h.trim().to_lowercase()).filter(|h| !h.is_empty()),
        }
    }

    /// Line `i` whole, also when it is longer than [`MAX_LINE_BYTES`].
    pub fn whole_line(&self, i: usize) -> &'a str {
        match self.long.binary_search_by_key(&i, |(j, _)| *j) {
            Ok(k) => self.long[k].1,
            Err(_) => self.lines.get(i).copied().unwrap_or(""),
        }
    }

    pub fn is_claimed(&self, i: usize) -> bool {
        self.claimed.get(i).copied().unwrap_or(true)
    }

    pub fn claim(&mut self, from: usize, to: usize) {
        let end = to.min(self.lines.len().saturating_sub(1));
        for c in self.claimed.iter_mut().take(end + 1).skip(from) {
            *c = true;
        }
    }
}

/// Runs every parser over `text` and returns the diagnostics in output order.
pub fn parse(text: &str, hint: Option<&str>) -> Vec<RawDiagnostic> {
    let mut input = Input::new(text, hint);
    let mut out = Vec::new();
    let parsers: [fn(&mut Input, &mut Vec<RawDiagnostic>); 10] = [
        llm::parse,
        rust::parse_json,
        python::parse,
        rust::parse,
        tsc::parse,
        javac::parse,
        go::parse,
        cc::parse,
        node::parse,
        shell::parse,
    ];
    for parser in parsers {
        let before = out.len();
        parser(&mut input, &mut out);
        for d in &out[before..] {
            let (a, b) = d.span;
            input.claim(a, b);
        }
    }
    generic::parse(&mut input, &mut out);
    out.sort_by_key(|d| d.span.0);
    out
}

/// Parses `file:line[:col]` (the forms compilers print), or returns None.
pub fn location(s: &str) -> Option<Location> {
    let s = s.trim();
    let mut parts = s.rsplitn(3, ':');
    let last = parts.next()?;
    let mid = parts.next();
    let first = parts.next();
    match (first, mid, last) {
        (Some(file), Some(line), col) if line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok() => {
            Some(Location { file: file.to_owned(), line: line.parse().ok(), column: col.parse().ok() })
        }
        (file, Some(f2), line) if line.parse::<u32>().is_ok() => {
            let file = match file {
                Some(f) => format!("{f}:{f2}"),
                None => f2.to_owned(),
            };
            (!file.is_empty()).then(|| Location { file, line: line.parse().ok(), column: None })
        }
        _ => None,
    }
}

/// Compiles a constant regex. Patterns are fixed at build time; a typo fails every test.
#[allow(clippy::expect_used)]
pub(crate) fn re(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("valid parser regex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l = location("src/main.rs:42:17").expect("loc");
        assert_eq!((l.file.as_str(), l.line, l.column), ("src/main.rs", Some(42), Some(17)));
        let l = location("App.java:2").expect("loc");
        assert_eq!((l.file.as_str(), l.line, l.column), ("App.java", Some(2), None));
        assert!(location("no location here").is_none());
    }
}

#[cfg(test)]
mod generic_tests {
    use super::parse;

    #[test]
    fn repeated_log_errors_collapse_into_events() {
        let mut log = String::new();
        for i in 0..500 {
            log.push_str(&format!(
                "2026-11-25 10:00:{:02} worker-{i} ERROR quota exceeded for tenant t{i}\n",
                i % 60
            ));
            if i == 250 {
                log.push_str("2026-11-25 10:04:10 db ERROR replica set lost its primary\n");
            }
        }
        let d = parse(&log, None);
        assert_eq!(d.len(), 2, "{:?}", d.iter().map(|d| &d.message).collect::<Vec<_>>());
        assert!(d[1].message.contains("replica set"));
    }
}
