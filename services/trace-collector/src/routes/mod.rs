//! Thin HTTP handlers.

pub mod events;
pub mod traces;
