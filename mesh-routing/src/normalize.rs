//! The request normalization Istio applies before routing and authorization: the path
//! ([`normalize_path`]) and the method's case.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use tower_layer::Layer;
use tower_service::Service;

use crate::local_reply::RefusedOr;
use crate::path::{PathNormalization, normalize_path};

/// Normalizes each request's path as MeshConfig `pathNormalization` asks (see
/// [`normalize_path`]) before the layers inside see it, so routing, authorization and the
/// upstream all get the normalized path (the query string is kept as sent). A path that
/// cannot be normalized (malformed percent-encoding, `%00`) and a method that is not upper
/// case get 400, as Istio refuses them. Put it outside routing and authorization on every
/// listener.
///
/// The mode is shared ([`PathNormalizationLayer::set`]): a proxy changes it on reload.
///
/// ```
/// use std::convert::Infallible;
/// use mesh_routing::{PathNormalization, PathNormalizationLayer};
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = PathNormalizationLayer::new(PathNormalization::Base).layer(service_fn(
///     |req: http::Request<()>| async move {
///         Ok::<_, Infallible>(http::Response::new(req.uri().to_string()))
///     },
/// ));
/// let req = http::Request::get("/public/../admin?x=%2e").body(()).unwrap();
/// assert_eq!(svc.clone().oneshot(req).await.unwrap().into_body(), "/admin?x=%2e");
/// let bad = http::Request::get("/a%zz").body(()).unwrap();
/// assert_eq!(svc.oneshot(bad).await.unwrap().status(), 400);
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through; `call` only edits the request line.
#[derive(Debug, Clone)]
pub struct PathNormalizationLayer {
    mode: Arc<AtomicU8>,
}

fn encode(mode: PathNormalization) -> u8 {
    match mode {
        PathNormalization::None => 0,
        PathNormalization::Base => 1,
        PathNormalization::MergeSlashes => 2,
        PathNormalization::DecodeAndMergeSlashes => 3,
    }
}

fn decode(v: u8) -> PathNormalization {
    match v {
        0 => PathNormalization::None,
        2 => PathNormalization::MergeSlashes,
        3 => PathNormalization::DecodeAndMergeSlashes,
        _ => PathNormalization::Base,
    }
}

impl PathNormalizationLayer {
    /// Normalizes with `mode`.
    pub fn new(mode: PathNormalization) -> Self {
        Self {
            mode: Arc::new(AtomicU8::new(encode(mode))),
        }
    }

    /// Changes the mode for this layer and every service made from it (new requests).
    pub fn set(&self, mode: PathNormalization) {
        self.mode.store(encode(mode), Ordering::Relaxed);
    }
}

impl<S> Layer<S> for PathNormalizationLayer {
    type Service = NormalizePath<S>;
    fn layer(&self, inner: S) -> NormalizePath<S> {
        NormalizePath {
            inner,
            mode: self.mode.clone(),
        }
    }
}

/// The service of [`PathNormalizationLayer`].
#[derive(Debug, Clone)]
pub struct NormalizePath<S> {
    inner: S,
    mode: Arc<AtomicU8>,
}

/// Why a request line is refused, if it is; rewrites the path when normalization changed it.
fn normalize<B>(req: &mut Request<B>, mode: PathNormalization) -> Result<(), &'static str> {
    if !req
        .method()
        .as_str()
        .bytes()
        .all(|b| !b.is_ascii_lowercase())
    {
        return Err("method not in upper case");
    }
    let normalized = match normalize_path(req.uri().path(), mode) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(p)) => p,
        Err(_) => return Err("path normalization failed"),
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(pq).map_err(|_| "path normalization failed")?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| "path normalization failed")?;
    Ok(())
}

impl<S, B, RB> Service<Request<B>> for NormalizePath<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = NormalizeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match normalize(&mut req, decode(self.mode.load(Ordering::Relaxed))) {
            Ok(()) => RefusedOr::inner(self.inner.call(req)),
            // The 400 says enough; this crate does not log.
            Err(_why) => RefusedOr::refused(StatusCode::BAD_REQUEST, ""),
        }
    }
}

/// Future of [`NormalizePath`]: the inner response, or the 400.
pub type NormalizeFuture<F> = RefusedOr<F>;
