//! Why the demo could not run.

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the demo was doing.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Generating certificates failed.
    #[error("generating certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    /// An SVID or trust bundle did not load.
    #[error("identity: {0}")]
    Identity(String),
    /// mesh-proxy did not start.
    #[error("mesh-proxy did not start: {0}")]
    Proxy(crate::proxy::StartError),
    /// A request through the proxy failed outright (no HTTP answer).
    #[error("{what}: {detail}")]
    Request {
        /// The request.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// Something the demo expected did not happen.
    #[error("{0}")]
    Check(String),
}

impl DemoError {
    pub(super) fn request(what: String, detail: impl std::fmt::Display) -> Self {
        Self::Request {
            what,
            detail: detail.to_string(),
        }
    }
}
