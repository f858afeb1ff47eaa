//! The `-shadow` Host suffix of mirrored requests.

use http::header::HOST;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Uri};

/// Envoy's suffix for mirrored hosts; Istio >= 1.28 no longer adds it by default.
pub const SHADOW_SUFFIX: &str = "-shadow";

/// Appends [`SHADOW_SUFFIX`] to the host part of an authority, keeping the port:
/// `reviews:9080` -> `reviews-shadow:9080`. IP literals are returned unchanged, since
/// `10.0.0.1-shadow` or `[::1]-shadow` would not be a host at all.
///
/// ```
/// assert_eq!(mesh_mirror::shadow_authority("reviews:9080"), "reviews-shadow:9080");
/// assert_eq!(mesh_mirror::shadow_authority("a.example.com"), "a.example.com-shadow");
/// assert_eq!(mesh_mirror::shadow_authority("[::1]:80"), "[::1]:80");
/// ```
pub fn shadow_authority(authority: &str) -> String {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (authority, None),
    };
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return authority.to_string();
    }
    match port {
        Some(p) => format!("{host}{SHADOW_SUFFIX}:{p}"),
        None => format!("{host}{SHADOW_SUFFIX}"),
    }
}

/// Applies the suffix to the Host header and the URI authority, whichever are present.
pub(crate) fn shadow_request(uri: &mut Uri, headers: &mut HeaderMap) {
    if let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) {
        if let Ok(v) = HeaderValue::from_str(&shadow_authority(host)) {
            headers.insert(HOST, v);
        }
    }
    if let Some(authority) = uri.authority() {
        let shadowed = shadow_authority(authority.as_str());
        let mut parts = uri.clone().into_parts();
        parts.authority = Authority::try_from(shadowed).ok();
        if let Ok(new) = Uri::from_parts(parts) {
            *uri = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_goes_before_the_port() {
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_authority("reviews"), "reviews-shadow");
    }

    #[test]
    fn ip_literals_are_left_alone() {
        assert_eq!(shadow_authority("10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(shadow_authority("[2001:db8::1]"), "[2001:db8::1]");
    }

    #[test]
    fn host_header_and_uri_authority_are_both_shadowed() {
        let mut uri: Uri = "http://api.example.com:8080/x?y=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("api.example.com:8080"));
        shadow_request(&mut uri, &mut headers);
        assert_eq!(uri, "http://api.example.com-shadow:8080/x?y=1");
        assert_eq!(headers[HOST], "api.example.com-shadow:8080");
    }
}
