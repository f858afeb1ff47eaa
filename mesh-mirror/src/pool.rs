//! Connection-pool limits of one cluster (Envoy's circuit breakers): requests beyond them are
//! refused at once, never queued without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::destination_rule::ConnectionPool;

/// Why a request was refused by the pool limits (answered 503 with `x-envoy-overloaded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream connection pool overflow")]
pub struct Overflow;

/// Admission control for one cluster.
///
/// - HTTP/1.1: one request per connection, so `maxConnections` bounds requests in flight;
///   up to `http1MaxPendingRequests` more wait for a connection to free up, and the rest are
///   refused at once.
/// - HTTP/2: `http2MaxRequests` bounds requests in flight (multiplexed), the rest are
///   refused at once.
///
/// Limits at Istio's defaults (2^32 - 1) cost nothing: no semaphore is created.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    connections: Option<Arc<Semaphore>>,
    pending: Option<Arc<Pending>>,
    requests: Option<Arc<Semaphore>>,
}

#[derive(Debug)]
struct Pending {
    max: u32,
    now: AtomicU32,
}

/// What an admitted request holds until it is finished; dropping it frees the slot.
#[derive(Debug)]
pub struct PoolPermit {
    _connection: Option<OwnedSemaphorePermit>,
    _request: Option<OwnedSemaphorePermit>,
}

fn limit(n: u32) -> Option<Arc<Semaphore>> {
    // Semaphore::MAX_PERMITS is far above u32::MAX on 64-bit targets.
    (n != u32::MAX).then(|| Arc::new(Semaphore::new(n as usize)))
}

impl PoolLimits {
    /// Limits from a `connectionPool` policy.
    pub fn new(pool: &ConnectionPool) -> Self {
        Self {
            connections: limit(pool.max_connections),
            pending: (pool.http1_max_pending_requests != u32::MAX).then(|| {
                Arc::new(Pending {
                    max: pool.http1_max_pending_requests,
                    now: AtomicU32::new(0),
                })
            }),
            requests: limit(pool.http2_max_requests),
        }
    }

    /// Admits a request: immediately, after waiting in the bounded pending queue (HTTP/1.1),
    /// or not at all.
    pub async fn acquire(&self, http2: bool) -> Result<PoolPermit, Overflow> {
        let request = match &self.requests {
            None => None,
            Some(s) => Some(s.clone().try_acquire_owned().map_err(|_| Overflow)?),
        };
        let connection = match (&self.connections, http2) {
            (Some(s), false) => Some(self.connection(s).await?),
            _ => None,
        };
        Ok(PoolPermit {
            _connection: connection,
            _request: request,
        })
    }

    async fn connection(&self, s: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Overflow> {
        if let Ok(p) = s.clone().try_acquire_owned() {
            return Ok(p);
        }
        let Some(pending) = &self.pending else {
            // Unlimited pending requests: wait as Envoy's default (2^32 - 1) does.
            return s.clone().acquire_owned().await.map_err(|_| Overflow);
        };
        let admitted = pending
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < pending.max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return Err(Overflow);
        }
        let permit = s.clone().acquire_owned().await;
        pending.now.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(conns: u32, pending: u32, requests: u32) -> PoolLimits {
        PoolLimits::new(&ConnectionPool {
            max_connections: conns,
            http1_max_pending_requests: pending,
            http2_max_requests: requests,
            ..ConnectionPool::default()
        })
    }

    #[tokio::test]
    async fn http1_overflow_beyond_connections_and_pending_is_refused_at_once() {
        let p = pool(1, 0, u32::MAX);
        let held = p.acquire(false).await.unwrap();
        assert_eq!(p.acquire(false).await.unwrap_err(), Overflow);
        drop(held);
        assert!(p.acquire(false).await.is_ok());
    }

    #[tokio::test]
    async fn pending_requests_wait_for_a_connection() {
        let p = pool(1, 1, u32::MAX);
        let held = p.acquire(false).await.unwrap();
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.acquire(false).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            p.acquire(false).await.unwrap_err(),
            Overflow,
            "queue of one is full"
        );
        drop(held);
        assert_eq!(waiting.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn http2_requests_are_bounded_by_max_requests() {
        let p = pool(1, 0, 2);
        let _a = p.acquire(true).await.unwrap();
        let _b = p.acquire(true).await.unwrap();
        assert_eq!(p.acquire(true).await.unwrap_err(), Overflow);
    }
}
