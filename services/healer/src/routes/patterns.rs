//! `GET /v1/patterns` and `GET /v1/patterns/{id}`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::HealerState;
use crate::error::HealerError;
use crate::model::{Category, FailureClass};
use crate::patterns::{ActionSpec, Pattern};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PatternQuery {
    /// Full-text query over titles, explanations, fixes, matchers, tools and categories.
    /// Without it, every pattern is listed in knowledge-base order.
    #[serde(default)]
    pub q: Option<String>,
    /// At most this many results (default 20, at most 200).
    #[param(minimum = 1, maximum = 200)]
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A pattern in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatternSummary {
    #[schema(example = "python.module-not-found")]
    pub id: String,
    pub title: String,
    pub ecosystem: String,
    pub category: Category,
    pub failure_class: FailureClass,
    /// Relevance for a query (BM25), absent in a plain listing.
    pub score: Option<f32>,
}

/// Search results.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatternList {
    pub patterns: Vec<PatternSummary>,
    /// Patterns in the knowledge base.
    pub total: usize,
}

/// A pattern, whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatternDetail {
    pub id: String,
    pub title: String,
    pub ecosystem: String,
    pub tools: Vec<String>,
    /// The regex over a diagnostic's headline.
    #[serde(rename = "match")]
    pub matcher: String,
    pub code: Option<String>,
    pub context: Option<String>,
    pub category: Category,
    pub failure_class: FailureClass,
    pub key: Option<String>,
    pub explanation: String,
    pub fixes: Vec<String>,
    pub actions: Vec<ActionSpec>,
    /// File and line the pattern is defined at.
    #[schema(example = "python.toml:52")]
    pub source: String,
}

fn summary(p: &Pattern, score: Option<f32>) -> PatternSummary {
    PatternSummary {
        id: p.id.clone(),
        title: p.title.clone(),
        ecosystem: p.ecosystem.clone(),
        category: p.category,
        failure_class: p.failure_class,
        score,
    }
}

/// Search the pattern base
///
/// Full-text search (BM25) over the known error patterns; without `q`, lists them.
#[utoipa::path(
    get,
    path = "/v1/patterns",
    tag = "patterns",
    operation_id = "search_patterns",
    security(("bearer" = ["healer:read"])),
    params(PatternQuery),
    responses(
        (status = 200, description = "matching patterns, best first", body = PatternList),
        (status = 400, description = "invalid query parameters", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn search(
    state: web::Data<HealerState>,
    query: web::Query<PatternQuery>,
) -> Result<HttpResponse, HealerError> {
    let query = query.into_inner();
    let limit = helix_http::routes::limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)
        .map_err(HealerError::InvalidQuery)?;
    let total = state.patterns.len();
    let patterns = match query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        None => state.patterns.iter().take(limit).map(|p| summary(p, None)).collect(),
        Some(q) => {
            let (index, q) = (state.index.clone(), q.to_owned());
            let hits = web::block(move || index.search_patterns(&q, limit))
                .await
                .map_err(|e| HealerError::Internal(e.to_string()))?
                .map_err(|e| HealerError::Internal(e.to_string()))?;
            hits.iter().filter_map(|h| state.patterns.get(&h.id).map(|p| summary(p, Some(h.score)))).collect()
        }
    };
    Ok(HttpResponse::Ok().json(PatternList { patterns, total }))
}

/// One pattern
///
/// The whole pattern: matcher, category, key, explanation, fixes and machine-applicable actions.
#[utoipa::path(
    get,
    path = "/v1/patterns/{id}",
    tag = "patterns",
    operation_id = "get_pattern",
    security(("bearer" = ["healer:read"])),
    params(("id" = String, Path, description = "pattern id, e.g. python.module-not-found")),
    responses(
        (status = 200, description = "the pattern", body = PatternDetail),
        (status = 404, description = "no such pattern", body = helix_core::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(
    state: web::Data<HealerState>,
    path: web::Path<String>,
) -> Result<HttpResponse, HealerError> {
    let id = path.into_inner();
    let p = state.patterns.get(&id).ok_or_else(|| HealerError::PatternNotFound(id.clone()))?;
    Ok(HttpResponse::Ok().json(PatternDetail {
        id: p.id.clone(),
        title: p.title.clone(),
        ecosystem: p.ecosystem.clone(),
        tools: p.tools.clone(),
        matcher: p.matcher.as_str().to_owned(),
        code: p.code.clone(),
        context: p.context.as_ref().map(|c| c.as_str().to_owned()),
        category: p.category,
        failure_class: p.failure_class,
        key: p.key.clone(),
        explanation: p.explanation.clone(),
        fixes: p.fixes.clone(),
        actions: p.actions.clone(),
        source: p.source.clone(),
    }))
}
