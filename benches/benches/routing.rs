//! Route matching at 10..10,000 routes per workload, and the routing layer's overhead.
//!
//! `cargo bench -p mesh-benches --bench routing`

use std::convert::Infallible;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use http_body_util::Empty;
use mesh_benches::{Workload, route_table};
use mesh_routing::{RouteLayer, SharedRouteTable};
use tower::{Layer, ServiceExt, service_fn};

fn matching(c: &mut Criterion) {
    for workload in [
        Workload::Exact,
        Workload::Prefix,
        Workload::Header,
        Workload::Regex,
    ] {
        let mut group = c.benchmark_group(format!("route_match/{}", workload.name()));
        for n in [10usize, 100, 1_000, 10_000] {
            // Regex tables are scanned in order by design; 10k regexes only restate that.
            if workload == Workload::Regex && n > 1_000 {
                continue;
            }
            let table = route_table(workload, n);
            // The last route: the worst case for a linear scan.
            let hit = workload.request(n - 1);
            assert!(table.route(&hit).route().is_some(), "fixture must match");
            group.bench_with_input(BenchmarkId::new("last", n), &hit, |b, req| {
                b.iter(|| black_box(table.route(black_box(req))))
            });
            let miss = http::Request::get("/nothing/here")
                .header("host", "bench.example.com")
                .body(())
                .unwrap_or_default();
            group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, req| {
                b.iter(|| black_box(table.route(black_box(req))))
            });
        }
        group.finish();
    }
}

/// Polls a future that must complete at once (no I/O, no timers) with a no-op waker, so the
/// figure is the layer's own work rather than an executor's.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmarked service must not wait"),
    }
}

fn layer_overhead(c: &mut Criterion) {
    let bare = service_fn(|_req: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
    });
    let table = SharedRouteTable::new(route_table(Workload::Prefix, 100));
    let routed = RouteLayer::new(table).layer(bare);
    let mut group = c.benchmark_group("route_layer");
    let req = || Workload::Prefix.request(50);
    group.bench_function("bare_service_fn", |b| {
        b.iter_batched(
            req,
            |r| ready(bare.oneshot(r)).map(|r| black_box(r.status())),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("route_layer_100_prefix_routes", |b| {
        b.iter_batched(
            req,
            |r| ready(routed.clone().oneshot(r)).map(|r| black_box(r.status())),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, matching, layer_overhead);
criterion_main!(benches);
