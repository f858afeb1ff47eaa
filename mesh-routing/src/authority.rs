//! The authority of a request, the same way for HTTP/1 and HTTP/2: one definition that every
//! crate above this one uses, so that a version translation cannot make two layers disagree
//! on which host a request is for.
//!
//! HTTP/2 carries the authority in `:authority` (the URI's authority in `http`); HTTP/1 in
//! the `Host` header, unless the request line is in absolute form, in which case the URI's
//! authority wins and replaces `Host` (RFC 9112 section 3.2.2). So: the URI's authority when
//! it has one, else the first `Host` header.

use http::header::HOST;
use http::{HeaderValue, Request, Uri};

/// The authority a request is for, as written (port and case kept): the URI's authority
/// (HTTP/2 `:authority`, HTTP/1 absolute-form), else the `Host` header. `None` when neither
/// is present or `Host` is not visible ASCII.
///
/// ```
/// use mesh_routing::request_authority;
/// let h2 = http::Request::get("https://api.example.com:8443/x").body(()).unwrap();
/// assert_eq!(request_authority(&h2), Some("api.example.com:8443"));
/// let h1 = http::Request::get("/x").header("host", "Web.example.com").body(()).unwrap();
/// assert_eq!(request_authority(&h1), Some("Web.example.com"));
/// // Absolute form: the request line wins over a different Host header.
/// let abs = http::Request::get("http://a.example/").header("host", "b.example").body(()).unwrap();
/// assert_eq!(request_authority(&abs), Some("a.example"));
/// ```
pub fn request_authority<B>(req: &Request<B>) -> Option<&str> {
    authority_of(req.uri(), req.headers())
}

/// [`request_authority`] over the parts of a request.
pub fn authority_of<'a>(uri: &'a Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(a) => Some(a.as_str()),
        None => headers.get(HOST).and_then(|h| h.to_str().ok()),
    }
}

/// Sets the authority of a request in both places it may live: the URI's authority (kept in
/// absolute form when the URI has one) and the `Host` header (replacing every value). An
/// authority that is not a valid URI authority leaves the URI unchanged.
///
/// ```
/// use mesh_routing::{request_authority, set_request_authority};
/// let mut req = http::Request::get("https://old.example/p?q").body(()).unwrap();
/// set_request_authority(&mut req, http::HeaderValue::from_static("new.example:81"));
/// assert_eq!(req.uri(), "https://new.example:81/p?q");
/// assert_eq!(req.headers()["host"], "new.example:81");
/// assert_eq!(request_authority(&req), Some("new.example:81"));
/// ```
pub fn set_request_authority<B>(req: &mut Request<B>, authority: HeaderValue) {
    if req.uri().authority().is_some() {
        if let Some(a) = authority.to_str().ok().and_then(|a| a.parse().ok()) {
            let mut parts = req.uri().clone().into_parts();
            parts.authority = Some(a);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req.headers_mut().insert(HOST, authority);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::get(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    /// The cases every copy of this rule runs (mesh-identity's included).
    #[test]
    fn uri_authority_wins_then_first_host_header() {
        assert_eq!(
            request_authority(&req("http://a:8080/x", &[])),
            Some("a:8080")
        );
        assert_eq!(request_authority(&req("/x", &["b:9080"])), Some("b:9080"));
        assert_eq!(request_authority(&req("http://a/", &["b"])), Some("a"));
        assert_eq!(
            request_authority(&req("/x", &["first", "second"])),
            Some("first")
        );
        assert_eq!(request_authority(&req("/x", &[])), None);
        assert_eq!(
            request_authority(&req("/x", &["[::1]:80"])),
            Some("[::1]:80")
        );
    }

    #[test]
    fn setting_an_origin_form_request_only_touches_host() {
        let mut r = req("/p", &["old", "older"]);
        set_request_authority(&mut r, HeaderValue::from_static("new"));
        assert_eq!(r.uri(), "/p");
        assert_eq!(r.headers().get_all(HOST).iter().count(), 1);
        assert_eq!(request_authority(&r), Some("new"));
    }

    #[test]
    fn an_invalid_authority_keeps_the_uri() {
        let mut r = req("http://a/p", &[]);
        set_request_authority(&mut r, HeaderValue::from_static("bad authority"));
        assert_eq!(r.uri(), "http://a/p");
        assert_eq!(r.headers()[HOST], "bad authority");
    }
}
