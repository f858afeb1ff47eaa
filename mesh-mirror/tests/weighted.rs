//! tower's readiness contract for request-independent choice, pinned with tower-test mocks and
//! a probe service, plus per-destination header operations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::future::{Ready, ready};
use http::{HeaderValue, Request, Response};
use mesh_mirror::{Mode, RngSource, SelectedDestination, Weighted, WeightsError};
use mesh_routing::{Destination, HeaderOps, WeightedDestination, WeightedDestinations};
use tower::{Service, ServiceExt as _};
use tower_test::mock;

/// A backend that counts polls and calls, starts every clone unready, and panics when called
/// without having reported ready since its last call.
#[derive(Debug)]
struct Probe {
    name: &'static str,
    ready: bool,
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Probe {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            ready: false,
            polls: Arc::default(),
            calls: Arc::default(),
        }
    }
    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Clone for Probe {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            ready: false,
            polls: self.polls.clone(),
            calls: self.calls.clone(),
        }
    }
}

impl Service<Request<()>> for Probe {
    type Response = Response<&'static str>;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Response<&'static str>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        assert!(self.ready, "probe {} called while not ready", self.name);
        self.ready = false;
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Response::new(self.name)))
    }
}

type Req = Request<&'static str>;
type Resp = Response<&'static str>;

type MockHandle = mock::Handle<Req, Resp>;

fn two_mocks() -> (
    mock::Spawn<Weighted<mock::Mock<Req, Resp>>>,
    MockHandle,
    MockHandle,
) {
    let (a, ha) = mock::pair();
    let (b, hb) = mock::pair();
    let w = Weighted::new(vec![(a, 1), (b, 1)], Mode::RoundRobin).unwrap();
    (mock::Spawn::new(w), ha, hb)
}

const WEIGHTED_REFUSAL: &str =
    "Weighted::call without a preceding poll_ready that returned Ready(Ok)";

/// The message of a caught panic: tells a refusal by `Weighted` from a probe's own assertion.
fn panic_message(result: std::thread::Result<()>) -> String {
    let payload = result.expect_err("the call should have panicked");
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn call_now(spawn: &mut mock::Spawn<Weighted<Probe>>) -> &'static str {
    let fut = spawn.call(Request::new(()));
    let resp = futures_util::FutureExt::now_or_never(fut).unwrap().unwrap();
    resp.body()
}

#[test]
fn polls_only_the_chosen_service() {
    let (a, b) = (Probe::new("a"), Probe::new("b"));
    let w = Weighted::new(vec![(a.clone(), 1), (b.clone(), 1)], Mode::RoundRobin).unwrap();
    let mut spawn = mock::Spawn::new(w);
    assert!(spawn.poll_ready().is_ready());
    // Polling again before `call` keeps the choice: still only `a` was polled.
    assert!(spawn.poll_ready().is_ready());
    assert_eq!((a.polls(), b.polls()), (2, 0));
    assert_eq!(call_now(&mut spawn), "a");
    // The next choice is `b`, and only `b` is polled for it.
    assert!(spawn.poll_ready().is_ready());
    assert_eq!((a.polls(), b.polls()), (2, 1));
    assert_eq!(call_now(&mut spawn), "b");
    assert_eq!((a.calls(), b.calls()), (1, 1));
}

#[test]
fn clone_starts_unready_and_polls_its_own_backend() {
    let a = Probe::new("a");
    let w = Weighted::new(vec![(a.clone(), 1)], Mode::Random).unwrap();
    let mut original = mock::Spawn::new(w);
    assert!(original.poll_ready().is_ready());
    let mut clone = mock::Spawn::new(original.get_ref().clone());
    // Calling the clone without polling it is refused before any backend is reached, even
    // though the original is ready.
    let refused = catch_unwind(AssertUnwindSafe(|| {
        drop(clone.call(Request::new(())));
    }));
    assert_eq!(panic_message(refused), WEIGHTED_REFUSAL);
    assert_eq!(a.calls(), 0);
    // Polled, the clone polls its own (unready) copy of the backend, so the probe's assertion
    // holds when it is called.
    assert!(clone.poll_ready().is_ready());
    assert_eq!(call_now(&mut clone), "a");
    assert_eq!(call_now(&mut original), "a");
    assert_eq!(a.calls(), 2);
}

#[test]
fn call_without_poll_ready_never_reaches_a_backend() {
    let a = Probe::new("a");
    let mut w = Weighted::new(vec![(a.clone(), 1)], Mode::RoundRobin).unwrap();
    let refused = catch_unwind(AssertUnwindSafe(|| {
        drop(w.call(Request::new(())));
    }));
    assert_eq!(panic_message(refused), WEIGHTED_REFUSAL);
    assert_eq!((a.polls(), a.calls()), (0, 0));
}

#[tokio::test]
async fn pending_choice_is_kept_and_the_other_backend_is_not_used() {
    let (mut w, mut ha, mut hb) = two_mocks();
    ha.allow(0);
    hb.allow(1);
    // `a` was chosen and is not ready: the service waits for `a` rather than switching to `b`.
    assert!(w.poll_ready().is_pending());
    assert!(w.poll_ready().is_pending());
    ha.allow(1);
    assert!(w.is_woken());
    assert!(w.poll_ready().is_ready());
    let fut = w.call(Request::new("first"));
    let (req, send) = ha.next_request().await.unwrap();
    assert_eq!(*req.body(), "first");
    send.send_response(Response::new("from a"));
    assert_eq!(*fut.await.unwrap().body(), "from a");
    // `b`, allowed all along, was not used while `a` was pending; it gets the next request.
    assert!(w.poll_ready().is_ready());
    let fut = w.call(Request::new("second"));
    let (req, send) = hb.next_request().await.unwrap();
    assert_eq!(*req.body(), "second");
    send.send_response(Response::new("from b"));
    assert_eq!(*fut.await.unwrap().body(), "from b");
}

#[tokio::test]
async fn backend_error_does_not_poison_the_others() {
    let (mut w, mut ha, mut hb) = two_mocks();
    ha.allow(1);
    hb.allow(1);
    ha.send_error("a is broken");
    let err = match w.poll_ready() {
        Poll::Ready(Err(e)) => e,
        other => panic!("expected a's error, got {other:?}"),
    };
    assert_eq!(err.to_string(), "a is broken");
    // The choice was reset: the service draws again and `b` serves.
    assert!(w.poll_ready().is_ready());
    let fut = w.call(Request::new("retry"));
    let (req, send) = hb.next_request().await.unwrap();
    assert_eq!(*req.body(), "retry");
    send.send_response(Response::new("b"));
    assert_eq!(*fut.await.unwrap().body(), "b");
}

#[test]
fn all_zero_weights_is_a_configuration_error() {
    let err = Weighted::new(
        vec![(Probe::new("a"), 0), (Probe::new("b"), 0)],
        Mode::Random,
    )
    .unwrap_err();
    assert_eq!(err, WeightsError::AllZero(2));
}

#[tokio::test]
async fn weight_zero_backend_never_called() {
    let (a, b) = (Probe::new("a"), Probe::new("b"));
    let mut w = Weighted::new(vec![(a.clone(), 0), (b.clone(), 5)], Mode::Random)
        .unwrap()
        .with_rng(&RngSource::seeded(3));
    for _ in 0..1000 {
        w.ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
    }
    assert_eq!((a.polls(), a.calls(), b.calls()), (0, 0, 1000));
}

fn dest(
    host: &str,
    weight: u32,
    req_header: &'static str,
    resp_header: &'static str,
) -> WeightedDestination {
    WeightedDestination {
        destination: Destination {
            host: host.into(),
            subset: None,
            port: None,
        },
        weight,
        request_headers: HeaderOps {
            set: vec![(
                "x-dest".parse().unwrap(),
                HeaderValue::from_static(req_header),
            )],
            ..HeaderOps::default()
        },
        response_headers: HeaderOps {
            add: vec![(
                "x-served-by".parse().unwrap(),
                HeaderValue::from_static(resp_header),
            )],
            ..HeaderOps::default()
        },
    }
}

#[tokio::test]
async fn destination_header_operations_are_applied() {
    let dests =
        WeightedDestinations::new(vec![dest("v1", 1, "one", "v1"), dest("v2", 1, "two", "v2")])
            .unwrap();
    let mut w = Weighted::from_destinations(&dests, Mode::RoundRobin, |d: &Destination| {
        let host = d.host.clone();
        tower::service_fn(move |req: Request<()>| {
            let host = host.clone();
            async move {
                let selected = req.extensions().get::<SelectedDestination>().unwrap();
                assert_eq!(selected.destination().host, host);
                let seen = req.headers()["x-dest"].to_str().unwrap().to_string();
                Ok::<_, std::convert::Infallible>(Response::new(seen))
            }
        })
    })
    .unwrap();
    for (expected_req, expected_resp) in [("one", "v1"), ("two", "v2"), ("one", "v1")] {
        let resp = w
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(resp.body(), expected_req);
        assert_eq!(resp.headers()["x-served-by"], expected_resp);
    }
}
