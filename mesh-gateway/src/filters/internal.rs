//! Stripping of headers that only the mesh itself may set, when they arrive from outside.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

/// Removes headers that carry the mesh's own decisions (`x-envoy-*`, `x-mesh-*`) from
/// requests arriving at the edge, so a client cannot forge them. (`x-forwarded-client-cert`
/// is mesh-identity's `ForwardClientCert`'s to decide: `SANITIZE_SET` at gateways by
/// default.) Add more names or prefixes with [`StripInternalHeadersLayer::name`] and
/// [`StripInternalHeadersLayer::prefix`].
///
/// ```
/// use mesh_gateway::filters::StripInternalHeadersLayer;
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = StripInternalHeadersLayer::default().name("x-user-role").layer(service_fn(|req: http::Request<()>| async move {
///     assert!(req.headers().get("x-envoy-retry-on").is_none());
///     assert!(req.headers().get("x-user-role").is_none());
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let req = http::Request::get("/").header("x-envoy-retry-on", "5xx").header("x-user-role", "admin");
/// svc.oneshot(req.body(()).unwrap()).await.unwrap();
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through; `call` only removes headers.
#[derive(Debug, Clone)]
pub struct StripInternalHeadersLayer {
    rules: Arc<Rules>,
}

#[derive(Debug, Clone)]
struct Rules {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl Default for StripInternalHeadersLayer {
    fn default() -> Self {
        Self {
            rules: Arc::new(Rules {
                names: Vec::new(),
                prefixes: vec!["x-envoy-".into(), "x-mesh-".into()],
            }),
        }
    }
}

impl StripInternalHeadersLayer {
    /// Also strips the header `name` (case-insensitive).
    pub fn name(mut self, name: &str) -> Self {
        Arc::make_mut(&mut self.rules)
            .names
            .push(name.to_ascii_lowercase());
        self
    }
    /// Also strips every header starting with `prefix` (case-insensitive).
    pub fn prefix(mut self, prefix: &str) -> Self {
        Arc::make_mut(&mut self.rules)
            .prefixes
            .push(prefix.to_ascii_lowercase());
        self
    }
}

impl<S> Layer<S> for StripInternalHeadersLayer {
    type Service = StripInternalHeadersService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StripInternalHeadersService {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service of [`StripInternalHeadersLayer`].
#[derive(Debug, Clone)]
pub struct StripInternalHeadersService<S> {
    inner: S,
    rules: Arc<Rules>,
}

impl<S, B> Service<Request<B>> for StripInternalHeadersService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let rules = &self.rules;
        // HeaderName is always lowercase, so plain comparisons are case-insensitive.
        let doomed: Vec<_> = (req.headers().keys())
            .filter(|k| {
                rules.names.iter().any(|n| n == k.as_str())
                    || rules
                        .prefixes
                        .iter()
                        .any(|p| k.as_str().starts_with(p.as_str()))
            })
            .cloned()
            .collect();
        for name in doomed {
            req.headers_mut().remove(name);
        }
        self.inner.call(req)
    }
}
