//! One proxied call around the proxy: who is calling, for which project, and whether they may
//! (key, budget, bulkhead), then what the call cost and what is reported about it (budget
//! charge, metrics, one trace span).
//!
//! Kept out of the routes so that they stay thin and the order of the checks is in one place;
//! no actix types here.

use std::time::Instant;

use crate::GatewayState;
use crate::accounting::budget::DAY_MS;
use crate::accounting::shared::{Entry, Lease};
use crate::accounting::{
    BudgetExceeded, LlmCall, Permit, Project, ProjectRefused, TraceContext, llm_call_json,
};
use crate::error::GatewayError;
use crate::protocol::Protocol;
use crate::proxy::CallReport;

/// A call that passed the gateway's own checks.
#[derive(Debug)]
pub struct Admitted {
    pub project: Project,
    pub protocol: Protocol,
    /// The call's place in the client's trace (a new trace without `traceparent`).
    pub trace: TraceContext,
    pub start_unix_nanos: u64,
    /// The minted key the call was made with, charged with its cost.
    pub key: Option<std::sync::Arc<str>>,
    /// The project's bulkhead slot, freed when the call (its stream included) has ended: the
    /// local count, and the lease of the slot shared with the other replicas when Redis is used.
    _permit: Permit,
    _lease: Option<Lease>,
}

fn now_unix_ms() -> u64 {
    u64::try_from(helix_core::time::now_ms()).unwrap_or(0)
}

/// Nanoseconds, not milliseconds times a million: a call through the gateway often takes less
/// than a millisecond, and spans of 0 or 1 ms made every duration baseline a median of 0 in the
/// collector (each call then looked anomalous).
fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl GatewayState {
    /// The project a call bills to: the one its request names in `x-helix-project` when the
    /// caller may use it, else the caller's own (see [`crate::accounting::KeyRing::project_for`]).
    /// A name the caller may not use is refused, and counted as an `auth` rejection.
    pub fn project_for(
        &self,
        caller: &helix_core::auth::Principal,
        named: Option<&str>,
    ) -> Result<Project, GatewayError> {
        self.keys.project_for(caller, named).map_err(|e| {
            if matches!(e, ProjectRefused::Forbidden(_)) {
                self.metrics().rejected("auth");
            }
            GatewayError::from(e)
        })
    }

    /// Checks the caller's cap (a minted key's), the project's budget and takes a slot of its
    /// bulkhead: the replicas' shared ones when Redis is used (see [`crate::accounting::shared`]),
    /// else this process's.
    pub async fn admit(
        &self,
        caller: &helix_core::auth::Principal,
        project: Project,
        protocol: Protocol,
        traceparent: Option<&str>,
    ) -> Result<Admitted, GatewayError> {
        if let Some(id) = &caller.minted
            && let Err(spent) = self.caps.admit(id)
        {
            self.metrics().rejected("key_cap");
            return Err(GatewayError::KeySpent(spent));
        }
        if let Some(budget_usd) = project.daily_budget_usd {
            let now = now_unix_ms();
            let spent = match self.shared.spent(&project.name, now / DAY_MS).await {
                Some(shared) => shared,
                None => self.budgets.spent_today(&project.name, now),
            };
            if let Err(source) = BudgetExceeded::check(budget_usd, spent, now) {
                self.metrics().rejected("budget");
                return Err(GatewayError::Budget { project: project.name.to_string(), source });
            }
        }
        let limit = project.max_in_flight.unwrap_or(self.proxy.cfg.max_in_flight_per_key);
        let key = format!("project:{}", project.name);
        let busy = || {
            self.metrics().rejected("bulkhead");
            GatewayError::ProjectBusy { project: project.name.to_string(), limit }
        };
        // A project's own `max_in_flight` holds across the replicas; the gateway-wide default is a
        // per-replica safety limit and costs no Redis round trip. With a shared slot the local
        // count only counts (for metrics): the limit is Redis's.
        let entry = match project.max_in_flight {
            Some(_) => self.shared.try_enter(&key, limit).await,
            None => Entry::Local,
        };
        let (lease, local_limit) = match entry {
            Entry::Admitted(lease) => (Some(lease), u32::MAX),
            Entry::Full => return Err(busy()),
            Entry::Local => (None, limit),
        };
        let Some(permit) = self.proxy.bulkheads.try_enter(&key, local_limit) else { return Err(busy()) };
        Ok(Admitted {
            project,
            protocol,
            trace: TraceContext::from_traceparent(traceparent),
            start_unix_nanos: now_unix_nanos(),
            key: caller.minted.clone(),
            _permit: permit,
            _lease: lease,
        })
    }

    /// The label a client's model gets in metrics: a configured name, or `unknown` (clients
    /// must not be able to grow the metrics with invented names).
    pub fn model_label<'a>(&self, model: &'a str) -> &'a str {
        let cfg = &self.proxy.cfg;
        let known =
            cfg.models.iter().any(|m| m.name == model) || cfg.deployments.iter().any(|d| d.id == model);
        if known { model } else { "unknown" }
    }

    /// Counts a request the gateway answered itself, before any upstream was involved.
    pub fn count_refused(&self, protocol: Protocol, model: &str, status: u16) {
        self.metrics().request(protocol.as_str(), self.model_label(model), status);
    }

    /// Meters a finished call: its cost (when its usage and its model's price are known) is
    /// charged to the project's budget, counted in the metrics and reported with one trace span.
    /// Returns the cost in USD. With Redis, the charge reaches the shared ledger before this
    /// returns, so the call's answer is sent only once every replica's next check sees it.
    pub async fn settle(&self, call: &Admitted, request_model: &str, report: &CallReport) -> Option<f64> {
        let metrics = self.metrics();
        metrics.request(call.protocol.as_str(), self.model_label(request_model), report.status);
        let project = &*call.project.name;
        let cost = match (&report.upstream_model, &report.usage) {
            (Some(model), Some(usage)) => {
                metrics.usage(project, model, usage);
                let cost = self.prices.cost(model, usage);
                if let Some(c) = cost {
                    let now = now_unix_ms();
                    self.budgets.charge(project, c, now);
                    if call.project.daily_budget_usd.is_some() {
                        self.shared.charge(project, c, now / DAY_MS).await;
                    }
                    if let Some(k) = &call.key {
                        self.caps.charge(k, c);
                    }
                    metrics.cost(project, model, c);
                }
                cost
            }
            _ => None,
        };
        if let (Some(deployment), Some(provider)) = (&report.deployment, report.provider) {
            self.emitter.emit_json_with(|| {
                llm_call_json(&LlmCall {
                    trace: &call.trace,
                    project,
                    client_protocol: call.protocol,
                    request_model,
                    provider,
                    response_model: report.upstream_model.as_deref(),
                    deployment_id: deployment,
                    fallback_from: report.fallback_from.as_deref(),
                    attempts: report.attempts,
                    status_code: report.upstream_status,
                    error: report.error.as_deref(),
                    streaming: report.streaming,
                    usage: report.usage,
                    cost_usd: cost,
                    start_unix_nanos: call.start_unix_nanos,
                    end_unix_nanos: now_unix_nanos(),
                })
            });
        }
        cost
    }
}

/// A clock reading for the gateway's own overhead: time of the call minus time spent on
/// upstreams.
pub fn overhead_ms(started: Instant, report: &CallReport) -> f64 {
    started.elapsed().saturating_sub(report.upstream_time).as_secs_f64() * 1000.0
}

/// The SSE comment a stream ends with: the deployment that served it, its cost in USD (absent
/// when unpriced) and its tokens, as one JSON object after `: helix `. SDKs ignore comments; a
/// client that wants the cost of a stream reads this line.
pub fn cost_comment(report: &CallReport, cost: Option<f64>) -> String {
    let usage = report.usage.unwrap_or_default();
    let body = serde_json::json!({
        "deployment": report.deployment,
        "cost_usd": cost,
        "input_tokens": usage.total_input_tokens(),
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    });
    crate::protocol::sse::comment(&format!("helix {body}"))
}
