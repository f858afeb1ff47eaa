//! Weighted dispatch: each request goes to one of N services by integer weight (canary and
//! blue-green releases).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use mesh_routing::{Destination, WeightedDestination, WeightedDestinations};
use tower_service::Service;

use crate::rng::RngSource;
use crate::select::{Mode, Picker, Weights, WeightsError};

/// Sends each request to one of several services, chosen by weight.
///
/// Istio's rules hold: weight-0 services never receive traffic, a single service receives
/// everything whatever its weight, and all-zero weights with several services are refused at
/// construction ([`WeightsError`]), never a panic at request time.
///
/// # Readiness contract
/// The choice is request-independent, so it is made in `poll_ready`, as in `tower::balance`:
/// - `poll_ready` draws a destination (once; it keeps that choice until `call`) and polls
///   **only that service**. `Ready(Ok)` promises that the chosen service reported ready; no
///   other service is polled, so none holds capacity reserved for a request it will not get.
///   `Pending` means the chosen service is not ready; it stays chosen and is polled again next
///   time (pair with a timeout or load shedding if a backend can stall).
/// - `Ready(Err(e))` is the chosen service's error, returned as is. The choice is then reset:
///   the next `poll_ready` draws again, so one failing backend does not poison the others or
///   this service.
/// - `call` assumes the previous `poll_ready` returned `Ready(Ok)` and sends the request to the
///   service that reported ready. Calling without that is a caller bug and panics, as tower's
///   own services do: it would otherwise call a service that never said it was ready.
/// - A clone starts unready with no choice made (the inner services are cloned, readiness is
///   not), so every clone must be polled before use.
///
/// Destination header operations (`headers.request` / `headers.response` of each
/// `route[].destination`) are applied when the service is built with
/// [`Weighted::from_destinations`]; the chosen destination is then also put into the request's
/// extensions as a [`SelectedDestination`].
///
/// ```
/// use std::convert::Infallible;
/// use mesh_mirror::{Mode, RngSource, Weighted};
/// use tower::{Service as _, ServiceExt as _, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let backend = |name: &'static str| service_fn(move |_req: http::Request<()>| async move {
///     Ok::<_, Infallible>(http::Response::new(name))
/// });
/// let mut split = Weighted::new(vec![(backend("v1"), 90), (backend("v2"), 10)], Mode::RoundRobin)
///     .unwrap()
///     .with_rng(&RngSource::seeded(1));
/// let mut v2 = 0;
/// for _ in 0..100 {
///     let resp = split.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
///     v2 += usize::from(*resp.body() == "v2");
/// }
/// assert_eq!(v2, 10);
/// # }
/// ```
#[derive(Debug)]
pub struct Weighted<S> {
    services: Vec<S>,
    targets: Option<Arc<[Arc<WeightedDestination>]>>,
    mode: Mode,
    picker: Picker,
    chosen: Option<usize>,
    ready: bool,
}

/// The destination [`Weighted`] chose for a request, inserted into its extensions.
#[derive(Debug, Clone)]
pub struct SelectedDestination {
    /// Position among the route's destinations.
    pub index: usize,
    /// The destination with its weight and header operations.
    pub destination: Arc<WeightedDestination>,
}

impl SelectedDestination {
    /// Where the request is going.
    pub fn destination(&self) -> &Destination {
        &self.destination.destination
    }
}

impl<S: Clone> Clone for Weighted<S> {
    fn clone(&self) -> Self {
        Self {
            services: self.services.clone(),
            targets: self.targets.clone(),
            mode: self.mode,
            picker: self.picker.clone(),
            chosen: None,
            ready: false,
        }
    }
}

impl<S> Weighted<S> {
    /// Splits over plain `(service, weight)` pairs, in order.
    pub fn new(pairs: Vec<(S, u32)>, mode: Mode) -> Result<Self, WeightsError> {
        let (services, weights): (Vec<S>, Vec<u32>) = pairs.into_iter().unzip();
        let weights = Weights::new(weights)?;
        Ok(Self::build(services, weights, mode, None))
    }

    /// Splits over a route's destinations, making one service per [`Destination`] with `make`.
    /// Per-destination header operations are applied to requests and responses.
    pub fn from_destinations(
        destinations: &WeightedDestinations,
        mode: Mode,
        mut make: impl FnMut(&Destination) -> S,
    ) -> Result<Self, WeightsError> {
        let weights = Weights::new(destinations.effective_weights())?;
        let services = destinations.iter().map(|d| make(&d.destination)).collect();
        let targets = destinations.iter().cloned().map(Arc::new).collect();
        Ok(Self::build(services, weights, mode, Some(targets)))
    }

    fn build(
        services: Vec<S>,
        weights: Weights,
        mode: Mode,
        targets: Option<Arc<[Arc<WeightedDestination>]>>,
    ) -> Self {
        Self {
            services,
            targets,
            mode,
            picker: Picker::new(weights, mode, &RngSource::from_entropy()),
            chosen: None,
            ready: false,
        }
    }

    /// Replaces the random source (deterministic tests use [`RngSource::seeded`]).
    pub fn with_rng(mut self, rng: &RngSource) -> Self {
        self.picker = Picker::new(self.picker.weights().clone(), self.mode, rng);
        self
    }

    /// The effective weights, in destination order.
    pub fn weights(&self) -> &[u32] {
        self.picker.weights().as_slice()
    }
}

impl<S, B, RB> Service<Request<B>> for Weighted<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = WeightedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let index = match self.chosen {
            Some(i) => i,
            None => *self.chosen.insert(self.picker.pick()),
        };
        match self.services[index].poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.ready = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.chosen = None;
                self.ready = false;
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                self.ready = false;
                Poll::Pending
            }
        }
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let index = match (self.chosen.take(), std::mem::take(&mut self.ready)) {
            (Some(i), true) => i,
            _ => panic!("Weighted::call without a preceding poll_ready that returned Ready(Ok)"),
        };
        let response_ops = self.targets.as_ref().map(|targets| {
            let target = &targets[index];
            target.request_headers.apply(req.headers_mut());
            req.extensions_mut().insert(SelectedDestination {
                index,
                destination: target.clone(),
            });
            target.clone()
        });
        WeightedFuture {
            inner: self.services[index].call(req),
            response_ops: response_ops.filter(|t| !t.response_headers.is_empty()),
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`Weighted`]: the chosen service's response with its destination's response
    /// header operations applied.
    pub struct WeightedFuture<F> {
        #[pin]
        inner: F,
        response_ops: Option<Arc<WeightedDestination>>,
    }
}

impl<F, RB, E> Future for WeightedFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = ready!(this.inner.poll(cx))?;
        if let Some(target) = this.response_ops.take() {
            target.response_headers.apply(resp.headers_mut());
        }
        Poll::Ready(Ok(resp))
    }
}
