//! The demo's streaming traffic: an HTTP/2 (h2c) client on the canary split, a gRPC call
//! whose reply streams (tonic on both ends) and a WebSocket echo (tokio-tungstenite on both
//! ends), all through the proxy's outbound listener.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::uri::PathAndQuery;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::DemoError;
use super::scenarios::Check;
use super::servers::{Upstream, bind};

const REVIEWS: &str = "reviews.default.svc.cluster.local";
const CATALOG: &str = "catalog.default.svc.cluster.local:50051";
const CHAT: &str = "chat.default.svc.cluster.local";
/// Items the catalog streams back.
const ITEMS: u32 = 100;

/// One catalog item.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Item {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its position in the stream.
    #[prost(uint32, tag = "2")]
    pub index: u32,
}

type Codec = tonic_prost::ProstCodec<Item, Item>;

/// A gRPC server (tonic) with one server-streaming method, `catalog.Catalog/List`: as many
/// items as the request's `index` asks for.
pub(super) async fn grpc_catalog() -> Result<Upstream, DemoError> {
    let (listener, addr) = bind("catalog").await?;
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                counter.fetch_add(1, Ordering::Relaxed);
                async move {
                    if req.uri().path() != "/catalog.Catalog/List" {
                        return Ok::<_, Infallible>(
                            tonic::Status::unimplemented("no such method").into_http(),
                        );
                    }
                    let list = tower::service_fn(|r: tonic::Request<Item>| async move {
                        let n = r.into_inner().index;
                        let items = (0..n).map(|index| {
                            Ok(Item {
                                name: format!("item-{index}"),
                                index,
                            })
                        });
                        Ok::<_, tonic::Status>(tonic::Response::new(futures_util::stream::iter(
                            items,
                        )))
                    });
                    let mut grpc = tonic::server::Grpc::new(Codec::default());
                    Ok(grpc.server_streaming(list, req).await)
                }
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .into_owned(),
            );
        }
    });
    Ok(Upstream::new(addr, hits))
}

/// A WebSocket server (tokio-tungstenite) echoing every message.
pub(super) async fn websocket_echo() -> Result<Upstream, DemoError> {
    let (listener, addr) = bind("chat").await?;
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(Upstream::new(addr, hits))
}

fn failed(what: &str, e: impl std::fmt::Display) -> DemoError {
    DemoError::request(what.to_string(), e.to_string())
}

/// `n` requests to `reviews` from an HTTP/2 client (prior knowledge, one connection), as
/// `curl --http2-prior-knowledge` sends them; the upstreams speak HTTP/1.1.
pub(super) async fn http2_split(outbound: u16, n: usize) -> Result<Check, DemoError> {
    let what = "HTTP/2 to reviews";
    let tcp = TcpStream::connect(("127.0.0.1", outbound))
        .await
        .map_err(|e| failed(what, e))?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| failed(what, e))?;
    tokio::spawn(conn);
    let (mut v1, mut v2, mut other) = (0usize, 0usize, 0usize);
    for i in 0..n {
        let req = Request::get(format!("http://{REVIEWS}/reviews/{i}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(what, e))?;
        let resp = send.send_request(req).await.map_err(|e| failed(what, e))?;
        let ok = resp.status() == StatusCode::OK;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(what, e))?;
        match (ok, body.to_bytes()) {
            (true, b) if b.starts_with(b"reviews-v1 ") => v1 += 1,
            (true, b) if b.starts_with(b"reviews-v2 ") => v2 += 1,
            _ => other += 1,
        }
    }
    let share = 100.0 * v2 as f64 / n.max(1) as f64;
    Ok(Check::new(
        "HTTP/2 client",
        other == 0 && (2.0..=25.0).contains(&share),
        format!(
            "{n} h2c requests on one connection: reviews-v1 {v1}, reviews-v2 {v2} ({share:.1}%){}; the upstreams speak HTTP/1.1",
            if other > 0 {
                format!(", {other} failed")
            } else {
                String::new()
            }
        ),
    ))
}

/// `catalog.Catalog/List` through the outbound listener: a tonic client, a streamed reply.
pub(super) async fn grpc_stream(outbound: u16) -> Result<Check, DemoError> {
    let what = "gRPC catalog.Catalog/List";
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{outbound}"))
        .map_err(|e| failed(what, e))?
        .origin(
            format!("http://{CATALOG}")
                .parse()
                .map_err(|e| failed(what, e))?,
        )
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| failed(what, e))?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(|e| failed(what, e))?;
    let request = tonic::Request::new(Item {
        name: String::new(),
        index: ITEMS,
    });
    let path = PathAndQuery::from_static("/catalog.Catalog/List");
    let mut stream = client
        .server_streaming(request, path, Codec::default())
        .await
        .map_err(|e| failed(what, e))?
        .into_inner();
    let mut received = 0u32;
    let mut status = "OK".to_string();
    while let Some(item) = stream.next().await {
        match item {
            Ok(item) if item.index == received => received += 1,
            Ok(item) => {
                status = format!("out of order at {}", item.index);
                break;
            }
            Err(e) => {
                status = format!("{:?}: {}", e.code(), e.message());
                break;
            }
        }
    }
    Ok(Check::new(
        "gRPC stream",
        received == ITEMS && status == "OK",
        format!(
            "tonic -> outbound (h2c) -> catalog (GRPC port, HTTP/2): {received} of {ITEMS} items streamed, grpc-status {status}"
        ),
    ))
}

/// A WebSocket echo through the outbound listener: the upgrade, three messages, the close.
pub(super) async fn websocket(outbound: u16) -> Result<Check, DemoError> {
    let what = "WebSocket to chat";
    let tcp = TcpStream::connect(("127.0.0.1", outbound))
        .await
        .map_err(|e| failed(what, e))?;
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{CHAT}/room"), tcp)
        .await
        .map_err(|e| failed(what, e))?;
    let mut echoed = 0;
    for text in ["hello", "through", "mesh-proxy"] {
        ws.send(Message::text(text))
            .await
            .map_err(|e| failed(what, e))?;
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        if matches!(back, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text) {
            echoed += 1;
        }
    }
    let closed = ws.close(None).await.is_ok();
    Ok(Check::new(
        "WebSocket",
        resp.status() == StatusCode::SWITCHING_PROTOCOLS && echoed == 3 && closed,
        format!(
            "upgrade -> {}, {echoed} of 3 messages echoed by chat, close handshake {}",
            resp.status().as_u16(),
            if closed { "done" } else { "failed" }
        ),
    ))
}
