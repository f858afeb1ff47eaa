//! The metrics layer: Istio's standard request metrics for every request that passes through
//! (`istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`,
//! `istio_response_bytes`), recorded when the response body ends, as Envoy does.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tower_layer::Layer;
use tower_service::Service;

use super::observe::{CountedBody, DoneBody, Observation, Observed, OnDone};
use super::registry::{IstioLabels, ProxyMetrics};
use super::tags::RequestTags;

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
    /// The four metrics of each label set seen so far, so a request records without building
    /// Istio's 17 labels and hashing them four times.
    series: SeriesCache,
}

/// The label values that vary from request to request; the rest come from [`Shared`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey<'a> {
    service: &'a str,
    status: u16,
    grpc: bool,
    grpc_status: Option<&'a str>,
    flags: Option<&'a str>,
    peer: Option<&'a str>,
}

/// An owned [`SeriesKey`].
#[derive(Debug)]
struct OwnedKey {
    service: String,
    status: u16,
    grpc: bool,
    grpc_status: Option<String>,
    flags: Option<String>,
    peer: Option<String>,
}

impl OwnedKey {
    fn new(k: &SeriesKey<'_>) -> Self {
        Self {
            service: k.service.to_string(),
            status: k.status,
            grpc: k.grpc,
            grpc_status: k.grpc_status.map(str::to_string),
            flags: k.flags.map(str::to_string),
            peer: k.peer.map(str::to_string),
        }
    }

    fn key(&self) -> SeriesKey<'_> {
        SeriesKey {
            service: &self.service,
            status: self.status,
            grpc: self.grpc,
            grpc_status: self.grpc_status.as_deref(),
            flags: self.flags.as_deref(),
            peer: self.peer.as_deref(),
        }
    }
}

/// Handles to one label set's metrics (clones share the family's values).
#[derive(Debug)]
struct Series {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// Label sets remembered at most; past it (a cardinality problem in itself) requests record
/// through the families directly.
const SERIES_CACHE_MAX: usize = 4096;

/// The series whose keys share one hash.
type Bucket = Vec<(OwnedKey, Arc<Series>)>;

/// Series by the hash of their [`SeriesKey`]; looked up without allocating.
#[derive(Debug, Default)]
struct SeriesCache {
    hasher: RandomState,
    map: RwLock<HashMap<u64, Bucket>>,
}

impl SeriesCache {
    fn get(&self, key: &SeriesKey<'_>, make: impl FnOnce() -> Series) -> Arc<Series> {
        let hash = self.hasher.hash_one(key);
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) =
            (map.get(&hash)).and_then(|bucket| bucket.iter().find(|(k, _)| k.key() == *key))
        {
            return found.1.clone();
        }
        let full = map.len() >= SERIES_CACHE_MAX;
        drop(map);
        let series = Arc::new(make());
        if !full {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            let bucket = map.entry(hash).or_default();
            if !bucket.iter().any(|(k, _)| k.key() == *key) {
                bucket.push((OwnedKey::new(key), series.clone()));
            }
        }
        series
    }
}

impl MetricsLayer {
    /// Records into `metrics` as `reporter` for the workload `local`.
    pub fn new(metrics: ProxyMetrics, reporter: Reporter, local: LocalWorkload) -> Self {
        Self {
            shared: Arc::new(Shared {
                metrics,
                reporter,
                local,
                series: SeriesCache::default(),
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
    /// The request's authority, or its Host header (parsed only if no destination is known).
    authority: Option<http::uri::Authority>,
    host: Option<HeaderValue>,
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
        let authority = parts.uri.authority().cloned();
        let host = match authority {
            Some(_) => None,
            None => parts.headers.get(http::header::HOST).cloned(),
        };
        let request_bytes = Arc::new(AtomicU64::new(0));
        let req = Request::from_parts(parts, CountedBody::new(body, request_bytes.clone()));
        tags.learn(&req);
        let in_flight = InFlight {
            shared: self.shared.clone(),
            start: Instant::now(),
            tags,
            request_bytes,
            grpc,
            authority,
            host,
        };
        MetricsFuture {
            inner: Observed::new(self.inner.call(req), in_flight),
        }
    }
}

pin_project! {
    /// The response future of [`MetricsService`].
    #[derive(Debug)]
    pub struct MetricsFuture<F> {
        #[pin]
        inner: Observed<F, InFlight>,
    }
}

impl<F, RB, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Body,
{
    type Output = Result<Response<DoneBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// The Envoy response flag of a local reply, or `URX` for an upstream answer returned because
/// the route's retries ran out (none for other upstream answers or an empty flag).
pub(crate) fn local_flag(head: &http::response::Parts) -> Option<&'static str> {
    (head.extensions.get::<mesh_routing::LocalReply>())
        .map(mesh_routing::LocalReply::flag)
        .filter(|f| !f.is_empty())
        .or_else(|| (head.extensions.get::<mesh_mirror::RetryLimitReached>()).map(|_| "URX"))
}

impl Observation for InFlight {
    fn on_response(self, head: &http::response::Parts) -> OnDone {
        let status = head.status.as_u16();
        let grpc_status = (head.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let flag = local_flag(head);
        Box::new(move |bytes: u64, _end| self.record(status, grpc_status, flag, bytes))
    }

    fn on_error(self) {
        self.record(0, None, None, 0);
    }
}

impl InFlight {
    fn record(
        self,
        status: u16,
        grpc_status: Option<String>,
        local_flag: Option<&'static str>,
        response_bytes: u64,
    ) {
        let shared = &self.shared;
        let series = self.tags.with(|tags| {
            // Without a destination the service is the request's authority (parsed only then).
            let from_host;
            let service = match tags.destination_host.as_deref() {
                Some(host) => host,
                None => {
                    from_host = (self.host.as_ref())
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| h.parse::<http::uri::Authority>().ok());
                    (self.authority.as_ref().or(from_host.as_ref()))
                        .map_or(UNKNOWN, http::uri::Authority::host)
                }
            };
            let key = SeriesKey {
                service,
                status,
                grpc: self.grpc,
                grpc_status: grpc_status.as_deref(),
                flags: tags.response_flags.as_deref().or(local_flag),
                peer: tags.peer_principal.as_deref(),
            };
            shared.series.get(&key, || {
                let labels = labels(shared, &key);
                let m = &shared.metrics;
                Series {
                    requests: m.requests.get_or_create(&labels).clone(),
                    duration: m.duration.get_or_create(&labels).clone(),
                    request_bytes: m.request_bytes.get_or_create(&labels).clone(),
                    response_bytes: m.response_bytes.get_or_create(&labels).clone(),
                }
            })
        });
        series.requests.inc();
        series
            .duration
            .observe(self.start.elapsed().as_secs_f64() * 1000.0);
        let req_bytes = self.request_bytes.load(Ordering::Relaxed);
        series.request_bytes.observe(req_bytes as f64);
        series.response_bytes.observe(response_bytes as f64);
    }
}

/// Istio's labels for one label set, `"unknown"` where the proxy cannot know.
fn labels(shared: &Shared, key: &SeriesKey<'_>) -> IstioLabels {
    let local = &shared.local;
    let unknown = || UNKNOWN.to_string();
    let service = key.service.to_string();
    let (service_name, service_namespace) = split_service(&service);
    let source = shared.reporter == Reporter::Source;
    let peer = key.peer.map(str::to_string);
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
        request_protocol: (if key.grpc { "grpc" } else { "http" }).into(),
        response_code: key.status.to_string(),
        grpc_response_status: key.grpc_status.unwrap_or_default().to_string(),
        response_flags: key.flags.unwrap_or("-").to_string(),
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
