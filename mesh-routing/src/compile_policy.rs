//! Compiling route policies: timeouts and durations, retries, faults, CORS and mirrors.

use std::time::Duration;

use http::{HeaderValue, StatusCode};

use crate::action::{AbortKind, Fault, FaultAbort, FaultDelay, Mirror};
use crate::compile_http::compile_destination;
use crate::cors::CorsPolicy;
use crate::duration::parse_duration;
use crate::error::{Collector, Problem};
use crate::model::{self, HttpRoute};
use crate::retry::{ISTIO_DEFAULT_RETRY_ON, RetryCondition, RetryOn, RetryPolicy};
use crate::string_match::StringMatcher;

/// Parses a duration field; Istio requires at least 1ms (`allow_zero` lets `0s` disable a timeout).
pub(crate) fn duration_field(
    value: &str,
    field: &str,
    allow_zero: bool,
    c: &mut Collector<'_>,
) -> Option<Duration> {
    let problem = |reason| Problem::Duration {
        value: value.to_string(),
        reason,
    };
    match parse_duration(value) {
        Ok(d) if d.is_zero() && allow_zero => Some(d),
        Ok(d) if d < Duration::from_millis(1) => {
            c.push_at(field, problem("must be at least 1ms"));
            None
        }
        Ok(d) if d.subsec_nanos() % 1_000_000 != 0 => {
            c.push_at(field, problem("only millisecond precision is supported"));
            None
        }
        Ok(d) => Some(d),
        Err(reason) => {
            c.push_at(field, problem(reason));
            None
        }
    }
}

pub(crate) fn compile_retries(r: &model::HttpRetry, c: &mut Collector<'_>) -> Option<RetryPolicy> {
    let before = c.error_count();
    let attempts = match r.attempts.unwrap_or(0) {
        a if a < 0 => {
            c.push_at(
                "attempts",
                Problem::Invalid(format!("attempts must be >= 0, got {a}")),
            );
            0
        }
        a => u32::try_from(a).unwrap_or(u32::MAX),
    };
    let per_try_timeout = r
        .per_try_timeout
        .as_ref()
        .and_then(|t| duration_field(t, "perTryTimeout", false, c));
    let retry_on = c.at(format_args!("retryOn"), |c| {
        parse_retry_on(r.retry_on.as_deref().unwrap_or(ISTIO_DEFAULT_RETRY_ON), c)
    });
    (c.error_count() == before).then(|| RetryPolicy {
        attempts,
        per_try_timeout,
        retry_on,
        retry_remote_localities: r.retry_remote_localities.unwrap_or(false),
    })
}

pub(crate) fn parse_retry_on(s: &str, c: &mut Collector<'_>) -> RetryOn {
    let mut out = RetryOn::default();
    for token in s.split(',').map(str::trim) {
        if let Ok(code) = token.parse::<u16>() {
            if (100..=599).contains(&code) {
                out.status_codes.push(code);
                if !out
                    .conditions
                    .contains(&RetryCondition::RetriableStatusCodes)
                {
                    out.conditions.push(RetryCondition::RetriableStatusCodes);
                }
                continue;
            }
        }
        match RetryCondition::parse(token) {
            Some(cond) if !out.conditions.contains(&cond) => out.conditions.push(cond),
            Some(_) => {}
            None => c.push(Problem::Invalid(format!(
                "{token:?} is not a valid retryOn policy"
            ))),
        }
    }
    if out
        .conditions
        .contains(&RetryCondition::RetriableStatusCodes)
        && out.status_codes.is_empty()
    {
        // Istio's default retriable code when `retriable-status-codes` is named alone.
        out.status_codes.push(503);
    }
    out
}

pub(crate) fn percentage(
    p: Option<&model::Percent>,
    field: &str,
    default: f64,
    c: &mut Collector<'_>,
) -> f64 {
    match p {
        None => default,
        Some(p) if (0.0..=100.0).contains(&p.value) => p.value,
        Some(p) => {
            c.push_at(
                field,
                Problem::OutOfRange {
                    value: p.value,
                    min: 0.0,
                    max: 100.0,
                },
            );
            0.0
        }
    }
}

pub(crate) fn compile_fault(f: &model::HttpFaultInjection, c: &mut Collector<'_>) -> Option<Fault> {
    let before = c.error_count();
    if f.delay.is_none() && f.abort.is_none() {
        c.push(Problem::Invalid("fault must specify delay or abort".into()));
    }
    let delay = f.delay.as_ref().and_then(|d| {
        c.at(format_args!("delay"), |c| {
            if d.exponential_delay.is_some() {
                c.push_at("exponentialDelay", Problem::Unsupported("exponentialDelay"));
            }
            let Some(fixed) = &d.fixed_delay else {
                c.push_at("fixedDelay", Problem::Missing);
                return None;
            };
            if d.percent.is_some() && d.percentage.is_some() {
                c.push(Problem::Conflict("percent", "percentage"));
            }
            let legacy = d.percent.map(|p| model::Percent { value: p as f64 });
            let pct = percentage(
                d.percentage.as_ref().or(legacy.as_ref()),
                "percentage",
                0.0,
                c,
            );
            duration_field(fixed, "fixedDelay", false, c).map(|delay| FaultDelay {
                delay,
                percentage: pct,
            })
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        c.at(format_args!("abort"), |c| {
            let kind = match (a.http_status, &a.grpc_status, &a.http2_error) {
                (Some(s), None, None) => {
                    match u16::try_from(s).ok().filter(|s| (200..=599).contains(s)) {
                        Some(s) => AbortKind::Http(StatusCode::from_u16(s).ok()?),
                        None => {
                            c.push_at(
                                "httpStatus",
                                Problem::OutOfRange {
                                    value: s as f64,
                                    min: 200.0,
                                    max: 599.0,
                                },
                            );
                            return None;
                        }
                    }
                }
                (None, Some(g), None) => match grpc_code(g) {
                    Some(code) => AbortKind::Grpc(code),
                    None => {
                        c.push_at(
                            "grpcStatus",
                            Problem::Invalid(format!("unknown gRPC status {g:?}")),
                        );
                        return None;
                    }
                },
                (None, None, Some(_)) => {
                    c.push_at("http2Error", Problem::Unsupported("http2Error aborts"));
                    return None;
                }
                (None, None, None) => {
                    c.push(Problem::Invalid(
                        "abort must specify httpStatus or grpcStatus".into(),
                    ));
                    return None;
                }
                _ => {
                    c.push(Problem::Invalid(
                        "only one of httpStatus, grpcStatus or http2Error may be set".into(),
                    ));
                    return None;
                }
            };
            Some(FaultAbort {
                kind,
                percentage: percentage(a.percentage.as_ref(), "percentage", 0.0, c),
            })
        })
    });
    (c.error_count() == before).then_some(Fault { delay, abort })
}

pub(crate) fn grpc_code(name: &str) -> Option<u8> {
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    CODES
        .iter()
        .position(|c| *c == name)
        .and_then(|p| u8::try_from(p).ok())
}

pub(crate) fn compile_cors(p: &model::CorsPolicy, c: &mut Collector<'_>) -> Option<CorsPolicy> {
    let before = c.error_count();
    let mut allow_origins: Vec<StringMatcher> = Vec::new();
    for (i, o) in p.allow_origin.iter().enumerate() {
        let _ = i;
        allow_origins.push(if o == "*" {
            StringMatcher::Any
        } else {
            StringMatcher::Exact(o.as_str().into())
        });
    }
    for (i, sm) in p.allow_origins.iter().enumerate() {
        if let Some(m) = c.at(format_args!("allowOrigins[{i}]"), |c| {
            StringMatcher::compile(sm, c)
        }) {
            allow_origins.push(m);
        }
    }
    let join = |field: &str, items: &[String], c: &mut Collector<'_>| -> Option<HeaderValue> {
        if items.is_empty() {
            return None;
        }
        let joined = items.join(",");
        HeaderValue::from_str(&joined)
            .map_err(|_| c.push_at(field, Problem::Header(joined)))
            .ok()
    };
    let allow_methods = join("allowMethods", &p.allow_methods, c);
    let allow_headers = join("allowHeaders", &p.allow_headers, c);
    let expose_headers = join("exposeHeaders", &p.expose_headers, c);
    let max_age = p
        .max_age
        .as_ref()
        .and_then(|m| duration_field(m, "maxAge", true, c));
    let forward_unmatched_preflights = match p.unmatched_preflights.as_deref() {
        None | Some("FORWARD") | Some("UNSPECIFIED") => true,
        Some("IGNORE") => false,
        Some(other) => {
            c.push_at(
                "unmatchedPreflights",
                Problem::Decode(format!(
                    "unknown variant {other:?}, expected FORWARD or IGNORE"
                )),
            );
            true
        }
    };
    (c.error_count() == before).then_some(CorsPolicy {
        allow_origins,
        allow_methods,
        allow_headers,
        expose_headers,
        max_age,
        allow_credentials: p.allow_credentials.unwrap_or(false),
        forward_unmatched_preflights,
    })
}

pub(crate) fn compile_mirrors(
    r: &HttpRoute,
    namespace: &str,
    c: &mut Collector<'_>,
) -> Vec<Mirror> {
    let mut out = Vec::new();
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        c.push(Problem::Conflict("mirror", "mirrors"));
        return out;
    }
    if r.mirror_percentage.is_some() && r.mirror_percent.is_some() {
        c.push(Problem::Conflict("mirrorPercentage", "mirrorPercent"));
    }
    if !r.mirrors.is_empty() && (r.mirror_percentage.is_some() || r.mirror_percent.is_some()) {
        c.push(Problem::Conflict("mirrors", "mirrorPercentage"));
    }
    if let Some(m) = &r.mirror {
        let legacy = r.mirror_percent.map(|p| model::Percent {
            value: f64::from(p),
        });
        let pct = percentage(
            r.mirror_percentage.as_ref().or(legacy.as_ref()),
            "mirrorPercentage",
            100.0,
            c,
        );
        if let Some(d) = c.at(format_args!("mirror"), |c| {
            compile_destination(m, namespace, c)
        }) {
            out.push(Mirror {
                destination: d,
                percentage: pct,
            });
        }
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        c.at(format_args!("mirrors[{i}]"), |c| {
            let pct = percentage(m.percentage.as_ref(), "percentage", 100.0, c);
            let Some(dest) = &m.destination else {
                c.push_at("destination", Problem::Missing);
                return;
            };
            if let Some(d) = c.at(format_args!("destination"), |c| {
                compile_destination(dest, namespace, c)
            }) {
                out.push(Mirror {
                    destination: d,
                    percentage: pct,
                });
            }
        });
    }
    out
}
