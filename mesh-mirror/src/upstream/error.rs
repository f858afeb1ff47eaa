//! Why an upstream exchange produced no response, classified the way Envoy tells reset
//! reasons apart: for retries (`retryOn`), outlier detection (only the endpoint's own
//! failures count) and the local reply (response flag and text).

use std::error::Error as StdError;

use mesh_routing::UpstreamFailure;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why the upstream could not produce a response. Local decisions (no endpoint, overflow)
/// are answered with 503 responses instead, so only these reach the caller as errors.
///
/// ```
/// use mesh_mirror::UpstreamError;
/// let e = UpstreamError::NoDestination;
/// assert_eq!(e.response_flag(), "");
/// assert!(e.failure().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The request carries neither a [`SelectedDestination`](crate::SelectedDestination)
    /// nor a [`Destination`](mesh_routing::Destination) extension: a composition bug.
    #[error("request has no destination; put Weighted or a Destination extension in front")]
    NoDestination,
    /// The destination has no endpoint in service (unknown host or subset, none left after
    /// ejections): what HTTP answers as 503 `no healthy upstream`.
    #[error("no healthy upstream for {0}")]
    NoEndpoint(String),
    /// The cluster's connection limit is reached (`tcp.maxConnections`).
    #[error("upstream connection pool overflow")]
    Overflow,
    /// The endpoint address does not make a valid URI.
    #[error("invalid endpoint address {0}")]
    Address(String),
    /// Connecting (TCP, TLS, the HTTP/2 handshake) failed or timed out: nothing was sent.
    #[error("connecting to {endpoint} failed: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: BoxError,
    },
    /// The connection closed before any of the request was written.
    #[error("upstream connection closed before the request was sent: {0}")]
    ResetBeforeRequest(BoxError),
    /// The connection closed or the stream was reset after (part of) the request was
    /// written, before the response head.
    #[error("upstream connection closed or reset before the response: {0}")]
    Reset(hyper::Error),
    /// HTTP/2 `REFUSED_STREAM`: the server did not process the request.
    #[error("upstream refused the stream: {0}")]
    RefusedStream(hyper::Error),
    /// The request could not be sent for a reason on this side: the downstream body failed
    /// (the client went away), or the request cannot be expressed in the upstream's protocol.
    /// Never counted against the endpoint, never retried.
    #[error("request could not be forwarded: {0}")]
    Local(BoxError),
    /// The last try of a request that [`RetryLayer`](crate::RetryLayer) would have retried
    /// again had `attempts` allowed it; how that try failed is inside. Its response flag adds
    /// Envoy's `URX` (`UF,URX`, ...).
    #[error("{0} (retries exhausted)")]
    RetriesExhausted(Box<UpstreamError>),
}

impl UpstreamError {
    /// How the try failed, for `retryOn`; `None` for failures on this side.
    pub fn failure(&self) -> Option<UpstreamFailure> {
        Some(match self {
            Self::RetriesExhausted(last) => return last.failure(),
            Self::Connect { .. } => UpstreamFailure::ConnectFailure,
            Self::ResetBeforeRequest(_) => UpstreamFailure::ResetBeforeRequest,
            Self::Reset(_) => UpstreamFailure::Reset,
            Self::RefusedStream(_) => UpstreamFailure::RefusedStream,
            Self::NoDestination
            | Self::NoEndpoint(_)
            | Self::Overflow
            | Self::Address(_)
            | Self::Local(_) => return None,
        })
    }

    /// Envoy's response flag: `UF` (connection failure), `UC` (connection termination),
    /// `UR` (remote reset), `DC` (the downstream went away), each with `,URX` once retries
    /// ran out; empty for composition errors.
    ///
    /// ```
    /// use mesh_mirror::UpstreamError;
    /// let last = UpstreamError::Connect { endpoint: "10.0.0.1:80".into(), source: "refused".into() };
    /// assert_eq!(last.response_flag(), "UF");
    /// assert_eq!(UpstreamError::RetriesExhausted(Box::new(last)).response_flag(), "UF,URX");
    /// ```
    pub fn response_flag(&self) -> &'static str {
        match self {
            Self::RetriesExhausted(last) => match last.response_flag() {
                "UF" => "UF,URX",
                "UC" => "UC,URX",
                "UR" => "UR,URX",
                _ => "URX",
            },
            Self::Connect { .. } => "UF",
            Self::ResetBeforeRequest(_) => "UC",
            Self::Reset(e) if e.is_incomplete_message() || e.is_closed() => "UC",
            Self::Reset(_) | Self::RefusedStream(_) => "UR",
            Self::Local(_) => "DC",
            Self::NoEndpoint(_) => "UH",
            Self::Overflow => "UO",
            Self::NoDestination | Self::Address(_) => "",
        }
    }

    /// Envoy's reset reason, as its local reply names it (`upstream connect error or
    /// disconnect/reset before headers. reset reason: ...`).
    pub fn reset_reason(&self) -> &'static str {
        match self {
            Self::RetriesExhausted(last) => last.reset_reason(),
            Self::Connect { .. } => "connection failure",
            Self::ResetBeforeRequest(_) => "connection termination",
            Self::Reset(e) if e.is_incomplete_message() || e.is_closed() => {
                "connection termination"
            }
            Self::Reset(_) => "remote reset",
            Self::RefusedStream(_) => "remote refused stream reset",
            Self::Overflow => "overflow",
            Self::Local(_) | Self::NoDestination | Self::NoEndpoint(_) | Self::Address(_) => {
                "local reset"
            }
        }
    }

    /// Whether the request could not be sent because the client's own request was malformed
    /// (an invalid chunked body, say): a downstream protocol error, answered 400 and never
    /// counted against the upstream.
    pub fn is_malformed_request(&self) -> bool {
        let e = match self {
            Self::Local(e) => e,
            Self::RetriesExhausted(last) => return last.is_malformed_request(),
            _ => return false,
        };
        let mut source: Option<&(dyn StdError + 'static)> = Some(&**e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                // hyper's decoder reports framing errors (a bad chunk size) as these.
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                ) {
                    return true;
                }
            }
            if s.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_parse)
            {
                return true;
            }
            source = s.source();
        }
        false
    }

    /// Whether outlier detection counts this against the endpoint: failures of the endpoint
    /// itself (connect errors, resets), never ours.
    pub(crate) fn counts_against_endpoint(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::ResetBeforeRequest(_) | Self::Reset(_) => true,
            Self::RetriesExhausted(last) => last.counts_against_endpoint(),
            _ => false,
        }
    }

    /// Classifies a hyper error of a request that reached the connection (`sent`: some of it
    /// may have been written).
    pub(crate) fn from_hyper(e: hyper::Error, sent: bool) -> Self {
        if refused_stream(&e) {
            return Self::RefusedStream(e);
        }
        if e.is_user() {
            return Self::Local(Box::new(e));
        }
        if !sent || e.is_canceled() {
            return Self::ResetBeforeRequest(Box::new(e));
        }
        Self::Reset(e)
    }
}

/// Whether an HTTP/2 stream was refused (`REFUSED_STREAM`), anywhere in the source chain.
fn refused_stream(e: &hyper::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = s.source();
    }
    false
}
