//! The demo binary (`cargo run -p mesh-examples --bin demo -- --once`) end to end: it builds
//! everything up, prints a report showing each mesh feature, and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the demo with `--once`, killing it after `limit`; (exit success, stdout, stderr).
fn run_demo(limit: Duration) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg("--once")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demo did not start");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "demo still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report line labelled `label`.
fn line<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.trim_start_matches(['✓', '✗', ' ']).starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{report}"))
}

/// The number right after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest = &text[text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} in {text}"))
        + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in {text}"))
}

#[test]
fn demo_once_shows_every_feature_and_exits_0() {
    let (ok, report, stderr) = run_demo(Duration::from_secs(120));
    assert!(ok, "demo failed\nstdout:\n{report}\nstderr:\n{stderr}");
    for n in 1..=7 {
        assert!(
            report.contains(&format!("[{n}/7] ")),
            "progress line {n} missing:\n{report}"
        );
    }
    assert!(!report.contains('✗'), "a check failed:\n{report}");

    let split = line(&report, "canary split");
    let (v1, v2) = (
        number_after(split, "reviews-v1 "),
        number_after(split, "reviews-v2 "),
    );
    assert_eq!(v1 + v2, 1000, "{split}");
    assert!((60..=140).contains(&v2), "v2 share far from 10%: {split}");

    assert!(line(&report, "header routing").contains("end-user: jason -> reviews-v2"));

    let mirror = line(&report, "mirror");
    assert!(number_after(mirror, "received ") > 0, "{mirror}");
    assert!(
        mirror.contains("the client saw 0 answers from it"),
        "{mirror}"
    );

    let mtls = line(&report, "mTLS hop");
    assert!(
        mtls.contains("spiffe://cluster.local/ns/default/sa/ratings"),
        "{mtls}"
    );
    assert!(
        mtls.contains("it saw peer spiffe://cluster.local/ns/default/sa/productpage"),
        "{mtls}"
    );

    assert!(line(&report, "authorization").contains("/admin -> 403 RBAC: access denied"));
    assert!(line(&report, "STRICT mTLS").contains("no answer"));
    assert!(line(&report, "registry only").contains("unknown.example -> 502"));

    let h2 = line(&report, "HTTP/2 client");
    assert_eq!(
        number_after(h2, "reviews-v1 ") + number_after(h2, "reviews-v2 "),
        200,
        "{h2}"
    );
    let grpc = line(&report, "gRPC stream");
    assert!(
        grpc.contains("100 of 100 items streamed, grpc-status OK"),
        "{grpc}"
    );
    let ws = line(&report, "WebSocket");
    assert!(
        ws.contains("upgrade -> 101, 3 of 3 messages echoed"),
        "{ws}"
    );
}
