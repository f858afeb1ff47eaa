//! The demo's HTTP client: plain HTTP/1.1 to the proxy's listeners, with the Host header
//! naming the service, as an application in the mesh would send it.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::DemoError;

/// How long one request may take before the demo calls it a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled client for one listener port.
#[derive(Debug, Clone)]
pub struct MeshClient {
    http: Client<HttpConnector, Full<Bytes>>,
    port: u16,
}

impl MeshClient {
    /// A client for `127.0.0.1:port`.
    pub fn new(port: u16) -> Self {
        Self {
            http: Client::builder(TokioExecutor::new()).build_http(),
            port,
        }
    }

    /// `GET path` with `Host: host` and `headers`; the status and the body as text.
    pub async fn get(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, String), DemoError> {
        let what = || format!("GET http://{host}{path} via 127.0.0.1:{}", self.port);
        let mut req = Request::get(format!("http://127.0.0.1:{}{path}", self.port))
            .header(http::header::HOST, host);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| DemoError::request(what(), e))?;
        let run = async {
            let resp = self.http.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
                status,
                String::from_utf8_lossy(&body).trim_end().to_string(),
            ))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, run).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(DemoError::request(what(), e)),
            Err(_) => Err(DemoError::request(what(), "timed out")),
        }
    }
}
