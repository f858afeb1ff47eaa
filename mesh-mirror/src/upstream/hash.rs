//! The consistent-hash key of a request: a header, a cookie, a query parameter or the
//! client's IP address.

use std::net::SocketAddr;

use http::header::COOKIE;
use http::{HeaderValue, Request};
use rand::Rng as _;
use rand::rngs::SmallRng;

use crate::destination_rule::HashKey;
use crate::lb::hash_key;

/// The client's address, put into request extensions by the listener that accepted the
/// connection; `consistentHash.useSourceIp` hashes its IP. mesh-gateway's filters read the
/// same extension under the name `RemoteAddr`.
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
            .map(|(_, v)| hash_key(v.trim_matches('"').as_bytes())),
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

/// A cookie to set on the response when the hash cookie was missing and `ttl` is given.
///
/// As Envoy does: the value is the hex xxHash64 of the client's address (random when the
/// address is unknown), the request is balanced by that value, and the response carries
/// `Set-Cookie: name="value"; Max-Age=ttl; Path=path; HttpOnly` (no `Max-Age` for a ttl of
/// 0: a session cookie), so the client's next requests stick.
pub(crate) fn generated_cookie<B>(
    key: &HashKey,
    req: &Request<B>,
    rng: &mut SmallRng,
) -> Option<(u64, HeaderValue)> {
    let HashKey::Cookie {
        name,
        path,
        ttl: Some(ttl),
    } = key
    else {
        return None;
    };
    let seed = match req.extensions().get::<SourceAddr>() {
        Some(a) => hash_key(a.0.to_string().as_bytes()),
        None => rng.random(),
    };
    let value = format!("{seed:016x}");
    let mut cookie = format!("{name}=\"{value}\"");
    if !ttl.is_zero() {
        cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(path) = path {
        cookie.push_str(&format!("; Path={path}"));
    }
    cookie.push_str("; HttpOnly");
    let header = HeaderValue::from_str(&cookie).ok()?;
    Some((hash_key(value.as_bytes()), header))
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
    fn a_missing_cookie_with_ttl_is_generated_and_hashes_like_its_value() {
        let key = HashKey::Cookie {
            name: "sticky".into(),
            path: Some("/".into()),
            ttl: Some(std::time::Duration::from_secs(60)),
        };
        let mut r = req("/p", &[]);
        r.extensions_mut()
            .insert(SourceAddr(([10, 1, 2, 3], 5555).into()));
        let mut rng = rand::SeedableRng::seed_from_u64(1);
        let (hash, header) = generated_cookie(&key, &r, &mut rng).unwrap();
        let header = header.to_str().unwrap().to_string();
        assert!(
            header.starts_with("sticky=\"") && header.ends_with("\"; Max-Age=60; Path=/; HttpOnly"),
            "{header}"
        );
        // The client sends it back: the same hash, so the same endpoint.
        let value = header.split(';').next().unwrap();
        let back = req("/p", &[("cookie", value)]);
        assert_eq!(request_hash(&key, &back), Some(hash));
        let no_ttl = HashKey::Cookie {
            name: "sticky".into(),
            path: None,
            ttl: None,
        };
        assert!(generated_cookie(&no_ttl, &r, &mut rng).is_none());
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
