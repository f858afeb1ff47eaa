//! Reloading the SVID and trust bundles from files, by polling.
//!
//! Polling (compare file contents every interval) is chosen over OS notifications: it works
//! the same on every platform and filesystem (including Kubernetes secret volumes, which swap
//! a symlink), needs no dependency, and its one step, [`FileWatcher::poll_once`], is a plain
//! function that tests drive directly.

use std::path::PathBuf;
use std::time::Duration;

use crate::bundle::{BundleError, TrustBundle};
use crate::bundle_set::BundleSet;
use crate::credentials::Credentials;
use crate::id::TrustDomain;
use crate::svid::{Svid, SvidError};

/// A trust bundle file: PEM or SPIFFE JSON, for one trust domain (the SVID's own when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Trust domain the roots speak for; `None` means the local SVID's trust domain.
    pub trust_domain: Option<TrustDomain>,
    /// File path.
    pub path: PathBuf,
}

impl std::str::FromStr for BundleFile {
    type Err = crate::id::IdError;

    /// Parses the `--trust-bundle [TD=]PATH` form: `TD=PATH` names the trust domain, a bare
    /// `PATH` is for the local one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((td, path)) => Ok(Self {
                trust_domain: Some(td.parse()?),
                path: PathBuf::from(path),
            }),
            None => Ok(Self {
                trust_domain: None,
                path: PathBuf::from(s),
            }),
        }
    }
}

/// Where a workload's identity material lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSources {
    /// SVID certificate chain, leaf first (PEM or DER).
    pub cert: PathBuf,
    /// SVID private key (PEM or DER).
    pub key: PathBuf,
    /// Trust bundles, one file per trust domain.
    pub bundles: Vec<BundleFile>,
}

/// Why identity files could not be (re)loaded. On reload the previous material stays in use.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The SVID files are invalid (including a key that does not match the certificate,
    /// which is what a half-finished update looks like).
    #[error("SVID from {cert}: {source}")]
    Svid {
        /// The certificate file.
        cert: PathBuf,
        /// What was wrong.
        source: SvidError,
    },
    /// A bundle file is invalid.
    #[error("bundle {path}: {source}")]
    Bundle {
        /// The bundle file.
        path: PathBuf,
        /// What was wrong.
        source: BundleError,
    },
}

/// Polls identity files and rotates a [`Credentials`] when their contents change.
#[derive(Debug)]
pub struct FileWatcher {
    credentials: Credentials,
    sources: FileSources,
    /// Contents last applied, in the order cert, key, bundles.
    applied: Vec<Vec<u8>>,
}

impl FileSources {
    /// Reads and validates every file once.
    pub fn load(&self) -> Result<(Svid, BundleSet), WatchError> {
        let contents = self.read_all()?;
        self.parse(&contents)
    }

    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cert, &self.key]
            .into_iter()
            .chain(self.bundles.iter().map(|b| &b.path))
    }

    fn read_all(&self) -> Result<Vec<Vec<u8>>, WatchError> {
        self.paths()
            .map(|path| {
                std::fs::read(path).map_err(|source| WatchError::Io {
                    path: path.clone(),
                    source,
                })
            })
            .collect()
    }

    fn parse(&self, contents: &[Vec<u8>]) -> Result<(Svid, BundleSet), WatchError> {
        // `read_all` yields cert, key, then one entry per bundle file.
        let (cert, key, bundles) = match contents {
            [cert, key, bundles @ ..] => (cert, key, bundles),
            _ => (&Vec::new(), &Vec::new(), &[][..]),
        };
        let svid = Svid::from_pem(cert, key).map_err(|source| WatchError::Svid {
            cert: self.cert.clone(),
            source,
        })?;
        let mut set = BundleSet::new();
        for (file, bytes) in self.bundles.iter().zip(bundles) {
            let td = file
                .trust_domain
                .clone()
                .unwrap_or_else(|| svid.id().trust_domain().clone());
            let bundle =
                TrustBundle::from_pem_or_json(td, bytes).map_err(|source| WatchError::Bundle {
                    path: file.path.clone(),
                    source,
                })?;
            set.insert(bundle);
        }
        Ok((svid, set))
    }
}

impl FileWatcher {
    /// A watcher that will rotate `credentials` from `sources`. The current files count as
    /// changed until the first successful [`FileWatcher::poll_once`].
    pub fn new(credentials: Credentials, sources: FileSources) -> Self {
        Self {
            credentials,
            sources,
            applied: Vec::new(),
        }
    }

    /// Loads the files once and returns credentials built from them plus a watcher that keeps
    /// them current.
    pub fn load(sources: FileSources) -> Result<(Credentials, Self), WatchError> {
        let contents = sources.read_all()?;
        let (svid, bundles) = sources.parse(&contents)?;
        let credentials = Credentials::new(svid, bundles);
        let watcher = Self {
            credentials: credentials.clone(),
            sources,
            applied: contents,
        };
        Ok((credentials, watcher))
    }

    /// Reads the files once; if any changed and all are valid, rotates the SVID and bundles
    /// and returns `Ok(true)`. Unchanged files give `Ok(false)`. Invalid files give an error
    /// and leave the credentials as they were; they are retried on the next poll.
    ///
    /// Trust domain aliases set on the current bundle set are kept.
    pub fn poll_once(&mut self) -> Result<bool, WatchError> {
        let contents = self.sources.read_all()?;
        if contents == self.applied {
            return Ok(false);
        }
        let (svid, mut bundles) = self.sources.parse(&contents)?;
        let current = self.credentials.bundles();
        if let Some(local) = current.local_trust_domain() {
            bundles.set_aliases(local.clone(), current.aliases().to_vec());
        }
        // Bundles first, so that from the moment we present a certificate from a new root our
        // own verifiers already trust it too.
        self.credentials.rotate_bundles(bundles);
        self.credentials.rotate_svid(svid);
        self.applied = contents;
        Ok(true)
    }

    /// Polls every `interval` on the tokio runtime until the task is aborted, logging (and
    /// otherwise ignoring) invalid files. File reads are small and synchronous.
    pub fn spawn(mut self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(err) = self.poll_once() {
                    tracing::warn!(%err, "identity files not reloaded; keeping the current ones");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_bundle_argument_forms() {
        let bare: BundleFile = "/etc/certs/root.pem".parse().unwrap();
        assert_eq!(bare.trust_domain, None);
        assert_eq!(bare.path, PathBuf::from("/etc/certs/root.pem"));
        let named: BundleFile = "partner.example=/etc/certs/partner.json".parse().unwrap();
        assert_eq!(named.trust_domain, Some("partner.example".parse().unwrap()));
        assert_eq!(named.path, PathBuf::from("/etc/certs/partner.json"));
        assert!("Bad Domain=/x".parse::<BundleFile>().is_err());
    }
}
