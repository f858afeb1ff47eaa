//! The admin listener: `GET /ready`, `GET /stats/prometheus`, `GET /config_dump`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use super::runtime::Proxy;

/// Answers one admin request. Never fails; unknown paths get 404, other methods 405.
pub fn handle<B>(proxy: &Proxy, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/ready" | "/stats/prometheus" | "/config_dump");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match path {
        "/ready" => ready(proxy),
        "/stats/prometheus" => {
            let mut resp = text(StatusCode::OK, proxy.metrics.encode());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => config_dump(proxy),
    }
}

/// 200 `LIVE` once every listener is up, else 503 with the ones that are not.
fn ready(proxy: &Proxy) -> Response<Full<Bytes>> {
    if proxy.listeners.all_ready() {
        return text(StatusCode::OK, "LIVE\n".into());
    }
    let waiting: Vec<String> = (proxy.listeners.describe().into_iter())
        .filter(|(_, _, up)| !up)
        .map(|(name, addr, _)| format!("{name} ({addr})"))
        .collect();
    let body = if waiting.is_empty() {
        "starting\n".to_string()
    } else {
        format!("waiting for listeners: {}\n", waiting.join(", "))
    };
    text(StatusCode::SERVICE_UNAVAILABLE, body)
}

fn config_dump(proxy: &Proxy) -> Response<Full<Bytes>> {
    let state = proxy.current();
    let mut dump = state.dump();
    if let Some(obj) = dump.as_object_mut() {
        let last = proxy.reload_status.last_error();
        obj.insert(
            "last_reload_error".into(),
            last.map_or(serde_json::Value::Null, |e| json!(e)),
        );
        let listeners: Vec<serde_json::Value> = (proxy.listeners.describe().into_iter())
            .map(|(name, addr, up)| json!({"name": name, "address": addr.to_string(), "ready": up}))
            .collect();
        obj.insert("listeners".into(), listeners.into());
        let a = &proxy.args;
        let node = json!({
            "namespace": a.namespace,
            "trust_domain": a.trust_domain,
            "locality": a.locality,
            "network": a.network,
            "bind": a.bind.to_string(),
            "config_paths": a.config.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "access_log": proxy.access_log.is_some(),
            "drain_seconds": proxy.drain.as_secs_f64(),
        });
        obj.insert("proxy".into(), node);
    }
    let body = serde_json::to_string_pretty(&dump).unwrap_or_else(|_| "{}".into());
    let mut resp = text(StatusCode::OK, body + "\n");
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The admin listener's service: [`handle`] for every request.
#[derive(Debug, Clone)]
pub(super) struct AdminService(pub(super) Proxy);

impl<B> tower_service::Service<Request<B>> for AdminService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        std::future::ready(Ok(handle(&self.0, &req)))
    }
}
