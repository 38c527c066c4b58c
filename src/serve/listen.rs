//! The server's connections: hyper's HTTP/1 with a deadline for each request's headers (a
//! client that sends them slowly, or not at all, is dropped, where axum::serve would keep it
//! forever) and a cap on connections served at once (more wait in the listen queue, so a
//! flood costs the server neither memory nor file descriptors without bound).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Accepts and serves connections until the runtime stops.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // out of file descriptors, or a connection reset before it was taken: the
                // next accept may succeed once something closes
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            // a client that went away or timed out ends its own connection, nothing else
            let _ = connection.await;
        });
    }
}
