//! The X.509-SVID rules for a leaf certificate, checked on its own (no path building).

use rustls_pki_types::UnixTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::id::SpiffeId;
use crate::verify::VerifyError;

/// What an SVID leaf says about itself once the X.509-SVID rules hold.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(crate) id: SpiffeId,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// Checks the X509-SVID leaf rules: parseable, exactly one URI SAN holding a valid SPIFFE ID,
/// not a CA, digitalSignature set, keyCertSign and cRLSign clear.
pub(crate) fn inspect_leaf(der: &[u8]) -> Result<Leaf, VerifyError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| VerifyError::MalformedCertificate {
            index: 0,
            reason: e.to_string(),
        })?;
    let id = spiffe_id_of(&cert)?;
    if cert.is_ca() {
        return Err(VerifyError::LeafIsCa);
    }
    let usage = cert
        .key_usage()
        .map_err(|e| VerifyError::MalformedCertificate {
            index: 0,
            reason: e.to_string(),
        })?
        .map(|ext| *ext.value);
    let Some(usage) = usage else {
        return Err(VerifyError::MissingDigitalSignature);
    };
    if usage.key_cert_sign() {
        return Err(VerifyError::LeafCanSign("keyCertSign"));
    }
    if usage.crl_sign() {
        return Err(VerifyError::LeafCanSign("cRLSign"));
    }
    if !usage.digital_signature() {
        return Err(VerifyError::MissingDigitalSignature);
    }
    let validity = cert.validity();
    Ok(Leaf {
        id,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

impl Leaf {
    /// Fails with `Expired`/`NotYetValid` when `now` is outside the validity window.
    pub(crate) fn check_time(&self, now: UnixTime) -> Result<(), VerifyError> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now > self.not_after {
            return Err(VerifyError::Expired);
        }
        if now < self.not_before {
            return Err(VerifyError::NotYetValid);
        }
        Ok(())
    }
}

fn spiffe_id_of(cert: &X509Certificate<'_>) -> Result<SpiffeId, VerifyError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| VerifyError::MalformedCertificate {
            index: 0,
            reason: e.to_string(),
        })?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(VerifyError::NoUriSan),
        [uri] => uri.parse().map_err(|source| VerifyError::InvalidSpiffeId {
            uri: (*uri).to_owned(),
            source,
        }),
        more => Err(VerifyError::MultipleUriSans(more.len())),
    }
}
