//! SPIFFE IDs and trust domains, parsed strictly per the SPIFFE-ID standard.
//!
//! Both types can only be built through validation, so a value in hand is always canonical:
//! lowercase trust domain of allowed characters, at most 255 bytes, and a path made of
//! non-empty, non-dot segments of allowed characters with no trailing slash.

use std::fmt;
use std::str::FromStr;

/// Longest trust domain name the SPIFFE-ID standard allows, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a SPIFFE ID, trust domain or path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The input was the empty string.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The input does not start with the lowercase `spiffe://` scheme.
    #[error("SPIFFE ID must start with `spiffe://`")]
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    #[error("SPIFFE ID has no trust domain")]
    MissingTrustDomain,
    /// A character outside `[a-z0-9._-]` in the trust domain (this also rejects uppercase,
    /// ports, userinfo and percent-encoding).
    #[error(
        "trust domain contains {0:?}; only lowercase letters, digits, `.`, `-` and `_` are allowed"
    )]
    BadTrustDomainChar(char),
    /// A character outside `[a-zA-Z0-9._-]` in a path segment (this also rejects query strings,
    /// fragments and percent-encoding).
    #[error("path segment contains {0:?}; only letters, digits, `.`, `-` and `_` are allowed")]
    BadPathSegmentChar(char),
    /// Two consecutive slashes in the path.
    #[error("path contains an empty segment (`//`)")]
    EmptySegment,
    /// A `.` or `..` path segment.
    #[error("path contains a `.` or `..` segment")]
    DotSegment,
    /// The path ends with `/`.
    #[error("path has a trailing slash")]
    TrailingSlash,
    /// A non-empty bare path (see [`validate_path`]) that does not start with `/`.
    #[error("path must start with `/`")]
    NoLeadingSlash,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`] bytes.
    #[error("trust domain is {0} bytes long; at most 255 are allowed")]
    TrustDomainTooLong(usize),
}

/// A SPIFFE trust domain such as `cluster.local`, always valid and lowercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// The trust domain name, without scheme.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself (`spiffe://td`, empty path).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;

    /// Parses a bare trust domain name (`example.org`, not `spiffe://example.org`).
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::MissingTrustDomain);
        }
        if let Some(c) = s.chars().find(|c| !is_trust_domain_char(*c)) {
            return Err(IdError::BadTrustDomainChar(c));
        }
        if s.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(IdError::TrustDomainTooLong(s.len()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SPIFFE ID (`spiffe://trust-domain/path`), always valid and in canonical form.
///
/// Equality, ordering and hashing are those of the canonical string's parts (trust domain,
/// then path), and agree with each other.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// Empty, or `/seg(/seg)*`.
    path: String,
}

impl SpiffeId {
    /// Builds an ID from a trust domain and a path that is empty or starts with `/`.
    pub fn new(trust_domain: TrustDomain, path: &str) -> Result<Self, IdError> {
        validate_path(path)?;
        Ok(Self {
            trust_domain,
            path: path.to_owned(),
        })
    }

    /// Builds an ID from a trust domain and path segments (each without slashes).
    pub fn from_segments<S: AsRef<str>>(
        trust_domain: TrustDomain,
        segments: &[S],
    ) -> Result<Self, IdError> {
        let mut path = String::new();
        for segment in segments {
            let segment = segment.as_ref();
            validate_segment(segment)?;
            path.push('/');
            path.push_str(segment);
        }
        Ok(Self { trust_domain, path })
    }

    /// The trust domain part.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path part: empty, or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').skip(1)
    }

    /// The ID without its `spiffe://` scheme, as Istio writes principals
    /// (`cluster.local/ns/default/sa/sleep`).
    pub fn principal(&self) -> String {
        format!("{}{}", self.trust_domain, self.path)
    }

    /// The same path under another trust domain (used for Istio trust domain aliases).
    pub fn with_trust_domain(&self, trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            path: self.path.clone(),
        }
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(IdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let trust_domain = td.parse::<TrustDomain>()?;
        Self::new(trust_domain, path)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

/// Validates a bare SPIFFE ID path: empty, or `/`-separated segments of `[a-zA-Z0-9._-]`
/// with no empty, `.` or `..` segment and no trailing slash.
pub fn validate_path(path: &str) -> Result<(), IdError> {
    if path.is_empty() {
        return Ok(());
    }
    let rest = path.strip_prefix('/').ok_or(IdError::NoLeadingSlash)?;
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() && segments.peek().is_none() {
            return Err(IdError::TrailingSlash);
        }
        validate_segment(segment)?;
    }
    Ok(())
}

fn validate_segment(segment: &str) -> Result<(), IdError> {
    if segment.is_empty() {
        return Err(IdError::EmptySegment);
    }
    if let Some(c) = segment.chars().find(|c| !is_path_char(*c)) {
        return Err(IdError::BadPathSegmentChar(c));
    }
    if segment == "." || segment == ".." {
        return Err(IdError::DotSegment);
    }
    Ok(())
}

fn is_trust_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> IdError {
        s.parse::<SpiffeId>().unwrap_err()
    }

    #[test]
    fn valid_ids_round_trip_in_canonical_form() {
        for s in [
            "spiffe://example.org",
            "spiffe://example.org/a",
            "spiffe://cluster.local/ns/default/sa/sleep",
            "spiffe://a-b_c.9/A.b-C_9/..a/a..",
        ] {
            let id: SpiffeId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn parts_are_exposed() {
        let id: SpiffeId = "spiffe://td/ns/x/sa/y".parse().unwrap();
        assert_eq!(id.trust_domain().as_str(), "td");
        assert_eq!(id.path(), "/ns/x/sa/y");
        assert_eq!(id.segments().collect::<Vec<_>>(), ["ns", "x", "sa", "y"]);
        assert_eq!(id.principal(), "td/ns/x/sa/y");
    }

    #[test]
    fn each_malformation_has_its_own_error() {
        let long = format!("spiffe://{}", "a".repeat(256));
        let table: &[(&str, IdError)] = &[
            ("", IdError::Empty),
            ("http://example.org/a", IdError::WrongScheme),
            ("SPIFFE://example.org/a", IdError::WrongScheme),
            ("spiffe:/example.org", IdError::WrongScheme),
            ("spiffe://", IdError::MissingTrustDomain),
            ("spiffe:///a", IdError::MissingTrustDomain),
            ("spiffe://Example.org", IdError::BadTrustDomainChar('E')),
            (
                "spiffe://example.org:8080/a",
                IdError::BadTrustDomainChar(':'),
            ),
            (
                "spiffe://user@example.org",
                IdError::BadTrustDomainChar('@'),
            ),
            ("spiffe://ex%41mple.org", IdError::BadTrustDomainChar('%')),
            ("spiffe://td/a?x=1", IdError::BadPathSegmentChar('?')),
            ("spiffe://td/a#frag", IdError::BadPathSegmentChar('#')),
            ("spiffe://td/a%20b", IdError::BadPathSegmentChar('%')),
            ("spiffe://td/a b", IdError::BadPathSegmentChar(' ')),
            ("spiffe://td//a", IdError::EmptySegment),
            ("spiffe://td/a//b", IdError::EmptySegment),
            ("spiffe://td/./a", IdError::DotSegment),
            ("spiffe://td/a/..", IdError::DotSegment),
            ("spiffe://td/", IdError::TrailingSlash),
            ("spiffe://td/a/", IdError::TrailingSlash),
            (long.as_str(), IdError::TrustDomainTooLong(256)),
        ];
        for (input, want) in table {
            assert_eq!(&err(input), want, "input {input:?}");
        }
    }

    #[test]
    fn trust_domain_of_255_bytes_is_accepted() {
        let td = "a".repeat(255);
        assert!(format!("spiffe://{td}/x").parse::<SpiffeId>().is_ok());
    }

    #[test]
    fn bare_path_validation() {
        assert_eq!(validate_path(""), Ok(()));
        assert_eq!(validate_path("/a/b"), Ok(()));
        assert_eq!(validate_path("a/b"), Err(IdError::NoLeadingSlash));
        assert_eq!(validate_path("/"), Err(IdError::TrailingSlash));
        assert_eq!(validate_path("/a//b"), Err(IdError::EmptySegment));
        assert_eq!(validate_path("/.."), Err(IdError::DotSegment));
    }

    #[test]
    fn construction_from_segments_validates_each() {
        let td: TrustDomain = "td".parse().unwrap();
        let id = SpiffeId::from_segments(td.clone(), &["ns", "a"]).unwrap();
        assert_eq!(id.to_string(), "spiffe://td/ns/a");
        assert_eq!(
            SpiffeId::from_segments(td.clone(), &["a/b"]),
            Err(IdError::BadPathSegmentChar('/'))
        );
        assert_eq!(
            SpiffeId::from_segments(td.clone(), &[""]),
            Err(IdError::EmptySegment)
        );
        assert_eq!(
            SpiffeId::from_segments(td, &[".."]),
            Err(IdError::DotSegment)
        );
    }

    #[test]
    fn trust_domain_parsing_is_strict() {
        assert_eq!("".parse::<TrustDomain>(), Err(IdError::MissingTrustDomain));
        assert_eq!(
            "spiffe://td".parse::<TrustDomain>(),
            Err(IdError::BadTrustDomainChar(':'))
        );
        assert_eq!(
            "td.local".parse::<TrustDomain>().unwrap().to_string(),
            "td.local"
        );
    }

    #[test]
    fn ordering_agrees_with_equality() {
        let a: SpiffeId = "spiffe://a/x".parse().unwrap();
        let b: SpiffeId = "spiffe://a/x".parse().unwrap();
        let c: SpiffeId = "spiffe://a/y".parse().unwrap();
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        assert!(a < c);
    }
}
