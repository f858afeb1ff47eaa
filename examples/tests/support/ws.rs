//! A real WebSocket echo server (tokio-tungstenite) for the protocol tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Echoes every text and binary message; on a text message `flood`, sends 64 KiB binary
/// messages without end instead, counting the bytes it managed to send in `flooded`.
pub async fn echo_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let flooded = Arc::new(AtomicU64::new(0));
    let counter = flooded.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    match m {
                        Message::Text(t) if t.as_str() == "flood" => {
                            let chunk = vec![7u8; 64 * 1024];
                            while ws.send(Message::binary(chunk.clone())).await.is_ok() {
                                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            }
                            return;
                        }
                        Message::Text(_) | Message::Binary(_) => {
                            let sent = ws.send(m).await;
                            if sent.is_err() {
                                return;
                            }
                        }
                        Message::Close(_) => {
                            // tungstenite answers the close handshake itself.
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, flooded)
}
