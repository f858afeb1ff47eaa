//! The upstream's connections: one pool per cluster, keyed by endpoint, on hyper's
//! connection-level client (`hyper::client::conn`), so the address dialled is the endpoint's
//! while the request keeps its own authority.
//!
//! - HTTP/1.1: idle connections per endpoint, most recently used first. A connection goes
//!   back when its response body has been read to the end (or ended empty); one whose
//!   response was not read to the end, or that hit `maxRequestsPerConnection`, is closed.
//!   A checked-out connection that turns out closed before the request was written is
//!   replaced by a fresh one once, transparently.
//! - HTTP/2: one connection per endpoint, shared by all requests, replaced when it closes
//!   (or after `maxRequestsPerConnection` streams).
//! - The protocol is the caller's choice, except that a TLS connection whose ALPN chose
//!   `h2` is spoken as HTTP/2.
//!
//! Idle connections older than the pool's idle timeout are dropped at checkout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::ServiceExt as _;
use tower_service::Service;

use super::error::UpstreamError;
use super::protocol::{self, Wire};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Most idle HTTP/1.1 connections kept per endpoint.
pub(crate) const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// What a cluster's connections are made with and how long they live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    /// `connectionPool.http.idleTimeout`.
    pub(crate) idle_timeout: Duration,
    /// `connectionPool.http.maxRequestsPerConnection` (0: unlimited).
    pub(crate) max_requests_per_connection: u32,
    /// Idle HTTP/1.1 connections kept per endpoint.
    pub(crate) max_idle: usize,
}

/// The connections of one cluster.
pub(crate) struct Pool<C, B> {
    /// Connectors for HTTP/1.1 and HTTP/2 connections (they differ in the ALPN they offer).
    connector: [C; 2],
    settings: PoolSettings,
    http1: Mutex<HashMap<EndpointKey, Vec<Idle<B>>>>,
    http2: Mutex<HashMap<EndpointKey, Shared<B>>>,
    /// Serialises HTTP/2 connection attempts per endpoint, so concurrent first requests share
    /// one connection.
    connecting: Mutex<HashMap<EndpointKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// An endpoint's authority as a pool key, compared and hashed as its exact bytes, and looked
/// up by `&str`. `Authority`'s own `Hash` folds case one byte per hasher call and its `Eq`
/// folds case too: about 1,000 instructions per request for the checkout and the checkin.
/// Endpoint authorities come from the registry, spelled one way, so exact bytes suffice.
#[derive(Debug, Clone)]
struct EndpointKey(Authority);

impl PartialEq for EndpointKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for EndpointKey {}

impl std::hash::Hash for EndpointKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that lookups by `&str` find it.
        self.0.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for EndpointKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

struct Idle<B> {
    sender: http1::SendRequest<B>,
    /// Requests this connection has carried.
    used: u32,
    since: Instant,
}

struct Shared<B> {
    sender: http2::SendRequest<B>,
    used: u32,
    since: Instant,
}

/// An HTTP/1.1 connection out of the pool, to be given back when its response body ends.
pub(crate) struct Checkin {
    give_back: Box<dyn FnOnce() + Send>,
}

impl Checkin {
    /// Puts the connection back into its pool.
    pub(crate) fn give_back(self) {
        (self.give_back)();
    }
}

impl std::fmt::Debug for Checkin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkin")
    }
}

/// A response and, for HTTP/1.1, the connection to give back once its body ends.
pub(crate) type Sent = (Response<Incoming>, Option<Checkin>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C, B> Pool<C, B> {
    pub(crate) fn new(http1: C, http2: C, settings: PoolSettings) -> Self {
        Self {
            connector: [http1, http2],
            settings,
            http1: Mutex::new(HashMap::new()),
            http2: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
        }
    }

    /// The connector for HTTP/2 (`true`) or HTTP/1.1 and whole connections (`false`).
    pub(crate) fn connector(&self, http2: bool) -> &C {
        &self.connector[usize::from(http2)]
    }

    fn fresh(&self, since: Instant) -> bool {
        since.elapsed() < self.settings.idle_timeout
    }

    /// An idle HTTP/1.1 connection to `target` that can take a request now.
    fn checkout_http1(&self, target: &Authority) -> Option<Idle<B>> {
        let mut map = lock(&self.http1);
        let list = map.get_mut(target.as_str())?;
        let mut found = None;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let conn = &list[i];
            if conn.sender.is_closed() || !self.fresh(conn.since) {
                list.swap_remove(i);
                continue;
            }
            // A connection whose last exchange is still finishing is left for later.
            if conn.sender.is_ready() {
                found = Some(list.swap_remove(i));
                break;
            }
        }
        found
    }

    /// The shared HTTP/2 connection to `target`, if it is usable.
    fn current_http2(&self, target: &Authority) -> Option<http2::SendRequest<B>> {
        let mut map = lock(&self.http2);
        let entry = map.get_mut(target.as_str())?;
        let max = self.settings.max_requests_per_connection;
        if entry.sender.is_closed() || (max != 0 && entry.used >= max) {
            map.remove(target.as_str());
            return None;
        }
        entry.used += 1;
        entry.since = Instant::now();
        Some(entry.sender.clone())
    }
}

impl<C, B> Pool<C, B>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper::rt::Read + hyper::rt::Write + Connection + Unpin + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Sends `req` to the endpoint at `target` over `wire` (the request is adapted to it:
    /// version, authority, hop-by-hop headers).
    pub(crate) async fn send(
        self: &Arc<Self>,
        target: &Authority,
        wire: Wire,
        upgrade: bool,
        mut req: Request<B>,
    ) -> Result<Sent, UpstreamError> {
        if wire == Wire::Http2 && !upgrade {
            if let Some(sender) = self.current_http2(target) {
                return send_http2(sender, req, target).await;
            }
            let sender = self.connect_http2(target).await?;
            return send_http2(sender, req, target).await;
        }
        // HTTP/1.1: an idle connection first; one that closed before taking the request is
        // replaced by a fresh connection, once.
        if let Some(idle) = self.checkout_http1(target) {
            protocol::adapt(&mut req, Wire::Http1, target);
            match self.send_http1(target, idle, upgrade, req).await {
                Ok(sent) => return Ok(sent),
                Err(Unsent::Back(back)) => req = back,
                Err(Unsent::Failed(e)) => return Err(e),
            }
        } else if let Some(sender) = (!upgrade).then(|| self.current_http2(target)).flatten() {
            // The endpoint chose HTTP/2 by ALPN earlier.
            return send_http2(sender, req, target).await;
        }
        match self.connect(target, Wire::Http1).await? {
            Connected::Http1(sender) => {
                protocol::adapt(&mut req, Wire::Http1, target);
                let idle = Idle {
                    sender,
                    used: 0,
                    since: Instant::now(),
                };
                match self.send_http1(target, idle, upgrade, req).await {
                    Ok(sent) => Ok(sent),
                    Err(Unsent::Back(_)) => Err(UpstreamError::ResetBeforeRequest(
                        "a new connection closed before taking the request".into(),
                    )),
                    Err(Unsent::Failed(e)) => Err(e),
                }
            }
            Connected::Http2(sender) => {
                self.keep_http2(target, sender.clone());
                send_http2(sender, req, target).await
            }
        }
    }

    async fn send_http1(
        self: &Arc<Self>,
        target: &Authority,
        mut idle: Idle<B>,
        upgrade: bool,
        req: Request<B>,
    ) -> Result<Sent, Unsent<B>> {
        match idle.sender.try_send_request(req).await {
            Ok(resp) => {
                idle.used += 1;
                let max = self.settings.max_requests_per_connection;
                let reusable = !upgrade && (max == 0 || idle.used < max);
                let checkin = reusable.then(|| {
                    let pool = Arc::downgrade(self);
                    let target = target.clone();
                    Checkin {
                        give_back: Box::new(move || {
                            if let Some(pool) = pool.upgrade() {
                                pool.checkin_http1(target, idle);
                            }
                        }),
                    }
                });
                Ok((resp, checkin))
            }
            Err(mut e) => match e.take_message() {
                Some(back) => Err(Unsent::Back(back)),
                None => Err(Unsent::Failed(UpstreamError::from_hyper(
                    e.into_error(),
                    true,
                ))),
            },
        }
    }

    fn checkin_http1(&self, target: Authority, mut idle: Idle<B>) {
        if idle.sender.is_closed() {
            return;
        }
        idle.since = Instant::now();
        let mut map = lock(&self.http1);
        let list = match map.get_mut(target.as_str()) {
            Some(list) => list,
            None => map.entry(EndpointKey(target)).or_default(),
        };
        if list.len() < self.settings.max_idle {
            list.push(idle);
        }
    }

    fn keep_http2(&self, target: &Authority, sender: http2::SendRequest<B>) {
        lock(&self.http2).insert(
            EndpointKey(target.clone()),
            Shared {
                sender,
                used: 1,
                since: Instant::now(),
            },
        );
    }

    /// A new shared HTTP/2 connection to `target` (or the one a concurrent request made).
    async fn connect_http2(
        self: &Arc<Self>,
        target: &Authority,
    ) -> Result<http2::SendRequest<B>, UpstreamError> {
        let gate = lock(&self.connecting)
            .entry(EndpointKey(target.clone()))
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        if let Some(sender) = self.current_http2(target) {
            return Ok(sender);
        }
        let sender = match self.connect(target, Wire::Http2).await? {
            Connected::Http2(sender) => sender,
            // The server chose HTTP/1.1 by ALPN for a port we speak HTTP/2 to.
            Connected::Http1(_) => {
                return Err(UpstreamError::Connect {
                    endpoint: target.to_string(),
                    source: "the TLS server did not accept HTTP/2 (ALPN)".into(),
                });
            }
        };
        self.keep_http2(target, sender.clone());
        Ok(sender)
    }

    /// Opens a connection to `target` and runs the handshake of `wire` (or of HTTP/2, when
    /// the TLS handshake chose it by ALPN).
    async fn connect(&self, target: &Authority, wire: Wire) -> Result<Connected<B>, UpstreamError> {
        let failed = |source: BoxError| UpstreamError::Connect {
            endpoint: target.to_string(),
            source,
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(target.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| failed(e.into()))?;
        let connector = self.connector(wire == Wire::Http2);
        let io = connector
            .clone()
            .oneshot(uri)
            .await
            .map_err(|e| failed(e.into()))?;
        let http2 = wire == Wire::Http2 || io.connected().is_negotiated_h2();
        if http2 {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new());
            let (sender, conn) = builder.handshake(io).await.map_err(|e| failed(e.into()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                }
            });
            Ok(Connected::Http2(sender))
        } else {
            let (mut sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|e| failed(e.into()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
                }
            });
            sender.ready().await.map_err(|e| failed(e.into()))?;
            Ok(Connected::Http1(sender))
        }
    }
}

async fn send_http2<B>(
    mut sender: http2::SendRequest<B>,
    mut req: Request<B>,
    target: &Authority,
) -> Result<Sent, UpstreamError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if protocol::is_upgrade(&req) {
        // The endpoint negotiated HTTP/2 by ALPN; RFC 8441 upstream is not built.
        return Err(UpstreamError::Local(
            "an HTTP/1.1 upgrade cannot be sent to an HTTP/2 upstream".into(),
        ));
    }
    protocol::adapt(&mut req, Wire::Http2, target);
    sender
        .ready()
        .await
        .map_err(|e| UpstreamError::from_hyper(e, false))?;
    match sender.try_send_request(req).await {
        Ok(resp) => Ok((resp, None)),
        Err(mut e) => {
            let sent = e.take_message().is_none();
            Err(UpstreamError::from_hyper(e.into_error(), sent))
        }
    }
}

enum Connected<B> {
    Http1(http1::SendRequest<B>),
    Http2(http2::SendRequest<B>),
}

enum Unsent<B> {
    /// The connection closed before the request was written: here it is back.
    Back(Request<B>),
    Failed(UpstreamError),
}
