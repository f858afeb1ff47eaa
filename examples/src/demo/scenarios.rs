//! What the demo shows: each scenario drives traffic through the proxy and returns the
//! report lines with whether the observed behaviour is the one the configuration asks for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, stream};
use http::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::DemoError;
use super::client::MeshClient;
use super::servers::Upstream;

const REVIEWS: &str = "reviews.default.svc.cluster.local";
const RATINGS: &str = "ratings.default.svc.cluster.local";
const DETAILS: &str = "details.default.svc.cluster.local";
/// How far the observed v2 share may be from the configured 10% (in percentage points).
const SPLIT_TOLERANCE: f64 = 4.0;

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// What it shows (`canary split`, ...).
    pub label: &'static str,
    /// What was observed.
    pub text: String,
    /// Whether that is what the configuration asks for.
    pub ok: bool,
}

impl Check {
    pub(super) fn new(label: &'static str, ok: bool, text: String) -> Self {
        Self { label, text, ok }
    }
}

/// `requests` requests to `reviews` without `end-user`: the 90/10 split as observed, and
/// the mirror sink receiving copies while the client sees only v1 and v2.
pub(super) async fn canary_and_mirror(
    client: &MeshClient,
    sink: &Upstream,
    requests: usize,
) -> Result<[Check; 2], DemoError> {
    let before = sink.hits();
    let bodies: Vec<Result<(StatusCode, String), DemoError>> = stream::iter(0..requests)
        .map(|i| {
            let client = client.clone();
            async move { client.get(REVIEWS, &format!("/reviews/{i}"), &[]).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let (mut v1, mut v2, mut shadow, mut other) = (0usize, 0usize, 0usize, 0usize);
    for answer in bodies {
        match answer? {
            (StatusCode::OK, b) if b.starts_with("reviews-v1 ") => v1 += 1,
            (StatusCode::OK, b) if b.starts_with("reviews-v2 ") => v2 += 1,
            (_, b) if b.starts_with("reviews-shadow") => shadow += 1,
            _ => other += 1,
        }
    }
    let share = |n: usize| 100.0 * n as f64 / requests.max(1) as f64;
    let split_ok = other == 0 && shadow == 0 && (share(v2) - 10.0).abs() <= SPLIT_TOLERANCE;
    let split = Check::new(
        "canary split",
        split_ok,
        format!(
            "{requests} requests: reviews-v1 {v1} ({:.1}%), reviews-v2 {v2} ({:.1}%){}; configured 90/10",
            share(v1),
            share(v2),
            if other > 0 {
                format!(", {other} failed")
            } else {
                String::new()
            },
        ),
    );
    let copies = settled(sink).await - before;
    let mirror = Check::new(
        "mirror",
        copies > 0 && shadow == 0,
        format!(
            "reviews-shadow received {copies} copies of those {requests}; the client saw {shadow} answers from it"
        ),
    );
    Ok([split, mirror])
}

/// Waits until the sink's count stops moving (mirrors are fire-and-forget), at most 5 s.
async fn settled(sink: &Upstream) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = sink.hits();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sink.hits();
        if (now == last && now > 0) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// `end-user: jason` always reaches v2.
pub(super) async fn header_routing(client: &MeshClient) -> Result<Check, DemoError> {
    const N: usize = 20;
    let mut v2 = 0;
    for i in 0..N {
        let (status, body) = client
            .get(REVIEWS, &format!("/reviews/{i}"), &[("end-user", "jason")])
            .await?;
        if status == StatusCode::OK && body.starts_with("reviews-v2 ") {
            v2 += 1;
        }
    }
    Ok(Check::new(
        "header routing",
        v2 == N,
        format!("end-user: jason -> reviews-v2 ({v2} of {N} requests)"),
    ))
}

/// `ratings` takes mTLS only: the proxy originates ISTIO_MUTUAL with its SVID, checks the
/// server's ID, and ratings answers with the caller's SPIFFE ID it verified.
pub(super) async fn mtls_hop(client: &MeshClient, proxy_id: &str) -> Result<Check, DemoError> {
    let (status, body) = client.get(RATINGS, "/ratings/1", &[]).await?;
    // "ratings: 5 stars, served as {its ID} to {the peer ID it verified}"
    let (own, peer) = body
        .split_once(", served as ")
        .and_then(|(_, ids)| ids.split_once(" to "))
        .unwrap_or_default();
    let ok = status == StatusCode::OK && peer == proxy_id;
    Ok(Check::new(
        "mTLS hop",
        ok,
        if ok {
            format!(
                "outbound -> ratings over ISTIO_MUTUAL: the server is {own}, it saw peer {peer}"
            )
        } else {
            format!(
                "outbound -> ratings over ISTIO_MUTUAL failed: {} {body}",
                status.as_u16()
            )
        },
    ))
}

/// `details` sits behind the proxy's STRICT inbound listener, reached over auto-mTLS; the
/// DENY policy refuses `/admin` whoever asks, and plaintext never gets in.
pub(super) async fn authorization(
    client: &MeshClient,
    inbound: SocketAddr,
) -> Result<[Check; 2], DemoError> {
    let (allowed, _) = client.get(DETAILS, "/details/1", &[]).await?;
    let (denied, body) = client.get(DETAILS, "/admin", &[]).await?;
    let authz = Check::new(
        "authorization",
        allowed == StatusCode::OK
            && denied == StatusCode::FORBIDDEN
            && body == "RBAC: access denied",
        format!(
            "GET details /admin -> {} {body} (DENY policy deny-admin); GET details /details/1 -> {}",
            denied.as_u16(),
            allowed.as_u16()
        ),
    );
    let answer = plaintext_answer(inbound).await;
    let strict = Check::new(
        "STRICT mTLS",
        answer.is_empty(),
        if answer.is_empty() {
            format!(
                "plaintext HTTP to the inbound listener {inbound} -> connection closed, no answer"
            )
        } else {
            format!("plaintext HTTP to the inbound listener {inbound} was answered: {answer:?}")
        },
    );
    Ok([authz, strict])
}

/// What a plaintext HTTP request to `addr` gets back (empty when the connection is refused
/// or closed without an answer).
async fn plaintext_answer(addr: SocketAddr) -> String {
    let run = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"GET /details/1 HTTP/1.1\r\nHost: details\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        Some(
            String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        )
    };
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// REGISTRY_ONLY: the registered external API is reachable, an unregistered host gets 502.
pub(super) async fn registry_only(client: &MeshClient) -> Result<Check, DemoError> {
    let (external, _) = client.get("api.weather.example", "/forecast", &[]).await?;
    let (unknown, _) = client.get("unknown.example", "/", &[]).await?;
    Ok(Check::new(
        "registry only",
        external == StatusCode::OK && unknown == StatusCode::BAD_GATEWAY,
        format!(
            "GET unknown.example -> {} (not in the registry); GET api.weather.example (a ServiceEntry) -> {}",
            unknown.as_u16(),
            external.as_u16()
        ),
    ))
}
