//! Watching configuration paths: poll modification times and sizes (no platform watcher,
//! so it behaves the same on every OS and on Kubernetes ConfigMap symlink swaps), debounce
//! editors' partial writes, and call a reload function on change or on request (SIGHUP).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::config::config_files;
use super::serve::Shutdown;

/// What the files looked like: per file, its modification time and size (`None` when it
/// cannot be read), plus the listed directory entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(BTreeMap<PathBuf, Option<(SystemTime, u64)>>);

impl Fingerprint {
    /// Takes the fingerprint of `paths` (directories: the config files in them).
    pub fn of(paths: &[PathBuf]) -> Self {
        let mut map = BTreeMap::new();
        for path in paths.iter().chain(config_files(paths).iter()) {
            // `metadata` follows symlinks, so a ConfigMap's `..data` swap shows up.
            let meta = std::fs::metadata(path).ok();
            let entry = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
            map.insert(
                path.clone(),
                entry.map(|(t, len)| (t, if path.is_dir() { 0 } else { len })),
            );
        }
        Self(map)
    }
}

/// How often to look and how long a change must hold still before reloading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Polling interval (1 s for the proxy).
    pub interval: Duration,
    /// A change is reloaded once the files stayed the same for this long (several files are
    /// usually written one after the other).
    pub debounce: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            debounce: Duration::from_millis(200),
        }
    }
}

/// Why a reload happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The files changed.
    Changed,
    /// Someone asked (SIGHUP).
    Requested,
}

/// Watches `paths` until `shutdown`, calling `reload` after each settled change (compared
/// with `loaded`, the fingerprint taken before the config in force was read) and after each
/// message on `requests`. `reload` runs on this task: a slow reload delays the next look, it
/// never overlaps itself. A rewrite that keeps a file's size within the file system's
/// timestamp granularity can go unnoticed; SIGHUP (a request) always reloads.
pub async fn watch(
    paths: Vec<PathBuf>,
    options: WatchOptions,
    loaded: Fingerprint,
    mut requests: mpsc::Receiver<()>,
    mut shutdown: Shutdown,
    mut reload: impl FnMut(Trigger),
) {
    let mut seen = loaded;
    let mut requests_open = true;
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            req = requests.recv(), if requests_open => {
                if req.is_none() {
                    requests_open = false;
                    continue;
                }
                seen = Fingerprint::of(&paths);
                reload(Trigger::Requested);
            }
            () = tokio::time::sleep(options.interval) => {
                let now = Fingerprint::of(&paths);
                if now == seen {
                    continue;
                }
                let settled = tokio::select! {
                    () = shutdown.wait() => return,
                    settled = settle(&paths, now, options.debounce) => settled,
                };
                seen = settled;
                reload(Trigger::Changed);
            }
        }
    }
}

/// Waits until the fingerprint stops changing for `debounce` (at most 20 rounds, so a file
/// rewritten forever still gets loaded eventually).
async fn settle(paths: &[PathBuf], mut last: Fingerprint, debounce: Duration) -> Fingerprint {
    for _ in 0..20 {
        tokio::time::sleep(debounce).await;
        let now = Fingerprint::of(paths);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
