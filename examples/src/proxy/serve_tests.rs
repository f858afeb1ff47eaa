use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

use super::*;

#[tokio::test]
async fn ready_only_once_sealed_and_every_listener_is_up() {
    let listeners = Listeners::default();
    let (up, wait_up) = oneshot::channel::<()>();
    listeners.spawn(
        "admin",
        "127.0.0.1:1".parse().unwrap(),
        |ready| async move {
            ready.set();
        },
    );
    listeners.spawn(
        "outbound",
        "127.0.0.1:2".parse().unwrap(),
        |ready| async move {
            let _ = wait_up.await;
            ready.set();
        },
    );
    tokio::task::yield_now().await;
    assert!(!listeners.all_ready(), "outbound is not up");
    up.send(()).unwrap();
    listeners.join().await;
    assert!(
        !listeners.all_ready(),
        "not sealed yet: startup may still add listeners"
    );
    listeners.seal();
    assert!(listeners.all_ready());
    let names: Vec<String> = listeners
        .describe()
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(names, ["admin", "outbound"]);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_in_flight_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (started_tx, started) = oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let svc = tower::service_fn(move |_req: Request<Incoming>| {
        let started_tx = started_tx.clone();
        async move {
            if let Some(tx) = started_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
        }
    });
    let (trigger, shutdown) = Shutdown::new();
    let server = tokio::spawn(serve_http(listener, svc, shutdown, Duration::from_secs(5)));

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), started)
        .await
        .unwrap()
        .unwrap();
    trigger.trigger();

    let mut response = String::new();
    let read = conn.read_to_string(&mut response);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("done"), "{response}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
