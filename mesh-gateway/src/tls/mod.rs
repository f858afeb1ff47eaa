//! TLS on Gateway ports: read the ClientHello, pick the server by SNI, then terminate
//! (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL) or hand the untouched stream over for
//! passthrough. An unknown SNI closes the connection, as Envoy does when no filter chain matches.

mod config;
mod hello;
mod prefixed;
pub(crate) mod san;

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

pub use config::{CredentialDir, TlsSetupError, server_config};
pub use hello::{HelloError, read_client_hello};
pub use prefixed::PrefixedStream;

use crate::gateway::{GatewayServer, TlsMode};
use crate::server::ServerTable;
use crate::sni::ClientHello;

/// How long a client may take to send its ClientHello.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of accepting a connection on a TLS port.
#[derive(Debug)]
pub enum Accepted<S> {
    /// TLS was terminated here with the chosen server's config.
    Terminated {
        /// The decrypted stream.
        stream: Box<tokio_rustls::server::TlsStream<PrefixedStream<S>>>,
        /// The server that matched the SNI.
        server: GatewayServer,
        /// `namespace/name` of its Gateway.
        gateway: String,
        /// The SNI, if the client sent one.
        sni: Option<String>,
    },
    /// PASSTHROUGH / AUTO_PASSTHROUGH: forward these bytes, ClientHello included, by SNI.
    Passthrough {
        /// The connection, replaying the ClientHello first.
        stream: PrefixedStream<S>,
        /// What the ClientHello asked for.
        hello: ClientHello,
        /// The server that matched the SNI.
        server: GatewayServer,
        /// `namespace/name` of its Gateway.
        gateway: String,
    },
}

/// Why a TLS connection was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// No valid ClientHello arrived.
    #[error(transparent)]
    Hello(#[from] HelloError),
    /// No server on this port accepts the SNI.
    #[error("no server for SNI {0:?}")]
    UnknownSni(Option<String>),
    /// The TLS handshake failed (bad client certificate, protocol mismatch, ...).
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
}

/// Accepts TLS connections for the servers of one port.
///
/// Construction builds the rustls config of every terminating server on the port, so bad
/// certificate files fail at startup (or reload), not on the first connection.
#[derive(Clone)]
pub struct TlsPort {
    table: Arc<ServerTable>,
    port: u16,
    configs: Vec<Option<Arc<ServerConfig>>>,
    hello_timeout: Duration,
}

impl std::fmt::Debug for TlsPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPort")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl TlsPort {
    /// Prepares `port` of `table`. `mesh` is needed only for ISTIO_MUTUAL servers.
    pub fn new(
        table: Arc<ServerTable>,
        port: u16,
        credentials: &CredentialDir,
        mesh: Option<&mesh_identity::Credentials>,
    ) -> Result<Self, TlsSetupError> {
        let configs = (table.servers(port))
            .map(|s| match &s.server.tls {
                Some(tls)
                    if s.server.protocol.is_tls()
                        && !matches!(tls.mode, TlsMode::Passthrough | TlsMode::AutoPassthrough) =>
                {
                    server_config(tls, credentials, mesh).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            table,
            port,
            configs,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
        })
    }

    /// Changes how long a client may take to send its ClientHello.
    pub fn hello_timeout(mut self, timeout: Duration) -> Self {
        self.hello_timeout = timeout;
        self
    }

    /// Reads the ClientHello, selects the server by SNI, and terminates or passes through.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
    ) -> Result<Accepted<S>, AcceptError> {
        let (hello, prefix) = read_client_hello(&mut stream, self.hello_timeout).await?;
        let selected = self
            .table
            .select_tls(self.port, hello.server_name.as_deref())
            .ok_or_else(|| AcceptError::UnknownSni(hello.server_name.clone()))?;
        let (server, gateway) = (selected.server.clone(), selected.gateway.to_string());
        let stream = PrefixedStream::new(prefix, stream);
        match self.configs.get(selected.index).cloned().flatten() {
            None => Ok(Accepted::Passthrough {
                stream,
                hello,
                server,
                gateway,
            }),
            Some(config) => {
                let tls = TlsAcceptor::from(config)
                    .accept(stream)
                    .await
                    .map_err(AcceptError::Handshake)?;
                Ok(Accepted::Terminated {
                    stream: Box::new(tls),
                    server,
                    gateway,
                    sni: hello.server_name,
                })
            }
        }
    }
}
