//! The upstream's response body: the endpoint's, holding the request's pool slot and
//! in-flight count until it ends, or a local reply.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use super::Inflight;

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
    },
    Local(Full<Bytes>),
}

impl UpstreamBody {
    pub(super) fn remote(body: Incoming, inflight: Inflight) -> Self {
        Self {
            kind: Kind::Remote {
                body,
                inflight: Some(inflight),
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
            Kind::Remote { body, inflight } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    inflight.take();
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
