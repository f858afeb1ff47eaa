use std::convert::Infallible;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tower::{ServiceBuilder, ServiceExt as _, service_fn};

use super::*;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn read_line(reader: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> String {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    line
}

#[tokio::test]
async fn one_envoy_format_line_per_request_with_trace_ids_and_a_generated_request_id() {
    let (writer, reader) = tokio::io::duplex(64 * 1024);
    let mut reader = BufReader::new(reader);
    let log = AccessLog::to_writer(writer, 16, ProxyMetrics::new());
    let svc = ServiceBuilder::new()
        .layer(mesh_gateway::filters::request_id_layer())
        .layer(AccessLogLayer::new(log))
        .service(service_fn(
            |req: Request<CountedBody<Full<Bytes>>>| async move {
                // Trace context passes through untouched.
                assert_eq!(req.headers()["traceparent"], TRACEPARENT);
                assert_eq!(
                    req.headers()["x-b3-traceid"],
                    "80f198ee56343ba864fe8b2a57d3eff7"
                );
                if let Some(tags) = req.extensions().get::<RequestTags>() {
                    tags.update(|t| t.upstream_host = Some("10.0.0.7:9080".into()));
                }
                let _ = req.into_body().collect().await;
                let resp = Response::builder()
                    .status(201)
                    .header("x-envoy-upstream-service-time", "3")
                    .body(Full::new(Bytes::from_static(b"created")))
                    .unwrap();
                Ok::<_, Infallible>(resp)
            },
        ));
    let req = Request::post("http://reviews:9080/api?x=1")
        .header("user-agent", "curl/8")
        .header("traceparent", TRACEPARENT)
        .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    let _ = resp.into_body().collect().await.unwrap();

    let line = read_line(&mut reader).await;
    assert!(line.starts_with('[') && line.ends_with('\n'), "{line}");
    let rest = line.split_once("] ").unwrap().1;
    let parts: Vec<&str> = rest.splitn(9, ' ').collect();
    assert_eq!(parts[..3], ["\"POST", "/api?x=1", "HTTP/1.1\""], "{line}");
    assert_eq!(parts[3..6], ["201", "-", "5"], "{line}"); // code, flags, bytes received
    assert_eq!(parts[6], "7", "{line}"); // bytes sent
    assert!(parts[7].parse::<u64>().is_ok(), "{line}"); // duration
    let tail = parts[8];
    assert!(tail.starts_with("3 \"-\" \"curl/8\" \""), "{line}");
    let quoted: Vec<&str> = tail.split('"').filter(|s| !s.trim().is_empty()).collect();
    // quoted: 3, -, curl/8, request id, authority, upstream, traceparent, b3
    assert_eq!(quoted[3].len(), 36, "a generated uuid: {line}");
    assert_eq!(
        quoted[4..],
        [
            "reviews:9080",
            "10.0.0.7:9080",
            TRACEPARENT,
            "80f198ee56343ba864fe8b2a57d3eff7"
        ],
        "{line}"
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    // Nobody reads the other end and the pipe is tiny, so the writer stalls.
    let (writer, _reader) = tokio::io::duplex(8);
    let metrics = ProxyMetrics::new();
    let log = AccessLog::to_writer(writer, 2, metrics.clone());
    for _ in 0..50 {
        log.log("x".repeat(100) + "\n");
    }
    let text = metrics.encode();
    let dropped = text
        .lines()
        .find(|l| l.starts_with("mesh_access_log_dropped_total "))
        .unwrap();
    let n: u64 = dropped.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 40, "{dropped}");
}

#[test]
fn start_time_is_envoys_format() {
    let t = UNIX_EPOCH + Duration::from_millis(1_460_751_420_310);
    assert_eq!(format_start_time(t), "2016-04-15T20:17:00.310Z");
    assert_eq!(format_start_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
}

#[test]
fn b3_single_header_gives_the_trace_id() {
    let mut h = HeaderMap::new();
    h.insert(
        "b3",
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
            .parse()
            .unwrap(),
    );
    assert_eq!(b3_trace_id(&h), Some("80f198ee56343ba864fe8b2a57d3eff7"));
    h.insert("b3", "0".parse().unwrap());
    assert_eq!(b3_trace_id(&h), None);
}
