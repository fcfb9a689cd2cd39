//! A scripted fake LLM provider on loopback (being built).
