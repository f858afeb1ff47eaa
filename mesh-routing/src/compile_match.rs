//! Compiling `match` blocks (HTTP and L4) and gateway names.

use std::collections::BTreeMap;

use http::HeaderName;

use crate::compile_http::compile_weighted;
use crate::conditions::Conditions;
use crate::error::{Collector, Problem};
use crate::model::{self, HttpMatchRequest};
use crate::rewrite::MatchedUri;
use crate::string_match::StringMatcher;
use crate::virtual_service::{L4Match, L4Route, MESH_GATEWAY};

/// One compiled match block of an HTTP route, with the parts resolved per proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Arm {
    pub(crate) conditions: Conditions,
    /// `match.gateways`, normalized; `None` inherits the VirtualService's gateways.
    pub(crate) gateways: Option<Vec<String>>,
    pub(crate) source_labels: BTreeMap<String, String>,
    pub(crate) source_namespace: Option<String>,
    pub(crate) matched_uri: MatchedUri,
}

/// Normalizes gateway references: `mesh` stays, `name` becomes `namespace/name`.
pub(crate) fn compile_gateways(
    gateways: &[String],
    namespace: &str,
    c: &mut Collector<'_>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(gateways.len());
    for (i, g) in gateways.iter().enumerate() {
        let parts: Vec<&str> = g.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        };
        match parts.as_slice() {
            [name] if *name == MESH_GATEWAY => out.push(MESH_GATEWAY.to_string()),
            [name] if valid(name) => out.push(format!("{namespace}/{name}")),
            [ns, name] if valid(ns) && valid(name) => out.push(g.clone()),
            _ => c.push_at(
                &format!("[{i}]"),
                Problem::Invalid(format!(
                    "invalid gateway name {g:?}; expected `name`, `namespace/name` or `mesh`"
                )),
            ),
        }
    }
    out
}

/// Compiles the `match` list of an HTTP route; an empty list is one catch-all arm.
pub(crate) fn compile_arms(
    matches: &[HttpMatchRequest],
    namespace: &str,
    c: &mut Collector<'_>,
) -> Vec<Arm> {
    if matches.is_empty() {
        return vec![Arm::default()];
    }
    (matches.iter().enumerate())
        .map(|(i, m)| c.at(format_args!("match[{i}]"), |c| compile_arm(m, namespace, c)))
        .collect()
}

fn compile_arm(m: &HttpMatchRequest, namespace: &str, c: &mut Collector<'_>) -> Arm {
    let one = |field: &str, sm: &Option<model::StringMatch>, c: &mut Collector<'_>| {
        sm.as_ref()
            .and_then(|sm| c.at(format_args!("{field}"), |c| StringMatcher::compile(sm, c)))
    };
    let uri = one("uri", &m.uri, c);
    let scheme = one("scheme", &m.scheme, c);
    let method = one("method", &m.method, c);
    let authority = one("authority", &m.authority, c);
    let matched_uri = match &uri {
        None | Some(StringMatcher::Any) => MatchedUri::Root,
        Some(StringMatcher::Prefix(p)) => MatchedUri::Prefix(p.len()),
        Some(_) => MatchedUri::Whole,
    };
    let headers = c.at(format_args!("headers"), |c| header_matchers(&m.headers, c));
    let without_headers = c.at(format_args!("withoutHeaders"), |c| {
        header_matchers(&m.without_headers, c)
    });
    let query_params = c.at(format_args!("queryParams"), |c| {
        (m.query_params.iter())
            .filter_map(|(name, sm)| {
                c.at(format_args!("{name}"), |c| {
                    if sm.prefix.is_some() {
                        c.push(Problem::Unsupported(
                            "prefix matching of query parameters (Istio supports exact and regex)",
                        ));
                        return None;
                    }
                    StringMatcher::compile(sm, c).map(|m| (name.clone(), m))
                })
            })
            .collect()
    });
    let port = m.port.and_then(|p| port_in_range(p, "port", c));
    let gateways = (!m.gateways.is_empty()).then(|| {
        c.at(format_args!("gateways"), |c| {
            compile_gateways(&m.gateways, namespace, c)
        })
    });
    Arm {
        conditions: Conditions {
            uri,
            ignore_uri_case: m.ignore_uri_case,
            scheme,
            method,
            authority,
            headers,
            without_headers,
            query_params,
            port,
        },
        gateways,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
        matched_uri,
    }
}

fn header_matchers(
    map: &BTreeMap<String, model::StringMatch>,
    c: &mut Collector<'_>,
) -> Vec<(HeaderName, StringMatcher)> {
    (map.iter())
        .filter_map(|(name, sm)| {
            c.at(format_args!("{name}"), |c| {
                // Header names are case-insensitive: HeaderName lowercases them.
                let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                    c.push(Problem::Header(name.clone()));
                    return None;
                };
                StringMatcher::compile(sm, c).map(|m| (header, m))
            })
        })
        .collect()
}

/// A port number from YAML, checked to be 1..=65535.
pub(crate) fn port_in_range(p: u32, field: &str, c: &mut Collector<'_>) -> Option<u16> {
    match u16::try_from(p) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            c.push_at(
                field,
                Problem::OutOfRange {
                    value: f64::from(p),
                    min: 1.0,
                    max: 65535.0,
                },
            );
            None
        }
    }
}

/// The fields common to TLS and TCP match blocks.
pub(crate) struct L4MatchModel {
    sni_hosts: Vec<String>,
    destination_subnets: Vec<String>,
    port: Option<u32>,
    gateways: Vec<String>,
    source_labels: BTreeMap<String, String>,
}

impl From<&model::TlsMatchAttributes> for L4MatchModel {
    fn from(m: &model::TlsMatchAttributes) -> Self {
        Self {
            sni_hosts: m.sni_hosts.clone(),
            destination_subnets: m.destination_subnets.clone(),
            port: m.port,
            gateways: m.gateways.clone(),
            source_labels: m.source_labels.clone(),
        }
    }
}

impl From<&model::L4MatchAttributes> for L4MatchModel {
    fn from(m: &model::L4MatchAttributes) -> Self {
        Self {
            sni_hosts: Vec::new(),
            destination_subnets: m.destination_subnets.clone(),
            port: m.port,
            gateways: m.gateways.clone(),
            source_labels: m.source_labels.clone(),
        }
    }
}

type L4Model<'a> = (Vec<L4MatchModel>, &'a [model::RouteDestination]);

pub(crate) fn compile_l4_routes(
    field: &str,
    routes: &[L4Model<'_>],
    namespace: &str,
    tls: bool,
    c: &mut Collector<'_>,
) -> Vec<L4Route> {
    let mut out = Vec::new();
    for (i, (matches, dests)) in routes.iter().enumerate() {
        c.at(format_args!("{field}[{i}]"), |c| {
            if tls && matches.is_empty() {
                c.push_at(
                    "match",
                    Problem::Invalid("a TLS route needs at least one match with sniHosts".into()),
                );
            }
            let matches: Vec<L4Match> = (matches.iter().enumerate())
                .map(|(j, m)| {
                    c.at(format_args!("match[{j}]"), |c| {
                        if tls && m.sni_hosts.is_empty() {
                            c.push_at("sniHosts", Problem::Missing);
                        }
                        for (k, h) in m.sni_hosts.iter().enumerate() {
                            if let Err(reason) = crate::host::validate_host(h) {
                                c.push_at(
                                    &format!("sniHosts[{k}]"),
                                    Problem::Host {
                                        host: h.clone(),
                                        reason,
                                    },
                                );
                            }
                        }
                        let destination_subnets = (m.destination_subnets.iter().enumerate())
                            .filter_map(|(k, s)| match s.parse() {
                                Ok(subnet) => Some(subnet),
                                Err(reason) => {
                                    c.push_at(
                                        &format!("destinationSubnets[{k}]"),
                                        Problem::Invalid(format!("{s:?}: {reason}")),
                                    );
                                    None
                                }
                            })
                            .collect();
                        L4Match {
                            sni_hosts: m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                            destination_subnets,
                            port: m.port.and_then(|p| port_in_range(p, "port", c)),
                            gateways: (!m.gateways.is_empty()).then(|| {
                                c.at(format_args!("gateways"), |c| {
                                    compile_gateways(&m.gateways, namespace, c)
                                })
                            }),
                            source_labels: m.source_labels.clone(),
                        }
                    })
                })
                .collect();
            let weighted: Vec<_> = dests
                .iter()
                .map(|d| (d.destination.as_ref(), d.weight, None))
                .collect();
            if let Some(destinations) = c.at(format_args!("route"), |c| {
                compile_weighted(&weighted, namespace, c)
            }) {
                out.push(L4Route {
                    matches,
                    destinations,
                });
            }
        });
    }
    out
}
