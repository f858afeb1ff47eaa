//! Listener plumbing shared by every listener: a shutdown signal, the connections of a
//! listener ([`Connections`]: a cap, header-read and idle timeouts, HTTP/2 limits and pings,
//! graceful close and drain), one accept loop, and the registry of listener tasks that
//! `/ready` waits for.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Fires once, when the proxy starts shutting down. Clones share.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Triggers a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Self) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Self(rx))
    }

    /// Resolves once shutdown has begun (immediately if it already has).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means shutting down.
        let _ = self.0.wait_for(|down| *down).await;
    }

    /// Whether shutdown has begun.
    pub fn is_down(&self) -> bool {
        *self.0.borrow()
    }
}

impl ShutdownTrigger {
    /// Begins shutdown.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// Whether one listener is up. Cheap to clone; set once the socket accepts.
#[derive(Debug, Clone, Default)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    /// Marks the listener up.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Whether it is up.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    addr: SocketAddr,
    ready: ReadyFlag,
}

/// The proxy's listener tasks. `/ready` answers 200 only once the set is sealed (startup
/// registered everything it will) and every listener in it is up.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    entries: Arc<Mutex<Vec<Entry>>>,
    sealed: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Listeners {
    /// Registers a listener called `name` on `addr` and runs `task` (which should set the
    /// flag once it accepts and return once [`Shutdown`] fired and its connections drained).
    pub fn spawn<F>(
        &self,
        name: impl Into<String>,
        addr: SocketAddr,
        task: impl FnOnce(ReadyFlag) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let ready = ReadyFlag::default();
        let handle = tokio::spawn(task(ready.clone()));
        self.lock_entries().push(Entry {
            name: name.into(),
            addr,
            ready,
        });
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
    }

    /// Declares that startup registered every listener.
    pub fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// Sealed and every listener up.
    pub fn all_ready(&self) -> bool {
        self.sealed.load(Ordering::Acquire) && self.lock_entries().iter().all(|e| e.ready.is_set())
    }

    /// `(name, address, up)` of every listener, in registration order.
    pub fn describe(&self) -> Vec<(String, SocketAddr, bool)> {
        (self.lock_entries().iter())
            .map(|e| (e.name.clone(), e.addr, e.ready.is_set()))
            .collect()
    }

    /// Waits for every listener task to end.
    pub async fn join(&self) {
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "listener task failed");
            }
        }
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves HTTP/1.1 and HTTP/2 (h2c) on `listener` with `service` until `shutdown` fires,
/// then stops accepting and lets in-flight requests finish for up to `drain` (idle keep-alive
/// connections close, HTTP/2 gets GOAWAY), with the default [`ConnectionLimits`].
pub async fn serve_http<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: Shutdown,
    drain: Duration,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conns = Connections::new(ConnectionLimits::default(), shutdown, None);
    serve_http_per_peer(listener, move |_| service.clone(), conns, drain).await;
}

/// [`serve_http`] with a service made per connection from the peer's address (to put it
/// into request extensions as `SourceAddr`), under `conns`' limits.
pub async fn serve_http_per_peer<F, S, B>(
    listener: TcpListener,
    make: F,
    conns: Connections,
    drain: Duration,
) where
    F: Fn(SocketAddr) -> S,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    while let Some((stream, peer, slot)) = conns.accept(&listener).await {
        let conns = conns.clone();
        let svc = make(peer);
        tokio::spawn(async move { conns.serve(slot, stream, svc, peer).await });
    }
    drop(listener);
    conns.drain(drain).await;
}

/// The limits on each HTTP listener's connections (mesh-proxy's `--max-connections`,
/// `--header-read-timeout`, `--idle-timeout`, `--max-concurrent-streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once per listener; more are reset as they arrive, and counted.
    pub max_connections: usize,
    /// How long a client may take to send a request head (HTTP/1; slowloris). hyper also
    /// runs it while a kept-alive connection waits for its next head, so an idle HTTP/1
    /// connection closes after the shorter of this and `idle_timeout`.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open without a request in flight (HTTP/1 keep-alive
    /// and HTTP/2; Envoy's `idle_timeout`).
    pub idle_timeout: Duration,
    /// Streams a client may have open at once on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// How often an idle HTTP/2 connection is pinged (a peer that does not answer within
    /// this long is dropped).
    pub http2_keepalive: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(3600),
            max_concurrent_streams: 1024,
            http2_keepalive: Duration::from_secs(60),
        }
    }
}

/// The connections of one listener: admitted up to [`ConnectionLimits::max_connections`],
/// served with its timeouts, closed gracefully when idle or on shutdown, drained. Clones
/// share.
#[derive(Debug, Clone)]
pub struct Connections {
    inner: Arc<ConnectionsInner>,
}

#[derive(Debug)]
struct ConnectionsInner {
    limits: ConnectionLimits,
    shutdown: Shutdown,
    open: AtomicUsize,
    closed: tokio::sync::Notify,
    abort: watch::Sender<bool>,
    refused: Option<prometheus_client::metrics::counter::Counter>,
}

/// An admitted connection's place; freed when dropped.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<ConnectionsInner>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
}

impl Connections {
    /// The connections of a listener with `limits`, ending with `shutdown`; `refused` counts
    /// the connections reset for being over the cap.
    pub fn new(
        limits: ConnectionLimits,
        shutdown: Shutdown,
        refused: Option<prometheus_client::metrics::counter::Counter>,
    ) -> Self {
        Self {
            inner: Arc::new(ConnectionsInner {
                limits,
                shutdown,
                open: AtomicUsize::new(0),
                closed: tokio::sync::Notify::new(),
                abort: watch::channel(false).0,
                refused,
            }),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Accepts the next connection (`TCP_NODELAY` set) that fits under the cap; connections
    /// over it are reset at once and counted, and the ones open keep being served. `None`
    /// once shutdown began.
    pub async fn accept(
        &self,
        listener: &TcpListener,
    ) -> Option<(TcpStream, SocketAddr, ConnectionSlot)> {
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.wait() => return None,
            };
            let open = self.inner.open.fetch_add(1, Ordering::AcqRel);
            let slot = ConnectionSlot(self.inner.clone());
            if open >= self.inner.limits.max_connections {
                drop(slot);
                if let Some(c) = &self.inner.refused {
                    c.inc();
                }
                mesh_gateway::reset(stream);
                continue;
            }
            // Responses leave as soon as they are written (Envoy sets TCP_NODELAY too).
            let _ = stream.set_nodelay(true);
            return Some((stream, peer, slot));
        }
    }

    /// Serves HTTP on one admitted connection (after TLS, where there is TLS) until it
    /// closes, stays idle past the idle timeout (then graceful: HTTP/1 closes, HTTP/2 gets
    /// GOAWAY), shutdown begins (graceful too) or draining is over (closed). HTTP/1.0, 1.1
    /// and HTTP/2 (prior knowledge, or ALPN `h2`) are told apart by hyper-util's auto
    /// builder; HTTP/1.1 upgrades and HTTP/2 extended CONNECT (RFC 8441) are enabled, so
    /// WebSocket can pass (`mesh_gateway::filters::UpgradeLayer` decides which upgrades do).
    pub async fn serve<I, S, B>(&self, slot: ConnectionSlot, io: I, service: S, peer: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limits = self.inner.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .keep_alive_interval(limits.http2_keepalive)
            .keep_alive_timeout(limits.http2_keepalive.min(Duration::from_secs(20)));
        let busy = Arc::new(Busy::default());
        let svc = TowerToHyperService::new(Tracked {
            inner: service,
            busy: busy.clone(),
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut shutdown = self.inner.shutdown.clone();
        let mut abort = self.inner.abort.subscribe();
        let idle = tokio::time::sleep(limits.idle_timeout);
        tokio::pin!(idle);
        let mut closing = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = shutdown.wait(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = &mut idle, if !closing => {
                    match busy.idle_for() {
                        Some(quiet) if quiet >= limits.idle_timeout => {
                            tracing::debug!(%peer, "idle timeout; closing the connection");
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        Some(quiet) => idle.as_mut().reset(
                            tokio::time::Instant::now() + (limits.idle_timeout - quiet),
                        ),
                        None => idle
                            .as_mut()
                            .reset(tokio::time::Instant::now() + limits.idle_timeout),
                    }
                }
                _ = abort.changed() => break,
            }
        }
        drop(slot);
    }

    /// Waits up to `drain` for the connections to end (call after shutdown began), then
    /// closes the rest.
    pub async fn drain(&self, drain: Duration) {
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            let closed = self.inner.closed.notified();
            if self.open() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                tracing::warn!(
                    ?drain,
                    open = self.open(),
                    "drain time over; closing the remaining connections"
                );
                self.inner.abort.send_replace(true);
                return;
            }
        }
    }
}

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
struct Busy {
    in_flight: AtomicUsize,
    since: std::time::Instant,
    /// Milliseconds after `since` when the connection was last busy.
    last: AtomicU64,
}

impl Default for Busy {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            since: std::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Busy {
    fn start(self: &Arc<Self>) -> BusyGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    /// How long the connection has had no request in flight (`None`: one is in flight).
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Acquire));
        Some(self.since.elapsed().saturating_sub(last))
    }
}

/// One request in flight, until its response body is done.
#[derive(Debug)]
struct BusyGuard(Arc<Busy>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts the requests of one connection as in flight until their response bodies end.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    busy: Arc<Busy>,
}

impl<S, B> tower_service::Service<Request<Incoming>> for Tracked<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        TrackedFuture {
            guard: Some(self.busy.start()),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Tracked`]: hands the request's place to the body.
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<BusyGuard>,
    }
}

impl<F, B> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<TrackedBody<B>>, Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        std::task::Poll::Ready(Ok(resp.map(|body| TrackedBody {
            body,
            _guard: guard,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body holding its request's place in [`Busy`] until it is dropped.
    struct TrackedBody<B> {
        #[pin]
        body: B,
        _guard: Option<BusyGuard>,
    }
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
