//! Request path normalization, as Istio configures Envoy (MeshConfig
//! `pathNormalization.normalization`), applied before routing and authorization so that a
//! policy on `/admin` cannot be bypassed by `/./admin`, `/x/../admin`, `/%61dmin` or
//! `//admin`, and forwarded upstream normalized. Pure functions; the layer is
//! [`PathNormalizationLayer`](crate::PathNormalizationLayer).
//!
//! In order, as Istio documents it:
//! 1. with [`DecodeAndMergeSlashes`](PathNormalization::DecodeAndMergeSlashes) only: `%2F`
//!    and `%5C` are decoded to `/` and `\`;
//! 2. RFC 3986 normalization (Envoy's `normalize_path`): percent-encoded unreserved
//!    characters (`A-Z a-z 0-9 - . _ ~`) are decoded, other escapes keep their bytes with
//!    upper-case hex; `\` becomes `/`; `.` and `..` segments are removed (never above the
//!    root);
//! 3. with [`MergeSlashes`](PathNormalization::MergeSlashes) and
//!    [`DecodeAndMergeSlashes`](PathNormalization::DecodeAndMergeSlashes): runs of `/` become
//!    one.
//!
//! A malformed escape (`%` not followed by two hex digits) and `%00` are refused (400) in
//! every mode but [`None`](PathNormalization::None), which forwards the path as received.

use std::borrow::Cow;

/// MeshConfig `pathNormalization.normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathNormalization {
    /// `NONE`: the path is used and forwarded as received (vulnerable to CVE-2021-31920).
    None,
    /// `BASE` (Istio's default): RFC 3986 normalization, backslashes to slashes.
    #[default]
    Base,
    /// `MERGE_SLASHES`: `BASE`, then repeated slashes merged.
    MergeSlashes,
    /// `DECODE_AND_MERGE_SLASHES`: `%2F`/`%5C` decoded first, then `MERGE_SLASHES`.
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    /// Parses Istio's name (`NONE`, `BASE`, `MERGE_SLASHES`, `DECODE_AND_MERGE_SLASHES`;
    /// `DEFAULT` is `BASE`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "NONE" => Self::None,
            "BASE" | "DEFAULT" => Self::Base,
            "MERGE_SLASHES" => Self::MergeSlashes,
            "DECODE_AND_MERGE_SLASHES" => Self::DecodeAndMergeSlashes,
            _ => return None,
        })
    }
}

/// Why a path is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("malformed percent-encoding in the path")]
    MalformedEscape,
    /// `%00`, which Istio always refuses.
    #[error("percent-encoded NUL in the path")]
    EncodedNul,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalizes `path` (without its query string) under `mode`. Borrowed when nothing changes,
/// which is every path without `%`, `\`, dot segments or (when merging) repeated slashes.
///
/// ```
/// use mesh_routing::{PathNormalization, normalize_path};
/// let n = |p| normalize_path(p, PathNormalization::Base).unwrap().into_owned();
/// assert_eq!(n("/x/../admin"), "/admin");
/// assert_eq!(n("/%2e/%61dmin"), "/admin");
/// assert_eq!(n("/a\\b"), "/a/b");
/// assert_eq!(n("/a%2fb"), "/a%2Fb");
/// assert_eq!(n("//admin"), "//admin");
/// let m = |p| normalize_path(p, PathNormalization::DecodeAndMergeSlashes).unwrap().into_owned();
/// assert_eq!(m("//admin"), "/admin");
/// assert_eq!(m("/a%2fb"), "/a/b");
/// assert!(normalize_path("/a%zz", PathNormalization::Base).is_err());
/// ```
pub fn normalize_path(path: &str, mode: PathNormalization) -> Result<Cow<'_, str>, PathError> {
    // `*` (OPTIONS) and authority-form targets have no path to normalize.
    if mode == PathNormalization::None || !path.starts_with('/') {
        return Ok(Cow::Borrowed(path));
    }
    let merge = matches!(
        mode,
        PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
    );
    if !needs_work(path.as_bytes(), merge) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(
        path.as_bytes(),
        mode == PathNormalization::DecodeAndMergeSlashes,
    )?;
    let resolved = remove_dot_segments(&decoded, merge);
    // Only ASCII went in (escapes of other bytes are kept as escapes), so this cannot fail;
    // stay total anyway.
    Ok(Cow::Owned(String::from_utf8(resolved).unwrap_or_else(
        |e| String::from_utf8_lossy(e.as_bytes()).into_owned(),
    )))
}

/// Whether anything could change: an escape, a backslash, a dot segment, or a slash run.
fn needs_work(p: &[u8], merge: bool) -> bool {
    let mut prev = 0u8;
    for (i, &b) in p.iter().enumerate() {
        match b {
            b'%' | b'\\' => return true,
            b'.' if prev == b'/' => {
                let rest = &p[i + 1..];
                if rest.is_empty()
                    || rest[0] == b'/'
                    || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'))
                {
                    return true;
                }
            }
            b'/' if merge && prev == b'/' => return true,
            _ => {}
        }
        prev = b;
    }
    false
}

/// Step 1 and the decoding of step 2: unreserved escapes (and with `slashes`, `%2F`/`%5C`)
/// decoded, other escapes upper-cased, `\` turned into `/`.
fn decode(p: &[u8], slashes: bool) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                p.get(i + 1).copied().and_then(hex),
                p.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::MalformedEscape);
            };
            let c = hi << 4 | lo;
            if c == 0 {
                return Err(PathError::EncodedNul);
            }
            if is_unreserved(c) || (slashes && matches!(c, b'/' | b'\\')) {
                out.push(if c == b'\\' { b'/' } else { c });
            } else {
                out.extend_from_slice(&[
                    b'%',
                    p[i + 1].to_ascii_uppercase(),
                    p[i + 2].to_ascii_uppercase(),
                ]);
            }
            i += 3;
            continue;
        }
        out.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    Ok(out)
}

/// RFC 3986 section 5.2.4 over an absolute path, merging slash runs when asked. A trailing
/// `.` or `..` segment leaves a trailing slash, as the RFC's algorithm does.
fn remove_dot_segments(p: &[u8], merge: bool) -> Vec<u8> {
    // Segments between slashes; the path starts with '/'.
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    let parts: Vec<&[u8]> = p[1..].split(|&b| b == b'/').collect();
    let last = parts.len() - 1;
    for (i, seg) in parts.into_iter().enumerate() {
        match seg {
            b"." => trailing_slash = i == last,
            b".." => {
                segments.pop();
                trailing_slash = i == last;
            }
            b"" if merge && i != last => {}
            b"" if merge => trailing_slash = true,
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(p.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathNormalization::*;

    fn n(p: &str, mode: PathNormalization) -> String {
        normalize_path(p, mode).unwrap().into_owned()
    }

    #[test]
    fn the_bypasses_of_the_probe_all_become_admin() {
        for p in [
            "/./admin",
            "/x/../admin",
            "/%61dmin",
            "/%2e/admin",
            "/%2E/ADMIN/../admin",
        ] {
            assert_eq!(n(p, Base), "/admin", "{p}");
        }
        assert_eq!(n("//admin", MergeSlashes), "/admin");
        assert_eq!(n("//admin", Base), "//admin");
    }

    #[test]
    fn dot_segments_never_climb_above_the_root_and_keep_trailing_slashes() {
        assert_eq!(n("/../../a", Base), "/a");
        assert_eq!(n("/a/b/..", Base), "/a/");
        assert_eq!(n("/a/.", Base), "/a/");
        assert_eq!(n("/..", Base), "/");
        assert_eq!(n("/a/..b/.c", Base), "/a/..b/.c");
        assert_eq!(n("/a/", Base), "/a/");
    }

    #[test]
    fn escapes_decode_unreserved_only_and_slashes_only_when_asked() {
        assert_eq!(n("/%41%7e%2D%5f%30", Base), "/A~-_0");
        assert_eq!(n("/a%2fb%5cc", Base), "/a%2Fb%5Cc");
        assert_eq!(n("/a%2fb%5cc", DecodeAndMergeSlashes), "/a/b/c");
        assert_eq!(n("/%2e%2e/x", Base), "/x");
        assert_eq!(n("/a%20b", Base), "/a%20b");
        assert_eq!(n("/caf%c3%a9", Base), "/caf%C3%A9");
    }

    #[test]
    fn malformed_escapes_and_nul_are_refused_except_under_none() {
        for p in ["/%", "/%4", "/%zz", "/a%g1"] {
            assert_eq!(
                normalize_path(p, Base),
                Err(PathError::MalformedEscape),
                "{p}"
            );
        }
        assert_eq!(normalize_path("/%00", Base), Err(PathError::EncodedNul));
        assert_eq!(n("/%zz/../x", None), "/%zz/../x");
    }

    #[test]
    fn a_clean_path_is_borrowed() {
        assert!(matches!(
            normalize_path("/api/v1/items", MergeSlashes),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(
            normalize_path("/a.b/.c/..d", Base),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn modes_parse_by_istio_name() {
        assert_eq!(PathNormalization::parse("DEFAULT"), Some(Base));
        assert_eq!(
            PathNormalization::parse("MERGE_SLASHES"),
            Some(MergeSlashes)
        );
        assert_eq!(PathNormalization::parse("base"), Option::None);
    }
}
