//! Trace and span ids, and the W3C `traceparent` header that carries them between services.
//!
//! Whoever starts a piece of work (the orchestrator a run, the gateway a call without a
//! `traceparent`) makes its ids here, so every service's spans of one run share a trace id and
//! `helix trace` can show the whole story. The ids are random (a v4 UUID's 122 random bits), in
//! the form the trace schema requires: lowercase hex, never all zero.

/// A new random trace id: 32 lowercase hex digits, never all zero (a v4 UUID has fixed bits set).
pub fn new_trace_id() -> String {
    format!("{:032x}", uuid::Uuid::new_v4().as_u128())
}

/// A new random span id: 16 lowercase hex digits, never all zero (the low half of a v4 UUID holds
/// its variant bits).
pub fn new_span_id() -> String {
    format!("{:016x}", uuid::Uuid::new_v4().as_u128() as u64)
}

/// The W3C Trace Context header value (`00-{trace_id}-{span_id}-01`, sampled) naming `span_id`
/// of `trace_id` as the parent of whatever the receiver does.
pub fn traceparent(trace_id: &str, span_id: &str) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::is_lower_hex;

    #[test]
    fn ids_have_the_schema_form_and_differ() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (t, s) = (new_trace_id(), new_span_id());
            assert!(is_lower_hex(&t, 32) && t.bytes().any(|b| b != b'0'), "{t}");
            assert!(is_lower_hex(&s, 16) && s.bytes().any(|b| b != b'0'), "{s}");
            assert!(seen.insert(t) && seen.insert(s), "ids repeat");
        }
    }

    #[test]
    fn traceparent_is_version_00_sampled() {
        let tp = traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        assert_eq!(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }
}
