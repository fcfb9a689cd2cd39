//! A bind other machines can reach is refused without tokens, unless the risk is accepted.

use crate::support::{Options, Up, http};

#[test]
fn a_public_bind_without_tokens_stops_start_up_naming_the_keys() {
    let dir = tempfile::tempdir().expect("tmp");
    let opts = Options { args: vec!["--host".into(), "0.0.0.0".into()], ..Options::default() };
    let Err((stderr, _)) = Up::try_start(dir, opts) else { panic!("helix up served 0.0.0.0 without tokens") };
    assert!(stderr.contains("auth.tokens") && stderr.contains("auth.allow_unauthenticated"), "{stderr}");
}

#[tokio::test]
async fn allow_unauthenticated_serves_with_a_warning() {
    let up = Up::start(Options {
        config: "[auth]\nallow_unauthenticated = true\n".into(),
        args: vec!["--host".into(), "0.0.0.0".into()],
        ..Options::default()
    });
    assert!(up.stderr().contains("without tokens"), "{}", up.stderr());
    let url = up.url("healer").replace("0.0.0.0", "127.0.0.1");
    assert_eq!(http().get(format!("{url}/v1/patterns")).send().await.expect("send").status(), 200);
}

#[tokio::test]
async fn a_public_bind_with_tokens_starts_and_requires_them() {
    let up = Up::start(Options {
        config: "[[auth.tokens]]\nid = \"ops\"\ntoken_env = \"T_OPS\"\nscopes = [\"runs:read\"]\n".into(),
        env: vec![("T_OPS".into(), "tok-ops-0123456789abcdef".into())],
        args: vec!["--host".into(), "0.0.0.0".into()],
    });
    let url = up.url("orchestrator").replace("0.0.0.0", "127.0.0.1");
    let res = http().get(format!("{url}/v1/runs")).send().await.expect("send");
    assert_eq!(res.status(), 401);
    let res = http()
        .get(format!("{url}/v1/runs"))
        .bearer_auth("tok-ops-0123456789abcdef")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
}

#[test]
fn the_configuration_named_by_helix_config_survives_the_environment_hand_over() {
    // the service re-executes itself with a clean environment at start: HELIX_CONFIG must stay
    let elsewhere = tempfile::tempdir().expect("tmp");
    let file = elsewhere.path().join("other.toml");
    std::fs::write(&file, "[auth]\nlocal_token = true\n").expect("write");
    let up = Up::start(Options {
        env: vec![("HELIX_CONFIG".into(), file.display().to_string())],
        ..Options::default()
    });
    assert!(up.data().join("local-token").is_file(), "{}", up.stderr());
}
