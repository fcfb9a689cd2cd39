//! Forwarding to another OTLP/HTTP backend (Jaeger, Tempo, an OpenTelemetry Collector, or
//! another Helix), so a user who outgrows one machine keeps every trace in the backend they run.
//!
//! The exporter reads the durable event log from a persisted cursor instead of holding a queue
//! of its own: memory stays bounded whatever the receiver does, and nothing acknowledged is lost
//! while the receiver is down (it resumes where it stopped, also across restarts). Failed sends
//! are retried with exponential backoff. The one loss: events that retention removes before the
//! receiver comes back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::otlp;
use crate::store::log::LogStore;

/// Events per request.
const BATCH: usize = 1000;
const IDLE: Duration = Duration::from_millis(200);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

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
    cursor_file: PathBuf,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
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
            let body = otlp::to_otlp_protobuf(&events);
            let sent = http
                .post(&endpoint)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .map(|r| r.status().is_success());
            if matches!(sent, Ok(true)) {
                cursor = next;
                if let Err(e) = save_cursor(&cursor_file, cursor) {
                    tracing::error!(error = %e, "cannot save the export cursor");
                }
                backoff = BACKOFF_START;
            } else {
                tracing::warn!(endpoint = %endpoint, retry_in_ms = backoff.as_millis() as u64, "OTLP export failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = closing.changed() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    });
}
