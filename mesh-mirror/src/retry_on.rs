//! Which outcomes of a try are retried: Envoy's `retry_on` semantics over `mesh-routing`'s
//! parsed [`RetryOn`]. Pure functions, no I/O.

use http::{HeaderMap, HeaderName, StatusCode};
use mesh_routing::{RetryCondition, RetryOn, UpstreamFailure};

use crate::upstream::UpstreamError;

/// What one try produced.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TryOutcome<'a> {
    /// A response arrived (its status and headers).
    Response(StatusCode, &'a HeaderMap),
    /// The per-try timeout expired.
    PerTryTimeout,
    /// No response: the inner service failed this way.
    Failed(UpstreamFailure),
}

/// How an error of the inner service failed, for `retryOn`: mesh-mirror's
/// [`UpstreamError`] says it exactly; hyper-util's client tells connect errors apart; any other
/// error counts as a reset after the request was sent (retried only by `reset`, `5xx` and
/// `gateway-error`). `None`: a local failure that is never retried (the downstream body
/// failed, a composition error).
pub(crate) fn failure_of(e: &(dyn std::error::Error + 'static)) -> Option<UpstreamFailure> {
    if let Some(e) = e.downcast_ref::<UpstreamError>() {
        return e.failure();
    }
    if let Some(e) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
        return Some(if e.is_connect() {
            UpstreamFailure::ConnectFailure
        } else {
            UpstreamFailure::Reset
        });
    }
    Some(UpstreamFailure::Reset)
}

/// Whether `outcome` is retried under `retry_on`.
///
/// - Responses: by status ([`RetryOn::retries_status`]), and by gRPC status in the response
///   headers (a trailers-only gRPC error), for `cancelled`, `deadline-exceeded`, `internal`,
///   `resource-exhausted` and `unavailable`, as Envoy's gRPC retry policy does; and
///   `envoy-ratelimited` on an `x-envoy-ratelimited` response header. (`retriable-headers`
///   needs header matchers that Istio's `retryOn` string cannot carry, so it never matches.)
/// - A per-try timeout is Envoy's 504 "upstream request timeout": retried when 504 is.
/// - No response at all: [`RetryOn::retries_failure`] for how it failed.
pub(crate) fn is_retried(retry_on: &RetryOn, outcome: TryOutcome<'_>) -> bool {
    match outcome {
        TryOutcome::Response(status, headers) => {
            retry_on.retries_status(status)
                || retries_grpc(retry_on, headers)
                || (retry_on
                    .conditions
                    .contains(&RetryCondition::EnvoyRateLimited)
                    && headers.contains_key(&X_ENVOY_RATELIMITED))
        }
        TryOutcome::PerTryTimeout => retry_on.retries_status(StatusCode::GATEWAY_TIMEOUT),
        TryOutcome::Failed(failure) => retry_on.retries_failure(failure),
    }
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const X_ENVOY_RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");

fn is_grpc_condition(c: &RetryCondition) -> bool {
    matches!(
        c,
        RetryCondition::Cancelled
            | RetryCondition::DeadlineExceeded
            | RetryCondition::Internal
            | RetryCondition::ResourceExhausted
            | RetryCondition::Unavailable
    )
}

fn retries_grpc(retry_on: &RetryOn, headers: &HeaderMap) -> bool {
    // Looking the header up costs more than scanning the handful of conditions.
    if !retry_on.conditions.iter().any(is_grpc_condition) {
        return false;
    }
    let Some(code) = headers
        .get(&GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u8>().ok())
    else {
        return false;
    };
    let condition = match code {
        1 => RetryCondition::Cancelled,
        4 => RetryCondition::DeadlineExceeded,
        8 => RetryCondition::ResourceExhausted,
        13 => RetryCondition::Internal,
        14 => RetryCondition::Unavailable,
        _ => return false,
    };
    retry_on.conditions.contains(&condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_routing::RetryPolicy;

    fn on(tokens: &[&str]) -> RetryOn {
        RetryOn {
            conditions: tokens
                .iter()
                .filter_map(|t| RetryCondition::parse(t))
                .collect(),
            status_codes: vec![],
        }
    }

    fn grpc(code: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", code.parse().unwrap());
        h
    }

    #[test]
    fn istio_default_retries_503_unavailable_and_connect_failures_only() {
        let default = RetryPolicy::istio_default().retry_on;
        let none = HeaderMap::new();
        let resp = |code: u16| TryOutcome::Response(StatusCode::from_u16(code).unwrap(), &none);
        assert!(is_retried(&default, resp(503)));
        assert!(!is_retried(&default, resp(500)));
        assert!(!is_retried(&default, resp(502)));
        assert!(is_retried(
            &default,
            TryOutcome::Failed(UpstreamFailure::ConnectFailure)
        ));
        assert!(!is_retried(
            &default,
            TryOutcome::Failed(UpstreamFailure::Reset)
        ));
        assert!(!is_retried(&default, TryOutcome::PerTryTimeout));
        let unavailable = grpc("14");
        assert!(is_retried(
            &default,
            TryOutcome::Response(StatusCode::OK, &unavailable)
        ));
    }

    #[test]
    fn grpc_status_is_retried_only_for_listed_conditions() {
        let retry_on = on(&["cancelled", "resource-exhausted"]);
        let check = |code| {
            let h = grpc(code);
            is_retried(&retry_on, TryOutcome::Response(StatusCode::OK, &h))
        };
        assert!(check("1"));
        assert!(check("8"));
        assert!(!check("14"));
        assert!(!check("0"));
        assert!(!check("not a number"));
    }

    #[test]
    fn per_try_timeout_follows_504() {
        assert!(is_retried(
            &on(&["gateway-error"]),
            TryOutcome::PerTryTimeout
        ));
        assert!(is_retried(&on(&["5xx"]), TryOutcome::PerTryTimeout));
        assert!(!is_retried(
            &on(&["connect-failure"]),
            TryOutcome::PerTryTimeout
        ));
    }

    #[test]
    fn envoy_ratelimited_needs_the_header() {
        let retry_on = on(&["envoy-ratelimited"]);
        let mut h = HeaderMap::new();
        let too_many = StatusCode::TOO_MANY_REQUESTS;
        assert!(!is_retried(&retry_on, TryOutcome::Response(too_many, &h)));
        h.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert!(is_retried(&retry_on, TryOutcome::Response(too_many, &h)));
    }

    #[test]
    fn retriable_4xx_is_409_only() {
        let none = HeaderMap::new();
        let retry_on = on(&["retriable-4xx"]);
        assert!(is_retried(
            &retry_on,
            TryOutcome::Response(StatusCode::CONFLICT, &none)
        ));
        assert!(!is_retried(
            &retry_on,
            TryOutcome::Response(StatusCode::NOT_FOUND, &none)
        ));
    }
}
