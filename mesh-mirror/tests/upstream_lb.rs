//! The upstream over real loopback servers: distribution per balancing policy, subsets by
//! labels, consistent-hash stickiness, live endpoint updates, 503 for empty subsets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use mesh_mirror::{
    DestinationRule, DestinationRules, RngSource, SharedDestinationRules, StaticRegistry, Upstream,
};

use support::backend::{Backend, HOST, PORT, send, to_reviews};

fn upstream(dr: &str, registry: &StaticRegistry) -> Upstream<Full<Bytes>> {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n{dr}"
    );
    let rules = DestinationRules::new([DestinationRule::from_yaml(&yaml).unwrap()]);
    Upstream::new(
        SharedDestinationRules::new(rules),
        Arc::new(registry.clone()),
    )
    .with_rng(&RngSource::seeded(7))
}

async fn backends(names: &[&'static str]) -> Vec<Backend> {
    let mut out = Vec::new();
    for n in names {
        out.push(Backend::start(n).await);
    }
    out
}

async fn tally(
    up: &Upstream<Full<Bytes>>,
    n: usize,
    subset: Option<&str>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let (status, body, _) = send(up, to_reviews(subset, &[])).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        *counts.entry(body).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_is_exact_and_reuses_connections() {
    let bs = backends(&["a", "b", "c"]).await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, bs.iter().map(Backend::endpoint).collect());
    let up = upstream(
        "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n",
        &registry,
    );
    let counts = tally(&up, 30, None).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{counts:?}"
    );
    for b in &bs {
        assert_eq!(
            b.conns.load(Ordering::SeqCst),
            1,
            "keep-alive: one connection to {}",
            b.name
        );
    }
}

#[tokio::test]
async fn endpoint_weights_are_honoured() {
    let bs = backends(&["light", "heavy"]).await;
    let registry = StaticRegistry::new();
    registry.set(
        HOST,
        PORT,
        vec![bs[0].endpoint().weight(1), bs[1].endpoint().weight(3)],
    );
    let rr = upstream(
        "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n",
        &registry,
    );
    let counts = tally(&rr, 40, None).await;
    assert_eq!((counts["light"], counts["heavy"]), (10, 30));
    // Random: 400 draws at p = 0.75; +-60 is more than 6 standard deviations (8.7).
    let random = upstream(
        "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n",
        &registry,
    );
    let heavy = tally(&random, 400, None).await["heavy"];
    assert!((240..=360).contains(&heavy), "heavy got {heavy} of 400");
}

#[tokio::test]
async fn least_request_is_the_default_and_spreads_sequential_traffic() {
    let bs = backends(&["a", "b", "c", "d"]).await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, bs.iter().map(Backend::endpoint).collect());
    let up = upstream("", &registry);
    let counts = tally(&up, 400, None).await;
    // Idle hosts: uniform. Binomial(400, 1/4): sd 8.7; +-50 is almost 6 sd.
    assert_eq!(counts.len(), 4);
    assert!(
        counts.values().all(|c| (50..=150).contains(c)),
        "{counts:?}"
    );
}

#[tokio::test]
async fn least_request_avoids_an_endpoint_with_requests_in_flight() {
    let slow = Backend::gated("slow").await;
    let fast = Backend::start("fast").await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, vec![slow.endpoint(), fast.endpoint()]);
    let up = upstream(
        "  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\n",
        &registry,
    );
    let mut held = Vec::new();
    for i in 0..40 {
        let up = up.clone();
        held.push(tokio::spawn(async move {
            send(&up, to_reviews(None, &[])).await
        }));
        support::eventually("request arrived", || slow.hits() + fast.hits() == i + 1).await;
    }
    // Once the slow endpoint holds a request, it is chosen only when both draws land on it
    // (1 in 4), where random would send it half of the traffic.
    assert!(slow.hits() <= 15, "slow endpoint got {} of 40", slow.hits());
    slow.release(100);
    for h in held {
        assert_eq!(h.await.unwrap().0, StatusCode::OK);
    }
}

#[tokio::test]
async fn subsets_select_endpoints_by_labels() {
    let bs = backends(&["v1-a", "v1-b", "v2-a"]).await;
    let registry = StaticRegistry::new();
    registry.set(
        HOST,
        PORT,
        vec![
            bs[0].endpoint().label("version", "v1"),
            bs[1].endpoint().label("version", "v1"),
            bs[2]
                .endpoint()
                .label("version", "v2")
                .label("track", "canary"),
        ],
    );
    let up = upstream(
        "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v3}}\n",
        &registry,
    );
    let v1 = tally(&up, 10, Some("v1")).await;
    assert_eq!(
        v1.into_iter().collect::<Vec<_>>(),
        [("v1-a".into(), 5), ("v1-b".into(), 5)]
    );
    let v2 = tally(&up, 4, Some("v2")).await;
    assert_eq!(v2.into_iter().collect::<Vec<_>>(), [("v2-a".into(), 4)]);
    let all = tally(&up, 9, None).await;
    assert_eq!(all.len(), 3, "no subset: every endpoint");
}

#[tokio::test]
async fn empty_or_unknown_subset_and_unknown_host_answer_503_no_healthy_upstream() {
    let b = Backend::start("v1").await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, vec![b.endpoint().label("version", "v1")]);
    let up = upstream(
        "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v3, labels: {version: v3}}\n",
        &registry,
    );
    for subset in [Some("v3"), Some("nope")] {
        let (status, body, _) = send(&up, to_reviews(subset, &[])).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream"),
            "{subset:?}"
        );
    }
    registry.remove(HOST);
    let (status, body, _) = send(&up, to_reviews(Some("v1"), &[])).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
    );
    assert_eq!(b.hits(), 0);
}

async fn users_to_backends(
    up: &Upstream<Full<Bytes>>,
    users: usize,
    repeat: usize,
) -> HashMap<String, String> {
    let mut owner = HashMap::new();
    for u in 0..users {
        let user = format!("user-{u}");
        for _ in 0..repeat {
            let (status, body, _) = send(up, to_reviews(None, &[("x-user", &user)])).await;
            assert_eq!(status, StatusCode::OK);
            let prev = owner.insert(user.clone(), body.clone());
            assert!(
                prev.as_ref().is_none_or(|p| *p == body),
                "{user} moved from {prev:?} to {body} with a stable set"
            );
        }
    }
    owner
}

/// Eight endpoints, then a ninth: with eight or more equal hosts the default ring gives each
/// a fixed number of points (see `RingHash::new`), so only keys taken by the new one move.
async fn consistent_hash_is_sticky_and_moves_little(table: &str, only_to_new: bool) {
    let bs = backends(&["a", "b", "c", "d", "e", "f", "g", "h", "new"]).await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, bs[..8].iter().map(Backend::endpoint).collect());
    let up = upstream(
        &format!(
            "  trafficPolicy:\n    loadBalancer:\n      consistentHash: {{httpHeaderName: x-user, {table}}}\n"
        ),
        &registry,
    );
    let before = users_to_backends(&up, 300, 3).await;
    let used: std::collections::HashSet<_> = before.values().collect();
    assert_eq!(used.len(), 8, "keys spread over every endpoint");
    // A ninth endpoint appears in the registry: picked up without a restart; users either
    // stay or move to the new endpoint, about 1/9 of them.
    registry.set(HOST, PORT, bs.iter().map(Backend::endpoint).collect());
    let after = users_to_backends(&up, 300, 1).await;
    let moved: Vec<_> = before.keys().filter(|u| before[*u] != after[*u]).collect();
    let to_new = moved.iter().filter(|u| after[**u] == "new").count();
    if only_to_new {
        assert_eq!(to_new, moved.len(), "only moves to the new endpoint");
    } else {
        // Maglev's table fill reshuffles a few slots between the old endpoints too.
        assert!(
            to_new * 10 >= moved.len() * 7,
            "{to_new} of {} moves to the new endpoint",
            moved.len()
        );
    }
    // 300/9 = 33 expected; a generous bound that still fails for a modulo hash (~89% moved).
    assert!(
        (10..=66).contains(&moved.len()),
        "{} of 300 users moved",
        moved.len()
    );
}

#[tokio::test]
async fn ring_hash_keeps_users_on_their_endpoint() {
    consistent_hash_is_sticky_and_moves_little("ringHash: {minimumRingSize: 1024}", true).await;
}

#[tokio::test]
async fn maglev_keeps_users_on_their_endpoint() {
    consistent_hash_is_sticky_and_moves_little("maglev: {tableSize: 65537}", false).await;
}

#[tokio::test]
async fn virtual_service_split_reaches_subset_endpoints_through_weighted() {
    use mesh_mirror::{Mode, Weighted};
    use mesh_routing::{RouteLayer, RouteTable, SharedRouteTable, TableOptions, VirtualService};
    use tower::{Layer as _, ServiceExt as _};

    let bs = backends(&["v1", "v2"]).await;
    let registry = StaticRegistry::new();
    registry.set(
        HOST,
        PORT,
        vec![
            bs[0].endpoint().label("version", "v1"),
            bs[1].endpoint().label("version", "v2"),
        ],
    );
    let up = upstream(
        "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n",
        &registry,
    );
    let vs = VirtualService::from_yaml(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews, subset: v1, port: {number: 9080}}, weight: 75}\n    - {destination: {host: reviews, subset: v2, port: {number: 9080}}, weight: 25}\n",
    )
    .unwrap();
    let table = RouteTable::build(&[vs], &TableOptions::default());
    let probe = http::Request::get("http://reviews/").body(()).unwrap();
    let route = table.route(&probe).route().cloned().unwrap();
    let split =
        Weighted::from_destinations(route.destinations().unwrap(), Mode::RoundRobin, |_| {
            up.clone()
        })
        .unwrap();
    let svc = RouteLayer::new(SharedRouteTable::new(table)).layer(split);
    let mut counts = BTreeMap::<String, usize>::new();
    for _ in 0..100 {
        let req = http::Request::get("http://reviews/r")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        *counts
            .entry(String::from_utf8(body.to_vec()).unwrap())
            .or_default() += 1;
    }
    assert_eq!((counts["v1"], counts["v2"]), (75, 25));
}

#[tokio::test]
async fn generated_cookie_makes_a_client_stick() {
    let bs = backends(&["a", "b", "c", "d"]).await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, bs.iter().map(Backend::endpoint).collect());
    let up = upstream(
        "  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpCookie: {name: sticky, path: /, ttl: 3600s}}\n",
        &registry,
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        use tower::ServiceExt as _;
        let resp = up.clone().oneshot(to_reviews(None, &[])).await.unwrap();
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.starts_with("sticky=\"") && cookie.contains("Max-Age=3600"),
            "{cookie}"
        );
        let value = cookie.split(';').next().unwrap().to_string();
        let first = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        for _ in 0..5 {
            let (_, body, _) = send(&up, to_reviews(None, &[("cookie", &value)])).await;
            assert_eq!(
                body.as_bytes(),
                first,
                "the cookie keeps the client on its endpoint"
            );
        }
        seen.insert(first);
    }
    assert!(seen.len() > 1, "different clients get different endpoints");
}

#[tokio::test]
async fn dns_endpoints_are_resolved_by_the_connector() {
    let b = Backend::start("by-name").await;
    let registry = StaticRegistry::new();
    let address = mesh_mirror::EndpointAddress::Dns {
        host: "localhost".into(),
        port: b.addr.port(),
    };
    registry.set(
        HOST,
        PORT,
        vec![mesh_mirror::Endpoint::with_address(address)],
    );
    let up = upstream("", &registry);
    let (status, body, _) = send(&up, to_reviews(None, &[])).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "by-name"));
}

#[tokio::test]
async fn reloaded_destination_rules_apply_on_the_next_request() {
    let bs = backends(&["blue", "green"]).await;
    let registry = StaticRegistry::new();
    registry.set(
        HOST,
        PORT,
        vec![
            bs[0].endpoint().label("color", "blue"),
            bs[1].endpoint().label("color", "green"),
        ],
    );
    let rule = |color: &str| {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  subsets: [{{name: live, labels: {{color: {color}}}}}]\n"
        );
        DestinationRules::new([DestinationRule::from_yaml(&yaml).unwrap()])
    };
    let rules = SharedDestinationRules::new(rule("blue"));
    let up: Upstream<Full<Bytes>> = Upstream::new(rules.clone(), Arc::new(registry.clone()));
    assert_eq!(send(&up, to_reviews(Some("live"), &[])).await.1, "blue");
    rules.store(rule("green"));
    for _ in 0..3 {
        assert_eq!(send(&up, to_reviews(Some("live"), &[])).await.1, "green");
    }
}
