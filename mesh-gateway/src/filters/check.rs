//! The shared shape of filters that either answer a request locally or pass it on.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::TryFutureExt as _;
use futures_util::future::{Either, MapOk, Ready, ready};
use http::{Request, Response};
use http_body_util::Full;
use tower_service::Service;

use super::FilterBody;

/// A pure per-request check: `Some(response)` answers the request locally instead.
pub trait RequestCheck {
    /// Inspects the request head.
    fn check<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>>;
}

/// Runs a [`RequestCheck`] before the inner service; a rejected request never reaches it.
///
/// # Readiness
/// Passes `poll_ready` through. When a request is rejected, the readiness reserved on the
/// inner service stays for the next call.
#[derive(Debug, Clone)]
pub struct CheckService<S, C> {
    pub(crate) inner: S,
    pub(crate) check: C,
}

type Local<B, E> = Ready<Result<Response<FilterBody<B>>, E>>;
type Forward<F, B> = MapOk<F, fn(Response<B>) -> Response<FilterBody<B>>>;

impl<S, C, B, ResBody> Service<Request<B>> for CheckService<S, C>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    C: RequestCheck,
{
    type Response = Response<FilterBody<ResBody>>;
    type Error = S::Error;
    type Future = Either<Local<ResBody, S::Error>, Forward<S::Future, ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.check.check(&req) {
            Some(resp) => Either::Left(ready(Ok(resp.map(http_body_util::Either::Right)))),
            None => Either::Right(
                self.inner
                    .call(req)
                    .map_ok(|r| r.map(http_body_util::Either::Left)),
            ),
        }
    }
}
