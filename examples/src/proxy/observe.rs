//! Body wrappers for observing layers (metrics, access log): count bytes as they stream and
//! learn when a response is over, without buffering anything; and their shared response
//! future, [`Observed`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A request body that adds the bytes of its data frames to a shared counter.
    #[derive(Debug)]
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        counter: Arc<AtomicU64>,
    }
}

impl<B> CountedBody<B> {
    /// Wraps `inner`, counting into `counter`.
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Self { inner, counter }
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counter
                    .fetch_add(data.remaining() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Read to the end.
    Complete,
    /// The body returned an error.
    Error,
    /// Dropped before the end (the client went away).
    Dropped,
}

/// Called once when a response body is over, with the bytes sent and how it ended.
pub type OnDone = Box<dyn FnOnce(u64, BodyEnd) + Send>;

/// Runs the callback exactly once: at the end, on error, or on drop.
struct Finisher {
    bytes: u64,
    /// The body was empty from the start: servers may drop it unpolled, which is not a
    /// client going away.
    empty: bool,
    done: Option<OnDone>,
}

impl Finisher {
    fn finish(&mut self, end: BodyEnd) {
        if let Some(done) = self.done.take() {
            done(self.bytes, end);
        }
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        let end = if self.empty {
            BodyEnd::Complete
        } else {
            BodyEnd::Dropped
        };
        self.finish(end);
    }
}

impl std::fmt::Debug for Finisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finisher")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A response body that counts its bytes and reports when it is over (see [`OnDone`]).
    #[derive(Debug)]
    pub struct DoneBody<B> {
        #[pin]
        inner: B,
        finisher: Finisher,
    }
}

impl<B: Body> DoneBody<B> {
    /// Wraps `inner`; `done` runs once. A body that is empty from the start (which servers
    /// drop without polling) reports [`BodyEnd::Complete`] when dropped.
    pub fn new(inner: B, done: OnDone) -> Self {
        let empty = inner.is_end_stream();
        Self {
            inner,
            finisher: Finisher {
                bytes: 0,
                empty,
                done: Some(done),
            },
        }
    }
}

impl<B: Body> Body for DoneBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.finisher.bytes += data.remaining() as u64;
                }
                // Servers stop polling once a body says it has ended (a `Full` after its
                // one frame): that is the end, not a client going away.
                if this.inner.is_end_stream() {
                    this.finisher.finish(BodyEnd::Complete);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finisher.finish(BodyEnd::Error),
            Poll::Ready(None) => this.finisher.finish(BodyEnd::Complete),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use std::sync::Mutex;

    #[tokio::test]
    async fn done_runs_once_with_the_byte_count() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let body = DoneBody::new(
            Full::new(Bytes::from_static(b"hello")),
            Box::new(move |n, end| s.lock().unwrap().push((n, end))),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 5);
        assert_eq!(*seen.lock().unwrap(), vec![(5, BodyEnd::Complete)]);
    }

    #[test]
    fn an_empty_body_dropped_unpolled_is_complete() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        drop(DoneBody::new(
            Full::new(Bytes::new()),
            Box::new(move |n, end| s.lock().unwrap().push((n, end))),
        ));
        assert_eq!(*seen.lock().unwrap(), vec![(0, BodyEnd::Complete)]);
    }

    #[tokio::test]
    async fn a_body_that_says_it_ended_is_complete_when_dropped_after_its_last_frame() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut body = DoneBody::new(
            Full::new(Bytes::from_static(b"abc")),
            Box::new(move |n, end| s.lock().unwrap().push((n, end))),
        );
        let _ = body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(*seen.lock().unwrap(), vec![(3, BodyEnd::Complete)]);
    }

    #[test]
    fn dropping_early_reports_dropped() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        drop(DoneBody::new(
            Full::new(Bytes::from_static(b"x")),
            Box::new(move |n, end| s.lock().unwrap().push((n, end))),
        ));
        assert_eq!(*seen.lock().unwrap(), vec![(0, BodyEnd::Dropped)]);
    }

    #[tokio::test]
    async fn counted_body_counts_request_bytes() {
        let counter = Arc::new(AtomicU64::new(0));
        let body = CountedBody::new(Full::new(Bytes::from_static(b"abc")), counter.clone());
        let _ = body.collect().await.unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    }
}

/// What an observing layer keeps for one request until its response is over.
pub(crate) trait Observation {
    /// The response head arrived: the returned callback runs once its body is over.
    fn on_response(self, head: &http::response::Parts) -> OnDone;
    /// The inner service failed without a response.
    fn on_error(self);
}

pin_project! {
    /// The response future the observing layers share: hands the response body to
    /// [`DoneBody`] with the observation's callback, or reports the inner service's error.
    #[derive(Debug)]
    pub(crate) struct Observed<F, O> {
        #[pin]
        inner: F,
        observation: Option<O>,
    }
}

impl<F, O> Observed<F, O> {
    /// Observes `inner`'s response with `observation`.
    pub(crate) fn new(inner: F, observation: O) -> Self {
        Self {
            inner,
            observation: Some(observation),
        }
    }
}

impl<F, RB, E, O> Future for Observed<F, O>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Body,
    O: Observation,
{
    type Output = Result<Response<DoneBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(observation) = this.observation.take() else {
            // Polled after completion: the inner future decides what that means.
            return Poll::Pending;
        };
        Poll::Ready(match result {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let done = observation.on_response(&parts);
                Ok(Response::from_parts(parts, DoneBody::new(body, done)))
            }
            Err(e) => {
                observation.on_error();
                Err(e)
            }
        })
    }
}
