//! TLS origination: the connector that DestinationRule `trafficPolicy.tls` asks for (SIMPLE,
//! MUTUAL, ISTIO_MUTUAL), plugged into mesh-mirror's upstream via its `MakeConnector` hook.

mod config;
mod stream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use mesh_mirror::{ClusterInfo, MakeConnector, PlainConnector};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tower_service::Service;

pub use config::{OriginationError, client_config};
pub use stream::MaybeTls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds, per cluster, a connector that originates TLS as its DestinationRule says.
///
/// - `SIMPLE`: verifies the server against `caCertificates` (or the system's roots when
///   unset), its name against the SNI, and against `subjectAltNames` when given.
/// - `MUTUAL`: as `SIMPLE`, presenting `clientCertificate`/`privateKey`.
/// - `ISTIO_MUTUAL`: the proxy's own SVID; the server must present an SVID whose SPIFFE ID is
///   one of `subjectAltNames`, or any ID of the local trust domain when none are given.
///
/// The SNI is `tls.sni`, else (ISTIO_MUTUAL) Istio's cluster SNI `outbound_.PORT_.SUBSET_.HOST`,
/// else the destination host. A cluster whose TLS settings cannot be
/// built (unreadable files, no mesh identity for ISTIO_MUTUAL) gets a connector that fails
/// every connection with the reason, so its requests end in errors rather than in plaintext.
#[derive(Debug, Clone, Default)]
pub struct TlsOrigination {
    mesh: Option<mesh_identity::Credentials>,
}

impl TlsOrigination {
    /// Origination without a mesh identity (SIMPLE and MUTUAL only).
    pub fn new() -> Self {
        Self::default()
    }
    /// Origination that can also do ISTIO_MUTUAL with `credentials`.
    pub fn with_mesh_identity(credentials: mesh_identity::Credentials) -> Self {
        Self {
            mesh: Some(credentials),
        }
    }
}

/// The connector of one cluster.
#[derive(Clone)]
pub struct OriginatingConnector {
    http: HttpConnector,
    tls: Result<Option<(TlsConnector, ServerName<'static>)>, Arc<OriginationError>>,
}

impl std::fmt::Debug for OriginatingConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = match &self.tls {
            Ok(Some((_, name))) => format!("tls to {name:?}"),
            Ok(None) => "plaintext".to_string(),
            Err(e) => format!("broken: {e}"),
        };
        f.debug_struct("OriginatingConnector")
            .field("mode", &tls)
            .finish()
    }
}

impl MakeConnector for TlsOrigination {
    type Connector = OriginatingConnector;

    fn make_connector(&self, cluster: &ClusterInfo<'_>) -> OriginatingConnector {
        let mut http = PlainConnector.make_connector(cluster);
        // The URI the upstream builds is http://endpoint; TLS is ours to add.
        http.enforce_http(false);
        let tls = match &cluster.policy.tls {
            None => Ok(None),
            Some(settings) => client_config(settings, self.mesh.as_ref(), cluster.http2)
                .map_err(Arc::new)
                .and_then(|config| {
                    let Some(config) = config else {
                        return Ok(None);
                    };
                    let sni = settings
                        .sni
                        .clone()
                        .unwrap_or_else(|| default_sni(settings, cluster));
                    let name = ServerName::try_from(sni.clone())
                        .map_err(|_| Arc::new(OriginationError::ServerName(sni)))?;
                    Ok(Some((TlsConnector::from(config), name)))
                }),
        };
        if let Err(e) = &tls {
            tracing::error!(host = cluster.host, subset = cluster.subset, error = %e, "TLS origination unavailable for this cluster");
        }
        OriginatingConnector { http, tls }
    }
}

/// Istio's default SNI: the cluster name `outbound_.PORT_.SUBSET_.HOST` for ISTIO_MUTUAL (what
/// an AUTO_PASSTHROUGH east-west gateway routes on), the destination host otherwise.
fn default_sni(settings: &mesh_mirror::ClientTls, cluster: &ClusterInfo<'_>) -> String {
    match (settings.mode, cluster.port) {
        (mesh_mirror::TlsMode::IstioMutual, Some(port)) => crate::ClusterSni {
            port,
            subset: cluster.subset.map(String::from),
            host: cluster.host.to_string(),
        }
        .to_string(),
        _ => cluster.host.to_string(),
    }
}

impl Service<Uri> for OriginatingConnector {
    type Response = MaybeTls;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<MaybeTls, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connect = self.http.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tls = tls.map_err(|e| -> BoxError { e.to_string().into() })?;
            let tcp = connect.await?;
            match tls {
                None => Ok(MaybeTls::Plain(tcp)),
                Some((connector, name)) => {
                    let stream = connector.connect(name, tcp.into_inner()).await?;
                    Ok(MaybeTls::Tls(Box::new(TokioIo::new(stream))))
                }
            }
        })
    }
}
