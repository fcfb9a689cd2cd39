//! What the access layer adds to the gateway's hot path (issue 11: at most 20 µs p50): the same
//! small non-streaming `POST /v1/chat/completions` through two gateways in one process, one with
//! no tokens (every caller anonymous; the Host and Origin checks still run) and one that requires
//! a token (an `[[auth.tokens]]` entry with scope `llm`: SHA-256 of the presented token, a
//! constant-time compare, the scope check), both in front of the same minimal upstream.
//! Requests alternate between the two, so machine noise falls on both alike; the figures are the
//! p50 and p99 of each and their difference.

use std::time::{Duration, Instant};

use helix::stack::Stack;
use helix_core::auth::TokenConfig;
use helix_core::gateway_config::{DeploymentConfig, ModelChainConfig, ProviderKind};
use helix_core::{HelixConfig, ServiceKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1764000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;
const TOKEN: &str = "hxt_bench_0123456789abcdef0123456789abcdef";

async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
                    ANSWER.len()
                );
                let mut buf = Vec::with_capacity(8192);
                loop {
                    let request_end = loop {
                        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= head_end + 4 + length {
                                break head_end + 4 + length;
                            }
                        }
                        let mut chunk = [0u8; 8192];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..request_end);
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn config(dir: &std::path::Path, upstream: &str, token_file: Option<&std::path::Path>) -> HelixConfig {
    let mut cfg = HelixConfig {
        data_dir: dir.to_path_buf(),
        host: "127.0.0.1".to_owned(),
        breaker_gateway_port: 0,
        trace_collector_port: 9,
        log_level: "warn".to_owned(),
        ..HelixConfig::default()
    };
    cfg.breaker_gateway.deployments = vec![DeploymentConfig {
        id: "oa-main".to_owned(),
        provider: ProviderKind::Openai,
        base_url: upstream.to_owned(),
        model: "gpt-4o-mini".to_owned(),
        api_key_env: None,
        max_in_flight: None,
        breaker: None,
        responses_api: false,
    }];
    cfg.breaker_gateway.models =
        vec![ModelChainConfig { name: "gpt".to_owned(), chain: vec!["oa-main".to_owned()] }];
    if let Some(f) = token_file {
        cfg.auth.tokens = vec![TokenConfig {
            id: "bench".to_owned(),
            token_env: None,
            token_file: Some(f.to_path_buf()),
            scopes: vec!["llm".to_owned()],
            projects: vec![],
        }];
    }
    cfg
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` runs benches with no argument: be quick then
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("AUTH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 20_000 } else { 50 });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let (off_dir, on_dir) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let token_file = on_dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let upstream = rt.block_on(upstream());
    let off = rt
        .block_on(Stack::start(&config(off_dir.path(), &upstream, None), &[ServiceKind::BreakerGateway]))
        .expect("start");
    let on = rt
        .block_on(Stack::start(
            &config(on_dir.path(), &upstream, Some(&token_file)),
            &[ServiceKind::BreakerGateway],
        ))
        .expect("start");
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
    let body = r#"{"model":"gpt","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}"#;
    let call = |url: String, token: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut req = client.post(url).header("content-type", "application/json").body(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let started = Instant::now();
            let res = req.send().await.expect("answer");
            assert_eq!(res.status(), 200);
            res.bytes().await.expect("body");
            started.elapsed()
        }
    };
    let off_url = format!("{}/v1/chat/completions", off.url(ServiceKind::BreakerGateway).expect("url"));
    let on_url = format!("{}/v1/chat/completions", on.url(ServiceKind::BreakerGateway).expect("url"));
    // the token is required there
    let refused = rt
        .block_on(client.post(&on_url).header("content-type", "application/json").body(body).send())
        .expect("send");
    assert_eq!(refused.status(), 401);
    // warm up both, then alternate
    for _ in 0..200.min(rounds) {
        rt.block_on(call(off_url.clone(), None));
        rt.block_on(call(on_url.clone(), Some(TOKEN)));
    }
    let (mut a, mut b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds {
        if i % 2 == 0 {
            a.push(rt.block_on(call(off_url.clone(), None)));
            b.push(rt.block_on(call(on_url.clone(), Some(TOKEN))));
        } else {
            b.push(rt.block_on(call(on_url.clone(), Some(TOKEN))));
            a.push(rt.block_on(call(off_url.clone(), None)));
        }
    }
    a.sort();
    b.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (a50, b50, a99, b99) =
        (percentile(&a, 0.5), percentile(&b, 0.5), percentile(&a, 0.99), percentile(&b, 0.99));
    println!("auth off: p50 {:.1} µs, p99 {:.1} µs ({} requests)", us(a50), us(a99), a.len());
    println!("auth on:  p50 {:.1} µs, p99 {:.1} µs ({} requests)", us(b50), us(b99), b.len());
    println!("added by the access layer: p50 {:+.1} µs, p99 {:+.1} µs", us(b50) - us(a50), us(b99) - us(a99));
    rt.block_on(off.stop()).expect("stop");
    rt.block_on(on.stop()).expect("stop");
}
