//! Thin HTTP handlers: the provider-compatible proxy routes ([`llm`]) and the operator routes
//! ([`circuits`]).

pub mod circuits;
pub mod keys;
pub mod llm;

#[cfg(test)]
mod tests;
