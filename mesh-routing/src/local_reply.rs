//! Responses the proxy builds itself (local replies): plain statuses, fault aborts and
//! redirects from routing, and the [`LocalReply`] mark every crate puts on its own answers,
//! so that observers can read the response flag and gRPC callers get a gRPC answer
//! ([`GrpcLocalReplyLayer`]).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use crate::action::{AbortKind, Redirect, RedirectPort};
use crate::host::host_without_port;

/// The mark of a response the proxy answered itself rather than the upstream, carried in the
/// response's extensions: Envoy's response flag for access logs and metrics, and the text
/// that a gRPC caller gets as `grpc-message` when [`GrpcLocalReplyLayer`] turns the reply
/// into a gRPC one.
///
/// ```
/// use mesh_routing::LocalReply;
/// let resp = LocalReply::new("UH", "no healthy upstream").response(http::StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(resp.status(), 503);
/// assert_eq!(resp.headers()["content-type"], "text/plain");
/// assert_eq!(resp.extensions().get::<LocalReply>().unwrap().flag(), "UH");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    flag: &'static str,
    message: Cow<'static, str>,
    grpc_status: Option<u8>,
}

impl LocalReply {
    /// A local reply with Envoy response flag `flag` (`NR`, `UH`, `UF`, ...; empty for none)
    /// and body text `message`.
    pub fn new(flag: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            flag,
            message: message.into(),
            grpc_status: None,
        }
    }

    /// Answers gRPC callers with this `grpc-status` instead of the one mapped from the HTTP
    /// status.
    pub fn with_grpc_status(mut self, code: u8) -> Self {
        self.grpc_status = Some(code);
        self
    }

    /// The Envoy response flag (empty: none).
    pub fn flag(&self) -> &'static str {
        self.flag
    }

    /// The body text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response: `status`, the message as a `text/plain` body (no content type when
    /// empty), and this mark in its extensions.
    pub fn response(self, status: StatusCode) -> Response<Full<Bytes>> {
        let body = match &self.message {
            Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
            Cow::Owned(s) => Bytes::copy_from_slice(s.as_bytes()),
        };
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        if !self.message.is_empty() {
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        r.extensions_mut().insert(self);
        r
    }

    /// Marks `resp` as a local reply without changing it.
    pub fn mark<B>(self, mut resp: Response<B>) -> Response<B> {
        resp.extensions_mut().insert(self);
        resp
    }
}

/// Whether a request is gRPC: `content-type` `application/grpc` or `application/grpc+...`,
/// as Envoy decides (`application/grpc-web` is not).
///
/// ```
/// let mut h = http::HeaderMap::new();
/// h.insert("content-type", "application/grpc+proto".parse().unwrap());
/// assert!(mesh_routing::is_grpc(&h));
/// h.insert("content-type", "application/grpc-web".parse().unwrap());
/// assert!(!mesh_routing::is_grpc(&h));
/// ```
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    let Some(rest) = ct.strip_prefix(b"application/grpc") else {
        return false;
    };
    rest.is_empty() || rest[0] == b'+'
}

/// The gRPC status a local reply with HTTP `status` carries, as Envoy maps them (and as
/// gRPC's HTTP-to-gRPC status mapping document says): 400 INTERNAL, 401 UNAUTHENTICATED,
/// 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, anything else
/// UNKNOWN.
pub fn grpc_status_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// `grpc-message` encoding (gRPC's HTTP/2 protocol document): bytes outside printable ASCII,
/// and `%`, percent-encoded.
fn grpc_message(text: &str) -> Option<HeaderValue> {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(b'~');
    let encoded: Cow<'_, str> = percent_encoding::utf8_percent_encode(text, SET).into();
    HeaderValue::from_str(&encoded).ok()
}

/// Rewrites a [`LocalReply`] into a gRPC trailers-only response, as Envoy does for gRPC
/// requests: HTTP 200, `content-type: application/grpc`, `grpc-status` (the reply's own, or
/// [`grpc_status_for`] its HTTP status) and `grpc-message` (its text, when not empty and the
/// request was not `HEAD`), no body. Other headers (`x-envoy-overloaded`,
/// `www-authenticate`, ...) stay. A response without the mark is returned as it is.
pub fn grpc_local_reply<B: Default>(resp: Response<B>, head: bool) -> Response<B> {
    let Some(reply) = resp.extensions().get::<LocalReply>() else {
        return resp;
    };
    let code = reply
        .grpc_status
        .unwrap_or_else(|| grpc_status_for(resp.status()));
    let message = (!head && !reply.message.is_empty())
        .then(|| grpc_message(&reply.message))
        .flatten();
    let (mut parts, _body) = resp.into_parts();
    parts.status = StatusCode::OK;
    let h = &mut parts.headers;
    h.remove(header::CONTENT_LENGTH);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    match message {
        Some(m) => h.insert("grpc-message", m),
        None => h.remove("grpc-message"),
    };
    Response::from_parts(parts, B::default())
}

/// Answers gRPC requests' local replies the gRPC way ([`grpc_local_reply`]): put it outermost
/// in a proxy stack, outside every layer that may answer by itself ([`RouteLayer`]'s 404s,
/// redirects and direct responses, mesh-mirror's 503s and 504s, ...), so a gRPC client sees
/// `grpc-status` instead of a bare HTTP error.
///
/// ```
/// use std::convert::Infallible;
/// use mesh_routing::{GrpcLocalReplyLayer, LocalReply};
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = GrpcLocalReplyLayer.layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, Infallible>(LocalReply::new("UH", "no healthy upstream")
///         .response(http::StatusCode::SERVICE_UNAVAILABLE))
/// }));
/// let req = http::Request::post("/pkg.Svc/Call").header("content-type", "application/grpc");
/// let resp = svc.oneshot(req.body(()).unwrap()).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.headers()["grpc-status"], "14");
/// assert_eq!(resp.headers()["grpc-message"], "no healthy upstream");
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through; `call` reads one header.
///
/// [`RouteLayer`]: crate::RouteLayer
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcLocalReplyLayer;

impl<S> Layer<S> for GrpcLocalReplyLayer {
    type Service = GrpcLocalReply<S>;
    fn layer(&self, inner: S) -> GrpcLocalReply<S> {
        GrpcLocalReply { inner }
    }
}

/// The service of [`GrpcLocalReplyLayer`].
#[derive(Debug, Clone)]
pub struct GrpcLocalReply<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for GrpcLocalReply<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = GrpcLocalReplyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let grpc = match is_grpc(req.headers()) {
            false => None,
            true => Some(req.method() == http::Method::HEAD),
        };
        GrpcLocalReplyFuture {
            inner: self.inner.call(req),
            grpc,
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`GrpcLocalReply`].
    pub struct GrpcLocalReplyFuture<F> {
        #[pin]
        inner: F,
        // Some(is HEAD) for gRPC requests.
        grpc: Option<bool>,
    }
}

impl<F, RB, E> Future for GrpcLocalReplyFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(match *this.grpc {
            Some(head) => grpc_local_reply(resp, head),
            None => resp,
        }))
    }
}

pin_project_lite::pin_project! {
    /// The future of a filter that refuses some requests before calling its inner service:
    /// the inner response, or for a refused request an empty-bodied local reply (status and
    /// response flag chosen by the filter), without changing the body type.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_routing::{LocalReply, RefusedOr};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let passed: RefusedOr<_> = RefusedOr::inner(async { Ok::<_, Infallible>(http::Response::new(String::from("hi"))) });
    /// assert_eq!(passed.await.unwrap().into_body(), "hi");
    /// let refused = RefusedOr::<std::future::Ready<Result<http::Response<String>, Infallible>>>::refused(http::StatusCode::BAD_REQUEST, "DPE");
    /// let resp = refused.await.unwrap();
    /// assert_eq!(resp.status(), 400);
    /// assert_eq!(resp.extensions().get::<LocalReply>().unwrap().flag(), "DPE");
    /// # }
    /// ```
    pub struct RefusedOr<F> {
        #[pin]
        inner: Option<F>,
        status: StatusCode,
        flag: &'static str,
    }
}

impl<F> RefusedOr<F> {
    /// The inner service's future.
    pub fn inner(fut: F) -> Self {
        Self {
            inner: Some(fut),
            status: StatusCode::OK,
            flag: "",
        }
    }

    /// A refusal: `status`, an empty body, marked as a [`LocalReply`] with Envoy's `flag`.
    pub fn refused(status: StatusCode, flag: &'static str) -> Self {
        Self {
            inner: None,
            status,
            flag,
        }
    }
}

impl<F, RB, E> Future for RefusedOr<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            None => {
                let mut resp = Response::new(RB::default());
                *resp.status_mut() = *this.status;
                Poll::Ready(Ok(LocalReply::new(this.flag, "").mark(resp)))
            }
        }
    }
}

pub(crate) fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

pub(crate) fn with_headers(
    mut resp: Response<Full<Bytes>>,
    headers: HeaderMap,
) -> Response<Full<Bytes>> {
    resp.headers_mut().extend(headers);
    resp
}

pub(crate) fn abort_response(kind: AbortKind) -> Response<Full<Bytes>> {
    match kind {
        AbortKind::Http(code) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"fault filter abort")));
            *r.status_mut() = code;
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            LocalReply::new("FI", "fault filter abort").mark(r)
        }
        AbortKind::Grpc(code) => {
            let mut r = status(StatusCode::OK);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from(u16::from(code)));
            r.headers_mut().insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
            LocalReply::new("FI", "fault filter abort")
                .with_grpc_status(code)
                .mark(r)
        }
    }
}

pub(crate) fn redirect_response(
    r: &Redirect,
    scheme: &str,
    uri: &Uri,
    headers: &HeaderMap,
    request_port: Option<u16>,
) -> Response<Full<Bytes>> {
    let authority = crate::authority::authority_of(uri, headers).unwrap_or("");
    let scheme = r.scheme.as_deref().unwrap_or(scheme);
    let authority = r.authority.as_deref().unwrap_or(authority);
    let host = host_without_port(authority);
    let default_port = if scheme == "https" { 443 } else { 80 };
    let authority = match r.port {
        RedirectPort::Keep if r.scheme.is_some() && r.authority.is_none() => host.to_string(),
        RedirectPort::Keep => authority.to_string(),
        RedirectPort::FromProtocolDefault => host.to_string(),
        RedirectPort::Fixed(p) if p == default_port => host.to_string(),
        RedirectPort::Fixed(p) => format!("{host}:{p}"),
        RedirectPort::FromRequestPort => match request_port {
            Some(p) if p != default_port => format!("{host}:{p}"),
            _ => host.to_string(),
        },
    };
    let path_and_query = match &r.uri {
        Some(u) if u.contains('?') => u.clone(),
        Some(u) => match uri.query() {
            Some(q) => format!("{u}?{q}"),
            None => u.clone(),
        },
        None => uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    };
    let mut resp = LocalReply::new("", "").response(r.code);
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{authority}{path_and_query}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_grpc_codes_as_envoy_does() {
        let table = [
            (400, 13),
            (401, 16),
            (403, 7),
            (404, 12),
            (429, 14),
            (502, 14),
            (503, 14),
            (504, 14),
            (500, 2),
            (301, 2),
            (413, 2),
        ];
        for (http, grpc) in table {
            assert_eq!(
                grpc_status_for(StatusCode::from_u16(http).unwrap()),
                grpc,
                "{http}"
            );
        }
    }

    #[test]
    fn grpc_reply_is_trailers_only_with_encoded_message() {
        let resp =
            LocalReply::new("UF", "reset: 100% über").response(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = resp;
        resp.headers_mut()
            .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        let g = grpc_local_reply(resp, false);
        assert_eq!(g.status(), 200);
        assert_eq!(g.headers()["content-type"], "application/grpc");
        assert_eq!(g.headers()["grpc-status"], "14");
        assert_eq!(g.headers()["grpc-message"], "reset: 100%25 %C3%BCber");
        assert_eq!(g.headers()["x-envoy-overloaded"], "true");
        assert!(http_body::Body::is_end_stream(g.body()));
    }

    #[test]
    fn empty_messages_and_head_requests_get_no_grpc_message() {
        let g = grpc_local_reply(
            LocalReply::new("NR", "").response(StatusCode::NOT_FOUND),
            false,
        );
        assert_eq!(g.headers()["grpc-status"], "12");
        assert!(!g.headers().contains_key("grpc-message"));
        let g = grpc_local_reply(
            LocalReply::new("UH", "x").response(StatusCode::SERVICE_UNAVAILABLE),
            true,
        );
        assert!(!g.headers().contains_key("grpc-message"));
    }

    #[test]
    fn an_explicit_grpc_status_wins_and_unmarked_responses_pass() {
        let reply = LocalReply::new("", "downstream duration timeout").with_grpc_status(4);
        let g = grpc_local_reply(reply.response(StatusCode::REQUEST_TIMEOUT), false);
        assert_eq!(g.headers()["grpc-status"], "4");
        let upstream: Response<Full<Bytes>> = Response::builder()
            .status(503)
            .body(Full::default())
            .unwrap();
        assert_eq!(grpc_local_reply(upstream, false).status(), 503);
    }

    #[test]
    fn grpc_content_types_are_recognised_as_envoy_does() {
        let check = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            is_grpc(&h)
        };
        assert!(check("application/grpc"));
        assert!(check("application/grpc+json"));
        assert!(!check("application/grpc-web"));
        assert!(!check("application/grpcx"));
        assert!(!check("text/plain"));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
