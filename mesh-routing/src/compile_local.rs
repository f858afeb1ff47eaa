//! Compiling the actions routing answers itself: `redirect` and `directResponse`.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::action::{DirectResponse, Redirect, RedirectPort};
use crate::compile_match::port_in_range;
use crate::error::{Collector, Problem};
use crate::model;

/// Envoy refuses larger direct-response bodies unless configured; Istio raises the limit to 1 MiB.
const MAX_DIRECT_RESPONSE_BODY: usize = 1 << 20;

pub(crate) fn compile_redirect(r: &model::HttpRedirect, c: &mut Collector<'_>) -> Option<Redirect> {
    if r.uri.is_none()
        && r.authority.is_none()
        && r.scheme.is_none()
        && r.port.is_none()
        && r.derive_port.is_none()
    {
        c.push(Problem::Invalid(
            "redirect must specify uri, authority, scheme, port or derivePort".into(),
        ));
        return None;
    }
    let port = match (r.port, r.derive_port.as_deref()) {
        (Some(_), Some(_)) => {
            c.push(Problem::Conflict("port", "derivePort"));
            return None;
        }
        (Some(p), None) => RedirectPort::Fixed(port_in_range(p, "port", c)?),
        (None, Some("FROM_PROTOCOL_DEFAULT")) => RedirectPort::FromProtocolDefault,
        (None, Some("FROM_REQUEST_PORT")) => RedirectPort::FromRequestPort,
        (None, Some(other)) => {
            c.push_at(
                "derivePort",
                Problem::Decode(format!(
                    "unknown variant {other:?}, expected FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT"
                )),
            );
            return None;
        }
        (None, None) => RedirectPort::Keep,
    };
    let code = match r.redirect_code {
        None => StatusCode::MOVED_PERMANENTLY,
        Some(code @ (301 | 302 | 303 | 307 | 308)) => StatusCode::from_u16(code as u16).ok()?,
        Some(code) => {
            c.push_at(
                "redirectCode",
                Problem::Invalid(format!(
                    "{code} is not a redirect status (301, 302, 303, 307 or 308)"
                )),
            );
            return None;
        }
    };
    if let Some(s) = &r.scheme {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            c.push_at("scheme", Problem::Invalid(format!("invalid scheme {s:?}")));
            return None;
        }
    }
    if let Some(a) = &r.authority {
        if HeaderValue::from_str(a).is_err() || a.is_empty() {
            c.push_at("authority", Problem::Header(a.clone()));
            return None;
        }
    }
    Some(Redirect {
        uri: r.uri.clone(),
        authority: r.authority.clone(),
        scheme: r.scheme.clone(),
        port,
        code,
    })
}

pub(crate) fn compile_direct_response(
    dr: &model::HttpDirectResponse,
    c: &mut Collector<'_>,
) -> Option<DirectResponse> {
    let status = match dr.status {
        None => {
            c.push_at("status", Problem::Missing);
            return None;
        }
        Some(s @ 200..=599) => StatusCode::from_u16(s as u16).ok()?,
        Some(s) => {
            c.push_at(
                "status",
                Problem::OutOfRange {
                    value: f64::from(s),
                    min: 200.0,
                    max: 599.0,
                },
            );
            return None;
        }
    };
    let body = match &dr.body {
        None => Bytes::new(),
        Some(model::HttpBody {
            string: Some(_),
            bytes: Some(_),
        }) => {
            c.push_at("body", Problem::Conflict("string", "bytes"));
            return None;
        }
        Some(model::HttpBody {
            string: Some(s), ..
        }) => Bytes::from(s.clone()),
        Some(model::HttpBody { bytes: Some(b), .. }) => {
            match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(v) => Bytes::from(v),
                Err(e) => {
                    c.push_at(
                        "body.bytes",
                        Problem::Invalid(format!("not valid base64: {e}")),
                    );
                    return None;
                }
            }
        }
        Some(_) => Bytes::new(),
    };
    if body.len() > MAX_DIRECT_RESPONSE_BODY {
        c.push_at(
            "body",
            Problem::Invalid(format!(
                "body is {} bytes; the limit is {MAX_DIRECT_RESPONSE_BODY}",
                body.len()
            )),
        );
        return None;
    }
    Some(DirectResponse { status, body })
}
