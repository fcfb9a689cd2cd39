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
