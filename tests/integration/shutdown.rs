//! Graceful shutdown: stop accepting, finish what is in flight, then flush.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use helix_core::ServiceKind;
use helix_tests::Helix;

#[tokio::test]
async fn in_flight_request_finishes_and_new_connections_are_refused() {
    let helix = Helix::start().await;
    let url = helix.url(ServiceKind::Healer);
    let addr = url.trim_start_matches("http://").to_owned();

    // A request whose body is only half sent when the shutdown begins.
    let body = br#"{"text": "No module named 'yaml'"}"#;
    let (first, rest) = body.split_at(10);
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        conn,
        "POST /v1/fingerprint HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .expect("write head");
    conn.write_all(first).expect("write first half");
    conn.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopping = tokio::spawn(helix.stack.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "stop must wait for the in-flight request");

    // no new connections once stopping
    let refused = TcpStream::connect(&addr)
        .and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(2)))?;
            c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")?;
            let mut buf = [0u8; 64];
            match c.read(&mut buf)? {
                0 => Err(std::io::Error::other("closed")),
                _ => Ok(()),
            }
        })
        .is_err();
    assert!(refused, "a new request was served during shutdown");

    // the in-flight request completes normally
    let response = tokio::task::spawn_blocking(move || {
        conn.write_all(rest).expect("write rest");
        let mut out = String::new();
        conn.read_to_string(&mut out).expect("read response");
        out
    })
    .await
    .expect("join");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"signature\""), "{response}");

    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stop finishes within the grace period")
        .expect("join")
        .expect("clean stop");
    drop(helix.dir);
}
