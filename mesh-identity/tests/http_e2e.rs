//! End to end over loopback: mTLS (or plaintext under PERMISSIVE) accepted per mode, the
//! peer's SPIFFE ID placed in request extensions, AuthorizationPolicy enforced, hyper on
//! both sides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::Ca;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use mesh_identity::authz::{AuthorizationLayer, AuthorizationPolicy, Authorizer};
use mesh_identity::{
    ClientAuth, Credentials, IdMatcher, Inbound, MtlsMode, PeerIdentity, PeerIdentityLayer,
    accept_inbound,
};
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower::{ServiceBuilder, service_fn};

const SERVER: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// Answers with the peer identity the handler sees in its request extensions.
async fn whoami(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let who = req
        .extensions()
        .get::<PeerIdentity>()
        .map_or("anonymous".to_owned(), |p| p.0.to_string());
    Ok(http::Response::new(Full::from(who)))
}

async fn serve(ca: &Ca, mode: MtlsMode) -> SocketAddr {
    let creds = Credentials::new(ca.svid(SERVER), ca.bundle_set("cluster.local"));
    let auth = match mode {
        MtlsMode::Strict => ClientAuth::Required(IdMatcher::Any),
        _ => ClientAuth::Optional(IdMatcher::Any),
    };
    let acceptor = TlsAcceptor::from(Arc::new(creds.server_config(auth).unwrap()));
    // Only `sleep` may call; everything else gets 403.
    let policy = AuthorizationPolicy::from_spec(
        "default",
        "reviews",
        &json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}]}]}),
    )
    .unwrap();
    let authz = AuthorizationLayer::new(Authorizer::new(vec![policy]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, authz) = (acceptor.clone(), authz.clone());
            tokio::spawn(async move {
                let Ok(inbound) = accept_inbound(tcp, &acceptor, mode).await else {
                    return;
                };
                let build = |peer| {
                    TowerToHyperService::new(
                        ServiceBuilder::new()
                            .layer(PeerIdentityLayer::new(peer))
                            .layer(authz.clone())
                            .service(service_fn(whoami)),
                    )
                };
                let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = match inbound {
                    Inbound::Tls(tls, peer) => {
                        http.serve_connection(TokioIo::new(tls), build(peer)).await
                    }
                    Inbound::Plaintext(tcp) => {
                        http.serve_connection(TokioIo::new(tcp), build(None)).await
                    }
                };
            });
        }
    });
    addr
}

async fn get<IO>(io: IO) -> (http::StatusCode, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "reviews")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn mtls_get(ca: &Ca, addr: SocketAddr, client_id: &str) -> (http::StatusCode, String) {
    let creds = Credentials::new(ca.svid(client_id), ca.bundle_set("cluster.local"));
    let cfg = creds
        .client_config(IdMatcher::Exact(SERVER.parse().unwrap()))
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("reviews.default.svc.cluster.local").unwrap();
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    get(tls).await
}

#[tokio::test]
async fn peer_identity_reaches_the_handler_and_policy_is_enforced() {
    let ca = Ca::root("root");
    let addr = serve(&ca, MtlsMode::Strict).await;
    let sleep = "spiffe://cluster.local/ns/default/sa/sleep";
    assert_eq!(
        mtls_get(&ca, addr, sleep).await,
        (http::StatusCode::OK, sleep.to_owned())
    );
    assert_eq!(
        mtls_get(&ca, addr, "spiffe://cluster.local/ns/default/sa/intruder").await,
        (
            http::StatusCode::FORBIDDEN,
            "RBAC: access denied".to_owned()
        )
    );
}

#[tokio::test]
async fn permissive_plaintext_is_anonymous_and_strict_plaintext_is_refused() {
    let ca = Ca::root("root");
    let permissive = serve(&ca, MtlsMode::Permissive).await;
    let tcp = TcpStream::connect(permissive).await.unwrap();
    // Anonymous: the principal-based policy denies it, but it was accepted and answered.
    assert_eq!(
        get(tcp).await,
        (
            http::StatusCode::FORBIDDEN,
            "RBAC: access denied".to_owned()
        )
    );

    let strict = serve(&ca, MtlsMode::Strict).await;
    let tcp = TcpStream::connect(strict).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    assert!(
        sender.send_request(req).await.is_err(),
        "STRICT must drop plaintext"
    );
}
