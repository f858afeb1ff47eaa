//! The demo's upstreams: small HTTP servers on loopback ephemeral ports that say who they
//! are and count what they receive, and one mTLS-only workload that echoes its caller's
//! SPIFFE ID.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_identity::{ClientAuth, Credentials, IdMatcher, Inbound, MtlsMode, accept_inbound};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::DemoError;

/// A running upstream: where it listens and how many requests it has answered.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its loopback address.
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
}

impl Upstream {
    pub(super) fn new(addr: SocketAddr, hits: Arc<AtomicU64>) -> Self {
        Self { addr, hits }
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

pub(super) async fn bind(what: &str) -> Result<(TcpListener, SocketAddr), DemoError> {
    let io = |source| DemoError::Io {
        what: format!("binding the {what} server"),
        source,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    Ok((listener, addr))
}

/// A plain HTTP server answering `{name} {path}` to every request.
pub(super) async fn plain(name: &'static str) -> Result<Upstream, DemoError> {
    let (listener, addr) = bind(name).await?;
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                counter.fetch_add(1, Ordering::Relaxed);
                let body = format!("{name} {}\n", req.uri().path());
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .into_owned(),
            );
        }
    });
    Ok(Upstream { addr, hits })
}

/// An HTTP server that takes mTLS only (a client SVID from the demo's trust domain is
/// required) and answers `{name}: 5 stars, served as {own ID} to {peer ID}`.
pub(super) async fn mtls(
    name: &'static str,
    credentials: &Credentials,
) -> Result<Upstream, DemoError> {
    let mut config = credentials
        .server_config(ClientAuth::Required(IdMatcher::Any))
        .map_err(|e| DemoError::Identity(format!("{name} TLS config: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let own = credentials.svid().id().to_string();
    let (listener, addr) = bind(name).await?;
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter, own) = (acceptor.clone(), counter.clone(), own.clone());
            tokio::spawn(async move {
                // Plaintext and clients without a valid SVID never get past this.
                let Ok(Inbound::Tls(tls, Some(peer))) =
                    accept_inbound(tcp, &acceptor, MtlsMode::Strict).await
                else {
                    return;
                };
                let peer = peer.0.to_string();
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let body = format!("{name}: 5 stars, served as {own} to {peer}\n");
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok(Upstream { addr, hits })
}
