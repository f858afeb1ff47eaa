//! A trust bundle: the root certificates of one trust domain.

use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::id::TrustDomain;
use crate::pem::{PemError, parse_certificates};

/// Why a trust bundle could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// PEM/DER framing was broken.
    #[error("bundle for {trust_domain}: {source}")]
    Pem {
        /// Trust domain the bundle was for.
        trust_domain: TrustDomain,
        /// Underlying parse error.
        source: PemError,
    },
    /// A root certificate could not be used as a trust anchor.
    #[error("bundle for {trust_domain}: root certificate {index} is malformed: {reason}")]
    BadRoot {
        /// Trust domain the bundle was for.
        trust_domain: TrustDomain,
        /// Index of the root in the input.
        index: usize,
        /// What was wrong.
        reason: String,
    },
    /// The bundle has no X.509 roots, so it could never authenticate anyone.
    #[error("bundle for {0} has no X.509 root certificates")]
    NoRoots(TrustDomain),
    /// The SPIFFE bundle JSON was malformed.
    #[error("bundle for {trust_domain}: {path}: {reason}")]
    Json {
        /// Trust domain the bundle was for.
        trust_domain: TrustDomain,
        /// JSON field path of the problem (`keys[2].x5c`).
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// The X.509 roots of one trust domain, several at a time during root rotation.
///
/// SVIDs are validated only against the bundle of their own trust domain; bundles of different
/// domains are never merged (see [`crate::BundleSet`]).
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    pub(crate) sequence: Option<u64>,
    pub(crate) refresh_hint: Option<i64>,
}

impl TrustBundle {
    /// Builds a bundle from DER root certificates. Fails if there are none or one is not a
    /// usable certificate.
    pub fn from_roots(
        trust_domain: TrustDomain,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        if roots.is_empty() {
            return Err(BundleError::NoRoots(trust_domain));
        }
        let mut anchors = Vec::with_capacity(roots.len());
        for (index, root) in roots.iter().enumerate() {
            let bad = |reason: String| BundleError::BadRoot {
                trust_domain: trust_domain.clone(),
                index,
                reason,
            };
            x509_parser::parse_x509_certificate(root).map_err(|e| bad(e.to_string()))?;
            let anchor = webpki::anchor_from_trusted_cert(root).map_err(|e| bad(e.to_string()))?;
            anchors.push(anchor.to_owned());
        }
        Ok(Self {
            trust_domain,
            roots,
            anchors,
            sequence: None,
            refresh_hint: None,
        })
    }

    /// Builds a bundle from PEM (or concatenated DER) root certificates.
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, BundleError> {
        let roots = parse_certificates(pem).map_err(|source| match source {
            PemError::NothingFound(_) => BundleError::NoRoots(trust_domain.clone()),
            source => BundleError::Pem {
                trust_domain: trust_domain.clone(),
                source,
            },
        })?;
        Self::from_roots(trust_domain, roots)
    }

    /// Reads either format: SPIFFE bundle JSON if the input starts with `{`, PEM/DER otherwise.
    pub fn from_pem_or_json(trust_domain: TrustDomain, bytes: &[u8]) -> Result<Self, BundleError> {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Self::from_json(trust_domain, bytes),
            _ => Self::from_pem(trust_domain, bytes),
        }
    }

    /// The trust domain these roots speak for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificates, in the order given.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// `spiffe_sequence` from a JSON bundle, if any.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// `spiffe_refresh_hint` (seconds) from a JSON bundle, if any.
    pub fn refresh_hint(&self) -> Option<i64> {
        self.refresh_hint
    }

    /// Sets the `spiffe_sequence` written by [`TrustBundle::to_json`].
    pub fn set_sequence(&mut self, sequence: Option<u64>) {
        self.sequence = sequence;
    }

    /// Sets the `spiffe_refresh_hint` written by [`TrustBundle::to_json`].
    pub fn set_refresh_hint(&mut self, seconds: Option<i64>) {
        self.refresh_hint = seconds;
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }
}
