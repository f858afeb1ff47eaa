//! The proxy's own identity: its X.509-SVID (`--cert`/`--key`) and trust bundles
//! (`--trust-bundle`), loaded once and watched for rotation.

use std::time::Duration;

use mesh_identity::{BundleFile, Credentials, FileSources, FileWatcher};

use super::options::RunArgs;
use super::runtime::StartError;

/// How often the identity files are checked for rotation.
const ROTATION_CHECK: Duration = Duration::from_secs(5);

/// Loads the SVID and bundles when `--cert`/`--key` are given and starts watching them.
/// Call inside a tokio runtime.
pub(crate) fn load(args: &RunArgs) -> Result<Option<Credentials>, StartError> {
    let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
        return Ok(None);
    };
    let mut bundles = Vec::new();
    for b in &args.trust_bundles {
        let trust_domain = match &b.trust_domain {
            Some(td) => Some(
                td.parse()
                    .map_err(|e| StartError::Identity(format!("--trust-bundle {td}=: {e}")))?,
            ),
            None => None,
        };
        bundles.push(BundleFile {
            trust_domain,
            path: b.path.clone(),
        });
    }
    let sources = FileSources {
        cert: cert.clone(),
        key: key.clone(),
        bundles,
    };
    let (credentials, watcher) =
        FileWatcher::load(sources).map_err(|e| StartError::Identity(e.to_string()))?;
    drop(watcher.spawn(ROTATION_CHECK));
    Ok(Some(credentials))
}
