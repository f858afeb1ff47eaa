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
    /// Whether a connection-level failure (connect error, reset, refused stream) is retried.
    pub fn retries_connect_failure(&self) -> bool {
        self.conditions.iter().any(|c| {
            matches!(
                c,
                RetryCondition::ServerError
                    | RetryCondition::GatewayError
                    | RetryCondition::ConnectFailure
                    | RetryCondition::Reset
                    | RetryCondition::ResetBeforeRequest
                    | RetryCondition::RefusedStream
            )
        })
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
