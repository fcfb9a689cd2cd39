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
    /// Kind of the part: `uuid`, `timestamp`, `hex`, `quoted`, `path`, `temp`, `number`.
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

/// The variable parts, in priority order: where two could match at the same place, the earlier
/// wins (a quoted path is one quoted part; a timestamp is not three numbers).
const PARTS: &[(&str, &str)] = &[
    ("uuid", r"(?-u:\b)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?-u:\b)"),
    ("timestamp", r"(?-u:\b)\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
    // where a message says it happened, as interpreters print it (`at script.pl line 3`, `at -e
    // line 1`): the file and line vary with the script, the cause does not
    ("atline", r"(?-u:\b)at (?:-e|[0-9A-Za-z_.-]{1,128}\.[A-Za-z][A-Za-z0-9]{0,7}) line \d+"),
    // a bare `name:LINE:` location opening a message (`Makefile:2: *** missing separator`,
    // `boot.s:3: Error: ...`); with a directory it is a `path` anyway
    ("fileline", r"^[0-9A-Za-z_.-]{1,128}(?::\d+){1,2}:"),
    ("hex", r"(?-u:\b)0[xX][0-9a-fA-F]+(?-u:\b)"),
    // quoted parts keep their quotes around the placeholder, so `'x'` and `"x"` stay apart
    ("quoted", r#"'[^'\n]{1,200}'|"[^"\n]{1,200}"|`[^`\n]{1,200}`|‘[^’\n]{1,200}’"#),
    // absolute or relative paths with at least one separator, optional :line:col suffix. A name
    // before a separator is at most 255 characters (NAME_MAX): unbounded, a run like `1-1-1-...`
    // kept this alternative alive to the end of the text at every number found in it, and
    // masking took time quadratic in the length. Its class is ASCII word characters plus any
    // non-ASCII character, because 255 copies of Unicode's `\w` exceed the regex size limit.
    // A drive letter (`C:\x`) starts a word: in `directory:../x` the `y:` is not one.
    (
        "path",
        r"(?:(?-u:\b)[A-Za-z]:)?(?:\.{0,2}[/\\])?(?:[0-9A-Za-z_.@+\-\x{80}-\x{10FFFF}]{1,255}[/\\])+[\w.@+-]+(?::\d+)*|(?:/[\w.@+-]+)+",
    ),
    // a bare file name with an extension files have (`xz: bad.xz: File format not recognized`,
    // `(at data.json:1)`), and `<stdin>` where a file name would be: the same as a path with a
    // directory. Only extensions of files: `java.lang.String`, `os.path`, `registry.example.io`
    // stay words.
    (
        "file",
        r"(?-u:\b)[0-9A-Za-z_@+-]{1,128}(?:\.[0-9A-Za-z_@+-]{1,64}){0,8}\.(?:json|ya?ml|toml|xml|ini|cfg|conf|txt|csv|tsv|md|rst|html?|sql|sqlite3?|xz|gz|tgz|bz2|zst|lz4|zip|tar|7z|jar|war|whl|deb|rpm|img|iso|qcow2|vmdk|raw|so|dylib|dll|exe|pem|crt|cer|gpg|asc|sig|p12|sh|py|rb|pl|pm|php|js|mjs|cjs|ts|tsx|jsx|c|h|cc|cpp|hpp|rs|go|java|kt|swift|cs|lua|tcl|tf|tfvars|hcl|proto|patch|diff|mk|gradle|a|o|mo|po|pot|dump|bak|db|jks|png|jpe?g|gif|svg|pdf|wasm|lock)(?::\d+)*(?-u:\b)|<stdin>(?::\d+)*",
    ),
    // temporary names (`tmpa8x_2kqz`, `tmp.Lq3xv9aB2c`): random by construction
    ("temp", r"(?-u:\b)(?:tmp|temp)[_.-]?[A-Za-z0-9_]*[0-9][A-Za-z0-9_]*(?-u:\b)"),
    // bare hex words (commit ids, hashes); see `hex_word`
    ("hexword", r"(?-u:\b)[0-9a-fA-F]{7,}(?-u:\b)"),
    ("number", r"(?-u:\b)\d+(?:\.\d+)?(?-u:\b)"),
];

#[allow(clippy::expect_used)] // the patterns are constants; a typo must fail every test at once
static MASK: LazyLock<Regex> = LazyLock::new(|| {
    let alternation: Vec<String> = PARTS.iter().map(|(name, re)| format!("(?P<{name}>{re})")).collect();
    Regex::new(&alternation.join("|")).expect("valid signature regex")
});

/// What a bare hex word is: with digits and letters it is an id; digits alone are a number;
/// letters alone (`deadbeef`, `cafe`) are a word and stay.
fn hex_word(s: &str) -> Option<&'static str> {
    let digits = s.bytes().any(|b| b.is_ascii_digit());
    let letters = s.bytes().any(|b| b.is_ascii_alphabetic());
    match (digits, letters) {
        (true, true) => Some("hex"),
        (true, false) => Some("number"),
        _ => None,
    }
}

static SUGGESTION: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"\s*[.;,]?\s*(?:Did you mean:?|did you mean:?|help: a \w+ with a similar name exists).*$")
        .expect("valid regex")
});

/// Bytes of a message that are fingerprinted: the rest of a longer one (a minified line, a dumped
/// blob) is left out of its template and signature, so the work per message is bounded.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Collapses whitespace, keeps the first [`MAX_MESSAGE_BYTES`] and drops trailing "Did you mean
/// ..." suggestions, which differ between interpreter versions for the same error.
pub fn normalize(message: &str) -> String {
    let mut collapsed = String::with_capacity(message.len().min(MAX_MESSAGE_BYTES));
    for word in message.split_whitespace() {
        if collapsed.len() >= MAX_MESSAGE_BYTES {
            break;
        }
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    if collapsed.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !collapsed.is_char_boundary(end) {
            end -= 1;
        }
        collapsed.truncate(end);
    }
    match SUGGESTION.find(&collapsed) {
        Some(m) if m.start() > 0 => collapsed[..m.start()].to_owned(),
        _ => collapsed,
    }
}

/// Masks the variable parts of `text`, appending what was masked to `params`.
fn mask_into(text: &str, template: &mut String, params: &mut Vec<Param>) {
    let mut last = 0;
    for caps in MASK.captures_iter(text) {
        let Some((name, m)) = PARTS.iter().find_map(|(name, _)| caps.name(name).map(|m| (*name, m))) else {
            continue;
        };
        let value = m.as_str();
        let kind = match name {
            "hexword" => match hex_word(value) {
                Some(kind) => kind,
                None => continue,
            },
            // quoted punctuation (`';'`, `'('`) is what a syntax error is about: keep it
            "quoted" if !value.chars().any(char::is_alphanumeric) => continue,
            other => other,
        };
        template.push_str(&text[last..m.start()]);
        if kind == "atline" {
            // `at <path> line <number>`: both parts are parameters
            let rest = &value[3..];
            let (file, line) = rest.rsplit_once(" line ").unwrap_or((rest, ""));
            template.push_str("at <path> line <number>");
            params.push(Param { kind: "path", value: file.to_owned() });
            params.push(Param { kind: "number", value: line.to_owned() });
            last = m.end();
            continue;
        }
        if kind == "file" {
            template.push_str("<path>");
            params.push(Param { kind: "path", value: value.to_owned() });
            last = m.end();
            continue;
        }
        if kind == "fileline" {
            let file = value.split(':').next().unwrap_or(value);
            template.push_str("<path>:");
            params.push(Param { kind: "path", value: file.to_owned() });
            last = m.end();
            continue;
        }
        if kind == "quoted" {
            let open = value.chars().next().unwrap_or('\'');
            let close = value.chars().next_back().unwrap_or('\'');
            template.push(open);
            template.push_str("<quoted>");
            template.push(close);
            let inner = &value[open.len_utf8()..value.len() - close.len_utf8()];
            params.push(Param { kind: "quoted", value: inner.to_owned() });
        } else {
            template.push('<');
            template.push_str(kind);
            template.push('>');
            params.push(Param { kind: static_kind(kind), value: value.to_owned() });
        }
        last = m.end();
    }
    template.push_str(&text[last..]);
}

/// The template of a normalized message whose `spans` (byte ranges with parameter names, from
/// a pattern's named captures) are masked as `<name>`; the text between spans is masked by the
/// generic rules. Returns the template and the generically masked parts.
pub fn template_with(message: &str, spans: &[(usize, usize, String)]) -> (String, Vec<Param>) {
    let mut spans: Vec<&(usize, usize, String)> = spans.iter().filter(|(a, b, _)| a < b).collect();
    spans.sort_by_key(|(a, _, _)| *a);
    let mut template = String::with_capacity(message.len());
    let mut params = Vec::new();
    let mut last = 0;
    for (start, end, name) in spans {
        if *start < last || *end > message.len() {
            continue; // overlapping or out of range: keep the first
        }
        // a named part inside quotes takes its quotes along: left behind, the closing quote and
        // the next value's opening one were masked as one quoted part (`'<target>'<quoted>'all'`)
        let quoted = *start > last
            && matches!(message.as_bytes()[*start - 1], b'\'' | b'"' | b'`')
            && message.as_bytes().get(*end) == Some(&message.as_bytes()[*start - 1]);
        let (start, end) = if quoted { (*start - 1, *end + 1) } else { (*start, *end) };
        mask_into(&message[last..start], &mut template, &mut params);
        if quoted {
            template.push(char::from(message.as_bytes()[start]));
        }
        template.push('<');
        template.push_str(name);
        template.push('>');
        if quoted {
            template.push(char::from(message.as_bytes()[start]));
        }
        last = end;
    }
    mask_into(&message[last..], &mut template, &mut params);
    (template, params)
}

/// SHA-256 over the version and the template, as 64 hex digits.
pub fn signature_of(template: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(SIGNATURE_VERSION.as_bytes());
    hasher.update(b"\n");
    hasher.update(template.as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Fingerprints one message with the generic rules alone. Whitespace runs are collapsed and the
/// ends trimmed first, so re-wrapped or re-indented output keeps its signature.
pub fn fingerprint(message: &str) -> Fingerprint {
    let (template, params) = template_with(&normalize(message), &[]);
    Fingerprint { signature: signature_of(&template), template, params, version: SIGNATURE_VERSION }
}

fn static_kind(kind: &str) -> &'static str {
    PARTS.iter().map(|(n, _)| *n).find(|n| *n == kind).unwrap_or("hex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_file_names_are_paths_and_dotted_names_are_not() {
        let a = fingerprint("xz: bad.xz: File format not recognized");
        let b = fingerprint("xz: backup/site.tar.xz: File format not recognized");
        assert_eq!(a.template, "xz: <path>: File format not recognized");
        assert_eq!(a.signature, b.signature);
        assert_eq!(a.params, vec![Param { kind: "path", value: "bad.xz".to_owned() }]);
        let a = fingerprint("jq: error (at <stdin>:1): Cannot index object with number");
        let b = fingerprint("jq: error (at data.json:4): Cannot index object with number");
        assert_eq!(a.signature, b.signature);
        // class, module and host names stay words: they are what the message is about
        for m in
            ["java.lang.IllegalStateException: boom", "AttributeError: module os.path", "registry.example.io"]
        {
            assert!(!fingerprint(m).template.contains("<path>"), "{m}");
        }
    }

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
            "2026-11-25T10:00:01.123Z request 6f1c2a3b-1d2e-4f50-8a9b-0c1d2e3f4a5b failed at 0x7ffd5e8c, commit deadbeef42 in cafe 1234567",
        );
        assert_eq!(f.template, "<timestamp> request <uuid> failed at <hex>, commit <hex> in cafe <number>");
        let kinds: Vec<_> = f.params.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["timestamp", "uuid", "hex", "hex", "number"]);
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
    fn temp_names_are_masked() {
        let a = fingerprint("cannot open tmpa8x_2kqz for writing");
        let b = fingerprint("cannot open tmp.Lq3xv9aB2c for writing");
        assert_eq!(a.template, "cannot open <temp> for writing");
        assert_eq!(a.signature, b.signature);
        assert_eq!(fingerprint("mount tmpfs failed").template, "mount tmpfs failed");
    }

    #[test]
    fn words_with_digits_are_not_paths() {
        let f = fingerprint("expected 2 arguments, found 3");
        assert_eq!(f.template, "expected <number> arguments, found <number>");
        let f = fingerprint("utf-8 codec can't decode byte 0xff in position 0: invalid start byte");
        assert_eq!(
            f.template,
            "utf-<number> codec can't decode byte <hex> in position <number>: invalid start byte"
        );
    }

    #[test]
    fn suggestions_and_punctuation() {
        let a =
            fingerprint("AttributeError: 'list' object has no attribute 'appendx'. Did you mean: 'append'?");
        let b = fingerprint("AttributeError: 'str' object has no attribute 'lowercase'");
        assert_eq!(a.signature, b.signature, "{} / {}", a.template, b.template);
        let c = fingerprint("SyntaxError: expected ':'");
        let d = fingerprint("SyntaxError: expected ')'");
        assert_ne!(c.signature, d.signature, "{}", c.template);
    }

    #[test]
    fn spans_are_masked_by_name() {
        let msg = "No module named 'yaml'";
        let (t, _) = template_with(msg, &[(17, 21, "module".to_owned())]);
        assert_eq!(t, "No module named '<module>'");
    }

    #[test]
    fn params_come_in_order_of_appearance() {
        let f = fingerprint("[Errno 2] No such file or directory: '/home/a/data.csv' (line 7)");
        let got: Vec<_> = f.params.iter().map(|p| (p.kind, p.value.as_str())).collect();
        assert_eq!(got, [("number", "2"), ("quoted", "/home/a/data.csv"), ("number", "7")]);
    }
}
