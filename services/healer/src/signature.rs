//! Signatures: a stable fingerprint of one diagnostic message.
//!
//! The variable parts of a message (paths, numbers, quoted names, addresses, ids, timestamps)
//! are masked into placeholders, and the resulting template is hashed with SHA-256. So the same
//! root cause gets the same signature on every machine, in every checkout and for every name,
//! while different messages get different ones. The algorithm is versioned: the version is part
//! of the hashed input and of every stored record, so a later `v2` never collides with `v1`.
//!
//! This module is pure (no IO, no actix), so it is unit-tested and benchmarked directly.

use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest, Sha256};

/// Version of the masking and hashing rules below.
pub const SIGNATURE_VERSION: &str = "v1";

/// One masked variable part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Kind of the part: `uuid`, `timestamp`, `hex`, `quoted`, `path`, `number`.
    pub kind: &'static str,
    /// The text that was masked.
    pub value: String,
}

/// The fingerprint of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// 64 hex digits of SHA-256 over the version and the template.
    pub signature: String,
    /// The message with variable parts replaced by `<kind>` placeholders.
    pub template: String,
    /// The masked parts, in order of appearance.
    pub params: Vec<Param>,
    pub version: &'static str,
}

struct Rule {
    kind: &'static str,
    re: Regex,
    /// Quoted parts keep their quotes around the placeholder, so `'x'` and `"x"` stay apart
    /// from unquoted text.
    keep_quotes: bool,
    /// Extra condition a match must meet (the regex crate has no look-around).
    accept: fn(&str) -> bool,
}

fn any(_: &str) -> bool {
    true
}

/// A bare hex word (commit id, hash) has digits and letters; `cafe` or `2024` alone are words
/// and numbers.
fn hex_word(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().any(|b| b.is_ascii_alphabetic())
}

#[allow(clippy::expect_used)] // the patterns are constants; a typo must fail every test at once
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |kind, pattern: &str, keep_quotes| Rule {
        kind,
        re: Regex::new(pattern).expect("valid signature regex"),
        keep_quotes,
        accept: any,
    };
    vec![
        rule("uuid", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", false),
        rule(
            "timestamp",
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b",
            false,
        ),
        rule("hex", r"\b0[xX][0-9a-fA-F]+\b", false),
        rule("quoted", r#"'[^'\n]{1,200}'|"[^"\n]{1,200}"|`[^`\n]{1,200}`|‘[^’\n]{1,200}’"#, true),
        // absolute or relative paths with at least one separator, optional :line:col suffix
        rule(
            "path",
            r"(?:[A-Za-z]:)?(?:\.{0,2}[/\\])?(?:[\w.@+-]+[/\\])+[\w.@+-]+(?::\d+)*|(?:/[\w.@+-]+)+",
            false,
        ),
        Rule { accept: hex_word, ..rule("hex", r"\b[0-9a-fA-F]{7,}\b", false) },
        rule("number", r"\b\d+(?:\.\d+)?\b", false),
    ]
});

/// Fingerprints one message. Whitespace runs are collapsed and the ends trimmed first, so
/// re-wrapped or re-indented output keeps its signature.
pub fn fingerprint(message: &str) -> Fingerprint {
    let mut template: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut params: Vec<(usize, Param)> = Vec::new();
    for rule in RULES.iter() {
        let mut out = String::with_capacity(template.len());
        let mut last = 0;
        for m in rule.re.find_iter(&template) {
            let text = m.as_str();
            // placeholders from earlier rules are not masked again
            if !(rule.accept)(text) || is_placeholder_text(text) {
                continue;
            }
            out.push_str(&template[last..m.start()]);
            let position = out.len();
            if rule.keep_quotes {
                let mut chars = text.chars();
                let open = chars.next().unwrap_or('\'');
                let close = chars.next_back().unwrap_or('\'');
                out.push(open);
                out.push('<');
                out.push_str(rule.kind);
                out.push('>');
                out.push(close);
                let inner = &text[open.len_utf8()..text.len() - close.len_utf8()];
                params.push((position, Param { kind: rule.kind, value: inner.to_owned() }));
            } else {
                out.push('<');
                out.push_str(rule.kind);
                out.push('>');
                params.push((position, Param { kind: rule.kind, value: text.to_owned() }));
            }
            last = m.end();
        }
        out.push_str(&template[last..]);
        template = out;
    }
    params.sort_by_key(|(pos, _)| *pos);
    let mut hasher = Sha256::new();
    hasher.update(SIGNATURE_VERSION.as_bytes());
    hasher.update(b"\n");
    hasher.update(template.as_bytes());
    let digest = hasher.finalize();
    let signature = digest.iter().map(|b| format!("{b:02x}")).collect();
    Fingerprint {
        signature,
        template,
        params: params.into_iter().map(|(_, p)| p).collect(),
        version: SIGNATURE_VERSION,
    }
}

fn is_placeholder_text(text: &str) -> bool {
    let t = text.trim_matches(|c| matches!(c, '\'' | '"' | '`' | '‘' | '’'));
    t.starts_with('<') && t.ends_with('>') && !t[1..t.len() - 1].contains(['<', '>'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_cause_same_signature_across_names_and_paths() {
        let a = fingerprint("ModuleNotFoundError: No module named 'requests'");
        let b = fingerprint("ModuleNotFoundError: No module named 'yaml'");
        assert_eq!(a.signature, b.signature);
        assert_eq!(a.template, "ModuleNotFoundError: No module named '<quoted>'");
        assert_eq!(a.params, vec![Param { kind: "quoted", value: "requests".to_owned() }]);

        let c = fingerprint("error: could not open /home/alice/proj/src/main.c:12:5 (errno 2)");
        let d = fingerprint("error: could not open  /tmp/build-81723/lib/x.c:3:1 (errno 13)\n");
        assert_eq!(c.signature, d.signature, "{} vs {}", c.template, d.template);
        assert_eq!(c.template, "error: could not open <path> (errno <number>)");
    }

    #[test]
    fn different_causes_differ() {
        let a = fingerprint("ModuleNotFoundError: No module named 'requests'");
        let b = fingerprint("ImportError: cannot import name 'x' from 'y'");
        let c = fingerprint("NameError: name 'x' is not defined");
        assert_ne!(a.signature, b.signature);
        assert_ne!(a.signature, c.signature);
        assert_ne!(b.signature, c.signature);
    }

    #[test]
    fn ids_addresses_and_times_are_masked() {
        let f = fingerprint(
            "2026-11-25T10:00:01.123Z request 6f1c2a3b-1d2e-4f50-8a9b-0c1d2e3f4a5b failed at 0x7ffd5e8c, commit deadbeef42",
        );
        assert_eq!(f.template, "<timestamp> request <uuid> failed at <hex>, commit <hex>");
        let kinds: Vec<_> = f.params.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["timestamp", "uuid", "hex", "hex"]);
    }

    #[test]
    fn signature_is_versioned_hex() {
        let f = fingerprint("x");
        assert_eq!(f.version, "v1");
        assert_eq!(f.signature.len(), 64);
        assert!(f.signature.chars().all(|c| c.is_ascii_hexdigit()));
        // stable across runs and machines: pinned value of sha256("v1\nx")
        assert_eq!(f.signature, "152b9b1a1d0ebd2b7fafc5c12b51ad465e0a3c4ad122d208ca2d26b965f20ef5");
        assert_ne!(fingerprint("y").signature, f.signature);
    }

    #[test]
    fn words_with_digits_are_not_paths() {
        let f = fingerprint("expected 2 arguments, found 3");
        assert_eq!(f.template, "expected <number> arguments, found <number>");
    }
}
