//! The SPIFFE bundle JSON format (a JWK set whose `x509-svid` keys carry one root in `x5c`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521};
use x509_parser::public_key::PublicKey;

use crate::bundle::{BundleError, TrustBundle};
use crate::id::TrustDomain;

const X509_SVID_USE: &str = "x509-svid";

#[derive(Deserialize)]
struct BundleDoc {
    keys: Vec<Jwk>,
    #[serde(default)]
    spiffe_sequence: Option<u64>,
    #[serde(default)]
    spiffe_refresh_hint: Option<i64>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(rename = "use")]
    key_use: String,
    #[serde(default)]
    x5c: Option<Vec<String>>,
}

impl TrustBundle {
    /// Parses a SPIFFE bundle (JWK set). `x509-svid` keys must hold exactly one certificate in
    /// `x5c`; keys for other uses (such as `jwt-svid`) are ignored and not written back.
    pub fn from_json(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        let err = |path: String, reason: String| BundleError::Json {
            trust_domain: trust_domain.clone(),
            path,
            reason,
        };
        let de = &mut serde_json::Deserializer::from_slice(json);
        let doc: BundleDoc = serde_path_to_error::deserialize(de)
            .map_err(|e| err(e.path().to_string(), e.inner().to_string()))?;
        let mut roots = Vec::new();
        for (i, key) in doc.keys.iter().enumerate() {
            if key.key_use != X509_SVID_USE {
                continue;
            }
            let x5c = match key.x5c.as_deref() {
                Some([one]) => one,
                Some(list) => {
                    return Err(err(
                        format!("keys[{i}].x5c"),
                        format!("must hold exactly one certificate, found {}", list.len()),
                    ));
                }
                None => return Err(err(format!("keys[{i}].x5c"), "missing".into())),
            };
            let der = STANDARD
                .decode(x5c)
                .map_err(|e| err(format!("keys[{i}].x5c[0]"), e.to_string()))?;
            roots.push(CertificateDer::from(der));
        }
        let mut bundle = Self::from_roots(trust_domain, roots)?;
        bundle.sequence = doc.spiffe_sequence;
        bundle.refresh_hint = doc.spiffe_refresh_hint;
        Ok(bundle)
    }

    /// Writes the bundle as SPIFFE bundle JSON: one `x509-svid` JWK per root, with `kty`, the
    /// public key parameters where the key type is RSA or a NIST EC curve, and `x5c`.
    pub fn to_json(&self) -> String {
        let keys: Vec<Value> = self.roots().iter().map(|root| jwk_for(root)).collect();
        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        if let Some(seq) = self.sequence {
            doc.insert("spiffe_sequence".into(), json!(seq));
        }
        if let Some(hint) = self.refresh_hint {
            doc.insert("spiffe_refresh_hint".into(), json!(hint));
        }
        Value::Object(doc).to_string()
    }
}

fn jwk_for(root: &CertificateDer<'_>) -> Value {
    let mut jwk = Map::new();
    jwk.insert("use".into(), json!(X509_SVID_USE));
    // Roots were parsed when the bundle was built, so this only fails on exotic key types.
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(root) {
        let spki = cert.public_key();
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                jwk.insert("kty".into(), json!("RSA"));
                jwk.insert("n".into(), json!(b64url(strip_zeros(rsa.modulus))));
                jwk.insert("e".into(), json!(b64url(strip_zeros(rsa.exponent))));
            }
            Ok(PublicKey::EC(point)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok());
                let crv = match curve {
                    Some(oid) if oid == OID_EC_P256 => Some(("P-256", 32)),
                    Some(oid) if oid == OID_NIST_EC_P384 => Some(("P-384", 48)),
                    Some(oid) if oid == OID_NIST_EC_P521 => Some(("P-521", 66)),
                    _ => None,
                };
                jwk.insert("kty".into(), json!("EC"));
                let data = point.data();
                if let Some((crv, len)) = crv
                    && data.len() == 1 + 2 * len
                    && data[0] == 0x04
                {
                    jwk.insert("crv".into(), json!(crv));
                    jwk.insert("x".into(), json!(b64url(&data[1..=len])));
                    jwk.insert("y".into(), json!(b64url(&data[1 + len..])));
                }
            }
            _ => {
                jwk.insert("kty".into(), json!("OKP"));
            }
        }
    }
    jwk.insert("x5c".into(), json!([STANDARD.encode(root)]));
    Value::Object(jwk)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
