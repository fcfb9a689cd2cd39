//! Cost attribution: sums of cost, tokens, calls and work time per project, phase, model,
//! domain, day or week, kept as compact running aggregates per (dimension, key, day) as events
//! arrive, so a cost query never scans events.

use std::collections::HashMap;

use helix_core::trace::{Event, SpanKind, attr};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DAY_NANOS: u64 = 86_400 * 1_000_000_000;
/// Key used when an event has no value for the dimension.
pub const NONE: &str = "(none)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Project,
    Phase,
    Model,
    Domain,
    Day,
    Week,
}

/// Sums for one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostRow {
    /// The project, phase, model or domain; for `day` the date (`2026-11-25`), for `week` the
    /// Monday starting the week.
    pub key: String,
    /// With a `bucket`: the day or week (as above) this row sums.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    /// LLM calls.
    pub llm_calls: u64,
    pub tool_calls: u64,
    /// Time spent in LLM and tool calls, nanoseconds.
    pub duration_nanos: u64,
}

impl CostRow {
    /// Adds another row's sums to this one.
    pub fn add(&mut self, o: &CostRow) {
        self.cost_usd += o.cost_usd;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.llm_calls += o.llm_calls;
        self.tool_calls += o.tool_calls;
        self.duration_nanos += o.duration_nanos;
    }
}

/// What one event contributes.
pub fn contribution(e: &Event) -> CostRow {
    let n = |k: &str| e.number(k).filter(|v| v.is_finite() && *v >= 0.0).unwrap_or(0.0);
    let work = matches!(e.kind, SpanKind::LlmCall | SpanKind::ToolCall);
    CostRow {
        key: String::new(),
        bucket: None,
        cost_usd: n(attr::HELIX_COST_USD),
        input_tokens: n(attr::GEN_AI_USAGE_INPUT_TOKENS) as u64,
        output_tokens: n(attr::GEN_AI_USAGE_OUTPUT_TOKENS) as u64,
        cache_read_tokens: n(attr::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) as u64,
        llm_calls: u64::from(e.kind == SpanKind::LlmCall),
        tool_calls: u64::from(e.kind == SpanKind::ToolCall),
        duration_nanos: if work { e.duration_nanos() } else { 0 },
    }
}

/// A cell's key borrowed from an event: looks a cell up without allocating its key (this runs
/// five times per ingested event). Hashes exactly as the owned `(GroupBy, String, u64)` does.
#[derive(Hash)]
struct CellRef<'a>(GroupBy, &'a str, u64);

impl hashbrown::Equivalent<(GroupBy, String, u64)> for CellRef<'_> {
    fn equivalent(&self, key: &(GroupBy, String, u64)) -> bool {
        self.0 == key.0 && self.1 == key.1 && self.2 == key.2
    }
}

/// Running aggregates: (dimension, key, day number) → sums.
#[derive(Debug, Default, Clone)]
pub struct CostIndex {
    cells: hashbrown::HashMap<(GroupBy, String, u64), CostRow>,
}

impl CostIndex {
    pub fn add(&mut self, e: &Event) {
        self.add_contribution(e, &contribution(e));
    }

    /// Adds `c`, what [`contribution`] computed for `e` (computed once when several indexes
    /// count the same event).
    pub fn add_contribution(&mut self, e: &Event, c: &CostRow) {
        if *c == CostRow::default() {
            return;
        }
        let day = e.start_unix_nanos / DAY_NANOS;
        let model = e.text(attr::GEN_AI_REQUEST_MODEL).or_else(|| e.text(attr::GEN_AI_RESPONSE_MODEL));
        let keys = [
            (GroupBy::Project, e.project.as_deref()),
            (GroupBy::Phase, e.phase.as_deref()),
            (GroupBy::Model, model),
            (GroupBy::Domain, e.domain.as_deref()),
        ];
        // day and week groups are derived from the per-day cells of one dimension
        for (dim, key) in keys.into_iter().chain([(GroupBy::Day, Some(""))]) {
            let key = key.unwrap_or(NONE);
            match self.cells.get_mut(&CellRef(dim, key, day)) {
                Some(cell) => cell.add(c),
                None => {
                    self.cells.insert((dim, key.to_owned(), day), c.clone());
                }
            }
        }
    }

    /// Adds what `other` counted (a sealed segment's sums loaded at open).
    pub fn merge(&mut self, other: CostIndex) {
        for (k, o) in other.cells {
            self.cells.entry(k).or_default().add(&o);
        }
    }

    /// The cells, for a segment's summary file.
    pub fn to_cells(&self) -> Vec<(GroupBy, String, u64, CostRow)> {
        self.cells.iter().map(|((g, k, d), row)| (*g, k.clone(), *d, row.clone())).collect()
    }

    pub fn from_cells(cells: Vec<(GroupBy, String, u64, CostRow)>) -> CostIndex {
        CostIndex { cells: cells.into_iter().map(|(g, k, d, row)| ((g, k, d), row)).collect() }
    }

    /// Removes what `other` counted (its events left the store).
    pub fn subtract(&mut self, other: &CostIndex) {
        for (k, o) in &other.cells {
            if let Some(c) = self.cells.get_mut(k) {
                c.cost_usd -= o.cost_usd;
                c.input_tokens = c.input_tokens.saturating_sub(o.input_tokens);
                c.output_tokens = c.output_tokens.saturating_sub(o.output_tokens);
                c.cache_read_tokens = c.cache_read_tokens.saturating_sub(o.cache_read_tokens);
                c.llm_calls = c.llm_calls.saturating_sub(o.llm_calls);
                c.tool_calls = c.tool_calls.saturating_sub(o.tool_calls);
                c.duration_nanos = c.duration_nanos.saturating_sub(o.duration_nanos);
                if c.llm_calls == 0 && c.tool_calls == 0 && c.cost_usd.abs() < 1e-12 {
                    self.cells.remove(k);
                }
            }
        }
    }

    /// Rows for `group_by` over events starting in `[from, to)` (whole days: the aggregates are
    /// per UTC day), most expensive first; with `bucket` (day or week), one row per key and
    /// bucket, in time order.
    pub fn query(
        &self,
        group_by: GroupBy,
        bucket: Option<GroupBy>,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Vec<CostRow> {
        let from_day = from.map_or(0, |f| f / DAY_NANOS);
        let to_day = to.map_or(u64::MAX, |t| t.div_ceil(DAY_NANOS));
        let source = match group_by {
            GroupBy::Day | GroupBy::Week => GroupBy::Day,
            other => other,
        };
        let time_key = |g: GroupBy, day: u64| match g {
            // 1970-01-01 was a Thursday: Monday-based weeks start 3 days later
            GroupBy::Week => Some(date(day.saturating_sub((day + 3) % 7))),
            GroupBy::Day => Some(date(day)),
            _ => None,
        };
        let mut rows: HashMap<(String, Option<String>), CostRow> = HashMap::new();
        for ((dim, key, day), cell) in &self.cells {
            if *dim != source || *day < from_day || *day >= to_day {
                continue;
            }
            let k = time_key(group_by, *day).unwrap_or_else(|| key.clone());
            let b = bucket.and_then(|g| time_key(g, *day));
            let row = rows.entry((k.clone(), b.clone())).or_insert_with(|| CostRow {
                key: k,
                bucket: b,
                ..CostRow::default()
            });
            row.add(cell);
        }
        let mut out: Vec<CostRow> = rows.into_values().collect();
        match (group_by, bucket) {
            (GroupBy::Day | GroupBy::Week, _) => out.sort_by(|a, b| a.key.cmp(&b.key)),
            (_, Some(_)) => out.sort_by(|a, b| {
                (&a.bucket, b.cost_usd)
                    .partial_cmp(&(&b.bucket, a.cost_usd))
                    .unwrap_or(std::cmp::Ordering::Equal)
            }),
            _ => out.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd).then_with(|| a.key.cmp(&b.key))),
        }
        out
    }
}

fn date(day: u64) -> String {
    let ms = i64::try_from(day.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    helix_core::time::rfc3339_ms(ms)[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llm(day: u64, project: &str, model: &str, cost: f64, tokens: u64) -> Event {
        serde_json::from_value(serde_json::json!({
            "trace_id": format!("{:032x}", day + 1), "span_id": format!("{:016x}", tokens + 1),
            "name": "chat", "kind": "llm_call",
            "start_unix_nanos": 1_764_028_800_000_000_000u64 + day * DAY_NANOS,
            "end_unix_nanos": 1_764_028_800_000_000_000u64 + day * DAY_NANOS + 2_000_000_000,
            "project": project, "phase": "development",
            "attributes": {"gen_ai.request.model": model, "helix.cost_usd": cost, "gen_ai.usage.input_tokens": tokens, "gen_ai.usage.output_tokens": 10}
        }))
        .expect("event")
    }

    #[test]
    fn groups_and_ranges() {
        let mut idx = CostIndex::default();
        idx.add(&llm(0, "a", "opus", 1.0, 100));
        idx.add(&llm(0, "b", "haiku", 0.25, 200));
        idx.add(&llm(1, "a", "opus", 2.0, 300));
        idx.add(&llm(8, "a", "haiku", 0.5, 400));
        let by_project = idx.query(GroupBy::Project, None, None, None);
        assert_eq!(by_project[0].key, "a");
        assert!((by_project[0].cost_usd - 3.5).abs() < 1e-9);
        assert_eq!(by_project[0].llm_calls, 3);
        assert_eq!(by_project[0].input_tokens, 800);
        assert_eq!(by_project[0].duration_nanos, 6_000_000_000);
        let by_model = idx.query(GroupBy::Model, None, None, None);
        assert_eq!(by_model.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["opus", "haiku"]);
        let by_day = idx.query(GroupBy::Day, None, None, None);
        assert_eq!(
            by_day.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["2025-11-25", "2025-11-26", "2025-12-03"]
        );
        let by_week = idx.query(GroupBy::Week, None, None, None);
        assert_eq!(by_week.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["2025-11-24", "2025-12-01"]);
        let first_day = 1_764_028_800_000_000_000u64;
        let ranged =
            idx.query(GroupBy::Project, None, Some(first_day + DAY_NANOS), Some(first_day + 2 * DAY_NANOS));
        assert_eq!(ranged.len(), 1);
        assert!((ranged[0].cost_usd - 2.0).abs() < 1e-9);
        let bucketed = idx.query(GroupBy::Project, Some(GroupBy::Day), None, None);
        let cells: Vec<(&str, &str)> =
            bucketed.iter().map(|r| (r.key.as_str(), r.bucket.as_deref().unwrap_or(""))).collect();
        assert_eq!(
            cells,
            [("a", "2025-11-25"), ("b", "2025-11-25"), ("a", "2025-11-26"), ("a", "2025-12-03")]
        );
    }
}
