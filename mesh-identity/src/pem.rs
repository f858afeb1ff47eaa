//! Certificate chains and private keys from PEM or DER bytes.
//!
//! Pure parsing with no policy: what the certificates say is checked by [`crate::verify`].

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why certificate or key bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// The input held no certificate (or no key).
    #[error("no {0} found")]
    NothingFound(&'static str),
    /// PEM framing or base64 was broken.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A DER certificate sequence was truncated or not a DER SEQUENCE.
    #[error("invalid DER at byte {offset}: {reason}")]
    Der {
        /// Byte offset of the element that could not be read.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Reads a certificate chain, leaf first, from PEM (`CERTIFICATE` sections; other sections
/// are skipped) or from concatenated DER certificates as the SPIFFE Workload API sends them.
///
/// The format is detected from the first non-whitespace bytes. Certificates are split, not
/// validated: a malformed certificate is reported by verification, with its index.
pub fn parse_certificates(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = if looks_like_pem(input) {
        CertificateDer::pem_slice_iter(input)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PemError::Pem(e.to_string()))?
    } else {
        split_der(input)?
    };
    if certs.is_empty() {
        return Err(PemError::NothingFound("certificate"));
    }
    Ok(certs)
}

/// Reads one private key (PKCS#8, PKCS#1 or SEC1) from PEM or DER.
pub fn parse_private_key(input: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    if looks_like_pem(input) {
        PrivateKeyDer::from_pem_slice(input).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => PemError::NothingFound("private key"),
            other => PemError::Pem(other.to_string()),
        })
    } else {
        PrivateKeyDer::try_from(input.to_vec()).map_err(|_| PemError::Der {
            offset: 0,
            reason: "not a PKCS#8, PKCS#1 or SEC1 private key",
        })
    }
}

fn looks_like_pem(input: &[u8]) -> bool {
    let start = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(input.len());
    input[start..].starts_with(b"-----BEGIN")
}

/// Splits concatenated DER SEQUENCEs by their (definite) lengths.
fn split_der(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let mut certs = Vec::new();
    let mut offset = 0;
    while offset < input.len() {
        let len =
            der_element_len(&input[offset..]).map_err(|reason| PemError::Der { offset, reason })?;
        certs.push(CertificateDer::from(input[offset..offset + len].to_vec()));
        offset += len;
    }
    Ok(certs)
}

/// Total length (header + content) of the DER SEQUENCE at the start of `input`.
fn der_element_len(input: &[u8]) -> Result<usize, &'static str> {
    let (&tag, rest) = input.split_first().ok_or("empty input")?;
    if tag != 0x30 {
        return Err("expected a SEQUENCE");
    }
    let (&first, rest) = rest.split_first().ok_or("truncated length")?;
    let (content_len, header_len) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err("unsupported length encoding");
        }
        let bytes = rest.get(..n).ok_or("truncated length")?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let total = header_len
        .checked_add(content_len)
        .ok_or("length overflow")?;
    if total > input.len() {
        return Err("truncated element");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_sequences_are_split_by_length() {
        let a = [0x30, 0x01, 0xaa];
        let mut b = vec![0x30, 0x81, 0x80];
        b.extend(std::iter::repeat_n(0u8, 0x80));
        let input = [a.as_slice(), b.as_slice()].concat();
        let certs = parse_certificates(&input).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), a);
        assert_eq!(certs[1].len(), b.len());
    }

    #[test]
    fn truncated_der_is_an_error_with_offset() {
        let input = [0x30, 0x01, 0xaa, 0x30, 0x05, 0x00];
        assert_eq!(
            parse_certificates(&input),
            Err(PemError::Der {
                offset: 3,
                reason: "truncated element"
            })
        );
    }

    #[test]
    fn empty_input_finds_nothing() {
        assert_eq!(
            parse_certificates(b""),
            Err(PemError::NothingFound("certificate"))
        );
        assert_eq!(
            parse_certificates(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(PemError::NothingFound("certificate"))
        );
    }

    #[test]
    fn broken_pem_is_reported() {
        let input = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_certificates(input), Err(PemError::Pem(_))));
    }
}
