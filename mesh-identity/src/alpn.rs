//! ALPN values for mTLS between Istio sidecars, so a mesh-proxy and an Envoy sidecar of an
//! existing mesh can handshake with each other.
//!
//! Envoy sidecars offer, on ISTIO_MUTUAL connections, `istio-http/1.0`, `istio-http/1.1` or
//! `istio-h2` (with `istio` and the plain name) for HTTP and `istio-peer-exchange`, `istio`
//! for TCP; their inbound listeners pick the mTLS filter chain only when the client offered
//! one of the `istio-*` values, and advertise `h2`, `http/1.1` themselves.

/// What an ISTIO_MUTUAL server accepts, most preferred first: the plain protocols, then the
/// `istio-*` values Envoy sidecars offer (rustls refuses a client whose offer shares nothing
/// with this list). `istio-peer-exchange` (Istio's in-band metadata exchange) is not spoken,
/// so it is not accepted; Envoy offers `istio` next to it, which is.
pub const ISTIO_SERVER_ALPN: &[&[u8]] = &[
    b"h2",
    b"http/1.1",
    b"http/1.0",
    b"istio-h2",
    b"istio-http/1.1",
    b"istio-http/1.0",
    b"istio",
];

/// What an ISTIO_MUTUAL client offers for HTTP/1.1, as an Envoy sidecar does: an `istio-*`
/// value first (an Envoy sidecar's inbound listener needs one to treat the connection as
/// mesh mTLS), then `istio` and the plain name.
pub const ISTIO_CLIENT_ALPN_HTTP1: &[&[u8]] = &[b"istio-http/1.1", b"istio", b"http/1.1"];

/// What an ISTIO_MUTUAL client offers for HTTP/2 (see [`ISTIO_CLIENT_ALPN_HTTP1`]).
pub const ISTIO_CLIENT_ALPN_H2: &[&[u8]] = &[b"istio-h2", b"istio", b"h2"];

/// What an ISTIO_MUTUAL client offers for TCP. Envoy also offers `istio-peer-exchange`, Istio's
/// in-band metadata exchange, which is not spoken here.
pub const ISTIO_CLIENT_ALPN_TCP: &[&[u8]] = &[b"istio"];

/// An ALPN list as rustls takes it.
///
/// ```
/// let alpn = mesh_identity::alpn_protocols(mesh_identity::ISTIO_SERVER_ALPN);
/// assert_eq!(alpn[0], b"h2");
/// ```
pub fn alpn_protocols(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|p| p.to_vec()).collect()
}
