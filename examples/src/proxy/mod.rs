//! `mesh-proxy`: command line, configuration loading and offline analysis (`validate`), the
//! admin listener, metrics, access logs, reload and shutdown (the control plane), and the
//! data-plane listeners built from the library layers.
//!
//! Data plane: the plain-HTTP and TLS Gateway server ports on `--bind` (`gateway`,
//! `gateway_tls`: SIMPLE/MUTUAL/ISTIO_MUTUAL terminate, PASSTHROUGH and AUTO_PASSTHROUGH
//! forward by SNI), the
//! sidecar outbound listener (`outbound`, with [`AutoMtls`]), both routed by `route_stack`
//! over upstreams rebuilt per generation (`upstreams`), and the sidecar inbound listener
//! (`inbound`: mTLS per PeerAuthentication, AuthorizationPolicy, then `--inbound-target`).
//! Gateway TCP ports follow `tcp:` routes (`gateway_tcp`). **Not built:** ports mixing plain
//! and TLS servers; the proxy says so in a warning at startup and does not bind them.
//! Listeners plug in at `Proxy::start_data_plane` (see [`Proxy`]).
//!
//! ```
//! use mesh_examples::proxy::MeshConfig;
//! let mc = MeshConfig::parse("outboundTrafficPolicy: {mode: REGISTRY_ONLY}", "mesh.yaml").unwrap();
//! assert_eq!(mc.outbound_mode, mesh_gateway::OutboundMode::RegistryOnly);
//! ```

mod access_log;
mod admin;
mod analyze;
mod auto_mtls;
mod config;
mod gateway;
mod gateway_tcp;
mod gateway_tls;
mod identity;
mod inbound;
mod mesh_config;
mod metrics;
mod observe;
mod options;
mod outbound;
mod outbound_tcp;
mod registry;
mod reload;
mod route_stack;
mod runtime;
mod serve;
mod state;
mod tags;
mod upstreams;
mod validate;

#[cfg(test)]
mod test_dir;

pub use access_log::{
    AccessLog, AccessLogFuture, AccessLogLayer, AccessLogService, QUEUE_LINES, format_start_time,
};
pub use admin::handle as admin_handle;
pub use analyze::{Warning, analyze};
pub use auto_mtls::AutoMtls;
pub use config::{LoadedConfig, config_files};
pub use mesh_config::{MeshConfig, MeshConfigError, Network, NetworkEndpoints, NetworkGateway};
pub use metrics::{LocalWorkload, MetricsFuture, MetricsLayer, MetricsService, Reporter};
pub use observe::{BodyEnd, CountedBody, DoneBody, OnDone};
pub use options::{Cli, Command, InboundProtocol, RunArgs, TrustBundleArg, UsageError};
pub use registry::{DURATION_BUCKETS_MS, IstioLabels, ProxyMetrics, SIZE_BUCKETS};
pub use reload::{Fingerprint, Trigger, WatchOptions, watch};
pub use route_stack::{
    BoxError, HttpService, MirrorSlot, MirrorTo, ProxyBody, RequestBody, UpstreamService, boxed,
    boxed_request, http_service, routed, upstream_service,
};
pub use runtime::{DEFAULT_DRAIN, Proxy, ReloadStatus, RunningProxy, StartError};
pub use serve::{
    ConnectionLimits, ConnectionSlot, Connections, Listeners, ReadyFlag, Shutdown, ShutdownTrigger,
    serve_http, serve_http_per_peer,
};
pub use state::ProxyState;
pub use tags::{RequestTags, TagLayer, TagService, Tags};
pub use upstreams::{PrimaryBody, Upstreams};
pub use validate::ValidateReport;
