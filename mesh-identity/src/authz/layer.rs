//! A tower layer enforcing AuthorizationPolicies on HTTP requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tower_layer::Layer;
use tower_service::Service;

use super::eval::{Authorizer, Decision};
use super::request::RequestAttrs;

/// The body of a denied request, as Envoy's RBAC filter sends it.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// Answers requests the current [`Authorizer`] denies with 403 `RBAC: access denied`, and
/// passes the others to the inner service. A denied gRPC request (`content-type:
/// application/grpc[+...]`) is answered as Envoy answers it: a trailers-only response, HTTP
/// 200, `grpc-status: 7` (PERMISSION_DENIED) and `grpc-message: RBAC: access denied`.
///
/// The authorizer sits behind an `ArcSwap`: [`AuthorizationLayer::shared`] gives the handle
/// to swap policies at runtime; each request is decided by one whole policy set.
#[derive(Debug, Clone)]
pub struct AuthorizationLayer {
    authorizer: Arc<ArcSwap<Authorizer>>,
}

impl AuthorizationLayer {
    /// A layer enforcing `authorizer`.
    pub fn new(authorizer: Authorizer) -> Self {
        Self::from_shared(Arc::new(ArcSwap::from_pointee(authorizer)))
    }

    /// A layer enforcing whatever authorizer the handle holds at each request.
    pub fn from_shared(authorizer: Arc<ArcSwap<Authorizer>>) -> Self {
        Self { authorizer }
    }

    /// The handle through which policies can be replaced.
    pub fn shared(&self) -> &Arc<ArcSwap<Authorizer>> {
        &self.authorizer
    }
}

impl<S> Layer<S> for AuthorizationLayer {
    type Service = Authorization<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorization {
            inner,
            authorizer: Arc::clone(&self.authorizer),
        }
    }
}

/// Service of [`AuthorizationLayer`].
///
/// `poll_ready` is the inner service's readiness: the service is ready when the inner one is,
/// even though a denied request never reaches it. `call` decides synchronously from request
/// head and extensions (set [`crate::PeerIdentity`] and [`super::ConnectionInfo`] before this
/// layer); the body is never read.
#[derive(Debug, Clone)]
pub struct Authorization<S> {
    inner: S,
    authorizer: Arc<ArcSwap<Authorizer>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authorization<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = AuthorizationFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let attrs = RequestAttrs::from_request(&req);
        match self.authorizer.load().evaluate(&attrs) {
            Decision::Allow { audited } => {
                if !audited.is_empty() {
                    tracing::info!(?audited, path = %attrs.path, "request audited");
                }
                AuthorizationFuture {
                    state: State::Inner {
                        future: self.inner.call(req),
                    },
                }
            }
            Decision::Deny { reason } => {
                tracing::debug!(%reason, path = %attrs.path, "request denied");
                let res = if is_grpc(req.headers()) {
                    grpc_denied()
                } else {
                    let mut res = http::Response::new(ResBody::from(DENIED_BODY));
                    *res.status_mut() = http::StatusCode::FORBIDDEN;
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain"),
                    );
                    res
                };
                AuthorizationFuture {
                    state: State::Denied {
                        response: Some(res),
                    },
                }
            }
        }
    }
}

/// Envoy's gRPC content types (`application/grpc`, `application/grpc+...`).
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().strip_prefix(b"application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'+')
}

/// The trailers-only PERMISSION_DENIED answer to a denied gRPC call.
fn grpc_denied<B: From<&'static str>>() -> http::Response<B> {
    let mut res = http::Response::new(B::from(""));
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", http::HeaderValue::from_static("7"));
    h.insert("grpc-message", http::HeaderValue::from_static(DENIED_BODY));
    res
}

pin_project_lite::pin_project! {
    /// Future of [`Authorization`]: the inner service's response, or the ready 403.
    pub struct AuthorizationFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner { #[pin] future: F },
        Denied { response: Option<http::Response<B>> },
    }
}

impl<F, B, E> Future for AuthorizationFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Denied { response } => match response.take() {
                Some(res) => Poll::Ready(Ok(res)),
                // Polled after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
        }
    }
}
