//! The orchestrator's trace events: built by `helix_core::span::SpanBuilder`, sent through the
//! shared batching [`Emitter`] of `helix_core::emit` (a run never waits for, or fails because
//! of, its reporting).

pub use helix_core::emit::{Emitter, EmitterStats};
pub use helix_core::span::{SpanBuilder, now_unix_nanos};
