//! Istio's authorization string patterns: exact, `prefix*`, `*suffix` and `*`.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StringMatch {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl StringMatch {
    /// Parses a pattern; a `*` anywhere but at one end is an error, as in Istio.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty value".into());
        }
        if pattern == "*" {
            return Ok(Self::Any);
        }
        let (m, rest) = if let Some(p) = pattern.strip_suffix('*') {
            (Self::Prefix(p.to_owned()), p)
        } else if let Some(s) = pattern.strip_prefix('*') {
            (Self::Suffix(s.to_owned()), s)
        } else {
            (Self::Exact(pattern.to_owned()), pattern)
        };
        if rest.contains('*') {
            return Err(format!(
                "{pattern:?}: `*` is only allowed at the start or the end of a value"
            ));
        }
        Ok(m)
    }

    /// Case-folds the pattern, for fields Istio matches case-insensitively (hosts).
    pub(crate) fn lowercase(self) -> Self {
        match self {
            Self::Any => Self::Any,
            Self::Exact(s) => Self::Exact(s.to_ascii_lowercase()),
            Self::Prefix(s) => Self::Prefix(s.to_ascii_lowercase()),
            Self::Suffix(s) => Self::Suffix(s.to_ascii_lowercase()),
        }
    }

    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => value == s,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Suffix(s) => value.ends_with(s.as_str()),
        }
    }

    /// For exact and prefix patterns that start with `from/`, the same pattern under `to/`
    /// (used to apply trust domain aliases to principals).
    pub(crate) fn replace_leading_domain(&self, from: &str, to: &str) -> Option<Self> {
        let swap = |s: &str| {
            s.strip_prefix(from)
                .filter(|rest| rest.starts_with('/'))
                .map(|rest| format!("{to}{rest}"))
        };
        match self {
            Self::Exact(s) => swap(s).map(Self::Exact),
            Self::Prefix(s) => swap(s).map(Self::Prefix),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_patterns() {
        let table = [
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc*", "abcd", true),
            ("abc*", "xabc", false),
            ("*abc", "xabc", true),
            ("*abc", "abcx", false),
            ("*", "", true),
            ("*", "anything", true),
            ("/api/*", "/api/v1", true),
            ("/api/*", "/api", false),
        ];
        for (pattern, value, want) in table {
            let m = StringMatch::parse(pattern).unwrap();
            assert_eq!(m.matches(value), want, "{pattern} vs {value}");
        }
    }

    #[test]
    fn inner_wildcards_and_empty_values_are_rejected() {
        assert!(StringMatch::parse("a*b").is_err());
        assert!(StringMatch::parse("*a*").is_err());
        assert!(StringMatch::parse("").is_err());
    }
}
