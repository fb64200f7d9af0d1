//! Serving the metrics: HTTP/1 with hyper on a unix socket (`metrics.sock`) and, when
//! `metrics-listen` is set, on a local TCP address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Render;

/// Start serving `metrics` (dewy's [`super::Metrics`], or the proxy's) on the unix socket at `socket` (a stale file is replaced) and on `listen`.
pub async fn start(
    metrics: Arc<dyn Render>,
    socket: &Path,
    listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing the stale {}", socket.display())),
    }
    let unix =
        tokio::net::UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    tracing::info!(socket = %socket.display(), "Metrics served");
    let m = metrics.clone();
    tokio::spawn(async move {
        loop {
            match unix.accept().await {
                Ok((stream, _)) => connection(stream, m.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, "Metrics socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    if let Some(addr) = listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics-listen {addr}"))?;
        tracing::info!(listen = %addr, "Metrics served");
        tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((stream, _)) => connection(stream, metrics.clone()),
                    Err(e) => {
                        tracing::warn!(error = %e, "Metrics listener accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    Ok(())
}

fn connection<S>(stream: S, metrics: Arc<dyn Render>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
            let m = metrics.clone();
            async move { Ok::<_, Infallible>(answer(&req, m.as_ref())) }
        });
        if let Err(e) = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await
        {
            tracing::debug!(error = %e, "Metrics connection ended with an error");
        }
    });
}

fn answer(req: &Request<hyper::body::Incoming>, m: &dyn Render) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics" | "/") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            m.render(),
        ),
        ("GET", _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics\n".into(),
        ),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
