//! Per-request overhead of mesh-mirror's layers against a bare `service_fn`: the weighted
//! split (random and smooth round-robin), the mirror layer sampled out and sampled in, and the
//! whole dispatch stack (route timeout, mirror, retries, weighted split).
//!
//! `cargo bench -p mesh-benches --bench mirror -- --measurement-time 3 --warm-up-time 1`
//!
//! Each sample runs its requests inside one current-thread tokio runtime. The "sampled in"
//! cases include running every spawned mirror copy to completion (the loop yields every 32
//! requests and waits for all copies at the end), so they measure the whole CPU cost of a
//! copy, not only the part on the primary's path.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use http_body_util::Full;
use mesh_mirror::{
    MirrorBody, MirrorCounters, MirrorLayer, MirrorTarget, Mode, RetryLayer, RouteTimeoutLayer,
    Weighted,
};
use mesh_routing::RetryPolicy;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const BODY: &[u8] =
    b"{\"order\": 7, \"items\": [1, 2, 3], \"note\": \"a small JSON request body\"}";

fn request(uri: &Uri) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::from_static(BODY)));
    *req.uri_mut() = uri.clone();
    req
}

fn ok<B>(_req: Request<B>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

/// Sends `iters` requests through `svc` (one readiness check and call each), letting spawned
/// mirror copies run, and returns the elapsed time including finishing every copy.
fn drive<S, B>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    iters: u64,
    mirrors: Option<&MirrorCounters>,
) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let uri: Uri = "http://reviews.default.svc.cluster.local/reviews/1"
        .parse()
        .unwrap_or_default();
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            let svc = svc.ready().await.unwrap_or_else(|e| panic!("{e:?}"));
            let resp = svc.call(request(&uri)).await;
            black_box(resp.is_ok());
            if mirrors.is_some() && i % 32 == 31 {
                tokio::task::yield_now().await;
            }
        }
        if let Some(counters) = mirrors {
            loop {
                let s = counters.snapshot();
                if s.completed + s.failed >= s.mirrored {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        start.elapsed()
    })
}

fn mirror_layer(
    percentage: f64,
) -> MirrorLayer<
    impl Service<
        Request<MirrorBody>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static,
> {
    MirrorLayer::new(vec![MirrorTarget {
        service: service_fn(ok::<MirrorBody>),
        percentage,
    }])
}

fn dispatch(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("dispatch");

    group.bench_function("bare_service_fn", |b| {
        let mut svc = service_fn(ok::<Full<Bytes>>);
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
    });

    for (name, mode) in [
        ("weighted_random", Mode::Random),
        ("weighted_round_robin", Mode::RoundRobin),
    ] {
        group.bench_function(name, |b| {
            let backends = vec![
                (service_fn(ok::<Full<Bytes>>), 90),
                (service_fn(ok::<Full<Bytes>>), 10),
            ];
            let mut svc = Weighted::new(backends, mode).unwrap_or_else(|e| panic!("{e}"));
            b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
        });
    }

    group.bench_function("mirror_sampled_out", |b| {
        let mut svc = mirror_layer(0.0).layer(service_fn(ok));
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
    });

    group.bench_function("mirror_sampled_in", |b| {
        let layer = mirror_layer(100.0);
        let counters = layer.counters();
        let mut svc = layer.layer(service_fn(ok));
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, Some(&counters)))
    });

    group.bench_function("route_timeout_only", |b| {
        let mut svc = RouteTimeoutLayer::fixed(Duration::from_secs(15)).layer(service_fn(ok));
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
    });

    group.bench_function("retry_only", |b| {
        let mut svc = RetryLayer::new(RetryPolicy::istio_default()).layer(service_fn(ok));
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
    });

    group.bench_function("retry_only_zero_attempts", |b| {
        let policy = RetryPolicy {
            attempts: 0,
            ..RetryPolicy::istio_default()
        };
        let mut svc = RetryLayer::new(policy).layer(service_fn(ok));
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
    });

    for (name, percentage) in [("whole_stack", 0.0), ("whole_stack_mirrored", 100.0)] {
        group.bench_function(name, |b| {
            let mirror = mirror_layer(percentage);
            let counters = mirror.counters();
            let backends = vec![(service_fn(ok), 90), (service_fn(ok), 10)];
            let split = Weighted::new(backends, Mode::RoundRobin).unwrap_or_else(|e| panic!("{e}"));
            let mut svc = ServiceBuilder::new()
                .layer(RouteTimeoutLayer::fixed(Duration::from_secs(15)))
                .layer(mirror)
                .layer(RetryLayer::new(RetryPolicy::istio_default()))
                .service(split);
            let mirrors = (percentage > 0.0).then_some(&counters);
            b.iter_custom(|iters| drive(&rt, &mut svc, iters, mirrors))
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
