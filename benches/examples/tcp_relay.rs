//! The floor of the gateway's added latency on the machine it runs on: a TCP relay that does no
//! work at all. Each accepted connection gets its own upstream connection and the bytes are copied
//! both ways (`copy_bidirectional`), on one thread with Nagle off, so a kept-alive HTTP/1.1 client
//! sees an extra loopback hop and nothing else: no parsing, no routing, no accounting.
//!
//! `benches/gateway_load.sh` puts it beside the gateway in the concurrency-1 rounds. What it adds
//! over the direct call is what any proxy pays here for the second hop (one more process to wake,
//! two more socket round trips through the kernel); on a virtual machine whose idle vCPUs halt,
//! that alone can exceed the gateway's latency targets, which were set on pinned bare-metal cores.
//!
//! usage: tcp_relay UPSTREAM_HOST:PORT   (prints `listening on http://127.0.0.1:PORT`; runs until
//!        killed)

use tokio::net::{TcpListener, TcpStream};

fn main() {
    let Some(upstream) = std::env::args().nth(1) else {
        eprintln!("usage: tcp_relay UPSTREAM_HOST:PORT");
        std::process::exit(2);
    };
    // one thread, like one worker of the gateway
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("listening on http://{}", listener.local_addr().expect("address"));
        loop {
            let Ok((mut client, _)) = listener.accept().await else { continue };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
}
