//! One cluster of the upstream: a (host, subset, port) with its policy, pool limits,
//! connections and the balancing state of its current endpoints.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::Version;
use mesh_routing::Destination;

use super::client::{Pool, PoolSettings};
use super::connector::{ClusterInfo, MakeConnector};
use super::protocol::Wire;
use crate::cluster::ClusterEndpoints;
use crate::destination_rule::{ClusterPolicy, DestinationRules, H2Upgrade, Subset};
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
    pub(super) pool: Arc<Pool<C, B>>,
    state: ArcSwap<State>,
}

impl<B, C> Cluster<B, C> {
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
            http2: false,
        };
        let http1 = make.make_connector(&info);
        let http2 = make.make_connector(&ClusterInfo {
            http2: true,
            ..info
        });
        let pool = &policy.connection_pool;
        let settings = PoolSettings {
            idle_timeout: pool.idle_timeout,
            max_requests_per_connection: pool.max_requests_per_connection,
            max_idle: usize::try_from(pool.max_connections)
                .unwrap_or(usize::MAX)
                .min(super::client::MAX_IDLE_PER_ENDPOINT),
        };
        Ok(Self {
            rules,
            limits: PoolLimits::new(pool),
            pool: Arc::new(Pool::new(http1, http2, settings)),
            policy,
            subset,
            state: ArcSwap::from_pointee(None),
        })
    }

    /// The protocol to the endpoint for a request of `client` version on a port of
    /// `protocol`, as Istio decides: the client's own with `useClientProtocol`, else HTTP/2
    /// for `http2`/`grpc`/`grpc-web` ports or `h2UpgradePolicy: UPGRADE`, else HTTP/1.1.
    pub(super) fn wire(&self, protocol: PortProtocol, client: Version) -> Wire {
        let pool = &self.policy.connection_pool;
        let http2 = if pool.use_client_protocol {
            client == Version::HTTP_2
        } else {
            protocol.is_http2() || pool.h2_upgrade == H2Upgrade::Upgrade
        };
        if http2 { Wire::Http2 } else { Wire::Http1 }
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
