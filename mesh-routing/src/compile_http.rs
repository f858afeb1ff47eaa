//! Compiling one `http[i]` route: its action, destinations and policies.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::action::{
    AbortKind, Destination, DirectResponse, Fault, FaultAbort, FaultDelay, HeaderOps,
    ISTIO_DEFAULT_RETRY_ON, Mirror, Redirect, RedirectPort, RetryCondition, RetryOn, RetryPolicy,
    Route, RouteAction, WeightedDestination, WeightedDestinations,
};
use crate::compile_match::{compile_arms, port_in_range};
use crate::cors::CorsPolicy;
use crate::duration::parse_duration;
use crate::error::{Collector, Problem, ResourceRef};
use crate::host::{qualify_host, validate_host};
use crate::model::{self, HttpRoute};
use crate::rewrite::{Rewrite, UriRewrite, convert_substitution};
use crate::string_match::{StringMatcher, compile_unanchored};
use crate::virtual_service::{DEFAULT_DOMAIN_SUFFIX, HttpRule};

/// Envoy refuses larger direct-response bodies unless configured; Istio raises the limit to 1 MiB.
const MAX_DIRECT_RESPONSE_BODY: usize = 1 << 20;

pub(crate) fn compile_http_route(
    resource: &ResourceRef,
    index: usize,
    r: &HttpRoute,
    namespace: &str,
    c: &mut Collector<'_>,
) -> Option<HttpRule> {
    let before = c.errors.len();
    if r.delegate.is_some() {
        c.push_at("delegate", Problem::Unsupported("delegate VirtualServices"));
    }
    let set: Vec<&'static str> = [
        (!r.route.is_empty()).then_some("route"),
        r.redirect.is_some().then_some("redirect"),
        r.direct_response.is_some().then_some("directResponse"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if set.len() > 1 {
        c.push(Problem::Conflict(set[0], set[1]));
    } else if set.is_empty() && r.delegate.is_none() {
        c.push(Problem::Invalid(
            "one of route, redirect or directResponse is required".into(),
        ));
    }
    let local_answer = r
        .redirect
        .as_ref()
        .map(|_| "redirect")
        .or(r.direct_response.as_ref().map(|_| "directResponse"));
    if let Some(action) = local_answer {
        if r.rewrite.is_some() {
            c.push(Problem::Conflict(action, "rewrite"));
        }
        if r.mirror.is_some() || !r.mirrors.is_empty() {
            c.push(Problem::Conflict(
                action,
                if r.mirror.is_some() {
                    "mirror"
                } else {
                    "mirrors"
                },
            ));
        }
    }

    let arms = compile_arms(&r.matches, namespace, c);
    let (mut request_headers, response_headers, host_rewrite) = match &r.headers {
        Some(h) => c.at(format_args!("headers"), |c| compile_headers(h, c)),
        None => Default::default(),
    };
    let mut rewrite = r
        .rewrite
        .as_ref()
        .and_then(|rw| c.at(format_args!("rewrite"), |c| compile_rewrite(rw, c)));
    if let Some(host) = host_rewrite {
        match &mut rewrite {
            Some(Rewrite {
                authority: Some(_), ..
            }) => c.push(Problem::Conflict(
                "rewrite.authority",
                "headers.request host",
            )),
            Some(rw) => rw.authority = Some(host),
            None => {
                rewrite = Some(Rewrite {
                    uri: None,
                    authority: Some(host),
                })
            }
        }
    }
    request_headers.remove.retain(|h| h != http::header::HOST);

    let action = if let Some(redirect) = &r.redirect {
        c.at(format_args!("redirect"), |c| compile_redirect(redirect, c))
            .map(RouteAction::Redirect)
    } else if let Some(dr) = &r.direct_response {
        c.at(format_args!("directResponse"), |c| {
            compile_direct_response(dr, c)
        })
        .map(RouteAction::DirectResponse)
    } else if r.route.is_empty() {
        None
    } else {
        let dests: Vec<_> = r
            .route
            .iter()
            .map(|d| (d.destination.as_ref(), d.weight, d.headers.as_ref()))
            .collect();
        c.at(format_args!("route"), |c| {
            compile_weighted(&dests, namespace, c)
        })
        .map(RouteAction::Forward)
    };
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|t| duration_field(t, "timeout", true, c));
    let retries = match &r.retries {
        Some(rt) => c.at(format_args!("retries"), |c| compile_retries(rt, c)),
        None => Some(RetryPolicy::istio_default()),
    };
    let fault = r
        .fault
        .as_ref()
        .and_then(|f| c.at(format_args!("fault"), |c| compile_fault(f, c)));
    let cors = r
        .cors_policy
        .as_ref()
        .and_then(|p| c.at(format_args!("corsPolicy"), |c| compile_cors(p, c)));
    let mirrors = compile_mirrors(r, namespace, c);

    if c.errors.len() > before {
        return None;
    }
    let route = Route {
        source: resource.clone(),
        index,
        name: r.name.clone(),
        action: action?,
        rewrite,
        request_headers,
        response_headers,
        timeout: timeout.filter(|t| !t.is_zero()),
        retries: retries?,
        fault,
        cors,
        mirrors,
    };
    Some(HttpRule {
        route: Arc::new(route),
        arms,
    })
}

/// Compiles weighted destinations with Istio's weight rules. Each item is
/// `(destination, weight, headers)`.
pub(crate) fn compile_weighted(
    dests: &[(
        Option<&model::Destination>,
        Option<i64>,
        Option<&model::Headers>,
    )],
    namespace: &str,
    c: &mut Collector<'_>,
) -> Option<WeightedDestinations> {
    let before = c.errors.len();
    let mut out = Vec::with_capacity(dests.len());
    for (i, (dest, weight, headers)) in dests.iter().enumerate() {
        c.at(format_args!("[{i}]"), |c| {
            let destination = match dest {
                Some(d) => c.at(format_args!("destination"), |c| {
                    compile_destination(d, namespace, c)
                }),
                None => {
                    c.push_at("destination", Problem::Missing);
                    None
                }
            };
            let weight = match weight {
                Some(w) if *w < 0 => {
                    c.push_at("weight", Problem::NegativeWeight(*w));
                    0
                }
                Some(w) if *w > i64::from(u32::MAX) => {
                    c.push_at(
                        "weight",
                        Problem::OutOfRange {
                            value: *w as f64,
                            min: 0.0,
                            max: f64::from(u32::MAX),
                        },
                    );
                    0
                }
                Some(w) => *w as u32,
                // Istio: an unset weight is 0; a lone destination still gets all traffic.
                None => 0,
            };
            let (request_headers, response_headers, host) = match headers {
                Some(h) => c.at(format_args!("headers"), |c| compile_headers(h, c)),
                None => Default::default(),
            };
            let mut request_headers = request_headers;
            if let Some(host) = host {
                request_headers.set.push((http::header::HOST, host));
            }
            if let Some(destination) = destination {
                out.push(WeightedDestination {
                    destination,
                    weight,
                    request_headers,
                    response_headers,
                });
            }
        });
    }
    if c.errors.len() > before {
        return None;
    }
    match WeightedDestinations::new(out) {
        Ok(d) => Some(d),
        Err(crate::action::WeightError::Empty) => {
            c.push(Problem::Missing);
            None
        }
        Err(crate::action::WeightError::AllZero(n)) => {
            c.push(Problem::AllWeightsZero(n));
            None
        }
    }
}

pub(crate) fn compile_destination(
    d: &model::Destination,
    namespace: &str,
    c: &mut Collector<'_>,
) -> Option<Destination> {
    let before = c.errors.len();
    if d.host.is_empty() {
        c.push_at("host", Problem::Missing);
    } else if let Err(reason) = validate_host(&d.host) {
        c.push_at(
            "host",
            Problem::Host {
                host: d.host.clone(),
                reason,
            },
        );
    }
    if let Some(subset) = &d.subset {
        let ok = !subset.is_empty()
            && subset.len() <= 63
            && subset
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            c.push_at(
                "subset",
                Problem::Invalid(format!("invalid subset name {subset:?}")),
            );
        }
    }
    let port = d
        .port
        .as_ref()
        .and_then(|p| p.number)
        .and_then(|p| c.at(format_args!("port"), |c| port_in_range(p, "number", c)));
    (c.errors.len() == before).then(|| Destination {
        host: qualify_host(&d.host, namespace, DEFAULT_DOMAIN_SUFFIX),
        subset: d.subset.clone(),
        port,
    })
}

/// Returns (request ops, response ops, request host rewrite).
fn compile_headers(
    h: &model::Headers,
    c: &mut Collector<'_>,
) -> (HeaderOps, HeaderOps, Option<HeaderValue>) {
    let mut host = None;
    let request = h.request.as_ref().map(|ops| {
        c.at(format_args!("request"), |c| {
            compile_ops(ops, Some(&mut host), c)
        })
    });
    let response = h
        .response
        .as_ref()
        .map(|ops| c.at(format_args!("response"), |c| compile_ops(ops, None, c)));
    (
        request.unwrap_or_default(),
        response.unwrap_or_default(),
        host,
    )
}

fn compile_ops(
    ops: &model::HeaderOperations,
    mut host: Option<&mut Option<HeaderValue>>,
    c: &mut Collector<'_>,
) -> HeaderOps {
    let mut out = HeaderOps::default();
    for (field, map, target) in [("set", &ops.set, 0), ("add", &ops.add, 1)] {
        for (name, value) in map {
            c.at(format_args!("{field}.{name}"), |c| {
                let Some((name, value)) = header_pair(name, value, c) else {
                    return;
                };
                if name == http::header::HOST || name.as_str() == ":authority" {
                    match host.as_deref_mut() {
                        Some(h) => *h = Some(value),
                        None => c.push(Problem::Invalid(
                            "the host header can only be rewritten on requests".into(),
                        )),
                    }
                } else if target == 0 {
                    out.set.push((name, value));
                } else {
                    out.add.push((name, value));
                }
            });
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        c.at(
            format_args!("remove[{i}]"),
            |c| match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) if n == http::header::HOST => {
                    c.push(Problem::Invalid("the host header cannot be removed".into()))
                }
                Ok(n) => out.remove.push(n),
                Err(_) => c.push(Problem::Header(name.clone())),
            },
        );
    }
    out
}

fn header_pair(
    name: &str,
    value: &str,
    c: &mut Collector<'_>,
) -> Option<(HeaderName, HeaderValue)> {
    let name = if name == ":authority" { "host" } else { name };
    let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
        c.push(Problem::Header(name.to_string()));
        return None;
    };
    let Ok(v) = HeaderValue::from_str(value) else {
        c.push(Problem::Header(format!("{name}: {value}")));
        return None;
    };
    Some((n, v))
}

fn compile_rewrite(rw: &model::HttpRewrite, c: &mut Collector<'_>) -> Option<Rewrite> {
    if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
        c.push(Problem::Conflict("uri", "uriRegexRewrite"));
        return None;
    }
    if rw.uri.is_none() && rw.authority.is_none() && rw.uri_regex_rewrite.is_none() {
        c.push(Problem::Invalid(
            "rewrite must specify uri, authority or uriRegexRewrite".into(),
        ));
        return None;
    }
    let authority = rw
        .authority
        .as_ref()
        .and_then(|a| match HeaderValue::from_str(a) {
            Ok(v) if !a.is_empty() => Some(v),
            _ => {
                c.push_at("authority", Problem::Header(a.clone()));
                None
            }
        });
    let uri = if let Some(u) = &rw.uri {
        Some(UriRewrite::Prefix(u.clone()))
    } else if let Some(rr) = &rw.uri_regex_rewrite {
        c.at(format_args!("uriRegexRewrite"), |c| {
            let (Some(pattern), Some(replacement)) = (&rr.pattern, &rr.rewrite) else {
                c.push(Problem::Invalid(
                    "both match and rewrite are required".into(),
                ));
                return None;
            };
            match compile_unanchored(pattern) {
                Ok(regex) => Some(UriRewrite::Regex {
                    regex,
                    replacement: convert_substitution(replacement),
                }),
                Err(reason) => {
                    c.push_at(
                        "match",
                        Problem::Regex {
                            pattern: pattern.clone(),
                            reason,
                        },
                    );
                    None
                }
            }
        })
    } else {
        None
    };
    Some(Rewrite { uri, authority })
}

fn compile_redirect(r: &model::HttpRedirect, c: &mut Collector<'_>) -> Option<Redirect> {
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

fn compile_direct_response(
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

/// Parses a duration field; Istio requires at least 1ms (`allow_zero` lets `0s` disable a timeout).
fn duration_field(
    value: &str,
    field: &str,
    allow_zero: bool,
    c: &mut Collector<'_>,
) -> Option<Duration> {
    let problem = |reason| Problem::Duration {
        value: value.to_string(),
        reason,
    };
    match parse_duration(value) {
        Ok(d) if d.is_zero() && allow_zero => Some(d),
        Ok(d) if d < Duration::from_millis(1) => {
            c.push_at(field, problem("must be at least 1ms"));
            None
        }
        Ok(d) if d.subsec_nanos() % 1_000_000 != 0 => {
            c.push_at(field, problem("only millisecond precision is supported"));
            None
        }
        Ok(d) => Some(d),
        Err(reason) => {
            c.push_at(field, problem(reason));
            None
        }
    }
}

fn compile_retries(r: &model::HttpRetry, c: &mut Collector<'_>) -> Option<RetryPolicy> {
    let before = c.errors.len();
    let attempts = match r.attempts.unwrap_or(0) {
        a if a < 0 => {
            c.push_at(
                "attempts",
                Problem::Invalid(format!("attempts must be >= 0, got {a}")),
            );
            0
        }
        a => u32::try_from(a).unwrap_or(u32::MAX),
    };
    let per_try_timeout = r
        .per_try_timeout
        .as_ref()
        .and_then(|t| duration_field(t, "perTryTimeout", false, c));
    let retry_on = c.at(format_args!("retryOn"), |c| {
        parse_retry_on(r.retry_on.as_deref().unwrap_or(ISTIO_DEFAULT_RETRY_ON), c)
    });
    (c.errors.len() == before).then(|| RetryPolicy {
        attempts,
        per_try_timeout,
        retry_on,
        retry_remote_localities: r.retry_remote_localities.unwrap_or(false),
    })
}

fn parse_retry_on(s: &str, c: &mut Collector<'_>) -> RetryOn {
    let mut out = RetryOn::default();
    for token in s.split(',').map(str::trim) {
        if let Ok(code) = token.parse::<u16>() {
            if (100..=599).contains(&code) {
                out.status_codes.push(code);
                if !out
                    .conditions
                    .contains(&RetryCondition::RetriableStatusCodes)
                {
                    out.conditions.push(RetryCondition::RetriableStatusCodes);
                }
                continue;
            }
        }
        match RetryCondition::parse(token) {
            Some(cond) if !out.conditions.contains(&cond) => out.conditions.push(cond),
            Some(_) => {}
            None => c.push(Problem::Invalid(format!(
                "{token:?} is not a valid retryOn policy"
            ))),
        }
    }
    if out
        .conditions
        .contains(&RetryCondition::RetriableStatusCodes)
        && out.status_codes.is_empty()
    {
        // Istio's default retriable code when `retriable-status-codes` is named alone.
        out.status_codes.push(503);
    }
    out
}

fn percentage(p: Option<&model::Percent>, field: &str, default: f64, c: &mut Collector<'_>) -> f64 {
    match p {
        None => default,
        Some(p) if (0.0..=100.0).contains(&p.value) => p.value,
        Some(p) => {
            c.push_at(
                field,
                Problem::OutOfRange {
                    value: p.value,
                    min: 0.0,
                    max: 100.0,
                },
            );
            0.0
        }
    }
}

fn compile_fault(f: &model::HttpFaultInjection, c: &mut Collector<'_>) -> Option<Fault> {
    let before = c.errors.len();
    if f.delay.is_none() && f.abort.is_none() {
        c.push(Problem::Invalid("fault must specify delay or abort".into()));
    }
    let delay = f.delay.as_ref().and_then(|d| {
        c.at(format_args!("delay"), |c| {
            if d.exponential_delay.is_some() {
                c.push_at("exponentialDelay", Problem::Unsupported("exponentialDelay"));
            }
            let Some(fixed) = &d.fixed_delay else {
                c.push_at("fixedDelay", Problem::Missing);
                return None;
            };
            if d.percent.is_some() && d.percentage.is_some() {
                c.push(Problem::Conflict("percent", "percentage"));
            }
            let legacy = d.percent.map(|p| model::Percent { value: p as f64 });
            let pct = percentage(
                d.percentage.as_ref().or(legacy.as_ref()),
                "percentage",
                0.0,
                c,
            );
            duration_field(fixed, "fixedDelay", false, c).map(|delay| FaultDelay {
                delay,
                percentage: pct,
            })
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        c.at(format_args!("abort"), |c| {
            let kind = match (a.http_status, &a.grpc_status, &a.http2_error) {
                (Some(s), None, None) => {
                    match u16::try_from(s).ok().filter(|s| (200..=599).contains(s)) {
                        Some(s) => AbortKind::Http(StatusCode::from_u16(s).ok()?),
                        None => {
                            c.push_at(
                                "httpStatus",
                                Problem::OutOfRange {
                                    value: s as f64,
                                    min: 200.0,
                                    max: 599.0,
                                },
                            );
                            return None;
                        }
                    }
                }
                (None, Some(g), None) => match grpc_code(g) {
                    Some(code) => AbortKind::Grpc(code),
                    None => {
                        c.push_at(
                            "grpcStatus",
                            Problem::Invalid(format!("unknown gRPC status {g:?}")),
                        );
                        return None;
                    }
                },
                (None, None, Some(_)) => {
                    c.push_at("http2Error", Problem::Unsupported("http2Error aborts"));
                    return None;
                }
                (None, None, None) => {
                    c.push(Problem::Invalid(
                        "abort must specify httpStatus or grpcStatus".into(),
                    ));
                    return None;
                }
                _ => {
                    c.push(Problem::Invalid(
                        "only one of httpStatus, grpcStatus or http2Error may be set".into(),
                    ));
                    return None;
                }
            };
            Some(FaultAbort {
                kind,
                percentage: percentage(a.percentage.as_ref(), "percentage", 0.0, c),
            })
        })
    });
    (c.errors.len() == before).then_some(Fault { delay, abort })
}

fn grpc_code(name: &str) -> Option<u8> {
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    CODES
        .iter()
        .position(|c| *c == name)
        .and_then(|p| u8::try_from(p).ok())
}

fn compile_cors(p: &model::CorsPolicy, c: &mut Collector<'_>) -> Option<CorsPolicy> {
    let before = c.errors.len();
    let mut allow_origins: Vec<StringMatcher> = Vec::new();
    for (i, o) in p.allow_origin.iter().enumerate() {
        let _ = i;
        allow_origins.push(if o == "*" {
            StringMatcher::Any
        } else {
            StringMatcher::Exact(o.as_str().into())
        });
    }
    for (i, sm) in p.allow_origins.iter().enumerate() {
        if let Some(m) = c.at(format_args!("allowOrigins[{i}]"), |c| {
            StringMatcher::compile(sm, c)
        }) {
            allow_origins.push(m);
        }
    }
    let join = |field: &str, items: &[String], c: &mut Collector<'_>| -> Option<HeaderValue> {
        if items.is_empty() {
            return None;
        }
        let joined = items.join(",");
        HeaderValue::from_str(&joined)
            .map_err(|_| c.push_at(field, Problem::Header(joined)))
            .ok()
    };
    let allow_methods = join("allowMethods", &p.allow_methods, c);
    let allow_headers = join("allowHeaders", &p.allow_headers, c);
    let expose_headers = join("exposeHeaders", &p.expose_headers, c);
    let max_age = p
        .max_age
        .as_ref()
        .and_then(|m| duration_field(m, "maxAge", true, c));
    let forward_unmatched_preflights = match p.unmatched_preflights.as_deref() {
        None | Some("FORWARD") | Some("UNSPECIFIED") => true,
        Some("IGNORE") => false,
        Some(other) => {
            c.push_at(
                "unmatchedPreflights",
                Problem::Decode(format!(
                    "unknown variant {other:?}, expected FORWARD or IGNORE"
                )),
            );
            true
        }
    };
    (c.errors.len() == before).then_some(CorsPolicy {
        allow_origins,
        allow_methods,
        allow_headers,
        expose_headers,
        max_age,
        allow_credentials: p.allow_credentials.unwrap_or(false),
        forward_unmatched_preflights,
    })
}

fn compile_mirrors(r: &HttpRoute, namespace: &str, c: &mut Collector<'_>) -> Vec<Mirror> {
    let mut out = Vec::new();
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        c.push(Problem::Conflict("mirror", "mirrors"));
        return out;
    }
    if r.mirror_percentage.is_some() && r.mirror_percent.is_some() {
        c.push(Problem::Conflict("mirrorPercentage", "mirrorPercent"));
    }
    if !r.mirrors.is_empty() && (r.mirror_percentage.is_some() || r.mirror_percent.is_some()) {
        c.push(Problem::Conflict("mirrors", "mirrorPercentage"));
    }
    if let Some(m) = &r.mirror {
        let legacy = r.mirror_percent.map(|p| model::Percent {
            value: f64::from(p),
        });
        let pct = percentage(
            r.mirror_percentage.as_ref().or(legacy.as_ref()),
            "mirrorPercentage",
            100.0,
            c,
        );
        if let Some(d) = c.at(format_args!("mirror"), |c| {
            compile_destination(m, namespace, c)
        }) {
            out.push(Mirror {
                destination: d,
                percentage: pct,
            });
        }
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        c.at(format_args!("mirrors[{i}]"), |c| {
            let pct = percentage(m.percentage.as_ref(), "percentage", 100.0, c);
            let Some(dest) = &m.destination else {
                c.push_at("destination", Problem::Missing);
                return;
            };
            if let Some(d) = c.at(format_args!("destination"), |c| {
                compile_destination(dest, namespace, c)
            }) {
                out.push(Mirror {
                    destination: d,
                    percentage: pct,
                });
            }
        });
    }
    out
}
