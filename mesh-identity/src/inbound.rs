//! Accepting inbound connections per mTLS mode: STRICT, PERMISSIVE or DISABLE.

use std::io;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::peer::{PeerIdentity, server_peer_identity};

/// The first byte of a TLS record carrying a handshake message (ClientHello). It is not
/// printable ASCII, so no plaintext HTTP request starts with it.
const TLS_HANDSHAKE: u8 = 0x16;

/// Istio's PeerAuthentication mTLS mode, as applied to one listener port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MtlsMode {
    /// Only mTLS; plaintext is refused.
    Strict,
    /// mTLS or plaintext.
    Permissive,
    /// Plaintext only; TLS is not terminated.
    Disable,
}

/// An accepted inbound connection.
#[derive(Debug)]
pub enum Inbound {
    /// A TLS connection and its peer's verified identity (none if the client sent no
    /// certificate, which only a PERMISSIVE config allows).
    Tls(Box<TlsStream<TcpStream>>, Option<PeerIdentity>),
    /// A plaintext connection (PERMISSIVE or DISABLE).
    Plaintext(TcpStream),
}

/// Whether the first bytes of a connection look like a TLS handshake.
pub fn looks_like_tls(first_bytes: &[u8]) -> bool {
    first_bytes.first() == Some(&TLS_HANDSHAKE)
}

/// Accepts one TCP connection according to `mode`, sniffing the first byte to tell TLS from
/// plaintext. In STRICT mode plaintext is refused with `PermissionDenied`. Use an acceptor
/// built from [`crate::Credentials::server_config`] with `ClientAuth::Required` for STRICT.
pub async fn accept_inbound(
    tcp: TcpStream,
    acceptor: &TlsAcceptor,
    mode: MtlsMode,
) -> io::Result<Inbound> {
    if mode == MtlsMode::Disable {
        return Ok(Inbound::Plaintext(tcp));
    }
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    if !looks_like_tls(&first[..n]) {
        return match mode {
            MtlsMode::Strict => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "plaintext connection refused: mTLS mode is STRICT",
            )),
            _ => Ok(Inbound::Plaintext(tcp)),
        };
    }
    let tls = acceptor.accept(tcp).await?;
    let peer = server_peer_identity(&tls);
    Ok(Inbound::Tls(Box::new(tls), peer))
}
