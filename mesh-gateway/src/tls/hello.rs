//! Reading a ClientHello off a connection, bounded in size and time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::sni::{ClientHello, MAX_CLIENT_HELLO, SniError, parse_client_hello};

/// Why no ClientHello could be read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The bytes are not a (valid) ClientHello.
    #[error(transparent)]
    Parse(#[from] SniError),
    /// The client closed before sending a whole ClientHello.
    #[error("connection closed before a complete ClientHello")]
    Closed,
    /// The client was too slow.
    #[error("no complete ClientHello within {0:?}")]
    Timeout(Duration),
    /// Reading failed.
    #[error("reading the ClientHello: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads from `stream` until a whole ClientHello has arrived, within `timeout`. Returns the
/// parsed hello and every byte read, which must be replayed (see
/// [`PrefixedStream`](super::PrefixedStream)) to the TLS library or the passthrough upstream.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(ClientHello, Bytes), HelloError> {
    let read = async {
        // Room for a maximal hello spread over records, plus the next record's header.
        let mut buf = BytesMut::with_capacity(2048);
        loop {
            if let Some(hello) = parse_client_hello(&buf)? {
                return Ok((hello, buf.freeze()));
            }
            if buf.len() > MAX_CLIENT_HELLO + 1024 {
                return Err(HelloError::Parse(SniError::TooLarge));
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(HelloError::Closed);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| HelloError::Timeout(timeout))?
}
