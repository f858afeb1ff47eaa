//! Forwarding whole connections: a PASSTHROUGH gateway routed by VirtualService `tls` routes to
//! ServiceEntry endpoints, subsets, resets and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_gateway::tls::{Accepted, CredentialDir, TlsPort};
use mesh_gateway::{
    Bundle, ForwardError, L4Forwarder, ServerTable, ServiceEntryRegistry, TlsRouteTable, Tunnels,
    reset,
};
use mesh_mirror::{DestinationRules, ServiceRegistry, SharedDestinationRules, Upstream};
use mesh_routing::Destination;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server that writes its name then echoes one read.
async fn tagged(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                s.write_all(name.as_bytes()).await.unwrap();
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf).await {
                    let _ = s.write_all(&buf[..n]).await;
                }
            });
        }
    });
    addr
}

fn config(v1: SocketAddr, v2: SocketAddr) -> Bundle {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.internal]
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp: {}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{tcp: {}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db}}
spec:
  host: db.internal
  subsets: [{{name: v2, labels: {{version: v2}}}}, {{name: none, labels: {{version: v9}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  servers: [{{port: {{number: 443, protocol: TLS}}, hosts: [db.example.com], tls: {{mode: PASSTHROUGH}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db}}
spec:
  hosts: [db.example.com]
  gateways: [gw]
  tls:
  - match: [{{sniHosts: [db.example.com]}}]
    route: [{{destination: {{host: db.internal, subset: v2, port: {{number: 5432}}}}}}]
",
        v1.port(),
        v2.port()
    );
    Bundle::load(&yaml, "t.yaml", "default").unwrap()
}

fn forwarder(bundle: &Bundle) -> L4Forwarder {
    let registry: Arc<dyn ServiceRegistry> =
        Arc::new(ServiceEntryRegistry::new(&bundle.service_entries));
    let rules = DestinationRules::new(bundle.destination_rules.clone());
    let upstream: Upstream<http_body_util::Empty<bytes::Bytes>> =
        Upstream::new(SharedDestinationRules::new(rules), registry);
    L4Forwarder::new(upstream)
}

#[tokio::test]
async fn passthrough_connection_follows_the_tls_route_to_the_subset() {
    let (v1, v2) = (tagged("v1").await, tagged("v2").await);
    let bundle = config(v1, v2);
    let table = Arc::new(ServerTable::new(&bundle.gateways));
    let routes = TlsRouteTable::build(&bundle.virtual_services, "default/gw");
    let port = TlsPort::new(table, 443, &CredentialDir(PathBuf::new()), None).unwrap();
    let fwd = forwarder(&bundle);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (port, routes, fwd) = (port.clone(), routes.clone(), fwd.clone());
            tokio::spawn(async move {
                let Ok(Accepted::Passthrough { stream, hello, .. }) = port.accept(tcp).await else {
                    return;
                };
                let dests = routes
                    .route(443, hello.server_name.as_deref().unwrap_or_default(), None)
                    .unwrap();
                fwd.forward(stream, None, dests, &Tunnels::new(Duration::from_secs(60)))
                    .await
                    .unwrap();
            });
        }
    });
    // The client starts a TLS handshake; the backend is plain TCP here, so what comes back is
    // the backend's tag followed by the ClientHello bytes it received, untouched.
    let hello = {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("db.example.com").unwrap(),
        )
        .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    };
    for _ in 0..5 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&hello).await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..2], b"v2", "subset v2 only");
        assert!(
            hello.starts_with(&got[2..]) && got.len() > 2,
            "the hello arrives unchanged"
        );
    }
}

#[tokio::test]
async fn missing_endpoints_and_refused_connects_are_errors() {
    let (v1, v2) = (tagged("v1").await, tagged("v2").await);
    let bundle = config(v1, v2);
    let fwd = forwarder(&bundle);
    let dest = |host: &str, subset: Option<&str>| Destination {
        host: host.into(),
        subset: subset.map(String::from),
        port: Some(5432),
    };
    assert!(matches!(
        fwd.connect(&dest("db.internal", Some("none")), None).await,
        Err(ForwardError::NoEndpoints { .. })
    ));
    assert!(matches!(
        fwd.connect(&dest("db.internal", Some("nosuch")), None)
            .await,
        Err(ForwardError::NoEndpoints { .. })
    ));
    assert!(matches!(
        fwd.connect(&dest("unknown.internal", None), None).await,
        Err(ForwardError::NoEndpoints { .. })
    ));
    assert!(fwd.connect(&dest("db.internal", None), None).await.is_ok());

    // An endpoint nobody listens on: a prompt connect error, not a hang.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let fwd = forwarder(&config(closed, closed));
    assert!(matches!(
        fwd.connect(&dest("db.internal", None), None).await,
        Err(ForwardError::Connect { .. })
    ));
}

#[tokio::test]
async fn reset_closes_with_rst() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        reset(s);
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    server.await.unwrap();
    let mut buf = [0u8; 8];
    let err = c.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[test]
fn weighted_choice_follows_weights() {
    let vs = mesh_routing::load_virtual_services(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: t}\nspec:\n  hosts: [t.example.com]\n  gateways: [gw]\n  tls:\n  - match: [{sniHosts: [t.example.com]}]\n    route: [{destination: {host: a.internal}, weight: 90}, {destination: {host: b.internal}, weight: 10}]\n",
        "vs",
        "default",
    )
    .unwrap();
    let routes = TlsRouteTable::build(&vs, "default/gw");
    let dests = routes.route(443, "t.example.com", None).unwrap();
    let upstream: Upstream<http_body_util::Empty<bytes::Bytes>> = Upstream::new(
        SharedDestinationRules::new(DestinationRules::new(Vec::new())),
        Arc::new(mesh_mirror::StaticRegistry::new()),
    );
    let fwd = L4Forwarder::new(upstream);
    let a = (0..10_000)
        .filter(|_| fwd.choose(dests).unwrap().host == "a.internal")
        .count();
    // 9,000 expected; binomial sd = 30, so +-300 is ten sigma.
    assert!((8_700..=9_300).contains(&a), "{a}");
}

#[tokio::test]
async fn registry_only_resets_tls_to_unknown_hosts_and_forwards_known_ones() {
    use mesh_gateway::KnownHosts;
    use mesh_gateway::tls::read_client_hello;
    let known = Arc::new(KnownHosts::from_hosts(["db.internal"]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let known = known.clone();
            tokio::spawn(async move {
                let Ok((hello, _)) =
                    read_client_hello(&mut tcp, std::time::Duration::from_secs(5)).await
                else {
                    return;
                };
                if hello
                    .server_name
                    .as_deref()
                    .is_some_and(|h| known.contains(h))
                {
                    let _ = tcp.write_all(b"forwarded").await;
                } else {
                    reset(tcp);
                }
            });
        }
    });
    let hello = |name: &str| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from(name.to_string()).unwrap(),
        )
        .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    };
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&hello("evil.example.org")).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        c.read(&mut buf).await.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&hello("db.internal")).await.unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"forwarded");
}
