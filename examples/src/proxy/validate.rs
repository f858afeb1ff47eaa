//! `mesh-proxy validate PATH...`: every load error and every analysis warning, as text.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::analyze::{Warning, analyze};
use super::config::LoadedConfig;

/// What `validate` found.
#[derive(Debug, Clone, Default)]
pub struct ValidateReport {
    /// Load errors: `file (document N): Kind ns/name: field: problem`.
    pub errors: Vec<String>,
    /// Warnings of a configuration that loaded (none are computed when it did not).
    pub warnings: Vec<Warning>,
}

impl ValidateReport {
    /// Loads `paths` and analyzes what loaded.
    pub fn run(paths: &[PathBuf], namespace: &str) -> Self {
        match LoadedConfig::load(paths, namespace) {
            Ok(config) => Self {
                errors: Vec::new(),
                warnings: analyze(&config),
            },
            Err(errors) => Self {
                errors: errors.0.iter().map(ToString::to_string).collect(),
                warnings: Vec::new(),
            },
        }
    }

    /// 1 when there is an error, else 0 (warnings alone do not fail).
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.errors.is_empty())
    }

    /// One line per problem, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        if self.errors.is_empty() && self.warnings.is_empty() {
            out.push_str("no problems found\n");
        } else {
            let _ = writeln!(
                out,
                "{}, {}",
                plural(self.errors.len(), "error"),
                plural(self.warnings.len(), "warning")
            );
        }
        out
    }
}
