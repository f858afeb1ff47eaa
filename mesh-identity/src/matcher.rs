//! Which peer SPIFFE IDs are acceptable.

use std::collections::BTreeSet;

use crate::id::{SpiffeId, TrustDomain};

/// A rule accepting some SPIFFE IDs, used by the TLS verifiers after the chain is verified.
///
/// There is no default: accepting every authenticated peer must be asked for with
/// [`IdMatcher::Any`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMatcher {
    /// Any ID whose chain verified against its trust domain's bundle.
    Any,
    /// Exactly this ID.
    Exact(SpiffeId),
    /// One of these IDs.
    OneOf(BTreeSet<SpiffeId>),
    /// Any ID in this trust domain.
    MemberOf(TrustDomain),
    /// Any ID that one of these matchers accepts (none: nothing is accepted).
    AnyOf(Vec<IdMatcher>),
}

impl IdMatcher {
    /// A matcher for one of `ids`.
    pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Self::OneOf(ids.into_iter().collect())
    }

    /// Whether `id` is acceptable.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(want) => want == id,
            Self::OneOf(set) => set.contains(id),
            Self::MemberOf(td) => id.trust_domain() == td,
            Self::AnyOf(list) => list.iter().any(|m| m.matches(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn each_matcher_accepts_only_its_ids() {
        let a = id("spiffe://td/a");
        let b = id("spiffe://td/b");
        let other = id("spiffe://other/a");
        let table = [
            (IdMatcher::Any, [true, true, true]),
            (IdMatcher::Exact(a.clone()), [true, false, false]),
            (
                IdMatcher::one_of([a.clone(), b.clone()]),
                [true, true, false],
            ),
            (
                IdMatcher::MemberOf("td".parse().unwrap()),
                [true, true, false],
            ),
            (IdMatcher::one_of([]), [false, false, false]),
            (
                IdMatcher::AnyOf(vec![
                    IdMatcher::MemberOf("other".parse().unwrap()),
                    IdMatcher::Exact(b.clone()),
                ]),
                [false, true, true],
            ),
            (IdMatcher::AnyOf(vec![]), [false, false, false]),
        ];
        for (matcher, want) in table {
            let got = [&a, &b, &other].map(|i| matcher.matches(i));
            assert_eq!(got, want, "{matcher:?}");
        }
    }
}
