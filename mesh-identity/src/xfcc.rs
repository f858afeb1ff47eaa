//! `x-forwarded-client-cert` (XFCC): what an Istio sidecar tells the app about the verified
//! mTLS peer, in Envoy's format.

use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use crate::id::SpiffeId;

/// The XFCC header name.
pub const XFCC: &str = "x-forwarded-client-cert";

/// The XFCC element Envoy appends for a verified mTLS peer with Istio's sidecar settings
/// (`APPEND_FORWARD`, subject, URI and DNS): `By=<our SPIFFE ID>;Hash=<hex SHA-256 of the
/// peer's certificate>;Subject="<its subject>";URI=<its URI SANs>;DNS=<its DNS SANs>`.
/// `None` when the certificate does not parse (the handshake already verified it, so that
/// does not happen for a peer our verifier accepted).
///
/// ```
/// # use mesh_identity::{SpiffeId, client_cert_element};
/// let key = rcgen::KeyPair::generate().unwrap();
/// let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
/// params.distinguished_name = rcgen::DistinguishedName::new();
/// params.subject_alt_names =
///     vec![rcgen::SanType::URI("spiffe://cluster.local/ns/default/sa/sleep".try_into().unwrap())];
/// let cert = params.self_signed(&key).unwrap();
/// let us: SpiffeId = "spiffe://cluster.local/ns/default/sa/details".parse().unwrap();
/// let element = client_cert_element(&us, cert.der()).unwrap();
/// assert!(element.starts_with("By=spiffe://cluster.local/ns/default/sa/details;Hash="));
/// assert!(element.ends_with(";Subject=\"\";URI=spiffe://cluster.local/ns/default/sa/sleep"));
/// ```
pub fn client_cert_element(local: &SpiffeId, peer_leaf_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(peer_leaf_der).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, peer_leaf_der);
    let mut out = format!("By={local};Hash=");
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push_str(";Subject=\"");
    out.push_str(&rfc2253(&cert).replace('"', "\\\""));
    out.push('"');
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push(*u),
                GeneralName::DNSName(d) => dns.push(*d),
                _ => {}
            }
        }
    }
    if uris.is_empty() {
        out.push_str(";URI=");
    }
    for u in uris {
        out.push_str(";URI=");
        out.push_str(u);
    }
    for d in dns {
        out.push_str(";DNS=");
        out.push_str(d);
    }
    Some(out)
}

/// The subject in RFC 2253 order (last RDN first, `,` between), as Envoy prints it.
fn rfc2253(cert: &X509Certificate<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut rdns: Vec<String> = (cert.subject().iter())
        .map(|rdn| {
            (rdn.iter())
                .map(|attr| {
                    let name = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                        .map_or_else(|_| attr.attr_type().to_id_string(), str::to_string);
                    let value = attr.as_str().unwrap_or_default().replace(',', "\\,");
                    format!("{name}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_printed_last_rdn_first_and_dns_sans_listed() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["web.example".to_string()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Acme");
        dn.push(rcgen::DnType::CommonName, "web");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        let us: SpiffeId = "spiffe://td/ns/a/sa/b".parse().unwrap();
        let e = client_cert_element(&us, cert.der()).unwrap();
        let hash = e.split(';').nth(1).unwrap().strip_prefix("Hash=").unwrap();
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(
            e.contains(";Subject=\"CN=web,O=Acme\";URI=;DNS=web.example"),
            "{e}"
        );
    }
}
