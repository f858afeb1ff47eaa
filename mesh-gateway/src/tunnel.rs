//! Byte tunnels between two connections (upgraded HTTP requests, TCP routes, passthrough):
//! copied both ways with back-pressure, closed after an idle timeout, and drained on shutdown.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};

/// The open tunnels of a listener (or a whole proxy): counted, closed when idle for longer
/// than the idle timeout, and drained on [`shutdown`](Self::shutdown). Clones share.
///
/// ```
/// use std::time::Duration;
/// use mesh_gateway::Tunnels;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let tunnels = Tunnels::new(Duration::from_secs(3600));
/// assert_eq!(tunnels.open(), 0);
/// tunnels.shutdown(Duration::from_millis(10)).await; // nothing open: returns at once
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Tunnels {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    idle_timeout: Duration,
    open: AtomicUsize,
    closed: Notify,
    abort: watch::Sender<bool>,
}

/// Byte counts of a finished tunnel: client to upstream, upstream to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunnelBytes {
    /// Bytes the client sent.
    pub sent: u64,
    /// Bytes the upstream sent.
    pub received: u64,
}

impl Tunnels {
    /// Tunnels closed after `idle_timeout` without a byte either way (Istio's TCP default:
    /// one hour).
    pub fn new(idle_timeout: Duration) -> Self {
        let (abort, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                idle_timeout,
                open: AtomicUsize::new(0),
                closed: Notify::new(),
                abort,
            }),
        }
    }

    /// Tunnels now open.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Copies bytes between `a` (the client side) and `b` until both sides closed, either
    /// side failed, the tunnel was idle for the idle timeout, or [`shutdown`](Self::shutdown)
    /// gave up waiting. Back-pressure: a side is read only as fast as the other takes it.
    pub async fn run<A, B>(&self, a: A, b: B) -> io::Result<TunnelBytes>
    where
        A: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        self.run_with_idle_timeout(a, b, self.inner.idle_timeout)
            .await
    }

    /// [`run`](Self::run) with this tunnel's own idle timeout (a cluster's
    /// `connectionPool.tcp.idleTimeout`; zero: none).
    pub async fn run_with_idle_timeout<A, B>(
        &self,
        a: A,
        b: B,
        idle: Duration,
    ) -> io::Result<TunnelBytes>
    where
        A: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        let _open = OpenGuard::new(&self.inner);
        let mut abort = self.inner.abort.subscribe();
        if *abort.borrow() {
            return Err(io::Error::other("shutting down"));
        }
        let last = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut a = Active::new(a, last.clone(), start);
        let mut b = Active::new(b, last.clone(), start);
        let idle = if idle.is_zero() { Duration::MAX } else { idle };
        let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
        tokio::pin!(copy);
        let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(60));
        loop {
            tokio::select! {
                done = &mut copy => {
                    let (sent, received) = done?;
                    return Ok(TunnelBytes { sent, received });
                }
                _ = abort.changed() => {
                    return Err(io::Error::other("drain time over; tunnel closed"));
                }
                () = tokio::time::sleep(tick) => {
                    let quiet = start.elapsed().saturating_sub(
                        Duration::from_micros(last.load(Ordering::Relaxed)),
                    );
                    if quiet >= idle {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel idle timeout"));
                    }
                }
            }
        }
    }

    /// Waits up to `grace` for the open tunnels to end by themselves, then closes the rest.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let closed = self.inner.closed.notified();
            if self.open() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                tracing::warn!(open = self.open(), "drain time over; closing tunnels");
                break;
            }
        }
        self.inner.abort.send_replace(true);
    }
}

struct OpenGuard<'a>(&'a Inner);

impl<'a> OpenGuard<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.open.fetch_add(1, Ordering::AcqRel);
        Self(inner)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
}

/// A stream that notes when it last moved a byte (microseconds since the tunnel started).
struct Active<S> {
    inner: S,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl<S> Active<S> {
    fn new(inner: S, last: Arc<AtomicU64>, start: Instant) -> Self {
        Self { inner, last, start }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn bytes_flow_both_ways_and_are_counted() {
        let tunnels = Tunnels::new(Duration::from_secs(60));
        let (client, proxy_a) = tokio::io::duplex(64);
        let (proxy_b, server) = tokio::io::duplex(64);
        let run = tokio::spawn({
            let t = tunnels.clone();
            async move { t.run(proxy_a, proxy_b).await }
        });
        let (mut client, mut server) = (client, server);
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(b"pong!").await.unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong!");
        drop(client);
        drop(server);
        let bytes = run.await.unwrap().unwrap();
        assert_eq!(
            bytes,
            TunnelBytes {
                sent: 4,
                received: 5
            }
        );
        assert_eq!(tunnels.open(), 0);
    }

    #[tokio::test]
    async fn an_idle_tunnel_is_closed() {
        let tunnels = Tunnels::new(Duration::from_millis(50));
        let (_client, a) = tokio::io::duplex(64);
        let (b, _server) = tokio::io::duplex(64);
        let started = Instant::now();
        let err = tunnels.run(a, b).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn shutdown_waits_then_closes_what_is_left() {
        let tunnels = Tunnels::new(Duration::from_secs(60));
        let (_client, a) = tokio::io::duplex(64);
        let (b, _server) = tokio::io::duplex(64);
        let run = tokio::spawn({
            let t = tunnels.clone();
            async move { t.run(a, b).await }
        });
        while tunnels.open() == 0 {
            tokio::task::yield_now().await;
        }
        tunnels.shutdown(Duration::from_millis(20)).await;
        assert!(run.await.unwrap().is_err());
        assert_eq!(tunnels.open(), 0);
    }
}
