//! A real gRPC service for the protocol tests, written against tonic's server and client
//! primitives (what tonic's code generator emits), with prost messages: unary, server
//! streaming, bidirectional streaming and a slow call, as `test.Echo`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The one message type: some text and a number.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub n: u32,
}

pub fn msg(text: &str, n: u32) -> Msg {
    Msg {
        text: text.to_string(),
        n,
    }
}

/// Trailing metadata the streaming calls end with (with `Code::Aborted`, so that tonic puts
/// it into the trailers after the messages).
pub const TRAILER: &str = "x-checksum";

/// Starts `test.Echo` on a loopback port (HTTP/2, and HTTP/1.1 for the version tests);
/// `name` goes into every reply.
pub async fn server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| async move {
                Ok::<_, Infallible>(dispatch(name, req).await)
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .into_owned(),
            );
        }
    });
    addr
}

fn codec() -> ProstCodec<Msg, Msg> {
    ProstCodec::default()
}

async fn dispatch(
    name: &'static str,
    req: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let mut grpc = tonic::server::Grpc::new(codec());
    match req.uri().path() {
        "/test.Echo/Unary" => {
            let svc = tower::service_fn(move |r: Request<Msg>| async move {
                let m = r.into_inner();
                Ok::<_, Status>(Response::new(msg(&format!("{name}: {}", m.text), m.n)))
            });
            grpc.unary(svc, req).await
        }
        "/test.Echo/Slow" => {
            let svc = tower::service_fn(move |r: Request<Msg>| async move {
                tokio::time::sleep(Duration::from_millis(u64::from(r.get_ref().n))).await;
                Ok::<_, Status>(Response::new(msg(name, 0)))
            });
            grpc.unary(svc, req).await
        }
        "/test.Echo/Count" => {
            // Server streaming: `n` messages, then a status with trailing metadata.
            let svc = tower::service_fn(move |r: Request<Msg>| async move {
                let n = r.get_ref().n;
                let items = (0..n).map(move |i| Ok(msg(name, i)));
                let mut md = MetadataMap::new();
                md.insert(TRAILER, n.to_string().parse().unwrap());
                let end = Status::with_metadata(Code::Aborted, "counted", md);
                let stream = futures_util::stream::iter(items.chain(std::iter::once(Err(end))));
                Ok::<_, Status>(Response::new(stream.boxed()))
            });
            grpc.server_streaming(svc, req).await
        }
        "/test.Echo/Chat" => {
            // Bidirectional: every message echoed at once, as it arrives.
            let svc = tower::service_fn(move |r: Request<Streaming<Msg>>| async move {
                let echoed = r
                    .into_inner()
                    .map(move |m| m.map(|m| msg(&format!("{name}: {}", m.text), m.n)));
                Ok::<_, Status>(Response::new(echoed.boxed()))
            });
            grpc.streaming(svc, req).await
        }
        _ => Status::unimplemented("no such method").into_http(),
    }
}

/// A tonic client to `127.0.0.1:port` whose requests carry `:authority` `authority`.
pub async fn client(port: u16, authority: &str) -> tonic::client::Grpc<Channel> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

pub async fn unary(
    c: &mut tonic::client::Grpc<Channel>,
    method: &'static str,
    req: Request<Msg>,
) -> Result<Msg, Status> {
    c.ready().await.unwrap();
    let path = PathAndQuery::from_static(method);
    c.unary(req, path, codec()).await.map(Response::into_inner)
}

/// `Count` with `n`: the messages, and the final status (with its trailing metadata).
pub async fn count(c: &mut tonic::client::Grpc<Channel>, n: u32) -> (Vec<Msg>, Status) {
    c.ready().await.unwrap();
    let path = PathAndQuery::from_static("/test.Echo/Count");
    let mut stream = c
        .server_streaming(Request::new(msg("", n)), path, codec())
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(m)) => got.push(m),
            Some(Err(status)) => return (got, status),
            None => panic!("the stream ended without its status"),
        }
    }
}

/// `Chat`: sends `n` messages one at a time, each only after the previous echo came back
/// (so nothing may be buffered on the way), then closes; returns the echoes.
pub async fn chat(c: &mut tonic::client::Grpc<Channel>, n: u32) -> Vec<Msg> {
    c.ready().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let outbound = tokio_stream_from(rx);
    let path = PathAndQuery::from_static("/test.Echo/Chat");
    tx.send(msg("0", 0)).await.unwrap();
    let mut inbound = c
        .streaming(Request::new(outbound), path, codec())
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for i in 1..=n {
        let m = tokio::time::timeout(Duration::from_secs(10), inbound.next())
            .await
            .expect("an echo did not come back: the stream is buffered somewhere")
            .unwrap()
            .unwrap();
        got.push(m);
        if i < n {
            tx.send(msg(&i.to_string(), i)).await.unwrap();
        }
    }
    drop(tx);
    assert!(inbound.next().await.is_none_or(|r| r.is_ok()));
    got
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A message as one gRPC length-prefixed frame (uncompressed).
pub fn frame(m: &Msg) -> bytes::Bytes {
    use prost::Message as _;
    let body = m.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out.into()
}
