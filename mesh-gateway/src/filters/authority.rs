//! One authority per request, as RFC 9112 and RFC 9113 require, before anything routes by it.

use std::task::{Context, Poll};

use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use mesh_routing::RefusedOr;
use tower_layer::Layer;
use tower_service::Service;

/// Refuses requests whose authority is ambiguous and settles the rest on one value:
///
/// - more than one `Host` header: 400 (RFC 9112 section 3.2);
/// - an HTTP/1.1 request with neither a `Host` header nor an absolute-form target: 400
///   (HTTP/1.0 may omit it);
/// - an absolute-form HTTP/1.1 target whose authority differs from `Host`: the target wins and
///   replaces `Host` (RFC 9112 section 3.2.2), so routing and the upstream see the same host;
/// - an HTTP/2 `Host` that differs from `:authority`: 400 (RFC 9113 section 8.3.1).
///
/// Refusals are local replies (flag `DPE`, a downstream protocol error, as Envoy names it).
///
/// ```
/// use std::convert::Infallible;
/// use mesh_gateway::filters::AuthorityCheckLayer;
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = AuthorityCheckLayer.layer(service_fn(|req: http::Request<()>| async move {
///     Ok::<_, Infallible>(http::Response::new(req.headers()["host"].to_str().unwrap().to_string()))
/// }));
/// let two = http::Request::get("/").header("host", "a").header("host", "b").body(()).unwrap();
/// assert_eq!(svc.clone().oneshot(two).await.unwrap().status(), 400);
/// let abs = http::Request::get("http://a.example/").header("host", "b.example").body(()).unwrap();
/// assert_eq!(svc.oneshot(abs).await.unwrap().into_body(), "a.example");
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorityCheckLayer;

impl<S> Layer<S> for AuthorityCheckLayer {
    type Service = AuthorityCheck<S>;
    fn layer(&self, inner: S) -> AuthorityCheck<S> {
        AuthorityCheck { inner }
    }
}

/// The service of [`AuthorityCheckLayer`].
#[derive(Debug, Clone)]
pub struct AuthorityCheck<S> {
    inner: S,
}

/// Whether the request may go on (its Host settled), else why not.
fn settle<B>(req: &mut Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let Some(authority) = req.uri().authority() else {
        if host.is_none() && req.version() == Version::HTTP_11 {
            return Err("HTTP/1.1 request without Host");
        }
        return Ok(());
    };
    match host {
        Some(h)
            if h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            Ok(())
        }
        Some(_) if req.version() == Version::HTTP_2 => Err("Host differs from :authority"),
        _ if req.version() == Version::HTTP_2 => Ok(()),
        _ => {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(HOST, v);
            }
            Ok(())
        }
    }
}

impl<S, B, RB> Service<Request<B>> for AuthorityCheck<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = AuthorityCheckFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match settle(&mut req) {
            Ok(()) => RefusedOr::inner(self.inner.call(req)),
            Err(why) => {
                tracing::debug!(why, "request refused");
                RefusedOr::refused(StatusCode::BAD_REQUEST, "DPE")
            }
        }
    }
}

/// Future of [`AuthorityCheck`]: the inner response or the 400.
pub type AuthorityCheckFuture<F> = RefusedOr<F>;

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::get(uri).version(version);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn one_authority_per_request() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        assert!(settle(&mut req(HTTP_11, "/", &["a", "b"])).is_err());
        assert!(settle(&mut req(HTTP_11, "/", &["a", "a"])).is_err());
        assert!(settle(&mut req(HTTP_11, "/", &[])).is_err());
        assert!(settle(&mut req(HTTP_10, "/", &[])).is_ok());
        assert!(settle(&mut req(HTTP_11, "/", &["a"])).is_ok());
        assert!(settle(&mut req(HTTP_2, "http://a/", &["b"])).is_err());
        assert!(settle(&mut req(HTTP_2, "http://a/", &["A"])).is_ok());
        assert!(settle(&mut req(HTTP_2, "http://a/", &[])).is_ok());
        let mut abs = req(HTTP_11, "http://a:81/", &["b"]);
        assert!(settle(&mut abs).is_ok());
        assert_eq!(abs.headers()[HOST], "a:81");
        let mut abs = req(HTTP_11, "http://a/", &[]);
        assert!(settle(&mut abs).is_ok());
        assert_eq!(abs.headers()[HOST], "a");
    }
}
