//! The consistent-hash key of a request: a header, a cookie, a query parameter or the
//! client's IP address.

use std::net::SocketAddr;

use http::Request;
use http::header::COOKIE;

use crate::destination_rule::HashKey;
use crate::lb::hash_key;

/// The client's address, put into request extensions by the listener that accepted the
/// connection; `consistentHash.useSourceIp` hashes its IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAddr(pub SocketAddr);

/// The hashed key of `req` under `key`, or `None` when the request does not carry it (the
/// balancer then picks at random, as Envoy does).
pub(crate) fn request_hash<B>(key: &HashKey, req: &Request<B>) -> Option<u64> {
    match key {
        HashKey::Header(name) => {
            // Several values hash as one, in order, as Envoy joins them.
            let mut values = req.headers().get_all(name).iter().peekable();
            values.peek()?;
            let mut joined = Vec::new();
            for (i, v) in values.enumerate() {
                if i > 0 {
                    joined.push(b',');
                }
                joined.extend_from_slice(v.as_bytes());
            }
            Some(hash_key(&joined))
        }
        HashKey::Cookie { name, .. } => req
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| hash_key(v.as_bytes())),
        HashKey::SourceIp => req
            .extensions()
            .get::<SourceAddr>()
            .map(|a| hash_key(a.0.ip().to_string().as_bytes())),
        HashKey::QueryParameter(name) => req
            .uri()
            .query()?
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| k == name)
            .map(|(_, v)| hash_key(v.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn each_key_kind_reads_its_part_of_the_request() {
        let r = req(
            "/p?user=bob&x=1",
            &[("x-user", "bob"), ("cookie", "a=1; session=bob")],
        );
        let bob = Some(hash_key(b"bob"));
        assert_eq!(
            request_hash(&HashKey::Header(HeaderName::from_static("x-user")), &r),
            bob
        );
        let cookie = HashKey::Cookie {
            name: "session".into(),
            path: None,
            ttl: None,
        };
        assert_eq!(request_hash(&cookie, &r), bob);
        assert_eq!(
            request_hash(&HashKey::QueryParameter("user".into()), &r),
            bob
        );
        assert_eq!(request_hash(&HashKey::SourceIp, &r), None);
        let mut r = r;
        r.extensions_mut()
            .insert(SourceAddr(([10, 1, 2, 3], 5555).into()));
        assert_eq!(
            request_hash(&HashKey::SourceIp, &r),
            Some(hash_key(b"10.1.2.3"))
        );
    }

    #[test]
    fn missing_key_is_none() {
        let r = req("/p", &[]);
        assert_eq!(
            request_hash(&HashKey::Header(HeaderName::from_static("x-user")), &r),
            None
        );
        assert_eq!(
            request_hash(&HashKey::QueryParameter("user".into()), &r),
            None
        );
    }
}
