//! `X-Forwarded-For` and `X-Forwarded-Proto` at the edge, with Envoy's trusted-hops rule.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

/// The peer address of the downstream connection, inserted by the server that accepted it.
///
/// It is mesh-mirror's [`SourceAddr`](mesh_mirror::SourceAddr) under the name this crate's
/// filters use, so one extension serves both `X-Forwarded-For` and source-IP hashing.
pub use mesh_mirror::SourceAddr as RemoteAddr;

// Named once: inserting a header under a `&str` name copies the name per request.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_ENVOY_EXTERNAL_ADDRESS: HeaderName = HeaderName::from_static("x-envoy-external-address");

/// The original client's address as this proxy trusts it (see [`ForwardedLayer`]), for
/// authorization (`remoteIpBlocks`) and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Appends the downstream address to `X-Forwarded-For`, sets `X-Forwarded-Proto`, and
/// records the trusted [`ClientAddr`].
///
/// With `trusted_hops = 0` the client is the peer itself and any incoming XFF is only passed
/// along. With `N > 0` (N proxies in front of us that we trust), the client is the Nth address
/// from the right of the incoming XFF, as Envoy's `xff_num_trusted_hops`; when XFF has fewer
/// entries, the peer address is used. A client outside Envoy's internal ranges (RFC 1918,
/// loopback, IPv6 `::1` and `fd00::/8`) is also told to the upstream as
/// `x-envoy-external-address`, as an Envoy edge proxy does (strip a client's own with
/// [`StripInternalHeadersLayer`](super::StripInternalHeadersLayer) in front). Requests without
/// a [`RemoteAddr`] pass through unchanged. Clones share the trusted hops:
/// [`set_trusted_hops`](Self::set_trusted_hops) changes them for every service made from them
/// (a proxy does on reload).
///
/// ```
/// use mesh_gateway::filters::{ClientAddr, ForwardedLayer, RemoteAddr};
/// use tower::{Layer, Service, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ForwardedLayer::new(1).proto("https").layer(service_fn(|req: http::Request<()>| async move {
///     assert_eq!(req.headers()["x-forwarded-for"], "203.0.113.7, 10.0.0.2");
///     assert_eq!(req.headers()["x-forwarded-proto"], "https");
///     assert_eq!(req.extensions().get::<ClientAddr>().unwrap().0.to_string(), "203.0.113.7");
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let mut req = http::Request::get("/").header("x-forwarded-for", "203.0.113.7").body(()).unwrap();
/// req.extensions_mut().insert(RemoteAddr("10.0.0.2:5555".parse().unwrap()));
/// svc.oneshot(req).await.unwrap();
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through to the inner service; `call` only edits headers and extensions.
#[derive(Debug, Clone)]
pub struct ForwardedLayer {
    trusted_hops: Arc<AtomicUsize>,
    proto: Option<&'static str>,
}

impl ForwardedLayer {
    /// Trusts `trusted_hops` proxies in front of this one.
    pub fn new(trusted_hops: usize) -> Self {
        Self {
            trusted_hops: Arc::new(AtomicUsize::new(trusted_hops)),
            proto: None,
        }
    }

    /// Trusts `trusted_hops` proxies from the next request on, in this layer, its clones and
    /// the services made from them.
    pub fn set_trusted_hops(&self, trusted_hops: usize) {
        self.trusted_hops.store(trusted_hops, Ordering::Relaxed);
    }

    /// Overwrites `X-Forwarded-Proto` with the listener's scheme (`"http"` or `"https"`).
    pub fn proto(mut self, scheme: &'static str) -> Self {
        self.proto = Some(scheme);
        self
    }
}

impl<S> Layer<S> for ForwardedLayer {
    type Service = ForwardedService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ForwardedService {
            inner,
            config: self.clone(),
        }
    }
}

/// The service of [`ForwardedLayer`].
#[derive(Debug, Clone)]
pub struct ForwardedService<S> {
    inner: S,
    config: ForwardedLayer,
}

impl<S, B> Service<Request<B>> for ForwardedService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(proto) = self.config.proto {
            req.headers_mut()
                .insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        }
        if let Some(RemoteAddr(peer)) = req.extensions().get::<RemoteAddr>().copied() {
            let headers = req.headers();
            let client = trusted_client(
                headers.get_all(&X_FORWARDED_FOR).iter(),
                self.config.trusted_hops.load(Ordering::Relaxed),
            )
            .unwrap_or(peer.ip());
            let mut value = String::new();
            if let Some(existing) = joined_xff(headers) {
                value.reserve(existing.len() + 2 + 15);
                value.push_str(&existing);
                value.push_str(", ");
            }
            push_ip(&mut value, peer.ip());
            let value = HeaderValue::try_from(value);
            if let Ok(v) = value {
                req.headers_mut().insert(X_FORWARDED_FOR.clone(), v);
            }
            if !is_internal(client) {
                let mut text = String::new();
                push_ip(&mut text, client);
                if let Ok(v) = HeaderValue::try_from(text) {
                    req.headers_mut()
                        .insert(X_ENVOY_EXTERNAL_ADDRESS.clone(), v);
                }
            }
            req.extensions_mut().insert(ClientAddr(client));
        }
        self.inner.call(req)
    }
}

/// Appends `ip` as text; IPv4 without the formatting machinery, which costs more than the rest
/// of this layer (it runs once per request).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{ip}");
        }
    }
}

/// Envoy's default internal addresses: RFC 1918 and loopback; `::1` and `fd00::/8`.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.octets()[0] == 0xfd,
    }
}

/// The incoming XFF values as one comma-separated list, without copying when there is one.
fn joined_xff(headers: &http::HeaderMap) -> Option<std::borrow::Cow<'_, str>> {
    let mut values = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let first = values.next()?;
    match values.next() {
        None => Some(std::borrow::Cow::Borrowed(first)),
        Some(second) => {
            let mut all = format!("{first}, {second}");
            for v in values {
                all.push_str(", ");
                all.push_str(v);
            }
            Some(std::borrow::Cow::Owned(all))
        }
    }
}

/// The Nth address from the right of the incoming XFF list (over all its header values), if
/// there are that many and it is an IP.
fn trusted_client<'a>(
    values: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted_hops: usize,
) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return None;
    }
    (values.rev())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .nth(trusted_hops - 1)
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[&'static str]) -> Vec<HeaderValue> {
        v.iter().map(|s| HeaderValue::from_static(s)).collect()
    }

    #[test]
    fn trusted_hops_pick_from_the_right_across_header_values() {
        let xff = values(&["1.1.1.1, 2.2.2.2", "3.3.3.3"]);
        assert_eq!(
            trusted_client(xff.iter(), 1),
            Some("3.3.3.3".parse().unwrap())
        );
        assert_eq!(
            trusted_client(xff.iter(), 2),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(
            trusted_client(xff.iter(), 3),
            Some("1.1.1.1".parse().unwrap())
        );
        assert_eq!(trusted_client(xff.iter(), 4), None);
        assert_eq!(trusted_client(xff.iter(), 0), None);
        assert_eq!(trusted_client(values(&["not-an-ip"]).iter(), 1), None);
    }

    #[test]
    fn internal_addresses_are_envoys_defaults() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "::1",
            "fd00::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.7", "172.32.0.1", "2001:db8::1", "fe80::1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ips_print_as_display_does() {
        let mut ips: Vec<IpAddr> = (0..=255u8)
            .flat_map(|o| [[o, 0, 0, 0], [1, o, 2, 3], [0, 0, 0, o], [o, o, o, o]])
            .map(IpAddr::from)
            .collect();
        ips.push("::1".parse().unwrap());
        ips.push("2001:db8::7".parse().unwrap());
        ips.push("::ffff:10.0.0.1".parse().unwrap());
        for ip in ips {
            let mut out = String::from("x, ");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x, {ip}"));
        }
    }
}
