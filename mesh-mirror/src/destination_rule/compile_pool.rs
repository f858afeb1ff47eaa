//! Model to runtime for `connectionPool`, `outlierDetection` and `tls`: limits, timeouts and
//! ejection settings with Istio's defaults and ranges.

use std::time::Duration;

use mesh_routing::{Collector, Problem};

use super::compile::{MS, duration, int32, out_of_range};
use super::model as m;
use super::policy::{
    ClientTls, ConnectionPool, H2Upgrade, OutlierDetection, TcpKeepalive, TlsMode,
};

pub(super) fn connection_pool(
    cp: &m::ConnectionPoolSettings,
    c: &mut Collector<'_>,
) -> ConnectionPool {
    c.at(format_args!("connectionPool"), |c| {
        let mut out = ConnectionPool::default();
        if let Some(tcp) = &cp.tcp {
            c.at(format_args!("tcp"), |c| {
                // As in Istio, 0 leaves a limit at its default (unlimited).
                if let Some(n) = int32(c, "maxConnections", tcp.max_connections).filter(|n| *n > 0)
                {
                    out.max_connections = n;
                }
                if let Some(d) = duration(c, "connectTimeout", tcp.connect_timeout.as_deref(), MS) {
                    out.connect_timeout = d;
                }
                if tcp.max_connection_duration.is_some() {
                    c.push_at(
                        "maxConnectionDuration",
                        Problem::Unsupported("tcp.maxConnectionDuration"),
                    );
                }
                if let Some(d) = duration(
                    c,
                    "idleTimeout",
                    tcp.idle_timeout.as_deref(),
                    Duration::ZERO,
                ) {
                    out.tcp_idle_timeout = d;
                }
                if let Some(k) = &tcp.tcp_keepalive {
                    c.at(format_args!("tcpKeepalive"), |c| {
                        out.tcp_keepalive = Some(TcpKeepalive {
                            time: duration(c, "time", k.time.as_deref(), Duration::from_secs(1)),
                            interval: duration(
                                c,
                                "interval",
                                k.interval.as_deref(),
                                Duration::from_secs(1),
                            ),
                            probes: int32(c, "probes", k.probes),
                        });
                    });
                }
            });
        }
        if let Some(http) = &cp.http {
            c.at(format_args!("http"), |c| {
                let set = |v: Option<u32>, slot: &mut u32| {
                    if let Some(v) = v.filter(|v| *v > 0) {
                        *slot = v;
                    }
                };
                set(
                    int32(
                        c,
                        "http1MaxPendingRequests",
                        http.http1_max_pending_requests,
                    ),
                    &mut out.http1_max_pending_requests,
                );
                set(
                    int32(c, "http2MaxRequests", http.http2_max_requests),
                    &mut out.http2_max_requests,
                );
                set(
                    int32(
                        c,
                        "maxRequestsPerConnection",
                        http.max_requests_per_connection,
                    ),
                    &mut out.max_requests_per_connection,
                );
                set(
                    int32(c, "maxRetries", http.max_retries),
                    &mut out.max_retries,
                );
                if let Some(d) = duration(c, "idleTimeout", http.idle_timeout.as_deref(), MS) {
                    out.idle_timeout = d;
                }
                out.h2_upgrade = match http.h2_upgrade_policy {
                    None | Some(m::H2UpgradePolicy::Default) => H2Upgrade::Default,
                    Some(m::H2UpgradePolicy::DoNotUpgrade) => H2Upgrade::DoNotUpgrade,
                    Some(m::H2UpgradePolicy::Upgrade) => H2Upgrade::Upgrade,
                };
                if let Some(v) = http.use_client_protocol {
                    out.use_client_protocol = v;
                }
                if http.max_concurrent_streams.is_some() {
                    c.push_at(
                        "maxConcurrentStreams",
                        Problem::Unsupported("maxConcurrentStreams"),
                    );
                }
            });
        }
        out
    })
}

pub(super) fn outlier(o: &m::OutlierDetection, c: &mut Collector<'_>) -> OutlierDetection {
    c.at(format_args!("outlierDetection"), |c| {
        let mut out = OutlierDetection::default();
        if o.consecutive_errors.is_some() {
            c.push_at(
                "consecutiveErrors",
                Problem::Unsupported("consecutiveErrors (deprecated; use consecutive5xxErrors)"),
            );
        }
        if o.consecutive_local_origin_failures.is_some()
            || o.split_external_local_origin_errors.is_some()
        {
            c.push(Problem::Unsupported(
                "splitExternalLocalOriginErrors and consecutiveLocalOriginFailures",
            ));
        }
        if let Some(n) = int32(c, "consecutive5xxErrors", o.consecutive_5xx_errors) {
            out.consecutive_5xx = n;
        }
        if let Some(n) = int32(c, "consecutiveGatewayErrors", o.consecutive_gateway_errors) {
            out.consecutive_gateway = n;
        }
        if let Some(d) = duration(c, "interval", o.interval.as_deref(), MS) {
            out.interval = d;
        }
        if let Some(d) = duration(c, "baseEjectionTime", o.base_ejection_time.as_deref(), MS) {
            out.base_ejection_time = d;
        }
        for (field, value, slot) in [
            (
                "maxEjectionPercent",
                o.max_ejection_percent,
                &mut out.max_ejection_percent,
            ),
            (
                "minHealthPercent",
                o.min_health_percent,
                &mut out.min_health_percent,
            ),
        ] {
            match value {
                Some(v) if (0..=100).contains(&v) => *slot = v as u32,
                Some(v) => c.push_at(field, out_of_range(v, 0, 100)),
                None => {}
            }
        }
        out
    })
}

pub(super) fn tls(t: &m::ClientTlsSettings, c: &mut Collector<'_>) -> Option<ClientTls> {
    c.at(format_args!("tls"), |c| {
        let mode = match t.mode {
            None | Some(m::TlsMode::Disable) => TlsMode::Disable,
            Some(m::TlsMode::Simple) => TlsMode::Simple,
            Some(m::TlsMode::Mutual) => TlsMode::Mutual,
            Some(m::TlsMode::IstioMutual) => TlsMode::IstioMutual,
        };
        let has_files = t.client_certificate.is_some()
            || t.private_key.is_some()
            || t.ca_certificates.is_some();
        if t.ca_crl.is_some() {
            c.push_at("caCrl", Problem::Unsupported("caCrl"));
        }
        match mode {
            TlsMode::Mutual if t.credential_name.is_none() => {
                if t.client_certificate.is_none() {
                    c.push_at("clientCertificate", Problem::Missing);
                }
                if t.private_key.is_none() {
                    c.push_at("privateKey", Problem::Missing);
                }
            }
            TlsMode::IstioMutual if has_files || t.credential_name.is_some() => {
                c.push(Problem::Invalid(
                    "ISTIO_MUTUAL uses the workload identity; certificate fields must not be set"
                        .into(),
                ))
            }
            _ => {}
        }
        if t.credential_name.is_some() && has_files {
            c.push(Problem::Conflict(
                "credentialName",
                "clientCertificate/privateKey/caCertificates",
            ));
        }
        Some(ClientTls {
            mode,
            client_certificate: t.client_certificate.clone(),
            private_key: t.private_key.clone(),
            ca_certificates: t.ca_certificates.clone(),
            credential_name: t.credential_name.clone(),
            subject_alt_names: t.subject_alt_names.clone(),
            sni: t.sni.clone(),
            insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        })
    })
}
