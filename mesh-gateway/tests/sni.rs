//! The ClientHello reader against real ClientHellos written by rustls, delivered in pieces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use mesh_gateway::sni::parse_client_hello;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

fn rustls_client_hello(server_name: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let mut conn = ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(server_name.to_string()).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[test]
fn reads_sni_and_alpn_from_a_rustls_client_hello() {
    let bytes = rustls_client_hello("Reviews.Bookinfo.svc.cluster.local", &[b"h2", b"http/1.1"]);
    let hello = parse_client_hello(&bytes).unwrap().unwrap();
    assert_eq!(
        hello.server_name.as_deref(),
        Some("reviews.bookinfo.svc.cluster.local")
    );
    assert_eq!(hello.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
}

#[test]
fn hello_split_across_reads_is_incomplete_until_the_last_byte() {
    let bytes = rustls_client_hello("outbound_.443_.v1_.reviews.default.svc.cluster.local", &[]);
    let mut received = Vec::new();
    for chunk in bytes.chunks(37) {
        received.extend_from_slice(chunk);
        let parsed = parse_client_hello(&received).unwrap();
        assert_eq!(parsed.is_some(), received.len() == bytes.len());
    }
}

#[test]
fn ip_address_server_names_send_no_sni() {
    let bytes = rustls_client_hello("127.0.0.1", &[]);
    assert_eq!(
        parse_client_hello(&bytes).unwrap().unwrap().server_name,
        None
    );
}
