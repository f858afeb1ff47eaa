//! The authenticated peer identity of a connection, handed to HTTP services.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::id::SpiffeId;
use crate::leaf::inspect_leaf;

/// The verified SPIFFE ID of the TLS peer, carried in `http::Request` extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity(pub SpiffeId);

/// The SPIFFE ID of a connection's peer, read from the certificates rustls kept after the
/// handshake. Returns `None` for a peer without a certificate (PERMISSIVE).
///
/// Only use this on connections made with configs from [`crate::Credentials`]: the ID is
/// trusted because our verifier already validated the chain during the handshake.
pub fn peer_id(conn: &rustls::CommonState) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    inspect_leaf(leaf).ok().map(|leaf| leaf.id)
}

/// The peer identity of an accepted tokio-rustls server stream, ready to be inserted into each
/// request's extensions (see [`PeerIdentityLayer`]).
pub fn server_peer_identity<IO>(
    stream: &tokio_rustls::server::TlsStream<IO>,
) -> Option<PeerIdentity> {
    peer_id(stream.get_ref().1).map(PeerIdentity)
}

/// Inserts one connection's [`PeerIdentity`] (if any) into every request's extensions.
///
/// Build one per connection. Any identity already present in a request is replaced, so a
/// client cannot smuggle one in.
#[derive(Debug, Clone)]
pub struct PeerIdentityLayer {
    peer: Option<PeerIdentity>,
}

impl PeerIdentityLayer {
    /// A layer for a connection whose peer is `peer`.
    pub fn new(peer: Option<PeerIdentity>) -> Self {
        Self { peer }
    }
}

impl<S> Layer<S> for PeerIdentityLayer {
    type Service = PeerIdentityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerIdentityService {
            inner,
            peer: self.peer.clone(),
        }
    }
}

/// Service of [`PeerIdentityLayer`]. `poll_ready` is the inner service's; `call` only edits
/// extensions.
#[derive(Debug, Clone)]
pub struct PeerIdentityService<S> {
    inner: S,
    peer: Option<PeerIdentity>,
}

impl<S, B> Service<http::Request<B>> for PeerIdentityService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match &self.peer {
            Some(peer) => {
                req.extensions_mut().insert(peer.clone());
            }
            None => {
                req.extensions_mut().remove::<PeerIdentity>();
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceExt, service_fn};

    async fn seen(peer: Option<PeerIdentity>, smuggled: bool) -> Option<PeerIdentity> {
        let svc =
            PeerIdentityLayer::new(peer).layer(service_fn(|req: http::Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.extensions().get::<PeerIdentity>().cloned())
            }));
        let mut req = http::Request::new(());
        if smuggled {
            let fake: SpiffeId = "spiffe://td/ns/admin/sa/root".parse().unwrap();
            req.extensions_mut().insert(PeerIdentity(fake));
        }
        svc.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn connection_identity_reaches_the_request() {
        let id: SpiffeId = "spiffe://td/ns/a/sa/b".parse().unwrap();
        assert_eq!(
            seen(Some(PeerIdentity(id.clone())), false).await,
            Some(PeerIdentity(id.clone()))
        );
        assert_eq!(
            seen(Some(PeerIdentity(id.clone())), true).await,
            Some(PeerIdentity(id))
        );
    }

    #[tokio::test]
    async fn anonymous_connection_strips_any_smuggled_identity() {
        assert_eq!(seen(None, true).await, None);
    }
}
