//! Gateway costs per connection and per request: SNI parsing, server selection, and the
//! ingress filter stack against a bare `service_fn`.
//!
//! `cargo bench -p mesh-benches --bench gateway`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http_body_util::Empty;
use mesh_gateway::filters::{
    ForwardedLayer, HeaderLimitLayer, HopByHopLayer, RemoteAddr, StripInternalHeadersLayer,
    request_id_layer,
};
use mesh_gateway::sni::parse_client_hello;
use mesh_gateway::{Gateway, ServerTable};
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("reviews.bookinfo.svc.cluster.local")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap_or_else(|e| panic!("{e}"));
    out
}

fn sni(c: &mut Criterion) {
    let hello = client_hello();
    c.bench_function("sni/parse_rustls_client_hello", |b| {
        b.iter(|| black_box(parse_client_hello(black_box(&hello))))
    });
}

fn selection(c: &mut Criterion) {
    let mut servers = String::new();
    for i in 0..50 {
        servers.push_str(&format!("  - port: {{number: 443, protocol: HTTPS}}\n    hosts: [svc-{i}.example.com]\n    tls: {{mode: SIMPLE, credentialName: c{i}}}\n"));
    }
    servers.push_str("  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*.example.com']\n    tls: {mode: SIMPLE, credentialName: wild}\n");
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  servers:\n{servers}"
    );
    let docs =
        mesh_routing::parse_documents(&yaml, "gw", "default").unwrap_or_else(|e| panic!("{e}"));
    let table =
        ServerTable::new(&[Gateway::from_document(&docs[0]).unwrap_or_else(|e| panic!("{e}"))]);
    c.bench_function("server_select/51_servers_exact_sni", |b| {
        b.iter(|| black_box(table.select_tls(443, Some(black_box("svc-25.example.com")))))
    });
    c.bench_function("server_select/51_servers_wildcard_sni", |b| {
        b.iter(|| black_box(table.select_tls(443, Some(black_box("other.example.com")))))
    });
}

fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmarked service must not wait"),
    }
}

fn filters(c: &mut Criterion) {
    let bare = service_fn(|_req: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
    });
    let stack = ServiceBuilder::new()
        .layer(HeaderLimitLayer::default())
        .layer(StripInternalHeadersLayer::default())
        .layer(HopByHopLayer)
        .layer(ForwardedLayer::new(1).proto("https"))
        .layer(request_id_layer())
        .service(bare);
    let req = || {
        let mut r = http::Request::get("/api/v1/items")
            .header("host", "api.example.com")
            .header("user-agent", "bench/1.0")
            .header("accept", "*/*")
            .header("x-forwarded-for", "203.0.113.9")
            .body(())
            .unwrap_or_default();
        r.extensions_mut()
            .insert(RemoteAddr(([10, 0, 0, 7], 40000).into()));
        r
    };
    let mut group = c.benchmark_group("ingress_filters");
    group.bench_function("bare_service_fn", |b| {
        b.iter_batched(
            req,
            |r| ready(bare.oneshot(r)).map(|r| black_box(r.status())),
            BatchSize::SmallInput,
        )
    });
    macro_rules! one {
        ($name:literal, $layer:expr) => {
            let svc = ServiceBuilder::new().layer($layer).service(bare);
            group.bench_function($name, |b| {
                b.iter_batched(
                    req,
                    |r| ready(svc.clone().oneshot(r)).map(|r| black_box(r.status())),
                    BatchSize::SmallInput,
                )
            });
        };
    }
    one!("header_limit", HeaderLimitLayer::default());
    one!("strip_internal", StripInternalHeadersLayer::default());
    one!("hop_by_hop", HopByHopLayer);
    one!("forwarded", ForwardedLayer::new(1).proto("https"));
    one!("request_id", request_id_layer());
    group.bench_function("all_filters", |b| {
        b.iter_batched(
            req,
            |r| ready(stack.clone().oneshot(r)).map(|r| black_box(r.status())),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, sni, selection, filters);
criterion_main!(benches);
