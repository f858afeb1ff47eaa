//! Per-request overhead of mesh-mirror's layers against a bare `service_fn`: the weighted
//! split (random and smooth round-robin), the mirror layer sampled out and sampled in, and the
//! whole dispatch stack (route timeout, mirror, weighted split, retries per destination).
//!
//! `cargo bench -p mesh-benches --bench mirror -- --measurement-time 3 --warm-up-time 1`
//!
//! Each sample runs its requests inside one current-thread tokio runtime. The "sampled in"
//! cases include running every spawned mirror copy to completion (the loop yields every 32
//! requests and waits for all copies at the end), so they measure the whole CPU cost of a
//! copy, not only the part on the primary's path.
//!
//! Before the timings, the binary prints allocations per request for each case, counted by a
//! `stats_alloc` global allocator over 10,000 requests (after a warm-up). The counting
//! allocator is installed for the timings too; it adds a few atomic increments per allocation
//! to every case alike.

use std::alloc::System;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http::{Request, Response, Uri};
use http_body_util::Full;
use mesh_mirror::{
    MirrorBody, MirrorCounters, MirrorLayer, MirrorTarget, Mode, RetryLayer, RouteTimeoutLayer,
    Weighted,
};
use mesh_routing::RetryPolicy;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

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

/// A backend that answers at once, holding a reference-counted name like a real client holds
/// its connection pool: cloning it costs an atomic increment, as cloning a hyper client does.
#[derive(Clone)]
struct Backend(Arc<str>);

impl<B> Service<Request<B>> for Backend {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<B>) -> Self::Future {
        black_box(self.0.len());
        ok(req)
    }
}

fn backend() -> Backend {
    Backend(Arc::from("reviews-v1"))
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

fn weighted(mode: Mode) -> Weighted<Backend> {
    Weighted::new(vec![(backend(), 90), (backend(), 10)], mode).unwrap_or_else(|e| panic!("{e}"))
}

fn retry_policy(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        ..RetryPolicy::istio_default()
    }
}

/// The whole dispatch stack in its intended order: route timeout, mirror, a 90/10 smooth
/// round-robin split, and per destination retries (Istio's default policy).
fn whole_stack(
    percentage: f64,
) -> (
    impl Service<Request<Full<Bytes>>, Response = Response<impl Sized>, Error = impl std::fmt::Debug>,
    MirrorCounters,
) {
    let mirror = mirror_layer(percentage);
    let counters = mirror.counters();
    let retry = RetryLayer::new(RetryPolicy::istio_default());
    let split = Weighted::new(
        vec![(retry.layer(backend()), 90), (retry.layer(backend()), 10)],
        Mode::RoundRobin,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let svc = ServiceBuilder::new()
        .layer(RouteTimeoutLayer::fixed(Duration::from_secs(15)))
        .layer(mirror)
        .service(split);
    (svc, counters)
}

/// Prints allocations per request of `svc`, counted over 10,000 requests after a warm-up.
fn count<S, B>(
    rt: &tokio::runtime::Runtime,
    name: &str,
    mut svc: S,
    mirrors: Option<&MirrorCounters>,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    const N: u64 = 10_000;
    drive(rt, &mut svc, 1_000, mirrors);
    let region = Region::new(GLOBAL);
    drive(rt, &mut svc, N, mirrors);
    let stats = region.change();
    println!(
        "allocations {name:<26} {:>6.2} allocs/request {:>8.1} bytes/request",
        stats.allocations as f64 / N as f64,
        stats.bytes_allocated as f64 / N as f64,
    );
}

fn allocations() {
    let rt = runtime();
    count(&rt, "bare_service_fn", service_fn(ok::<Full<Bytes>>), None);
    count(&rt, "weighted_random", weighted(Mode::Random), None);
    count(
        &rt,
        "weighted_round_robin",
        weighted(Mode::RoundRobin),
        None,
    );
    count(
        &rt,
        "mirror_sampled_out",
        mirror_layer(0.0).layer(backend()),
        None,
    );
    let layer = mirror_layer(100.0);
    let counters = layer.counters();
    count(
        &rt,
        "mirror_sampled_in",
        layer.layer(backend()),
        Some(&counters),
    );
    count(
        &rt,
        "route_timeout_only",
        RouteTimeoutLayer::fixed(Duration::from_secs(15)).layer(backend()),
        None,
    );
    count(
        &rt,
        "retry_only",
        RetryLayer::new(retry_policy(2)).layer(backend()),
        None,
    );
    count(
        &rt,
        "retry_only_zero_attempts",
        RetryLayer::new(retry_policy(0)).layer(backend()),
        None,
    );
    let (svc, _) = whole_stack(0.0);
    count(&rt, "whole_stack", svc, None);
    let (svc, counters) = whole_stack(100.0);
    count(&rt, "whole_stack_mirrored", svc, Some(&counters));
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
            let mut svc = weighted(mode);
            b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
        });
    }
    group.bench_function("mirror_sampled_out", |b| {
        let mut svc = mirror_layer(0.0).layer(backend());
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
    });
    group.bench_function("mirror_sampled_in", |b| {
        let layer = mirror_layer(100.0);
        let counters = layer.counters();
        let mut svc = layer.layer(backend());
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, Some(&counters)))
    });
    group.bench_function("route_timeout_only", |b| {
        let mut svc = RouteTimeoutLayer::fixed(Duration::from_secs(15)).layer(backend());
        b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
    });
    for (name, attempts) in [("retry_only", 2), ("retry_only_zero_attempts", 0)] {
        group.bench_function(name, |b| {
            let mut svc = RetryLayer::new(retry_policy(attempts)).layer(backend());
            b.iter_custom(|iters| drive(&rt, &mut svc, iters, None))
        });
    }
    for (name, percentage) in [("whole_stack", 0.0), ("whole_stack_mirrored", 100.0)] {
        group.bench_function(name, |b| {
            let (mut svc, counters) = whole_stack(percentage);
            let mirrors = (percentage > 0.0).then_some(&counters);
            b.iter_custom(|iters| drive(&rt, &mut svc, iters, mirrors))
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);

fn main() {
    allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
