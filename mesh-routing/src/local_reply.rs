//! Responses the routing layer builds itself: plain statuses, fault aborts and redirects.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri, header};
use http_body_util::Full;

use crate::action::{AbortKind, Redirect, RedirectPort};
use crate::host::host_without_port;

pub(crate) fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

pub(crate) fn with_headers(
    mut resp: Response<Full<Bytes>>,
    headers: HeaderMap,
) -> Response<Full<Bytes>> {
    resp.headers_mut().extend(headers);
    resp
}

pub(crate) fn abort_response(kind: AbortKind) -> Response<Full<Bytes>> {
    match kind {
        AbortKind::Http(code) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"fault filter abort")));
            *r.status_mut() = code;
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        AbortKind::Grpc(code) => {
            let mut r = status(StatusCode::OK);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from(u16::from(code)));
            r.headers_mut().insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
            r
        }
    }
}

pub(crate) fn redirect_response(
    r: &Redirect,
    scheme: &str,
    uri: &Uri,
    headers: &HeaderMap,
    request_port: Option<u16>,
) -> Response<Full<Bytes>> {
    let authority = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
    };
    let scheme = r.scheme.as_deref().unwrap_or(scheme);
    let authority = r.authority.as_deref().unwrap_or(authority);
    let host = host_without_port(authority);
    let default_port = if scheme == "https" { 443 } else { 80 };
    let authority = match r.port {
        RedirectPort::Keep if r.scheme.is_some() && r.authority.is_none() => host.to_string(),
        RedirectPort::Keep => authority.to_string(),
        RedirectPort::FromProtocolDefault => host.to_string(),
        RedirectPort::Fixed(p) if p == default_port => host.to_string(),
        RedirectPort::Fixed(p) => format!("{host}:{p}"),
        RedirectPort::FromRequestPort => match request_port {
            Some(p) if p != default_port => format!("{host}:{p}"),
            _ => host.to_string(),
        },
    };
    let path_and_query = match &r.uri {
        Some(u) if u.contains('?') => u.clone(),
        Some(u) => match uri.query() {
            Some(q) => format!("{u}?{q}"),
            None => u.clone(),
        },
        None => uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    };
    let mut resp = status(r.code);
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{authority}{path_and_query}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
