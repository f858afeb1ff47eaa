//! The facts of a request that routing looks at, borrowed from an `http::Request` once.

use std::borrow::Cow;
use std::cell::OnceCell;

use http::{HeaderMap, Method, Uri};

use crate::host::{authority_port, request_host};

/// The port of the listener a request arrived on, set by the server as a request extension.
/// `port` matches compare against it; without it the port comes from the authority, then the
/// scheme's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerPort(pub u16);

/// Request facts used by matching. Values are borrowed; derived forms are computed lazily.
pub(crate) struct RequestFacts<'a> {
    pub(crate) method: &'a Method,
    pub(crate) scheme: &'a str,
    /// Raw `:authority` / `Host`, port included.
    pub(crate) authority: &'a str,
    /// Path without the query string.
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) port: Option<u16>,
    path_lower: OnceCell<String>,
    query_pairs: OnceCell<Vec<(String, String)>>,
}

impl<'a> RequestFacts<'a> {
    pub(crate) fn new(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        listener: Option<ListenerPort>,
    ) -> Self {
        let authority = crate::authority::authority_of(uri, headers).unwrap_or("");
        let scheme = uri.scheme_str().unwrap_or("http");
        let port = listener
            .map(|p| p.0)
            .or_else(|| authority_port(authority))
            .or(match scheme {
                "http" => Some(80),
                "https" => Some(443),
                _ => None,
            });
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        Self {
            method,
            scheme,
            authority,
            path,
            query: uri.query(),
            headers,
            port,
            path_lower: OnceCell::new(),
            query_pairs: OnceCell::new(),
        }
    }

    /// Overrides the scheme (for servers whose URIs carry none, such as a TLS listener).
    pub(crate) fn with_scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = scheme;
        if self.port.is_none() {
            self.port = match scheme {
                "https" => Some(443),
                _ => Some(80),
            };
        }
        self
    }

    pub(crate) fn host(&self) -> Cow<'a, str> {
        request_host(self.authority)
    }

    pub(crate) fn path_lower(&self) -> &str {
        self.path_lower
            .get_or_init(|| self.path.to_ascii_lowercase())
    }

    /// First value of a query parameter, percent-decoded (name and value), as Envoy matches.
    pub(crate) fn query_param(&self, name: &str) -> Option<&str> {
        let pairs = self
            .query_pairs
            .get_or_init(|| parse_query(self.query.unwrap_or("")));
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded_and_first_value_wins() {
        let uri: Uri = "/p?na%6De=a%20b&name=second&flag&e=".parse().unwrap();
        let h = HeaderMap::new();
        let f = RequestFacts::new(&Method::GET, &uri, &h, None);
        assert_eq!(f.query_param("name"), Some("a b"));
        assert_eq!(f.query_param("flag"), Some(""));
        assert_eq!(f.query_param("e"), Some(""));
        assert_eq!(f.query_param("missing"), None);
    }

    #[test]
    fn port_comes_from_listener_then_authority_then_scheme() {
        let h = HeaderMap::new();
        let uri: Uri = "http://a:8080/".parse().unwrap();
        assert_eq!(
            RequestFacts::new(&Method::GET, &uri, &h, Some(ListenerPort(9))).port,
            Some(9)
        );
        assert_eq!(
            RequestFacts::new(&Method::GET, &uri, &h, None).port,
            Some(8080)
        );
        let uri: Uri = "https://a/".parse().unwrap();
        assert_eq!(
            RequestFacts::new(&Method::GET, &uri, &h, None).port,
            Some(443)
        );
    }

    #[test]
    fn authority_falls_back_to_host_header() {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, "Reviews:9080".parse().unwrap());
        let uri: Uri = "/x".parse().unwrap();
        let f = RequestFacts::new(&Method::GET, &uri, &h, None);
        assert_eq!(f.authority, "Reviews:9080");
        assert_eq!(f.host(), "reviews");
        assert_eq!(f.port, Some(9080));
    }
}
