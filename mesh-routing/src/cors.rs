//! `corsPolicy`: answers preflights and decorates responses, as Envoy's CORS filter does.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, header};

use crate::string_match::StringMatcher;

/// A compiled `corsPolicy`.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    pub(crate) allow_origins: Vec<StringMatcher>,
    pub(crate) allow_methods: Option<HeaderValue>,
    pub(crate) allow_headers: Option<HeaderValue>,
    pub(crate) expose_headers: Option<HeaderValue>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) allow_credentials: bool,
    /// `unmatchedPreflights: IGNORE` answers unmatched preflights without CORS headers
    /// instead of forwarding them (`FORWARD`, the default).
    pub(crate) forward_unmatched_preflights: bool,
}

/// What the CORS policy decided for a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CorsDecision {
    /// Not a CORS request, or the origin is not allowed: forward without decoration.
    Forward,
    /// Allowed actual request: forward, then add these headers to the response.
    Decorate(HeaderMap),
    /// A preflight answered locally with 200 and these headers.
    Preflight(HeaderMap),
}

impl CorsPolicy {
    /// Whether `origin` is allowed by `allowOrigins`.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|m| m.matches(origin))
    }

    pub(crate) fn decide(&self, method: &Method, headers: &HeaderMap) -> CorsDecision {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return CorsDecision::Forward;
        };
        let allowed = origin.to_str().is_ok_and(|o| self.allows_origin(o));
        let preflight = method == Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if !allowed {
            return if preflight && !self.forward_unmatched_preflights {
                CorsDecision::Preflight(HeaderMap::new())
            } else {
                CorsDecision::Forward
            };
        }
        let mut out = HeaderMap::new();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.allow_credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if preflight {
            if let Some(v) = &self.allow_methods {
                out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
            }
            if let Some(v) = &self.allow_headers {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            if let Some(age) = self.max_age {
                out.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from(age.as_secs()),
                );
            }
            CorsDecision::Preflight(out)
        } else {
            if let Some(v) = &self.expose_headers {
                out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
            CorsDecision::Decorate(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CorsPolicy {
        CorsPolicy {
            allow_origins: vec![StringMatcher::Exact("https://ok.example".into())],
            allow_methods: Some(HeaderValue::from_static("GET, POST")),
            allow_headers: Some(HeaderValue::from_static("x-custom")),
            expose_headers: Some(HeaderValue::from_static("x-exposed")),
            max_age: Some(Duration::from_secs(86400)),
            allow_credentials: true,
            forward_unmatched_preflights: true,
        }
    }

    fn headers(origin: &str, preflight: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                "POST".parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn allowed_preflight_is_answered_with_policy_headers() {
        let CorsDecision::Preflight(h) =
            policy().decide(&Method::OPTIONS, &headers("https://ok.example", true))
        else {
            panic!("expected a preflight answer");
        };
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://ok.example");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "86400");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn disallowed_origin_is_forwarded_or_ignored() {
        let p = policy();
        assert_eq!(
            p.decide(&Method::OPTIONS, &headers("https://evil", true)),
            CorsDecision::Forward
        );
        let ignore = CorsPolicy {
            forward_unmatched_preflights: false,
            ..p
        };
        assert_eq!(
            ignore.decide(&Method::OPTIONS, &headers("https://evil", true)),
            CorsDecision::Preflight(HeaderMap::new())
        );
    }

    #[test]
    fn actual_request_gets_origin_and_expose_headers() {
        let CorsDecision::Decorate(h) =
            policy().decide(&Method::GET, &headers("https://ok.example", false))
        else {
            panic!("expected decoration");
        };
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-exposed");
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_METHODS).is_none());
    }
}
