//! rustls client configs from a DestinationRule's `trafficPolicy.tls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mesh_identity::{IdMatcher, SpiffeId};
use mesh_mirror::{ClientTls, TlsMode};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::tls::san::SanCheckingServerVerifier;

/// Why a cluster's TLS origination could not be set up; names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum OriginationError {
    /// A PEM file is missing or unusable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// MUTUAL without both `clientCertificate` and `privateKey`.
    #[error("MUTUAL needs clientCertificate and privateKey")]
    MissingClientCertificate,
    /// `credentialName` names a secret, which needs a secret store this proxy does not have.
    #[error(
        "credentialName is not supported for TLS origination; use clientCertificate, privateKey and caCertificates files"
    )]
    CredentialName,
    /// `insecureSkipVerify` would accept any server; refused rather than honoured silently.
    #[error("insecureSkipVerify is not supported: the server must be verified")]
    InsecureSkipVerify,
    /// ISTIO_MUTUAL without the proxy's SVID.
    #[error("ISTIO_MUTUAL needs the proxy's SPIFFE credentials (--cert, --key, --trust-bundle)")]
    NoMeshIdentity,
    /// An ISTIO_MUTUAL `subjectAltNames` entry that is not a SPIFFE ID.
    #[error("subjectAltNames entry {0:?} is not a SPIFFE ID")]
    NotSpiffe(String),
    /// The SNI is not a valid server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the material.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client config for `tls`, or `None` for `DISABLE`. ALPN offers what Envoy offers for
/// the connection's protocol (`http2`: HTTP/2, else HTTP/1.1): `h2` or `http/1.1`, and for
/// ISTIO_MUTUAL the `istio-*` values first ([`mesh_identity::ISTIO_CLIENT_ALPN_H2`]).
pub fn client_config(
    tls: &ClientTls,
    mesh: Option<&mesh_identity::Credentials>,
    http2: bool,
) -> Result<Option<Arc<ClientConfig>>, OriginationError> {
    if tls.insecure_skip_verify {
        return Err(OriginationError::InsecureSkipVerify);
    }
    if tls.credential_name.is_some() {
        return Err(OriginationError::CredentialName);
    }
    let mut config = match tls.mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::IstioMutual => {
            let mesh = mesh.ok_or(OriginationError::NoMeshIdentity)?;
            let expected = if tls.subject_alt_names.is_empty() {
                IdMatcher::MemberOf(mesh.svid().id().trust_domain().clone())
            } else {
                let ids: Result<Vec<SpiffeId>, _> = tls
                    .subject_alt_names
                    .iter()
                    .map(|s| {
                        s.parse()
                            .map_err(|_| OriginationError::NotSpiffe(s.clone()))
                    })
                    .collect();
                IdMatcher::one_of(ids?)
            };
            mesh.client_config(expected)?
        }
        TlsMode::Simple | TlsMode::Mutual => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let roots = Arc::new(match &tls.ca_certificates {
                Some(path) => roots_from(Path::new(path))?,
                None => system_roots(),
            });
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| OriginationError::Rustls(rustls::Error::General(e.to_string())))?;
            let builder = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?;
            let builder = if tls.subject_alt_names.is_empty() {
                builder.with_webpki_verifier(verifier)
            } else {
                let san = SanCheckingServerVerifier::new(verifier, tls.subject_alt_names.clone());
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(san))
            };
            if tls.mode == TlsMode::Mutual {
                let (Some(cert), Some(key)) = (&tls.client_certificate, &tls.private_key) else {
                    return Err(OriginationError::MissingClientCertificate);
                };
                builder.with_client_auth_cert(certs(Path::new(cert))?, key_from(Path::new(key))?)?
            } else {
                builder.with_no_client_auth()
            }
        }
    };
    // As Envoy per cluster protocol; an Envoy sidecar's inbound listener takes mesh mTLS only
    // with an istio-* value.
    let alpn: &[&[u8]] = match (tls.mode == TlsMode::IstioMutual, http2) {
        (true, true) => mesh_identity::ISTIO_CLIENT_ALPN_H2,
        (true, false) => mesh_identity::ISTIO_CLIENT_ALPN_HTTP1,
        (false, true) => &[b"h2"],
        (false, false) => &[b"http/1.1"],
    };
    config.alpn_protocols = mesh_identity::alpn_protocols(alpn);
    Ok(Some(Arc::new(config)))
}

fn file_error(path: &Path, reason: impl ToString) -> OriginationError {
    OriginationError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, OriginationError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn key_from(path: &Path) -> Result<PrivateKeyDer<'static>, OriginationError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_error(path, format!("no usable private key: {e}")))
}

fn roots_from(path: &Path) -> Result<RootCertStore, OriginationError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA: {e}")))?;
    }
    Ok(roots)
}

/// The operating system's trust store, as Istio's proxies use for SIMPLE without a CA.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading system CA certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            "no system CA certificates found; SIMPLE origination without caCertificates will fail verification"
        );
    }
    roots
}
