//! The OpenAI and Anthropic wire protocols (being built).
