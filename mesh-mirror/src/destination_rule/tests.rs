//! DestinationRule validation and policy layering.

use std::time::Duration;

use super::*;

fn errors(yaml: &str) -> Vec<String> {
    match DestinationRule::from_yaml(yaml) {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid { errors, .. }) => errors.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

fn rule(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: prod}}\nspec:\n{spec}"
    )
}

#[test]
fn every_problem_is_reported_with_its_field_path() {
    let errs = errors(&rule(
        r#"
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN, consistentHash: {httpHeaderName: x}}
    connectionPool: {tcp: {maxConnections: -1, connectTimeout: 10x}}
    outlierDetection: {maxEjectionPercent: 101}
    portLevelSettings:
    - port: {number: 70000}
    - loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v1
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpCookie: {ttl: 0s}, maglev: {tableSize: 1000}}
      tls: {mode: MUTUAL}
"#,
    ));
    let p = "DestinationRule prod/reviews: ";
    let expected = [
        "trafficPolicy.loadBalancer: simple and consistentHash are mutually exclusive",
        "trafficPolicy.connectionPool.tcp.maxConnections: -1 is out of range [0, 2147483647]",
        "trafficPolicy.connectionPool.tcp.connectTimeout: invalid duration \"10x\"",
        "trafficPolicy.outlierDetection.maxEjectionPercent: 101 is out of range [0, 100]",
        "trafficPolicy.portLevelSettings[0].port.number: 70000 is out of range [1, 65535]",
        "trafficPolicy.portLevelSettings[1].port.number: is required",
        "subsets[1].name: duplicate subset name \"v1\"",
        "subsets[1].trafficPolicy.loadBalancer.consistentHash.httpCookie.name: is required",
        "subsets[1].trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: 1000 is not a prime",
        "subsets[1].trafficPolicy.tls.clientCertificate: is required",
        "subsets[1].trafficPolicy.tls.privateKey: is required",
    ];
    for e in expected {
        assert!(
            errs.iter().any(|got| got.starts_with(&format!("{p}{e}"))),
            "missing {e:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
}

#[test]
fn typos_and_unsupported_fields_are_rejected_by_name() {
    let errs = errors(&rule(
        "  host: reviews\n  trafficPolicy: {loadBalancer: {simpel: RANDOM}}\n",
    ));
    assert!(
        errs[0].contains("trafficPolicy.loadBalancer.simpel: unknown field `simpel`"),
        "{errs:?}"
    );
    let errs = errors(&rule(
        "  host: reviews\n  trafficPolicy: {loadBalancer: {simple: RANDOM, warmupDurationSecs: 10s}}\n",
    ));
    assert_eq!(
        errs,
        [
            "DestinationRule prod/reviews: trafficPolicy.loadBalancer.warmup: slow-start warmup is not supported"
        ]
    );
    let errs = errors(&rule(
        "  host: reviews\n  workloadSelector: {matchLabels: {app: a}}\n",
    ));
    assert_eq!(
        errs,
        ["DestinationRule prod/reviews: workloadSelector: workloadSelector is not supported"]
    );
}

#[test]
fn host_is_required_and_qualified() {
    assert_eq!(
        errors(&rule("  subsets: []\n")),
        ["DestinationRule prod/reviews: host: is required"]
    );
    let dr = DestinationRule::from_yaml(&rule("  host: reviews\n")).unwrap();
    assert_eq!(dr.host(), "reviews.prod.svc.cluster.local");
}

#[test]
fn api_versions_v1_v1beta1_v1alpha3_are_accepted() {
    for v in ["v1", "v1beta1", "v1alpha3"] {
        let y = format!(
            "apiVersion: networking.istio.io/{v}\nkind: DestinationRule\nmetadata: {{name: r}}\nspec: {{host: r}}\n"
        );
        assert!(DestinationRule::from_yaml(&y).is_ok(), "{v}");
    }
    let y = "apiVersion: networking.istio.io/v2\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n";
    assert!(DestinationRule::from_yaml(y).is_err());
}

#[test]
fn subset_parts_override_the_top_level_and_port_level_replaces_all_parts() {
    let dr = DestinationRule::from_yaml(&rule(
        r#"
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 7}}
    outlierDetection: {consecutive5xxErrors: 2, baseEjectionTime: 1s}
    tls: {mode: ISTIO_MUTUAL, sni: reviews}
    portLevelSettings:
    - port: {number: 9443}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}
      portLevelSettings:
      - port: {number: 8080}
        connectionPool: {http: {http2MaxRequests: 3}}
"#,
    ))
    .unwrap();
    let top = dr.cluster_policy(None, Some(80)).unwrap();
    assert_eq!(top.load_balancer.policy, LbPolicy::RoundRobin);
    assert_eq!(top.connection_pool.max_connections, 7);
    assert_eq!(
        top.outlier_detection.unwrap().base_ejection_time,
        Duration::from_secs(1)
    );
    assert_eq!(top.tls.as_ref().unwrap().mode, TlsMode::IstioMutual);

    let port = dr.cluster_policy(None, Some(9443)).unwrap();
    assert_eq!(port.load_balancer.policy, LbPolicy::Random);
    assert_eq!(
        port.connection_pool,
        ConnectionPool::default(),
        "not inherited"
    );
    assert!(port.outlier_detection.is_none() && port.tls.is_none());

    let v1 = dr.cluster_policy(Some("v1"), Some(80)).unwrap();
    assert!(matches!(
        &v1.load_balancer.policy,
        LbPolicy::ConsistentHash(ConsistentHash {
            table: HashTable::Ring {
                minimum_ring_size: 2048
            },
            ..
        })
    ));
    assert_eq!(
        v1.connection_pool.max_connections, 7,
        "inherited from the top level"
    );

    let v1_8080 = dr.cluster_policy(Some("v1"), Some(8080)).unwrap();
    assert_eq!(v1_8080.connection_pool.http2_max_requests, 3);
    assert_eq!(v1_8080.connection_pool.max_connections, u32::MAX);
    assert_eq!(
        v1_8080.load_balancer,
        LoadBalancer::default(),
        "port level resets to defaults"
    );

    assert!(dr.cluster_policy(Some("v9"), None).is_none());
}

#[test]
fn defaults_match_istio() {
    let dr = DestinationRule::from_yaml(&rule(
        "  host: reviews\n  trafficPolicy: {outlierDetection: {}}\n",
    ))
    .unwrap();
    let p = dr.cluster_policy(None, None).unwrap();
    assert_eq!(p.load_balancer.policy, LbPolicy::LeastRequest);
    let o = p.outlier_detection.unwrap();
    assert_eq!(
        (
            o.consecutive_5xx,
            o.consecutive_gateway,
            o.max_ejection_percent
        ),
        (5, 0, 10)
    );
    assert_eq!(o.base_ejection_time, Duration::from_secs(30));
    assert_eq!(p.connection_pool.connect_timeout, Duration::from_secs(10));
}

#[test]
fn locality_settings_are_validated() {
    let errs = errors(&rule(
        r#"
  host: reviews
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to: {"us-west/zone1/*": 80, "us-west/zone2/*": 30}
        failover:
        - {from: us-west, to: us-west}
"#,
    ));
    let p = "DestinationRule prod/reviews: trafficPolicy.loadBalancer.localityLbSetting";
    assert_eq!(
        errs,
        [
            format!("{p}: distribute and failover are mutually exclusive"),
            format!("{p}.distribute[0].to: weights must sum to 100, got 110"),
            format!("{p}.failover[0]: from and to must differ"),
        ]
    );
}

#[test]
fn rules_are_found_by_exact_host_then_longest_wildcard() {
    let load =
        |host: &str| DestinationRule::from_yaml(&rule(&format!("  host: \"{host}\"\n"))).unwrap();
    let rules =
        DestinationRules::new([load("*.com"), load("*.example.com"), load("a.example.com")]);
    assert_eq!(
        rules.for_host("a.example.com").unwrap().host(),
        "a.example.com"
    );
    assert_eq!(
        rules.for_host("b.example.com").unwrap().host(),
        "*.example.com"
    );
    assert_eq!(rules.for_host("x.com").unwrap().host(), "*.com");
    assert!(rules.for_host("x.org").is_none());
}

#[test]
fn rules_for_one_host_merge_as_in_istio() {
    let load = |name: &str, body: &str| {
        let y = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: reviews\n{body}"
        );
        DestinationRule::from_yaml(&y).unwrap()
    };
    let rules = DestinationRules::new([
        load("a", "  subsets: [{name: v1, labels: {version: v1}}]\n"),
        load(
            "b",
            "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n  subsets: [{name: v1, labels: {version: other}}, {name: v2, labels: {version: v2}}]\n",
        ),
        load(
            "c",
            "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n",
        ),
    ]);
    let dr = rules.for_host("reviews.default.svc.cluster.local").unwrap();
    let names: Vec<_> = dr
        .subsets()
        .iter()
        .map(|s| (s.name.as_str(), s.labels["version"].as_str()))
        .collect();
    assert_eq!(
        names,
        [("v1", "v1"), ("v2", "v2")],
        "first definition of a subset wins"
    );
    let policy = dr.cluster_policy(None, None).unwrap();
    assert_eq!(
        policy.load_balancer.policy,
        LbPolicy::Random,
        "first rule with a traffic policy"
    );
    assert_eq!(rules.iter().count(), 1);
}
