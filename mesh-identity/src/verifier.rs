//! rustls verifiers that authenticate peers by SPIFFE ID instead of DNS name.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::credentials::Credentials;
use crate::id::SpiffeId;
use crate::matcher::IdMatcher;
use crate::verify::{PeerRole, VerifyError, verify_with_algs};

/// Why a TLS peer was refused; carried inside the rustls error
/// (`rustls::Error::InvalidCertificate(CertificateError::Other(..))`) when no standard
/// certificate error fits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeerRejected {
    /// The chain is not a valid X.509-SVID of a trusted domain.
    #[error(transparent)]
    Verify(VerifyError),
    /// The chain is valid but the ID is not one this side accepts.
    #[error("peer identity {0} is not allowed")]
    NotAllowed(SpiffeId),
}

impl PeerRejected {
    /// Finds our rejection reason inside a rustls error, if it is one.
    pub fn from_rustls(err: &rustls::Error) -> Option<&Self> {
        match err {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<Self>()
            }
            _ => None,
        }
    }
}

fn to_rustls(err: PeerRejected) -> rustls::Error {
    let cert_err = match err {
        PeerRejected::Verify(VerifyError::Expired) => CertificateError::Expired,
        PeerRejected::Verify(VerifyError::NotYetValid) => CertificateError::NotValidYet,
        PeerRejected::Verify(VerifyError::UnknownAuthority) => CertificateError::UnknownIssuer,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert_err)
}

/// Shared by both verifiers: verify the chain, then the ID.
#[derive(Debug, Clone)]
struct Check {
    credentials: Credentials,
    allowed: IdMatcher,
}

impl Check {
    fn run(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        role: PeerRole,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(CertificateDer::from(end_entity.as_ref()));
        chain.extend(
            intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_ref())),
        );
        let algs = self
            .credentials
            .provider()
            .signature_verification_algorithms
            .all;
        let id = self
            .credentials
            .with_bundles(|bundles| {
                verify_with_algs(&chain, bundles, role, now, algs).map(|id| bundles.canonical(&id))
            })
            .map_err(|e| to_rustls(PeerRejected::Verify(e)))?;
        if !self.allowed.matches(&id) {
            return Err(to_rustls(PeerRejected::NotAllowed(id)));
        }
        Ok(())
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self
                .credentials
                .provider()
                .signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self
                .credentials
                .provider()
                .signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.credentials
            .provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Client-side verifier of a server's X.509-SVID.
///
/// The chain is validated against the bundle of the server ID's own trust domain, then the ID
/// must satisfy the expected-identity matcher. The TLS server name is ignored: SPIFFE
/// authenticates the URI SAN, not a DNS name.
#[derive(Debug, Clone)]
pub struct SpiffeServerVerifier {
    check: Check,
}

impl SpiffeServerVerifier {
    /// A verifier accepting servers whose verified ID matches `expected`.
    pub fn new(credentials: Credentials, expected: IdMatcher) -> Self {
        Self {
            check: Check {
                credentials,
                allowed: expected,
            },
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check
            .run(end_entity, intermediates, PeerRole::Server, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.check.schemes()
    }
}

/// Server-side verifier of a client's X.509-SVID.
///
/// With `mandatory` (STRICT) a client without a certificate is refused; otherwise
/// (PERMISSIVE) it may connect anonymously, but a certificate it does present must verify and
/// match `allowed`.
#[derive(Debug, Clone)]
pub struct SpiffeClientVerifier {
    check: Check,
    mandatory: bool,
}

impl SpiffeClientVerifier {
    /// A verifier accepting clients whose verified ID matches `allowed`.
    pub fn new(credentials: Credentials, allowed: IdMatcher, mandatory: bool) -> Self {
        Self {
            check: Check {
                credentials,
                allowed,
            },
            mandatory,
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // SPIFFE peers present their one SVID whatever the hints say.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check
            .run(end_entity, intermediates, PeerRole::Client, now)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.check.schemes()
    }
}
