//! The rotating material of one workload: its own SVID and the bundles it trusts.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;

use crate::bundle_set::BundleSet;
use crate::svid::Svid;

/// This workload's SVID and trust bundles, swappable at runtime without restarts.
///
/// Clones share the same material. TLS configs built from a `Credentials` read it at every
/// handshake: after [`Credentials::rotate_svid`] or [`Credentials::rotate_bundles`] returns,
/// every new handshake uses the new material, while established connections keep the keys
/// they negotiated.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    svid: ArcSwap<Svid>,
    bundles: ArcSwap<BundleSet>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("svid", &self.svid())
            .field("trust_domains", &self.bundles().len())
            .finish()
    }
}

impl Credentials {
    /// Credentials using rustls's ring crypto provider.
    pub fn new(svid: Svid, bundles: BundleSet) -> Self {
        Self::with_provider(
            svid,
            bundles,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
    }

    /// Credentials using a given crypto provider for handshakes and signature checks.
    pub fn with_provider(svid: Svid, bundles: BundleSet, provider: Arc<CryptoProvider>) -> Self {
        Self {
            inner: Arc::new(Inner {
                svid: ArcSwap::from_pointee(svid),
                bundles: ArcSwap::from_pointee(bundles),
                provider,
            }),
        }
    }

    /// The current SVID.
    pub fn svid(&self) -> Arc<Svid> {
        self.inner.svid.load_full()
    }

    /// The current trust bundles.
    pub fn bundles(&self) -> Arc<BundleSet> {
        self.inner.bundles.load_full()
    }

    /// Replaces this workload's SVID for all later handshakes.
    pub fn rotate_svid(&self, svid: Svid) {
        tracing::info!(id = %svid.id(), "SVID rotated");
        self.inner.svid.store(Arc::new(svid));
    }

    /// Replaces the trust bundles for all later handshakes.
    pub fn rotate_bundles(&self, bundles: BundleSet) {
        tracing::info!(trust_domains = bundles.len(), "trust bundles rotated");
        self.inner.bundles.store(Arc::new(bundles));
    }

    /// The crypto provider used by configs built from these credentials.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.inner.provider
    }

    pub(crate) fn with_bundles<R>(&self, f: impl FnOnce(&BundleSet) -> R) -> R {
        f(&self.inner.bundles.load())
    }
}
