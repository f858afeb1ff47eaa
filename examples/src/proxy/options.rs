//! The `mesh-proxy` command line: the flags of DESIGN's "mesh-proxy contract", parsed by clap
//! and then checked for combinations clap cannot express (one clear line per mistake).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `mesh-proxy`: Istio's traffic management from Istio YAML files, without a control plane.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mesh-proxy",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Offline tools; without one, the proxy runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of the running proxy.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Checks configuration files offline (like `istioctl analyze`): prints every error and
    /// warning, exits 1 when there is an error.
    Validate {
        /// Files or directories of multi-document Istio YAML.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Namespace for resources without one.
        #[arg(long, default_value = "default", value_name = "NS")]
        namespace: String,
    },
}

/// The running proxy's flags (DESIGN: "The mesh-proxy contract"; keep them stable).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Files or directories of multi-document Istio YAML (repeatable).
    #[arg(long = "config", value_name = "PATH")]
    pub config: Vec<PathBuf>,
    /// Address every Gateway server port listens on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "IP")]
    pub bind: IpAddr,
    /// Admin listener: /ready, /stats/prometheus, /config_dump.
    #[arg(long, default_value = "127.0.0.1:15000", value_name = "ADDR")]
    pub admin: SocketAddr,
    /// Sidecar outbound listener (plain HTTP, routed by Host).
    #[arg(long, value_name = "ADDR")]
    pub outbound: Option<SocketAddr>,
    /// Sidecar inbound listener in front of a local app (needs --inbound-target).
    #[arg(long, value_name = "ADDR")]
    pub inbound: Option<SocketAddr>,
    /// The local app the inbound listener forwards to.
    #[arg(long, value_name = "ADDR")]
    pub inbound_target: Option<SocketAddr>,
    /// The protocol of the app's port, as an Istio Service port names it: HTTP (HTTP/1.1 to
    /// the app), HTTP2, GRPC, GRPC-WEB (HTTP/2 to the app) or TCP (bytes, no HTTP).
    #[arg(long, default_value = "HTTP", value_name = "PROTO", value_parser = parse_inbound_protocol)]
    pub inbound_protocol: InboundProtocol,
    /// This workload's X.509-SVID certificate chain (PEM; needs --key).
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// This workload's private key (PEM; needs --cert).
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// PEM or SPIFFE JSON trust bundle, optionally for one trust domain: `[TD=]PATH`.
    #[arg(long = "trust-bundle", value_name = "[TD=]PATH", value_parser = parse_trust_bundle)]
    pub trust_bundles: Vec<TrustBundleArg>,
    /// Namespace for resources without one.
    #[arg(long, default_value = "default", value_name = "NS")]
    pub namespace: String,
    /// Local trust domain.
    #[arg(long, default_value = "cluster.local", value_name = "TD")]
    pub trust_domain: String,
    /// Where this proxy runs: `region[/zone[/subzone]]`.
    #[arg(long, value_name = "R/Z/S", value_parser = parse_locality)]
    pub locality: Option<String>,
    /// The network this proxy is in (multi-network meshes).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Istio MeshConfig YAML (outboundTrafficPolicy, meshNetworks, trustDomainAliases,
    /// defaultConfig).
    #[arg(long, value_name = "PATH")]
    pub mesh_config: Option<PathBuf>,
    /// Write one access log line per request to stdout (Envoy's default format).
    #[arg(long, overrides_with = "no_access_log")]
    pub access_log: bool,
    /// Do not write access log lines.
    #[arg(long, overrides_with = "access_log")]
    pub no_access_log: bool,
    /// Connections open at once per data-plane listener; more are reset as they arrive.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_connections: usize,
    /// How long a client may take to send a request head (HTTP/1). hyper also runs it while
    /// a kept-alive connection waits for its next request, so it bounds HTTP/1 idleness too.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// How long a client connection may stay open without a request in flight.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// Streams a client may open at once on one HTTP/2 connection.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_concurrent_streams: u32,
}

/// A Go-style duration (`30s`, `1h`, `500ms`), as Istio writes them; at least 1 ms.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match mesh_routing::parse_duration(s) {
        Ok(d) if d >= std::time::Duration::from_millis(1) => Ok(d),
        Ok(_) => Err(format!("{s:?}: must be at least 1ms")),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// `--inbound-protocol`: how the inbound listener speaks to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InboundProtocol {
    /// HTTP/1.1 to the app, whatever the client spoke.
    #[default]
    Http,
    /// HTTP/2 (prior knowledge) to the app.
    Http2,
    /// gRPC: HTTP/2 to the app.
    Grpc,
    /// gRPC-Web: HTTP/2 to the app.
    GrpcWeb,
    /// Plain TCP: the connection's bytes, authorized per connection.
    Tcp,
}

fn parse_inbound_protocol(s: &str) -> Result<InboundProtocol, String> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "HTTP" => InboundProtocol::Http,
        "HTTP2" => InboundProtocol::Http2,
        "GRPC" => InboundProtocol::Grpc,
        "GRPC-WEB" => InboundProtocol::GrpcWeb,
        "TCP" => InboundProtocol::Tcp,
        _ => {
            return Err(format!(
                "{s:?}: expected HTTP, HTTP2, GRPC, GRPC-WEB or TCP"
            ));
        }
    })
}

/// One `--trust-bundle`: a file, optionally bound to one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundleArg {
    /// The trust domain (`TD=` prefix), if given.
    pub trust_domain: Option<String>,
    /// The PEM or SPIFFE JSON bundle file.
    pub path: PathBuf,
}

/// A flag combination or value the proxy refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl RunArgs {
    /// The limits of each data-plane listener's connections.
    pub fn connection_limits(&self) -> super::serve::ConnectionLimits {
        super::serve::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_concurrent_streams: self.max_concurrent_streams,
            ..super::serve::ConnectionLimits::default()
        }
    }

    /// Whether access logging is on (`--access-log` is the default; the last flag wins).
    pub fn access_log_enabled(&self) -> bool {
        !self.no_access_log
    }

    /// Checks what clap cannot: flags that need each other and value formats.
    pub fn check(&self) -> Result<(), UsageError> {
        let fail = |m: &str| Err(UsageError(m.to_string()));
        if self.config.is_empty() {
            return fail("--config PATH is required (files or directories of Istio YAML)");
        }
        match (self.inbound, self.inbound_target) {
            (Some(_), None) => return fail("--inbound needs --inbound-target ADDR"),
            (None, Some(_)) => return fail("--inbound-target needs --inbound ADDR"),
            _ => {}
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => return fail("--cert needs --key PEM"),
            (None, Some(_)) => return fail("--key needs --cert PEM"),
            _ => {}
        }
        if !is_trust_domain(&self.trust_domain) {
            return Err(UsageError(format!(
                "--trust-domain {:?}: expected lowercase letters, digits, '.', '_' or '-'",
                self.trust_domain
            )));
        }
        if self.namespace.is_empty() {
            return fail("--namespace must not be empty");
        }
        if matches!(&self.network, Some(n) if n.is_empty()) {
            return fail("--network must not be empty");
        }
        if self.max_connections == 0 || self.max_concurrent_streams == 0 {
            return fail("--max-connections and --max-concurrent-streams must be at least 1");
        }
        Ok(())
    }
}

/// `[TD=]PATH`: the prefix counts as a trust domain only when it looks like one, so a path
/// that merely contains `=` stays a path.
fn parse_trust_bundle(s: &str) -> Result<TrustBundleArg, String> {
    if s.is_empty() {
        return Err("expected [TD=]PATH".into());
    }
    if let Some((td, path)) = s.split_once('=') {
        if is_trust_domain(td) {
            if path.is_empty() {
                return Err(format!("no path after {td:?}="));
            }
            return Ok(TrustBundleArg {
                trust_domain: Some(td.to_string()),
                path: PathBuf::from(path),
            });
        }
    }
    Ok(TrustBundleArg {
        trust_domain: None,
        path: PathBuf::from(s),
    })
}

/// `region`, `region/zone` or `region/zone/subzone`, no empty parts.
fn parse_locality(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.trim() != *p) {
        return Err(format!(
            "{s:?} is not region[/zone[/subzone]] (non-empty parts)"
        ));
    }
    Ok(s.to_string())
}

fn is_trust_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mesh-proxy").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let cli = parse(&["--config", "a.yaml"]).unwrap();
        let run = cli.run;
        assert_eq!(run.bind.to_string(), "127.0.0.1");
        assert_eq!(run.admin.to_string(), "127.0.0.1:15000");
        assert_eq!(run.namespace, "default");
        assert_eq!(run.trust_domain, "cluster.local");
        assert!(run.access_log_enabled());
        assert_eq!(run.check(), Ok(()));
    }

    #[test]
    fn config_is_repeatable_and_access_log_toggles() {
        let cli = parse(&["--config", "a", "--config", "b", "--no-access-log"]).unwrap();
        assert_eq!(cli.run.config.len(), 2);
        assert!(!cli.run.access_log_enabled());
        let cli = parse(&["--config", "a", "--no-access-log", "--access-log"]).unwrap();
        assert!(cli.run.access_log_enabled());
    }

    #[test]
    fn inbound_needs_its_target_and_cert_its_key() {
        let run = parse(&["--config", "a", "--inbound", "127.0.0.1:1"])
            .unwrap()
            .run;
        assert_eq!(
            run.check().unwrap_err().0,
            "--inbound needs --inbound-target ADDR"
        );
        let run = parse(&["--config", "a", "--cert", "c.pem"]).unwrap().run;
        assert_eq!(run.check().unwrap_err().0, "--cert needs --key PEM");
        let run = parse(&["--bind", "127.0.0.1"]).unwrap().run;
        assert!(
            run.check()
                .unwrap_err()
                .0
                .starts_with("--config PATH is required")
        );
    }

    #[test]
    fn trust_bundle_prefix_is_a_trust_domain_only_when_it_looks_like_one() {
        let b = parse_trust_bundle("example.org=/etc/b.pem").unwrap();
        assert_eq!(b.trust_domain.as_deref(), Some("example.org"));
        assert_eq!(b.path, PathBuf::from("/etc/b.pem"));
        let b = parse_trust_bundle("/odd/dir=x/b.pem").unwrap();
        assert_eq!(b.trust_domain, None);
        assert!(parse_trust_bundle("td=").is_err());
    }

    #[test]
    fn locality_has_one_to_three_non_empty_parts() {
        assert!(parse_locality("us-east1").is_ok());
        assert!(parse_locality("us-east1/us-east1-b/rack1").is_ok());
        assert!(parse_locality("us-east1//rack1").is_err());
        assert!(parse_locality("a/b/c/d").is_err());
        assert!(parse(&["--config", "a", "--locality", "a/b/c/d"]).is_err());
    }

    #[test]
    fn inbound_protocol_takes_istio_port_protocols() {
        let run = |p: &str| parse(&["--config", "a", "--inbound-protocol", p]).map(|c| c.run);
        assert_eq!(run("grpc").unwrap().inbound_protocol, InboundProtocol::Grpc);
        assert_eq!(
            run("HTTP2").unwrap().inbound_protocol,
            InboundProtocol::Http2
        );
        assert_eq!(run("tcp").unwrap().inbound_protocol, InboundProtocol::Tcp);
        assert_eq!(
            run("GRPC-WEB").unwrap().inbound_protocol,
            InboundProtocol::GrpcWeb
        );
        assert!(run("mongo").is_err());
        let default = parse(&["--config", "a"]).unwrap().run;
        assert_eq!(default.inbound_protocol, InboundProtocol::Http);
    }

    #[test]
    fn validate_takes_paths() {
        let cli = parse(&["validate", "a.yaml", "dir"]).unwrap();
        match cli.command {
            Some(Command::Validate { paths, namespace }) => {
                assert_eq!(paths.len(), 2);
                assert_eq!(namespace, "default");
            }
            None => panic!("expected validate"),
        }
        assert!(parse(&["validate"]).is_err());
    }
}
