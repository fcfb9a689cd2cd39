//! Building each service's OpenAPI document from its handlers.
//!
//! A service derives `utoipa::OpenApi` for its own paths; [`finish`] merges in the common paths
//! and schemas, and sets title, version and description, so every document has the same frame.
//! The committed copies under `openapi/` are checked against these in tests.

use helix_core::ServiceKind;
use utoipa::OpenApi;
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi as Doc, Tag};

/// Paths and schemas every service shares.
#[derive(OpenApi)]
#[openapi(
    paths(crate::routes::health, crate::routes::ready),
    components(schemas(
        helix_core::Problem,
        helix_core::ErrorCode,
        helix_core::Health,
        helix_core::Readiness,
        helix_core::ReadyStatus,
        helix_core::Check,
        helix_core::CheckStatus,
        crate::routes::NotReady,
    ))
)]
struct CommonApi;

/// The complete document of a service: its own paths plus the common ones.
pub fn finish(kind: ServiceKind, description: &str, mut doc: Doc) -> Doc {
    doc.merge(CommonApi::openapi());
    doc.info = InfoBuilder::new()
        .title(format!("Helix {}", kind.name()))
        .version(helix_core::VERSION)
        .description(Some(format!(
            "{description}\n\nEvery error is an RFC 9457 problem (`application/problem+json`) with a \
             stable `code`; every response carries an `x-request-id` header."
        )))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    let mut tags = doc.tags.take().unwrap_or_default();
    if !tags.iter().any(|t| t.name == "operations") {
        let mut ops = Tag::new("operations");
        ops.description = Some("liveness and readiness probes".to_owned());
        tags.push(ops);
    }
    doc.tags = Some(tags);
    secure(doc)
}

/// The security schemes an operation may name.
fn scheme(name: &str) -> Option<serde_json::Value> {
    let scopes: Vec<String> =
        helix_core::auth::Scope::ALL.iter().map(|s| format!("`{}` ({})", s.as_str(), s.describe())).collect();
    match name {
        "bearer" => Some(serde_json::json!({
            "type": "http",
            "scheme": "bearer",
            "description": format!(
                "A Helix token (`[[auth.tokens]]`; the local token of `auth.local_token`; a gateway key \
                 for LLM calls) as `Authorization: Bearer <token>`. Each operation names the scope it \
                 needs; `admin` has every scope. Scopes: {}. Without configured tokens Helix serves \
                 loopback only and needs none.",
                scopes.join(", ")
            ),
        })),
        "api_key" => Some(serde_json::json!({
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "A gateway key or Helix token as `x-api-key` (what Anthropic SDKs send).",
        })),
        _ => None,
    }
}

/// Declares the security schemes the operations name, and answers 401 and 403 for every
/// operation that needs a token (as a problem, or in the shape its own 401 has).
fn secure(doc: Doc) -> Doc {
    let Ok(mut v) = serde_json::to_value(&doc) else { return doc };
    let mut used = std::collections::BTreeSet::new();
    let problem = serde_json::json!({
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    });
    if let Some(paths) = v.get_mut("paths").and_then(serde_json::Value::as_object_mut) {
        for item in paths.values_mut().filter_map(serde_json::Value::as_object_mut) {
            for op in item.values_mut().filter_map(serde_json::Value::as_object_mut) {
                let needs_token = op
                    .get("security")
                    .and_then(serde_json::Value::as_array)
                    .is_some_and(|reqs| !reqs.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())));
                for r in op.get("security").and_then(serde_json::Value::as_array).into_iter().flatten() {
                    used.extend(r.as_object().into_iter().flat_map(|o| o.keys().cloned()));
                }
                if !needs_token {
                    continue;
                }
                let Some(responses) = op.get_mut("responses").and_then(serde_json::Value::as_object_mut)
                else {
                    continue;
                };
                let content = responses
                    .get("401")
                    .and_then(|r| r.get("content"))
                    .cloned()
                    .unwrap_or_else(|| problem.clone());
                responses.entry("401").or_insert_with(|| {
                    serde_json::json!({"description": "no token, or not a configured one", "content": content.clone()})
                });
                responses.entry("403").or_insert_with(|| {
                    serde_json::json!({"description": "the token lacks the scope, or may not access the project", "content": content})
                });
            }
        }
    }
    let schemes: serde_json::Map<String, serde_json::Value> =
        used.iter().filter_map(|name| Some((name.clone(), scheme(name)?))).collect();
    if !schemes.is_empty()
        && let Some(components) = v.get_mut("components").and_then(serde_json::Value::as_object_mut)
    {
        components.insert("securitySchemes".to_owned(), serde_json::Value::Object(schemes));
    }
    serde_json::from_value(v).unwrap_or(doc)
}

/// The document as committed under `openapi/<service>.json`: pretty JSON with a final newline.
pub fn to_committed_json(doc: &Doc) -> String {
    let mut s = doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
