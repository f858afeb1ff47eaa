//! Accepting inbound connections per mTLS mode over loopback TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::Ca;
use mesh_identity::{ClientAuth, Credentials, IdMatcher, Inbound, MtlsMode, accept_inbound};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CLIENT: &str = "spiffe://td/ns/default/sa/client";

struct Setup {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    listener: TcpListener,
}

async fn setup(auth: ClientAuth) -> Setup {
    let ca = Ca::root("root");
    let server = Credentials::new(ca.svid("spiffe://td/server"), ca.bundle_set("td"));
    let client = Credentials::new(ca.svid(CLIENT), ca.bundle_set("td"));
    Setup {
        acceptor: TlsAcceptor::from(Arc::new(server.server_config(auth).unwrap())),
        connector: TlsConnector::from(Arc::new(client.client_config(IdMatcher::Any).unwrap())),
        listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    }
}

async fn accept_one(s: &Setup, mode: MtlsMode, tls: bool) -> std::io::Result<Inbound> {
    let addr = s.listener.local_addr().unwrap();
    let connector = s.connector.clone();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        if tls {
            let name = ServerName::try_from("x.invalid").unwrap();
            if let Ok(mut stream) = connector.connect(name, tcp).await {
                let _ = stream.write_all(b"hi").await;
                let mut buf = [0u8; 1];
                let _ = stream.read(&mut buf).await;
            }
        } else {
            let mut tcp = tcp;
            let _ = tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
            let mut buf = [0u8; 1];
            let _ = tcp.read(&mut buf).await;
        }
    });
    let (tcp, _) = s.listener.accept().await.unwrap();
    let result = accept_inbound(tcp, &s.acceptor, mode).await;
    client.abort();
    result
}

#[tokio::test]
async fn strict_refuses_plaintext_and_accepts_mtls_with_peer_identity() {
    let s = setup(ClientAuth::Required(IdMatcher::Any)).await;
    let err = accept_one(&s, MtlsMode::Strict, false).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    match accept_one(&s, MtlsMode::Strict, true).await.unwrap() {
        Inbound::Tls(_, Some(peer)) => assert_eq!(peer.0.to_string(), CLIENT),
        other => panic!("expected mTLS with a peer, got {other:?}"),
    }
}

#[tokio::test]
async fn permissive_accepts_both_plaintext_and_mtls() {
    let s = setup(ClientAuth::Optional(IdMatcher::Any)).await;
    assert!(matches!(
        accept_one(&s, MtlsMode::Permissive, false).await.unwrap(),
        Inbound::Plaintext(_)
    ));
    match accept_one(&s, MtlsMode::Permissive, true).await.unwrap() {
        Inbound::Tls(_, Some(peer)) => assert_eq!(peer.0.to_string(), CLIENT),
        other => panic!("expected mTLS with a peer, got {other:?}"),
    }
}

#[tokio::test]
async fn disable_never_terminates_tls() {
    let s = setup(ClientAuth::Optional(IdMatcher::Any)).await;
    assert!(matches!(
        accept_one(&s, MtlsMode::Disable, true).await.unwrap(),
        Inbound::Plaintext(_)
    ));
}
