//! `hyper-floor`: the load comparison's fourth target, a proxy with nothing but the libraries
//! mesh-proxy is built on, to show how far mesh-proxy's own layers are from their floor.
//!
//! It serves HTTP/1.1 and HTTP/2 with hyper-util's auto server (as mesh-proxy's listeners do),
//! sends each request to `--v1` or `--v2` by weight over hyper-util's pooled client, and with
//! `--mirror` also sends a body-less copy of each request to the shadow, fire-and-forget, at
//! most 128 copies in flight (mesh-proxy's default cap; the rest are dropped). It has no
//! routing table, no metrics, no header filters, no retries: what it costs per request is what
//! any proxy on hyper, hyper-util and tokio pays before doing anything.
//!
//! ```text
//! hyper-floor --listen 127.0.0.1:18110 --v1 127.0.0.1:18081 --v2 127.0.0.1:18082 \
//!             [--weights 90,10] [--mirror 127.0.0.1:18083]
//! ```
//! Run it under `TOKIO_WORKER_THREADS=1` and `taskset` as the harness runs mesh-proxy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Copies in flight at most, as mesh-proxy's default mirror cap.
const MIRROR_CAP: usize = 128;

#[derive(Parser, Debug)]
#[command(about = "The load comparison's floor: a weighted proxy on bare hyper")]
struct Args {
    /// Address to serve on.
    #[arg(long)]
    listen: SocketAddr,
    /// First upstream.
    #[arg(long)]
    v1: SocketAddr,
    /// Second upstream.
    #[arg(long)]
    v2: SocketAddr,
    /// Weights of v1 and v2.
    #[arg(long, default_value = "90,10", value_parser = parse_weights)]
    weights: (u32, u32),
    /// Shadow upstream: every request is also copied there, fire-and-forget.
    #[arg(long)]
    mirror: Option<SocketAddr>,
}

fn parse_weights(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("expected two weights as A,B, got {s:?}"))?;
    let parse =
        |w: &str| (w.trim().parse::<u32>()).map_err(|e| format!("weight {w:?} in {s:?}: {e}"));
    let (a, b) = (parse(a)?, parse(b)?);
    if a.checked_add(b).is_none_or(|t| t == 0) {
        return Err(format!(
            "weights {s:?}: the total must be between 1 and {}",
            u32::MAX
        ));
    }
    Ok((a, b))
}

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

struct Floor {
    client: Client<HttpConnector, Incoming>,
    mirror_client: Client<HttpConnector, Empty<Bytes>>,
    v1: http::uri::Authority,
    v2: http::uri::Authority,
    weights: (u32, u32),
    mirror: Option<http::uri::Authority>,
    mirror_slots: Arc<Semaphore>,
    /// A counter mixed into a multiplicative hash: the split only needs to be even, not random.
    ticket: AtomicU64,
}

impl Floor {
    fn upstream(&self) -> &http::uri::Authority {
        let n = self.ticket.fetch_add(1, Ordering::Relaxed);
        let draw = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let total = u64::from(self.weights.0 + self.weights.1);
        if draw % total < u64::from(self.weights.0) {
            &self.v1
        } else {
            &self.v2
        }
    }

    async fn proxy(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let (mut parts, body) = req.into_parts();
        if let Some(shadow) = &self.mirror {
            self.copy_to(shadow, &parts);
        }
        parts.uri = match uri_at(self.upstream(), &parts.uri) {
            Ok(uri) => uri,
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
        };
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => Ok(resp.map(BodyExt::boxed_unsync)),
            Err(_) => Ok(status(StatusCode::SERVICE_UNAVAILABLE)),
        }
    }

    fn copy_to(&self, shadow: &http::uri::Authority, parts: &http::request::Parts) {
        let Ok(permit) = self.mirror_slots.clone().try_acquire_owned() else {
            return;
        };
        let Ok(uri) = uri_at(shadow, &parts.uri) else {
            return;
        };
        let mut copy = Request::new(Empty::new());
        *copy.method_mut() = parts.method.clone();
        *copy.uri_mut() = uri;
        *copy.headers_mut() = parts.headers.clone();
        let send = self.mirror_client.request(copy);
        tokio::spawn(async move {
            if let Ok(resp) = send.await {
                let _ = resp.into_body().collect().await;
            }
            drop(permit);
        });
    }
}

fn uri_at(authority: &http::uri::Authority, uri: &Uri) -> Result<Uri, http::Error> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query = uri.path_and_query().cloned().or(Some("/".parse()?));
    Ok(Uri::from_parts(parts)?)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|e| match e {}).boxed_unsync());
    *resp.status_mut() = code;
    resp
}

fn authority(addr: SocketAddr) -> Result<http::uri::Authority, String> {
    (addr.to_string().parse()).map_err(|e| format!("{addr} as an authority: {e}"))
}

async fn serve(args: Args) -> Result<(), String> {
    let listener = (TcpListener::bind(args.listen).await)
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    let floor = Arc::new(Floor {
        client: Client::builder(TokioExecutor::new()).build_http(),
        mirror_client: Client::builder(TokioExecutor::new()).build_http(),
        v1: authority(args.v1)?,
        v2: authority(args.v2)?,
        weights: args.weights,
        mirror: args.mirror.map(authority).transpose()?,
        mirror_slots: Arc::new(Semaphore::new(MIRROR_CAP)),
        ticket: AtomicU64::new(0),
    });
    let server = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("hyper-floor: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let floor = floor.clone();
        let svc = hyper::service::service_fn(move |req| floor.clone().proxy(req));
        let conn = server
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hyper-floor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hyper-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_weights;

    #[test]
    fn weights_parse_and_reject_nonsense() {
        assert_eq!(parse_weights("90,10"), Ok((90, 10)));
        assert_eq!(parse_weights(" 1 , 0 "), Ok((1, 0)));
        assert!(parse_weights("0,0").unwrap_err().contains("total"));
        assert!(parse_weights("90").unwrap_err().contains("A,B"));
        assert!(parse_weights("x,1").unwrap_err().contains("\"x\""));
    }
}
