//! Istio's egress-gateway pattern end to end over loopback: the sidecar sends mesh traffic for
//! an external host to the egress gateway, which sends it on to the external host with TLS
//! originated from a DestinationRule (plain HTTP in, HTTPS out, SNI and certificate checked).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{Ca, pem, temp_dir};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_gateway::origination::TlsOrigination;
use mesh_gateway::{Bundle, ServiceEntryRegistry, gateway_route_tables};
use mesh_mirror::{
    DestinationRules, MakeConnector, PlainConnector, RouteDispatchLayer, SharedDestinationRules,
    Upstream,
};
use mesh_routing::{RouteLayer, RouteTable, SharedRouteTable, TableOptions};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{ServiceBuilder, ServiceExt};

/// The external service: HTTPS with a certificate for api.external.com, reporting the SNI.
async fn external(ca: &Ca) -> SocketAddr {
    let (chain, key) = ca.leaf(&["api.external.com"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
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
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let text = format!("external via {sni}, host {:?}", req.headers().get("host"));
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text)))) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// Routing, dispatch and an upstream with `connector`, as a proxy composes them.
fn proxy_stack<M: MakeConnector>(
    table: RouteTable,
    bundle: &Bundle,
    connector: M,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<mesh_routing::RouteBody<mesh_mirror::UpstreamBody>>,
    Error = mesh_mirror::UpstreamError,
    Future: Send,
> + Clone
+ use<M> {
    let registry = Arc::new(ServiceEntryRegistry::new(&bundle.service_entries));
    let rules =
        SharedDestinationRules::new(DestinationRules::new(bundle.destination_rules.clone()));
    let upstream: Upstream<Full<Bytes>, M> = Upstream::with_connector(rules, registry, connector);
    ServiceBuilder::new()
        .layer(RouteLayer::new(SharedRouteTable::new(table)))
        .layer(RouteDispatchLayer::new())
        .service(upstream)
}

#[tokio::test]
async fn mesh_traffic_leaves_through_the_egress_gateway_with_tls_origination() {
    let ca = Ca::new();
    let dir = temp_dir("egress");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, pem("CERTIFICATE", &ca.der)).unwrap();
    let external_addr = external(&ca).await;

    // The egress gateway listens first so the mesh config can name its address.
    let egress_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let egress_addr = egress_listener.local_addr().unwrap();
    let config = format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: egress, namespace: istio-system}}
spec:
  servers: [{{port: {{number: 80, protocol: HTTP}}, hosts: [api.external.com]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: external-via-egress}}
spec:
  hosts: [api.external.com]
  gateways: [mesh, istio-system/egress]
  http:
  - match: [{{gateways: [mesh], port: 80}}]
    route: [{{destination: {{host: istio-egressgateway.istio-system.svc.cluster.local, port: {{number: 80}}}}}}]
  - match: [{{gateways: [istio-system/egress], port: 80}}]
    route: [{{destination: {{host: api.external.com, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: egressgateway, namespace: istio-system}}
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {egress}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external}}
spec:
  hosts: [api.external.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 443, name: https, protocol: HTTPS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{https: {ext}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: external-tls}}
spec:
  host: api.external.com
  trafficPolicy:
    portLevelSettings:
    - port: {{number: 443}}
      tls: {{mode: SIMPLE, caCertificates: '{ca}'}}
",
        egress = egress_addr.port(),
        ext = external_addr.port(),
        ca = ca_path.display()
    );
    let bundle = Bundle::load(&config, "egress.yaml", "default").unwrap();

    // Egress gateway: HTTP in on its server port, TLS originated out.
    let gateway_table = gateway_route_tables(&bundle.gateways[0], &bundle.virtual_services)
        .remove(&80)
        .unwrap();
    let gateway = proxy_stack(gateway_table, &bundle, TlsOrigination::new());
    let through_gateway = Arc::new(AtomicUsize::new(0));
    let counter = through_gateway.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = egress_listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let gateway = gateway.clone();
            // hyper's body in, the stack's body out (small requests: collected).
            let svc = tower::service_fn(move |req: http::Request<Incoming>| {
                let gateway = gateway.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    gateway
                        .oneshot(http::Request::from_parts(parts, Full::new(body)))
                        .await
                }
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc))
                    .into_owned(),
            );
        }
    });

    // The sidecar: the mesh table sends api.external.com to the egress gateway, in plaintext.
    let mesh_table = RouteTable::build(&bundle.virtual_services, &TableOptions::default());
    let sidecar = proxy_stack(mesh_table, &bundle, PlainConnector);
    let req = http::Request::get("http://api.external.com/v1/items")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sidecar.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        "external via api.external.com, host Some(\"api.external.com\")"
    );
    assert_eq!(
        through_gateway.load(Ordering::SeqCst),
        1,
        "the request went through the egress gateway"
    );
}
