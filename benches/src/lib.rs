//! Shared fixtures for the criterion benchmarks in `benches/benches/`.
//!
//! Run everything with `cargo bench -p mesh-benches`; one suite with
//! `cargo bench -p mesh-benches --bench routing`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use mesh_routing::model::{
    Destination, HttpMatchRequest, HttpRoute, HttpRouteDestination, StringMatch, VirtualServiceSpec,
};
use mesh_routing::{ObjectMeta, RouteTable, TableOptions, VirtualService};

/// Shapes of route tables used by the routing benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Route `i` matches `uri: {exact: /svc-i/item}`.
    Exact,
    /// Route `i` matches `uri: {prefix: /svc-i/}`.
    Prefix,
    /// Route `i` matches `headers: {x-user: {exact: user-i}}`.
    Header,
    /// Route `i` matches `uri: {regex: /svc-i/[a-z]+}`: not indexable, scanned in order.
    Regex,
}

impl Workload {
    /// Name used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Prefix => "prefix",
            Self::Header => "header",
            Self::Regex => "regex",
        }
    }

    fn condition(self, i: usize) -> HttpMatchRequest {
        let sm =
            |exact: Option<String>, prefix: Option<String>, regex: Option<String>| StringMatch {
                exact,
                prefix,
                regex,
            };
        match self {
            Self::Exact => HttpMatchRequest {
                uri: Some(sm(Some(format!("/svc-{i}/item")), None, None)),
                ..Default::default()
            },
            Self::Prefix => HttpMatchRequest {
                uri: Some(sm(None, Some(format!("/svc-{i}/")), None)),
                ..Default::default()
            },
            Self::Header => HttpMatchRequest {
                headers: BTreeMap::from([(
                    "x-user".to_string(),
                    sm(Some(format!("user-{i}")), None, None),
                )]),
                ..Default::default()
            },
            Self::Regex => HttpMatchRequest {
                uri: Some(sm(None, None, Some(format!("/svc-{i}/[a-z]+")))),
                ..Default::default()
            },
        }
    }

    /// A request that matches route `i` (the last route is the worst case for a linear scan).
    pub fn request(self, i: usize) -> http::Request<()> {
        let b = http::Request::get(match self {
            Self::Exact | Self::Regex => format!("/svc-{i}/item"),
            Self::Prefix => format!("/svc-{i}/item/details"),
            Self::Header => "/".to_string(),
        })
        .header("host", "bench.example.com");
        let b = if self == Self::Header {
            b.header("x-user", format!("user-{i}"))
        } else {
            b
        };
        b.body(()).unwrap_or_default()
    }
}

/// A table with `n` routes of one workload on host `bench.example.com`, bound to `mesh`.
pub fn route_table(workload: Workload, n: usize) -> RouteTable {
    let http = (0..n)
        .map(|i| HttpRoute {
            name: Some(format!("r{i}")),
            matches: vec![workload.condition(i)],
            route: vec![HttpRouteDestination {
                destination: Some(Destination {
                    host: format!("svc-{i}"),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let spec = VirtualServiceSpec {
        hosts: vec!["bench.example.com".into()],
        http,
        ..Default::default()
    };
    let meta = ObjectMeta {
        name: "bench".into(),
        namespace: "default".into(),
        ..Default::default()
    };
    match VirtualService::compile(&meta, &spec) {
        Ok(vs) => RouteTable::build(&[vs], &TableOptions::default()),
        // The fixture is valid by construction; an empty table would make the bench obviously wrong.
        Err(_) => RouteTable::default(),
    }
}
