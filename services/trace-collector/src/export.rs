//! Forwarding to another OTLP/HTTP backend (Jaeger, Tempo, an OpenTelemetry Collector, or
//! another Helix), so a user who outgrows one machine keeps every trace in the backend they run.
//!
//! The exporter reads the durable event log from a persisted cursor instead of holding a queue
//! of its own: memory stays bounded whatever the receiver does, and nothing acknowledged is lost
//! while the receiver is down (it resumes where it stopped, also across restarts).
//!
//! What is retried follows the OTLP/HTTP specification: connection failures and 429, 502, 503
//! and 504 are retried with exponential backoff (a `Retry-After` is honoured, up to
//! [`BACKOFF_MAX`]); every other answer must not be retried, because the same request would fail
//! the same way and stall everything after it. A 413 (batch too large) is split in halves until
//! the receiver takes the parts. A 400 (invalid data) is split the same way, within
//! [`BISECT_REQUESTS`] requests per batch, so that the spans the receiver cannot take are found
//! and the rest still go through. A span refused alone, a part left when that budget is spent,
//! and any batch refused with another status (401, 403, 404, 500 …, which no split can cure)
//! is **dead-lettered**: appended to `export.deadletter.ndjson` in the
//! data directory (up to [`DEAD_LETTER_BYTES`], beyond that only counted) and counted in
//! `/metrics`, and forwarding goes on. The one other loss: events that retention removes before
//! the receiver comes back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use helix_core::trace::Event;

use crate::otlp;
use crate::store::log::LogStore;

/// Events per request.
const BATCH: usize = 1000;
const IDLE: Duration = Duration::from_millis(200);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Most extra requests one batch may cost to find the spans behind a 400 (a receiver that
/// refuses everything must not get two requests per span).
pub const BISECT_REQUESTS: usize = 64;
/// Most bytes the dead-letter file grows to; beyond it, dead letters are only counted.
pub const DEAD_LETTER_BYTES: u64 = 64 << 20;
const DEAD_LETTER_FILE: &str = "export.deadletter.ndjson";

/// What the exporter has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans the receiver accepted.
    pub forwarded: AtomicU64,
    /// Spans refused for good (see the module docs).
    pub dead_lettered: AtomicU64,
    /// Requests retried (connection failures, 429, 502, 503, 504).
    pub retries: AtomicU64,
    /// Batches split after a 413.
    pub splits: AtomicU64,
}

/// What to do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Sent,
    /// Send the same again later (after the receiver's `Retry-After` when it gave one).
    Retry(Option<Duration>),
    /// Too large: send it in halves.
    Split,
    /// Invalid data somewhere in it: halves find which spans.
    Invalid,
    /// Refused for good, with the status.
    Dead(u16),
}

fn verdict(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Sent,
        429 | 502 | 503 | 504 => Verdict::Retry(retry_after),
        413 => Verdict::Split,
        400 => Verdict::Invalid,
        s => Verdict::Dead(s),
    }
}

/// Appends refused events to the dead-letter file, one JSON object per line.
fn dead_letter(data_dir: &Path, events: &[Event], status: u16) {
    let path = data_dir.join(DEAD_LETTER_FILE);
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    if size >= DEAD_LETTER_BYTES {
        return;
    }
    let mut buf = Vec::new();
    for e in events {
        let line = serde_json::json!({"status": status, "event": e});
        if serde_json::to_writer(&mut buf, &line).is_ok() {
            buf.push(b'\n');
        }
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&buf).and_then(|()| f.sync_data()));
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write the export dead-letter file");
    }
}

fn load_cursor(path: &PathBuf) -> (u32, u64) {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let (a, b) = s.trim().split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((1, 0))
}

fn save_cursor(path: &PathBuf, cursor: (u32, u64)) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{} {}\n", cursor.0, cursor.1))?;
    std::fs::rename(&tmp, path)
}

/// Starts the exporter task on the current tokio runtime; it stops when `closing` turns true.
pub fn spawn(
    store: Arc<LogStore>,
    endpoint: String,
    data_dir: PathBuf,
    stats: Arc<ExportStats>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let cursor_file = data_dir.join("export.cursor");
    tokio::spawn(async move {
        let http = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the OTLP export client");
                return;
            }
        };
        let mut cursor = load_cursor(&cursor_file);
        let mut backoff = BACKOFF_START;
        loop {
            if *closing.borrow() {
                return;
            }
            let (s, c) = (store.clone(), cursor);
            let read = tokio::task::spawn_blocking(move || s.read_from(c, BATCH)).await;
            let (events, next) = match read {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "export cannot read the event log");
                    tokio::time::sleep(BACKOFF_MAX).await;
                    continue;
                }
                Err(_) => return,
            };
            if events.is_empty() {
                cursor = next;
                tokio::select! {
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = closing.changed() => return,
                }
                continue;
            }
            // parts of the batch still to send, the next one last
            let mut parts = vec![(0, events.len())];
            let mut bisect = BISECT_REQUESTS;
            while let Some((from, to)) = parts.pop() {
                let body = otlp::to_otlp_protobuf(&events[from..to]);
                let answer = http
                    .post(&endpoint)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                let v = match &answer {
                    Ok(r) => {
                        let retry_after = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(|s| Duration::from_secs(s).min(BACKOFF_MAX));
                        verdict(r.status().as_u16(), retry_after)
                    }
                    Err(_) => Verdict::Retry(None),
                };
                match v {
                    Verdict::Sent => {
                        stats.forwarded.fetch_add((to - from) as u64, Ordering::Relaxed);
                        backoff = BACKOFF_START;
                    }
                    Verdict::Split if to - from > 1 => {
                        stats.splits.fetch_add(1, Ordering::Relaxed);
                        let mid = from + (to - from) / 2;
                        parts.push((mid, to));
                        parts.push((from, mid));
                    }
                    Verdict::Invalid if to - from > 1 && bisect >= 2 => {
                        bisect -= 2;
                        let mid = from + (to - from) / 2;
                        parts.push((mid, to));
                        parts.push((from, mid));
                    }
                    Verdict::Invalid => {
                        tracing::warn!(endpoint = %endpoint, spans = to - from, "the OTLP receiver refuses spans as invalid; dead-lettered, forwarding goes on");
                        stats.dead_lettered.fetch_add((to - from) as u64, Ordering::Relaxed);
                        dead_letter(&data_dir, &events[from..to], 400);
                    }
                    Verdict::Split => {
                        tracing::warn!(endpoint = %endpoint, "the OTLP receiver refuses one span as too large; dead-lettered");
                        stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        dead_letter(&data_dir, &events[from..to], 413);
                    }
                    Verdict::Dead(status) => {
                        tracing::warn!(endpoint = %endpoint, status, spans = to - from, "the OTLP receiver refused a batch for good; dead-lettered, forwarding goes on");
                        stats.dead_lettered.fetch_add((to - from) as u64, Ordering::Relaxed);
                        dead_letter(&data_dir, &events[from..to], status);
                    }
                    Verdict::Retry(after) => {
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        let wait = after.unwrap_or(backoff);
                        tracing::warn!(endpoint = %endpoint, retry_in_ms = wait.as_millis() as u64, "OTLP export failed; retrying");
                        parts.push((from, to));
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = closing.changed() => return,
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            cursor = next;
            if let Err(e) = save_cursor(&cursor_file, cursor) {
                tracing::error!(error = %e, "cannot save the export cursor");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_statuses_otlp_marks_retryable_are_retried() {
        for s in [429, 502, 503, 504] {
            assert_eq!(verdict(s, None), Verdict::Retry(None), "{s}");
        }
        assert_eq!(verdict(200, None), Verdict::Sent);
        assert_eq!(verdict(413, None), Verdict::Split);
        assert_eq!(verdict(400, None), Verdict::Invalid);
        for s in [401, 403, 404, 405, 415, 422, 500, 501] {
            assert_eq!(verdict(s, None), Verdict::Dead(s), "{s}");
        }
    }
}
