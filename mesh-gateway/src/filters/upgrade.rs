//! Protocol upgrades at the edge: which ones pass (WebSocket, as Istio allows by default), and
//! joining the client's upgraded connection with the upstream's once the upstream agreed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use mesh_routing::LocalReply;
use tower_layer::Layer;
use tower_service::Service;

use crate::tunnel::Tunnels;

/// Lets WebSocket upgrades through and tunnels them; refuses the upgrades Istio does not
/// enable. Put it outermost in a proxy's HTTP stack, on a connection served with upgrades
/// (hyper's `serve_connection_with_upgrades`, and `enable_connect_protocol` for HTTP/2).
///
/// - HTTP/1.1 `Upgrade: websocket` and HTTP/2 extended CONNECT with `:protocol websocket`
///   (RFC 8441) pass on; when the upstream answers `101` (or `2xx` to the CONNECT, which
///   mesh-mirror's `Upstream` makes of its `101`) and the response carries the upstream's
///   upgraded connection (hyper's `OnUpgrade`), the two connections are joined by a tunnel
///   of [`Tunnels`] (bytes copied both ways with back-pressure, the cluster's
///   `tcp.idleTimeout` from mesh-mirror's `TunnelIdleTimeout` or the tunnels' default, drain
///   on shutdown). Other upgrade tokens and other `:protocol`s get 403, as from Envoy.
/// - `Upgrade: h2c` (HTTP/1.1 to cleartext HTTP/2) is not an upgrade a proxy passes: its
///   headers are removed and the request goes on as HTTP/1.1.
/// - `CONNECT` tunnelling (forward-proxy style) is not enabled in Istio's sidecars and
///   gateways: 403.
///
/// # Readiness
/// Passes `poll_ready` through.
#[derive(Debug, Clone)]
pub struct UpgradeLayer {
    tunnels: Tunnels,
}

impl UpgradeLayer {
    /// Tunnels upgraded connections in `tunnels`.
    pub fn new(tunnels: Tunnels) -> Self {
        Self { tunnels }
    }
}

impl<S> Layer<S> for UpgradeLayer {
    type Service = UpgradeService<S>;
    fn layer(&self, inner: S) -> UpgradeService<S> {
        UpgradeService {
            inner,
            tunnels: self.tunnels.clone(),
        }
    }
}

/// The service of [`UpgradeLayer`].
#[derive(Debug, Clone)]
pub struct UpgradeService<S> {
    inner: S,
    tunnels: Tunnels,
}

/// What a request asks for.
enum Ask {
    Plain,
    /// An upgrade or extended CONNECT that may pass; joined when the upstream agrees.
    Tunnel {
        connect: bool,
    },
    Refused,
}

fn tokens(headers: &HeaderMap, name: http::header::HeaderName) -> impl Iterator<Item = &str> {
    (headers.get_all(name).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn ask<B>(req: &mut Request<B>) -> Ask {
    if req.method() == Method::CONNECT {
        return match req.extensions().get::<hyper::ext::Protocol>() {
            Some(p) if p.as_str().eq_ignore_ascii_case("websocket") => {
                Ask::Tunnel { connect: true }
            }
            _ => Ask::Refused,
        };
    }
    let headers = req.headers_mut();
    if !headers.contains_key(UPGRADE) {
        return Ask::Plain;
    }
    if !tokens(headers, CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade")) {
        // `Upgrade` without `Connection: upgrade` asks for nothing (RFC 9110 section 7.8).
        headers.remove(UPGRADE);
        return Ask::Plain;
    }
    let (h2c, websocket) = {
        let mut upgrade = tokens(headers, UPGRADE);
        let first = upgrade.next().unwrap_or_default();
        let only_one = upgrade.next().is_none();
        (
            only_one && first.eq_ignore_ascii_case("h2c"),
            only_one && first.eq_ignore_ascii_case("websocket"),
        )
    };
    if h2c {
        headers.remove(UPGRADE);
        headers.remove("http2-settings");
        return Ask::Plain;
    }
    if websocket {
        return Ask::Tunnel { connect: false };
    }
    Ask::Refused
}

impl<S, B, RB> Service<Request<B>> for UpgradeService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = UpgradeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let tunnel = match ask(&mut req) {
            Ask::Plain => None,
            Ask::Refused => {
                return UpgradeFuture {
                    state: State::Refused { done: false },
                };
            }
            Ask::Tunnel { connect } => {
                // The client's side of the tunnel, taken before anything inside copies or
                // moves the request's extensions.
                let client = req.extensions_mut().remove::<OnUpgrade>();
                client.map(|client| Pending {
                    client,
                    connect,
                    tunnels: self.tunnels.clone(),
                })
            }
        };
        UpgradeFuture {
            state: State::Inner {
                fut: self.inner.call(req),
                tunnel,
            },
        }
    }
}

struct Pending {
    client: OnUpgrade,
    connect: bool,
    tunnels: Tunnels,
}

impl Pending {
    /// Joins the client with the upstream when the response says the upgrade happened.
    fn join<B>(self, resp: &mut Response<B>) {
        let agreed = if self.connect {
            resp.status().is_success()
        } else {
            resp.status() == StatusCode::SWITCHING_PROTOCOLS
        };
        if !agreed {
            return;
        }
        let Some(upstream) = resp.extensions_mut().remove::<OnUpgrade>() else {
            return;
        };
        let idle = resp
            .extensions()
            .get::<mesh_mirror::TunnelIdleTimeout>()
            .map(|t| t.0);
        let Pending {
            client, tunnels, ..
        } = self;
        tokio::spawn(async move {
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let (client, upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let done = match idle {
                Some(idle) => tunnels.run_with_idle_timeout(client, upstream, idle).await,
                None => tunnels.run(client, upstream).await,
            };
            match done {
                Ok(bytes) => tracing::debug!(?bytes, "upgraded connection closed"),
                Err(e) => tracing::debug!(error = %e, "upgraded connection ended"),
            }
        });
    }
}

pin_project_lite::pin_project! {
    /// Future of [`UpgradeService`].
    pub struct UpgradeFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Refused { done: bool },
        Inner { #[pin] fut: F, tunnel: Option<Pending> },
    }
}

/// Envoy's answer to an upgrade it does not allow: 403, no body.
fn refused<B: Default>() -> Response<B> {
    let mut resp = Response::new(B::default());
    *resp.status_mut() = StatusCode::FORBIDDEN;
    LocalReply::new("", "").mark(resp)
}

impl<F, RB, E> Future for UpgradeFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { done } => {
                *done = true;
                Poll::Ready(Ok(refused()))
            }
            StateProj::Inner { fut, tunnel } => {
                let mut resp = ready!(fut.poll(cx))?;
                if let Some(pending) = tunnel.take() {
                    pending.join(&mut resp);
                }
                Poll::Ready(Ok(resp))
            }
        }
    }
}
