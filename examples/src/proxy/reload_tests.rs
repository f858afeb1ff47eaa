use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser as _;

use super::*;
use crate::proxy::test_dir::TestDir;
use crate::proxy::{Cli, Proxy};

const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: NAME}\n\
                  spec: {hosts: [HOST], http: [{route: [{destination: {host: HOST}}]}]}\n";

fn vs(name: &str, host: &str) -> String {
    VS.replace("NAME", name).replace("HOST", host)
}

fn fast() -> WatchOptions {
    WatchOptions {
        interval: Duration::from_millis(20),
        debounce: Duration::from_millis(20),
    }
}

/// Polls `cond` every 10 ms for up to 5 s.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn valid_then_invalid_then_valid() {
    let dir = TestDir::new("reload");
    let file = dir.write("mesh.yaml", &vs("a", "a.example.com"));
    let args = Cli::try_parse_from([
        "mesh-proxy",
        "--no-access-log",
        "--config",
        dir.path().to_str().unwrap(),
    ])
    .unwrap()
    .run;
    let loaded = Fingerprint::of(&[dir.path().to_path_buf()]);
    let (proxy, trigger) = Proxy::new(args).unwrap();
    assert_eq!(proxy.current().generation, 1);
    let (_tx, rx) = mpsc::channel(1);
    let p = proxy.clone();
    let watcher = tokio::spawn(watch(
        vec![dir.path().to_path_buf()],
        fast(),
        loaded,
        rx,
        proxy.shutdown.clone(),
        move |t| {
            p.reload(t);
        },
    ));
    let has_host = |p: &Proxy, host: &str| {
        p.current().route_tables["mesh"]
            .domains()
            .iter()
            .any(|d| d == host)
    };

    std::fs::write(&file, vs("b", "b.example.com")).unwrap();
    assert!(eventually(|| proxy.current().generation == 2).await);
    assert!(has_host(&proxy, "b.example.com"));
    assert_eq!(proxy.reload_status.last_error(), None);

    std::fs::write(
        &file,
        vs("c", "c.example.com").replace("{destination", "{weight: -1, destination"),
    )
    .unwrap();
    assert!(eventually(|| proxy.reload_status.last_error().is_some()).await);
    let error = proxy.reload_status.last_error().unwrap();
    assert!(
        error.contains("mesh.yaml (document 1): VirtualService default/c: http[0].route[0].weight"),
        "{error}"
    );
    assert_eq!(
        proxy.current().generation,
        2,
        "the invalid config did not replace the valid one"
    );
    assert!(has_host(&proxy, "b.example.com"));

    dir.write("more.yaml", &vs("d", "d.example.com"));
    std::fs::write(&file, vs("c", "c.example.com")).unwrap();
    assert!(eventually(|| proxy.current().generation == 3).await);
    assert!(has_host(&proxy, "c.example.com") && has_host(&proxy, "d.example.com"));
    assert_eq!(proxy.reload_status.last_error(), None);

    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_request_reloads_without_a_change_and_nothing_reloads_when_idle() {
    let dir = TestDir::new("reload-hup");
    dir.write("a.yaml", &vs("a", "a.example.com"));
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel(1);
    let (trigger, shutdown) = Shutdown::new();
    let c = calls.clone();
    let paths = vec![dir.path().to_path_buf()];
    let loaded = Fingerprint::of(&paths);
    let watcher = tokio::spawn(watch(paths, fast(), loaded, rx, shutdown, move |t| {
        assert_eq!(t, Trigger::Requested);
        c.fetch_add(1, Ordering::SeqCst);
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    tx.send(()).await.unwrap();
    assert!(eventually(|| calls.load(Ordering::SeqCst) == 1).await);
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();
}
