//! Property: a compiled, indexed route table picks exactly the route that a naive first-match
//! scan over the same VirtualServices picks, for random tables and random requests.
//!
//! The reference below is written from the Istio semantics directly over the serde model, with
//! none of the crate's matching code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use mesh_routing::model::{
    Destination, HttpMatchRequest, HttpRoute, HttpRouteDestination, StringMatch, VirtualServiceSpec,
};
use mesh_routing::{ObjectMeta, RouteMatch, RouteTable, TableOptions, VirtualService};
use proptest::prelude::*;

const HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "*.a.com",
    "*.com",
    "*",
    "x.b.a.com",
    "*a.com",
];
const REQ_HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "c.a.com",
    "x.b.a.com",
    "z.com",
    "ba.com",
    "q.org",
    "A.COM:8080",
];
const PATHS: &[&str] = &[
    "/", "/a", "/ab", "/abc", "/b", "/a/b", "/A", "/AB", "/ba", "/a/bc", "/abc/d",
];
const HEADER_VALUES: &[&str] = &["", "x", "xy", "y", "X"];

fn string_match(
    values: &'static [&'static str],
    regexes: &'static [&'static str],
) -> impl Strategy<Value = StringMatch> {
    prop_oneof![
        Just(StringMatch::default()),
        proptest::sample::select(values).prop_map(|v| StringMatch {
            exact: Some(v.into()),
            ..Default::default()
        }),
        proptest::sample::select(values).prop_map(|v| StringMatch {
            prefix: Some(v.into()),
            ..Default::default()
        }),
        proptest::sample::select(regexes).prop_map(|v| StringMatch {
            regex: Some(v.into()),
            ..Default::default()
        }),
    ]
}

fn uri_match() -> impl Strategy<Value = StringMatch> {
    const URIS: &[&str] = &["/", "/a", "/ab", "/abc", "/b", "/a/b", "/A", "/AB"];
    const URI_RES: &[&str] = &["/a.*", "/[ab]+", "/a|/b", "/.*c", "/A.*"];
    string_match(URIS, URI_RES)
}

fn header_map() -> impl Strategy<Value = BTreeMap<String, StringMatch>> {
    const RES: &[&str] = &["x.*", "y", "[xy]+", ""];
    proptest::collection::btree_map(
        proptest::sample::select(&["x-h", "X-H", "x-g"][..]).prop_map(str::to_string),
        string_match(HEADER_VALUES, RES),
        0..2,
    )
}

fn match_request() -> impl Strategy<Value = HttpMatchRequest> {
    (
        proptest::option::weighted(0.7, uri_match()),
        any::<bool>(),
        header_map(),
        header_map(),
        proptest::option::weighted(0.2, proptest::sample::select(&["GET", "POST"][..])),
        proptest::option::weighted(0.2, proptest::sample::select(&["x", "y", ""][..])),
        proptest::option::weighted(0.15, proptest::sample::select(&[80u32, 8080][..])),
    )
        .prop_map(
            |(uri, ignore_uri_case, headers, without_headers, method, q, port)| HttpMatchRequest {
                uri,
                ignore_uri_case,
                headers,
                without_headers,
                method: method.map(|m| StringMatch {
                    exact: Some(m.into()),
                    ..Default::default()
                }),
                query_params: q
                    .map(|v| {
                        BTreeMap::from([(
                            "q".to_string(),
                            StringMatch {
                                exact: Some(v.into()),
                                ..Default::default()
                            },
                        )])
                    })
                    .unwrap_or_default(),
                port,
                ..Default::default()
            },
        )
}

fn http_route() -> impl Strategy<Value = HttpRoute> {
    proptest::collection::vec(match_request(), 0..3).prop_map(|matches| HttpRoute {
        matches,
        route: vec![HttpRouteDestination {
            destination: Some(Destination {
                host: "dest.com".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn spec() -> impl Strategy<Value = VirtualServiceSpec> {
    (
        proptest::sample::subsequence(HOSTS, 1..3),
        proptest::collection::vec(http_route(), 1..6),
    )
        .prop_map(|(hosts, http)| VirtualServiceSpec {
            hosts: hosts.into_iter().map(String::from).collect(),
            gateways: vec!["gw".into()],
            http,
            ..Default::default()
        })
}

#[derive(Debug, Clone)]
struct Req {
    host: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    method: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

fn request() -> impl Strategy<Value = Req> {
    (
        proptest::sample::select(REQ_HOSTS),
        proptest::sample::select(PATHS),
        proptest::option::of(proptest::sample::select(
            &["q=x", "q=y", "q=%78", "q", "p=x&q=y"][..],
        )),
        proptest::sample::select(&["GET", "POST"][..]),
        proptest::collection::vec(
            (
                proptest::sample::select(&["x-h", "x-g"][..]),
                proptest::sample::select(HEADER_VALUES),
            ),
            0..3,
        ),
    )
        .prop_map(|(host, path, query, method, headers)| Req {
            host,
            path,
            query,
            method,
            headers,
        })
}

// ---------------- the naive reference ----------------

fn sm_matches(m: &StringMatch, v: &str, ignore_case: bool) -> bool {
    if let Some(e) = &m.exact {
        return if ignore_case {
            e.to_lowercase() == v.to_lowercase()
        } else {
            e == v
        };
    }
    if let Some(p) = &m.prefix {
        return if ignore_case {
            v.to_lowercase().starts_with(&p.to_lowercase())
        } else {
            v.starts_with(p.as_str())
        };
    }
    if let Some(r) = &m.regex {
        return regex::Regex::new(&format!("^(?:{r})$"))
            .unwrap()
            .is_match(v);
    }
    true
}

fn header_values<'a>(req: &'a Req, name: &str) -> Vec<&'a str> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .collect()
}

fn query_first(req: &Req, name: &str) -> Option<String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    req.query?
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| decode(k) == name)
        .map(|(_, v)| decode(v))
}

fn block_matches(m: &HttpMatchRequest, req: &Req) -> bool {
    let port = req
        .host
        .rsplit_once(':')
        .map_or(80, |(_, p)| p.parse().unwrap());
    m.uri.as_ref().is_none_or(|u| {
        // ignoreUriCase never affects regex.
        sm_matches(u, req.path, m.ignore_uri_case && u.regex.is_none())
    }) && m
        .method
        .as_ref()
        .is_none_or(|x| sm_matches(x, req.method, false))
        && m.port.is_none_or(|p| p == port)
        && m.headers.iter().all(|(name, sm)| {
            header_values(req, name)
                .iter()
                .any(|v| sm_matches(sm, v, false))
        })
        && m.without_headers.iter().all(|(name, sm)| {
            let values = header_values(req, name);
            let is_presence = sm.exact.is_none() && sm.prefix.is_none() && sm.regex.is_none();
            if values.is_empty() && !is_presence {
                !sm_matches(sm, "", false)
            } else {
                !values.iter().any(|v| sm_matches(sm, v, false))
            }
        })
        && m.query_params
            .iter()
            .all(|(name, sm)| query_first(req, name).is_some_and(|v| sm_matches(sm, &v, false)))
}

/// `Some((vs, route))` for a match, `Some((usize::MAX, 0))` for "host known, no route", `None` for no host.
fn reference(specs: &[VirtualServiceSpec], req: &Req) -> Option<(usize, usize)> {
    let host = req.host.split(':').next().unwrap().to_lowercase();
    let patterns: Vec<&str> = specs
        .iter()
        .flat_map(|s| s.hosts.iter().map(String::as_str))
        .collect();
    let chosen = if patterns.contains(&host.as_str()) {
        host.clone()
    } else {
        let best = (patterns.iter())
            .filter_map(|p| p.strip_prefix('*').filter(|s| !s.is_empty()))
            .filter(|s| host.len() > s.len() && host.ends_with(s))
            .max_by_key(|s| s.len());
        match best {
            Some(s) => format!("*{s}"),
            None if patterns.contains(&"*") => "*".into(),
            None => return None,
        }
    };
    for (vi, spec) in specs.iter().enumerate() {
        if !spec.hosts.contains(&chosen) {
            continue;
        }
        for (ri, route) in spec.http.iter().enumerate() {
            if route.matches.is_empty() || route.matches.iter().any(|m| block_matches(m, req)) {
                return Some((vi, ri));
            }
        }
    }
    Some((usize::MAX, 0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn compiled_table_agrees_with_naive_first_match(specs in proptest::collection::vec(spec(), 1..4), reqs in proptest::collection::vec(request(), 1..24)) {
        let vss: Vec<VirtualService> = specs.iter().enumerate().map(|(i, s)| {
            let meta = ObjectMeta { name: format!("vs{i}"), namespace: "default".into(), ..Default::default() };
            VirtualService::compile(&meta, s).unwrap()
        }).collect();
        let table = RouteTable::build(&vss, &TableOptions::gateway("default/gw"));
        for r in reqs {
            let uri = match r.query { Some(q) => format!("{}?{q}", r.path), None => r.path.to_string() };
            let mut b = http::Request::builder().method(r.method).uri(uri).header("host", r.host);
            for (k, v) in &r.headers { b = b.header(*k, *v); }
            let got = match table.route(&b.body(()).unwrap()) {
                RouteMatch::Matched(m) => {
                    let vi: usize = m.route().source().name.trim_start_matches("vs").parse().unwrap();
                    Some((vi, m.route().index()))
                }
                RouteMatch::NoRoute => Some((usize::MAX, 0)),
                RouteMatch::NoVirtualHost => None,
            };
            prop_assert_eq!(got, reference(&specs, &r), "request {:?}", r);
        }
    }
}
