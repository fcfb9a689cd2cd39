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
fn scheme(name: &str) -> Option<utoipa::openapi::security::SecurityScheme> {
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
    let scopes: Vec<String> =
        helix_core::auth::Scope::ALL.iter().map(|s| format!("`{}` ({})", s.as_str(), s.describe())).collect();
    match name {
        "bearer" => {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(format!(
                "A Helix token (`[[auth.tokens]]`; the local token of `auth.local_token`; a gateway key \
                 for LLM calls) as `Authorization: Bearer <token>`. Each operation names the scope it \
                 needs; `admin` has every scope. Scopes: {}. Without configured tokens Helix serves \
                 loopback only and needs none.",
                scopes.join(", ")
            ));
            Some(SecurityScheme::Http(http))
        }
        "api_key" => Some(SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-api-key",
            "A gateway key or Helix token as `x-api-key` (what Anthropic SDKs send).",
        )))),
        _ => None,
    }
}

/// Declares the security schemes the operations name, and answers 401 and 403 for every
/// operation that needs a token (as a problem, or in the shape its own 401 has).
fn secure(mut doc: Doc) -> Doc {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let mut used = std::collections::BTreeSet::new();
    let problem = || ContentBuilder::new().schema(Some(RefOr::Ref(Ref::from_schema_name("Problem")))).build();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            let reqs: Vec<serde_json::Value> =
                op.security.iter().flatten().filter_map(|r| serde_json::to_value(r).ok()).collect();
            for r in &reqs {
                used.extend(r.as_object().into_iter().flat_map(|o| o.keys().cloned()));
            }
            let needs_token =
                !reqs.is_empty() && !reqs.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty()));
            if !needs_token {
                continue;
            }
            let own = op.responses.responses.get("401").cloned();
            let response = |description: &str| match &own {
                Some(RefOr::T(r)) => {
                    let mut r = r.clone();
                    r.description = description.to_owned();
                    RefOr::T(r)
                }
                _ => RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content("application/problem+json", problem())
                        .build(),
                ),
            };
            let unauthorized = response("no token, or not a configured one");
            let forbidden = response("the token lacks the scope, or may not access the project");
            op.responses.responses.entry("401".to_owned()).or_insert(unauthorized);
            op.responses.responses.entry("403".to_owned()).or_insert(forbidden);
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    for name in used {
        if let Some(s) = scheme(&name) {
            components.security_schemes.insert(name, RefOr::T(s));
        }
    }
    doc
}

/// The document as committed under `openapi/<service>.json`: pretty JSON with a final newline.
pub fn to_committed_json(doc: &Doc) -> String {
    let mut s = doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
