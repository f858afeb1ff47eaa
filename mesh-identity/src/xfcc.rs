//! `x-forwarded-client-cert` (XFCC): what an Istio sidecar tells the app about the verified
//! mTLS peer, in Envoy's format.

use http::{HeaderMap, HeaderValue};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use crate::id::SpiffeId;

/// The XFCC header name.
pub const XFCC: &str = "x-forwarded-client-cert";

/// The XFCC element Envoy writes for a verified mTLS peer with Istio's settings (subject, URI
/// and DNS): `By=<our SPIFFE ID>;Hash=<hex SHA-256 of the peer's certificate>;Subject="<its
/// subject>";URI=<its URI SANs>;DNS=<its DNS SANs>` (`By` omitted when `local` is `None`: a
/// server certificate without a SPIFFE ID). `None` when the certificate does not parse (the
/// handshake already verified it, so that does not happen for a peer a verifier accepted).
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
/// let element = client_cert_element(Some(&us), cert.der()).unwrap();
/// assert!(element.starts_with("By=spiffe://cluster.local/ns/default/sa/details;Hash="));
/// assert!(element.ends_with(";Subject=\"\";URI=spiffe://cluster.local/ns/default/sa/sleep"));
/// ```
pub fn client_cert_element(local: Option<&SpiffeId>, peer_leaf_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(peer_leaf_der).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, peer_leaf_der);
    let mut out = match local {
        Some(local) => format!("By={local};Hash="),
        None => "Hash=".to_string(),
    };
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

/// What a proxy does with `x-forwarded-client-cert` (Envoy's `forward_client_cert_details`,
/// Istio's `gatewayTopology.forwardClientCertDetails`). "mTLS" below means the client
/// presented a verified certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardClientCert {
    /// `SANITIZE`: never forward it.
    Sanitize,
    /// `FORWARD_ONLY`: forward the client's unchanged on mTLS, remove it otherwise.
    ForwardOnly,
    /// `APPEND_FORWARD`: on mTLS append the peer's element; remove it otherwise (Istio's
    /// sidecar inbound).
    AppendForward,
    /// `SANITIZE_SET`: on mTLS replace it with the peer's element; remove it otherwise
    /// (Istio's gateway default).
    #[default]
    SanitizeSet,
    /// `ALWAYS_FORWARD_ONLY`: forward whatever the client sent.
    AlwaysForwardOnly,
}

impl ForwardClientCert {
    /// Parses Istio's name (`SANITIZE`, `FORWARD_ONLY`, `APPEND_FORWARD`, `SANITIZE_SET`,
    /// `ALWAYS_FORWARD_ONLY`; `UNDEFINED` is the default, `SANITIZE_SET`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "SANITIZE" => Self::Sanitize,
            "FORWARD_ONLY" => Self::ForwardOnly,
            "APPEND_FORWARD" => Self::AppendForward,
            "SANITIZE_SET" | "UNDEFINED" => Self::SanitizeSet,
            "ALWAYS_FORWARD_ONLY" => Self::AlwaysForwardOnly,
            _ => return None,
        })
    }

    /// Applies the mode to a request's headers; `peer` is the verified client's element
    /// ([`client_cert_element`]) on mTLS connections, `None` otherwise.
    ///
    /// ```
    /// use mesh_identity::{ForwardClientCert, XFCC};
    /// let mut h = http::HeaderMap::new();
    /// h.insert(XFCC, "By=spoofed".parse().unwrap());
    /// ForwardClientCert::SanitizeSet.apply(&mut h, None);
    /// assert!(!h.contains_key(XFCC));
    /// ```
    pub fn apply(self, headers: &mut HeaderMap, peer: Option<&HeaderValue>) {
        match (self, peer) {
            (Self::AlwaysForwardOnly, _) | (Self::ForwardOnly, Some(_)) => {}
            (Self::Sanitize, _) | (_, None) => {
                headers.remove(XFCC);
            }
            (Self::SanitizeSet, Some(peer)) => {
                headers.insert(XFCC, peer.clone());
            }
            (Self::AppendForward, Some(peer)) => {
                let joined = match headers.get(XFCC) {
                    None => peer.clone(),
                    Some(before) => {
                        let mut v = before.as_bytes().to_vec();
                        v.push(b',');
                        v.extend_from_slice(peer.as_bytes());
                        HeaderValue::from_bytes(&v).unwrap_or_else(|_| peer.clone())
                    }
                };
                headers.insert(XFCC, joined);
            }
        }
    }
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
        let e = client_cert_element(Some(&us), cert.der()).unwrap();
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

    #[test]
    fn a_server_without_spiffe_id_writes_no_by() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["web.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(
            client_cert_element(None, cert.der())
                .unwrap()
                .starts_with("Hash=")
        );
    }

    #[test]
    fn each_mode_does_what_envoy_does() {
        let peer = HeaderValue::from_static("By=us;URI=spiffe://peer");
        let run = |mode: ForwardClientCert, mtls: bool| {
            let mut h = HeaderMap::new();
            h.insert(XFCC, HeaderValue::from_static("By=client"));
            mode.apply(&mut h, mtls.then_some(&peer));
            h.get(XFCC).map(|v| v.to_str().unwrap().to_string())
        };
        use ForwardClientCert::*;
        assert_eq!(run(Sanitize, true), None);
        assert_eq!(run(ForwardOnly, true).as_deref(), Some("By=client"));
        assert_eq!(run(ForwardOnly, false), None);
        assert_eq!(
            run(AppendForward, true).as_deref(),
            Some("By=client,By=us;URI=spiffe://peer")
        );
        assert_eq!(run(AppendForward, false), None);
        assert_eq!(
            run(SanitizeSet, true).as_deref(),
            Some("By=us;URI=spiffe://peer")
        );
        assert_eq!(run(SanitizeSet, false), None);
        assert_eq!(run(AlwaysForwardOnly, false).as_deref(), Some("By=client"));
        assert_eq!(ForwardClientCert::parse("UNDEFINED"), Some(SanitizeSet));
        assert_eq!(ForwardClientCert::parse("bogus"), Option::None);
    }
}
