//! Swagger UI's "Authorize" against a service that requires tokens, in headless Chromium: a user
//! who opens `/swagger-ui/` is refused (401) until they enter a token in the Authorize dialog, and
//! then "Try it out" works with it. Driven through the page as a person would (click, type,
//! click), over the DevTools protocol. Saves a screenshot (target/swagger-authorize.png).

use helix_core::ServiceKind;
use helix_core::auth::TokenConfig;
use helix_tests::Helix;
use helix_tests::chromium::Chromium;
use serde_json::{Value, json};

const TOKEN: &str = "hxt_swagger-ui-test-token-0123456789abcdef";

/// Clicks the first element matching `selector` (and says whether there was one).
fn click(selector: &str) -> String {
    format!(
        "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
        json!(selector)
    )
}

/// The status and body Swagger UI shows for the executed request of operation `op` (null until
/// there is one).
fn response_of(op: &str) -> String {
    format!(
        r#"(() => {{
  const o = document.getElementById({});
  const status = o && o.querySelector(".live-responses-table tr.response .response-col_status");
  const body = o && o.querySelector(".live-responses-table .response-col_description pre, .live-responses-table .microlight");
  return status && {{ status: status.innerText.trim().split(/\s+/)[0], body: body ? body.innerText : "" }};
}})()"#,
        json!(op)
    )
}

async fn until_true(chromium: &mut Chromium, page: &str, expression: &str, what: &str) {
    chromium.until(page, expression, what, |v| v == &Value::Bool(true)).await;
}

#[tokio::test]
async fn swagger_ui_authorize_sends_the_token_and_try_it_out_works() {
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("write the token file");
    let helix = Helix::start_with(|c| {
        c.auth.tokens = vec![TokenConfig {
            id: "swagger".to_owned(),
            token_env: None,
            token_file: Some(token_file.clone()),
            scopes: vec!["healer:read".to_owned()],
            projects: vec![],
        }];
    })
    .await;
    let url = helix.url(ServiceKind::Healer);
    let mut chromium = Chromium::launch();
    let page = chromium.open(&format!("{url}/swagger-ui/")).await;
    let op = "operations-patterns-search_patterns";

    // without a token: the operation is refused
    until_true(
        &mut chromium,
        &page,
        &click(&format!("#{op} button.opblock-summary-control")),
        "the operation is listed",
    )
    .await;
    until_true(&mut chromium, &page, &click(&format!("#{op} .try-out__btn")), "try it out").await;
    until_true(&mut chromium, &page, &click(&format!("#{op} .execute")), "execute").await;
    let refused = chromium.until(&page, &response_of(op), "the refusal is shown", |v| !v.is_null()).await;
    assert_eq!(refused["status"], "401", "{refused}");
    assert!(refused["body"].as_str().is_some_and(|b| b.contains("unauthorized")), "{refused}");

    // Authorize: the dialog, the token typed into it, its Authorize button, close
    until_true(&mut chromium, &page, &click(".auth-wrapper .btn.authorize"), "the Authorize button").await;
    let field = "(() => { const i = document.querySelector('.modal-ux input'); if (!i) return false; i.focus(); return document.activeElement === i; })()";
    until_true(&mut chromium, &page, field, "the token field of the dialog").await;
    chromium.call(Some(&page), "Input.insertText", json!({"text": TOKEN})).await;
    until_true(&mut chromium, &page, &click(".modal-ux .auth-btn-wrapper .btn.modal-btn.auth"), "authorize")
        .await;
    until_true(
        &mut chromium,
        &page,
        &click(".modal-ux .btn-done, .modal-ux .close-modal"),
        "close the dialog",
    )
    .await;
    let locked = "!!document.querySelector('.auth-wrapper .btn.authorize.locked')";
    until_true(&mut chromium, &page, locked, "Swagger UI shows the lock as authorized").await;

    // the same operation again: now with the token
    until_true(&mut chromium, &page, &click(&format!("#{op} .btn-clear")), "clear the last answer").await;
    until_true(&mut chromium, &page, &click(&format!("#{op} .execute")), "execute again").await;
    let answered = chromium
        .until(&page, &response_of(op), "the answer is shown", |v| {
            v.get("status").is_some_and(|s| s != "401")
        })
        .await;
    assert_eq!(answered["status"], "200", "{answered}");
    assert!(answered["body"].as_str().is_some_and(|b| b.contains("patterns")), "{answered}");

    let png = chromium.screenshot(&page).await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a png screenshot");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/swagger-authorize.png");
    std::fs::write(&path, png).expect("save the screenshot");
    chromium.close().await;
    helix.stop().await;
}
