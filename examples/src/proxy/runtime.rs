//! The proxy: configuration state swapped atomically, the metrics registry, the listener
//! tasks, reload and shutdown. The data-plane listeners plug in at [`Proxy::start`] (see
//! [`Proxy::start_data_plane`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use mesh_gateway::filters::ForwardedLayer;
use mesh_gateway::origination::TlsOrigination;
use mesh_gateway::{LoadErrors, Tunnels};
use mesh_routing::{PathNormalization, PathNormalizationLayer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::access_log::AccessLog;
use super::config::LoadedConfig;
use super::mesh_config::{MeshConfig, MeshConfigError};
use super::options::{RunArgs, UsageError};
use super::registry::ProxyMetrics;
use super::reload::{self, Fingerprint, Trigger, WatchOptions};
use super::serve::{Connections, Listeners, Shutdown, ShutdownTrigger, serve_http};
use super::state::ProxyState;

/// How long in-flight requests get to finish on shutdown when MeshConfig does not say
/// (`defaultConfig.drainDuration`).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// How long an upgraded (WebSocket) or TCP connection may stay without a byte either way:
/// Istio's default TCP `idleTimeout`.
pub(crate) const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why the proxy did not start. Each variant prints as one line that names the cause.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag value or combination is wrong (exit code 2).
    #[error("{0}")]
    Usage(#[from] UsageError),
    /// The configuration does not load; every problem is in the list.
    #[error("invalid configuration: {}{}", .0.0.first().map(ToString::to_string).unwrap_or_default(), more(.0.0.len()))]
    Config(LoadErrors),
    /// `--mesh-config` does not load.
    #[error("invalid --mesh-config: {0}")]
    MeshConfig(#[from] MeshConfigError),
    /// A file named by a flag cannot be read.
    #[error("{flag} {}: cannot read: {source}", .path.display())]
    File {
        /// The flag (`--cert`, `--key`, `--trust-bundle`).
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A Gateway TLS server's certificate material does not load.
    #[error("{0}")]
    GatewayTls(String),
    /// The workload identity (`--cert`, `--key`, `--trust-bundle`) does not load.
    #[error("identity: {0}")]
    Identity(String),
    /// A listener could not bind.
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind {
        /// `admin`, `outbound`, ...
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

fn more(n: usize) -> String {
    match n {
        0 | 1 => String::new(),
        n => format!(
            " (and {} more; `mesh-proxy validate` lists them all)",
            n - 1
        ),
    }
}

/// The last reload attempt's failure, if the most recent attempt failed.
#[derive(Debug, Default)]
pub struct ReloadStatus(Mutex<Option<String>>);

impl ReloadStatus {
    /// The failure of the last reload, `None` after a success.
    pub fn last_error(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn set(&self, error: Option<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }
}

/// A proxy's shared parts. Clones share everything; listeners hold one each.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// The command line it runs with.
    pub args: Arc<RunArgs>,
    /// The configuration in force; in-flight requests keep the `Arc` they loaded.
    pub state: Arc<ArcSwap<ProxyState>>,
    /// Every metric.
    pub metrics: ProxyMetrics,
    /// Listener tasks (`/ready` waits for all of them).
    pub listeners: Listeners,
    /// The last reload failure.
    pub reload_status: Arc<ReloadStatus>,
    /// Where access log lines go (`None` with `--no-access-log`).
    pub access_log: Option<AccessLog>,
    /// Fires when shutdown begins; listeners stop accepting and drain.
    pub shutdown: Shutdown,
    /// How long draining may take.
    pub drain: Duration,
    /// Upgraded (WebSocket) and TCP connections, drained with the rest on shutdown.
    pub tunnels: Tunnels,
    /// MeshConfig `pathNormalization` for every listener, updated on reload.
    pub path_normalization: PathNormalizationLayer,
    /// `X-Forwarded-*` at the gateways, trusting MeshConfig
    /// `gatewayTopology.numTrustedProxies` hops; updated on reload.
    pub forwarded: ForwardedLayer,
    /// The config files as they were when generation 1 was read.
    loaded: Fingerprint,
    /// Announces each new generation.
    changes: Arc<watch::Sender<u64>>,
}

/// A started proxy.
#[derive(Debug)]
pub struct RunningProxy {
    proxy: Proxy,
    admin_addr: SocketAddr,
    trigger: ShutdownTrigger,
    reload_requests: mpsc::Sender<()>,
    watcher: JoinHandle<()>,
}

impl Proxy {
    /// Checks flags and files and loads the configuration (generation 1); binds nothing.
    /// Call inside a tokio runtime (the access log writer is spawned here).
    pub fn new(args: RunArgs) -> Result<(Self, ShutdownTrigger), StartError> {
        args.check()?;
        let mesh_config = args
            .mesh_config
            .as_deref()
            .map(MeshConfig::load)
            .transpose()?;
        readable("--cert", args.cert.as_deref())?;
        readable("--key", args.key.as_deref())?;
        for b in &args.trust_bundles {
            readable("--trust-bundle", Some(&b.path))?;
        }
        let mut watched = args.config.clone();
        watched.extend(args.mesh_config.clone());
        let fingerprint = Fingerprint::of(&watched);
        let config =
            LoadedConfig::load(&args.config, &args.namespace).map_err(StartError::Config)?;
        let drain = mesh_config
            .as_ref()
            .and_then(|m| m.drain_duration)
            .unwrap_or(DEFAULT_DRAIN);
        let state = ProxyState::build(1, config, mesh_config, &args.namespace);
        let normalization = (state.mesh_config.as_ref())
            .map_or(PathNormalization::default(), |m| m.path_normalization);
        let forwarded = ForwardedLayer::new(trusted_hops(&state));
        let metrics = ProxyMetrics::new();
        metrics.set_generation(1);
        let (trigger, shutdown) = Shutdown::new();
        let access_log = args
            .access_log_enabled()
            .then(|| AccessLog::stdout(metrics.clone()));
        let proxy = Self {
            args: Arc::new(args),
            state: Arc::new(ArcSwap::from_pointee(state)),
            metrics,
            listeners: Listeners::default(),
            reload_status: Arc::default(),
            access_log,
            shutdown,
            drain,
            tunnels: Tunnels::new(TUNNEL_IDLE_TIMEOUT),
            path_normalization: PathNormalizationLayer::new(normalization),
            forwarded,
            loaded: fingerprint,
            changes: Arc::new(watch::channel(1).0),
        };
        Ok((proxy, trigger))
    }

    /// Starts the proxy: loads the configuration, binds the admin listener, starts the
    /// data-plane listeners and the config watcher. Must run inside a tokio runtime.
    pub async fn start(args: RunArgs) -> Result<RunningProxy, StartError> {
        let (proxy, trigger) = Self::new(args)?;
        let admin_addr = proxy.args.admin;
        let listener = TcpListener::bind(admin_addr)
            .await
            .map_err(|source| StartError::Bind {
                what: "admin",
                addr: admin_addr,
                source,
            })?;
        let admin_addr = listener.local_addr().unwrap_or(admin_addr);
        let (service, shutdown, drain) = (
            super::admin::AdminService(proxy.clone()),
            proxy.shutdown.clone(),
            proxy.drain,
        );
        proxy.listeners.spawn("admin", admin_addr, move |ready| {
            ready.set();
            serve_http(listener, service, shutdown, drain)
        });
        if let Err(e) = proxy.start_data_plane().await {
            // Do not leave the admin listener serving a proxy that failed to start.
            trigger.trigger();
            proxy.listeners.join().await;
            return Err(e);
        }
        let (reload_requests, requests) = mpsc::channel(4);
        let watcher = {
            let p = proxy.clone();
            let paths = proxy.watched_paths();
            let shutdown = proxy.shutdown.clone();
            tokio::spawn(reload::watch(
                paths,
                WatchOptions::default(),
                proxy.loaded.clone(),
                requests,
                shutdown,
                move |t| {
                    p.reload(t);
                },
            ))
        };
        proxy.listeners.seal();
        tracing::info!(admin = %admin_addr, generation = 1, "mesh-proxy started");
        Ok(RunningProxy {
            proxy,
            admin_addr,
            trigger,
            reload_requests,
            watcher,
        })
    }

    /// Binds and spawns the data-plane listeners (a bind error is a [`StartError::Bind`]):
    /// the plain-HTTP and TLS Gateway server ports on `--bind` (the `gateway` and
    /// `gateway_tls` modules),
    /// `--outbound` (the `outbound` module) and `--inbound` (the `inbound` module). Each
    /// serves with [`serve_http`] behind `request_id_layer` ->
    /// [`AccessLogLayer`](super::AccessLogLayer) -> [`MetricsLayer`](super::MetricsLayer) ->
    /// the routing stack (with a [`TagLayer`](super::TagLayer) inside), swapping its state
    /// on each generation.
    ///
    /// **Not built**: Gateway ports mixing plain and TLS servers; they are warned about and
    /// not bound.
    async fn start_data_plane(&self) -> Result<(), StartError> {
        let args = &self.args;
        let credentials = super::identity::load(args)?;
        let origination = match &credentials {
            Some(c) => TlsOrigination::with_mesh_identity(c.clone()),
            None => TlsOrigination::new(),
        };
        super::inbound::start(self, credentials.as_ref()).await?;
        super::gateway::start(self, origination.clone(), credentials.clone()).await?;
        super::outbound::start(self, origination, credentials.as_ref()).await
    }

    /// The connections of the data-plane listener `name`: the flags' limits, refusals
    /// counted in `mesh_listener_connections_refused_total{listener=name}`.
    pub fn connections(&self, name: &str) -> Connections {
        Connections::new(
            self.args.connection_limits(),
            self.shutdown.clone(),
            Some(self.metrics.refused_connections(name)),
        )
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<ProxyState> {
        self.state.load_full()
    }

    /// The generation in force, changing with each applied reload: for listeners that keep
    /// derived state (a `mesh_routing::SharedRouteTable`, bound ports) to refresh it.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Loads the configuration (and `--mesh-config`) again: a valid one replaces the
    /// current state atomically with the next generation; an invalid one is logged (every
    /// problem, with file, resource and field) and the current state stays. Returns the
    /// generation in force.
    pub fn reload(&self, trigger: Trigger) -> u64 {
        let current = self.current();
        let mesh_config = match self.args.mesh_config.as_deref().map(MeshConfig::load) {
            None => None,
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => return self.reject(&current, &[e.to_string()]),
        };
        match LoadedConfig::load(&self.args.config, &self.args.namespace) {
            Ok(config) => {
                let generation = current.generation + 1;
                let state =
                    ProxyState::build(generation, config, mesh_config, &self.args.namespace);
                self.path_normalization.set(
                    (state.mesh_config.as_ref())
                        .map_or(PathNormalization::default(), |m| m.path_normalization),
                );
                self.forwarded.set_trusted_hops(trusted_hops(&state));
                self.state.store(Arc::new(state));
                self.reload_status.set(None);
                self.metrics.record_reload(true);
                self.metrics.set_generation(generation);
                self.changes.send_replace(generation);
                tracing::info!(generation, ?trigger, "configuration reloaded");
                generation
            }
            Err(errors) => {
                let problems: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                self.reject(&current, &problems)
            }
        }
    }

    fn reject(&self, current: &ProxyState, problems: &[String]) -> u64 {
        for p in problems {
            tracing::error!("{p}");
        }
        tracing::error!(
            generation = current.generation,
            problems = problems.len(),
            "configuration rejected; the previous one stays in force"
        );
        self.reload_status.set(Some(problems.join("\n")));
        self.metrics.record_reload(false);
        current.generation
    }

    /// What the watcher looks at: `--config` paths and `--mesh-config`.
    fn watched_paths(&self) -> Vec<PathBuf> {
        let mut paths = self.args.config.clone();
        paths.extend(self.args.mesh_config.clone());
        paths
    }
}

impl RunningProxy {
    /// The admin listener's address (useful with port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The proxy's shared parts.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Asks the watcher to reload now (what SIGHUP does). Returns at once.
    pub fn request_reload(&self) {
        // Full means a reload is already pending, which is as good.
        let _ = self.reload_requests.try_send(());
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain time), and waits
    /// for every listener task.
    pub async fn shutdown(self) {
        tracing::info!(drain = ?self.proxy.drain, "shutting down");
        self.trigger.trigger();
        tokio::join!(
            self.proxy.listeners.join(),
            self.proxy.tunnels.shutdown(self.proxy.drain)
        );
        let _ = self.watcher.await;
        if let Some(log) = &self.proxy.access_log {
            log.flush().await;
        }
    }
}

/// MeshConfig `defaultConfig.gatewayTopology.numTrustedProxies` in `state` (0 without one).
fn trusted_hops(state: &ProxyState) -> usize {
    (state.mesh_config.as_ref()).map_or(0, |m| m.num_trusted_proxies)
}

fn readable(flag: &'static str, path: Option<&Path>) -> Result<(), StartError> {
    let Some(path) = path else { return Ok(()) };
    std::fs::File::open(path)
        .map(drop)
        .map_err(|source| StartError::File {
            flag,
            path: path.to_path_buf(),
            source,
        })
}
