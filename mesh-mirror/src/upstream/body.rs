//! The upstream's response body: the endpoint's, holding the request's pool slot and
//! in-flight count until it ends, or a local reply.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use super::Inflight;
use super::client::Checkin;

/// Body of a response from [`Upstream`](crate::Upstream).
#[derive(Debug)]
pub struct UpstreamBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Remote {
        body: Incoming,
        /// Released at the end of the stream, or when the body is dropped.
        inflight: Option<Inflight>,
        /// The HTTP/1.1 connection, given back to its pool once the body has ended.
        checkin: Option<Checkin>,
    },
    Local(Full<Bytes>),
}

impl UpstreamBody {
    pub(super) fn remote(body: Incoming, inflight: Inflight, checkin: Option<Checkin>) -> Self {
        Self {
            kind: Kind::Remote {
                body,
                inflight: Some(inflight),
                checkin,
            },
        }
    }

    pub(super) fn local(text: &'static str) -> Self {
        Self {
            kind: Kind::Local(Full::new(Bytes::from_static(text.as_bytes()))),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Kind::Remote {
                body,
                inflight,
                checkin,
            } => {
                let polled = Pin::new(body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        inflight.take();
                        if let Some(c) = checkin.take() {
                            c.give_back();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        inflight.take();
                        checkin.take();
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(full) => full.is_end_stream(),
            Kind::Remote { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(full) => full.size_hint(),
            Kind::Remote { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body that ended without being read to its end (empty, or HEAD) still frees its
        // connection for the next request; one dropped midway closes it.
        if let Kind::Remote { body, checkin, .. } = &mut self.kind {
            if body.is_end_stream() {
                if let Some(c) = checkin.take() {
                    c.give_back();
                }
            }
        }
    }
}
