//! One compiled `match` block: all of its conditions must hold (they are ANDed).

use http::HeaderName;

use crate::request::RequestFacts;
use crate::string_match::StringMatcher;

/// The conditions of one `HTTPMatchRequest`, compiled. Gateway and source-label conditions are
/// resolved when a table is built for one proxy, so they do not appear here.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub(crate) uri: Option<StringMatcher>,
    pub(crate) ignore_uri_case: bool,
    pub(crate) scheme: Option<StringMatcher>,
    pub(crate) method: Option<StringMatcher>,
    pub(crate) authority: Option<StringMatcher>,
    pub(crate) headers: Vec<(HeaderName, StringMatcher)>,
    pub(crate) without_headers: Vec<(HeaderName, StringMatcher)>,
    pub(crate) query_params: Vec<(String, StringMatcher)>,
    pub(crate) port: Option<u16>,
}

impl Conditions {
    pub(crate) fn matches(&self, req: &RequestFacts<'_>) -> bool {
        if let Some(port) = self.port {
            if req.port != Some(port) {
                return false;
            }
        }
        if let Some(uri) = &self.uri {
            let ok = if self.ignore_uri_case {
                uri.matches_ignore_case(req.path)
            } else {
                uri.matches(req.path)
            };
            if !ok {
                return false;
            }
        }
        if let Some(m) = &self.method {
            if !m.matches(req.method.as_str()) {
                return false;
            }
        }
        if let Some(m) = &self.scheme {
            if !m.matches(req.scheme) {
                return false;
            }
        }
        if let Some(m) = &self.authority {
            if !m.matches(req.authority) {
                return false;
            }
        }
        if !self
            .headers
            .iter()
            .all(|(name, m)| header_matches(req, name, m))
        {
            return false;
        }
        if !self
            .without_headers
            .iter()
            .all(|(name, m)| without_header_matches(req, name, m))
        {
            return false;
        }
        self.query_params
            .iter()
            .all(|(name, m)| req.query_param(name).is_some_and(|v| m.matches(v)))
    }
}

/// A header condition holds when the header is present and any of its values matches
/// (`{}` = present). Values that are not valid UTF-8 never match a string.
pub(crate) fn header_matches(req: &RequestFacts<'_>, name: &HeaderName, m: &StringMatcher) -> bool {
    req.headers
        .get_all(name)
        .iter()
        .any(|v| std::str::from_utf8(v.as_bytes()).is_ok_and(|v| m.matches(v)))
}

/// `withoutHeaders`: the inverse of the header condition, with a missing header treated as
/// the empty value (so `exact: foo` holds for a missing header, `prefix: ""` does not), and an
/// inverted presence matcher meaning "absent".
pub(crate) fn without_header_matches(
    req: &RequestFacts<'_>,
    name: &HeaderName,
    m: &StringMatcher,
) -> bool {
    if matches!(m, StringMatcher::Any) || req.headers.contains_key(name) {
        !header_matches(req, name, m)
    } else {
        !m.matches("")
    }
}
