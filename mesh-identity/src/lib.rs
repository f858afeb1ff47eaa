//! SPIFFE identities, X.509-SVIDs, trust bundles, rustls mTLS verifiers, rotation and
//! Istio-style authorization.
//!
//! The pieces, from pure to I/O:
//! - [`SpiffeId`] / [`TrustDomain`]: strict parsing per the SPIFFE-ID standard, errors in
//!   [`IdError`]; [`IdMatcher`] decides which verified IDs a peer may have; Istio's
//!   `spiffe://TD/ns/NS/sa/SA` helpers ([`SpiffeId::istio`]).
//! - [`TrustBundle`] (PEM or SPIFFE bundle JSON, several roots per domain) and [`BundleSet`]
//!   (one bundle per trust domain, never merged, plus `trustDomainAliases`).
//! - [`verify_svid_chain`]: X.509-SVID rules plus path validation against the bundle of the
//!   leaf's own trust domain, with one [`VerifyError`] variant per failure.
//! - [`Credentials`]: this workload's [`Svid`] and bundles, swappable at runtime, producing
//!   rustls [`ClientConfig`](rustls::ClientConfig)s and [`ServerConfig`](rustls::ServerConfig)s
//!   whose verifiers check SPIFFE IDs (never DNS names) and never resume sessions;
//!   [`FileWatcher`] reloads them from files; [`accept_inbound`] applies STRICT/PERMISSIVE/DISABLE.
//! - [`PeerIdentity`] carries the peer's ID in request extensions ([`PeerIdentityLayer`]);
//!   [`authz`] evaluates AuthorizationPolicies and answers 403 `RBAC: access denied`;
//!   [`PeerAuthenticationSet`] says which mTLS mode applies to a workload port.
//!
//! This crate depends on no other mesh crate; models take the already-parsed `spec` of a
//! resource as a `serde_json::Value` plus its namespace and name.
//!
//! # Example
//!
//! ```
//! use mesh_identity::authz::{AuthorizationPolicy, Authorizer, RequestAttrs};
//! use mesh_identity::{IdMatcher, SpiffeId};
//!
//! let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/sleep".parse()?;
//! assert_eq!(id.istio_namespace(), Some("default"));
//! assert!(IdMatcher::MemberOf("cluster.local".parse()?).matches(&id));
//! assert!("spiffe://cluster.local/ns//sa/x".parse::<SpiffeId>().is_err());
//!
//! // Only `sleep` may GET; everyone else gets 403 from the authorization layer.
//! let policy = AuthorizationPolicy::from_spec(
//!     "default",
//!     "reviews-viewer",
//!     &serde_json::json!({
//!         "rules": [{
//!             "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}],
//!             "to": [{"operation": {"methods": ["GET"]}}],
//!         }]
//!     }),
//! )?;
//! let authz = Authorizer::new(vec![policy]);
//! let mut request = RequestAttrs { principal: Some(id), method: "GET".into(), ..Default::default() };
//! assert!(authz.evaluate(&request).is_allowed());
//! request.method = "DELETE".into();
//! assert!(!authz.evaluate(&request).is_allowed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! mTLS with a generated CA (rcgen is only used to make the example self-contained):
//!
//! ```
//! use mesh_identity::{BundleSet, ClientAuth, Credentials, IdMatcher, Svid, TrustBundle};
//! use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
//!
//! let ca_key = KeyPair::generate()?;
//! let mut ca = CertificateParams::new(Vec::<String>::new())?;
//! ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
//! let root = ca.self_signed(&ca_key)?;
//! let issuer = Issuer::from_params(&ca, &ca_key);
//!
//! let key = KeyPair::generate()?;
//! let mut leaf = CertificateParams::new(Vec::<String>::new())?;
//! leaf.subject_alt_names = vec![SanType::URI("spiffe://td/ns/default/sa/api".try_into()?)];
//! leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
//! let cert = leaf.signed_by(&key, &issuer)?;
//!
//! let svid = Svid::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())?;
//! let bundle = TrustBundle::from_pem("td".parse()?, root.pem().as_bytes())?;
//! let credentials = Credentials::new(svid, BundleSet::single(bundle));
//!
//! // STRICT: clients must present an SVID of trust domain `td`.
//! let server = credentials.server_config(ClientAuth::Required(IdMatcher::MemberOf("td".parse()?)))?;
//! // The client accepts exactly this server identity, whatever DNS name it dialed.
//! let client = credentials.client_config(IdMatcher::Exact(credentials.svid().id().clone()))?;
//! # let _ = (server, client);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod alpn;
pub mod authz;
mod bundle;
mod bundle_json;
mod bundle_set;
mod config_error;
mod credentials;
mod document;
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
mod xfcc;

pub use alpn::{
    ISTIO_CLIENT_ALPN_H2, ISTIO_CLIENT_ALPN_HTTP1, ISTIO_CLIENT_ALPN_TCP, ISTIO_SERVER_ALPN,
    alpn_protocols,
};
pub use bundle::{BundleError, TrustBundle};
pub use bundle_set::BundleSet;
pub use config_error::ConfigError;
pub use credentials::Credentials;
pub use document::SECURITY_API_VERSIONS;
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
pub use xfcc::{ForwardClientCert, XFCC, client_cert_element};
