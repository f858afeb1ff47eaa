//! Gateway TCP ports: connections follow VirtualService `tcp:` routes to ServiceEntry endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{TempDir, free_port, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server that answers `NAME:` followed by what it read.
async fn echo(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = s.write_all(format!("{name}:").as_bytes()).await;
                let _ = s.write_all(&buf[..n]).await;
            });
        }
    });
    addr
}

fn config(port: u16, unrouted: u16, db: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp}}
spec:
  servers:
  - {{port: {{number: {port}, name: tcp-db, protocol: TCP}}, hosts: ['*']}}
  - {{port: {{number: {unrouted}, name: tcp-none, protocol: TCP}}, hosts: ['*']}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db}}
spec:
  hosts: ['*']
  gateways: [tcp]
  tcp:
  - match: [{{port: {port}}}]
    route: [{{destination: {{host: db.internal, port: {{number: 5432}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.internal]
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]
",
        db.port()
    )
}

async fn exchange(port: u16, msg: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    c.write_all(msg).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("timed out")
        .unwrap_or(0);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_gateway_ports_follow_tcp_routes() {
    let db = echo("db").await;
    let unrouted = free_port();
    let dir = TempDir::new("gw-tcp");
    let (proxy, port) = start(&dir, |_| vec![], |p| config(p, unrouted, db)).await;
    assert_eq!(exchange(port, b"select 1").await, b"db:select 1");
    // A TCP port without a route closes the connection without forwarding.
    assert_eq!(exchange(unrouted, b"hello").await, b"");
    proxy.shutdown().await;
}
