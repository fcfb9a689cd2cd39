//! `helix costs`: the collector's cost table in the terminal.

use std::fmt::Write;

/// Renders a `GET /v1/costs` answer as a table (pure, for tests).
pub fn render(report: &serde_json::Value) -> String {
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    let bucketed = rows.iter().any(|r| r.get("bucket").is_some_and(|b| !b.is_null()));
    let by = report["group_by"].as_str().unwrap_or("group");
    let mut out = String::new();
    let _ = write!(out, "{by:<24}");
    if bucketed {
        let _ = write!(out, " {:<10}", "bucket");
    }
    let _ = writeln!(
        out,
        " {:>11} {:>12} {:>12} {:>6} {:>6} {:>10}",
        "cost", "tokens in", "tokens out", "llm", "tools", "time"
    );
    let line = |out: &mut String, r: &serde_json::Value| {
        let key: String = r["key"].as_str().unwrap_or("").chars().take(24).collect();
        let _ = write!(out, "{key:<24}");
        if bucketed {
            let _ = write!(out, " {:<10}", r["bucket"].as_str().unwrap_or(""));
        }
        let secs = r["duration_nanos"].as_f64().unwrap_or(0.0) / 1e9;
        let _ = writeln!(
            out,
            " {:>11} {:>12} {:>12} {:>6} {:>6} {:>9.1}s",
            format!("${:.4}", r["cost_usd"].as_f64().unwrap_or(0.0)),
            r["input_tokens"].as_u64().unwrap_or(0),
            r["output_tokens"].as_u64().unwrap_or(0),
            r["llm_calls"].as_u64().unwrap_or(0),
            r["tool_calls"].as_u64().unwrap_or(0),
            secs
        );
    };
    for r in &rows {
        line(&mut out, r);
    }
    if rows.is_empty() {
        out.push_str("(no costs recorded in this range)\n");
    }
    line(&mut out, &report["total"]);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_with_buckets_and_total() {
        let report = serde_json::json!({
            "group_by": "project",
            "rows": [
                {"key": "webshop", "bucket": "2026-11-24", "cost_usd": 1.5, "input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 0, "llm_calls": 3, "tool_calls": 7, "duration_nanos": 12_000_000_000u64},
                {"key": "billing", "bucket": "2026-11-25", "cost_usd": 0.25, "input_tokens": 10, "output_tokens": 2, "cache_read_tokens": 0, "llm_calls": 1, "tool_calls": 0, "duration_nanos": 500_000_000u64}
            ],
            "total": {"key": "total", "cost_usd": 1.75, "input_tokens": 1010, "output_tokens": 202, "cache_read_tokens": 0, "llm_calls": 4, "tool_calls": 7, "duration_nanos": 12_500_000_000u64}
        });
        let t = super::render(&report);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("project") && lines[0].contains("bucket"), "{t}");
        assert!(
            lines[1].starts_with("webshop")
                && lines[1].contains("2026-11-24")
                && lines[1].contains("$1.5000"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("total") && lines[3].contains("$1.7500") && lines[3].contains("12.5s"),
            "{t}"
        );
    }
}
