//! HTTP mode: an HTTP/1.1 server per port forwarding to the backends through a pooled keep-alive
//! client, with forwarded headers, hop-by-hop removal, streamed bodies, upgrades and retries.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::life::Life;
use super::table::{Backend, InFlight};
use super::Port;

/// Longest wait for a backend to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a backend's response headers (then 504).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts per request when backends refuse or drop it (each on another backend).
const MAX_ATTEMPTS: usize = 3;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream client: one keep-alive pool per backend address.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, ReqBody>;

/// A client with a connect timeout and an idle pool.
pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(512)
        .build(connector)
}

/// Serve HTTP on `listener` until `life` says stop; open connections finish their request.
pub async fn serve(listener: tokio::net::TcpListener, port: Arc<Port>, client: Client, life: Life) {
    while let Some((stream, peer)) = super::life::next_client(&listener, port.spec.listen.port(), &life).await
    {
        let _ = stream.set_nodelay(true);
        let port = port.clone();
        let client = client.clone();
        let life = life.clone();
        tokio::spawn(async move {
            let _open = life.open();
            let svc_life = life.clone();
            let svc = hyper::service::service_fn(move |req| {
                handle(port.clone(), client.clone(), peer, svc_life.clone(), req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = life.stopped() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = conn.as_mut() => r,
                        _ = life.killed() => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "Client connection ended with an error");
            }
        });
    }
}

/// The body sent upstream: the client's body, taken from a shared slot on first poll so that a
/// request whose body was never read can be sent again to another backend.
pub struct ReqBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    body: Option<Incoming>,
    hint: SizeHint,
}

impl ReqBody {
    fn new(slot: &Arc<Mutex<Option<Incoming>>>, hint: &SizeHint) -> Self {
        Self {
            slot: slot.clone(),
            body: None,
            hint: *hint,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.body.is_none() {
            let taken = this.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            match taken {
                Some(b) => this.body = Some(b),
                None => return Poll::Ready(Some(Err("request body already sent to another backend".into()))),
            }
        }
        match this.body.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(b) => b.is_end_stream(),
            None => self.hint.exact() == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(b) => b.size_hint(),
            None => self.hint,
        }
    }
}

/// The body sent to the client: the backend's body streamed through (keeping the backend counted
/// in flight until it ends), or a short local message.
pub struct RespBody {
    inner: RespInner,
    _in_flight: Option<InFlight>,
}

enum RespInner {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

impl RespBody {
    fn local(text: &'static str) -> Self {
        Self {
            inner: RespInner::Local(Some(Bytes::from_static(text.as_bytes()))),
            _in_flight: None,
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().inner {
            RespInner::Upstream(b) => Pin::new(b).poll_frame(cx),
            RespInner::Local(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            RespInner::Upstream(b) => b.is_end_stream(),
            RespInner::Local(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            RespInner::Upstream(b) => b.size_hint(),
            RespInner::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            RespInner::Local(None) => SizeHint::with_exact(0),
        }
    }
}

fn local(status: StatusCode, text: &'static str) -> Response<RespBody> {
    let mut r = Response::new(RespBody::local(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Methods that may be sent twice.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The `Upgrade` value when the client asks for a protocol upgrade (`Connection: upgrade`).
fn upgrade_of(h: &HeaderMap) -> Option<HeaderValue> {
    let asks = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Remove hop-by-hop headers: `Connection` and the headers it names, `Keep-Alive`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Upgrade` and every `Proxy-*`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most requests name nothing in `Connection` and carry no `Proxy-*`: no allocation for them.
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        h.remove(n);
    }
    if h.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = h
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for n in proxy {
            h.remove(n);
        }
    }
}

/// Append the client to `X-Forwarded-For`; set `X-Forwarded-Proto` and `X-Forwarded-Host` to what
/// this proxy saw.
fn add_forwarded(h: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_canonical().to_string();
    let xff = HeaderName::from_static("x-forwarded-for");
    let prior: Vec<String> = h
        .get_all(&xff)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let value = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(xff, v);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    let host = HeaderName::from_static("x-forwarded-host");
    match h.get(header::HOST).cloned() {
        Some(v) => {
            h.insert(host, v);
        }
        None => {
            h.remove(host);
        }
    }
}

async fn handle(
    port: Arc<Port>,
    client: Client,
    peer: SocketAddr,
    life: Life,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let started = std::time::Instant::now();
    let table = port.table.load();
    let upgrade = upgrade_of(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let hint = body.size_hint();
    let slot = Arc::new(Mutex::new(Some(body)));
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    add_forwarded(&mut headers, peer);
    if let Some(u) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u.clone());
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut tried: Vec<SocketAddr> = Vec::new();
    let proxy_port = port.spec.listen.port();
    for _ in 0..MAX_ATTEMPTS {
        let Some(backend) = table.pick(&tried) else { break };
        tried.push(backend.addr);
        let guard = backend.begin();
        let Ok(uri) = format!("http://{}{path}", backend.addr).parse::<Uri>() else {
            return Ok(local(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: bad request target\n",
            ));
        };
        let mut up = Request::new(ReqBody::new(&slot, &hint));
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = headers.clone();
        let result = tokio::time::timeout(RESPONSE_TIMEOUT, client.request(up)).await;
        let unsent = slot.lock().map(|s| s.is_some()).unwrap_or(false);
        match result {
            Ok(Ok(resp)) => {
                port.observe(started.elapsed(), resp.status().is_server_error());
                return Ok(respond(resp, guard, client_upgrade, &life));
            }
            Ok(Err(e)) => {
                backend.error();
                let refused = e.is_connect();
                if refused {
                    backend.eject();
                }
                let retry = unsent && (refused || idempotent(&parts.method));
                tracing::warn!(proxy_port, backend = %backend.addr, error = %source_chain(&e), retry, "Backend request failed");
                if !retry {
                    port.observe(started.elapsed(), true);
                    return Ok(local(
                        StatusCode::BAD_GATEWAY,
                        "502 Bad Gateway: the backend failed\n",
                    ));
                }
            }
            Err(_) => {
                backend.error();
                port.observe(started.elapsed(), true);
                tracing::warn!(proxy_port, backend = %backend.addr, "Backend response timed out");
                return Ok(local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"));
            }
        }
    }
    port.observe(started.elapsed(), true);
    if tried.is_empty() {
        tracing::debug!(proxy_port, "No backend available");
        Ok(local(
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway: no backend available\n",
        ))
    } else {
        Ok(local(
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway: no backend answered\n",
        ))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The response for the client; a `101` starts a tunnel between the two upgraded connections.
fn respond(
    mut resp: Response<Incoming>,
    guard: InFlight,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    life: &Life,
) -> Response<RespBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_side) = client_upgrade {
            let upstream_side = hyper::upgrade::on(&mut resp);
            let (parts, _) = resp.into_parts();
            let backend = guard.backend().clone();
            let life = life.clone();
            tokio::spawn(tunnel(client_side, upstream_side, guard, backend, life));
            return Response::from_parts(parts, RespBody::local(""));
        }
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        RespBody {
            inner: RespInner::Upstream(body),
            _in_flight: Some(guard),
        },
    )
}

async fn tunnel(
    client_side: hyper::upgrade::OnUpgrade,
    upstream_side: hyper::upgrade::OnUpgrade,
    _guard: InFlight,
    backend: Arc<Backend>,
    life: Life,
) {
    let _open = life.open();
    let (c, u) = match tokio::try_join!(client_side, upstream_side) {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(backend = %backend.addr, error = %e, "Upgrade failed");
            return;
        }
    };
    let mut c = TokioIo::new(c);
    let mut u = TokioIo::new(u);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
            if let Err(e) = r {
                tracing::debug!(backend = %backend.addr, error = %e, "Tunnel ended with an error");
            }
        }
        _ = life.killed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        add_forwarded(&mut h, "192.0.2.7:5555".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
    }
}
