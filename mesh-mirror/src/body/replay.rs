//! A request body that streams on its first try and can be sent again, for retries, within a
//! byte bound.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// The body sent on each try of a request going through [`RetryService`](crate::RetryService).
///
/// The first try streams the original body as it arrives (a gRPC stream or a long upload is
/// never held back) while a copy of what passed is kept, up to a byte bound. A retry replays
/// the copy from the start and then goes on reading the original where the first try left
/// it. Once more than the bound has passed, the copy is dropped and the request can no longer
/// be retried ([`is_replayable`](Self::is_replayable) turns false): it is never cut or failed
/// for being large.
#[derive(Debug)]
pub struct ReplayBody<B> {
    kind: Kind<B>,
}

#[derive(Debug)]
enum Kind<B> {
    /// The body had ended before the first try: nothing to send, nothing to share.
    Empty,
    /// Retries are off for this request: the body as it is.
    Once(B),
    /// One try's view of the shared body.
    Shared(Reader<B>),
}

#[derive(Debug)]
struct Reader<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// Chunks of the copy this try has sent.
    replayed: usize,
    /// The original body while this try reads it (given back when the try is dropped).
    source: Option<B>,
    trailers_sent: bool,
}

#[derive(Debug)]
struct Shared<B> {
    /// The original body when no try holds it.
    source: Option<B>,
    /// What has been read so far, unless it outgrew `limit`.
    copy: Vec<Bytes>,
    copied: u64,
    limit: u64,
    overflowed: bool,
    /// The original body ended (data and trailers read).
    ended: bool,
    trailers: Option<HeaderMap>,
    /// A try waiting for the original body to be given back.
    waiting: Option<Waker>,
}

impl<B> ReplayBody<B> {
    /// Sends `body` once, unbuffered (retries are off for this request).
    pub(crate) fn once(body: B) -> Self {
        Self {
            kind: Kind::Once(body),
        }
    }

    /// Shares `body` between tries, keeping up to `limit` bytes for replay.
    pub(crate) fn shared(body: B, limit: u64) -> Self
    where
        B: Body,
    {
        if body.is_end_stream() {
            return Self { kind: Kind::Empty };
        }
        let shared = Shared {
            source: Some(body),
            copy: Vec::new(),
            copied: 0,
            limit,
            overflowed: false,
            ended: false,
            trailers: None,
            waiting: None,
        };
        Self {
            kind: Kind::Shared(Reader::new(Arc::new(Mutex::new(shared)))),
        }
    }

    /// Whether the body can still be sent again from the start: it is within the bound, and
    /// either it was read to its end or no try is holding the original right now.
    pub fn is_replayable(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Once(_) => false,
            Kind::Shared(r) => {
                let s = r.lock();
                !s.overflowed && (s.ended || s.source.is_some() || r.source.is_some())
            }
        }
    }

    /// A fresh copy from the start, for another try, when the body is still within the bound.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(Self { kind: Kind::Empty }),
            Kind::Once(_) => None,
            Kind::Shared(r) => (!r.lock().overflowed).then(|| Self {
                kind: Kind::Shared(Reader::new(r.shared.clone())),
            }),
        }
    }
}

impl<B> Reader<B> {
    fn new(shared: Arc<Mutex<Shared<B>>>) -> Self {
        Self {
            shared,
            replayed: 0,
            source: None,
            trailers_sent: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared<B>> {
        lock(&self.shared)
    }
}

fn lock<B>(shared: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> Drop for Reader<B> {
    fn drop(&mut self) {
        if let Some(source) = self.source.take() {
            let mut s = self.lock();
            s.source = Some(source);
            if let Some(w) = s.waiting.take() {
                w.wake();
            }
        }
    }
}

impl<B: Body + Unpin> Reader<B> {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if self.source.is_none() {
            let mut s = lock(&self.shared);
            if let Some(chunk) = s.copy.get(self.replayed).cloned() {
                self.replayed += 1;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if s.ended {
                if self.trailers_sent {
                    return Poll::Ready(None);
                }
                self.trailers_sent = true;
                return Poll::Ready(s.trailers.clone().map(|t| Ok(Frame::trailers(t))));
            }
            if s.overflowed && self.replayed > 0 {
                // The copy this try was replaying is gone: it cannot go on.
                return Poll::Ready(None);
            }
            match s.source.take() {
                Some(source) => self.source = Some(source),
                None => {
                    // An earlier try still holds the original; it gives it back when dropped.
                    s.waiting = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        let Some(source) = self.source.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(source).poll_frame(cx));
        let mut s = lock(&self.shared);
        match frame {
            None => {
                s.ended = true;
                Poll::Ready(None)
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    let chunk = data.copy_to_bytes(data.remaining());
                    if !s.overflowed {
                        s.copied += chunk.len() as u64;
                        if s.copied > s.limit {
                            s.overflowed = true;
                            s.copy = Vec::new();
                        } else {
                            s.copy.push(chunk.clone());
                            self.replayed = s.copy.len();
                        }
                    }
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                Err(frame) => {
                    if let Some(t) = frame.trailers_ref() {
                        s.trailers = Some(t.clone());
                        self.trailers_sent = true;
                    }
                    Poll::Ready(Some(Ok(
                        frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                    )))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.lock();
        if self.replayed < s.copy.len() {
            return false;
        }
        if s.ended {
            return self.trailers_sent || s.trailers.is_none();
        }
        match (&self.source, &s.source) {
            (Some(b), _) | (None, Some(b)) => b.is_end_stream(),
            (None, None) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let s = self.lock();
        let replay: u64 = s
            .copy
            .iter()
            .skip(self.replayed)
            .map(|c| c.len() as u64)
            .sum();
        if s.ended {
            return SizeHint::with_exact(replay);
        }
        let rest = match (&self.source, &s.source) {
            (Some(b), _) | (None, Some(b)) => b.size_hint(),
            (None, None) => SizeHint::new(),
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + replay);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + replay);
        }
        hint
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Once(body) => {
                let frame = std::task::ready!(Pin::new(body).poll_frame(cx));
                Poll::Ready(
                    frame.map(|f| f.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))),
                )
            }
            Kind::Shared(reader) => reader.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Once(body) => body.is_end_stream(),
            Kind::Shared(reader) => reader.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Once(body) => body.size_hint(),
            Kind::Shared(reader) => reader.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Full, StreamBody};
    use std::convert::Infallible;

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = Infallible> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn body_within_the_limit_replays_whole_every_time() {
        let body = ReplayBody::shared(chunks(&["ab", "cd"]), 4);
        let again = body.try_clone().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
        assert!(again.is_replayable());
        let third = again.try_clone().unwrap();
        assert_eq!(again.size_hint().exact(), Some(4));
        assert_eq!(again.collect().await.unwrap().to_bytes(), "abcd");
        assert_eq!(third.collect().await.unwrap().to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn a_retry_replays_the_prefix_then_reads_on() {
        let mut first = ReplayBody::shared(chunks(&["ab", "cd", "ef"]), 100);
        let retry = first.try_clone().unwrap();
        // The first try reads one chunk and fails.
        let chunk = first.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(chunk, "ab");
        drop(first);
        assert!(retry.is_replayable());
        assert_eq!(retry.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn the_first_try_streams_before_the_body_ends() {
        let (mut tx, rx) = futures_channel_like();
        let body = ReplayBody::shared(rx, 100);
        let mut body = body;
        tx.send("one");
        // The chunk is available before the body has ended: nothing is held back.
        let got = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(got, "one");
        drop(tx);
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn body_over_the_limit_is_sent_once_and_unchanged() {
        let body = ReplayBody::shared(chunks(&["ab", "cd", "ef", "gh"]), 3);
        let kept = body.try_clone().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefgh");
        assert!(!kept.is_replayable());
        assert!(kept.try_clone().is_none());
    }

    #[tokio::test]
    async fn a_try_still_holding_the_original_blocks_replay_until_dropped() {
        let mut first = ReplayBody::shared(chunks(&["ab", "cd"]), 100);
        let kept = first.try_clone().unwrap();
        let _ = first.frame().await;
        // The original is in the first try's hands and not read to its end.
        assert!(!kept.is_replayable());
        drop(first);
        assert!(kept.is_replayable());
    }

    #[tokio::test]
    async fn trailers_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = Full::new(Bytes::from_static(b"x"))
            .with_trailers(std::future::ready(Some(Ok(trailers))));
        let body = ReplayBody::shared(body, 10);
        let copy = body.try_clone().unwrap();
        let first = body.collect().await.unwrap();
        assert_eq!(first.trailers().unwrap()["grpc-status"], "0");
        let collected = copy.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), "x");
    }

    #[tokio::test]
    async fn an_ended_body_is_empty_and_always_replayable() {
        let body = ReplayBody::shared(http_body_util::Empty::<Bytes>::new(), 0);
        assert!(body.is_end_stream());
        assert!(body.is_replayable());
        assert!(body.try_clone().unwrap().is_end_stream());
    }

    /// A body fed chunk by chunk from the test.
    struct Feed(tokio::sync::mpsc::UnboundedReceiver<Bytes>);
    struct FeedTx(tokio::sync::mpsc::UnboundedSender<Bytes>);
    impl FeedTx {
        fn send(&mut self, s: &'static str) {
            self.0.send(Bytes::from_static(s.as_bytes())).unwrap();
        }
    }
    fn futures_channel_like() -> (FeedTx, Feed) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (FeedTx(tx), Feed(rx))
    }
    impl Body for Feed {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
        }
    }
}
