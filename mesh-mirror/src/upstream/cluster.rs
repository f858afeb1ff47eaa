//! One cluster of the upstream: a (host, subset, port) with its policy, pool limits, clients
//! and the balancing state of its current endpoints.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mesh_routing::Destination;

use super::connector::{ClusterInfo, MakeConnector};
use crate::cluster::ClusterEndpoints;
use crate::destination_rule::{ClusterPolicy, DestinationRules, Subset};
use crate::locality::ProxyLocation;
use crate::pool::PoolLimits;
use crate::registry::{PortProtocol, ServiceEndpoints};

/// The destination names a subset that no DestinationRule defines (answered 503).
pub(super) struct UnknownSubset;

/// The endpoints of one registry snapshot, with the version they came from.
type State = Option<(u64, PortProtocol, Arc<ClusterEndpoints>)>;

pub(super) struct Cluster<B, C> {
    /// The rule set this cluster was built from: a reload makes it stale.
    pub(super) rules: Arc<DestinationRules>,
    pub(super) policy: ClusterPolicy,
    subset: Option<Subset>,
    pub(super) limits: PoolLimits,
    pub(super) http1: Client<C, B>,
    pub(super) http2: Client<C, B>,
    state: ArcSwap<State>,
}

impl<B, C> Cluster<B, C>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    C: Connect + Clone + Send + Sync + 'static,
{
    /// Resolves `dest` against `rules` and builds the cluster's clients with a connector
    /// from `make`.
    pub(super) fn build<M>(
        dest: &Destination,
        rules: Arc<DestinationRules>,
        make: &M,
    ) -> Result<Self, UnknownSubset>
    where
        M: MakeConnector<Connector = C>,
    {
        let rule = rules.for_host(&dest.host);
        let (policy, subset) = match (rule, &dest.subset) {
            (Some(rule), subset) => {
                let policy = rule
                    .cluster_policy(subset.as_deref(), dest.port)
                    .ok_or(UnknownSubset)?;
                let subset = subset.as_deref().and_then(|s| rule.subset(s)).cloned();
                (policy, subset)
            }
            (None, Some(_)) => return Err(UnknownSubset),
            (None, None) => (ClusterPolicy::default(), None),
        };
        let info = ClusterInfo {
            host: &dest.host,
            subset: dest.subset.as_deref(),
            port: dest.port,
            policy: &policy,
        };
        let connector = make.make_connector(&info);
        let pool = &policy.connection_pool;
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(pool.idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        if pool.max_connections != u32::MAX {
            builder.pool_max_idle_per_host(pool.max_connections as usize);
        }
        let http1 = builder.build(connector.clone());
        let http2 = builder.http2_only(true).build(connector);
        Ok(Self {
            rules,
            limits: PoolLimits::new(pool),
            policy,
            subset,
            http1,
            http2,
            state: ArcSwap::from_pointee(None),
        })
    }

    /// The balancing state for `snapshot`, rebuilt (keeping outlier state) only when the
    /// registry's version moved.
    pub(super) fn endpoints(
        &self,
        snapshot: ServiceEndpoints,
        proxy: &ProxyLocation,
    ) -> (PortProtocol, Arc<ClusterEndpoints>) {
        let current = self.state.load();
        if let Some((version, protocol, eps)) = &**current {
            if *version == snapshot.version {
                return (*protocol, eps.clone());
            }
        }
        let members: Vec<_> = snapshot
            .endpoints
            .iter()
            .filter(|e| self.subset.as_ref().is_none_or(|s| e.matches(&s.labels)))
            .cloned()
            .collect();
        let now = Instant::now();
        let eps = Arc::new(match &**current {
            Some((_, _, previous)) => previous.update(&self.policy, proxy, members, now),
            None => ClusterEndpoints::new(&self.policy, proxy, members, now),
        });
        let state = Some((snapshot.version, snapshot.protocol, eps.clone()));
        self.state.store(Arc::new(state));
        (snapshot.protocol, eps)
    }
}
