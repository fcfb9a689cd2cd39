//! Thin HTTP handlers.

pub mod events;
pub mod otlp;
pub mod traces;
