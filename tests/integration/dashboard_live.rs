//! The dashboard's live feed in a real browser: headless Chromium has the page open with its
//! EventSource connected, only then are new spans posted, and they must show up in `#feed`.
//!
//! dashboard.rs settles the page with virtual time, which an open EventSource stops, so it leaves
//! the feed closed. Here Chromium runs in real time and is driven over the DevTools protocol, and
//! the test waits on conditions in the page, never on sleeps: the spans are posted once `#feed`
//! says its EventSource is open, and the collector subscribes a stream before answering it, so
//! nothing posted afterwards can be missed. The protocol runs on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4): no WebSocket client, no port,
//! and Chromium quits as soon as the pipe closes, even when the test process dies. The test saves
//! a screenshot (target/dashboard-live.png).

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use helix_core::ServiceKind;
use helix_tests::{Helix, client};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::{Instant, sleep, timeout};

/// How long a condition in the page may take to come true.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long Chromium may take to answer one command.
const ANSWER: Duration = Duration::from_secs(30);

/// What the test reads of the live feed, as JSON (null until the element exists).
const FEED: &str = r#"(() => {
  const f = document.getElementById("feed");
  return f && {
    state: f.dataset.state || "",
    text: f.innerText,
    items: [...f.querySelectorAll(".feed-item")].map((i) => i.innerText),
    errors: [...f.querySelectorAll(".feed-item .err")].map((e) => e.textContent),
  };
})()"#;

/// Headless Chromium under the DevTools protocol.
struct Chromium {
    child: Child,
    // an Option so that `close` can drop it: a closed pipe is Chromium's signal to quit
    commands: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
    next_id: u64,
    profile: tempfile::TempDir,
}

impl Chromium {
    fn launch() -> Chromium {
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(profile.path().join("stderr.log")).expect("log file");
        // the shell moves the pipe's ends to where Chromium expects them: commands in on fd 3,
        // answers out on fd 4
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(super::dashboard::chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
            .args(["--remote-debugging-pipe", "--window-size=1400,1500"])
            .arg(format!("--user-data-dir={}", profile.path().join("user").display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take();
        let answers = BufReader::new(child.stdout.take().expect("chromium's answers"));
        Chromium { child, commands, answers, next_id: 0, profile }
    }

    /// The end of Chromium's stderr, for failure messages.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.profile.path().join("stderr.log")).unwrap_or_default();
        let tail: String = log.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        format!("\nchromium's stderr ends with:\n{tail}")
    }

    /// Sends `method` (to the page of `session`, or to the browser) and returns its result.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("command as json");
        bytes.push(0);
        let commands = self.commands.as_mut().expect("pipe open");
        if let Err(e) = commands.write_all(&bytes).await {
            panic!("send {method} to chromium: {e}{}", self.log());
        }
        commands.flush().await.expect("flush the pipe");
        let answers = &mut self.answers;
        let answer = timeout(ANSWER, async {
            loop {
                let mut buf = Vec::new();
                if answers.read_until(0, &mut buf).await.expect("read the pipe") == 0 {
                    return None;
                }
                buf.pop_if(|b| *b == 0);
                let message: Value = serde_json::from_slice(&buf).expect("devtools message is json");
                // events (no id) and nothing else are interleaved; none is needed here
                if message["id"] == id {
                    return Some(message);
                }
            }
        })
        .await;
        match answer {
            Err(_) => panic!("chromium did not answer {method} within {ANSWER:?}{}", self.log()),
            Ok(None) => panic!("chromium quit during {method}{}", self.log()),
            Ok(Some(answer)) => match answer.get("error") {
                Some(error) => panic!("{method}: {error}"),
                None => answer["result"].clone(),
            },
        }
    }

    /// The value of `expression` in the page.
    async fn eval(&mut self, page: &str, expression: &str) -> Value {
        let result = self
            .call(Some(page), "Runtime.evaluate", json!({"expression": expression, "returnByValue": true}))
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until `done` holds for its value, which it returns.
    async fn until(
        &mut self,
        page: &str,
        expression: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let value = self.eval(page, expression).await;
            if done(&value) {
                return value;
            }
            if Instant::now() >= deadline {
                panic!("{what}: not within {DEADLINE:?}; last seen: {value:#}");
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    async fn close(mut self) {
        drop(self.commands.take());
        if timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            self.child.kill().await.expect("kill chromium");
        }
    }
}

/// Decodes standard base64 (screenshots come as such).
fn base64(text: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(digit).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
        // 4 digits carry 3 bytes, 3 carry 2, 2 carry 1
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn span(trace: &str, id: u64, parent: Option<u64>, name: &str, kind: &str, status: &str) -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    let now = u64::try_from(now).expect("nanoseconds fit u64 until 2554");
    let mut span = json!({"trace_id": trace, "span_id": format!("{id:016x}"), "name": name, "kind": kind,
        "project": "livefeed", "start_unix_nanos": now - 2_000_000_000, "end_unix_nanos": now, "status": status});
    if let Some(parent) = parent {
        span["parent_span_id"] = json!(format!("{parent:016x}"));
    }
    span
}

fn text(feed: &Value) -> &str {
    feed["text"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_live_feed_shows_spans_posted_while_the_page_is_open_in_chromium() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::TraceCollector);
    let http = client();
    let mut chromium = Chromium::launch();
    let target = chromium.call(None, "Target.createTarget", json!({"url": "about:blank"})).await;
    let target = target["targetId"].as_str().expect("target id").to_owned();
    let attached =
        chromium.call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await;
    let page = attached["sessionId"].as_str().expect("session id").to_owned();
    let navigated =
        chromium.call(Some(&page), "Page.navigate", json!({"url": format!("{url}/dashboard")})).await;
    assert!(navigated.get("errorText").is_none(), "the dashboard loads: {navigated}");

    let open = chromium.until(&page, FEED, "the feed's EventSource opens", |f| f["state"] == "open").await;
    assert_eq!(open["items"], json!([]), "nothing in the feed before anything is posted");

    let trace = format!("{:032x}", 0x11fe);
    let first = [
        span(&trace, 1, None, "run livefeed", "run", "ok"),
        span(&trace, 2, Some(1), "phase livefeed-build", "phase", "ok"),
        span(&trace, 3, Some(2), "tool cargo-livefeed", "tool_call", "error"),
    ];
    let res = http.post(format!("{url}/v1/events")).json(&first).send().await.expect("post spans");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let names = ["run livefeed", "phase livefeed-build", "tool cargo-livefeed"];
    let seen = chromium
        .until(&page, FEED, "the posted spans appear in the live feed", |f| {
            names.iter().all(|n| text(f).contains(n))
        })
        .await;
    assert_eq!(seen["items"].as_array().map(Vec::len), Some(3), "one line per span: {seen:#}");
    assert_eq!(seen["errors"], json!(["tool cargo-livefeed"]), "the failed span is marked");

    // the feed stays live: a later span arrives too, on top
    let later = [span(&trace, 4, Some(1), "phase livefeed-deploy", "phase", "ok")];
    let res = http.post(format!("{url}/v1/events")).json(&later).send().await.expect("post span");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let seen = chromium
        .until(&page, FEED, "a later span appears in the live feed", |f| {
            text(f).contains("phase livefeed-deploy")
        })
        .await;
    let items = seen["items"].as_array().expect("feed items");
    assert_eq!(items.len(), 4, "{seen:#}");
    assert!(items[0].as_str().is_some_and(|i| i.contains("phase livefeed-deploy")), "newest first: {seen:#}");
    assert_eq!(seen["state"], "open", "still connected");

    // and a screenshot, for people
    let shot = chromium.call(Some(&page), "Page.captureScreenshot", json!({"format": "png"})).await;
    let png = base64(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a png screenshot");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-live.png");
    std::fs::write(&path, png).expect("save the screenshot");

    chromium.close().await;
    helix.stop().await;
}
