//! Loading the proxy's configuration: mesh-gateway's [`Bundle`] plus what it does not carry
//! (where each resource was written, so warnings can point at the file and document).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mesh_gateway::{Bundle, LoadErrors};
use mesh_routing::{ResourceRef, parse_documents};

/// A whole configuration, validated: the bundle and each resource's `file (document N)`.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    /// Every resource, typed (VirtualService, Gateway, DestinationRule, ServiceEntry, ...).
    pub bundle: Bundle,
    origins: HashMap<ResourceRef, String>,
}

impl LoadedConfig {
    /// Loads files and directories as [`Bundle::load_paths`] does (directories: their
    /// `.yaml`, `.yml` and `.json` files sorted by name), reporting every problem.
    pub fn load(paths: &[PathBuf], namespace: &str) -> Result<Self, LoadErrors> {
        let bundle = Bundle::load_paths(paths, namespace)?;
        let mut origins = HashMap::new();
        // Valid already, so every file reads and parses; a file changed in between only
        // loses its origins, which are for messages.
        for file in config_files(paths) {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let Ok(docs) = parse_documents(&text, &file.display().to_string(), namespace) else {
                continue;
            };
            for doc in docs {
                let origin = doc.origin.to_string();
                origins.entry(doc.resource_ref()).or_insert(origin);
            }
        }
        Ok(Self { bundle, origins })
    }

    /// `namespace/name` of every loaded document of `kind`, in file order (for kinds whose
    /// typed form does not keep its name).
    pub fn names_of_kind(&self, kind: &str) -> Vec<String> {
        let mut found: Vec<(&str, String)> = (self.origins.iter())
            .filter(|(r, _)| r.kind == kind)
            .map(|(r, origin)| (origin.as_str(), format!("{}/{}", r.namespace, r.name)))
            .collect();
        found.sort();
        found.into_iter().map(|(_, name)| name).collect()
    }

    /// `file (document N)` of a resource, when known.
    pub fn origin(&self, resource: &ResourceRef) -> Option<&str> {
        self.origins.get(resource).map(String::as_str)
    }
}

/// The files `paths` name, directories expanded as the bundle loader does.
pub fn config_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| is_config(p))
                    .collect();
                found.sort();
                files.extend(found);
            }
        } else {
            files.push(path.clone());
        }
    }
    files
}

fn is_config(p: &Path) -> bool {
    p.is_file()
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::test_dir::TestDir;

    #[test]
    fn origins_name_file_and_document() {
        let dir = TestDir::new("config-dr");
        dir.write(
            "a.yaml",
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n\
             spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}\n",
        );
        let config = LoadedConfig::load(&[dir.path().to_path_buf()], "default").unwrap();
        assert_eq!(config.bundle.destination_rules.len(), 1);
        let r = ResourceRef::new("DestinationRule", "default", "r");
        assert!(config.origin(&r).unwrap().ends_with("a.yaml (document 1)"));
    }

    #[test]
    fn problems_of_every_kind_are_reported_together() {
        let dir = TestDir::new("config-bad");
        dir.write(
            "a.yaml",
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n\
             spec: {host: reviews, subsets: [{name: ''}]}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n\
             spec: {hosts: [a], http: [{route: [{destination: {host: a}, weight: -1}]}]}\n",
        );
        let errors = LoadedConfig::load(&[dir.path().to_path_buf()], "default").unwrap_err();
        let text = errors.to_string();
        assert_eq!(errors.0.len(), 2, "{text}");
        assert!(
            text.contains("DestinationRule default/r: subsets[0].name"),
            "{text}"
        );
        assert!(
            text.contains("VirtualService default/v: http[0].route[0].weight"),
            "{text}"
        );
    }
}
