//! Access logs: one line per request in Envoy's default format, plus the W3C and B3 trace
//! ids, written to stdout by one task so a slow stdout never blocks a request: when the
//! bounded queue is full the line is dropped and counted (`mesh_access_log_dropped_total`).
//!
//! Envoy's default format, then ours:
//! ```text
//! [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
//! %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//! %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//! "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" "%REQ(TRACEPARENT)%" "<b3 trace id>"
//! ```
//! Trace headers themselves are never changed: the proxy passes them through as they came.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, Request, Response, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tower_layer::Layer;
use tower_service::Service;

use super::observe::{BodyEnd, CountedBody, DoneBody, Observation, Observed, OnDone};
use super::registry::ProxyMetrics;
use super::tags::RequestTags;

/// Lines queued for the writer before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;

#[derive(Debug)]
enum Msg {
    Line(String),
    Flush(oneshot::Sender<()>),
}

/// Where access log lines go: a bounded queue drained by one writer task. Clones share.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    metrics: ProxyMetrics,
}

impl AccessLog {
    /// Lines to the process's stdout. Spawns the writer: call inside a tokio runtime.
    pub fn stdout(metrics: ProxyMetrics) -> Self {
        Self::to_writer(tokio::io::stdout(), QUEUE_LINES, metrics)
    }

    /// Lines to `writer`, at most `capacity` queued.
    pub fn to_writer<W>(writer: W, capacity: usize, metrics: ProxyMetrics) -> Self
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(write_lines(writer, rx));
        Self { tx, metrics }
    }

    /// Queues a line (which ends with `\n`), or drops and counts it when the queue is full.
    pub fn log(&self, line: String) {
        if self.tx.try_send(Msg::Line(line)).is_err() {
            self.metrics.record_access_log_drop();
        }
    }

    /// Waits (up to a second) until every line queued so far is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        let sent = tokio::time::timeout(Duration::from_secs(1), async {
            if self.tx.send(Msg::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        });
        let _ = sent.await;
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = String::new();
    while let Some(first) = rx.recv().await {
        let mut flushes = Vec::new();
        let mut next = Some(first);
        // Take whatever else is queued so one write carries many lines.
        while let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) {
            match msg {
                Msg::Line(line) => batch.push_str(&line),
                Msg::Flush(done) => flushes.push(done),
            }
            if batch.len() > 64 * 1024 {
                break;
            }
        }
        if !batch.is_empty() {
            if writer.write_all(batch.as_bytes()).await.is_err() {
                return; // stdout is gone; nothing left to log to.
            }
            let _ = writer.flush().await;
            batch.clear();
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes one [`AccessLog`] line per request when its response body ends (or is dropped).
///
/// Readiness: `poll_ready` is the inner service's. `call` reads the request headers it logs,
/// counts the request body, and shares a [`RequestTags`] slot so inner layers can report
/// the upstream host and response flags. Put it inside `mesh_gateway::filters::request_id_layer()`
/// so generated request ids are logged.
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    log: AccessLog,
}

impl AccessLogLayer {
    /// Logs to `log`.
    pub fn new(log: AccessLog) -> Self {
        Self { log }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService {
            inner,
            log: self.log.clone(),
        }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLogService<S> {
    inner: S,
    log: AccessLog,
}

/// The request half of a line, captured at `call`.
#[derive(Debug)]
struct Pending {
    log: AccessLog,
    start: SystemTime,
    started: Instant,
    request_line: String,
    request_headers: String,
    trace: String,
    received: Arc<AtomicU64>,
    tags: RequestTags,
}

impl<S, B, RB> Service<Request<B>> for AccessLogService<S>
where
    S: Service<Request<CountedBody<B>>, Response = Response<RB>>,
    RB: Body,
{
    type Response = Response<DoneBody<RB>>;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let tags = parts
            .extensions
            .get::<RequestTags>()
            .cloned()
            .unwrap_or_default();
        parts.extensions.insert(tags.clone());
        let h = &parts.headers;
        let path = header(h, "x-envoy-original-path")
            .or_else(|| parts.uri.path_and_query().map(|p| p.as_str()))
            .unwrap_or("-");
        let request_line = format!("\"{} {} {}\"", parts.method, path, protocol(parts.version));
        let authority = mesh_routing::authority_of(&parts.uri, h).unwrap_or("-");
        let request_headers = format!(
            "\"{}\" \"{}\" \"{}\" \"{authority}\"",
            header(h, "x-forwarded-for").unwrap_or("-"),
            header(h, "user-agent").unwrap_or("-"),
            header(h, "x-request-id").unwrap_or("-"),
        );
        let trace = format!(
            " \"{}\" \"{}\"",
            header(h, "traceparent").unwrap_or("-"),
            b3_trace_id(h).unwrap_or("-"),
        );
        let received = Arc::new(AtomicU64::new(0));
        let req = Request::from_parts(parts, CountedBody::new(body, received.clone()));
        let pending = Pending {
            log: self.log.clone(),
            start: SystemTime::now(),
            started: Instant::now(),
            request_line,
            request_headers,
            trace,
            received,
            tags,
        };
        AccessLogFuture {
            inner: Observed::new(self.inner.call(req), pending),
        }
    }
}

pin_project! {
    /// The response future of [`AccessLogService`].
    #[derive(Debug)]
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: Observed<F, Pending>,
    }
}

impl<F, RB, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Body,
{
    type Output = Result<Response<DoneBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl Observation for Pending {
    fn on_response(self, head: &http::response::Parts) -> OnDone {
        let status = head.status.as_u16();
        let upstream_time = header(&head.headers, "x-envoy-upstream-service-time")
            .unwrap_or("-")
            .to_string();
        let flag = super::metrics::local_flag(head);
        Box::new(move |sent: u64, end: BodyEnd| {
            self.finish(status, sent, &upstream_time, flag, end)
        })
    }

    fn on_error(self) {
        self.finish(0, 0, "-", None, BodyEnd::Error);
    }
}

impl Pending {
    fn finish(
        self,
        status: u16,
        sent: u64,
        upstream_time: &str,
        local_flag: Option<&str>,
        end: BodyEnd,
    ) {
        let mut line = String::with_capacity(256);
        // Read in place: no copy of the tags per logged request.
        self.tags.with(|tags| {
            // Envoy: DC = downstream connection terminated before the response was sent.
            let flags = (tags.response_flags.as_deref().or(local_flag)).unwrap_or(match end {
                BodyEnd::Dropped => "DC",
                _ => "-",
            });
            let _ = write!(
                line,
                "[{}] {} {status} {flags} {} {sent} {} {upstream_time} {} \"{}\"{}",
                format_start_time(self.start),
                self.request_line,
                self.received.load(Ordering::Relaxed),
                self.started.elapsed().as_millis(),
                self.request_headers,
                tags.upstream_host.as_deref().unwrap_or("-"),
                self.trace,
            );
        });
        line.push('\n');
        self.log.log(line);
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `x-b3-traceid`, or the trace id of a single `b3` header (`traceid-spanid-...`).
fn b3_trace_id(headers: &HeaderMap) -> Option<&str> {
    header(headers, "x-b3-traceid").or_else(|| {
        header(headers, "b3")
            .and_then(|v| v.split('-').next())
            .filter(|id| id.len() > 1)
    })
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Envoy's `%START_TIME%` default: `2016-04-15T20:17:00.310Z` (UTC, milliseconds).
pub fn format_start_time(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
