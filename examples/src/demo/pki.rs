//! The demo's identities: a root CA generated at startup (rcgen) and X.509-SVIDs signed by
//! it, written as PEM files the proxy reads with `--cert`, `--key` and `--trust-bundle`.

use std::path::{Path, PathBuf};

use mesh_identity::{BundleFile, Credentials, FileSources, FileWatcher};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::DemoError;

/// A root CA whose certificate is the trust bundle of `cluster.local`.
pub struct Pki {
    key: KeyPair,
    params: CertificateParams,
    dir: PathBuf,
    /// The CA certificate (the trust bundle file).
    pub bundle: PathBuf,
}

/// An SVID written to disk.
#[derive(Debug, Clone)]
pub struct SvidFiles {
    /// The SPIFFE ID in its URI SAN.
    pub id: String,
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
}

impl Pki {
    /// Generates a root CA and writes its certificate to `dir/ca.pem`.
    pub fn generate(dir: &Path) -> Result<Self, DemoError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "mesh demo root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        let bundle = write(dir, "ca.pem", &cert.pem())?;
        Ok(Self {
            key,
            params,
            dir: dir.to_path_buf(),
            bundle,
        })
    }

    /// Issues an SVID for `spiffe://cluster.local/ns/default/sa/{account}` (one URI SAN, not
    /// a CA, digitalSignature only, as the X509-SVID spec asks) and writes it as
    /// `{account}.pem` and `{account}.key`.
    pub fn svid(&self, account: &str) -> Result<SvidFiles, DemoError> {
        let id = format!("spiffe://cluster.local/ns/default/sa/{account}");
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = vec![SanType::URI(id.clone().try_into()?)];
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key))?;
        Ok(SvidFiles {
            cert: write(&self.dir, &format!("{account}.pem"), &cert.pem())?,
            key: write(&self.dir, &format!("{account}.key"), &key.serialize_pem())?,
            id,
        })
    }

    /// Loads `svid` with this CA as its trust bundle, as a workload would.
    pub fn credentials(&self, svid: &SvidFiles) -> Result<Credentials, DemoError> {
        let sources = FileSources {
            cert: svid.cert.clone(),
            key: svid.key.clone(),
            bundles: vec![BundleFile {
                trust_domain: None,
                path: self.bundle.clone(),
            }],
        };
        let (credentials, _watcher) =
            FileWatcher::load(sources).map_err(|e| DemoError::Identity(e.to_string()))?;
        Ok(credentials)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, DemoError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| DemoError::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok(path)
}
