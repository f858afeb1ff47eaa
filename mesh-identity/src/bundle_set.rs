//! Bundles of several trust domains (federation), kept apart, plus Istio trust domain aliases.

use std::collections::BTreeMap;

use crate::bundle::TrustBundle;
use crate::id::{SpiffeId, TrustDomain};

/// The trust bundles this workload knows, one per trust domain, never merged.
///
/// An SVID of `spiffe://a/...` is validated against the bundle of `a` only, so a CA trusted
/// for domain `b` can never vouch for an identity in `a`.
///
/// Istio's `trustDomainAliases` name earlier trust domains of the local one (after a trust
/// domain migration the old and new names share one CA): an ID in an alias domain with no
/// bundle of its own is validated against the local bundle, and [`BundleSet::canonical`]
/// rewrites it to the local domain for authorization.
#[derive(Debug, Clone, Default)]
pub struct BundleSet {
    bundles: BTreeMap<TrustDomain, TrustBundle>,
    local: Option<TrustDomain>,
    aliases: Vec<TrustDomain>,
}

impl BundleSet {
    /// An empty set: every SVID is refused with `NoBundle`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding one bundle.
    pub fn single(bundle: TrustBundle) -> Self {
        let mut set = Self::new();
        set.insert(bundle);
        set
    }

    /// Adds or replaces the bundle of `bundle.trust_domain()`, returning the previous one.
    pub fn insert(&mut self, bundle: TrustBundle) -> Option<TrustBundle> {
        self.bundles.insert(bundle.trust_domain().clone(), bundle)
    }

    /// Removes the bundle of a trust domain.
    pub fn remove(&mut self, trust_domain: &TrustDomain) -> Option<TrustBundle> {
        self.bundles.remove(trust_domain)
    }

    /// Declares the local trust domain and its Istio `trustDomainAliases`.
    pub fn set_aliases(&mut self, local: TrustDomain, aliases: Vec<TrustDomain>) {
        self.aliases = aliases.into_iter().filter(|a| *a != local).collect();
        self.local = Some(local);
    }

    /// The local trust domain's aliases.
    pub fn aliases(&self) -> &[TrustDomain] {
        &self.aliases
    }

    /// The local trust domain, if aliases were declared.
    pub fn local_trust_domain(&self) -> Option<&TrustDomain> {
        self.local.as_ref()
    }

    /// The bundle that validates SVIDs of `trust_domain`: its own, or for an alias without
    /// one, the local domain's.
    pub fn bundle_for(&self, trust_domain: &TrustDomain) -> Option<&TrustBundle> {
        if let Some(bundle) = self.bundles.get(trust_domain) {
            return Some(bundle);
        }
        let local = self.local.as_ref()?;
        if self.aliases.contains(trust_domain) {
            return self.bundles.get(local);
        }
        None
    }

    /// The ID as authorization should see it: IDs in an alias domain are rewritten to the
    /// local domain; every other ID is returned unchanged.
    pub fn canonical(&self, id: &SpiffeId) -> SpiffeId {
        match &self.local {
            Some(local) if self.aliases.contains(id.trust_domain()) => {
                id.with_trust_domain(local.clone())
            }
            _ => id.clone(),
        }
    }

    /// All bundles, by trust domain.
    pub fn iter(&self) -> impl Iterator<Item = &TrustBundle> {
        self.bundles.values()
    }

    /// Number of trust domains with a bundle.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether no bundle is held.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}
