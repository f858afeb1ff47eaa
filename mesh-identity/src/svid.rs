//! This workload's own X.509-SVID: certificate chain, private key and SPIFFE ID.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::id::SpiffeId;
use crate::leaf::inspect_leaf;
use crate::pem::{PemError, parse_certificates, parse_private_key};
use crate::verify::VerifyError;

/// Why an SVID (chain plus key) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SvidError {
    /// The certificate chain could not be read.
    #[error("certificate chain: {0}")]
    Chain(PemError),
    /// The private key could not be read.
    #[error("private key: {0}")]
    Key(PemError),
    /// The leaf breaks an X.509-SVID rule.
    #[error("leaf certificate: {0}")]
    Leaf(VerifyError),
    /// The key type is not supported by the crypto provider.
    #[error("private key is not usable: {0}")]
    UnsupportedKey(rustls::Error),
    /// The private key does not belong to the leaf certificate.
    #[error("private key does not match the leaf certificate")]
    KeyMismatch,
}

/// An X.509-SVID with its private key, checked on load: leaf rules hold and the key matches.
#[derive(Clone)]
pub struct Svid {
    id: SpiffeId,
    certified: Arc<CertifiedKey>,
    not_after: i64,
}

impl std::fmt::Debug for Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Svid")
            .field("id", &self.id)
            .field("chain_len", &self.certified.cert.len())
            .finish_non_exhaustive()
    }
}

impl Svid {
    /// Loads a chain (leaf first, PEM or DER) and a private key (PEM or DER).
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self, SvidError> {
        let chain = parse_certificates(chain).map_err(SvidError::Chain)?;
        let key = parse_private_key(key).map_err(SvidError::Key)?;
        Self::from_der(chain, key)
    }

    /// Builds from DER parts, with the ring crypto provider.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        Self::with_provider(chain, key, &rustls::crypto::ring::default_provider())
    }

    /// Builds from DER parts, loading the key with `provider`.
    pub fn with_provider(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: &CryptoProvider,
    ) -> Result<Self, SvidError> {
        let leaf_der = chain
            .first()
            .ok_or(SvidError::Chain(PemError::NothingFound("certificate")))?;
        let leaf = inspect_leaf(leaf_der).map_err(SvidError::Leaf)?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(SvidError::UnsupportedKey)?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(SvidError::KeyMismatch);
            }
            // The key cannot tell its public half; the handshake itself will catch a mismatch.
            Err(_) => {}
        }
        Ok(Self {
            id: leaf.id,
            certified: Arc::new(certified),
            not_after: leaf.not_after,
        })
    }

    /// The SPIFFE ID of the leaf.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// Whether the leaf has expired at `now`.
    pub fn is_expired(&self, now: UnixTime) -> bool {
        i64::try_from(now.as_secs()).unwrap_or(i64::MAX) > self.not_after
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }
}
