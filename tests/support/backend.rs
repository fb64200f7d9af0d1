//! Small real HTTP and TCP backends for the proxy tests: they report who they are, echo what
//! they received, stream large bodies, answer slowly on demand and accept upgrades.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A backend server; the accept loop stops on drop (open connections finish).
pub struct Backend {
    pub addr: SocketAddr,
    pub id: String,
    /// Requests (HTTP) or connections (TCP) answered.
    pub served: Arc<AtomicU64>,
    /// Connections accepted.
    pub accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// An address nothing listens on (bound, then closed).
pub fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A fresh 127.0.0.1 listener on a free port.
pub fn listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// An HTTP backend named `id`:
/// - `/big?bytes=N` streams N bytes in 64 KiB chunks;
/// - `/slow?ms=N` answers after N ms;
/// - `/ws` with `Connection: upgrade` answers 101 and echoes bytes;
/// - anything else answers a JSON echo (id, method, path, headers, body_len, read in a stream).
pub async fn http(id: &str) -> Backend {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let served = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let (id2, served2, accepted2) = (id.to_string(), served.clone(), accepted.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { continue };
            accepted2.fetch_add(1, Ordering::Relaxed);
            let (id, served) = (id2.clone(), served2.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(id.clone(), served.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Backend {
        addr,
        id: id.to_string(),
        served,
        accepted,
        task,
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

async fn answer(
    id: String,
    served: Arc<AtomicU64>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    served.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    if path == "/ws" && req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let r = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::new(Bytes::new()).boxed())
            .expect("response");
        return Ok(r);
    }
    if path == "/big" {
        let n = query(&req, "bytes").unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = n.div_ceil(chunk.len() as u64);
        let stream = futures_util::stream::iter(0..chunks).map(move |i| {
            let left = n - i * chunk.len() as u64;
            Ok::<_, Infallible>(Frame::data(
                chunk.slice(..(left.min(chunk.len() as u64) as usize)),
            ))
        });
        let r = Response::builder()
            .header("x-backend", id)
            .header("content-type", "application/octet-stream")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .expect("response");
        return Ok(r);
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(query(&req, "ms").unwrap_or(1000))).await;
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
        .collect();
    let mut body = req.into_body();
    let mut len = 0u64;
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => len += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    let json = serde_json::json!({
        "id": id, "method": method, "uri": uri, "headers": headers, "body_len": len,
    });
    let r = Response::builder()
        .header("x-backend", id)
        .header("content-type", "application/json")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped by the proxy")
        .header("keep-alive", "timeout=60")
        .body(Full::new(Bytes::from(json.to_string())).boxed())
        .expect("response");
    Ok(r)
}

/// A TCP backend that writes `id\n` on connect and then echoes.
pub async fn tcp(id: &str) -> Backend {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let served = Arc::new(AtomicU64::new(0));
    let (id2, served2) = (id.to_string(), served.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            served2.fetch_add(1, Ordering::Relaxed);
            let id = id2.clone();
            tokio::spawn(async move {
                if s.write_all(format!("{id}\n").as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Backend {
        addr,
        id: id.to_string(),
        accepted: served.clone(),
        served,
        task,
    }
}
