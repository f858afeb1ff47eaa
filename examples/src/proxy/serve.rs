//! Listener plumbing shared by the admin listener and (later) the data-plane listeners: a
//! shutdown signal, an accept loop with hyper's graceful draining, and the registry of
//! listener tasks that `/ready` waits for.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
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
/// then stops accepting and lets in-flight requests finish for up to `drain` (hyper's
/// graceful shutdown: idle keep-alive connections close, HTTP/2 gets GOAWAY).
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
    serve_http_per_peer(listener, move |_| service.clone(), shutdown, drain).await;
}

/// [`serve_http`] with a service made per connection from the peer's address (to put it
/// into request extensions as `SourceAddr`).
pub async fn serve_http_per_peer<F, S, B>(
    listener: TcpListener,
    make: F,
    mut shutdown: Shutdown,
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
    let graceful = GracefulShutdown::new();
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
            () = shutdown.wait() => break,
        };
        // Responses leave as soon as they are written (Envoy sets TCP_NODELAY too).
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            make(peer),
            graceful.watcher(),
            peer,
        ));
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?drain, "drain time over; closing the remaining connections");
    }
}

/// Serves HTTP on one accepted connection until it closes or graceful shutdown ends it: what
/// every listener does once it has a stream (after TLS, where there is TLS). HTTP/1.0, 1.1
/// and HTTP/2 (prior knowledge, or ALPN `h2`) are told apart by hyper-util's auto builder;
/// HTTP/1.1 upgrades and HTTP/2 extended CONNECT (RFC 8441) are enabled, so WebSocket can
/// pass (`mesh_gateway::filters::UpgradeLayer` decides which upgrades do).
pub(crate) async fn serve_connection<I, S, B>(io: I, service: S, watcher: Watcher, peer: SocketAddr)
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let svc = hyper_util::service::TowerToHyperService::new(service);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
