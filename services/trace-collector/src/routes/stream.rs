//! `GET /v1/stream`: a live feed of stored spans and anomalies as server-sent events.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use crate::CollectorState;
use crate::anomaly::Anomaly;
use helix_core::trace::Event;

/// A comment line every this often keeps proxies and clients from dropping an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Streams end after this long; EventSource clients reconnect by themselves, and no connection
/// lives forever.
const MAX_STREAM: Duration = Duration::from_secs(600);

/// What the feed carries.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedItem {
    /// A span just stored (durable).
    Span {
        span: Box<Event>,
    },
    Anomaly {
        anomaly: Box<Anomaly>,
    },
}

impl FeedItem {
    fn project(&self) -> Option<&str> {
        match self {
            FeedItem::Span { span } => span.project.as_deref(),
            FeedItem::Anomaly { anomaly } => anomaly.project.as_deref(),
        }
    }

    fn sse(&self) -> String {
        let name = match self {
            FeedItem::Span { .. } => "span",
            FeedItem::Anomaly { .. } => "anomaly",
        };
        format!(
            "event: {name}\ndata: {}\n\n",
            serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
        )
    }
}

/// The feed's sender; slow subscribers lose the oldest items (and are told so), they never
/// hold memory or slow down ingest.
pub fn channel() -> broadcast::Sender<FeedItem> {
    broadcast::channel(4096).0
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Only spans and anomalies of this project.
    #[serde(default)]
    pub project: Option<String>,
}

/// Live feed
///
/// Server-sent events: `event: span` for every stored span and `event: anomaly` for every
/// anomaly, each with a JSON `data` line; comment lines keep the connection alive. Ends after
/// ten minutes (EventSource reconnects). `?project=` filters.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "query",
    operation_id = "stream",
    security(("bearer" = ["traces:read"])),
    params(StreamQuery),
    responses(
        (status = 200, description = "an SSE stream of FeedItem JSON objects", content_type = "text/event-stream", body = String),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn stream(
    state: web::Data<CollectorState>,
    helix_http::access::Caller(caller): helix_http::access::Caller,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, crate::error::CollectorError> {
    let project = super::read_scope(&caller, query.into_inner().project)?;
    let rx = state.feed.subscribe();
    let closing = state.closing.subscribe();
    let deadline = tokio::time::Instant::now() + MAX_STREAM;
    let body = stream::unfold(
        (rx, closing, project, true),
        move |(mut rx, mut closing, project, first)| async move {
            if first {
                // an initial comment so clients see the stream open at once
                let open = web::Bytes::from_static(b": helix live feed\n\n");
                return Some((Ok::<_, actix_web::Error>(open), (rx, closing, project, false)));
            }
            loop {
                let now = tokio::time::Instant::now();
                if now >= deadline || *closing.borrow() {
                    return None;
                }
                let wait = KEEP_ALIVE.min(deadline - now);
                let next = tokio::select! {
                    r = tokio::time::timeout(wait, rx.recv()) => r,
                    // shutdown: end the stream so the server need not wait for it
                    _ = closing.changed() => return None,
                };
                match next {
                    Err(_) => {
                        return Some((
                            Ok(web::Bytes::from_static(b": keep-alive\n\n")),
                            (rx, closing, project, false),
                        ));
                    }
                    Ok(Ok(item)) => {
                        if project.as_deref().is_some_and(|p| item.project() != Some(p)) {
                            continue;
                        }
                        return Some((Ok(web::Bytes::from(item.sse())), (rx, closing, project, false)));
                    }
                    Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                        let note = format!("event: lagged\ndata: {{\"missed\": {n}}}\n\n");
                        return Some((Ok(web::Bytes::from(note)), (rx, closing, project, false)));
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
