//! Accounting: who is calling, what they may still spend and run at once, what a call cost, and
//! what the gateway reports about it.
//!
//! These are the pieces the proxy handler consults around every upstream call, kept free of HTTP
//! types so each can be tested on its own:
//!
//! - [`keys`]: gateway keys and the project a request names → the [`Project`] a call bills to.
//! - [`budget`]: USD spent per project per UTC day, persisted so a restart does not hand out a
//!   spent budget again.
//! - [`bulkhead`]: calls in flight per project and per deployment, refused rather than queued so
//!   one noisy project or one slow deployment cannot take every connection.
//! - [`shared`]: the budget ledger and project bulkheads in Redis, when replicas share them.
//! - [`caps`]: the cost caps of keys minted for agents (`POST /v1/keys`).
//! - [`pricing`]: token usage → USD.
//! - [`emitter`]: one trace span per proxied call, sent to the trace-collector in the background
//!   without ever slowing or failing a call.
//! - [`metrics`]: Prometheus counters, gauges and histograms of the gateway.

pub mod budget;
pub mod bulkhead;
pub mod caps;
pub mod emitter;
pub mod keys;
pub mod metrics;
pub mod pricing;
pub mod shared;

pub use budget::{BudgetExceeded, Budgets};
pub use bulkhead::{Bulkheads, Permit};
pub use caps::{CapSpent, KeyCaps, KeyUsage};
pub use emitter::{
    Emitter, EmitterStats, LlmCall, TraceContext, circuit_event, llm_call_event, llm_call_json,
};
pub use keys::{KeyRing, PROJECT_HEADER, Project, ProjectRefused};
pub use metrics::Metrics;
pub use pricing::Prices;
