//! rustls server configs for terminating Gateway servers (SIMPLE, MUTUAL, OPTIONAL_MUTUAL,
//! ISTIO_MUTUAL), built from certificate files or a `credentialName`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::gateway::{Credential, ServerTls, TlsMode, TlsVersion};
use crate::tls::san::SanCheckingVerifier;

/// Where `credentialName`s live: `<dir>/<name>/tls.crt`, `tls.key` and, for MUTUAL, `ca.crt`
/// (the keys of a Kubernetes TLS secret, as Istio's gateways read them).
#[derive(Debug, Clone)]
pub struct CredentialDir(pub PathBuf);

/// Why a server's TLS config could not be built. Each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A version rustls does not implement (it speaks TLS 1.2 and 1.3 only).
    #[error("TLS version {0:?} is not supported (TLS 1.2 and 1.3 are)")]
    UnsupportedVersion(TlsVersion),
    /// The mode does not terminate TLS here (PASSTHROUGH, AUTO_PASSTHROUGH).
    #[error("{0:?} servers do not terminate TLS")]
    NotTerminating(TlsMode),
    /// ISTIO_MUTUAL needs the proxy's own SVID and trust bundles.
    #[error("ISTIO_MUTUAL needs the proxy's SPIFFE credentials (--cert, --key, --trust-bundle)")]
    NoMeshIdentity,
    /// rustls refused the material (for example a key that does not match the certificate).
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the rustls config of a terminating server, offering ALPN `h2` and `http/1.1`.
/// ISTIO_MUTUAL uses `mesh_identity` credentials, requires a mesh peer and also accepts the
/// `istio-*` ALPN values Envoy sidecars offer ([`mesh_identity::ISTIO_SERVER_ALPN`]).
pub fn server_config(
    tls: &ServerTls,
    credentials: &CredentialDir,
    mesh: Option<&mesh_identity::Credentials>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let versions = versions(tls)?;
    let mut config = match tls.mode {
        TlsMode::Passthrough | TlsMode::AutoPassthrough => {
            return Err(TlsSetupError::NotTerminating(tls.mode));
        }
        TlsMode::IstioMutual => {
            let mesh = mesh.ok_or(TlsSetupError::NoMeshIdentity)?;
            // Any peer whose SVID verifies against the bundle of its own trust domain; which
            // identities may do what is AuthorizationPolicy's job, as in Istio.
            mesh.server_config(mesh_identity::ClientAuth::Required(
                mesh_identity::IdMatcher::Any,
            ))?
        }
        TlsMode::Simple | TlsMode::Mutual | TlsMode::OptionalMutual => {
            let (cert_path, key_path, ca_path) = files(tls, credentials);
            let chain = read_certs(&cert_path)?;
            let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsSetupError::File {
                path: key_path.clone(),
                reason: format!("no usable private key: {e}"),
            })?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?;
            let builder = if tls.mode == TlsMode::Simple {
                builder.with_no_client_auth()
            } else {
                let ca_path = ca_path.ok_or_else(|| TlsSetupError::File {
                    path: credentials.0.clone(),
                    reason: "MUTUAL needs caCertificates".into(),
                })?;
                builder.with_client_cert_verifier(client_verifier(tls, &ca_path, provider)?)
            };
            builder.with_single_cert(chain, key)?
        }
    };
    config.alpn_protocols = if tls.mode == TlsMode::IstioMutual {
        // Envoy sidecars offer istio-http/1.1, istio-h2, istio next to the plain names.
        mesh_identity::alpn_protocols(mesh_identity::ISTIO_SERVER_ALPN)
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// rustls implements TLS 1.2 and 1.3; a lower minimum is raised to 1.2, a lower maximum refused.
fn versions(tls: &ServerTls) -> Result<Vec<&'static SupportedProtocolVersion>, TlsSetupError> {
    if let Some(max @ (TlsVersion::V1_0 | TlsVersion::V1_1)) = tls.max_version {
        return Err(TlsSetupError::UnsupportedVersion(max));
    }
    let mut out = Vec::new();
    if tls.min_version.is_none_or(|v| v <= TlsVersion::V1_2)
        && tls.max_version.is_none_or(|v| v >= TlsVersion::V1_2)
    {
        out.push(&rustls::version::TLS12);
    }
    if tls.max_version.is_none_or(|v| v == TlsVersion::V1_3) {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

fn files(tls: &ServerTls, credentials: &CredentialDir) -> (PathBuf, PathBuf, Option<PathBuf>) {
    match &tls.credential {
        Credential::Name(name) => {
            let dir = credentials.0.join(name);
            let ca = tls
                .ca_certificates
                .as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join("ca.crt"));
            (dir.join("tls.crt"), dir.join("tls.key"), Some(ca))
        }
        Credential::Files {
            certificate,
            private_key,
        } => (
            PathBuf::from(certificate),
            PathBuf::from(private_key),
            tls.ca_certificates.as_ref().map(PathBuf::from),
        ),
        Credential::None => (PathBuf::new(), PathBuf::new(), None),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsSetupError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(TlsSetupError::File {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        }),
        Err(e) => Err(TlsSetupError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

fn client_verifier(
    tls: &ServerTls,
    ca_path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca_path)? {
        roots.add(cert).map_err(|e| TlsSetupError::File {
            path: ca_path.to_path_buf(),
            reason: format!("not a usable CA: {e}"),
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if tls.mode == TlsMode::OptionalMutual {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    let verifier = builder
        .build()
        .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
    Ok(if tls.subject_alt_names.is_empty() {
        verifier
    } else {
        Arc::new(SanCheckingVerifier::new(
            verifier,
            tls.subject_alt_names.clone(),
        ))
    })
}
