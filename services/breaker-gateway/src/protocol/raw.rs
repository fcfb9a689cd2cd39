//! Reading and editing request and response bodies without building a `serde_json::Value`.
//!
//! On the hot path (a non-streaming call to a deployment of the client's own protocol) the gateway
//! needs only three things from the JSON: the request's `model` and `stream`, and the response's
//! `usage`. Parsing a whole body into a `Value` tree allocates for every key and string and then
//! serialises it again, which was the larger part of the gateway's own CPU time per call. Here the
//! bodies are still validated completely (serde_json checks every byte while skipping), but only
//! the fields needed are materialised, and a request forwarded unchanged apart from its model keeps
//! the client's bytes: key order, number spelling and unknown fields included.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::Protocol;
use super::usage::Usage;

/// Visitor methods for the JSON values a reader does not care about: they are skipped (still
/// validated) and give `$none`.
macro_rules! skip {
    (scalars, $none:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
    (bool, $none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
    (str, $none:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
    (seq, $none:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
    (map, $none:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
}

/// What the gateway reads from a request body before choosing a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// Whether the body is a JSON object (anything else is refused).
    pub is_object: bool,
    /// `model`, when it is a string (the last one, if the key is repeated, as `Value` would keep).
    pub model: Option<String>,
    /// `"stream": true`.
    pub stream: bool,
}

impl RequestHead {
    /// Validates `raw` as JSON and reads `model` and `stream` from it; the error is serde_json's
    /// (the same message a `Value` parse gives).
    pub fn parse(raw: &[u8]) -> Result<RequestHead, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(raw);
        let head = HeadSeed.deserialize(&mut de)?;
        de.end()?;
        Ok(head)
    }
}

struct HeadSeed;

impl<'de> DeserializeSeed<'de> for HeadSeed {
    type Value = RequestHead;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RequestHead, D::Error> {
        d.deserialize_any(HeadVisitor)
    }
}

struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = RequestHead;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestHead, A::Error> {
        let mut head = RequestHead { is_object: true, ..RequestHead::default() };
        while let Some(key) = map.next_key_seed(KeySeed(&["model", "stream"]))? {
            match key {
                Some(0) => head.model = map.next_value::<ModelField>()?.0,
                Some(_) => head.stream = map.next_value::<StreamField>()?.0,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }

    skip!(seq, RequestHead::default());
    skip!(bool, RequestHead::default());
    skip!(str, RequestHead::default());
    skip!(scalars, RequestHead::default());
}

/// A key compared against `names` without allocating (escaped keys arrive decoded); the index of
/// the name it equals.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// `model`: kept when it is a string, like `Value::as_str`.
struct ModelField(Option<String>);

impl<'de> serde::Deserialize<'de> for ModelField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ModelField, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ModelField, E> {
                Ok(ModelField(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ModelField, E> {
                Ok(ModelField(Some(v)))
            }
            skip!(bool, ModelField(None));
            skip!(scalars, ModelField(None));
            skip!(seq, ModelField(None));
            skip!(map, ModelField(None));
        }
        d.deserialize_any(V)
    }
}

/// `stream`: true only for the boolean `true`, like `Value::as_bool`.
struct StreamField(bool);

impl<'de> serde::Deserialize<'de> for StreamField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StreamField, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StreamField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StreamField, E> {
                Ok(StreamField(v))
            }
            skip!(str, StreamField(false));
            skip!(scalars, StreamField(false));
            skip!(seq, StreamField(false));
            skip!(map, StreamField(false));
        }
        d.deserialize_any(V)
    }
}

/// The usage a non-streaming response body of `protocol` reports, after checking that the body is
/// valid JSON (any value; only an object can carry usage). `Err` when it is not JSON.
pub fn response_usage_raw(protocol: Protocol, body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let usage = UsageSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(usage.and_then(|u| match protocol {
        Protocol::OpenAi => Usage::from_openai(&u),
        Protocol::Anthropic => Usage::from_anthropic(&u),
    }))
}

/// The top-level `usage` value of any JSON value (the last one, if the key is repeated).
struct UsageSeed;

impl<'de> DeserializeSeed<'de> for UsageSeed {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UsageSeed {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let mut usage = None;
        while let Some(key) = map.next_key_seed(KeySeed(&["usage"]))? {
            if key.is_some() {
                usage = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(usage)
    }

    skip!(bool, None);
    skip!(str, None);
    skip!(scalars, None);
    skip!(seq, None);
}

/// `raw` (a JSON object that [`RequestHead::parse`] accepted) with the value of its top-level
/// `model` replaced by the string `model`, every other byte kept. `None` when that cannot be done
/// by splicing: no `model` key, a repeated one, or a top-level key written with escapes (which
/// could spell `model`); the caller then edits a parsed `Value` instead.
pub fn replace_model(raw: &[u8], model: &str) -> Option<Vec<u8>> {
    let span = model_value_span(raw)?;
    let encoded = serde_json::to_string(model).ok()?;
    let mut out = Vec::with_capacity(raw.len() - span.len() + encoded.len());
    out.extend_from_slice(&raw[..span.start]);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(&raw[span.end..]);
    Some(out)
}

/// Where the value of the top-level `model` key lies in `raw` (valid JSON, an object).
fn model_value_span(raw: &[u8]) -> Option<Range<usize>> {
    let mut i = skip_ws(raw, 0);
    if raw.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut found = None;
    loop {
        i = skip_ws(raw, i);
        match raw.get(i)? {
            b'}' => return found,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(raw, i)?;
        let key = &raw[i + 1..key_end - 1];
        i = skip_ws(raw, key_end);
        if raw.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(raw, i + 1);
        let value_end = value_end(raw, i)?;
        if key.contains(&b'\\') {
            return None;
        }
        if key == b"model" {
            if found.is_some() {
                return None;
            }
            found = Some(i..value_end);
        }
        i = value_end;
    }
}

fn skip_ws(raw: &[u8], mut i: usize) -> usize {
    while raw.get(i).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string opening at `start`.
fn string_end(raw: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match raw.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The index after the value starting at `start`.
fn value_end(raw: &[u8], start: usize) -> Option<usize> {
    match raw.get(start)? {
        b'"' => string_end(raw, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match raw.get(i)? {
                    b'"' => {
                        i = string_end(raw, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while raw.get(i).is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn head(s: &str) -> RequestHead {
        RequestHead::parse(s.as_bytes()).expect("valid JSON")
    }

    #[test]
    fn the_head_reads_what_a_value_would() {
        let h =
            head(r#"{"messages":[{"role":"user","content":"{\"model\":1}"}],"model":"gpt","stream":true}"#);
        assert_eq!(h, RequestHead { is_object: true, model: Some("gpt".to_owned()), stream: true });
        // escaped keys and values arrive decoded; the last of a repeated key wins, as in a Value
        let h = head(r#"{"mod\u0065l":"a\nb","stream":"yes","model":"c","stream":false}"#);
        assert_eq!(h, RequestHead { is_object: true, model: Some("c".to_owned()), stream: false });
        assert_eq!(head(r#"{"model":3,"stream":1}"#).model, None);
        assert_eq!(head(r#"{"model":{"x":[1]},"stream":null}"#).model, None);
        assert!(!head("[1,2]").is_object);
        assert!(!head("\"model\"").is_object);
        assert!(!head("null").is_object);
        for bad in ["{", r#"{"model":"a",}"#, r#"{"model":"a"} x"#, "", r#"{"a":tru}"#] {
            let ours = RequestHead::parse(bad.as_bytes()).expect_err(bad).to_string();
            let values = serde_json::from_str::<Value>(bad).expect_err(bad).to_string();
            assert_eq!(ours, values, "{bad}");
        }
    }

    #[test]
    fn the_model_is_spliced_and_every_other_byte_kept() {
        let raw = r#"{ "messages": [{"role":"user","content":"model"}], "model" : "gpt" , "n": 1.50e0, "x":{"model":"inner"} }"#;
        let out = replace_model(raw.as_bytes(), "gpt-4o-mini\"x").expect("spliced");
        let out = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            out,
            r#"{ "messages": [{"role":"user","content":"model"}], "model" : "gpt-4o-mini\"x" , "n": 1.50e0, "x":{"model":"inner"} }"#
        );
        let mut want: Value = serde_json::from_str(raw).expect("json");
        want["model"] = json!("gpt-4o-mini\"x");
        assert_eq!(serde_json::from_str::<Value>(&out).expect("json"), want);
        // a model that is not a string is replaced too
        let out = replace_model(br#"{"model":[1,{"a":"]"}],"z":true}"#, "m").expect("spliced");
        assert_eq!(out, br#"{"model":"m","z":true}"#);
        let out = replace_model(br#"{"a":null,"model":12}"#, "m").expect("spliced");
        assert_eq!(out, br#"{"a":null,"model":"m"}"#);
    }

    #[test]
    fn splicing_declines_what_it_cannot_do_exactly() {
        assert_eq!(replace_model(br#"{"messages":[]}"#, "m"), None, "no model");
        assert_eq!(replace_model(br#"{"model":"a","model":"b"}"#, "m"), None, "repeated");
        assert_eq!(replace_model(br#"{"mod\u0065l":"a"}"#, "m"), None, "escaped key");
        assert_eq!(replace_model(br#"["model"]"#, "m"), None, "not an object");
    }

    #[test]
    fn response_usage_is_read_from_valid_json_only() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"{\"usage\":5}"}}],"usage":{"prompt_tokens":10,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":3}}}"#;
        let usage = response_usage_raw(Protocol::OpenAi, body).expect("json").expect("usage");
        assert_eq!((usage.input_tokens, usage.output_tokens, usage.cache_read_tokens), (7, 4, 3));
        let value: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(Some(usage), super::super::response_usage(Protocol::OpenAi, &value));
        let body = br#"{"usage":{"input_tokens":2,"output_tokens":9,"cache_creation_input_tokens":1}}"#;
        let usage = response_usage_raw(Protocol::Anthropic, body).expect("json").expect("usage");
        assert_eq!((usage.input_tokens, usage.output_tokens, usage.cache_write_tokens), (2, 9, 1));
        assert_eq!(response_usage_raw(Protocol::OpenAi, b"[1]").expect("json"), None);
        assert_eq!(response_usage_raw(Protocol::OpenAi, br#"{"usage":null}"#).expect("json"), None);
        assert!(response_usage_raw(Protocol::OpenAi, b"{\"usage\":").is_err());
        assert!(response_usage_raw(Protocol::OpenAi, b"<html>").is_err());
    }
}
