//! Test PKI built with rcgen, and an in-memory TLS handshake driver.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use mesh_identity::{BundleSet, Svid, TrustBundle};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// A certificate authority: a root, or an intermediate below one.
pub struct Ca {
    pub key: KeyPair,
    pub params: CertificateParams,
    pub cert: CertificateDer<'static>,
    /// Certificates to send after a leaf: this CA and its parents, root excluded.
    pub chain: Vec<CertificateDer<'static>>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Ca {
    pub fn root(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert = params.self_signed(&key).unwrap().der().clone();
        Self {
            key,
            params,
            cert,
            chain: Vec::new(),
        }
    }

    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    pub fn intermediate(&self, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .clone();
        let mut chain = vec![cert.clone()];
        chain.extend(self.chain.iter().cloned());
        Self {
            key,
            params,
            cert,
            chain,
        }
    }

    pub fn bundle(&self, td: &str) -> TrustBundle {
        TrustBundle::from_roots(td.parse().unwrap(), vec![self.cert.clone()]).unwrap()
    }

    pub fn bundle_set(&self, td: &str) -> BundleSet {
        BundleSet::single(self.bundle(td))
    }

    /// A standard SVID leaf for `uri`, with the chain above it.
    pub fn leaf(&self, uri: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.leaf_with(|p| {
            p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        })
    }

    /// A leaf whose params start as a valid SVID (no SAN yet) and are then edited by `edit`.
    pub fn leaf_with(
        &self,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        edit(&mut params);
        let cert = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .clone();
        let mut chain = vec![cert];
        chain.extend(self.chain.iter().cloned());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (chain, key)
    }

    pub fn svid(&self, uri: &str) -> Svid {
        let (chain, key) = self.leaf(uri);
        Svid::from_der(chain, key).unwrap()
    }
}

pub fn uri_san(uri: &str) -> SanType {
    SanType::URI(uri.try_into().unwrap())
}

/// Runs a full handshake in memory; returns both ends, or the first error either side raised.
pub fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let name = ServerName::try_from("workload.invalid").unwrap();
    let mut c = ClientConnection::new(Arc::clone(client), name)?;
    let mut s = ServerConnection::new(Arc::clone(server))?;
    let mut buf = Vec::new();
    for _ in 0..20 {
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok((c, s));
        }
        buf.clear();
        c.write_tls(&mut buf).unwrap();
        if !buf.is_empty() {
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
        }
        buf.clear();
        s.write_tls(&mut buf).unwrap();
        if !buf.is_empty() {
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
        }
    }
    panic!("handshake did not finish");
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// PEM text of certificates, in order.
pub fn certs_pem(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| pem_block("CERTIFICATE", c)).collect()
}

/// PEM text of a PKCS#8 key.
pub fn key_pem(key: &PrivateKeyDer<'_>) -> String {
    pem_block("PRIVATE KEY", key.secret_der())
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mesh-identity-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
