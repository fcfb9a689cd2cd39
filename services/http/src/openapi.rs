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
    doc
}

/// The document as committed under `openapi/<service>.json`: pretty JSON with a final newline.
pub fn to_committed_json(doc: &Doc) -> String {
    let mut s = doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
