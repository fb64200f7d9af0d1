//! Serving the admin API: HTTP/1 with hyper, one request per connection, a header-read timeout,
//! a time limit on the whole exchange and a bound on concurrent connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use super::view::{ContainersView, Source};
use crate::metrics::Render;

/// Bounds of the server (the defaults suit a loopback-only, read-only API).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client must send its request head within this (Go Dewy's ReadHeaderTimeout is 5 s).
    pub header_timeout: Duration,
    /// The whole exchange, answer included.
    pub request_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_connections: 32,
        }
    }
}

/// A running admin API.
pub struct Served {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Stop accepting connections.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve the admin API on `listener` until the returned handle is stopped or dropped.
pub fn serve(
    listener: tokio::net::TcpListener,
    source: Arc<dyn Source>,
    metrics: Arc<dyn Render>,
    limits: Limits,
) -> anyhow::Result<Served> {
    let addr = listener.local_addr()?;
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tracing::info!(address = %addr, "Admin API server started");
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "Admin API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!(peer = %peer, "Admin API busy; connection closed");
                drop(stream);
                continue;
            };
            let (source, metrics) = (source.clone(), metrics.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (source, metrics) = (source.clone(), metrics.clone());
                    async move { Ok::<_, Infallible>(answer(&req, source.as_ref(), metrics.as_ref()).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .keep_alive(false)
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), svc);
                match tokio::time::timeout(limits.request_timeout, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "Admin API connection ended with an error")
                    }
                    Err(_) => tracing::debug!(peer = %peer, "Admin API connection timed out"),
                }
            });
        }
    });
    Ok(Served { addr, task })
}

type Answer = Response<Full<Bytes>>;

async fn answer(req: &Request<hyper::body::Incoming>, source: &dyn Source, metrics: &dyn Render) -> Answer {
    let path = req.uri().path();
    if !matches!(path, "/api/status" | "/api/containers" | "/metrics") {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let mut resp = match path {
        "/api/status" => json(&source.status()),
        "/api/containers" => match source.containers().await {
            Ok(containers) => json(&ContainersView { containers }),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Admin API: listing the containers failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n")
            }
        },
        _ => {
            let mut r = Response::new(Full::new(Bytes::from(metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
    };
    if req.method() == Method::HEAD {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

fn json<T: serde::Serialize>(value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
