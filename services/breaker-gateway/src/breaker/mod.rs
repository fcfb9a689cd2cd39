//! Circuit breakers per deployment (being built).
