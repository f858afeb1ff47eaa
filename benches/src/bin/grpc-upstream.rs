//! The load comparison's gRPC upstream: an HTTP/2 (h2c) server that answers every call with
//! one small gRPC message and `grpc-status: 0` in the trailers, after reading the request to
//! its end, as a unary gRPC server does. Both proxies under test (nginx's `grpc_pass` and
//! mesh-proxy's GRPC port) forward to it.
//!
//! ```text
//! grpc-upstream --listen 127.0.0.1:18085
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Flags.
#[derive(Debug, Parser)]
struct Args {
    /// Where to listen (h2c).
    #[arg(long)]
    listen: SocketAddr,
}

/// One gRPC frame: uncompressed, 4 bytes of protobuf (field 1, the string `ok`).
const REPLY: &[u8] = &[0, 0, 0, 0, 4, 0x0a, 0x02, b'o', b'k'];

type ReplyBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn call(req: Request<Incoming>) -> Result<Response<ReplyBody>, Infallible> {
    // Read the call whole, as a unary server does.
    let _ = req.into_body().collect().await;
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from_static(REPLY))
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(call))
                .await;
        });
    }
}
