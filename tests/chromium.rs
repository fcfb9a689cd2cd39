//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the tests of
//! pages Helix serves (the dashboard, Swagger UI).
//!
//! The protocol runs on a pipe (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4):
//! no WebSocket client, no port, and Chromium quits as soon as the pipe closes, even when the test
//! process dies. Tests wait on conditions in the page ([`Chromium::until`]), never on sleeps.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::{Instant, sleep, timeout};

/// The Chromium binary; panics with what to install when there is none.
pub fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "/usr/bin/chromium"] {
        if std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return c.to_owned();
        }
    }
    panic!("headless Chromium is required for this test: apt-get install chromium (tests/run installs it)");
}

/// How long a condition in the page may take to come true.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// How long Chromium may take to answer one command.
pub const ANSWER: Duration = Duration::from_secs(30);

/// Headless Chromium under the DevTools protocol.
pub struct Chromium {
    child: Child,
    // an Option so that `close` can drop it: a closed pipe is Chromium's signal to quit
    commands: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
    next_id: u64,
    profile: tempfile::TempDir,
}

impl Chromium {
    pub fn launch() -> Chromium {
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(profile.path().join("stderr.log")).expect("log file");
        // the shell moves the pipe's ends to where Chromium expects them: commands in on fd 3,
        // answers out on fd 4
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(chromium())
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
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.profile.path().join("stderr.log")).unwrap_or_default();
        let tail: String = log.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        format!("\nchromium's stderr ends with:\n{tail}")
    }

    /// Sends `method` (to the page of `session`, or to the browser) and returns its result.
    pub async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
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
    pub async fn eval(&mut self, page: &str, expression: &str) -> Value {
        let result = self
            .call(Some(page), "Runtime.evaluate", json!({"expression": expression, "returnByValue": true}))
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until `done` holds for its value, which it returns.
    pub async fn until(
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

    pub async fn close(mut self) {
        drop(self.commands.take());
        if timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            self.child.kill().await.expect("kill chromium");
        }
    }
}

/// Decodes standard base64 (screenshots come as such).
pub fn base64(text: &str) -> Vec<u8> {
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

impl Chromium {
    /// A new page (tab) showing `url`; returns its session id.
    pub async fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"})).await;
        let target = target["targetId"].as_str().expect("target id").to_owned();
        let attached =
            self.call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await;
        let page = attached["sessionId"].as_str().expect("session id").to_owned();
        let navigated = self.call(Some(&page), "Page.navigate", json!({"url": url})).await;
        assert!(navigated.get("errorText").is_none(), "{url} loads: {navigated}");
        page
    }

    /// A PNG screenshot of `page`.
    pub async fn screenshot(&mut self, page: &str) -> Vec<u8> {
        let shot = self.call(Some(page), "Page.captureScreenshot", json!({"format": "png"})).await;
        base64(shot["data"].as_str().expect("screenshot data"))
    }
}
