//! The compiled regexes of the knowledge base's patterns.
//!
//! Why not `regex::Regex`: for every regex with capture groups the `regex` crate also builds a
//! one-pass DFA, up to 1 MiB each, and offers no switch for it. Over the seed patterns that was
//! 16 MB, a third of an idle healer's heap, to speed up a capture search that runs only on the
//! few patterns whose regex already matched. So the patterns are compiled with `regex-automata`'s
//! meta regex (the engine under `regex`, same syntax, same linear-time guarantee) with the
//! one-pass DFA off; captures then use the bounded backtracker or the PikeVM.

use regex_automata::meta::Regex;
use regex_automata::util::captures::Captures;

/// One compiled pattern regex.
#[derive(Debug, Clone)]
pub struct Matcher {
    re: Regex,
    source: String,
}

/// A group's match: its byte range in the searched text, and the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group<'h> {
    start: usize,
    end: usize,
    text: &'h str,
}

impl<'h> Group<'h> {
    pub fn start(&self) -> usize {
        self.start
    }
    pub fn end(&self) -> usize {
        self.end
    }
    pub fn as_str(&self) -> &'h str {
        self.text
    }
}

/// The groups of one match.
#[derive(Debug, Clone)]
pub struct Groups<'h> {
    hay: &'h str,
    caps: Captures,
}

impl<'h> Groups<'h> {
    /// The named group's match, if it took part.
    pub fn name(&self, name: &str) -> Option<Group<'h>> {
        let span = self.caps.get_group_by_name(name)?;
        Some(Group { start: span.start, end: span.end, text: self.hay.get(span.start..span.end)? })
    }
}

impl Matcher {
    /// Compiles `pattern`; the error is the regex parser's message.
    pub fn new(pattern: &str) -> Result<Matcher, String> {
        let re = Regex::builder()
            .configure(Regex::config().onepass(false))
            .build(pattern)
            .map_err(|e| e.to_string())?;
        Ok(Matcher { re, source: pattern.to_owned() })
    }

    /// The regex as written (after the loader's rewriting of `\b`).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, hay: &str) -> bool {
        self.re.is_match(hay)
    }

    /// The groups of the leftmost-first match, if any.
    pub fn captures<'h>(&self, hay: &'h str) -> Option<Groups<'h>> {
        let mut caps = self.re.create_captures();
        self.re.captures(hay, &mut caps);
        caps.is_match().then_some(Groups { hay, caps })
    }

    /// Group names in group order (`None` for unnamed groups and the whole match).
    pub fn capture_names(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        self.re.group_info().pattern_names(regex_automata::PatternID::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_groups_like_regex() {
        let m = Matcher::new(r"No module named '(?P<module>[\w.]+)'(?: \((?P<why>\w+)\))?").expect("regex");
        let hay = "ModuleNotFoundError: No module named 'yaml.x'";
        let g = m.captures(hay).expect("match");
        let module = g.name("module").expect("module");
        assert_eq!((module.as_str(), module.start(), module.end()), ("yaml.x", 38, 44));
        assert!(g.name("why").is_none(), "a group that took no part");
        assert!(g.name("nope").is_none());
        assert_eq!(m.capture_names().collect::<Vec<_>>(), vec![None, Some("module"), Some("why")]);
        assert!(m.captures("nothing").is_none());
        // Unicode as in `regex`: \w takes letters beyond ASCII
        assert_eq!(
            m.captures("No module named 'modül'").and_then(|g| g.name("module")).map(|g| g.as_str()),
            Some("modül")
        );
        assert!(Matcher::new("(").is_err());
    }
}
