//! Resume tokens: the handle a user gets for continuing a run (`helix resume TOKEN`,
//! `POST /v1/runs/{id}/resume`).
//!
//! Tokens are copied by hand between terminals, chats and CI logs, so they are short, made of
//! characters that survive any of them (lowercase base32, RFC 4648 alphabet, no padding), and
//! carry a checksum: a mistyped or truncated token is reported as such instead of naming some
//! other run or checkpoint. They are opaque: nothing may rely on their layout, which a version
//! byte lets change later.
//!
//! Layout (before base32): `version (1) | id | seq (u32, big-endian) | checksum (4)`, where `id`
//! is `0` followed by the 16 bytes of a UUID when the run id is a canonical lowercase UUID, or
//! its length (1..=64) followed by its ASCII bytes otherwise, and the checksum is the first four
//! bytes of the sha256 of everything before it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// What every token starts with.
pub const PREFIX: &str = "hxr_";

const VERSION: u8 = 1;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const UUID_TAG: u8 = 0;
const MAX_RUN_ID: usize = 64;

/// Whether `id` can name a run: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit. Such an id is also a safe directory name (no `/`, never `.` or `..`).
pub fn is_valid_run_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_RUN_ID
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the resume token is empty")]
    Empty,
    #[error("not a resume token: it must start with {PREFIX:?}")]
    WrongPrefix,
    #[error("invalid character {ch:?} at position {position} of the resume token")]
    BadCharacter { ch: char, position: usize },
    #[error("the token is damaged or mistyped ({0})")]
    Damaged(&'static str),
    #[error("unknown resume token version {0}: it was made by a newer helix")]
    UnknownVersion(u8),
    #[error(
        "invalid run id {0:?}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    BadRunId(String),
}

/// A run and one of its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResumeToken {
    run_id: String,
    seq: u32,
}

impl ResumeToken {
    pub fn new(run_id: impl Into<String>, seq: u32) -> Result<ResumeToken, TokenError> {
        let run_id = run_id.into();
        if !is_valid_run_id(&run_id) {
            return Err(TokenError::BadRunId(run_id));
        }
        Ok(ResumeToken { run_id, seq })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// The token as users see it: `hxr_` and lowercase base32.
    pub fn encode(&self) -> String {
        let mut payload = vec![VERSION];
        match uuid::Uuid::try_parse(&self.run_id) {
            Ok(u) if u.hyphenated().to_string() == self.run_id => {
                payload.push(UUID_TAG);
                payload.extend_from_slice(u.as_bytes());
            }
            _ => {
                // `new` guarantees 1..=64 ASCII bytes.
                payload.push(self.run_id.len() as u8);
                payload.extend_from_slice(self.run_id.as_bytes());
            }
        }
        payload.extend_from_slice(&self.seq.to_be_bytes());
        let sum = checksum(&payload);
        payload.extend_from_slice(&sum);
        format!("{PREFIX}{}", base32_encode(&payload))
    }

    /// Reads a token as a user may paste it: surrounding whitespace ignored, any letter case.
    pub fn parse(token: &str) -> Result<ResumeToken, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        let body = match token.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => &token[PREFIX.len()..],
            _ => return Err(TokenError::WrongPrefix),
        };
        let bytes = base32_decode(body, PREFIX.chars().count())?;
        if bytes.len() < 1 + 1 + 4 + 4 {
            return Err(TokenError::Damaged("too short"));
        }
        let (payload, sum) = bytes.split_at(bytes.len() - 4);
        if checksum(payload) != sum {
            return Err(TokenError::Damaged("checksum mismatch"));
        }
        if payload[0] != VERSION {
            return Err(TokenError::UnknownVersion(payload[0]));
        }
        // The checksum held, so what follows was made by an encoder; still, no panics on input.
        let malformed = TokenError::Damaged("malformed content");
        let (id, seq) = payload[2..].split_at_checked(payload.len() - 2 - 4).ok_or(malformed.clone())?;
        let run_id = match payload[1] {
            UUID_TAG => {
                let raw: [u8; 16] = id.try_into().map_err(|_| malformed.clone())?;
                uuid::Uuid::from_bytes(raw).hyphenated().to_string()
            }
            len if usize::from(len) == id.len() => {
                String::from_utf8(id.to_vec()).map_err(|_| malformed.clone())?
            }
            _ => return Err(malformed),
        };
        let seq = u32::from_be_bytes(seq.try_into().map_err(|_| malformed.clone())?);
        ResumeToken::new(run_id, seq).map_err(|_| malformed)
    }
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for ResumeToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<ResumeToken, TokenError> {
        ResumeToken::parse(s)
    }
}

impl Serialize for ResumeToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for ResumeToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ResumeToken, D::Error> {
        let s = String::deserialize(d)?;
        ResumeToken::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn checksum(payload: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(payload);
    [digest[0], digest[1], digest[2], digest[3]]
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes unpadded base32 (any case). `offset` is the number of characters before `text` in
/// the token, for error positions.
fn base32_decode(text: &str, offset: usize) -> Result<Vec<u8>, TokenError> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, ch) in text.chars().enumerate() {
        let lower = ch.to_ascii_lowercase();
        let value = ALPHABET
            .iter()
            .position(|&a| char::from(a) == lower)
            .ok_or(TokenError::BadCharacter { ch, position: offset + i + 1 })?;
        acc = (acc << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // An encoder leaves fewer than 5 spare bits, all zero; anything else was not encoded whole.
    if bits >= 5 || acc != 0 {
        return Err(TokenError::Damaged("wrong length"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    #[test]
    fn round_trip_for_uuid_and_named_runs() {
        for (id, seq) in
            [(UUID, 0), (UUID, 7), ("r", u32::MAX), ("nightly-2026.05_01", 12), (&*"x".repeat(64), 3)]
        {
            let t = ResumeToken::new(id, seq).expect("valid");
            let s = t.encode();
            assert!(s.starts_with(PREFIX), "{s}");
            assert!(s[PREFIX.len()..].bytes().all(|b| ALPHABET.contains(&b)), "{s}");
            let back = ResumeToken::parse(&s).expect("parses");
            assert_eq!((back.run_id(), back.seq()), (id, seq));
            assert_eq!(s.parse::<ResumeToken>().expect("from_str"), t);
            assert_eq!(t.to_string(), s);
        }
        // UUIDs are packed: 16 bytes rather than 36 characters.
        assert_eq!(ResumeToken::new(UUID, 1).expect("valid").encode().len(), PREFIX.len() + 42);
        // An uppercase UUID is not canonical: kept as text so it comes back exactly as given.
        let upper = UUID.to_uppercase();
        let t = ResumeToken::parse(&ResumeToken::new(&upper, 1).expect("valid").encode()).expect("parses");
        assert_eq!(t.run_id(), upper);
    }

    #[test]
    fn whitespace_and_case_are_forgiven() {
        let s = ResumeToken::new(UUID, 5).expect("valid").encode();
        let t = ResumeToken::parse(&format!("  \t{s}\n")).expect("trimmed");
        assert_eq!((t.run_id(), t.seq()), (UUID, 5));
        let t = ResumeToken::parse(&s.to_uppercase()).expect("any case");
        assert_eq!((t.run_id(), t.seq()), (UUID, 5));
    }

    #[test]
    fn every_single_character_change_is_detected() {
        for id in [UUID, "build-42"] {
            let good = ResumeToken::new(id, 9).expect("valid").encode();
            let chars: Vec<char> = good.chars().collect();
            let mut tried = 0;
            for i in 0..chars.len() {
                for &c in ALPHABET.iter().chain(b"_0189") {
                    let c = char::from(c);
                    if c == chars[i].to_ascii_lowercase() {
                        continue;
                    }
                    let mut bad = chars.clone();
                    bad[i] = c;
                    let bad: String = bad.into_iter().collect();
                    assert!(ResumeToken::parse(&bad).is_err(), "{bad} accepted ({good})");
                    tried += 1;
                }
            }
            assert!(tried > 1000);
            // Dropped or added characters, too.
            for i in 0..chars.len() {
                let mut short = chars.clone();
                short.remove(i);
                assert!(ResumeToken::parse(&short.into_iter().collect::<String>()).is_err());
            }
            assert!(ResumeToken::parse(&format!("{good}a")).is_err());
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let good = ResumeToken::new("run-1", 3).expect("valid").encode();
        assert_eq!(ResumeToken::parse("   "), Err(TokenError::Empty));
        assert_eq!(ResumeToken::parse("hx_abc"), Err(TokenError::WrongPrefix));
        assert_eq!(ResumeToken::parse(&good[PREFIX.len()..]), Err(TokenError::WrongPrefix));
        assert_eq!(ResumeToken::parse("hxr_ab0d"), Err(TokenError::BadCharacter { ch: '0', position: 7 }));
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'a' { b'b' } else { b'a' };
        let e = ResumeToken::parse(&String::from_utf8(flipped).expect("ascii")).expect_err("damaged");
        assert!(e.to_string().starts_with("the token is damaged or mistyped"), "{e}");
        assert_eq!(
            ResumeToken::parse(&good[..good.len() - 8]).map(|_| ()),
            Err(TokenError::Damaged("checksum mismatch"))
        );
        assert_eq!(ResumeToken::parse("hxr_aa"), Err(TokenError::Damaged("too short")));

        // A token of a future format, checksum right.
        let mut payload = vec![2u8, 1, b'r', 0, 0, 0, 1];
        payload.extend_from_slice(&checksum(&payload));
        let future = format!("{PREFIX}{}", base32_encode(&payload));
        assert_eq!(ResumeToken::parse(&future), Err(TokenError::UnknownVersion(2)));

        // Checksum right, content not what an encoder makes (a run id that is not a plain name).
        let mut payload = vec![VERSION, 2, b'.', b'.', 0, 0, 0, 1];
        payload.extend_from_slice(&checksum(&payload));
        let odd = format!("{PREFIX}{}", base32_encode(&payload));
        assert_eq!(ResumeToken::parse(&odd), Err(TokenError::Damaged("malformed content")));

        assert!(matches!(ResumeToken::new("../etc", 1), Err(TokenError::BadRunId(_))));
        assert!(matches!(ResumeToken::new("x".repeat(65), 1), Err(TokenError::BadRunId(_))));
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 section 10, lowercase, without padding.
        for (plain, encoded) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded, 0).expect("decodes"), plain.as_bytes());
        }
        assert_eq!(base32_decode("mz", 0), Err(TokenError::Damaged("wrong length")), "non-zero spare bits");
        assert_eq!(base32_decode("m", 0), Err(TokenError::Damaged("wrong length")));
    }

    #[test]
    fn serde_uses_the_token_string() {
        let t = ResumeToken::new(UUID, 2).expect("valid");
        let json = serde_json::to_string(&t).expect("json");
        assert_eq!(json, format!("\"{}\"", t.encode()));
        assert_eq!(serde_json::from_str::<ResumeToken>(&json).expect("parse"), t);
        let e = serde_json::from_str::<ResumeToken>("\"hxr_zzzz\"").expect_err("bad");
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
