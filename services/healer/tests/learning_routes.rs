//! The learning routes over HTTP, as the orchestrator calls them: the healer served by the shared
//! runtime (the access policy built from its OpenAPI document) with tokens limited to projects,
//! called through helix-core's typed client.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use helix_core::auth::{Authenticator, Principal, ProbeAccess, Scope, Scopes, Secret, TokenSource};
use helix_core::client::{ClientError, FixRequest, KnownFix, ServiceClient};
use helix_http::access::Access;
use helix_http::server::{RunningService, Settings};

const ADMIN: &str = "tok-admin-0123456789abcdef";
/// `healer:read`, every project.
const READER: &str = "tok-reader-0123456789abcdef";
/// `healer:write` and `healer:read`, project `web` only.
const WRITER: &str = "tok-writer-0123456789abcdef";
/// `healer:read`, projects `web` and `api`.
const TEAM: &str = "tok-team-0123456789abcdef";

const SIG: &str = "3f0a8c1d9e2b4f6a8c0e1d3f5a7b9c2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c";
const OTHER_SIG: &str = "aa0a8c1d9e2b4f6a8c0e1d3f5a7b9c2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c";
const YAML: &str = "--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1,1 +1,2 @@\n flask\n+PyYAML\n";
const NUMPY: &str = "--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1,1 +1,2 @@\n flask\n+numpy<2\n";

struct Healer {
    running: RunningService,
    // kept until the healer stops
    _dir: tempfile::TempDir,
}

impl Healer {
    fn start() -> Healer {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = helix_core::HelixConfig {
            data_dir: dir.path().join("data"),
            workers: 1,
            ..helix_core::HelixConfig::default()
        };
        let mut auth = Authenticator::open();
        let tokens: [(&str, &str, &[Scope], &[&str]); 4] = [
            ("admin", ADMIN, &[Scope::Admin], &[]),
            ("reader", READER, &[Scope::HealerRead], &[]),
            ("writer", WRITER, &[Scope::HealerWrite, Scope::HealerRead], &["web"]),
            ("team", TEAM, &[Scope::HealerRead], &["web", "api"]),
        ];
        for (id, token, scopes, projects) in tokens {
            let principal = Principal {
                id: Arc::from(id),
                scopes: Scopes::of(scopes),
                projects: (!projects.is_empty())
                    .then(|| Arc::from(projects.iter().map(|p| p.to_string()).collect::<Vec<_>>())),
                gateway_key: None,
                minted: None,
            };
            auth.add(id, TokenSource::Value(Secret::new(token)), principal, &|_| None).expect("token");
        }
        let access = Access {
            authenticator: Arc::new(auth),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            probes: ProbeAccess::Loopback,
        };
        let settings = Settings {
            max_body_bytes: 1 << 20,
            workers: 1,
            shutdown_grace: Duration::from_secs(1),
            access: Arc::new(access),
        };
        // audit events go nowhere: no collector listens on port 9
        let service = helix_healer::HealerService::with_peer(&cfg, "http://127.0.0.1:9", None)
            .expect("healer")
            .into_service();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let running = helix_http::server::start(service, listener, &settings).expect("start");
        Healer { running, _dir: dir }
    }

    fn client(&self, token: Option<&str>) -> ServiceClient {
        ServiceClient::new(&self.running.url(), Duration::from_secs(10))
            .expect("client")
            .with_token(token.map(Secret::new))
    }
}

async fn record(c: &ServiceClient, sig: &str, desc: &str, patch: Option<&str>, outcome: &str, project: &str) {
    let fix = FixRequest {
        signature: sig.to_owned(),
        description: desc.to_owned(),
        outcome: outcome.to_owned(),
        patch: patch.map(str::to_owned),
        project: Some(project.to_owned()),
        phase: Some(if desc.ends_with(" in test") { "test" } else { "build" }.to_owned()),
        source: None,
        key: None,
    };
    c.record_fix(&fix).await.expect("recorded");
}

/// Status and error code of a refused call.
fn refusal(e: &ClientError) -> (u16, String) {
    match e {
        ClientError::Status { status, detail, .. } => {
            let code = detail.rsplit_once(" (").map(|(_, c)| c.trim_end_matches(')')).unwrap_or_default();
            (*status, code.to_owned())
        }
        other => panic!("not a refusal: {other:?}"),
    }
}

fn descriptions(fixes: &[KnownFix]) -> Vec<(&str, &str, u32, u32)> {
    fixes.iter().map(|f| (f.signature.as_str(), f.description.as_str(), f.successes, f.failures)).collect()
}

/// Fixes in `web` (three PyYAML attempts, one numpy, one without a patch, one in phase test),
/// in `api` and in `shop`, recorded by the admin.
async fn learn(admin: &ServiceClient) {
    record(admin, SIG, "add PyYAML", Some(YAML), "success", "web").await;
    record(admin, SIG, "add PyYAML again", Some(YAML), "failure", "web").await;
    record(admin, SIG, "add PyYAML, latest", Some(YAML), "success", "web").await;
    record(admin, SIG, "pin numpy", Some(NUMPY), "success", "web").await;
    record(admin, SIG, "restarted the runner", None, "success", "web").await;
    record(admin, OTHER_SIG, "pin numpy in test", Some(NUMPY), "failure", "web").await;
    record(admin, SIG, "api's PyYAML", Some(YAML), "success", "api").await;
    record(admin, SIG, "shop's PyYAML", Some(YAML), "success", "shop").await;
}

#[tokio::test]
async fn known_fixes_of_a_project_ranked_filtered_and_refused_for_other_projects() {
    let healer = Healer::start();
    let admin = healer.client(Some(ADMIN));
    learn(&admin).await;

    let writer = healer.client(Some(WRITER));
    let web = writer.known_fixes("web", None).await.expect("web's fixes");
    assert_eq!(
        descriptions(&web),
        [(SIG, "add PyYAML, latest", 2, 1), (SIG, "pin numpy", 1, 0), (OTHER_SIG, "pin numpy in test", 0, 1),],
        "per signature and patch, most successes first, then the most recent; no patch, no entry"
    );
    assert_eq!(web[0].patch, YAML);
    assert_eq!(web[0].last_outcome, "success");
    assert!(
        web[0].last_attempt.ends_with('Z') && web[0].last_attempt.contains('T'),
        "{}",
        web[0].last_attempt
    );
    let build = writer.known_fixes("web", Some("build")).await.expect("build's fixes");
    assert_eq!(descriptions(&build), [(SIG, "add PyYAML, latest", 2, 1), (SIG, "pin numpy", 1, 0)]);
    let test = writer.known_fixes("web", Some("test")).await.expect("test's fixes");
    assert_eq!(descriptions(&test), [(OTHER_SIG, "pin numpy in test", 0, 1)]);
    assert!(writer.known_fixes("web", Some("deploy")).await.expect("none").is_empty());

    // a token limited to web may not name another project
    let e = writer.known_fixes("api", None).await.expect_err("api is not web's");
    assert_eq!(refusal(&e), (403, "forbidden".to_owned()));
    let team = healer.client(Some(TEAM));
    assert_eq!(
        descriptions(&team.known_fixes("api", None).await.expect("api")),
        [(SIG, "api's PyYAML", 1, 0)]
    );
    let e = team.known_fixes("shop", None).await.expect_err("shop is not the team's");
    assert_eq!(refusal(&e), (403, "forbidden".to_owned()));
    let reader = healer.client(Some(READER));
    assert_eq!(
        descriptions(&reader.known_fixes("shop", None).await.expect("shop")),
        [(SIG, "shop's PyYAML", 1, 0)]
    );
    assert!(reader.known_fixes("default", None).await.expect("default").is_empty());
    // healer:read is needed
    let e = healer.client(None).known_fixes("web", None).await.expect_err("no token");
    assert_eq!(refusal(&e), (401, "unauthorized".to_owned()));

    // limit
    let one = reader.get_json_value("/v1/fixes/known?project=web&limit=1").await.expect("limit 1");
    assert_eq!(one["fixes"].as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one["fixes"][0]["description"], "add PyYAML, latest");
    healer.running.stop().await.expect("stop");
}

#[tokio::test]
async fn known_fixes_reject_a_bad_query() {
    let healer = Healer::start();
    let reader = healer.client(Some(READER));
    for query in [
        "",
        "?phase=build",
        "?project=",
        "?project=%20",
        "?project=web&phase=",
        "?project=web&limit=0",
        "?project=web&limit=201",
        "?project=web&limit=many",
        "?project=web&projcet=api",
    ] {
        let e = reader.get_json_value(&format!("/v1/fixes/known{query}")).await.expect_err(query);
        assert_eq!(refusal(&e), (400, "invalid_query".to_owned()), "{query}: {e:?}");
    }
    let ok = reader.get_json_value("/v1/fixes/known?project=web&limit=200").await.expect("limit 200");
    assert_eq!(ok, serde_json::json!({"fixes": []}));
    healer.running.stop().await.expect("stop");
}

#[tokio::test]
async fn a_signature_report_narrowed_to_a_project() {
    let healer = Healer::start();
    let admin = healer.client(Some(ADMIN));
    learn(&admin).await;
    // the best fix first, then the others (their order depends on the milliseconds they were
    // recorded in)
    let fixes_of = |r: &helix_core::client::SignatureReport| -> Vec<String> {
        let mut d: Vec<String> = r.fixes.iter().map(|f| f.description.clone()).collect();
        if let Some(rest) = d.get_mut(1..) {
            rest.sort();
        }
        d
    };

    // without a project: as before, every project the token may access
    // (the same patch in three projects is one fix of the report)
    let all = admin.signature_report(SIG, None).await.expect("report").expect("known");
    assert_eq!(fixes_of(&all), ["shop's PyYAML", "pin numpy", "restarted the runner"]);
    assert_eq!(all.fixes[0].projects, ["web", "api", "shop"]);
    assert_eq!((all.fixes[0].successes, all.fixes[0].failures), (4, 1));
    let team = healer.client(Some(TEAM));
    let ours = team.signature_report(SIG, None).await.expect("report").expect("known");
    assert_eq!(fixes_of(&ours), ["api's PyYAML", "pin numpy", "restarted the runner"]);
    assert_eq!(ours.fixes[0].projects, ["web", "api"]);

    // with a project: that project's fixes only
    let api = admin.signature_report(SIG, Some("api")).await.expect("report").expect("known");
    assert_eq!(fixes_of(&api), ["api's PyYAML"]);
    assert_eq!(api.fixes[0].projects, ["api"]);
    assert_eq!(api.fixes[0].patch.as_deref(), Some(YAML));
    assert_eq!(api.summary, "solved 1x like this: api's PyYAML");
    let web = team.signature_report(SIG, Some("web")).await.expect("report").expect("known");
    assert_eq!(fixes_of(&web), ["add PyYAML, latest", "pin numpy", "restarted the runner"]);
    assert_eq!((web.fixes[0].successes, web.fixes[0].failures), (2, 1));
    assert!(web.fixes.iter().all(|f| f.projects == ["web"]), "{:?}", web.fixes);
    assert!(
        admin.signature_report(SIG, Some("nobody")).await.expect("report").expect("known").fixes.is_empty()
    );

    // a token limited to projects may name only its own
    let writer = healer.client(Some(WRITER));
    let e = writer.signature_report(SIG, Some("api")).await.expect_err("api is not web's");
    assert_eq!(refusal(&e), (403, "forbidden".to_owned()));
    let e = team.signature_report(SIG, Some("shop")).await.expect_err("shop is not the team's");
    assert_eq!(refusal(&e), (403, "forbidden".to_owned()));
    let e = admin.signature_report(SIG, Some("")).await.expect_err("empty project");
    assert_eq!(refusal(&e), (400, "invalid_query".to_owned()));

    // never seen: None, whatever the project
    assert_eq!(writer.signature_report(&"0".repeat(64), Some("web")).await.expect("404"), None);
    let e = admin.signature_report("not-a-signature", Some("web")).await.expect_err("bad signature");
    assert_eq!(refusal(&e), (400, "invalid_request".to_owned()));
    healer.running.stop().await.expect("stop");
}

#[tokio::test]
async fn an_llm_repair_that_worked_is_a_learned_fix_until_it_fails() {
    let healer = Healer::start();
    let admin = healer.client(Some(ADMIN));
    let repair = |outcome: &str| FixRequest {
        signature: OTHER_SIG.to_owned(),
        description: "rename helo to hello".to_owned(),
        outcome: outcome.to_owned(),
        patch: Some(YAML.to_owned()),
        project: Some("web".to_owned()),
        phase: Some("test".to_owned()),
        source: Some("llm_repair".to_owned()),
        key: Some("helo".to_owned()),
    };
    admin.record_fix(&repair("success")).await.expect("recorded");
    let r = admin.signature_report(OTHER_SIG, Some("web")).await.expect("report").expect("known");
    let f = &r.fixes[0];
    assert_eq!((f.source.as_deref(), f.key.as_deref(), f.learned), (Some("llm_repair"), Some("helo"), true));
    // a fix of another source is not "learned", however often it worked
    let mut other = repair("success");
    other.source = Some("human".to_owned());
    other.patch = Some(NUMPY.to_owned());
    admin.record_fix(&other).await.expect("recorded");
    admin.record_fix(&other).await.expect("recorded");
    let r = admin.signature_report(OTHER_SIG, Some("web")).await.expect("report").expect("known");
    assert!(r.fixes.iter().any(|f| f.source.as_deref() == Some("human") && !f.learned), "{:?}", r.fixes);
    // one failure and it is no longer trusted blindly
    admin.record_fix(&repair("failure")).await.expect("recorded");
    let r = admin.signature_report(OTHER_SIG, Some("web")).await.expect("report").expect("known");
    let f = r.fixes.iter().find(|f| f.source.as_deref() == Some("llm_repair")).expect("the repair");
    assert!(!f.learned, "{f:?}");
    // an unknown source and a multi-line key are refused
    let mut bad = repair("success");
    bad.source = Some("oracle".to_owned());
    assert_eq!(refusal(&admin.record_fix(&bad).await.expect_err("source")).0, 400);
    let mut bad = repair("success");
    bad.key = Some("a\nb".to_owned());
    assert_eq!(refusal(&admin.record_fix(&bad).await.expect_err("key")).0, 400);
    healer.running.stop().await.expect("stop");
}
