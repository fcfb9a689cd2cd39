//! The OpenAPI documents: committed, served, complete, and true to the routes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use helix_core::ServiceKind;
use helix_tests::{Helix, client};

fn committed(kind: ServiceKind) -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi").join(format!("{}.json", kind.name()));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn committed_documents_are_not_stale() {
    for (kind, doc) in helix::openapi_documents() {
        let want = helix_http::openapi::to_committed_json(&doc);
        assert!(
            committed(kind) == want,
            "openapi/{}.json is stale: run `cargo run -p helix -- openapi --write`",
            kind.name()
        );
    }
}

#[test]
fn every_ref_resolves_and_every_operation_has_a_summary() {
    for (kind, doc) in helix::openapi_documents() {
        let json = serde_json::to_value(&doc).expect("json");
        let mut refs = Vec::new();
        collect_refs(&json, &mut refs);
        assert!(!refs.is_empty(), "{kind}: a document without schemas is suspicious");
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{kind}: external ref {r}"));
            assert!(json.pointer(pointer).is_some(), "{kind}: unresolved $ref {r}");
        }
        let paths = json["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let summary = op["summary"].as_str().unwrap_or_default();
                assert!(!summary.trim().is_empty(), "{kind}: {method} {path} has no summary");
                assert!(op["operationId"].is_string(), "{kind}: {method} {path} has no operationId");
            }
        }
        assert!(paths.contains_key("/health") && paths.contains_key("/ready"), "{kind}");
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

#[tokio::test]
async fn served_document_equals_the_committed_file_and_every_path_is_routed() {
    let helix = Helix::start().await;
    let http = client();
    for kind in ServiceKind::ALL {
        let url = helix.url(kind);
        let res = http.get(format!("{url}/openapi.json")).send().await.expect("openapi");
        assert_eq!(res.status(), 200);
        let served: serde_json::Value = res.json().await.expect("json");
        let file: serde_json::Value = serde_json::from_str(&committed(kind)).expect("committed json");
        assert_eq!(served, file, "{kind}: served /openapi.json differs from openapi/{}.json", kind.name());

        // every documented operation exists: the route answers something other than a 404
        // problem, and a method the document does not list gets 405
        let methods = ["get", "post", "put", "patch", "delete"];
        for (template, item) in served["paths"].as_object().expect("paths") {
            // path parameters get a well-formed sample value
            let path = template
                .replace("{signature}", &"0".repeat(64))
                .replace("{trace_id}", &"0".repeat(32))
                .replace("{id}", "python.module-not-found")
                .replace("{phase}", "0");
            assert!(!path.contains('{'), "add a sample value for the parameters of {template}");
            let documented: BTreeSet<&str> =
                item.as_object().expect("item").keys().map(String::as_str).collect();
            for method in methods {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                let res = http
                    .request(m, format!("{url}{path}"))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .expect("send");
                let status = res.status().as_u16();
                let streaming = res
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                // a live stream does not end: its status line is the answer
                let body: serde_json::Value =
                    if streaming { serde_json::Value::Null } else { res.json().await.unwrap_or_default() };
                let no_route =
                    status == 404 && body["detail"].as_str().is_some_and(|d| d.starts_with("no route"));
                if documented.contains(method) {
                    assert!(!no_route, "{kind}: {method} {path} is documented but not routed");
                    assert_ne!(status, 405, "{kind}: {method} {path} is documented but not routed");
                } else {
                    assert_eq!(status, 405, "{kind}: {method} {path} is routed but not documented");
                }
            }
        }
    }
    helix.stop().await;
}
