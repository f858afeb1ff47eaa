//! Host names: qualification of short names, Istio's validation, and Envoy's virtual-host
//! lookup order (exact, then the longest suffix wildcard, then `*`), ignoring the port.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Qualifies a short service name with a namespace and domain suffix, as Istio does:
/// `reviews` in `default` becomes `reviews.default.svc.cluster.local`. Names with a dot,
/// wildcards and IP addresses stay as written (lowercased).
///
/// ```
/// use mesh_routing::qualify_host;
/// assert_eq!(qualify_host("reviews", "default", "cluster.local"), "reviews.default.svc.cluster.local");
/// assert_eq!(qualify_host("reviews.prod", "default", "cluster.local"), "reviews.prod");
/// assert_eq!(qualify_host("*", "default", "cluster.local"), "*");
/// ```
pub fn qualify_host(host: &str, namespace: &str, domain_suffix: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains('.') || host.starts_with('*') || host.parse::<IpAddr>().is_ok() {
        host
    } else {
        format!("{host}.{namespace}.svc.{domain_suffix}")
    }
}

/// Checks a VirtualService/ServiceEntry host the way Istio does: an FQDN, an IP, `*`, or a
/// wildcard whose `*` is the first character of the first label (`*.foo.com`, `*foo.com`).
pub fn validate_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("host must not be empty");
    }
    if host == "*" || host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if host.len() > 255 {
        return Err("host is longer than 255 characters");
    }
    let (first, rest) = match host.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (host, None),
    };
    let first = match first.strip_prefix('*') {
        Some("") => None,
        Some(label) => Some(label),
        None => Some(first),
    };
    if let Some(label) = first {
        check_label(label)?;
    }
    if let Some(rest) = rest {
        if rest.contains('*') {
            return Err("wildcard is only allowed as the first character of the first label");
        }
        // A trailing dot (absolute name) is tolerated, as in Istio.
        let rest = rest.strip_suffix('.').unwrap_or(rest);
        for label in rest.split('.') {
            check_label(label)?;
        }
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > 63 {
        return Err("label is longer than 63 characters");
    }
    let b = label.as_bytes();
    let ok_inner = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_');
    if !ok_inner || b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Err("labels may hold letters, digits and inner '-' only");
    }
    Ok(())
}

/// The host part of a `Host` header or `:authority`, lowercased, without the port (borrowed
/// unless it had capitals), as host matching sees it. IPv6 literals keep their brackets, and a
/// trailing `:something` that is not a port stays part of the host.
///
/// ```
/// use mesh_routing::request_host;
/// assert_eq!(request_host("Web.example.com:8080"), "web.example.com");
/// assert_eq!(request_host("[::1]:80"), "[::1]");
/// assert_eq!(request_host("host:notaport"), "host:notaport");
/// ```
pub fn request_host(authority: &str) -> Cow<'_, str> {
    let host = host_without_port(authority);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The host part of an authority as written (case kept); IPv6 literals keep their brackets,
/// and a trailing `:something` that is not a port stays part of the host.
pub(crate) fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    // Byte scans: this runs on every request, and `rsplit_once` goes through the generic
    // pattern machinery.
    let bytes = authority.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        Some(colon) if bytes[colon + 1..].iter().all(u8::is_ascii_digit) => &authority[..colon],
        _ => authority,
    }
}

/// The port of an authority, if it has one.
pub(crate) fn authority_port(authority: &str) -> Option<u16> {
    let after = match authority.rfind(']') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    after.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// Maps host patterns to values with Envoy's precedence: exact names first, then the
/// longest matching suffix wildcard (`*.foo.com`, `*foo.com`), then `*`.
#[derive(Debug, Clone)]
pub(crate) struct HostMap<T> {
    exact: HashMap<Box<str>, T>,
    /// Suffix length (descending when iterated in reverse) -> suffix -> value.
    suffixes: BTreeMap<usize, HashMap<Box<str>, T>>,
    any: Option<T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            suffixes: BTreeMap::new(),
            any: None,
        }
    }
}

impl<T> HostMap<T> {
    /// Returns the entry for `pattern` (lowercase), inserting `make()` if absent.
    pub(crate) fn entry(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
        if pattern == "*" {
            return self.any.get_or_insert_with(make);
        }
        match pattern.strip_prefix('*') {
            Some(suffix) => self
                .suffixes
                .entry(suffix.len())
                .or_default()
                .entry(suffix.into())
                .or_insert_with(make),
            None => self.exact.entry(pattern.into()).or_insert_with(make),
        }
    }

    pub(crate) fn contains_exact(&self, host: &str) -> bool {
        self.exact.contains_key(host)
    }

    /// Looks up a lowercase host without port.
    pub(crate) fn get(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        // `*` must stand for at least one character, so the suffix must be strictly shorter.
        for (&len, map) in self.suffixes.range(..host.len()).rev() {
            if let Some(v) = host.get(host.len() - len..).and_then(|s| map.get(s)) {
                return Some(v);
            }
        }
        self.any.as_ref()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.suffixes.values().flat_map(|m| m.values()))
            .chain(self.any.iter())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        let exact = self.exact.iter().map(|(k, v)| (k.to_string(), v));
        let wild = self
            .suffixes
            .values()
            .flat_map(|m| m.iter().map(|(k, v)| (format!("*{k}"), v)));
        exact
            .chain(wild)
            .chain(self.any.iter().map(|v| ("*".to_string(), v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(patterns: &[&str]) -> HostMap<String> {
        let mut m = HostMap::default();
        for p in patterns {
            m.entry(p, || p.to_string());
        }
        m
    }

    #[test]
    fn wildcard_matches_subdomains_not_the_bare_domain() {
        let m = map(&["*.foo.com"]);
        assert_eq!(m.get("a.foo.com").map(String::as_str), Some("*.foo.com"));
        assert_eq!(m.get("a.b.foo.com").map(String::as_str), Some("*.foo.com"));
        assert_eq!(m.get("foo.com"), None);
    }

    #[test]
    fn lookup_order_is_exact_then_longest_suffix_then_star() {
        let m = map(&["*", "*.com", "*.foo.com", "a.foo.com"]);
        assert_eq!(m.get("a.foo.com").unwrap(), "a.foo.com");
        assert_eq!(m.get("b.foo.com").unwrap(), "*.foo.com");
        assert_eq!(m.get("b.bar.com").unwrap(), "*.com");
        assert_eq!(m.get("localhost").unwrap(), "*");
    }

    #[test]
    fn partial_label_wildcard_needs_at_least_one_char() {
        let m = map(&["*foo.com"]);
        assert!(m.get("barfoo.com").is_some());
        assert!(m.get("x.foo.com").is_some());
        assert!(m.get("foo.com").is_none());
    }

    #[test]
    fn request_host_ignores_port_and_case() {
        assert_eq!(request_host("Reviews.Default:9080"), "reviews.default");
        assert_eq!(request_host("[::1]:8080"), "[::1]");
        assert_eq!(request_host("example.com"), "example.com");
        assert_eq!(authority_port("example.com:8080"), Some(8080));
        assert_eq!(authority_port("[::1]"), None);
        assert_eq!(authority_port("[::1]:443"), Some(443));
    }

    #[test]
    fn istio_host_validation() {
        for ok in [
            "*",
            "foo.com",
            "*.foo.com",
            "*foo.com",
            "reviews",
            "10.0.0.1",
            "a-b.c_d.com",
            "foo.com.",
        ] {
            assert_eq!(validate_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "foo.*.com",
            "*.*.com",
            "a..b",
            "-a.com",
            "a b.com",
            "foo*.com",
        ] {
            assert!(validate_host(bad).is_err(), "{bad}");
        }
    }
}
