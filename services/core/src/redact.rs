//! Keeping secret values out of what Helix stores, sends and prints.
//!
//! Three tools, for three situations:
//! - [`Masker`]: known values (a pipeline's secrets, the gateway's upstream keys) replaced by
//!   `***` wherever they occur, as CI systems mask their secrets in logs. [`StreamMasker`] does
//!   the same for output that arrives in pieces, so a value split across two reads is still
//!   caught.
//! - [`key_like`]: values nobody told us about but that look like credentials (`sk-…`, `ghp_…`,
//!   `AKIA…`, `Bearer …`, `"api_key": "…"`), for text relayed from elsewhere, such as an upstream
//!   error body that echoes the key it was sent.
//! - [`url_password`]: the password of a URL (`redis://:pw@host`), for printing configuration.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Values shorter than this are not masked: masking every "1" or "ab" would destroy the output
/// and protect nothing (GitLab asks for 8; we accept shorter secrets but mask from 4).
pub const MIN_MASKED_LEN: usize = 4;

/// Replaces known secret values with [`MASK`].
#[derive(Clone, Default)]
pub struct Masker {
    ac: Option<AhoCorasick>,
    longest: usize,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker").field("active", &self.ac.is_some()).finish()
    }
}

impl Masker {
    /// Masks each of `values` (and, for multi-line values, each of their lines) that is at least
    /// [`MIN_MASKED_LEN`] bytes long.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Masker {
        let mut needles: Vec<String> = Vec::new();
        for v in values {
            let v = v.as_ref();
            let mut push = |s: &str| {
                if s.len() >= MIN_MASKED_LEN && !needles.iter().any(|n| n == s) {
                    needles.push(s.to_owned());
                }
            };
            push(v);
            push(v.trim());
            if v.contains('\n') {
                v.lines().map(str::trim).for_each(&mut push);
            }
        }
        if needles.is_empty() {
            return Masker::default();
        }
        let longest = needles.iter().map(String::len).max().unwrap_or(0);
        let ac = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&needles).ok();
        Masker { ac, longest }
    }

    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// `text` with every secret replaced.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.ac {
            Some(ac) if ac.is_match(text) => Cow::Owned(ac.replace_all(text, &vec![MASK; ac.patterns_len()])),
            _ => Cow::Borrowed(text),
        }
    }

    /// The same for bytes (output that may not be UTF-8).
    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.ac {
            Some(ac) => ac.replace_all_bytes(bytes, &vec![MASK.as_bytes(); ac.patterns_len()]),
            None => bytes.to_vec(),
        }
    }
}

/// A [`Masker`] over a stream: it holds back the last bytes of each piece that could be the start
/// of a secret, until the next piece (or [`StreamMasker::finish`]) shows whether they were.
#[derive(Debug)]
pub struct StreamMasker {
    masker: Masker,
    pending: Vec<u8>,
}

impl StreamMasker {
    pub fn new(masker: Masker) -> StreamMasker {
        StreamMasker { masker, pending: Vec::new() }
    }

    /// Masks what can be decided of `chunk` and returns it.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(ac) = &self.masker.ac else { return chunk.to_vec() };
        self.pending.extend_from_slice(chunk);
        // bytes before `safe` cannot be the start of a secret that continues in the next piece
        let mut safe = self.pending.len().saturating_sub(self.masker.longest - 1);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut at = 0;
        for m in ac.find_iter(&self.pending[..]) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&self.pending[at..m.start()]);
            out.extend_from_slice(MASK.as_bytes());
            at = m.end();
            safe = safe.max(m.end());
        }
        let safe = safe.max(at);
        out.extend_from_slice(&self.pending[at..safe]);
        self.pending.drain(..safe);
        out
    }

    /// Everything held back, masked.
    pub fn finish(mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.masker.mask_bytes(&rest)
    }
}

/// Credential shapes masked in relayed text: the prefix is kept (it says which kind of key it
/// was), the rest becomes [`MASK`].
static KEY_LIKE: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // OpenAI, Anthropic (sk-ant-…), most OpenAI-compatible servers
        r"\b(sk-)[A-Za-z0-9_\-]{8,}",
        // Helix tokens
        r"\b(hxt_)[0-9a-f]{16,}",
        // Google API keys
        r"\b(AIza)[0-9A-Za-z_\-]{20,}",
        // GitHub tokens
        r"\b(gh[pousr]_)[A-Za-z0-9]{16,}",
        r"\b(github_pat_)[A-Za-z0-9_]{16,}",
        // Slack
        r"\b(xox[abposr]-)[A-Za-z0-9\-]{8,}",
        // AWS access key ids
        r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
        // Hugging Face, Groq, Replicate, Stripe-like
        r"\b(hf_|gsk_|r8_|rk_live_|sk_live_|pk_live_)[A-Za-z0-9]{12,}",
        // an Authorization header value
        r"(?i)\b(bearer\s+)[A-Za-z0-9_\-\.=+/]{8,}",
        // "api_key": "…", api-key=…, token: …, password=…, secret …
        r#"(?i)((?:api[_-]?key|x-api-key|access[_-]?token|auth[_-]?token|token|secret|password|passwd)["']?\s*[:=]\s*["']?)[^\s"',;&]{6,}"#,
    ]
    .iter()
    .filter_map(|p| Regex::new(p).ok())
    .collect()
});

/// `text` with everything that looks like a credential masked (its recognisable prefix kept).
pub fn key_like(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for re in KEY_LIKE.iter() {
        if re.is_match(&out) {
            let masked = re.replace_all(&out, |c: &regex::Captures<'_>| {
                let (whole, prefix) = (&c[0], &c[1]);
                // a number after `token:` is a count, not a credential
                if whole[prefix.len()..].bytes().all(|b| b.is_ascii_digit()) {
                    whole.to_owned()
                } else {
                    format!("{prefix}{MASK}")
                }
            });
            if let Cow::Owned(m) = masked {
                out = Cow::Owned(m);
            }
        }
    }
    out
}

/// A URL with the password of its user info replaced (`redis://:***@host:6379`); other text is
/// returned as it is.
pub fn url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else { return url.to_owned() };
    let userinfo = &authority[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        // a lone user info is usually a token (`https://TOKEN@host`)
        None => MASK.to_owned(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], masked, &rest[at..])
}

/// Whether an environment variable name says its value is a credential.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"]
        .iter()
        .any(|w| n.split(|c: char| !c.is_ascii_alphanumeric()).any(|part| part == *w || part.ends_with(w)))
        && !["KEYBOARD", "MONKEY", "TURKEY", "HOCKEY", "DONKEY", "JOCKEY", "AUTHOR", "AUTHORS"]
            .iter()
            .any(|w| n.split(|c: char| !c.is_ascii_alphanumeric()).any(|part| part == *w))
}

/// Whether a value has the shape of a credential (see [`key_like`]).
pub fn is_key_like(value: &str) -> bool {
    matches!(key_like(value), Cow::Owned(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masker_replaces_every_known_value() {
        let m = Masker::new(["s3cr3t-value", "ab", "multi\nline-secret"]);
        assert_eq!(m.mask("x s3cr3t-value y s3cr3t-value"), "x *** y ***");
        assert_eq!(m.mask("ab stays"), "ab stays", "too short to mask");
        assert_eq!(m.mask("line-secret!"), "***!", "each line of a multi-line secret");
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
        assert_eq!(m.mask_bytes(b"\xffs3cr3t-value\xff"), b"\xff***\xff".to_vec());
        assert!(Masker::new(Vec::<String>::new()).is_empty());
    }

    #[test]
    fn stream_masker_catches_values_split_across_pieces() {
        let secret = "tok-1234567890";
        for split in 0..secret.len() + 3 {
            let text = format!("before {secret} after {secret}");
            let (a, b) = text.split_at(split.min(text.len()));
            let mut s = StreamMasker::new(Masker::new([secret]));
            let mut out = s.push(a.as_bytes());
            out.extend(s.push(b.as_bytes()));
            out.extend(s.finish());
            assert_eq!(String::from_utf8(out).expect("utf8"), "before *** after ***", "split at {split}");
        }
        // one byte at a time
        let mut s = StreamMasker::new(Masker::new([secret]));
        let mut out = Vec::new();
        for b in format!("{secret}{secret}x").bytes() {
            out.extend(s.push(&[b]));
        }
        out.extend(s.finish());
        assert_eq!(out, b"******x");
        // without secrets nothing is held back
        let mut s = StreamMasker::new(Masker::default());
        assert_eq!(s.push(b"abc"), b"abc");
    }

    #[test]
    fn key_like_values_are_masked_keeping_their_kind() {
        let text = r#"{"error":{"message":"Incorrect API key provided: sk-proj-abcDEF123456789xyz. Also sk-ant-api03-AAAABBBBCCCC"}}"#;
        let m = key_like(text);
        assert!(!m.contains("abcDEF123456789xyz") && !m.contains("AAAABBBBCCCC"), "{m}");
        assert!(m.contains("sk-***"), "{m}");
        for (raw, gone) in [
            ("Authorization: Bearer abc.def-123456789", "abc.def-123456789"),
            ("api_key=verysecretvalue", "verysecretvalue"),
            (r#""x-api-key": "k-1234567890""#, "k-1234567890"),
            ("token ghp_abcdefghijklmnop1234", "abcdefghijklmnop1234"),
            ("AKIAABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"),
            ("password: hunter2hunter2", "hunter2hunter2"),
        ] {
            let m = key_like(raw);
            assert!(!m.contains(gone), "{raw} -> {m}");
        }
        assert_eq!(key_like("model not found: gpt-4.1"), "model not found: gpt-4.1");
        assert_eq!(key_like("max_token: 1000000 exceeded"), "max_token: 1000000 exceeded");
        assert!(matches!(key_like("rate limited, retry in 20s"), Cow::Borrowed(_)));
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(url_password("redis://:pw@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(url_password("postgres://u:p@db/x?a=b"), "postgres://u:***@db/x?a=b");
        assert_eq!(url_password("https://tok@host/path"), "https://***@host/path");
        assert_eq!(url_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(url_password("http://h/p@x"), "http://h/p@x", "an @ in the path is no user info");
        assert_eq!(url_password("not a url"), "not a url");
    }

    #[test]
    fn secret_names() {
        for n in [
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "AWS_SECRET_ACCESS_KEY",
            "MY_APIKEY",
            "PRIVATE_KEY",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "PATH",
            "PYTHONDONTWRITEBYTECODE",
            "KEYBOARD_LAYOUT",
            "AUTHOR",
            "MODULE",
            "PYTEST_ADDOPTS",
            "SSH_AUTH_SOCK",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
        assert!(is_key_like("sk-abcdefghijkl") && !is_key_like("-p no:cacheprovider"));
    }
}
