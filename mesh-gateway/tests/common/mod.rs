//! Test certificate authorities and PEM files, generated with rcgen.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::PathBuf;

use mesh_identity::Svid;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA: a root, or an intermediate carrying the chain above it.
pub struct Ca {
    key: KeyPair,
    params: CertificateParams,
    /// This CA's certificate.
    pub der: CertificateDer<'static>,
    /// Certificates above a leaf it signs (itself and its parents, root excluded).
    chain: Vec<CertificateDer<'static>>,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

impl Ca {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let params = ca_params();
        let der = params.self_signed(&key).unwrap().der().clone();
        Self {
            key,
            params,
            der,
            chain: Vec::new(),
        }
    }

    pub fn intermediate(&self) -> Self {
        let key = KeyPair::generate().unwrap();
        let params = ca_params();
        let der = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .clone();
        let mut chain = vec![der.clone()];
        chain.extend(self.chain.iter().cloned());
        Self {
            key,
            params,
            der,
            chain,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    fn sign(
        &self,
        params: CertificateParams,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &self.issuer())
            .unwrap()
            .der()
            .clone();
        let mut chain = vec![cert];
        chain.extend(self.chain.iter().cloned());
        (
            chain,
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    /// A server/client leaf for DNS `names`.
    pub fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.sign(
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
        )
    }

    /// An X.509-SVID for the SPIFFE ID `uri`.
    pub fn svid(&self, uri: &str) -> Svid {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let (chain, key) = self.sign(params);
        Svid::from_der(chain, key).unwrap()
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }
}

/// PEM text of one DER block.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
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

/// A fresh directory for this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mesh-gateway-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
