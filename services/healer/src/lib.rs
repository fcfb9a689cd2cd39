//! The healer: Helix's error pattern engine.
//!
//! Raw tool output goes through [`parse`] (split into diagnostics per tool format), then
//! [`analyze`] classifies each against the [`patterns`] knowledge base and fingerprints it into
//! a stable, versioned [`signature`].
//!
//! Layout: everything but [`routes`] is domain logic free of actix types; [`routes`] holds thin handlers;
//! [`configure`] registers them; [`HealerService`] is what `helix up`, `helix serve healer` and
//! the tests run.

pub mod analyze;
pub mod check;
pub mod diff;
pub mod error;
pub mod flaky;
pub mod hints;
pub mod index;
pub mod knowledge;
pub mod llm;
pub mod matcher;
pub mod mining;
pub mod model;
pub mod parse;
pub mod paths;
pub mod patterns;
pub mod propose;
pub mod routes;
pub mod signature;
pub mod store;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web;
use futures_util::future::BoxFuture;
use helix_core::{Check, HelixConfig, ServiceKind};
use utoipa::OpenApi;

pub use error::HealerError;
use index::KnowledgeIndex;
use patterns::PatternSet;
use store::{LearningStore, LogStore};

/// How often buffered occurrences are made durable.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Shared state of the healer's handlers.
#[derive(Debug)]
pub struct HealerState {
    data_dir: PathBuf,
    pub patterns: Arc<PatternSet>,
    pub store: Arc<dyn LearningStore>,
    pub index: Arc<KnowledgeIndex>,
    /// `healer.share_hints`: whether fixes of one project inform another's analyses and hints.
    pub share_hints: bool,
    /// Audit records (a fix recorded, and by whom) go to the trace-collector.
    pub emitter: helix_core::emit::Emitter,
    /// `[healer] llm_model`: the LLM analysis of what stays unknown, through the gateway.
    pub llm: Option<Arc<llm::LlmAnalyst>>,
}

/// Audit events waiting for the collector at most.
const EMITTER_CAPACITY: usize = 1_000;

impl HealerState {
    /// Loads the pattern base (the configured directory, else the seed compiled in) and opens
    /// the healer's storage under `<data_dir>/healer`. An invalid pattern file stops start-up.
    pub fn open(cfg: &HelixConfig) -> Result<HealerState, HealerError> {
        HealerState::open_with(cfg, &cfg.peer_url(ServiceKind::TraceCollector), None)
    }

    /// [`HealerState::open`], with audit events going to the collector at `collector_url` (with
    /// `token`, when it requires one).
    pub fn open_with(
        cfg: &HelixConfig,
        collector_url: &str,
        token: Option<helix_core::auth::Secret>,
    ) -> Result<HealerState, HealerError> {
        HealerState::open_with_peers(cfg, collector_url, &cfg.peer_url(ServiceKind::BreakerGateway), token)
    }

    /// [`HealerState::open_with`], with LLM analyses (`[healer] llm_model`) going to the gateway
    /// at `gateway_url`.
    pub fn open_with_peers(
        cfg: &HelixConfig,
        collector_url: &str,
        gateway_url: &str,
        token: Option<helix_core::auth::Secret>,
    ) -> Result<HealerState, HealerError> {
        let patterns = match &cfg.healer.patterns_dir {
            Some(dir) => PatternSet::load_dir(dir)?,
            None => PatternSet::seed()?,
        };
        let data_dir = helix_http::storage::prepare_data_dir(&cfg.service_data_dir(ServiceKind::Healer))
            .map_err(HealerError::Storage)?;
        let store: Arc<dyn LearningStore> =
            match cfg.healer.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
                Some(url) => Arc::new(store::PgStore::open(url)?),
                None => Arc::new(LogStore::open(&data_dir.join("learning.log"))?),
            };
        let index = Arc::new(KnowledgeIndex::open(&data_dir.join("index"), &patterns)?);
        tracing::info!(patterns = patterns.len(), signatures = store.signatures(), "healer ready");
        let retention = store::Retention {
            max_age_ms: (cfg.healer.retention_days > 0).then(|| {
                i64::try_from(cfg.healer.retention_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX)
            }),
            max_signatures: (cfg.healer.max_signatures > 0).then_some(cfg.healer.max_signatures),
        };
        if store.backend().is_some() {
            // everything the database holds goes into this replica's similar-error index
            let changes = store.sync()?;
            for signature in &changes.indexed {
                index.learn_signature(store.as_ref(), signature);
            }
            index.commit_if_dirty()?;
            spawn_syncer(Arc::downgrade(&store), Arc::downgrade(&index));
        }
        enforce_retention(store.as_ref(), &index, &retention);
        spawn_flusher(Arc::downgrade(&store), Arc::downgrade(&index), retention);
        let llm = match &cfg.healer.llm_model {
            Some(model) if !model.trim().is_empty() => {
                let timeout = std::time::Duration::from_secs(cfg.healer.llm_timeout_secs.max(1));
                let client = helix_core::client::ServiceClient::new(
                    gateway_url,
                    timeout + std::time::Duration::from_secs(5),
                )
                .map_err(|e| HealerError::Internal(e.to_string()))?
                .with_token(token.clone());
                Some(Arc::new(llm::LlmAnalyst::open(
                    client,
                    model.clone(),
                    timeout,
                    &data_dir.join("llm_cache.json"),
                )))
            }
            _ => None,
        };
        Ok(HealerState {
            llm,
            data_dir,
            patterns: Arc::new(patterns),
            store,
            index,
            share_hints: cfg.healer.share_hints,
            emitter: helix_core::emit::Emitter::spawn_with_token(
                collector_url.to_owned(),
                EMITTER_CAPACITY,
                token,
            ),
        })
    }

    /// The project a request is about: the one it names, else the caller's only project, else
    /// `default`; refused when the caller may not access it.
    pub fn project_of(
        &self,
        caller: &helix_core::auth::Principal,
        named: Option<String>,
    ) -> Result<String, HealerError> {
        let project = named
            .filter(|p| !p.trim().is_empty())
            .or_else(|| caller.sole_project().map(str::to_owned))
            .unwrap_or_else(|| store::DEFAULT_PROJECT.to_owned());
        caller.check_project(&project).map_err(HealerError::Forbidden)?;
        Ok(project)
    }

    /// A project a query names, for a caller: an empty name is an invalid query, a project the
    /// caller's token may not access is refused.
    pub fn named_project(
        &self,
        caller: &helix_core::auth::Principal,
        project: &str,
    ) -> Result<String, HealerError> {
        if project.trim().is_empty() {
            return Err(HealerError::InvalidQuery("project must not be empty".to_owned()));
        }
        caller.check_project(project).map_err(HealerError::Forbidden)?;
        Ok(project.to_owned())
    }

    /// Which recorded fixes a signature report shows a caller: those of the project it names
    /// (see [`HealerState::named_project`]), else those of every project its token may access.
    pub fn report_scope(
        &self,
        caller: &helix_core::auth::Principal,
        project: Option<&str>,
    ) -> Result<store::FixScope, HealerError> {
        if let Some(p) = project {
            return Ok(store::FixScope::project(&self.named_project(caller, p)?));
        }
        Ok(match &caller.projects {
            Some(ps) => store::FixScope::Projects(ps.to_vec()),
            None => store::FixScope::All,
        })
    }

    /// Which recorded fixes inform answers about `project`.
    pub fn fix_scope(&self, project: &str) -> store::FixScope {
        if self.share_hints { store::FixScope::All } else { store::FixScope::project(project) }
    }
}

/// Retention runs every this many flushes (a minute), and at start-up.
const RETENTION_EVERY_TICKS: u64 = 60;

/// Forgets what retention says to, in the store and in the search index.
fn enforce_retention(store: &dyn LearningStore, index: &KnowledgeIndex, retention: &store::Retention) {
    match store.enforce_retention(helix_core::time::now_ms(), retention) {
        Ok(forgotten) if !forgotten.is_empty() => {
            tracing::info!(forgotten = forgotten.len(), "retention forgot signatures");
            index.remove_signatures(&forgotten);
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "retention of the learning log failed"),
    }
}

/// Flushes buffered occurrences and commits index updates every [`FLUSH_EVERY`], until the
/// state is dropped.
fn spawn_flusher(
    store: std::sync::Weak<dyn LearningStore>,
    index: std::sync::Weak<KnowledgeIndex>,
    retention: store::Retention,
) {
    let spawned = std::thread::Builder::new().name("healer-flush".to_owned()).spawn(move || {
        for tick in 1u64.. {
            std::thread::sleep(FLUSH_EVERY);
            let (Some(store), Some(index)) = (store.upgrade(), index.upgrade()) else { return };
            if tick % RETENTION_EVERY_TICKS == 0 {
                enforce_retention(store.as_ref(), &index, &retention);
            }
            if let Err(e) = store.flush() {
                tracing::error!(error = %e, "cannot flush the learning log");
            }
            if let Err(e) = index.commit_if_dirty() {
                tracing::error!(error = %e, "cannot commit the search index");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the flush thread; occurrences are flushed at shutdown only");
    }
}

/// Applies what other replicas wrote (a shared backend) every [`store::SYNC_EVERY`], and
/// keeps the similar-error index in step, until the state is dropped.
fn spawn_syncer(store: std::sync::Weak<dyn LearningStore>, index: std::sync::Weak<KnowledgeIndex>) {
    let spawned = std::thread::Builder::new().name("healer-sync".to_owned()).spawn(move || {
        loop {
            std::thread::sleep(store::SYNC_EVERY);
            let (Some(store), Some(index)) = (store.upgrade(), index.upgrade()) else { return };
            // an unreachable database is reported by the store (log once, /ready); retried next tick
            let Ok(changes) = store.sync() else { continue };
            if changes.is_empty() {
                continue;
            }
            for signature in &changes.indexed {
                index.learn_signature(store.as_ref(), signature);
            }
            index.remove_signatures(&changes.forgotten);
            if let Err(e) = index.commit_if_dirty() {
                tracing::error!(error = %e, "cannot commit the search index");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the sync thread; other replicas' records are seen after a restart");
    }
}

/// Registers the healer's routes on `cfg`.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<HealerState>) {
    cfg.app_data(state)
        .service(helix_http::routes::post("/v1/analyze", routes::analyze::analyze))
        .service(helix_http::routes::post("/v1/fixes", routes::learning::record_fix))
        .service(helix_http::routes::post("/v1/paths", routes::paths::record))
        .service(helix_http::routes::post("/v1/fixes/propose", routes::propose::propose))
        .service(helix_http::routes::post("/v1/check", routes::check::check))
        .service(helix_http::routes::get("/v1/fixes/known", routes::learning::known_fixes))
        .service(helix_http::routes::get("/v1/signatures/{signature}", routes::learning::get_signature))
        .service(helix_http::routes::get("/v1/hints", routes::learning::get_hint))
        .service(helix_http::routes::get("/v1/patterns", routes::patterns::search))
        .service(helix_http::routes::get("/v1/patterns/{id}", routes::patterns::get))
        .service(helix_http::routes::post("/v1/fingerprint", routes::fingerprint::fingerprint))
        .service(
            web::resource("/v1/flaky")
                .route(web::get().to(routes::flaky::list))
                .route(web::post().to(routes::flaky::report))
                .default_service(web::to(helix_http::routes::method_not_allowed("GET, POST"))),
        )
        .service(helix_http::routes::get("/metrics", routes::metrics::metrics));
}

#[derive(OpenApi)]
#[openapi(
    paths(
        routes::analyze::analyze,
        routes::learning::record_fix,
        routes::propose::propose,
        routes::check::check,
        routes::learning::known_fixes,
        routes::learning::get_signature,
        routes::learning::get_hint,
        routes::patterns::search,
        routes::patterns::get,
        routes::fingerprint::fingerprint,
        routes::flaky::report,
        routes::flaky::list,
        routes::paths::record,
        routes::metrics::metrics
    ),
    components(schemas(
        routes::analyze::AnalyzeRequest,
        analyze::Analysis,
        analyze::Diagnostic,
        analyze::PatternMatch,
        model::Category,
        model::DiagnosticConfidence,
        model::FailureClass,
        model::Severity,
        model::Location,
        routes::learning::FixRequest,
        routes::flaky::FlakyReport,
        routes::paths::PathReport,
        routes::paths::PathRecorded,
        paths::RankedPath,
        routes::flaky::FlakyRecorded,
        routes::flaky::FlakyList,
        flaky::FlakyTest,
        routes::learning::FixRecorded,
        routes::learning::Hint,
        routes::learning::KnownFixes,
        store::KnownFix,
        store::Outcome,
        store::FixSource,
        store::RankedFix,
        store::SignatureReport,
        routes::patterns::PatternSummary,
        routes::patterns::PatternList,
        routes::patterns::PatternDetail,
        patterns::ActionSpec,
        routes::propose::ProposeRequest,
        routes::propose::AnalysisRef,
        routes::propose::Proposals,
        propose::ProposedFix,
        propose::Confidence,
        propose::FixKind,
        propose::WorkspaceFile,
        propose::DiagnosticRef,
        propose::MatchRef,
        routes::check::CheckRequest,
        check::CheckReport,
        check::Finding,
        check::Checked,
        model::Suggestion,
        routes::fingerprint::FingerprintRequest,
        routes::fingerprint::FingerprintResponse,
        routes::fingerprint::ParamOut,
    )),
    tags(
        (name = "analysis", description = "split tool output into classified diagnostics"),
        (name = "learning", description = "fix history per signature, and hints built from it"),
        (name = "patterns", description = "the knowledge base of known error patterns"),
        (name = "signatures", description = "stable fingerprints of error messages")
    )
)]
struct ApiDoc;

/// The healer's complete OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    helix_http::openapi::finish(
        ServiceKind::Healer,
        "The error pattern engine: splits tool output into diagnostics, fingerprints each into a stable signature, classifies it and finds known patterns and fixes.",
        ApiDoc::openapi(),
    )
}

/// The healer as served by the shared runtime.
pub struct HealerService {
    state: web::Data<HealerState>,
}

impl HealerService {
    pub fn new(cfg: &HelixConfig) -> Result<HealerService, HealerError> {
        Ok(HealerService { state: web::Data::new(HealerState::open(cfg)?) })
    }

    /// As [`HealerService::new`], sending audit events to the collector at `collector_url`.
    pub fn with_peer(
        cfg: &HelixConfig,
        collector_url: &str,
        token: Option<helix_core::auth::Secret>,
    ) -> Result<HealerService, HealerError> {
        Ok(HealerService { state: web::Data::new(HealerState::open_with(cfg, collector_url, token)?) })
    }

    /// As [`HealerService::with_peer`], with LLM analyses going to the gateway at `gateway_url`.
    pub fn with_peers(
        cfg: &HelixConfig,
        collector_url: &str,
        gateway_url: &str,
        token: Option<helix_core::auth::Secret>,
    ) -> Result<HealerService, HealerError> {
        Ok(HealerService {
            state: web::Data::new(HealerState::open_with_peers(cfg, collector_url, gateway_url, token)?),
        })
    }

    pub fn into_service(self) -> Arc<dyn helix_http::Service> {
        Arc::new(self)
    }
}

impl helix_http::Service for HealerService {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Healer
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        configure(cfg, self.state.clone());
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        openapi()
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let store = self.state.store.clone();
        let index = self.state.index.clone();
        let emitter = self.state.emitter.clone();
        Box::pin(async move {
            emitter.flush(std::time::Duration::from_secs(2)).await;
            let flushed = tokio::task::spawn_blocking(move || {
                if let Err(e) = index.commit_if_dirty() {
                    tracing::error!(error = %e, "cannot commit the search index");
                }
                store.flush()
            });
            match flushed.await {
                Ok(Ok(())) => tracing::info!("learning log flushed"),
                Ok(Err(e)) => tracing::error!(error = %e, "cannot flush the learning log"),
                Err(e) => tracing::error!(error = %e, "flush task failed"),
            }
        })
    }

    fn readiness(&self) -> BoxFuture<'static, Vec<Check>> {
        let dir = self.state.data_dir.clone();
        let patterns = self.state.patterns.len();
        let (regions, bytes) = self.state.store.damage();
        let log = if regions == 0 {
            Check::new("learning_log", helix_core::CheckStatus::Ok, "records intact")
        } else {
            Check::new(
                "learning_log",
                helix_core::CheckStatus::Degraded,
                format!(
                    "{regions} damaged records ({bytes} bytes) failed their checksums and were kept aside in \
                     learning.quarantine/ (remove those files once looked at)"
                ),
            )
        };
        let database = self.state.store.backend().map(|b| {
            if b.reachable {
                Check::new("database", helix_core::CheckStatus::Ok, "PostgreSQL reachable")
            } else {
                Check::new(
                    "database",
                    helix_core::CheckStatus::Down,
                    format!(
                        "PostgreSQL unreachable ({}); {} occurrences wait for it",
                        b.detail.unwrap_or_default(),
                        b.buffered
                    ),
                )
            }
        });
        Box::pin(async move {
            let mut checks = vec![
                helix_http::storage::data_dir_check(dir).await,
                Check::new("patterns", helix_core::CheckStatus::Ok, format!("{patterns} patterns loaded")),
            ];
            // the embedded log, or the database in its place
            checks.push(database.unwrap_or(log));
            checks
        })
    }
}
