//! Thin HTTP handlers.

pub mod costs;
pub mod events;
pub mod otlp;
pub mod stream;
pub mod traces;
