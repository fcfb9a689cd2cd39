//! The breaker-gateway's own cost per call (issue 5: added p50 <= 0.3 ms): the same small
//! non-streaming `POST /v1/chat/completions`, over loopback with one keep-alive client, sent
//! straight to a minimal upstream and through the gateway in front of it. The difference of the
//! two is what the gateway adds (two more loopback hops, and its own work); `benches/gateway_load.sh`
//! measures the same under concurrent load.
//!
//! The gateway runs in process as `helix serve breaker-gateway` runs it (`Stack`, one OpenAI
//! deployment, no keys, no Redis; its trace events queue for a collector that is not there). The
//! upstream is a few lines of tokio answering every request with the same completion, so that
//! nothing but the gateway differs between the two.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use helix::stack::Stack;
use helix_core::gateway_config::{DeploymentConfig, ModelChainConfig, ProviderKind};
use helix_core::{HelixConfig, ServiceKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1764000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;

/// Answers every HTTP/1.1 request on every connection with [`ANSWER`]; returns its base URL.
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
                    // one request: the head, then content-length bytes of body
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

fn gateway_config(dir: &std::path::Path, upstream: &str) -> HelixConfig {
    let mut cfg = HelixConfig {
        data_dir: dir.to_path_buf(),
        host: "127.0.0.1".to_owned(),
        breaker_gateway_port: 0,
        // nothing listens there: events queue (and are dropped once the queue is full)
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
    cfg
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let tmp = tempfile::tempdir().expect("tmp");
    let upstream = rt.block_on(upstream());
    let cfg = gateway_config(tmp.path(), &upstream);
    let stack = rt.block_on(Stack::start(&cfg, &[ServiceKind::BreakerGateway])).expect("gateway starts");
    let gateway = stack.url(ServiceKind::BreakerGateway).expect("gateway url");
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");

    let call = |url: String, model: &'static str| {
        let client = client.clone();
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello"}}],"max_tokens":16}}"#
        );
        move || {
            let client = client.clone();
            let url = url.clone();
            let body = body.clone();
            async move {
                let res = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("answer");
                assert_eq!(res.status(), 200);
                res.bytes().await.expect("body")
            }
        }
    };
    let direct = call(format!("{upstream}/v1/chat/completions"), "gpt-4o-mini");
    let proxied = call(format!("{gateway}/v1/chat/completions"), "gpt");
    let first = rt.block_on(proxied());
    assert!(first.starts_with(b"{\"id\":\"chatcmpl-bench\""), "{}", String::from_utf8_lossy(&first));

    let mut group = c.benchmark_group("gateway");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("chat_completion_direct", |b| b.iter(|| rt.block_on(direct())));
    group.bench_function("chat_completion_through_gateway", |b| b.iter(|| rt.block_on(proxied())));
    group.finish();
    rt.block_on(stack.stop()).expect("gateway stops");
}

criterion_group!(benches, bench);
criterion_main!(benches);
