//! `mesh-proxy` as a process: startup errors, the admin endpoints, reload on SIGHUP and
//! file change, graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn proxy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"));
    cmd.env("RUST_LOG", "info");
    cmd
}

/// Runs a proxy that must fail; returns (exit code, stderr).
fn fails(args: &[&str]) -> (i32, String) {
    let out = proxy().args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The last line of stderr: the one clear line a failed start ends with.
fn last_line(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or("")
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A tiny HTTP/1.1 GET; returns (status, body).
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Polls `f` every 20 ms for up to 10 s.
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path, admin: SocketAddr, extra: &[&str]) -> Running {
    let child = proxy()
        .args([
            "--config",
            config.to_str().unwrap(),
            "--admin",
            &admin.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running(child)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child) -> i32 {
    eventually(|| child.try_wait().unwrap())
        .code()
        .unwrap_or(-1)
}

#[test]
fn admin_port_in_use_names_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = fixture("valid").display().to_string();
    let (code, stderr) = fails(&["--config", &config, "--admin", &addr]);
    assert_ne!(code, 0);
    let line = last_line(&stderr);
    assert!(
        line.starts_with("mesh-proxy: error: cannot listen on admin address"),
        "{stderr}"
    );
    assert!(line.contains(&addr), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn unreadable_config_and_missing_cert_are_one_line_each() {
    let (code, stderr) = fails(&[
        "--config",
        "/nonexistent/mesh.yaml",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        "mesh-proxy: error: invalid configuration: /nonexistent/mesh.yaml: cannot read: No such file or directory (os error 2)"
    );

    let config = fixture("valid").display().to_string();
    let (code, stderr) = fails(&[
        "--config",
        &config,
        "--admin",
        "127.0.0.1:0",
        "--cert",
        "/nonexistent/cert.pem",
        "--key",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        "mesh-proxy: error: --cert /nonexistent/cert.pem: cannot read: No such file or directory (os error 2)"
    );

    let mesh = fixture("meshconfig/bad.yaml").display().to_string();
    let (code, stderr) = fails(&[
        "--config",
        &config,
        "--admin",
        "127.0.0.1:0",
        "--mesh-config",
        &mesh,
    ]);
    assert_eq!(code, 1);
    let line = last_line(&stderr);
    assert!(
        line.starts_with("mesh-proxy: error: invalid --mesh-config: "),
        "{stderr}"
    );
    assert!(
        line.contains("bad.yaml: meshNetworks.networks.west.gateways[0].port: "),
        "{stderr}"
    );

    let bad = fixture("invalid/bad.yaml").display().to_string();
    let (code, stderr) = fails(&["--config", &bad, "--admin", "127.0.0.1:0"]);
    assert_eq!(code, 1);
    let line = last_line(&stderr);
    assert!(
        line.starts_with("mesh-proxy: error: invalid configuration: "),
        "{stderr}"
    );
    assert!(
        line.ends_with("(and 1 more; `mesh-proxy validate` lists them all)"),
        "{stderr}"
    );
}

#[test]
fn admin_endpoints_reload_and_graceful_shutdown() {
    let dir = std::env::temp_dir().join(format!("mesh-proxy-process-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mesh.yaml");
    // The fixture's Gateway listens on 8080; move it to a free port.
    let gateway = free_port();
    let valid = std::fs::read_to_string(fixture("valid/mesh.yaml"))
        .unwrap()
        .replace("number: 8080", &format!("number: {}", gateway.port()));
    std::fs::write(&file, &valid).unwrap();
    let admin = free_port();
    let outbound = free_port();
    let mesh = fixture("meshconfig/mesh.yaml").display().to_string();
    let mut running = start(
        &dir,
        admin,
        &[
            "--outbound",
            &outbound.to_string(),
            "--mesh-config",
            &mesh,
            "--locality",
            "eu/west-1a",
        ],
    );

    let (status, body) = eventually(|| get(admin, "/ready"));
    assert_eq!((status, body.as_str()), (200, "LIVE\n"));
    // The Gateway's port serves HTTP (its upstreams are not registered: an error status).
    let (status, _) = get(gateway, "/").unwrap();
    assert!(status >= 400, "{status}");
    // The outbound listener serves; MeshConfig says REGISTRY_ONLY, so an unknown host is 502.
    assert_eq!(get(outbound, "/").unwrap().0, 502);
    assert_eq!(get(admin, "/nope").unwrap().0, 404);

    let (status, stats) = get(admin, "/stats/prometheus").unwrap();
    assert_eq!(status, 200);
    // Istio's request families appear with their first request (the layer's unit tests
    // check them); the control plane's own metrics are there from the start.
    assert!(stats.ends_with("# EOF\n"), "{stats}");
    assert!(stats.contains("mesh_config_generation 1"), "{stats}");

    let (status, dump) = get(admin, "/config_dump").unwrap();
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["generation"], 1);
    assert_eq!(dump["resources"]["VirtualService"][0], "default/reviews");
    assert_eq!(dump["resources"]["DestinationRule"][0], "default/reviews");
    assert_eq!(dump["last_reload_error"], serde_json::Value::Null);
    assert_eq!(dump["outbound_traffic_policy"], "REGISTRY_ONLY");
    assert_eq!(
        dump["mesh_config"]["networks"]["west"]["gateways"][0]["port"],
        15443
    );
    assert_eq!(dump["proxy"]["locality"], "eu/west-1a");
    assert_eq!(dump["proxy"]["drain_seconds"], 2.0);
    let mesh_routes = &dump["route_tables"]["mesh"]["routes"];
    let reviews =
        mesh_routes["reviews.default.svc.cluster.local -> reviews.default.svc.cluster.local"]
            .as_array()
            .unwrap();
    assert_eq!(reviews.len(), 2, "{mesh_routes}");
    assert!(
        dump["route_tables"]["default/ingress"]["domains"].is_array(),
        "{dump}"
    );

    // An invalid change is rejected and reported; SIGHUP forces a look.
    std::fs::write(&file, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [x]}\n").unwrap();
    signal(&running.0, "HUP");
    let dump = eventually(|| {
        let (_, body) = get(admin, "/config_dump")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["last_reload_error"].is_string().then_some(v)
    });
    assert_eq!(dump["generation"], 1);
    assert!(
        dump["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("VirtualService default/x"),
        "{dump}"
    );

    // A valid one is applied.
    std::fs::write(&file, &valid).unwrap();
    signal(&running.0, "HUP");
    eventually(|| {
        let (_, body) = get(admin, "/config_dump")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["generation"] == 2 && v["last_reload_error"].is_null()).then_some(())
    });

    signal(&running.0, "TERM");
    assert_eq!(wait_exit(&mut running.0), 0);
    let mut stderr = String::new();
    running
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("outbound listener up"), "{stderr}");
    assert!(stderr.contains("gateway listener up"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
