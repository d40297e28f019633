//! The ceiling the HTTP goals are set against: a minimal hyper 1.x server
//! answering every request with a fixed body, two worker threads, no
//! authentication, storage or audit. `benches/http/run.sh --hello` drives it
//! with the same load generator and settings as Clarity's own phases, so a
//! read's rate can be given as a fraction of it measured in the same run.
//!
//! ```sh
//! cargo run --release -p clarity-benches --bin hello -- 127.0.0.1:8099
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: hello ADDRESS:PORT (a loopback address)")?
        .parse()?;
    if !address.ip().is_loopback() {
        return Err("the hello server listens on loopback only".into());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve(address))
}

async fn serve(address: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let hello = service_fn(|_: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"Hello, world!",
                ))))
            });
            // A client that goes away mid-request is no error of the server's.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hello)
                .await;
        });
    }
}
