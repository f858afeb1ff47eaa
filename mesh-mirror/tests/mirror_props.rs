//! Property: whatever the mirror does (answer, fail, hang, panic, read slowly) and whatever
//! the body and limits, the primary receives exactly the request body it would have received
//! without mirroring, and the client gets exactly the primary's response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use mesh_mirror::{MirrorBody, MirrorConfig, MirrorLayer, MirrorTarget, TeeBody};
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Answer,
    Fail,
    Hang,
    Panic,
    SlowRead,
}

type ChunkBody = StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
>;

fn body(chunks: &[Vec<u8>]) -> ChunkBody {
    let frames: Vec<_> = chunks
        .iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from(c.clone()))))
        .collect();
    StreamBody::new(stream::iter(frames))
}

/// The primary echoes the body it received with a status derived from it.
async fn primary<B: http_body::Body<Data = Bytes>>(
    req: http::Request<B>,
) -> Result<http::Response<Full<Bytes>>, Infallible>
where
    B::Error: std::fmt::Debug,
{
    let got = req.into_body().collect().await.unwrap().to_bytes();
    let status = if got.len() % 2 == 0 { 200 } else { 201 };
    Ok(http::Response::builder()
        .status(status)
        .header("x-len", got.len())
        .body(Full::new(got))
        .unwrap())
}

fn mirror(
    behaviour: Behaviour,
) -> impl tower::Service<
    http::Request<MirrorBody>,
    Response = http::Response<Full<Bytes>>,
    Error = std::io::Error,
    Future: Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |req: http::Request<MirrorBody>| async move {
        match behaviour {
            Behaviour::Answer => {
                let _ = req.into_body().collect().await;
                Ok(http::Response::new(Full::new(Bytes::from_static(
                    b"mirror",
                ))))
            }
            Behaviour::Fail => Err(std::io::Error::other("mirror down")),
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Panic => panic!("mirror panicked"),
            Behaviour::SlowRead => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = req.into_body().collect().await;
                Ok(http::Response::new(Full::new(Bytes::new())))
            }
        }
    })
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        Just(Behaviour::Answer),
        Just(Behaviour::Fail),
        Just(Behaviour::Hang),
        Just(Behaviour::Panic),
        Just(Behaviour::SlowRead)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn mirrors_never_change_the_primary(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        behaviour in behaviour(),
        body_limit in prop_oneof![Just(0u64), Just(64), Just(1 << 20)],
        percentage in prop_oneof![Just(0.0f64), Just(50.0), Just(100.0)],
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let expected = {
                let resp = service_fn(primary::<ChunkBody>).oneshot(http::Request::post("http://svc/").body(body(&chunks)).unwrap()).await.unwrap();
                (resp.status(), resp.headers()["x-len"].clone(), resp.into_body().collect().await.unwrap().to_bytes())
            };
            let config = MirrorConfig { body_limit, timeout: Duration::from_millis(200), ..MirrorConfig::default() };
            let layer = MirrorLayer::new(vec![MirrorTarget { service: mirror(behaviour), percentage }]).config(config);
            let svc = layer.layer(service_fn(primary::<TeeBody<ChunkBody>>));
            let req = http::Request::post("http://svc/").body(body(&chunks)).unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(5), svc.oneshot(req)).await.expect("the primary must not wait for the mirror").unwrap();
            let got = (resp.status(), resp.headers()["x-len"].clone(), resp.into_body().collect().await.unwrap().to_bytes());
            prop_assert_eq!(got, expected);
            Ok(())
        })?;
    }
}
