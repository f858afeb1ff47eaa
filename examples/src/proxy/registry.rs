//! The proxy's metrics registry: Istio's standard request metrics (names, labels and default
//! buckets as Istio's stats plugin emits them, so its Grafana dashboards work), mesh-mirror's
//! mirror counters, policy denials and config reloads.

use std::sync::{Arc, Mutex, PoisonError};

use mesh_mirror::MirrorCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Istio's default buckets for `istio_request_duration_milliseconds`.
pub const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's default buckets for `istio_request_bytes` and `istio_response_bytes`
/// (1 to 10^9, powers of ten).
pub const SIZE_BUCKETS: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The labels of Istio's standard request metrics. Unknown values are `"unknown"`, as Istio
/// reports them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IstioLabels {
    /// `source` (client side) or `destination` (server side).
    pub reporter: String,
    /// Client workload name.
    pub source_workload: String,
    /// Client workload namespace.
    pub source_workload_namespace: String,
    /// Client identity (`spiffe://...`).
    pub source_principal: String,
    /// Client canonical service.
    pub source_canonical_service: String,
    /// Destination host (`reviews.default.svc.cluster.local`).
    pub destination_service: String,
    /// Its short name (`reviews`).
    pub destination_service_name: String,
    /// Its namespace.
    pub destination_service_namespace: String,
    /// Destination canonical service.
    pub destination_canonical_service: String,
    /// Server workload name.
    pub destination_workload: String,
    /// Server workload namespace.
    pub destination_workload_namespace: String,
    /// Server identity.
    pub destination_principal: String,
    /// `http`, `grpc`.
    pub request_protocol: String,
    /// HTTP status, `0` when no response was sent.
    pub response_code: String,
    /// `grpc-status` of gRPC responses (from headers), empty otherwise.
    pub grpc_response_status: String,
    /// Envoy response flags (`-` when none).
    pub response_flags: String,
    /// `mutual_tls`, `none` or `unknown`.
    pub connection_security_policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

type HistogramFamily = Family<IstioLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS_MS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

/// Every metric the proxy exports. Clones share the same metrics.
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    registry: Arc<Registry>,
    pub(crate) requests: Family<IstioLabels, Counter>,
    pub(crate) duration: HistogramFamily,
    pub(crate) request_bytes: HistogramFamily,
    pub(crate) response_bytes: HistogramFamily,
    denials: Family<DenialLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    generation: Gauge,
    mirrors: Arc<MirrorCollector>,
    access_log_dropped: Counter,
    refused: Family<ListenerLabels, Counter>,
}

/// The `listener` label of per-listener metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyMetrics {
    /// A registry with every metric registered (at zero).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<IstioLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let request_bytes: HistogramFamily = Family::new_with_constructor(size_histogram);
        let response_bytes: HistogramFamily = Family::new_with_constructor(size_histogram);
        let denials = Family::<DenialLabels, Counter>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let generation = Gauge::default();
        let access_log_dropped = Counter::default();
        let refused = Family::<ListenerLabels, Counter>::default();
        let mirrors = Arc::new(MirrorCollector::default());
        registry.register("istio_requests", "Requests handled", requests.clone());
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds",
            duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request body sizes",
            request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response body sizes",
            response_bytes.clone(),
        );
        registry.register(
            "mesh_policy_denials",
            "Requests refused by policy (AuthorizationPolicy, outbound REGISTRY_ONLY, ...)",
            denials.clone(),
        );
        registry.register(
            "mesh_config_reloads",
            "Configuration reload attempts by result",
            reloads.clone(),
        );
        registry.register(
            "mesh_config_generation",
            "Generation of the configuration in force",
            generation.clone(),
        );
        registry.register(
            "mesh_access_log_dropped",
            "Access log lines dropped because stdout was not keeping up",
            access_log_dropped.clone(),
        );
        registry.register(
            "mesh_listener_connections_refused",
            "Connections reset on arrival because the listener had --max-connections open",
            refused.clone(),
        );
        registry.register_collector(Box::new(mirrors.clone()));
        Self {
            registry: Arc::new(registry),
            requests,
            duration,
            request_bytes,
            response_bytes,
            denials,
            reloads,
            generation,
            mirrors,
            access_log_dropped,
            refused,
        }
    }

    /// The counter of connections `listener` refused for being over its cap.
    pub fn refused_connections(&self, listener: &str) -> Counter {
        (self.refused)
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .clone()
    }

    /// The text exposition (OpenMetrics text, which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a request refused by `policy` (`authorization`, `registry_only`, ...).
    pub fn record_denial(&self, policy: &str) {
        self.denials
            .get_or_create(&DenialLabels {
                policy: policy.to_string(),
            })
            .inc();
    }

    /// Counts a reload attempt.
    pub fn record_reload(&self, applied: bool) {
        let result = if applied { "success" } else { "failure" };
        (self.reloads.get_or_create(&ReloadLabels {
            result: result.to_string(),
        }))
        .inc();
    }

    /// Sets the generation gauge.
    pub fn set_generation(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Counts an access log line that was dropped.
    pub fn record_access_log_drop(&self) {
        self.access_log_dropped.inc();
    }

    /// Exports a mirror layer's counters as `mesh_mirror_requests{mirror=name,outcome=...}`.
    pub fn register_mirror(&self, name: impl Into<String>, counters: MirrorCounters) {
        let name = name.into();
        let mut all = (self.mirrors.0)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|(n, _)| *n != name);
        all.push((name, counters));
    }
}

#[derive(Debug, Default)]
struct MirrorCollector(Mutex<Vec<(String, MirrorCounters)>>);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    mirror: String,
    outcome: &'static str,
}

impl Collector for MirrorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let metric_type = ConstCounter::new(0u64).metric_type();
        let mut family = encoder.encode_descriptor(
            "mesh_mirror_requests",
            "Mirror copies by outcome (mesh-mirror MirrorCounters)",
            None,
            metric_type,
        )?;
        for (name, counters) in all.iter() {
            let s = counters.snapshot();
            for (outcome, value) in [
                ("mirrored", s.mirrored),
                ("skipped_sampling", s.skipped_sampling),
                ("dropped_over_cap", s.dropped_over_cap),
                ("dropped_body_too_large", s.dropped_body_too_large),
                ("failed", s.failed),
                ("completed", s.completed),
            ] {
                let labels = MirrorLabels {
                    mirror: name.clone(),
                    outcome,
                };
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
