//! X.509-SVID chain verification against the bundle of the leaf's own trust domain.

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};

use crate::bundle_set::BundleSet;
use crate::id::{IdError, SpiffeId, TrustDomain};
use crate::leaf::inspect_leaf;

/// Why a peer's SVID chain was refused. Each failure has its own variant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// The peer sent no certificate.
    #[error("empty certificate chain")]
    EmptyChain,
    /// A certificate could not be parsed.
    #[error("certificate {index} of the chain is malformed: {reason}")]
    MalformedCertificate {
        /// Position in the chain (0 is the leaf).
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// The leaf has no URI subject alternative name.
    #[error("leaf certificate has no URI SAN")]
    NoUriSan,
    /// The leaf has several URI SANs; an X.509-SVID has exactly one.
    #[error("leaf certificate has {0} URI SANs; an X.509-SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("leaf URI SAN {uri:?} is not a valid SPIFFE ID: {source}")]
    InvalidSpiffeId {
        /// The URI as found in the certificate.
        uri: String,
        /// Why it is not a SPIFFE ID.
        source: IdError,
    },
    /// No bundle is known for the leaf's trust domain.
    #[error("no trust bundle for trust domain {0}")]
    NoBundle(TrustDomain),
    /// The chain does not lead to a root of the trust domain's bundle.
    #[error("certificate chain does not lead to a root of the trust domain's bundle")]
    UnknownAuthority,
    /// The leaf is a CA certificate.
    #[error("leaf certificate is a CA")]
    LeafIsCa,
    /// The leaf's key usage allows signing certificates or CRLs (names which one).
    #[error("leaf certificate has key usage {0}, which an X.509-SVID leaf must not have")]
    LeafCanSign(&'static str),
    /// The leaf lacks the digitalSignature key usage (or has no key usage extension).
    #[error("leaf certificate lacks the digitalSignature key usage")]
    MissingDigitalSignature,
    /// A certificate of the chain has expired.
    #[error("certificate has expired")]
    Expired,
    /// A certificate of the chain is not valid yet.
    #[error("certificate is not valid yet")]
    NotYetValid,
    /// Path validation failed for another reason (bad signature, constraint violation...).
    #[error("certificate path is invalid: {0}")]
    InvalidPath(webpki::Error),
}

/// Which side of a TLS connection presented the chain; selects the extended key usage that
/// must be present if the certificate lists any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The chain came from a TLS client (clientAuth EKU).
    Client,
    /// The chain came from a TLS server (serverAuth EKU).
    Server,
}

/// Verifies an X.509-SVID chain (leaf first) at time `now` and returns the leaf's SPIFFE ID.
///
/// The leaf rules of the X509-SVID standard are checked first (webpki does not look at key
/// usage), then the path is built to a root of the bundle of the leaf's own trust domain only.
pub fn verify_svid_chain(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
    role: PeerRole,
    now: UnixTime,
) -> Result<SpiffeId, VerifyError> {
    verify_with_algs(chain, bundles, role, now, webpki::ALL_VERIFICATION_ALGS)
}

/// [`verify_svid_chain`] with the signature algorithms of a rustls crypto provider.
pub(crate) fn verify_with_algs(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
    role: PeerRole,
    now: UnixTime,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> Result<SpiffeId, VerifyError> {
    let (leaf_der, intermediates) = chain.split_first().ok_or(VerifyError::EmptyChain)?;
    let leaf = inspect_leaf(leaf_der)?;
    for (i, cert) in intermediates.iter().enumerate() {
        x509_parser::parse_x509_certificate(cert).map_err(|e| {
            VerifyError::MalformedCertificate {
                index: i + 1,
                reason: e.to_string(),
            }
        })?;
    }
    leaf.check_time(now)?;
    let bundle = bundles
        .bundle_for(leaf.id.trust_domain())
        .ok_or_else(|| VerifyError::NoBundle(leaf.id.trust_domain().clone()))?;
    let ee = webpki::EndEntityCert::try_from(leaf_der).map_err(|e| {
        VerifyError::MalformedCertificate {
            index: 0,
            reason: e.to_string(),
        }
    })?;
    let usage = match role {
        PeerRole::Client => webpki::KeyUsage::client_auth(),
        PeerRole::Server => webpki::KeyUsage::server_auth(),
    };
    ee.verify_for_usage(
        algs,
        bundle.anchors(),
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map_err(map_webpki)?;
    Ok(leaf.id)
}

fn map_webpki(err: webpki::Error) -> VerifyError {
    match err {
        webpki::Error::UnknownIssuer => VerifyError::UnknownAuthority,
        webpki::Error::CertExpired { .. } => VerifyError::Expired,
        webpki::Error::CertNotValidYet { .. } => VerifyError::NotYetValid,
        other => VerifyError::InvalidPath(other),
    }
}
