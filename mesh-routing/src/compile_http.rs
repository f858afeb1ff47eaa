//! Compiling one `http[i]` route: its action, destinations and policies.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::action::{
    Destination, HeaderOps, Route, RouteAction, WeightedDestination, WeightedDestinations,
};
use crate::compile_local::{compile_direct_response, compile_redirect};
use crate::compile_match::{compile_arms, port_in_range};
use crate::compile_policy::{
    compile_cors, compile_fault, compile_mirrors, compile_retries, duration_field,
};
use crate::error::{Collector, Problem, ResourceRef};
use crate::host::{qualify_host, validate_host};
use crate::model::{self, HttpRoute};
use crate::retry::RetryPolicy;
use crate::rewrite::{Rewrite, UriRewrite, convert_substitution};
use crate::string_match::compile_unanchored;
use crate::virtual_service::{DEFAULT_DOMAIN_SUFFIX, HttpRule};

pub(crate) fn compile_http_route(
    resource: &ResourceRef,
    index: usize,
    r: &HttpRoute,
    namespace: &str,
    c: &mut Collector<'_>,
) -> Option<HttpRule> {
    let before = c.error_count();
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

    if c.error_count() > before {
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
    let before = c.error_count();
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
    if c.error_count() > before {
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
    let before = c.error_count();
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
    (c.error_count() == before).then(|| Destination {
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
