//! A request body that can be sent more than once, for retries, within a byte bound.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// The body sent on each try of a request going through [`RetryService`](crate::RetryService).
///
/// A body that fit in the buffer limit is held whole and replayed from the start on every try.
/// A larger one is sent once: the bytes read while finding out it was too large go first, then
/// the rest of the original body streams through, and the request is not retried.
#[derive(Debug)]
pub struct ReplayBody<B> {
    kind: Kind<B>,
}

#[derive(Debug)]
enum Kind<B> {
    Replay {
        data: Bytes,
        trailers: Option<Arc<HeaderMap>>,
        data_sent: bool,
        trailers_sent: bool,
    },
    Once {
        prefix: VecDeque<Bytes>,
        rest: B,
    },
}

impl<B> ReplayBody<B> {
    fn replay(data: Bytes, trailers: Option<Arc<HeaderMap>>) -> Self {
        Self {
            kind: Kind::Replay {
                data_sent: data.is_empty(),
                data,
                trailers,
                trailers_sent: false,
            },
        }
    }

    /// Whether the body can be sent again (it was held whole).
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Replay { .. })
    }

    /// A fresh copy from the start, when the body is replayable.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Replay { data, trailers, .. } => {
                Some(Self::replay(data.clone(), trailers.clone()))
            }
            Kind::Once { .. } => None,
        }
    }
}

/// Reads a body until it ends or passes a byte limit: the future behind [`ReplayBody`].
#[derive(Debug)]
pub(crate) struct Collect<B> {
    body: Option<B>,
    /// The first chunk apart: most bodies are one chunk, kept without a vector or a copy.
    first: Option<Bytes>,
    more: Vec<Bytes>,
    trailers: Option<Arc<HeaderMap>>,
    read: u64,
    limit: u64,
}

impl<B> Collect<B> {
    pub(crate) fn new(body: B, limit: u64) -> Self {
        Self {
            body: Some(body),
            first: None,
            more: Vec::new(),
            trailers: None,
            read: 0,
            limit,
        }
    }
}

impl<B: Body + Unpin> Future for Collect<B> {
    type Output = Result<ReplayBody<B>, B::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            let Some(body) = this.body.as_mut() else {
                // Polled after completion: nothing left to give.
                return Poll::Ready(Ok(ReplayBody::replay(Bytes::new(), None)));
            };
            if body.is_end_stream() {
                break;
            }
            let Some(frame) = ready!(Pin::new(body).poll_frame(cx)) else {
                break;
            };
            match frame?.into_data() {
                Ok(mut data) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    this.read += bytes.len() as u64;
                    if this.first.is_none() {
                        this.first = Some(bytes);
                    } else {
                        this.more.push(bytes);
                    }
                    if this.read > this.limit {
                        if let Some(rest) = this.body.take() {
                            let more = std::mem::take(&mut this.more);
                            let prefix = this.first.take().into_iter().chain(more).collect();
                            return Poll::Ready(Ok(ReplayBody {
                                kind: Kind::Once { prefix, rest },
                            }));
                        }
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        this.trailers = Some(Arc::new(t));
                    }
                }
            }
        }
        this.body = None;
        let data = concat(this.first.take(), std::mem::take(&mut this.more), this.read);
        Poll::Ready(Ok(ReplayBody::replay(data, this.trailers.take())))
    }
}

/// One buffer for all tries: a single chunk (the common case) is kept as is, without copying.
fn concat(first: Option<Bytes>, more: Vec<Bytes>, len: u64) -> Bytes {
    let Some(first) = first else {
        return Bytes::new();
    };
    if more.is_empty() {
        return first;
    }
    let mut buf = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    buf.extend_from_slice(&first);
    for c in more {
        buf.extend_from_slice(&c);
    }
    buf.freeze()
}

impl<B> ReplayBody<B>
where
    B: Body + Unpin,
{
    /// Sends `body` once, unbuffered (retries are off for this request).
    pub(crate) fn once(body: B) -> Self {
        Self {
            kind: Kind::Once {
                prefix: VecDeque::new(),
                rest: body,
            },
        }
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
            Kind::Replay {
                data,
                trailers,
                data_sent,
                trailers_sent,
            } => {
                if !*data_sent {
                    *data_sent = true;
                    return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                }
                if !*trailers_sent {
                    *trailers_sent = true;
                    if let Some(t) = trailers {
                        return Poll::Ready(Some(Ok(Frame::trailers(HeaderMap::clone(t)))));
                    }
                }
                Poll::Ready(None)
            }
            Kind::Once { prefix, rest } => {
                if let Some(chunk) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                let frame = ready!(Pin::new(rest).poll_frame(cx));
                Poll::Ready(
                    frame.map(|f| f.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))),
                )
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Replay {
                data_sent,
                trailers,
                trailers_sent,
                ..
            } => *data_sent && (trailers.is_none() || *trailers_sent),
            Kind::Once { prefix, rest } => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Replay {
                data, data_sent, ..
            } => SizeHint::with_exact(if *data_sent { 0 } else { data.len() as u64 }),
            Kind::Once { prefix, rest } => {
                let buffered: u64 = prefix.iter().map(|c| c.len() as u64).sum();
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + buffered);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Full, StreamBody};
    use std::convert::Infallible;

    async fn collect<B: Body + Unpin>(body: B, limit: u64) -> Result<ReplayBody<B>, B::Error> {
        Collect::new(body, limit).await
    }

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = Infallible> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn body_within_the_limit_replays_whole_every_time() {
        let body = collect(chunks(&["ab", "cd"]), 4).await.unwrap();
        assert!(body.is_replayable());
        let again = body.try_clone().unwrap();
        assert_eq!(body.size_hint().exact(), Some(4));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
        assert_eq!(again.collect().await.unwrap().to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn body_over_the_limit_is_sent_once_and_unchanged() {
        let body = collect(chunks(&["ab", "cd", "ef", "gh"]), 3).await.unwrap();
        assert!(!body.is_replayable());
        assert!(body.try_clone().is_none());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefgh");
    }

    #[tokio::test]
    async fn trailers_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = Full::new(Bytes::from_static(b"x"))
            .with_trailers(std::future::ready(Some(Ok(trailers))));
        let body = collect(body, 10).await.unwrap();
        let copy = body.try_clone().unwrap();
        let collected = copy.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    }
}
