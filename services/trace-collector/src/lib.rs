//! The trace-collector: one trace format for every step of every run, durable storage, cost
//! attribution, baselines and anomaly flags (see ARCHITECTURE.md for what is built so far).
//!
//! Built so far: the event schema (in helix-core), durable ingest (`POST /v1/events`, an
//! append-only log with group commit, see [`store`]), trace listing and span trees
//! (`GET /v1/traces`, `GET /v1/traces/{id}`), the OTLP codec ([`otlp`]) and the Claude Code
//! transcript importer ([`import`]). Routes in [`routes`] are thin; everything else is domain.

pub mod anomaly;
pub mod console;
pub mod costs;
pub mod error;
pub mod export;
pub mod import;
pub mod otlp;
pub mod routes;
pub mod signals;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web;
use futures_util::future::BoxFuture;
use helix_core::{Check, HelixConfig, ServiceKind};
use store::EventStore;
use store::log::LogStore;
use utoipa::OpenApi;

/// Shared state of the collector's handlers.
#[derive(Debug)]
pub struct CollectorState {
    data_dir: PathBuf,
    pub store: Arc<dyn EventStore>,
    pub baselines: std::sync::Mutex<anomaly::Baselines>,
    /// Circuits, runs and healed signatures for the console (see [`console`]).
    pub console: std::sync::Mutex<console::Console>,
    /// The newest spans and anomalies, for pages that poll (`GET /v1/feed`).
    pub recent: std::sync::Mutex<console::Recent>,
    /// Live feed of stored spans and anomalies (`GET /v1/stream`).
    pub feed: tokio::sync::broadcast::Sender<routes::stream::FeedItem>,
    /// Set when shutdown begins: live streams end.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The OTLP forwarder's counters, when forwarding is configured.
    pub export: Option<Arc<export::ExportStats>>,
    /// Duplicate spans dropped since start.
    pub duplicates: std::sync::atomic::AtomicU64,
    /// Largest OTLP body, decompressed (`trace_collector.otlp_max_body_bytes`).
    pub otlp_max_body_bytes: usize,
}

impl CollectorState {
    pub fn open(cfg: &HelixConfig) -> std::io::Result<CollectorState> {
        CollectorState::open_with(cfg, store::log::LogOptions::default())
    }

    /// [`CollectorState::open`] with other event log options (tests simulate slow disks).
    pub fn open_with(cfg: &HelixConfig, options: store::log::LogOptions) -> std::io::Result<CollectorState> {
        let data_dir =
            helix_http::storage::prepare_data_dir(&cfg.service_data_dir(ServiceKind::TraceCollector))?;
        // baselines resume from their last snapshot; only events stored after it are replayed
        let (mut baselines, mut console, from) = match load_baselines(&data_dir) {
            Some((b, c, end)) => (b, c, Some(end)),
            None => (anomaly::Baselines::default(), console::Console::default(), None),
        };
        baselines.flag_low = cfg.trace_collector.flag_fast_and_cheap;
        let store = LogStore::open_observed_from(&data_dir.join("events"), options, from, &mut |e| {
            baselines.replay(e);
            console.observe(e);
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        let store = Arc::new(store);
        let closing = tokio::sync::watch::channel(false).0;
        let export_stats = Arc::new(export::ExportStats::default());
        if let Some(endpoint) = &cfg.trace_collector.export_otlp_endpoint {
            export::spawn(
                store.clone(),
                endpoint.clone(),
                data_dir.clone(),
                export_stats.clone(),
                closing.subscribe(),
            );
        }
        let store: Arc<dyn EventStore> = store;
        spawn_retention(Arc::downgrade(&store), cfg.trace_collector.clone());
        Ok(CollectorState {
            data_dir,
            store,
            baselines: std::sync::Mutex::new(baselines),
            console: std::sync::Mutex::new(console),
            recent: std::sync::Mutex::new(console::Recent::default()),
            feed: routes::stream::channel(),
            closing,
            export: cfg.trace_collector.export_otlp_endpoint.is_some().then_some(export_stats),
            duplicates: std::sync::atomic::AtomicU64::new(0),
            otlp_max_body_bytes: cfg.trace_collector.otlp_max_body_bytes,
        })
    }

    /// Saves the baselines with the log position they cover (atomically: temp file, fsync,
    /// rename). An event scored but not yet stored when this runs is replayed again at the next
    /// start: counted twice in a window of hundreds, which robust statistics shrug off.
    pub fn save_baselines(&self) -> std::io::Result<()> {
        let (snapshot, end) = {
            let b = self.baselines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (b.snapshot(), self.store.end())
        };
        let path = self.data_dir.join(BASELINES_FILE);
        let tmp = path.with_extension("json.tmp");
        {
            let console = self.console.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let saved = SavedBaselines { version: 1, end, baselines: snapshot, console: Some(&*console) };
            let mut f = std::fs::File::create(&tmp)?;
            serde_json::to_writer(std::io::BufWriter::new(&mut f), &saved)?;
            drop(console);
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    }

    /// Stores events durably, each span once: duplicates of stored spans are dropped first (see
    /// [`store`]), then the new ones are judged against their baselines (marking anomalies on
    /// the spans) and written. Every ingest path goes through here.
    pub fn ingest(
        &self,
        events: Vec<helix_core::trace::Event>,
    ) -> Result<store::Appended, store::StoreError> {
        let mut anomalies = Vec::new();
        // the feed only sees what is durable, and only when someone listens
        let live = self.feed.receiver_count() > 0;
        let mut copies = Vec::new();
        let appended = self.store.append_prepared(events, &mut |events| {
            let mut b = self.baselines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for e in events.iter_mut() {
                anomalies.extend(b.score_and_learn(e));
            }
            drop(b);
            let mut c = self.console.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for e in events.iter() {
                c.observe(e);
            }
            drop(c);
            let mut r = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for e in events.iter() {
                r.span(e);
            }
            for a in &anomalies {
                r.anomaly(a);
            }
            drop(r);
            if live {
                copies = events.clone();
            }
        })?;
        if appended.duplicates > 0 {
            self.duplicates.fetch_add(appended.duplicates as u64, std::sync::atomic::Ordering::Relaxed);
        }
        for e in copies {
            let _ = self.feed.send(routes::stream::FeedItem::Span { span: Box::new(e) });
        }
        if live {
            for a in anomalies {
                let _ = self.feed.send(routes::stream::FeedItem::Anomaly { anomaly: Box::new(a) });
            }
        }
        Ok(appended)
    }
}

const BASELINES_FILE: &str = "baselines.json";
/// How often the baselines are saved (and at shutdown).
const SAVE_BASELINES_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(serde::Serialize)]
struct SavedBaselines<'a> {
    version: u32,
    end: (u32, u64),
    baselines: anomaly::BaselineSnapshot,
    console: Option<&'a console::Console>,
}

#[derive(serde::Deserialize)]
struct LoadedBaselines {
    version: u32,
    end: (u32, u64),
    baselines: anomaly::BaselineSnapshot,
    /// Absent in snapshots written before the console had views of its own.
    #[serde(default)]
    console: Option<console::Console>,
}

fn load_baselines(data_dir: &std::path::Path) -> Option<(anomaly::Baselines, console::Console, (u32, u64))> {
    let data = std::fs::read(data_dir.join(BASELINES_FILE)).ok()?;
    match serde_json::from_slice::<LoadedBaselines>(&data) {
        Ok(s) if s.version == 1 => {
            Some((anomaly::Baselines::from_snapshot(s.baselines), s.console.unwrap_or_default(), s.end))
        }
        _ => {
            tracing::warn!("ignoring an unreadable baselines snapshot; replaying the whole log");
            None
        }
    }
}

/// Saves the baselines every [`SAVE_BASELINES_EVERY`] until the state is dropped.
fn spawn_baseline_saver(state: std::sync::Weak<CollectorState>) {
    let spawned = std::thread::Builder::new().name("baseline-saver".to_owned()).spawn(move || {
        loop {
            std::thread::sleep(SAVE_BASELINES_EVERY);
            let Some(state) = state.upgrade() else { return };
            if let Err(e) = state.save_baselines() {
                tracing::error!(error = %e, "cannot save the baselines");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the baseline saver");
    }
}

/// How often retention is enforced.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Enforces retention at start and then every [`RETENTION_EVERY`], until the store is dropped.
fn spawn_retention(store: std::sync::Weak<dyn EventStore>, cfg: helix_core::TraceCollectorConfig) {
    if cfg.retention_days == 0 && cfg.retention_bytes == 0 {
        return;
    }
    let spawned = std::thread::Builder::new().name("event-retention".to_owned()).spawn(move || {
        loop {
            let Some(store) = store.upgrade() else { return };
            let now = u64::try_from(helix_core::time::now_ms()).unwrap_or(0).saturating_mul(1_000_000);
            let min_end = (cfg.retention_days > 0)
                .then(|| now.saturating_sub(cfg.retention_days * 86_400 * 1_000_000_000));
            let max_bytes = (cfg.retention_bytes > 0).then_some(cfg.retention_bytes);
            if let Err(e) = store.enforce_retention(min_end, max_bytes) {
                tracing::error!(error = %e, "retention failed");
            }
            drop(store);
            std::thread::sleep(RETENTION_EVERY);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the retention thread");
    }
}

/// Registers the collector's routes on `cfg`.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<CollectorState>) {
    // OTLP bodies have their own limit (on the decompressed body: actix inflates gzip before
    // counting), so the SDKs' big batches fit while other routes keep `max_body_bytes`
    let otlp_body = web::PayloadConfig::new(state.otlp_max_body_bytes);
    cfg.app_data(state)
        .service(helix_http::routes::post("/v1/events", routes::events::ingest))
        .service(
            web::resource("/v1/traces")
                .app_data(otlp_body.clone())
                .route(web::get().to(routes::traces::list))
                .route(web::post().to(routes::otlp::receive))
                .default_service(web::to(helix_http::routes::method_not_allowed("GET, POST"))),
        )
        .service(helix_http::routes::post("/v1/logs", routes::otlp::receive_logs).app_data(otlp_body.clone()))
        .service(
            helix_http::routes::post("/v1/metrics", routes::otlp::receive_metrics)
                .app_data(otlp_body.clone()),
        )
        .service(helix_http::routes::get("/v1/traces/{trace_id}", routes::traces::get))
        .service(helix_http::routes::get("/v1/traces/{trace_id}/otlp", routes::otlp::get_otlp))
        .service(helix_http::routes::post("/v1/import/claude-stream-json", routes::otlp::import_claude))
        .service(helix_http::routes::get("/v1/costs", routes::costs::costs))
        .service(helix_http::routes::get("/v1/anomalies", routes::costs::anomalies))
        .service(helix_http::routes::get("/v1/stream", routes::stream::stream))
        .service(helix_http::routes::get("/v1/baselines", routes::costs::baselines))
        .service(helix_http::routes::get("/v1/console", routes::console::console))
        .service(helix_http::routes::get("/v1/feed", routes::console::feed))
        .service(helix_http::routes::get("/dashboard/traces/{trace_id}", routes::console::dashboard_trace))
        .service(helix_http::routes::get("/dashboard", routes::costs::dashboard))
        .service(helix_http::routes::get("/metrics", routes::metrics::metrics));
}

#[derive(OpenApi)]
#[openapi(
    paths(
        routes::events::ingest,
        routes::otlp::receive,
        routes::otlp::receive_logs,
        routes::otlp::receive_metrics,
        routes::otlp::import_claude,
        routes::traces::list,
        routes::traces::get,
        routes::otlp::get_otlp,
        routes::costs::costs,
        routes::costs::anomalies,
        routes::stream::stream,
        routes::costs::baselines,
        routes::costs::dashboard,
        routes::console::console,
        routes::console::feed,
        routes::console::dashboard_trace,
        routes::metrics::metrics
    ),
    components(schemas(
        helix_core::trace::Event,
        helix_core::trace::SpanKind,
        helix_core::trace::SpanStatus,
        routes::events::IngestResult,
        routes::events::Rejected,
        routes::traces::TraceList,
        routes::traces::TraceTree,
        routes::traces::SpanNode,
        routes::otlp::ImportResult,
        routes::costs::CostReport,
        routes::costs::Bucket,
        costs::CostRow,
        costs::GroupBy,
        routes::costs::AnomalyList,
        anomaly::Anomaly,
        anomaly::Metric,
        anomaly::Stats,
        routes::stream::FeedItem,
        routes::costs::BaselineList,
        anomaly::BaselineView,
        console::ConsoleView,
        console::FeedPage,
        console::FeedEntry,
        console::CircuitView,
        console::RunView,
        console::SignatureView,
        store::TraceSummary,
    )),
    tags(
        (name = "ingest", description = "durable event ingest"),
        (name = "query", description = "traces as lists and span trees"),
        (name = "costs", description = "cost attribution")
    )
)]
struct ApiDoc;

/// The collector's complete OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    helix_http::openapi::finish(
        ServiceKind::TraceCollector,
        "Durable traces of every pipeline step: tool calls, LLM calls, gates, retries.",
        ApiDoc::openapi(),
    )
}

/// The collector as served by the shared runtime.
pub struct CollectorService {
    state: web::Data<CollectorState>,
}

impl CollectorService {
    pub fn new(cfg: &HelixConfig) -> std::io::Result<CollectorService> {
        let state = web::Data::new(CollectorState::open(cfg)?);
        spawn_baseline_saver(std::sync::Arc::downgrade(&state.clone().into_inner()));
        Ok(CollectorService { state })
    }

    pub fn into_service(self) -> Arc<dyn helix_http::Service> {
        Arc::new(self)
    }
}

impl helix_http::Service for CollectorService {
    fn kind(&self) -> ServiceKind {
        ServiceKind::TraceCollector
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        configure(cfg, self.state.clone());
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        openapi()
    }

    fn stopping(&self) {
        self.state.closing.send_replace(true);
        if let Err(e) = self.state.save_baselines() {
            tracing::error!(error = %e, "cannot save the baselines");
        }
    }

    fn readiness(&self) -> BoxFuture<'static, Vec<Check>> {
        let dir = self.state.data_dir.clone();
        let events = self.state.store.len();
        let damage = self.state.store.damage();
        let log = if damage.regions == 0 {
            Check::new("event_log", helix_core::CheckStatus::Ok, format!("{events} events stored"))
        } else {
            // serving goes on; what was damaged is kept aside for someone to look at
            Check::new(
                "event_log",
                helix_core::CheckStatus::Degraded,
                format!(
                    "{events} events stored; {} damaged records ({} bytes) failed their checksums and were \
                     kept aside in events/quarantine/ (remove those files once looked at)",
                    damage.regions, damage.bytes
                ),
            )
        };
        Box::pin(async move { vec![helix_http::storage::data_dir_check(dir).await, log] })
    }
}
