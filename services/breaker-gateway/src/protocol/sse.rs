//! Server-sent events, the framing both providers stream in.
//!
//! Upstream bodies arrive in chunks cut anywhere: inside a line, inside a UTF-8 character, between
//! the `\r` and `\n` of a line ending. The parser therefore keeps raw bytes until a line is complete
//! (line ending bytes never occur inside a multi-byte UTF-8 character) and only then decodes it. It
//! follows the WHATWG event-stream rules (`\n`, `\r\n` and `\r` line endings, `:` comments, multi-line
//! `data`, a leading byte order mark ignored, events without data not dispatched).
//!
//! Memory is bounded: an event (its pending line plus the fields gathered so far) larger than the
//! limit is an error, so an upstream that never ends a line or an event cannot make the gateway
//! buffer without end.

use serde_json::Value;

/// The default bound on one event: far above any chunk either provider sends.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// What OpenAI sends as its last event; its data is not JSON.
pub const OPENAI_DONE: &str = "data: [DONE]\n\n";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; `None` when absent (a plain "message" event, as OpenAI sends them).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field seen in this event, if any.
    pub id: Option<String>,
    /// A valid `retry:` field seen since the previous dispatched event, if any.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// The event's type as a browser would report it.
    pub fn event_name(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// Whether this is OpenAI's end-of-stream marker.
    pub fn is_openai_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }

    /// The data parsed as JSON.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("server-sent event larger than {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// An incremental event-stream parser; feed it chunks, get back the events they complete.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    line: Vec<u8>,
    /// The previous chunk ended with `\r`, so a `\n` starting the next one belongs to that ending.
    after_cr: bool,
    first_line: bool,
    event: Option<String>,
    /// Data lines, each followed by `\n` (the last one is removed on dispatch).
    data: String,
    id: Option<String>,
    retry: Option<u64>,
    failed: bool,
}

impl Default for SseParser {
    fn default() -> SseParser {
        SseParser::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that fails on events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> SseParser {
        SseParser {
            max_event_bytes,
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            event: None,
            data: String::new(),
            id: None,
            retry: None,
            failed: false,
        }
    }

    /// Parses `chunk` and returns the events it completes, in order. After an error the stream is
    /// unusable and every later call returns the same error.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        let mut out = Vec::new();
        while let Some(&first) = chunk.first() {
            if self.after_cr {
                self.after_cr = false;
                if first == b'\n' {
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.append(&chunk[..end])?;
                    self.after_cr = chunk[end] == b'\r';
                    chunk = &chunk[end + 1..];
                    self.end_line(&mut out)?;
                }
                None => {
                    self.append(chunk)?;
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Ends the stream. Strictly, an event not followed by a blank line is discarded; upstreams
    /// that omit the final blank line exist, so the pending event (if it has data) is returned
    /// instead. A stream cut mid-event then yields truncated data, which fails to parse as JSON.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.failed {
            return None;
        }
        let mut out = Vec::new();
        if !self.line.is_empty() && self.end_line(&mut out).is_err() {
            return None;
        }
        self.dispatch(&mut out);
        self.after_cr = false;
        out.pop()
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge { limit: self.max_event_bytes }
    }

    fn pending_bytes(&self) -> usize {
        self.line.len()
            + self.data.len()
            + self.event.as_ref().map_or(0, String::len)
            + self.id.as_ref().map_or(0, String::len)
    }

    fn check_size(&mut self) -> Result<(), SseError> {
        if self.pending_bytes() > self.max_event_bytes {
            self.failed = true;
            self.line = Vec::new();
            self.data = String::new();
            return Err(self.too_large());
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        self.line.extend_from_slice(bytes);
        self.check_size()
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let bytes = std::mem::take(&mut self.line);
        let decoded = String::from_utf8_lossy(&bytes);
        let mut line: &str = &decoded;
        if self.first_line {
            self.first_line = false;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        self.check_size()
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take().filter(|e| !e.is_empty());
        let id = self.id.take();
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        out.push(SseEvent { event, data, id, retry: self.retry.take() });
    }
}

/// Encodes one event. Line breaks of any kind inside `data` become separate `data:` lines, so the
/// receiver gets the text back with `\n` breaks; line breaks cannot occur in an event name and are
/// removed from it.
pub fn encode(event: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 16);
    if let Some(event) = event {
        out.push_str("event: ");
        out.extend(event.chars().filter(|c| *c != '\r' && *c != '\n'));
        out.push('\n');
    }
    for line in split_lines(data) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Encodes one event whose data is a JSON value (compact JSON has no line breaks).
pub fn encode_json(event: Option<&str>, data: &Value) -> String {
    encode(event, &data.to_string())
}

/// A comment, which receivers ignore: what keep-alives are made of.
pub fn comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for line in split_lines(text) {
        out.push(':');
        if !line.is_empty() {
            out.push(' ');
            out.push_str(line);
        }
        out.push('\n');
    }
    out.push('\n');
    out
}

fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            Some(end) => {
                let after = &current[end..];
                let skip = if after.starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&after[skip..]);
                Some(&current[..end])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(parser.feed(chunk).expect("within limits"));
        }
        out.extend(parser.finish());
        out
    }

    fn byte_by_byte(input: &[u8]) -> Vec<SseEvent> {
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        parse_all(&chunks)
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: event.map(str::to_owned), data: data.to_owned(), id: None, retry: None }
    }

    #[test]
    fn fixtures_parse_the_same_whole_byte_by_byte_and_at_every_split() {
        for stream in [
            fixtures::OPENAI_STREAM_TEXT,
            fixtures::OPENAI_STREAM_TOOLS,
            fixtures::ANTHROPIC_STREAM_TEXT,
            fixtures::ANTHROPIC_STREAM_TOOLS,
            fixtures::ANTHROPIC_STREAM_THINKING,
        ] {
            let bytes = stream.as_bytes();
            let whole = parse_all(&[bytes]);
            assert!(whole.len() > 3, "fixture has events");
            for event in &whole {
                assert!(event.is_openai_done() || event.json().is_ok(), "{}", event.data);
            }
            assert_eq!(byte_by_byte(bytes), whole);
            for split in 0..=bytes.len() {
                let (a, b) = bytes.split_at(split);
                assert_eq!(parse_all(&[a, b]), whole, "split at {split}");
            }
        }
    }

    #[test]
    fn crlf_and_cr_line_endings_parse_like_lf() {
        let lf = "event: a\ndata: one\ndata: two\n\n: comment\ndata: three\n\n";
        let crlf = lf.replace('\n', "\r\n");
        let cr = lf.replace('\n', "\r");
        let expected = vec![ev(Some("a"), "one\ntwo"), ev(None, "three")];
        for input in [lf.to_owned(), crlf, cr] {
            assert_eq!(parse_all(&[input.as_bytes()]), expected, "{input:?}");
            assert_eq!(byte_by_byte(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn a_crlf_split_between_chunks_is_one_line_ending() {
        // Were the `\n` taken as a second line ending, the empty line would dispatch early.
        let events = parse_all(&[b"data: a\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(events, vec![ev(None, "a\nb")]);
    }

    #[test]
    fn a_utf8_character_split_across_chunks_is_decoded_whole() {
        let input = "data: {\"text\":\"h\u{e9}llo \u{1f600} \u{65e5}\u{672c}\"}\n\n".as_bytes();
        for split in 0..input.len() {
            let (a, b) = input.split_at(split);
            let events = parse_all(&[a, b]);
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].data, "{\"text\":\"h\u{e9}llo \u{1f600} \u{65e5}\u{672c}\"}");
        }
    }

    #[test]
    fn comments_fields_and_edge_cases_follow_the_spec() {
        let input = "\u{feff}: keep-alive\n\
            :\n\
            event: message_start\n\
            id: 7\n\
            retry: 3000\n\
            data:no-space\n\
            data:  two spaces\n\
            unknown: ignored\n\
            \n\
            event: only-name\n\
            \n\
            data\n\
            \n\
            retry: soon\n\
            data: x\n\
            \n";
        let events = parse_all(&[input.as_bytes()]);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message_start".to_owned()),
                    data: "no-space\n two spaces".to_owned(),
                    id: Some("7".to_owned()),
                    retry: Some(3000),
                },
                // A `data` field without a colon is an empty data line; the event is dispatched.
                ev(None, ""),
                ev(None, "x"),
            ]
        );
        assert_eq!(events[0].event_name(), "message_start");
        assert_eq!(events[1].event_name(), "message");
    }

    #[test]
    fn finish_returns_an_event_missing_its_blank_line_and_nothing_otherwise() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"data: [DONE]").expect("small").is_empty());
        let last = parser.finish().expect("pending event");
        assert!(last.is_openai_done());
        assert_eq!(parser.finish(), None);

        let mut parser = SseParser::default();
        assert_eq!(parser.feed(b"data: a\n\n: trailing comment\n").expect("small").len(), 1);
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn an_oversized_event_is_an_error_even_without_line_breaks() {
        let mut parser = SseParser::new(64);
        assert!(parser.feed(&[b'x'; 40]).expect("under the limit").is_empty());
        assert_eq!(parser.feed(&[b'x'; 40]), Err(SseError::EventTooLarge { limit: 64 }));
        // The parser stays failed.
        assert_eq!(parser.feed(b"\n\ndata: small\n\n"), Err(SseError::EventTooLarge { limit: 64 }));
        assert_eq!(parser.finish(), None);

        // Many short data lines add up too.
        let mut parser = SseParser::new(64);
        let mut result = Ok(Vec::new());
        for _ in 0..20 {
            result = parser.feed(b"data: 0123456789\n");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::EventTooLarge { limit: 64 }));

        // Events under the limit keep flowing however many there are.
        let mut parser = SseParser::new(64);
        for _ in 0..1000 {
            assert_eq!(parser.feed(b"data: 0123456789\n\n").expect("small").len(), 1);
        }
    }

    #[test]
    fn encoded_events_parse_back_to_what_was_encoded() {
        let cases: &[(Option<&str>, &str)] = &[
            (None, "{\"a\":1}"),
            (Some("content_block_delta"), "{\"text\":\"caf\u{e9}\"}"),
            (Some("x"), "line one\nline two\r\nline three\rline four"),
            (None, ""),
            (None, " leading space"),
        ];
        for (event, data) in cases {
            let encoded = encode(*event, data);
            let events = parse_all(&[encoded.as_bytes()]);
            let expected = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(events, vec![ev(*event, &expected)], "{encoded:?}");
        }
        assert_eq!(encode(Some("a\nb"), "x"), "event: ab\ndata: x\n\n");
        assert_eq!(encode_json(None, &serde_json::json!({"k": "v"})), "data: {\"k\":\"v\"}\n\n");
    }

    #[test]
    fn comments_are_ignored_by_the_parser() {
        assert_eq!(comment("keep-alive"), ": keep-alive\n\n");
        assert_eq!(comment("two\nlines"), ": two\n: lines\n\n");
        let mut stream = comment("keep-alive");
        stream.push_str(&encode(None, "after"));
        stream.push_str(&comment(""));
        assert_eq!(parse_all(&[stream.as_bytes()]), vec![ev(None, "after")]);
        let done = parse_all(&[OPENAI_DONE.as_bytes()]);
        assert!(done.len() == 1 && done[0].is_openai_done());
    }
}
