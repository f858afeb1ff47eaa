//! `rewrite`: replace the matched URI prefix (or the whole path), rewrite by regex, or set the
//! authority. Pure functions over path strings.

use http::HeaderValue;
use regex::Regex;

/// How much of the path the matching `uri` condition covered, which a prefix rewrite replaces.
/// Mirrors Envoy: one route per match block, each with its own path specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum MatchedUri {
    /// No uri condition: Envoy's implicit prefix `/`.
    #[default]
    Root,
    /// A prefix condition of this many bytes.
    Prefix(usize),
    /// An exact or regex condition: the whole path.
    Whole,
}

/// `rewrite` of an HTTP route.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub(crate) uri: Option<UriRewrite>,
    pub(crate) authority: Option<HeaderValue>,
}

/// The path part of a rewrite.
#[derive(Debug, Clone)]
pub enum UriRewrite {
    /// `rewrite.uri`: replaces the matched prefix, or the whole path for exact and regex matches.
    Prefix(String),
    /// `rewrite.uriRegexRewrite`: replaces every match of `regex` with `replacement`.
    Regex {
        /// The compiled pattern.
        regex: Regex,
        /// Replacement in `regex` crate syntax (Istio's `\1` became `${1}`).
        replacement: String,
    },
}

impl Rewrite {
    /// The new authority, if the route rewrites it.
    pub fn authority(&self) -> Option<&HeaderValue> {
        self.authority.as_ref()
    }
    /// The path rewrite, if any.
    pub fn uri(&self) -> Option<&UriRewrite> {
        self.uri.as_ref()
    }

    /// Applies the path rewrite to `path_and_query`, keeping the query string.
    pub(crate) fn rewrite_path(
        &self,
        path: &str,
        query: Option<&str>,
        matched: MatchedUri,
    ) -> Option<String> {
        let new_path = match self.uri.as_ref()? {
            UriRewrite::Prefix(replacement) => {
                let cut = match matched {
                    MatchedUri::Root => usize::from(path.starts_with('/')),
                    MatchedUri::Prefix(n) => n.min(path.len()),
                    MatchedUri::Whole => path.len(),
                };
                let mut p = String::with_capacity(replacement.len() + path.len() - cut);
                p.push_str(replacement);
                p.push_str(&path[cut..]);
                p
            }
            UriRewrite::Regex { regex, replacement } => {
                regex.replace_all(path, replacement.as_str()).into_owned()
            }
        };
        Some(match query {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        })
    }
}

/// Converts an RE2/Envoy substitution (`\1` backreferences) to the `regex` crate's syntax.
pub(crate) fn convert_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(*d);
                    out.push('}');
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::string_match::compile_unanchored;

    fn prefix(r: &str) -> Rewrite {
        Rewrite {
            uri: Some(UriRewrite::Prefix(r.into())),
            authority: None,
        }
    }

    #[test]
    fn prefix_rewrite_replaces_only_the_matched_prefix() {
        let rw = prefix("/v2/");
        assert_eq!(
            rw.rewrite_path("/v1/items", Some("a=1"), MatchedUri::Prefix(4))
                .unwrap(),
            "/v2/items?a=1"
        );
    }

    #[test]
    fn exact_match_rewrite_replaces_the_whole_path() {
        assert_eq!(
            prefix("/new")
                .rewrite_path("/old", None, MatchedUri::Whole)
                .unwrap(),
            "/new"
        );
    }

    #[test]
    fn rewrite_without_uri_match_replaces_the_root_slash() {
        // Envoy's implicit prefix is "/", so "/v2" + "foo".
        assert_eq!(
            prefix("/v2")
                .rewrite_path("/foo", None, MatchedUri::Root)
                .unwrap(),
            "/v2foo"
        );
    }

    #[test]
    fn regex_rewrite_replaces_all_matches_with_backrefs() {
        let rw = Rewrite {
            uri: Some(UriRewrite::Regex {
                regex: compile_unanchored("/service/([^/]+)(/.*)").unwrap(),
                replacement: convert_substitution("\\2/instance/\\1"),
            }),
            authority: None,
        };
        assert_eq!(
            rw.rewrite_path("/service/foo/v1/api", Some("q"), MatchedUri::Whole)
                .unwrap(),
            "/v1/api/instance/foo?q"
        );
        assert_eq!(convert_substitution("a$b\\\\c"), "a$$b\\c");
    }
}
