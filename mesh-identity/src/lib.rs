//! SPIFFE identities, X.509-SVIDs, trust bundles, rustls mTLS verifiers, rotation and
//! Istio-style authorization.
#![forbid(unsafe_code)]

pub mod authz;
mod bundle;
mod bundle_json;
mod bundle_set;
mod config_error;
mod credentials;
mod id;
mod inbound;
mod istio;
mod leaf;
mod matcher;
mod peer;
mod peer_authn;
mod pem;
mod svid;
mod tls_config;
mod verifier;
mod verify;
mod watcher;

pub use bundle::{BundleError, TrustBundle};
pub use bundle_set::BundleSet;
pub use config_error::ConfigError;
pub use credentials::Credentials;
pub use id::{IdError, MAX_TRUST_DOMAIN_LEN, SpiffeId, TrustDomain, validate_path};
pub use inbound::{Inbound, MtlsMode, accept_inbound, looks_like_tls};
pub use matcher::IdMatcher;
pub use peer::{
    PeerIdentity, PeerIdentityLayer, PeerIdentityService, peer_id, server_peer_identity,
};
pub use peer_authn::{
    ModeSpec, MtlsSpec, PeerAuthentication, PeerAuthenticationSet, PeerAuthenticationSpec,
};
pub use pem::{PemError, parse_certificates, parse_private_key};
pub use svid::{Svid, SvidError};
pub use tls_config::ClientAuth;
pub use verifier::{PeerRejected, SpiffeClientVerifier, SpiffeServerVerifier};
pub use verify::{PeerRole, VerifyError, verify_svid_chain};
pub use watcher::{BundleFile, FileSources, FileWatcher, WatchError};
