//! Configuration files shipped in the repository stay true to the code.

use std::collections::BTreeMap;

use helix_core::HelixConfig;
use helix_core::config::{ConfigFile, load};

#[test]
fn example_config_lists_every_key_with_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/helix.example.toml");
    let text = std::fs::read_to_string(path).expect("example config");
    let loaded = load(Some(ConfigFile { path, text: &text }), &BTreeMap::new(), &[]).expect("example loads");
    assert_eq!(loaded.config, HelixConfig::default(), "the example must show the defaults");
    // every key of the configuration appears in the example
    let defaults = toml::Value::try_from(HelixConfig::default()).expect("toml");
    for key in defaults.as_table().expect("table").keys() {
        let listed = text.lines().any(|l| l.starts_with(&format!("{key} =")) || l == format!("[{key}]"));
        assert!(listed, "{key} missing from the example");
    }
}

/// The replica configuration (deploy/compose.yaml mounts it, deploy/k8s/configmap.yaml holds the
/// same text) loads, binds all addresses with tokens, and names its peers.
#[test]
fn cluster_config_loads_and_the_configmap_holds_the_same_text() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let path = format!("{root}/helix.cluster.toml");
    let text = std::fs::read_to_string(&path).expect("cluster config");
    let env = BTreeMap::from([
        ("HELIX_HEALER__DATABASE_URL".to_owned(), "postgres://helix:pw@postgres:5432/helix".to_owned()),
        ("HELIX_BREAKER_GATEWAY__REDIS_URL".to_owned(), "redis://redis:6379/0".to_owned()),
    ]);
    let loaded =
        load(Some(ConfigFile { path: &path, text: &text }), &env, &[]).expect("cluster config loads");
    let c = &loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(c.host, "0.0.0.0");
    assert!(c.tokens_configured(), "a public bind needs tokens");
    assert_eq!(c.healer.database_url.as_deref(), Some("postgres://helix:pw@postgres:5432/helix"));
    assert_eq!(c.breaker_gateway.redis_url.as_deref(), Some("redis://redis:6379/0"));
    assert_eq!(c.peer_url(helix_core::ServiceKind::Healer), "http://helix-healer:7703");
    assert_eq!(c.peer_url(helix_core::ServiceKind::TraceCollector), "http://helix-trace-collector:7701");
    // the printed configuration never shows the database password
    let shown = toml::to_string(&c.redacted()).expect("toml");
    assert!(!shown.contains(":pw@"), "{shown}");

    let map: String = std::fs::read_to_string(format!("{root}/k8s/configmap.yaml")).expect("configmap");
    let body = map.split_once("helix.toml: |\n").expect("helix.toml key").1;
    let unindented: String =
        body.lines().map(|l| l.strip_prefix("    ").unwrap_or(l)).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        unindented.trim_end(),
        text.trim_end(),
        "deploy/k8s/configmap.yaml differs from helix.cluster.toml"
    );
}
