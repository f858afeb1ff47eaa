//! The metrics layer: Istio's standard request metrics for every request that passes through
//! (`istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`,
//! `istio_response_bytes`), recorded when the response body ends, as Envoy does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::observe::{CountedBody, DoneBody};
use super::registry::{IstioLabels, ProxyMetrics};
use super::tags::{RequestTags, Tags};

const UNKNOWN: &str = "unknown";

/// Which side of the connection reports (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// The client side: outbound sidecar listener and gateways.
    Source,
    /// The server side: the inbound listener.
    Destination,
}

/// What the proxy knows about its own workload; unknown parts stay `"unknown"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalWorkload {
    /// Workload name.
    pub workload: String,
    /// Namespace.
    pub namespace: String,
    /// SPIFFE ID, when the proxy has an SVID.
    pub principal: String,
}

impl Default for LocalWorkload {
    fn default() -> Self {
        Self {
            workload: UNKNOWN.into(),
            namespace: UNKNOWN.into(),
            principal: UNKNOWN.into(),
        }
    }
}

/// Records Istio's request metrics into [`ProxyMetrics`].
///
/// Readiness: `poll_ready` is the inner service's. `call` wraps the request body to count its
/// bytes, puts a [`RequestTags`] slot into the request (reused if one is there) for
/// [`TagLayer`](super::TagLayer) to fill, and records once the response body ends, errors
/// or is dropped. An inner error is recorded with `response_code` 0.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    metrics: ProxyMetrics,
    reporter: Reporter,
    local: LocalWorkload,
}

impl MetricsLayer {
    /// Records into `metrics` as `reporter` for the workload `local`.
    pub fn new(metrics: ProxyMetrics, reporter: Reporter, local: LocalWorkload) -> Self {
        Self {
            shared: Arc::new(Shared {
                metrics,
                reporter,
                local,
            }),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What the layer keeps while the request is in flight.
#[derive(Debug)]
struct InFlight {
    shared: Arc<Shared>,
    start: Instant,
    tags: RequestTags,
    request_bytes: Arc<AtomicU64>,
    grpc: bool,
    authority: Option<String>,
}

impl<S, B, RB> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<CountedBody<B>>, Response = Response<RB>>,
    RB: Body,
{
    type Response = Response<DoneBody<RB>>;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let tags = parts
            .extensions
            .get::<RequestTags>()
            .cloned()
            .unwrap_or_default();
        parts.extensions.insert(tags.clone());
        let grpc = (parts.headers.get(http::header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        let authority = (parts.uri.authority().map(|a| a.host().to_string())).or_else(|| {
            let host = parts.headers.get(http::header::HOST)?.to_str().ok()?;
            let host = host.parse::<http::uri::Authority>().ok()?;
            Some(host.host().to_string())
        });
        let request_bytes = Arc::new(AtomicU64::new(0));
        let req = Request::from_parts(parts, CountedBody::new(body, request_bytes.clone()));
        tags.learn(&req);
        MetricsFuture {
            inner: self.inner.call(req),
            state: Some(InFlight {
                shared: self.shared.clone(),
                start: Instant::now(),
                tags,
                request_bytes,
                grpc,
                authority,
            }),
        }
    }
}

pin_project! {
    /// The response future of [`MetricsService`].
    #[derive(Debug)]
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        state: Option<InFlight>,
    }
}

impl<F, RB, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Body,
{
    type Output = Result<Response<DoneBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(state) = this.state.take() else {
            // Polled after completion: the inner future decides what that means.
            return Poll::Pending;
        };
        Poll::Ready(match result {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let status = parts.status.as_u16();
                let grpc_status = (parts.headers.get("grpc-status"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let done = Box::new(move |bytes: u64, _end| {
                    state.record(status, grpc_status, bytes);
                });
                Ok(Response::from_parts(parts, DoneBody::new(body, done)))
            }
            Err(e) => {
                state.record(0, None, 0);
                Err(e)
            }
        })
    }
}

impl InFlight {
    fn record(self, status: u16, grpc_status: Option<String>, response_bytes: u64) {
        let tags = self.tags.get();
        let labels = labels(
            &self.shared,
            &tags,
            self.authority.as_deref(),
            status,
            self.grpc,
            grpc_status,
        );
        let m = &self.shared.metrics;
        m.requests.get_or_create(&labels).inc();
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        m.duration.get_or_create(&labels).observe(ms);
        let req_bytes = self.request_bytes.load(Ordering::Relaxed);
        m.request_bytes
            .get_or_create(&labels)
            .observe(req_bytes as f64);
        m.response_bytes
            .get_or_create(&labels)
            .observe(response_bytes as f64);
    }
}

/// Istio's labels for one request, `"unknown"` where the proxy cannot know.
fn labels(
    shared: &Shared,
    tags: &Tags,
    authority: Option<&str>,
    status: u16,
    grpc: bool,
    grpc_status: Option<String>,
) -> IstioLabels {
    let local = &shared.local;
    let unknown = || UNKNOWN.to_string();
    let service = tags
        .destination_host
        .clone()
        .or_else(|| authority.map(str::to_string))
        .unwrap_or_else(unknown);
    let (service_name, service_namespace) = split_service(&service);
    let source = shared.reporter == Reporter::Source;
    let peer = tags.peer_principal.clone();
    IstioLabels {
        reporter: (if source { "source" } else { "destination" }).into(),
        source_workload: if source {
            local.workload.clone()
        } else {
            unknown()
        },
        source_workload_namespace: if source {
            local.namespace.clone()
        } else {
            unknown()
        },
        source_principal: if source {
            local.principal.clone()
        } else {
            peer.clone().unwrap_or_else(unknown)
        },
        source_canonical_service: if source {
            local.workload.clone()
        } else {
            unknown()
        },
        destination_canonical_service: service_name.clone(),
        destination_service: service,
        destination_service_name: service_name,
        destination_service_namespace: service_namespace,
        destination_workload: if source {
            unknown()
        } else {
            local.workload.clone()
        },
        destination_workload_namespace: if source {
            unknown()
        } else {
            local.namespace.clone()
        },
        destination_principal: if source {
            peer.clone().unwrap_or_else(unknown)
        } else {
            local.principal.clone()
        },
        request_protocol: (if grpc { "grpc" } else { "http" }).into(),
        response_code: status.to_string(),
        grpc_response_status: grpc_status.unwrap_or_default(),
        response_flags: tags.response_flags.clone().unwrap_or_else(|| "-".into()),
        connection_security_policy: match (source, peer.is_some()) {
            (true, _) => unknown(),
            (false, true) => "mutual_tls".into(),
            (false, false) => "none".into(),
        },
    }
}

/// `reviews.default.svc.cluster.local` -> (`reviews`, `default`); other hosts keep their
/// whole name and an unknown namespace.
fn split_service(host: &str) -> (String, String) {
    if let Some(rest) = host.strip_suffix(".svc.cluster.local") {
        if let Some((name, ns)) = rest.split_once('.') {
            if !ns.contains('.') {
                return (name.to_string(), ns.to_string());
            }
        }
    }
    (host.to_string(), UNKNOWN.to_string())
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
