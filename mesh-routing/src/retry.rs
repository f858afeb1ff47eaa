//! Retry policy as typed data: Envoy's `retryOn` conditions and Istio's default policy.
//! The retry layer that executes it lives in `mesh-mirror`.

use std::time::Duration;

use http::StatusCode;

/// Envoy retry conditions (`retryOn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryCondition {
    /// `5xx`: any 5xx response, connect failure, reset or refused stream.
    ServerError,
    /// `gateway-error`: 502, 503, 504.
    GatewayError,
    /// `reset`: the upstream reset or closed before answering.
    Reset,
    /// `reset-before-request`: reset before any request bytes were sent.
    ResetBeforeRequest,
    /// `connect-failure`.
    ConnectFailure,
    /// `envoy-ratelimited`.
    EnvoyRateLimited,
    /// `retriable-4xx`: 409.
    Retriable4xx,
    /// `refused-stream`: HTTP/2 REFUSED_STREAM.
    RefusedStream,
    /// `retriable-status-codes`: the codes in [`RetryOn::status_codes`].
    RetriableStatusCodes,
    /// `retriable-headers`.
    RetriableHeaders,
    /// `http3-post-connect-failure`.
    Http3PostConnectFailure,
    /// gRPC `cancelled`.
    Cancelled,
    /// gRPC `deadline-exceeded`.
    DeadlineExceeded,
    /// gRPC `internal`.
    Internal,
    /// gRPC `resource-exhausted`.
    ResourceExhausted,
    /// gRPC `unavailable`.
    Unavailable,
}

impl RetryCondition {
    /// Parses one Envoy `retry_on` token.
    pub fn parse(token: &str) -> Option<Self> {
        Some(match token {
            "5xx" => Self::ServerError,
            "gateway-error" => Self::GatewayError,
            "reset" => Self::Reset,
            "reset-before-request" => Self::ResetBeforeRequest,
            "connect-failure" => Self::ConnectFailure,
            "envoy-ratelimited" => Self::EnvoyRateLimited,
            "retriable-4xx" => Self::Retriable4xx,
            "refused-stream" => Self::RefusedStream,
            "retriable-status-codes" => Self::RetriableStatusCodes,
            "retriable-headers" => Self::RetriableHeaders,
            "http3-post-connect-failure" => Self::Http3PostConnectFailure,
            "cancelled" => Self::Cancelled,
            "deadline-exceeded" => Self::DeadlineExceeded,
            "internal" => Self::Internal,
            "resource-exhausted" => Self::ResourceExhausted,
            "unavailable" => Self::Unavailable,
            _ => return None,
        })
    }
}

/// Parsed `retryOn`: conditions plus explicit status codes (Istio turns `503` into
/// `retriable-status-codes` with that code).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryOn {
    /// Conditions that trigger a retry.
    pub conditions: Vec<RetryCondition>,
    /// Status codes retried when `RetriableStatusCodes` is among the conditions.
    pub status_codes: Vec<u16>,
}

impl RetryOn {
    /// Whether a response status should be retried under these conditions.
    pub fn retries_status(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.conditions.iter().any(|c| match c {
            RetryCondition::ServerError => (500..600).contains(&code),
            RetryCondition::GatewayError => matches!(code, 502..=504),
            RetryCondition::Retriable4xx => code == 409,
            RetryCondition::RetriableStatusCodes => self.status_codes.contains(&code),
            _ => false,
        })
    }
    /// Whether a try that ended without a response is retried, as Envoy decides from the
    /// reset reason: `reset`, `5xx` and `gateway-error` retry every failure;
    /// `reset-before-request` those where none of the request was sent (connect failures
    /// included); `refused-stream` HTTP/2 REFUSED_STREAM; `connect-failure` failures to
    /// connect. So under Istio's default policy a request the upstream may have processed
    /// (reset after it was written) is not sent again.
    pub fn retries_failure(&self, failure: UpstreamFailure) -> bool {
        self.conditions.iter().any(|c| match c {
            RetryCondition::Reset | RetryCondition::ServerError | RetryCondition::GatewayError => {
                true
            }
            RetryCondition::ResetBeforeRequest => failure.before_request(),
            RetryCondition::RefusedStream => failure == UpstreamFailure::RefusedStream,
            RetryCondition::ConnectFailure => failure == UpstreamFailure::ConnectFailure,
            _ => false,
        })
    }
}

/// How a try failed without a response: the reset reasons Envoy's `retryOn` tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamFailure {
    /// Connecting (TCP, TLS, HTTP/2 handshake) failed or timed out: nothing was sent.
    ConnectFailure,
    /// The connection closed or reset before any of the request was written.
    ResetBeforeRequest,
    /// The connection closed or the stream was reset after (part of) the request was
    /// written, before a response: the upstream may have acted on it.
    Reset,
    /// HTTP/2 `REFUSED_STREAM`: the server says it did not process the request.
    RefusedStream,
}

impl UpstreamFailure {
    /// Whether none of the request reached the upstream.
    pub fn before_request(self) -> bool {
        matches!(self, Self::ConnectFailure | Self::ResetBeforeRequest)
    }
}

/// `retries`. When a route has no `retries`, Istio still retries: [`RetryPolicy::istio_default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Number of retries after the first try (0 disables retrying).
    pub attempts: u32,
    /// Timeout of each try, including the first.
    pub per_try_timeout: Option<Duration>,
    /// What is retried.
    pub retry_on: RetryOn,
    /// Whether retries may go to other localities.
    pub retry_remote_localities: bool,
}

/// Istio's default `retryOn` (used when `retries` or its `retryOn` is absent).
pub const ISTIO_DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

impl RetryPolicy {
    /// Istio's default: 2 retries on connect-failure, refused-stream, unavailable, cancelled and 503.
    pub fn istio_default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            retry_on: RetryOn {
                conditions: vec![
                    RetryCondition::ConnectFailure,
                    RetryCondition::RefusedStream,
                    RetryCondition::Unavailable,
                    RetryCondition::Cancelled,
                    RetryCondition::RetriableStatusCodes,
                ],
                status_codes: vec![503],
            },
            retry_remote_localities: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(tokens: &[&str]) -> RetryOn {
        RetryOn {
            conditions: tokens
                .iter()
                .filter_map(|t| RetryCondition::parse(t))
                .collect(),
            status_codes: vec![],
        }
    }

    #[test]
    fn istio_default_never_retries_a_reset_after_the_request_was_written() {
        let d = RetryPolicy::istio_default().retry_on;
        assert!(d.retries_failure(UpstreamFailure::ConnectFailure));
        assert!(d.retries_failure(UpstreamFailure::RefusedStream));
        assert!(!d.retries_failure(UpstreamFailure::Reset));
        assert!(!d.retries_failure(UpstreamFailure::ResetBeforeRequest));
    }

    #[test]
    fn each_condition_retries_its_failures() {
        use UpstreamFailure::*;
        let all = [ConnectFailure, ResetBeforeRequest, Reset, RefusedStream];
        let retried = |tokens: &[&str]| -> Vec<UpstreamFailure> {
            let r = on(tokens);
            all.into_iter().filter(|f| r.retries_failure(*f)).collect()
        };
        assert_eq!(retried(&["reset"]), all);
        assert_eq!(retried(&["5xx"]), all);
        assert_eq!(retried(&["gateway-error"]), all);
        assert_eq!(
            retried(&["reset-before-request"]),
            [ConnectFailure, ResetBeforeRequest]
        );
        assert_eq!(retried(&["connect-failure"]), [ConnectFailure]);
        assert_eq!(retried(&["refused-stream"]), [RefusedStream]);
        assert_eq!(retried(&["retriable-4xx", "unavailable"]), []);
    }
}
