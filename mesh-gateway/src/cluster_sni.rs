//! Istio's cluster SNI, `outbound_.PORT_.SUBSET_.HOST`: what a client proxy puts in the SNI
//! of an mTLS connection so an east-west gateway in AUTO_PASSTHROUGH mode can route it
//! without terminating TLS.

use std::fmt;

/// A parsed cluster SNI.
///
/// ```
/// use mesh_gateway::ClusterSni;
/// let sni: ClusterSni = "outbound_.9080_.v2_.reviews.default.svc.cluster.local".parse().unwrap();
/// assert_eq!((sni.port, sni.subset.as_deref(), sni.host.as_str()), (9080, Some("v2"), "reviews.default.svc.cluster.local"));
/// assert_eq!(sni.to_string(), "outbound_.9080_.v2_.reviews.default.svc.cluster.local");
/// assert_eq!(ClusterSni { port: 80, subset: None, host: "a.b".into() }.to_string(), "outbound_.80_._.a.b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterSni {
    /// Service port.
    pub port: u16,
    /// DestinationRule subset (`None` when empty).
    pub subset: Option<String>,
    /// Service host.
    pub host: String,
}

/// Why an SNI is not a cluster SNI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not of the form outbound_.PORT_.SUBSET_.HOST")]
pub struct NotClusterSni(pub String);

impl std::str::FromStr for ClusterSni {
    type Err = NotClusterSni;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || NotClusterSni(s.to_string());
        let rest = s.strip_prefix("outbound_.").ok_or_else(err)?;
        let (port, rest) = rest.split_once("_.").ok_or_else(err)?;
        let (subset, host) = rest.split_once("_.").ok_or_else(err)?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(err)?;
        if host.is_empty() || mesh_routing::validate_host(host).is_err() || host.contains('*') {
            return Err(err());
        }
        Ok(Self {
            port,
            subset: (!subset.is_empty()).then(|| subset.to_string()),
            host: host.to_string(),
        })
    }
}

impl ClusterSni {
    /// The destination an AUTO_PASSTHROUGH gateway forwards this connection to.
    pub fn destination(&self) -> mesh_routing::Destination {
        mesh_routing::Destination {
            host: self.host.clone(),
            subset: self.subset.clone(),
            port: Some(self.port),
        }
    }
}

impl fmt::Display for ClusterSni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "outbound_.{}_.{}_.{}",
            self.port,
            self.subset.as_deref().unwrap_or(""),
            self.host
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_cluster_snis_are_rejected() {
        for bad in [
            "inbound_.80_._.a",
            "outbound_.x_._.a",
            "outbound_.0_._.a",
            "outbound_.80_.v1",
            "outbound_.80_.v1_.",
            "outbound_.80_._.*.a",
        ] {
            assert!(bad.parse::<ClusterSni>().is_err(), "{bad}");
        }
    }
}
