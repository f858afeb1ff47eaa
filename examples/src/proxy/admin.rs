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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::proxy::test_dir::TestDir;
    use crate::proxy::{Cli, Trigger};

    fn proxy(dir: &TestDir) -> Proxy {
        dir.write(
            "vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n\
             spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n",
        );
        let path = dir.path().to_str().unwrap();
        let args = Cli::try_parse_from(["mesh-proxy", "--no-access-log", "--config", path]);
        Proxy::new(args.unwrap().run).unwrap().0
    }

    fn get(proxy: &Proxy, path: &str) -> Response<Full<Bytes>> {
        handle(proxy, &Request::get(path).body(()).unwrap())
    }

    #[tokio::test]
    async fn ready_is_503_until_listeners_are_up_and_sealed() {
        let dir = TestDir::new("admin-ready");
        let p = proxy(&dir);
        assert_eq!(get(&p, "/ready").status(), StatusCode::SERVICE_UNAVAILABLE);
        p.listeners
            .spawn("admin", "127.0.0.1:1".parse().unwrap(), |_ready| async {});
        p.listeners.seal();
        let resp = get(&p, "/ready");
        assert_eq!(
            resp.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "admin not up"
        );
        p.listeners.join().await;
        assert_eq!(get(&p, "/nope").status(), StatusCode::NOT_FOUND);
        let post = Request::post("/ready").body(()).unwrap();
        assert_eq!(handle(&p, &post).status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn in_flight_requests_keep_the_state_they_started_with() {
        let dir = TestDir::new("admin-swap");
        let p = proxy(&dir);
        let before = p.current();
        let mut changes = p.changes();
        assert_eq!(p.reload(Trigger::Requested), 2);
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 2);
        assert_eq!(
            before.generation, 1,
            "an Arc taken earlier still sees generation 1"
        );
        assert_eq!(p.current().generation, 2);
        let dump = get(&p, "/config_dump");
        assert_eq!(dump.status(), StatusCode::OK);
    }
}
