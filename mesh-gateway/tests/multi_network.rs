//! Two "clusters" on loopback sharing one root with per-cluster intermediates: a client in
//! cluster 1 reaches a service whose only endpoints are in cluster 2, through cluster 2's
//! AUTO_PASSTHROUGH east-west gateway, with mTLS verified end to end between the workloads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Ca;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_gateway::origination::TlsOrigination;
use mesh_gateway::tls::{Accepted, CredentialDir, TlsPort};
use mesh_gateway::{Bundle, ClusterSni, L4Forwarder, ServerTable, ServiceEntryRegistry};
use mesh_identity::{
    BundleSet, ClientAuth, Credentials, IdMatcher, TrustBundle, server_peer_identity,
};
use mesh_mirror::{DestinationRules, ServiceRegistry, SharedDestinationRules, Upstream};
use mesh_routing::Destination;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{Layer, ServiceExt};

const HOST: &str = "reviews.default.svc.cluster.local";

/// The workload in cluster 2: mTLS with its SVID, answering with the peer's SPIFFE ID.
async fn workload(credentials: Credentials) -> SocketAddr {
    let config = credentials
        .server_config(ClientAuth::Required(IdMatcher::Any))
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = server_peer_identity(&tls)
                    .map(|p| p.0.to_string())
                    .unwrap_or_default();
                let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                    let body = format!("reviews in cluster 2, caller {peer}");
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn service_entry(address: &str, port: u16, network: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reviews}}\nspec:\n  hosts: [{HOST}]\n  location: MESH_INTERNAL\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: {address}, ports: {{http: {port}}}, network: {network}, labels: {{version: v1}}, serviceAccount: reviews}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: {HOST}\n  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL, subjectAltNames: ['spiffe://cluster.local/ns/default/sa/reviews']}}}}\n  subsets: [{{name: v1, labels: {{version: v1}}}}]\n"
    )
}

/// Cluster 2's east-west gateway: AUTO_PASSTHROUGH on the cluster SNI to local endpoints.
async fn east_west_gateway(local: Bundle) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let gw = Bundle::load(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: cross-network, namespace: istio-system}\nspec:\n  servers: [{port: {number: 15443, protocol: TLS}, hosts: ['*.local'], tls: {mode: AUTO_PASSTHROUGH}}]\n",
        "gw.yaml",
        "default",
    )
    .unwrap();
    let port = TlsPort::new(
        Arc::new(ServerTable::new(&gw.gateways)),
        15443,
        &CredentialDir(PathBuf::new()),
        None,
    )
    .unwrap();
    let registry: Arc<dyn ServiceRegistry> = Arc::new(
        ServiceEntryRegistry::new(&local.service_entries).with_networks("network2", HashMap::new()),
    );
    let rules = DestinationRules::new(local.destination_rules.clone());
    let upstream: mesh_mirror::Upstream<http_body_util::Empty<bytes::Bytes>> =
        mesh_mirror::Upstream::new(mesh_mirror::SharedDestinationRules::new(rules), registry);
    let fwd = L4Forwarder::new(upstream);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (port, fwd) = (port.clone(), fwd.clone());
            tokio::spawn(async move {
                let Ok(Accepted::Passthrough { stream, hello, .. }) = port.accept(tcp).await else {
                    return;
                };
                let Some(Ok(sni)) = hello.server_name.as_deref().map(str::parse::<ClusterSni>)
                else {
                    return;
                };
                let Ok(upstream) = fwd.connect(&sni.destination(), None).await else {
                    return;
                };
                let (mut stream, mut upstream) = (stream, upstream.stream);
                let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
            });
        }
    });
    (addr, task)
}

fn client(
    bundle: &Bundle,
    east_west: SocketAddr,
    credentials: Credentials,
) -> Upstream<Full<Bytes>, TlsOrigination> {
    let registry = ServiceEntryRegistry::new(&bundle.service_entries).with_networks(
        "network1",
        HashMap::from([("network2".to_string(), east_west)]),
    );
    let rules =
        SharedDestinationRules::new(DestinationRules::new(bundle.destination_rules.clone()));
    Upstream::with_connector(
        rules,
        Arc::new(registry),
        TlsOrigination::with_mesh_identity(credentials),
    )
}

fn request() -> http::Request<Full<Bytes>> {
    let mut req = http::Request::get(format!("http://{HOST}:9080/reviews/1"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    req.extensions_mut().insert(Destination {
        host: HOST.into(),
        subset: Some("v1".into()),
        port: Some(9080),
    });
    req
}

#[tokio::test]
async fn remote_network_endpoint_is_reached_through_the_east_west_gateway_with_end_to_end_mtls() {
    let root = Ca::new();
    let bundles = BundleSet::single(
        TrustBundle::from_roots("cluster.local".parse().unwrap(), vec![root.der.clone()]).unwrap(),
    );
    let (cluster1, cluster2) = (root.intermediate(), root.intermediate());
    let sleep = Credentials::new(
        cluster1.svid("spiffe://cluster.local/ns/default/sa/sleep"),
        bundles.clone(),
    );
    let reviews = Credentials::new(
        cluster2.svid("spiffe://cluster.local/ns/default/sa/reviews"),
        bundles.clone(),
    );

    let workload_addr = workload(reviews).await;
    let local2 = Bundle::load(
        &service_entry("127.0.0.1", workload_addr.port(), "network2"),
        "c2.yaml",
        "default",
    )
    .unwrap();
    let (ew, gateway) = east_west_gateway(local2).await;
    // Cluster 1 knows the endpoint only by an address it cannot reach; its network decides.
    let remote1 = Bundle::load(
        &service_entry("10.255.0.1", 9080, "network2"),
        "c1.yaml",
        "default",
    )
    .unwrap();

    let upstream = client(&remote1, ew, sleep.clone());
    let resp = upstream.clone().oneshot(request()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        "reviews in cluster 2, caller spiffe://cluster.local/ns/default/sa/sleep"
    );

    // A server identity other than the expected one is refused by the client.
    let impostor = Credentials::new(
        cluster2.svid("spiffe://cluster.local/ns/default/sa/ratings"),
        bundles.clone(),
    );
    let impostor_addr = workload(impostor).await;
    let local_imp = Bundle::load(
        &service_entry("127.0.0.1", impostor_addr.port(), "network2"),
        "c2.yaml",
        "default",
    )
    .unwrap();
    let (ew_imp, imp_gateway) = east_west_gateway(local_imp).await;
    assert!(
        client(&remote1, ew_imp, sleep.clone())
            .oneshot(request())
            .await
            .is_err(),
        "wrong server identity accepted"
    );
    imp_gateway.abort();

    // With cluster 2's gateway down, the request fails promptly instead of hanging.
    gateway.abort();
    let _ = gateway.await;
    let edge = mesh_gateway::filters::UpstreamErrorLayer.layer(client(&remote1, ew, sleep));
    let resp = tokio::time::timeout(Duration::from_secs(5), edge.oneshot(request()))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, mesh_gateway::filters::UPSTREAM_CONNECT_ERROR);
}

#[tokio::test]
async fn endpoints_of_a_network_without_a_gateway_are_left_out() {
    let bundle = Bundle::load(
        &service_entry("10.255.0.1", 9080, "network3"),
        "c1.yaml",
        "default",
    )
    .unwrap();
    let registry = ServiceEntryRegistry::new(&bundle.service_entries)
        .with_networks("network1", HashMap::new());
    assert!(
        registry
            .endpoints(HOST, Some(9080))
            .unwrap()
            .endpoints
            .is_empty()
    );
    let local = ServiceEntryRegistry::new(&bundle.service_entries)
        .with_networks("network3", HashMap::new());
    assert_eq!(
        local.endpoints(HOST, Some(9080)).unwrap().endpoints[0]
            .address
            .to_string(),
        "10.255.0.1:9080"
    );
}

#[tokio::test]
async fn istio_mutual_gateway_server_requires_a_mesh_peer() {
    let root = Ca::new();
    let bundles = BundleSet::single(
        TrustBundle::from_roots("cluster.local".parse().unwrap(), vec![root.der.clone()]).unwrap(),
    );
    let ca = root.intermediate();
    let gateway_creds = Credentials::new(
        ca.svid("spiffe://cluster.local/ns/istio-system/sa/ingress"),
        bundles.clone(),
    );
    let client_creds = Credentials::new(
        ca.svid("spiffe://cluster.local/ns/default/sa/sleep"),
        bundles.clone(),
    );
    let gw = Bundle::load(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: mtls}\nspec:\n  servers: [{port: {number: 443, protocol: HTTPS}, hosts: ['*'], tls: {mode: ISTIO_MUTUAL}}]\n",
        "gw.yaml",
        "default",
    )
    .unwrap();
    let port = TlsPort::new(
        Arc::new(ServerTable::new(&gw.gateways)),
        443,
        &CredentialDir(PathBuf::new()),
        Some(&gateway_creds),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let port = port.clone();
            tokio::spawn(async move {
                if let Ok(Accepted::Terminated { mut stream, .. }) = port.accept(tcp).await {
                    let peer = server_peer_identity(&stream)
                        .map(|p| p.0.to_string())
                        .unwrap_or_default();
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, peer.as_bytes()).await;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                }
            });
        }
    });
    let dial = |config: rustls::ClientConfig| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("ingress.example.com").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tls, &mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let expected = IdMatcher::Exact(
        "spiffe://cluster.local/ns/istio-system/sa/ingress"
            .parse()
            .unwrap(),
    );
    let seen = dial(client_creds.client_config(expected.clone()).unwrap())
        .await
        .unwrap();
    assert_eq!(seen, "spiffe://cluster.local/ns/default/sa/sleep");
    // A client without an SVID is refused.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.der.clone()).unwrap();
    let anonymous = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    assert!(dial(anonymous).await.is_err());
}
