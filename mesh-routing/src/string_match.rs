//! Istio `StringMatch`, compiled: exact, prefix, whole-value RE2-style regex, or "any".

use regex::Regex;

use crate::error::{Collector, Problem};
use crate::model;

/// Largest compiled regex we accept, so one route cannot blow up memory (bytes of program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled string matcher. `Any` is what an empty `StringMatch` (`{}`) compiles to: for
/// headers and query parameters it means "present", elsewhere "anything".
#[derive(Debug, Clone)]
pub(crate) enum StringMatcher {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored at both ends: Istio's regex must match the whole value.
    Regex(Regex),
}

impl StringMatcher {
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => value == &**s,
            Self::Prefix(p) => value.starts_with(&**p),
            Self::Regex(r) => r.is_match(value),
        }
    }

    /// ASCII case-insensitive exact/prefix (Envoy's `case_sensitive: false`); regex unaffected.
    pub(crate) fn matches_ignore_case(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value.eq_ignore_ascii_case(s),
            Self::Prefix(p) => {
                value.len() >= p.len()
                    && value.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            _ => self.matches(value),
        }
    }

    /// Compiles a model `StringMatch`, recording problems at the collector's current path.
    pub(crate) fn compile(m: &model::StringMatch, c: &mut Collector<'_>) -> Option<Self> {
        let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set > 1 {
            c.push(Problem::Invalid(
                "only one of exact, prefix or regex may be set".into(),
            ));
            return None;
        }
        if let Some(e) = &m.exact {
            return Some(Self::Exact(e.as_str().into()));
        }
        if let Some(p) = &m.prefix {
            return Some(Self::Prefix(p.as_str().into()));
        }
        if let Some(r) = &m.regex {
            return c.at(format_args!("regex"), |c| {
                compile_regex(r, c).map(Self::Regex)
            });
        }
        Some(Self::Any)
    }
}

/// Compiles `pattern` so that it must match the whole value, as RE2's full match does.
pub(crate) fn compile_regex(pattern: &str, c: &mut Collector<'_>) -> Option<Regex> {
    compile_anchored(pattern)
        .map_err(|reason| {
            c.push(Problem::Regex {
                pattern: pattern.to_string(),
                reason,
            })
        })
        .ok()
}

pub(crate) fn compile_anchored(pattern: &str) -> Result<Regex, String> {
    // Validate the pattern on its own first so the error does not mention our anchoring.
    compile_unanchored(pattern)?;
    compile_unanchored(&format!("^(?:{pattern})$"))
}

pub(crate) fn compile_unanchored(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            e.to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(p: &str) -> StringMatcher {
        StringMatcher::Regex(compile_anchored(p).unwrap())
    }

    #[test]
    fn prefix_is_plain_string_prefix() {
        let m = StringMatcher::Prefix("/v2".into());
        assert!(m.matches("/v2example"));
        assert!(m.matches("/v2/x"));
        assert!(!m.matches("/v1"));
    }

    #[test]
    fn regex_must_match_the_whole_value() {
        let m = regex("/v[0-9]");
        assert!(m.matches("/v1"));
        assert!(!m.matches("/v1/extra"));
        assert!(!m.matches("x/v1"));
        // Alternation binds inside the anchors.
        let m = regex("/a|/b");
        assert!(!m.matches("/a/c"));
        assert!(m.matches("/b"));
    }

    #[test]
    fn exact_and_prefix_are_case_sensitive_unless_ignoring_case() {
        let e = StringMatcher::Exact("/Foo".into());
        assert!(!e.matches("/foo"));
        assert!(e.matches_ignore_case("/foo"));
        let p = StringMatcher::Prefix("/API".into());
        assert!(!p.matches("/api/x"));
        assert!(p.matches_ignore_case("/api/x"));
        assert!(!p.matches_ignore_case("/ap"));
        // Regex is not affected by ignoreUriCase, as in Envoy.
        assert!(!regex("/foo").matches_ignore_case("/FOO"));
    }

    #[test]
    fn invalid_regex_reports_the_engine_reason() {
        assert!(
            compile_anchored("(unclosed")
                .unwrap_err()
                .contains("unclosed")
        );
    }
}
