//! rustls client and server configurations built from [`Credentials`].

use std::sync::Arc;

use rustls::client::{ResolvesClientCert, Resumption};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};

use crate::credentials::Credentials;
use crate::matcher::IdMatcher;
use crate::verifier::{SpiffeClientVerifier, SpiffeServerVerifier};

/// What a server asks of TLS clients. Istio's STRICT maps to `Required`; PERMISSIVE maps to
/// `Optional` on the TLS path (plaintext is handled by [`crate::accept_inbound`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients must present an SVID whose ID matches.
    Required(IdMatcher),
    /// Clients may connect without a certificate; one that is presented must verify and match.
    Optional(IdMatcher),
}

/// Presents the current SVID of a [`Credentials`], re-read at every handshake.
#[derive(Debug)]
struct CurrentSvid(Credentials);

impl ResolvesServerCert for CurrentSvid {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.svid().certified_key())
    }
}

impl ResolvesClientCert for CurrentSvid {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.svid().certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl Credentials {
    /// A server config presenting this workload's SVID and verifying client SVIDs.
    ///
    /// Session resumption is disabled (no session cache, no tickets) so that every connection
    /// runs the full identity check against the current bundles: a resumed session would
    /// otherwise skip certificate verification and outlive a bundle rotation. Set ALPN and
    /// other options on the returned value.
    pub fn server_config(&self, client_auth: ClientAuth) -> Result<ServerConfig, rustls::Error> {
        let (allowed, mandatory) = match client_auth {
            ClientAuth::Required(m) => (m, true),
            ClientAuth::Optional(m) => (m, false),
        };
        let verifier = SpiffeClientVerifier::new(self.clone(), allowed, mandatory);
        let mut config = ServerConfig::builder_with_provider(Arc::clone(self.provider()))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(CurrentSvid(self.clone())));
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }

    /// A client config presenting this workload's SVID and accepting only servers whose
    /// verified SPIFFE ID matches `expected`. The TLS server name is not checked.
    ///
    /// Resumption is disabled, for the reason given on [`Credentials::server_config`].
    pub fn client_config(&self, expected: IdMatcher) -> Result<ClientConfig, rustls::Error> {
        let verifier = SpiffeServerVerifier::new(self.clone(), expected);
        let mut config = ClientConfig::builder_with_provider(Arc::clone(self.provider()))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CurrentSvid(self.clone())));
        config.resumption = Resumption::disabled();
        Ok(config)
    }
}
