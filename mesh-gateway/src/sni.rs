//! A pure ClientHello reader: the SNI and ALPN of a TLS connection, read without terminating it.
//!
//! Bytes arrive as the network delivers them, so the reader accepts any prefix of the stream
//! and says whether it needs more. It reassembles a handshake message fragmented over several
//! TLS records, bounds how much it will buffer, and rejects anything malformed with the reason.

/// The largest ClientHello we buffer. Real ones are a few hundred bytes (post-quantum key
/// shares push them past 1 KiB); 16 KiB is one full TLS record and ample.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;

/// What a ClientHello says about where the connection wants to go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The `server_name` host name, lowercased; `None` when the client sent no SNI.
    pub server_name: Option<String>,
    /// ALPN protocols offered, in the client's order.
    pub alpn: Vec<Vec<u8>>,
}

/// Why bytes are not a usable ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    /// The first record is not a TLS handshake record.
    #[error("not a TLS handshake")]
    NotTls,
    /// The handshake message is not a ClientHello.
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    /// The ClientHello is larger than [`MAX_CLIENT_HELLO`].
    #[error("ClientHello larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    /// A length or field is inconsistent; the text names which.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

/// Parses the ClientHello at the start of `stream`: `Ok(None)` means "need more bytes".
///
/// ```
/// use mesh_gateway::sni::parse_client_hello;
/// assert_eq!(parse_client_hello(&[0x16, 0x03, 0x01]), Ok(None)); // a prefix: read more
/// assert!(parse_client_hello(b"GET / HTTP/1.1\r\n").is_err());    // not TLS at all
/// ```
pub fn parse_client_hello(stream: &[u8]) -> Result<Option<ClientHello>, SniError> {
    let mut handshake = Vec::new();
    let mut rest = stream;
    loop {
        // Reassemble the handshake message from as many records as it spans.
        if let Some(total) = handshake_len(&handshake)? {
            if handshake.len() >= total {
                return parse_body(&handshake[4..total]).map(Some);
            }
        }
        if rest.len() < RECORD_HEADER {
            return check_record_prefix(rest).map(|()| None);
        }
        if rest[0] != CONTENT_HANDSHAKE || rest[1] != 3 {
            return Err(SniError::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 {
            return Err(SniError::Malformed("empty handshake record"));
        }
        if len > MAX_CLIENT_HELLO + 2048 {
            return Err(SniError::Malformed("record longer than TLS allows"));
        }
        let Some(fragment) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            // Use what has arrived to fail early on garbage, but we need the whole record.
            let partial = &rest[RECORD_HEADER..];
            handshake.extend_from_slice(partial);
            handshake_len(&handshake)?;
            return Ok(None);
        };
        handshake.extend_from_slice(fragment);
        if handshake.len() > MAX_CLIENT_HELLO + 4 {
            return Err(SniError::TooLarge);
        }
        rest = &rest[RECORD_HEADER + len..];
    }
}

/// A short prefix can still be rejected when its first bytes are not a handshake record.
fn check_record_prefix(prefix: &[u8]) -> Result<(), SniError> {
    match prefix {
        [] => Ok(()),
        [CONTENT_HANDSHAKE] | [CONTENT_HANDSHAKE, 3, ..] => Ok(()),
        _ => Err(SniError::NotTls),
    }
}

/// Total length (header included) of the handshake message, once its header has arrived.
fn handshake_len(handshake: &[u8]) -> Result<Option<usize>, SniError> {
    match handshake {
        [t, ..] if *t != HANDSHAKE_CLIENT_HELLO => Err(SniError::NotClientHello),
        [_, a, b, c, ..] => {
            let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
            if len > MAX_CLIENT_HELLO {
                Err(SniError::TooLarge)
            } else {
                Ok(Some(len + 4))
            }
        }
        _ => Ok(None),
    }
}

/// A cursor over a byte slice whose reads fail with the name of the field being read.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, SniError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, SniError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a `width`-byte length prefix.
    fn vec(&mut self, width: usize, what: &'static str) -> Result<Reader<'a>, SniError> {
        let len = match width {
            1 => usize::from(self.u8(what)?),
            _ => usize::from(self.u16(what)?),
        };
        self.take(len, what).map(Reader)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_body(body: &[u8]) -> Result<ClientHello, SniError> {
    let mut r = Reader(body);
    let version = r.u16("legacy_version")?;
    if version >> 8 != 3 {
        return Err(SniError::Malformed("legacy_version"));
    }
    r.take(32, "random")?;
    if r.vec(1, "session_id")?.0.len() > 32 {
        return Err(SniError::Malformed("session_id longer than 32 bytes"));
    }
    let suites = r.vec(2, "cipher_suites")?;
    if suites.0.is_empty() || suites.0.len() % 2 != 0 {
        return Err(SniError::Malformed("cipher_suites"));
    }
    if r.vec(1, "compression_methods")?.is_empty() {
        return Err(SniError::Malformed("compression_methods"));
    }
    let mut hello = ClientHello::default();
    if r.is_empty() {
        return Ok(hello); // No extensions at all (old clients): no SNI.
    }
    let mut exts = r.vec(2, "extensions")?;
    if !r.is_empty() {
        return Err(SniError::Malformed("bytes after extensions"));
    }
    let mut seen = Vec::new();
    while !exts.is_empty() {
        let kind = exts.u16("extension type")?;
        let mut data = exts.vec(2, "extension length")?;
        if seen.contains(&kind) {
            return Err(SniError::Malformed("duplicate extension"));
        }
        seen.push(kind);
        match kind {
            EXT_SERVER_NAME => hello.server_name = parse_server_name(&mut data)?,
            EXT_ALPN => hello.alpn = parse_alpn(&mut data)?,
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_server_name(data: &mut Reader<'_>) -> Result<Option<String>, SniError> {
    let mut list = data.vec(2, "server_name list")?;
    if !data.is_empty() || list.is_empty() {
        return Err(SniError::Malformed("server_name list"));
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8("server_name type")?;
        let name = list.vec(2, "server_name")?.0;
        if name_type != 0 {
            continue; // Unknown name types are skipped, as RFC 6066 allows.
        }
        if host.is_some() {
            return Err(SniError::Malformed("more than one host_name"));
        }
        let valid = !name.is_empty()
            && name.len() <= 255
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err(SniError::Malformed("host_name is not a DNS name"));
        }
        host = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
    }
    Ok(host)
}

fn parse_alpn(data: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, SniError> {
    let mut list = data.vec(2, "alpn list")?;
    if !data.is_empty() || list.is_empty() {
        return Err(SniError::Malformed("alpn list"));
    }
    let mut out = Vec::new();
    while !list.is_empty() {
        let proto = list.vec(1, "alpn protocol")?.0;
        if proto.is_empty() {
            return Err(SniError::Malformed("empty alpn protocol"));
        }
        out.push(proto.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with the given extensions block (already length-prefixed inside).
    fn hello_with_extensions(exts: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one cipher suite
        body.extend([1, 0]); // null compression
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![
            HANDSHAKE_CLIENT_HELLO,
            0,
            (body.len() >> 8) as u8,
            body.len() as u8,
        ];
        hs.extend(body);
        hs
    }

    fn records(handshake: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in handshake.chunks(chunk) {
            out.extend([CONTENT_HANDSHAKE, 3, 1]);
            out.extend((part.len() as u16).to_be_bytes());
            out.extend(part);
        }
        out
    }

    fn sni_ext(host: &[u8]) -> Vec<u8> {
        let mut entry = vec![0];
        entry.extend((host.len() as u16).to_be_bytes());
        entry.extend(host);
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend(entry);
        let mut ext = EXT_SERVER_NAME.to_be_bytes().to_vec();
        ext.extend((list.len() as u16).to_be_bytes());
        ext.extend(list);
        ext
    }

    #[test]
    fn every_prefix_needs_more_and_the_whole_parses() {
        let bytes = records(&hello_with_extensions(&sni_ext(b"API.Example.com")), 1000);
        for cut in 0..bytes.len() {
            assert_eq!(parse_client_hello(&bytes[..cut]), Ok(None), "prefix {cut}");
        }
        let hello = parse_client_hello(&bytes).unwrap().unwrap();
        assert_eq!(hello.server_name.as_deref(), Some("api.example.com"));
    }

    #[test]
    fn handshake_fragmented_over_records_is_reassembled() {
        let bytes = records(&hello_with_extensions(&sni_ext(b"a.example")), 7);
        assert_eq!(
            parse_client_hello(&bytes)
                .unwrap()
                .unwrap()
                .server_name
                .as_deref(),
            Some("a.example")
        );
    }

    #[test]
    fn no_extensions_means_no_sni() {
        let mut hs = hello_with_extensions(&[]);
        // Drop the (empty) extensions length entirely, as pre-TLS-1.2 clients may.
        hs.truncate(hs.len() - 2);
        let len = hs.len() - 4;
        hs[3] = len as u8;
        assert_eq!(
            parse_client_hello(&records(&hs, 1000))
                .unwrap()
                .unwrap()
                .server_name,
            None
        );
    }

    #[test]
    fn malformed_hellos_are_rejected_with_a_reason() {
        assert_eq!(
            parse_client_hello(b"\x17\x03\x03\x00\x01x"),
            Err(SniError::NotTls)
        );
        assert_eq!(
            parse_client_hello(&records(&[2, 0, 0, 0], 100)),
            Err(SniError::NotClientHello)
        );
        let mut dup = sni_ext(b"a.com");
        dup.extend(sni_ext(b"b.com"));
        assert_eq!(
            parse_client_hello(&records(&hello_with_extensions(&dup), 1000)),
            Err(SniError::Malformed("duplicate extension"))
        );
        assert_eq!(
            parse_client_hello(&records(
                &hello_with_extensions(&sni_ext(b"bad host")),
                1000
            )),
            Err(SniError::Malformed("host_name is not a DNS name"))
        );
        // An extension whose length runs past the block.
        let mut bad = sni_ext(b"a.com");
        bad[3] += 10;
        assert!(matches!(
            parse_client_hello(&records(&hello_with_extensions(&bad), 1000)),
            Err(SniError::Malformed(_))
        ));
        // A handshake claiming more than we buffer.
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0, 4, 1, 0x01, 0, 0]),
            Err(SniError::TooLarge)
        );
    }
}
