use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use mesh_mirror::MirrorCounters;
use mesh_routing::{RouteLayer, RouteTable, SharedRouteTable, TableOptions, VirtualService};
use tower::{Layer as _, ServiceBuilder, ServiceExt as _, service_fn};

use super::*;
use crate::proxy::TagLayer;

fn local() -> LocalWorkload {
    LocalWorkload {
        workload: "productpage".into(),
        namespace: "default".into(),
        principal: "spiffe://cluster.local/ns/default/sa/productpage".into(),
    }
}

fn line_with<'a>(text: &'a str, prefix: &str, needles: &[&str]) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
}

#[tokio::test]
async fn records_istio_metrics_with_route_destination_labels() {
    let vs = VirtualService::from_yaml(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n\
         spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}\n",
    )
    .unwrap();
    let table = SharedRouteTable::new(RouteTable::build(&[vs], &TableOptions::default()));
    let metrics = ProxyMetrics::new();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::new(
            metrics.clone(),
            Reporter::Source,
            local(),
        ))
        .layer(RouteLayer::new(table))
        .layer(TagLayer)
        .service(service_fn(
            |req: Request<CountedBody<Full<Bytes>>>| async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, "hello");
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"0123456789"))))
            },
        ));
    let req = Request::post("http://reviews/x")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 10);

    let text = metrics.encode();
    let labels = [
        "reporter=\"source\"",
        "source_workload=\"productpage\"",
        "source_workload_namespace=\"default\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\"",
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_service_name=\"reviews\"",
        "destination_service_namespace=\"default\"",
        "destination_workload=\"unknown\"",
        "destination_principal=\"unknown\"",
        "request_protocol=\"http\"",
        "response_code=\"200\"",
        "response_flags=\"-\"",
        "connection_security_policy=\"unknown\"",
    ];
    let total = line_with(&text, "istio_requests_total{", &labels).expect(&text);
    assert!(total.ends_with(" 1"), "{total}");
    assert!(text.contains("# TYPE istio_request_duration_milliseconds histogram"));
    let count = line_with(&text, "istio_request_duration_milliseconds_count{", &labels).unwrap();
    assert!(count.ends_with(" 1"), "{count}");
    let le = line_with(
        &text,
        "istio_request_duration_milliseconds_bucket{",
        &["le=\"3600000.0\""],
    );
    assert!(
        le.is_some(),
        "Istio's largest duration bucket is exported:\n{text}"
    );
    let req_sum = line_with(&text, "istio_request_bytes_sum{", &labels).unwrap();
    assert!(req_sum.ends_with(" 5.0"), "{req_sum}");
    let resp_sum = line_with(&text, "istio_response_bytes_sum{", &labels).unwrap();
    assert!(resp_sum.ends_with(" 10.0"), "{resp_sum}");
}

#[tokio::test]
async fn unrouted_requests_fall_back_to_the_authority_and_errors_count_as_code_0() {
    let metrics = ProxyMetrics::new();
    let layer = MetricsLayer::new(metrics.clone(), Reporter::Destination, local());
    let ok = layer.layer(service_fn(
        |_req: Request<CountedBody<Full<Bytes>>>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(503)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        },
    ));
    let req = Request::get("/").header("host", "api.example.com:8080");
    let resp = ok
        .oneshot(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    drop(resp); // a dropped body still records
    let failing = layer.layer(service_fn(
        |_req: Request<CountedBody<Full<Bytes>>>| async { Err::<Response<Full<Bytes>>, _>("boom") },
    ));
    let req = Request::get("http://other.example/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(failing.oneshot(req).await.is_err());

    let text = metrics.encode();
    let unrouted = [
        "reporter=\"destination\"",
        "destination_service=\"api.example.com\"",
        "destination_workload=\"productpage\"",
        "response_code=\"503\"",
        "connection_security_policy=\"none\"",
    ];
    assert!(
        line_with(&text, "istio_requests_total{", &unrouted).is_some(),
        "{text}"
    );
    let failed = [
        "destination_service=\"other.example\"",
        "response_code=\"0\"",
    ];
    assert!(
        line_with(&text, "istio_requests_total{", &failed).is_some(),
        "{text}"
    );
}

#[test]
fn mirror_denial_and_reload_counters_are_exported() {
    let metrics = ProxyMetrics::new();
    let counters = MirrorCounters::new();
    metrics.register_mirror("reviews-shadow", counters.clone());
    metrics.record_denial("authorization");
    metrics.record_reload(false);
    metrics.set_generation(3);
    let text = metrics.encode();
    let mirrored = "mesh_mirror_requests_total{mirror=\"reviews-shadow\",outcome=\"mirrored\"} 0";
    assert!(text.contains(mirrored), "{text}");
    assert!(
        text.contains("mesh_policy_denials_total{policy=\"authorization\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mesh_config_reloads_total{result=\"failure\"} 1"),
        "{text}"
    );
    assert!(text.contains("mesh_config_generation 3"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn cluster_hosts_split_into_name_and_namespace() {
    assert_eq!(
        split_service("reviews.bookinfo.svc.cluster.local"),
        ("reviews".to_string(), "bookinfo".to_string())
    );
    assert_eq!(
        split_service("api.example.com"),
        ("api.example.com".to_string(), "unknown".to_string())
    );
}

#[tokio::test]
async fn the_destination_chosen_by_a_split_wins_over_the_route() {
    use mesh_mirror::SelectedDestination;
    use mesh_routing::{Destination, HeaderOps, WeightedDestination};
    use std::sync::Arc;

    let chosen = Arc::new(WeightedDestination {
        destination: Destination {
            host: "reviews.default.svc.cluster.local".into(),
            subset: Some("v2".into()),
            port: None,
        },
        weight: 10,
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
    });
    let metrics = ProxyMetrics::new();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::new(
            metrics.clone(),
            Reporter::Source,
            local(),
        ))
        // Stands in for mesh_mirror::Weighted, which inserts its choice before calling in.
        .map_request(move |mut req: Request<CountedBody<Full<Bytes>>>| {
            req.extensions_mut().insert(SelectedDestination {
                index: 1,
                destination: chosen.clone(),
            });
            req
        })
        .layer(TagLayer)
        .service(service_fn(
            |_req: Request<CountedBody<Full<Bytes>>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            },
        ));
    let req = Request::get("http://reviews/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    drop(svc.oneshot(req).await.unwrap());
    let text = metrics.encode();
    let labels = [
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_service_name=\"reviews\"",
    ];
    assert!(
        line_with(&text, "istio_requests_total{", &labels).is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn repeated_label_sets_share_a_series_and_different_ones_do_not() {
    let metrics = ProxyMetrics::new();
    let layer = MetricsLayer::new(metrics.clone(), Reporter::Source, local());
    let svc = layer.layer(service_fn(
        |req: Request<CountedBody<Full<Bytes>>>| async move {
            let status = if req.uri().path() == "/fail" {
                500
            } else {
                200
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"abc")))
                    .unwrap(),
            )
        },
    ));
    for (host, path) in [
        ("a.example", "/"),
        ("a.example", "/"),
        ("a.example", "/fail"),
        ("b.example", "/"),
        ("a.example", "/"),
    ] {
        let req = Request::get(format!("http://{host}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        resp.into_body().collect().await.unwrap();
    }
    let text = metrics.encode();
    let count = |host: &str, code: &str| {
        let needles = [
            format!("destination_service=\"{host}\""),
            format!("response_code=\"{code}\""),
        ];
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        line_with(&text, "istio_requests_total{", &needles)
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(count("a.example", "200").as_deref(), Some("3"), "{text}");
    assert_eq!(count("a.example", "500").as_deref(), Some("1"), "{text}");
    assert_eq!(count("b.example", "200").as_deref(), Some("1"), "{text}");
    let sum = line_with(
        &text,
        "istio_response_bytes_sum{",
        &["destination_service=\"a.example\"", "response_code=\"200\""],
    )
    .unwrap();
    assert!(sum.ends_with(" 9.0"), "{sum}");
}
