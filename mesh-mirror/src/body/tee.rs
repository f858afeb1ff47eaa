//! The tee: the primary's body streams through unchanged while each frame is copied to the
//! mirrors, up to a byte limit.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::counters::{Event, Outcome};

/// What a copy receives.
#[derive(Debug, Clone)]
enum Msg {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    Abort(MirrorBodyError),
}

/// Why a mirror copy's body ended without being complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MirrorBodyError {
    /// The request body exceeded the mirror byte limit; the copy was aborted.
    #[error("request body exceeds the mirror body limit")]
    TooLarge,
    /// The primary's body failed.
    #[error("the primary request body failed")]
    PrimaryFailed,
    /// The primary's body was dropped before its end (the primary stopped reading it).
    #[error("the primary request body ended before it was complete")]
    PrimaryDropped,
}

struct CopyTx {
    tx: mpsc::UnboundedSender<Msg>,
    outcome: Outcome,
}

pin_project_lite::pin_project! {
    /// The primary's request body: the original body, frame for frame, that also feeds the
    /// mirror copies. The primary never waits for a mirror: copies go into unbounded channels
    /// whose total content is bounded by the byte limit, since a copy that would pass the limit
    /// is aborted instead.
    pub struct TeeBody<B> {
        #[pin]
        inner: B,
        copies: Vec<CopyTx>,
        seen: u64,
        limit: u64,
    }
}

/// A mirror's copy of the request body, fed by a [`TeeBody`]. It ends cleanly only when the
/// primary's body did; otherwise it yields a [`MirrorBodyError`] so the mirror request is
/// aborted rather than sent truncated.
#[derive(Debug)]
pub struct MirrorBody {
    rx: mpsc::UnboundedReceiver<Msg>,
    hint: SizeHint,
    done: bool,
}

impl<B> TeeBody<B> {
    /// A body with no copies: the primary's body, untouched.
    pub(crate) fn passthrough(inner: B) -> Self {
        Self {
            inner,
            copies: Vec::new(),
            seen: 0,
            limit: 0,
        }
    }
}

impl<B: Body> TeeBody<B> {
    /// Tees `inner` into one copy per outcome, each aborted once more than `limit` bytes passed.
    pub(crate) fn new(inner: B, limit: u64, outcomes: &[Outcome]) -> (Self, Vec<MirrorBody>) {
        let hint = inner.size_hint();
        let mut bodies = Vec::with_capacity(outcomes.len());
        let copies = outcomes
            .iter()
            .map(|outcome| {
                let (tx, rx) = mpsc::unbounded_channel();
                bodies.push(MirrorBody {
                    rx,
                    hint,
                    done: false,
                });
                CopyTx {
                    tx,
                    outcome: outcome.clone(),
                }
            })
            .collect();
        let mut tee = Self {
            inner,
            copies,
            seen: 0,
            limit,
        };
        if tee.inner.is_end_stream() {
            broadcast_end(&mut tee.copies);
        }
        (tee, bodies)
    }
}

fn broadcast_end(copies: &mut Vec<CopyTx>) {
    for copy in copies.drain(..) {
        let _ = copy.tx.send(Msg::End);
    }
}

fn abort(copies: &mut Vec<CopyTx>, error: MirrorBodyError) {
    for copy in copies.drain(..) {
        if error == MirrorBodyError::TooLarge {
            copy.outcome.settle(Event::DroppedBodyTooLarge);
        }
        let _ = copy.tx.send(Msg::Abort(error));
    }
}

/// Sends to every copy, forgetting those whose mirror is gone (finished or timed out).
fn send_all(copies: &mut Vec<CopyTx>, msg: Msg) {
    copies.retain(|copy| copy.tx.send(msg.clone()).is_ok());
}

impl<B> Body for TeeBody<B>
where
    B: Body,
    B::Data: Clone,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.copies.is_empty() {
            return Poll::Ready(frame);
        }
        match &frame {
            None => broadcast_end(this.copies),
            Some(Err(_)) => abort(this.copies, MirrorBodyError::PrimaryFailed),
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    *this.seen = this.seen.saturating_add(data.remaining() as u64);
                    if *this.seen > *this.limit {
                        abort(this.copies, MirrorBodyError::TooLarge);
                    } else {
                        // For `Bytes` this is a reference count, not a copy of the data.
                        let mut copy = data.clone();
                        let bytes = copy.copy_to_bytes(copy.remaining());
                        send_all(this.copies, Msg::Data(bytes));
                    }
                } else if let Some(trailers) = f.trailers_ref() {
                    send_all(this.copies, Msg::Trailers(trailers.clone()));
                }
                // The primary's reader may stop at `is_end_stream` without polling for `None`.
                if !this.copies.is_empty() && this.inner.is_end_stream() {
                    broadcast_end(this.copies);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body for MirrorBody {
    type Data = Bytes;
    type Error = MirrorBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, MirrorBodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let msg = ready!(self.rx.poll_recv(cx));
        let frame = match msg {
            Some(Msg::Data(bytes)) => Ok(Frame::data(bytes)),
            Some(Msg::Trailers(trailers)) => Ok(Frame::trailers(trailers)),
            Some(Msg::End) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Some(Msg::Abort(e)) => Err(e),
            None => Err(MirrorBodyError::PrimaryDropped),
        };
        if frame.is_err() {
            self.done = true;
        }
        Poll::Ready(Some(frame))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::MirrorCounters;
    use http_body_util::{BodyExt as _, Full, StreamBody};

    fn outcome() -> (MirrorCounters, Outcome) {
        let counters = MirrorCounters::new();
        (counters.clone(), Outcome::new(counters))
    }

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        byte_chunks(parts.iter().map(|p| Bytes::from_static(p.as_bytes())))
    }

    fn byte_chunks(
        parts: impl IntoIterator<Item = Bytes>,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
            parts.into_iter().map(|b| Ok(Frame::data(b))).collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn primary_and_copy_see_the_same_bytes() {
        let (_, o) = outcome();
        let (tee, mut copies) = TeeBody::new(chunks(&["ab", "cd", "ef"]), 100, &[o]);
        let primary = tee.collect().await.unwrap().to_bytes();
        let copy = copies.remove(0).collect().await.unwrap().to_bytes();
        assert_eq!(primary, "abcdef");
        assert_eq!(copy, "abcdef");
    }

    #[tokio::test]
    async fn over_limit_aborts_the_copy_but_not_the_primary() {
        let (counters, o) = outcome();
        let (tee, mut copies) = TeeBody::new(chunks(&["1234", "5678", "9"]), 6, &[o]);
        let primary = tee.collect().await.unwrap().to_bytes();
        assert_eq!(primary, "123456789");
        let copy = copies.remove(0).collect().await;
        assert_eq!(copy.unwrap_err(), MirrorBodyError::TooLarge);
        assert_eq!(counters.snapshot().dropped_body_too_large, 1);
    }

    #[tokio::test]
    async fn an_unread_copy_never_holds_more_than_the_limit() {
        let (_, o) = outcome();
        let parts = std::iter::repeat_n(Bytes::from(vec![b'x'; 1000]), 1000);
        let (tee, mut copies) = TeeBody::new(byte_chunks(parts), 4096, &[o]);
        // The primary reads all 1 MB while the mirror reads nothing.
        assert_eq!(tee.collect().await.unwrap().to_bytes().len(), 1_000_000);
        let mut copy = copies.remove(0);
        let mut queued = 0;
        let end = loop {
            match copy.frame().await {
                Some(Ok(frame)) => queued += frame.into_data().unwrap().len(),
                Some(Err(e)) => break e,
                None => panic!("an over-limit copy must not end cleanly"),
            }
        };
        assert!(queued <= 4096, "{queued} bytes queued for the mirror");
        assert_eq!(end, MirrorBodyError::TooLarge);
    }

    #[tokio::test]
    async fn exactly_at_limit_is_mirrored() {
        let (counters, o) = outcome();
        let (tee, mut copies) = TeeBody::new(Full::new(Bytes::from_static(b"123456")), 6, &[o]);
        assert_eq!(tee.collect().await.unwrap().to_bytes(), "123456");
        assert_eq!(
            copies.remove(0).collect().await.unwrap().to_bytes(),
            "123456"
        );
        assert_eq!(counters.snapshot().dropped_body_too_large, 0);
    }

    #[tokio::test]
    async fn dropping_the_primary_body_early_fails_the_copy() {
        let (_, o) = outcome();
        let (mut tee, mut copies) = TeeBody::new(chunks(&["a", "b"]), 100, &[o]);
        let _first = tee.frame().await;
        drop(tee);
        let copy = copies.remove(0).collect().await;
        assert_eq!(copy.unwrap_err(), MirrorBodyError::PrimaryDropped);
    }

    #[tokio::test]
    async fn empty_body_copy_ends_at_once() {
        let (_, o) = outcome();
        let (_tee, mut copies) = TeeBody::new(http_body_util::Empty::<Bytes>::new(), 10, &[o]);
        let copy = copies.remove(0).collect().await.unwrap().to_bytes();
        assert!(copy.is_empty());
    }
}
