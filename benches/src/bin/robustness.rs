//! `robustness`: hostile clients and long runs against a `mesh-proxy` binary, with figures.
//!
//! Each phase starts its own mesh-proxy (a Gateway port splitting `web.example.com` between
//! two in-process HTTP/1.1 upstreams) with the flags it tests, then:
//!
//! - **slowloris**: `--slowloris` connections each send a request head that never ends,
//!   one byte every 500 ms; the proxy must close every one after `--header-read-timeout`
//!   (2 s here) while a probe keeps getting answers on fresh connections;
//! - **idle**: `--idle` keep-alive connections make one request each and go quiet; the
//!   proxy must close every one after `--idle-timeout` (3 s here);
//! - **flood**: with `--max-connections` set to `--cap`, `--cap` connections are held open and
//!   `--flood` more arrive; every extra one must be refused at once, every held one must keep
//!   being served, and the listener must accept again once they go;
//! - **reload under load**: `--workers` keep-alive clients send requests while the config is
//!   rewritten and reloaded (SIGHUP) `--reloads` times, every tenth time with an invalid
//!   config; no request may fail and every invalid config must be refused;
//! - **soak**: `--workers` clients for `--soak` seconds, the proxy's RSS sampled every second;
//!   no request may fail.
//!
//! The figures go to stdout and `OUT/robustness.md`; mesh-proxy's logs stay in `OUT/PHASE/`.
//! Exit 1 when a check fails. `scripts/robustness.sh` builds the binaries and runs it.
//!
//! ```text
//! robustness --mesh-proxy target/release/mesh-proxy --out target/robustness/now [--smoke]
//! ```

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

type Error = Box<dyn std::error::Error + Send + Sync>;

const HOST: &str = "web.example.com";

#[derive(Parser, Debug, Clone)]
#[command(about = "Hostile clients and long runs against mesh-proxy, with figures")]
struct Args {
    /// The mesh-proxy binary.
    #[arg(long)]
    mesh_proxy: PathBuf,
    /// Where the report and the proxies' logs go.
    #[arg(long)]
    out: PathBuf,
    /// A quick run with small counts (CI): slowloris 100, idle 50, cap 50, flood 100,
    /// reloads 10, soak 3 s.
    #[arg(long)]
    smoke: bool,
    /// Slowloris connections.
    #[arg(long, default_value_t = 2000)]
    slowloris: usize,
    /// Idle keep-alive connections.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// The flood phase's `--max-connections`.
    #[arg(long, default_value_t = 1000)]
    cap: usize,
    /// Connections arriving over the cap.
    #[arg(long, default_value_t = 2000)]
    flood: usize,
    /// Reloads under load.
    #[arg(long, default_value_t = 100)]
    reloads: usize,
    /// Soak duration in seconds.
    #[arg(long, default_value_t = 60)]
    soak: u64,
    /// Concurrent keep-alive clients of the reload and soak phases.
    #[arg(long, default_value_t = 16)]
    workers: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        (args.slowloris, args.idle, args.cap, args.flood) = (100, 50, 50, 100);
        (args.reloads, args.soak) = (10, 3);
    }
    // Thousands of sockets: as many descriptors as the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match run(&args).await {
        Ok(report) => {
            let text = report.markdown(&args);
            print!("{text}");
            let _ = std::fs::write(args.out.join("robustness.md"), &text);
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                for f in &report.failures {
                    eprintln!("robustness: FAILED: {f}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("robustness: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<Report, Error> {
    std::fs::create_dir_all(&args.out)?;
    let upstreams = (upstream("a").await?, upstream("b").await?);
    let mut report = Report::default();
    slowloris(args, upstreams, &mut report).await?;
    idle(args, upstreams, &mut report).await?;
    flood(args, upstreams, &mut report).await?;
    reload_under_load(args, upstreams, &mut report).await?;
    soak(args, upstreams, &mut report).await?;
    Ok(report)
}

/// Figures by phase, and the checks that failed.
#[derive(Default)]
struct Report {
    rows: Vec<(&'static str, String, String)>,
    failures: Vec<String>,
}

impl Report {
    fn row(&mut self, phase: &'static str, figure: impl Into<String>, value: impl Into<String>) {
        self.rows.push((phase, figure.into(), value.into()));
    }

    fn check(&mut self, phase: &'static str, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(format!("{phase}: {}", what.into()));
        }
    }

    fn markdown(&self, args: &Args) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# mesh-proxy robustness\n\n{} ({}), {} cores\n",
            args.mesh_proxy.display(),
            if args.smoke { "smoke" } else { "full" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let _ = writeln!(s, "| phase | figure | value |\n|---|---|---|");
        for (phase, figure, value) in &self.rows {
            let _ = writeln!(s, "| {phase} | {figure} | {value} |");
        }
        let verdict = if self.failures.is_empty() {
            "all checks passed".to_string()
        } else {
            format!("FAILED: {}", self.failures.join("; "))
        };
        let _ = writeln!(s, "\n{verdict}");
        s
    }
}

/// An HTTP/1.1 upstream on loopback answering every request with 200 and `name`.
async fn upstream(name: &'static str) -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors, most likely: let some close.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let answer = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        name.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), answer)
                    .await;
            });
        }
    });
    Ok(port)
}

/// The proxy's config: a Gateway port, `weight_a`% to upstream a, the rest to b.
fn config_yaml(port: u16, (a, b): (u16, u16), weight_a: u32) -> String {
    let weight_b = 100 - weight_a;
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public}}
spec:
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: [{HOST}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [{HOST}]
  gateways: [public]
  http:
  - route:
    - {{destination: {{host: web.internal, subset: a}}, weight: {weight_a}}}
    - {{destination: {{host: web.internal, subset: b}}, weight: {weight_b}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {a}}}, labels: {{v: a}}}}
  - {{address: 127.0.0.1, ports: {{http: {b}}}, labels: {{v: b}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web.internal
  subsets:
  - {{name: a, labels: {{v: a}}}}
  - {{name: b, labels: {{v: b}}}}
"
    )
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running mesh-proxy child process; killed when dropped.
struct Proxy {
    child: Child,
    port: u16,
    admin: u16,
    config: PathBuf,
    upstreams: (u16, u16),
}

impl Proxy {
    async fn start(
        args: &Args,
        phase: &str,
        upstreams: (u16, u16),
        flags: &[&str],
    ) -> Result<Self, Error> {
        let dir = args.out.join(phase);
        let config_dir = dir.join("config");
        std::fs::create_dir_all(&config_dir)?;
        let (port, admin) = (free_port()?, free_port()?);
        let config = config_dir.join("mesh.yaml");
        std::fs::write(&config, config_yaml(port, upstreams, 90))?;
        let log = std::fs::File::create(dir.join("mesh-proxy.log"))?;
        let child = Command::new(&args.mesh_proxy)
            .arg("--config")
            .arg(&config_dir)
            .args(["--bind", "127.0.0.1", "--no-access-log", "--admin"])
            .arg(format!("127.0.0.1:{admin}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", args.mesh_proxy.display()))?;
        let proxy = Self {
            child,
            port,
            admin,
            config,
            upstreams,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(admin, "admin", "/ready").await.map(|r| r.0) != Ok(200) {
            if Instant::now() > deadline {
                return Err(format!("mesh-proxy ({phase}) not ready after 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(proxy)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Rewrites the config (`valid`: the split at `weight_a`; else a broken document) and
    /// sends SIGHUP.
    fn reload(&self, weight_a: u32, valid: bool) -> Result<(), Error> {
        let text = if valid {
            config_yaml(self.port, self.upstreams, weight_a)
        } else {
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: [broken\n".into()
        };
        std::fs::write(&self.config, text)?;
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()?;
        if !status.success() {
            return Err("kill -HUP failed".into());
        }
        Ok(())
    }

    /// The sum of the admin's Prometheus samples whose line starts with `prefix`.
    async fn metric(&self, prefix: &str) -> f64 {
        let Ok((_, text)) = get(self.admin, "admin", "/stats/prometheus").await else {
            return f64::NAN;
        };
        (text.lines())
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process's resident set in MiB (`VmRSS`), NaN when unreadable.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Open file descriptors of the process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Samples the process's RSS every 100 ms until dropped; the peak in MiB.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
}

impl PeakRss {
    fn watch(pid: u32) -> Self {
        let (stop, peak_kib) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, p) = (stop.clone(), peak_kib.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let rss = rss_mib(pid);
                if rss.is_finite() {
                    p.fetch_max((rss * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { stop, peak_kib }
    }

    fn peak_mib(&self) -> f64 {
        self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An HTTP/1.1 connection to `port` (the driver runs in the returned task, which ends when
/// the connection closes).
async fn connect(
    port: u16,
) -> Result<(SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<()>), Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    Ok((
        send,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    ))
}

/// One GET on an open connection; the status, body read whole. Bounded by 10 s.
async fn send(send: &mut SendRequest<Empty<Bytes>>, host: &str, path: &str) -> Result<u16, Error> {
    let exchange = async {
        send.ready().await?;
        let req = Request::get(path).header("host", host).body(Empty::new())?;
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok::<_, Error>(status)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await?
}

/// One GET on a fresh connection: status and body.
async fn get(port: u16, host: &str, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let (mut sender, _conn) = connect(port).await?;
        sender.ready().await?;
        let req = Request::get(path).header("host", host).body(Empty::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The `q` quantile of `samples` (sorted in place), in ms.
fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i].as_secs_f64() * 1e3
}

/// GETs on fresh connections every 20 ms for `duration`: (answered 200, sent, latencies).
async fn probe(port: u16, duration: Duration) -> (usize, usize, Vec<Duration>) {
    let end = Instant::now() + duration;
    let (mut ok, mut sent, mut latencies) = (0, 0, Vec::new());
    while Instant::now() < end {
        let started = Instant::now();
        sent += 1;
        if get(port, HOST, "/probe").await.map(|r| r.0) == Ok(200) {
            ok += 1;
            latencies.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ok, sent, latencies)
}

async fn slowloris(args: &Args, up: (u16, u16), report: &mut Report) -> Result<(), Error> {
    const PHASE: &str = "slowloris";
    let timeout = Duration::from_secs(2);
    let proxy = Proxy::start(args, PHASE, up, &["--header-read-timeout", "2s"]).await?;
    let peak = PeakRss::watch(proxy.pid());
    let idle_rss = rss_mib(proxy.pid());
    let mut conns = JoinSet::new();
    let port = proxy.port;
    for _ in 0..args.slowloris {
        conns.spawn(async move {
            let opened = Instant::now();
            let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let head = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ");
            tcp.write_all(head.as_bytes()).await.ok()?;
            let mut buf = [0u8; 512];
            while opened.elapsed() < Duration::from_secs(30) {
                tokio::select! {
                    read = tcp.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) {
                        return Some(opened.elapsed());
                    },
                    () = tokio::time::sleep(Duration::from_millis(500)) => {
                        if tcp.write_all(b"a").await.is_err() {
                            return Some(opened.elapsed());
                        }
                    }
                }
            }
            None
        });
    }
    let (ok, sent, mut latencies) = probe(port, timeout + Duration::from_secs(1)).await;
    let (mut closed, mut latest, mut failed) = (0, Duration::ZERO, 0);
    while let Some(r) = conns.join_next().await {
        match r.ok().flatten() {
            Some(after) => {
                closed += 1;
                latest = latest.max(after);
            }
            None => failed += 1,
        }
    }
    let n = args.slowloris;
    report.row(
        PHASE,
        "connections sending a head 1 byte per 500 ms",
        n.to_string(),
    );
    report.row(
        PHASE,
        "closed by the proxy (--header-read-timeout 2s)",
        format!(
            "{closed}/{n}, the last {:.1} s after opening",
            latest.as_secs_f64()
        ),
    );
    report.row(
        PHASE,
        "probe requests answered meanwhile (fresh connections)",
        format!(
            "{ok}/{sent}, p50 {:.1} ms, max {:.1} ms",
            quantile_ms(&mut latencies, 0.5),
            quantile_ms(&mut latencies, 1.0)
        ),
    );
    report.row(
        PHASE,
        "proxy RSS idle / peak",
        format!("{idle_rss:.1} / {:.1} MiB", peak.peak_mib()),
    );
    report.check(
        PHASE,
        closed == n,
        format!("{failed} of {n} stayed open 30 s"),
    );
    report.check(
        PHASE,
        latest < timeout * 3,
        format!("the last closed after {latest:?}"),
    );
    report.check(
        PHASE,
        ok == sent,
        format!("{} probe requests failed", sent - ok),
    );
    Ok(())
}

async fn idle(args: &Args, up: (u16, u16), report: &mut Report) -> Result<(), Error> {
    const PHASE: &str = "idle";
    let timeout = Duration::from_secs(3);
    let proxy = Proxy::start(args, PHASE, up, &["--idle-timeout", "3s"]).await?;
    let port = proxy.port;
    let mut conns = JoinSet::new();
    for _ in 0..args.idle {
        conns.spawn(async move {
            let (mut sender, conn) = connect(port).await.ok()?;
            if send(&mut sender, HOST, "/").await.ok()? != 200 {
                return None;
            }
            let answered = Instant::now();
            // Keep the connection (the sender) and wait for the proxy to close it.
            tokio::time::timeout(Duration::from_secs(30), conn)
                .await
                .ok()?
                .ok()?;
            drop(sender);
            Some(answered.elapsed())
        });
    }
    let (mut closed, mut first, mut last) = (0, Duration::MAX, Duration::ZERO);
    while let Some(r) = conns.join_next().await {
        if let Some(after) = r.ok().flatten() {
            closed += 1;
            first = first.min(after);
            last = last.max(after);
        }
    }
    let n = args.idle;
    report.row(
        PHASE,
        "keep-alive connections idle after one request",
        n.to_string(),
    );
    report.row(
        PHASE,
        "closed by the proxy (--idle-timeout 3s)",
        format!(
            "{closed}/{n}, {:.1}-{:.1} s after their answer",
            first.as_secs_f64().min(99.0),
            last.as_secs_f64()
        ),
    );
    report.check(
        PHASE,
        closed == n,
        format!("{} of {n} not closed", n - closed),
    );
    report.check(
        PHASE,
        closed == 0 || first >= timeout.mul_f64(0.9),
        format!("one closed after {first:?}, before the idle timeout"),
    );
    Ok(())
}

/// How a connection over the cap fared.
enum Arrival {
    Refused,
    Served,
    Hung,
}

async fn arrive(port: u16) -> Arrival {
    let attempt = async {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
            return Arrival::Refused;
        };
        let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        if tcp.write_all(req.as_bytes()).await.is_err() {
            return Arrival::Refused;
        }
        let mut buf = [0u8; 64];
        match tcp.read(&mut buf).await {
            Ok(n) if n > 0 => Arrival::Served,
            _ => Arrival::Refused,
        }
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .unwrap_or(Arrival::Hung)
}

async fn flood(args: &Args, up: (u16, u16), report: &mut Report) -> Result<(), Error> {
    const PHASE: &str = "flood";
    let cap = args.cap.to_string();
    let proxy = Proxy::start(args, PHASE, up, &["--max-connections", &cap]).await?;
    let port = proxy.port;
    let mut held = Vec::with_capacity(args.cap);
    for _ in 0..args.cap {
        let (mut sender, conn) = connect(port).await?;
        if send(&mut sender, HOST, "/").await? != 200 {
            return Err("a held connection was not served".into());
        }
        held.push((sender, conn));
    }
    let fds_held = fds(proxy.pid());
    let started = Instant::now();
    let mut arrivals = JoinSet::new();
    for _ in 0..args.flood {
        arrivals.spawn(arrive(port));
    }
    let (mut refused, mut served, mut hung) = (0, 0, 0);
    while let Some(a) = arrivals.join_next().await {
        match a? {
            Arrival::Refused => refused += 1,
            Arrival::Served => served += 1,
            Arrival::Hung => hung += 1,
        }
    }
    let flood_took = started.elapsed();
    let (mut still, mut latencies) = (0, Vec::new());
    for (sender, _) in &mut held {
        let t = Instant::now();
        if send(sender, HOST, "/").await.ok() == Some(200) {
            still += 1;
            latencies.push(t.elapsed());
        }
    }
    let counted = proxy
        .metric("mesh_listener_connections_refused_total")
        .await;
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut recovered = false;
    while !recovered && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        recovered = get(port, HOST, "/").await.map(|r| r.0) == Ok(200);
    }
    let (n, f) = (args.cap, args.flood);
    report.row(PHASE, "connections held (--max-connections)", n.to_string());
    report.row(
        PHASE,
        "arrivals over the cap: refused / served / hung",
        format!(
            "{refused} / {served} / {hung} of {f}, in {:.2} s",
            flood_took.as_secs_f64()
        ),
    );
    report.row(
        PHASE,
        "mesh_listener_connections_refused_total",
        format!("{counted}"),
    );
    report.row(
        PHASE,
        "held connections served after the flood",
        format!(
            "{still}/{n}, p50 {:.2} ms, max {:.2} ms",
            quantile_ms(&mut latencies, 0.5),
            quantile_ms(&mut latencies, 1.0)
        ),
    );
    report.row(PHASE, "proxy fds while held", fds_held.to_string());
    report.row(
        PHASE,
        "accepting again once they closed",
        if recovered { "yes" } else { "no" },
    );
    report.check(PHASE, refused == f, format!("{served} served, {hung} hung"));
    report.check(PHASE, counted >= f as f64, format!("{counted} counted"));
    report.check(
        PHASE,
        still == n,
        format!("{} held connections failed", n - still),
    );
    report.check(PHASE, recovered, "the listener did not accept again");
    Ok(())
}

/// Keep-alive clients sending GETs until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    workers: JoinSet<Tally>,
}

/// What one client saw: 200s, other statuses, transport errors.
#[derive(Default, Clone, Copy)]
struct Tally {
    ok: u64,
    bad_status: u64,
    errors: u64,
}

impl Load {
    fn start(port: u16, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for _ in 0..workers {
            let stop = stop.clone();
            set.spawn(async move {
                let mut tally = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut sender, _conn)) = connect(port).await else {
                        tally.errors += 1;
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        match send(&mut sender, HOST, "/").await {
                            Ok(200) => tally.ok += 1,
                            Ok(_) => tally.bad_status += 1,
                            Err(_) => {
                                tally.errors += 1;
                                break;
                            }
                        }
                    }
                }
                tally
            });
        }
        Self { stop, workers: set }
    }

    async fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        while let Some(t) = self.workers.join_next().await {
            let t = t.unwrap_or_default();
            total.ok += t.ok;
            total.bad_status += t.bad_status;
            total.errors += t.errors;
        }
        total
    }
}

async fn reload_under_load(args: &Args, up: (u16, u16), report: &mut Report) -> Result<(), Error> {
    const PHASE: &str = "reload under load";
    let proxy = Proxy::start(args, PHASE, up, &[]).await?;
    let load = Load::start(proxy.port, args.workers);
    let started = Instant::now();
    let mut invalid = 0;
    for i in 0..args.reloads {
        let valid = i % 10 != 9;
        invalid += usize::from(!valid);
        proxy.reload(if i % 2 == 0 { 10 } else { 90 }, valid)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last reload wrote a valid config; give it time to apply.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let took = started.elapsed();
    let tally = load.finish().await;
    let applied = proxy
        .metric("mesh_config_reloads_total{result=\"success\"")
        .await;
    let refused = proxy
        .metric("mesh_config_reloads_total{result=\"failure\"")
        .await;
    let (r, w) = (args.reloads, args.workers);
    report.row(
        PHASE,
        "reloads (SIGHUP, 50 ms apart), every tenth invalid",
        format!("{r} ({invalid} invalid) in {:.1} s", took.as_secs_f64()),
    );
    report.row(
        PHASE,
        "reloads applied / refused (mesh_config_reloads_total)",
        format!("{applied} / {refused}"),
    );
    report.row(
        PHASE,
        format!("requests by {w} keep-alive clients meanwhile: 200 / other / errors"),
        format!("{} / {} / {}", tally.ok, tally.bad_status, tally.errors),
    );
    report.check(
        PHASE,
        tally.bad_status == 0 && tally.errors == 0,
        format!(
            "{} non-200 answers, {} errors",
            tally.bad_status, tally.errors
        ),
    );
    report.check(PHASE, tally.ok > 0, "no request was answered");
    report.check(
        PHASE,
        refused >= invalid as f64,
        format!("{refused} refused for {invalid} invalid configs"),
    );
    report.check(PHASE, applied >= 1.0, "no reload applied");
    Ok(())
}

async fn soak(args: &Args, up: (u16, u16), report: &mut Report) -> Result<(), Error> {
    const PHASE: &str = "soak";
    let proxy = Proxy::start(args, PHASE, up, &[]).await?;
    let pid = proxy.pid();
    let idle_rss = rss_mib(pid);
    let load = Load::start(proxy.port, args.workers);
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.soak) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(rss_mib(pid));
    }
    let took = started.elapsed();
    let tally = load.finish().await;
    // After the first tenth of the run (pools and buffers warmed up): growth from there.
    let warm = samples.get(samples.len() / 10).copied().unwrap_or(f64::NAN);
    let last = samples.last().copied().unwrap_or(f64::NAN);
    let max = samples.iter().copied().fold(f64::NAN, f64::max);
    report.row(
        PHASE,
        format!("{} keep-alive clients for {} s", args.workers, args.soak),
        format!(
            "{} answered 200 ({:.0} req/s), {} other, {} errors",
            tally.ok,
            tally.ok as f64 / took.as_secs_f64(),
            tally.bad_status,
            tally.errors
        ),
    );
    report.row(
        PHASE,
        "proxy RSS idle / warm / max / end (1 s samples)",
        format!("{idle_rss:.1} / {warm:.1} / {max:.1} / {last:.1} MiB"),
    );
    report.check(
        PHASE,
        tally.bad_status == 0 && tally.errors == 0 && tally.ok > 0,
        format!(
            "{} answered, {} non-200, {} errors",
            tally.ok, tally.bad_status, tally.errors
        ),
    );
    Ok(())
}
