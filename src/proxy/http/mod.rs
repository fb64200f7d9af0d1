//! HTTP mode: each client connection is served by one task that reads a request, forwards it on a
//! pooled keep-alive connection to the next backend, and streams the response back — no
//! per-request tasks, channels or copies of the head beyond one rewrite. Forwarded headers,
//! hop-by-hop removal, streamed bodies both ways, upgrades (a tunnel after `101`), retries on
//! another backend, and `100 Continue`.

pub(crate) mod body;
mod client_side;
mod exchange;
pub(crate) mod head;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::net::TcpStream;

use super::connections::{DrainEnd, Life, OpenGuard, Throttle};
use super::table::Backend;
use super::Port;
use body::{BodyError, Framing, Pace};
use head::{ForClient, Method, Reject, Request};

/// Longest wait for a backend to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a backend's response head (then 504).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest silence while a body streams either way.
const BODY_IDLE: Duration = Duration::from_secs(60);
/// A request body may take [`super::Timeouts::body_grace`] (20 s) plus a second for each
/// `BODY_MIN_RATE` bytes it brings (Apache's `RequestReadTimeout body=20,MinRate=500`): a body
/// trickled slower is cut with 408.
const BODY_MIN_RATE: u64 = 500;
/// How long an idle client keep-alive connection is kept open.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(75);
/// Longest wait for a new connection's first request once the proxy stops.
const FIRST_REQUEST_WHEN_STOPPING: Duration = Duration::from_secs(1);
/// How long to look for a backend's early answer after it stopped taking a request body.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Longest time and most bytes read and dropped before closing on an unread request body.
const LINGER_FOR: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 << 20;
/// Attempts per request when backends refuse or drop it (each on another backend).
const MAX_ATTEMPTS: usize = 3;

/// Serve HTTP on `listener` until `life` says stop; open connections finish their request.
pub async fn serve(listener: tokio::net::TcpListener, port: Arc<Port>, life: Life, idle: Duration) {
    let proxy_port = port.spec.listen.port();
    while let Some((stream, peer)) =
        super::connections::next_client(&listener, proxy_port, super::Protocol::Http, &life).await
    {
        let _ = stream.set_nodelay(true);
        let port = port.clone();
        let life = life.clone();
        tokio::spawn(async move {
            let open = life.open();
            let killed = life.clone();
            let mut conn = Conn {
                accepted: tokio::time::Instant::now(),
                open,
                said_close: false,
                body_in_inbuf: 0,
                client: stream,
                peer_ip: peer.ip().to_canonical().to_string(),
                port,
                life,
                inbuf: BytesMut::with_capacity(8 * 1024),
                upbuf: BytesMut::with_capacity(8 * 1024),
                head: Vec::with_capacity(1024),
                out: Vec::with_capacity(1024),
                head_only: false,
                linger: false,
                tunnel_idle: idle,
            };
            tokio::select! {
                r = conn.run() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "Client connection ended with an error");
                    }
                }
                _ = killed.killed() => {}
            }
        });
    }
}

/// One client connection and its buffers, reused request after request.
struct Conn {
    /// When the connection was accepted (its first head must be complete within the head timeout).
    accepted: tokio::time::Instant,
    /// Counts the connection as open, and says how it ended during a drain.
    open: OpenGuard,
    /// The last response told the client that the connection closes.
    said_close: bool,
    /// Bytes at the start of `inbuf` that are the current request's body (sent, kept for a retry).
    body_in_inbuf: usize,
    client: TcpStream,
    peer_ip: String,
    port: Arc<Port>,
    life: Life,
    /// Bytes from the client not yet forwarded.
    inbuf: BytesMut,
    /// Bytes from the current backend connection not yet forwarded.
    upbuf: BytesMut,
    /// The request head as sent upstream.
    head: Vec<u8>,
    /// The response head as sent to the client.
    out: Vec<u8>,
    /// The request being answered is a HEAD (local answers then carry no body).
    head_only: bool,
    /// The connection closes with part of a request body unread: read and drop what the client
    /// still sends for a while first, so that its network stack does not discard the answer.
    linger: bool,
    /// `proxy-idle-timeout` of upgraded connections (zero: never).
    tunnel_idle: Duration,
}

/// What the connection does after a request.
#[derive(PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// Why an attempt on one backend failed.
enum Failure {
    /// Nothing reached the backend or it dropped the request unanswered: another try may follow
    /// when the request can be sent again.
    Unanswered(io::Error),
    /// A reused idle connection turned out closed: try again on a new connection.
    Stale,
    /// The client's side broke (body or write), or sent its body too slowly: close (after a 408
    /// or 400 where an answer still makes sense).
    Client(io::Error),
    /// The proxy itself is short of descriptors, buffers or ports: no fault of the backend.
    Own(io::Error),
    /// No response head within [`RESPONSE_TIMEOUT`].
    Timeout,
    /// The backend answered something that is not HTTP.
    Malformed(&'static str),
}

impl Conn {
    async fn run(&mut self) -> io::Result<()> {
        let mut first = true;
        loop {
            let Some(req) = self.read_request(first).await? else {
                return Ok(());
            };
            first = false;
            self.said_close = false;
            if self.forward(req).await == Next::Close || self.said_close {
                if self.linger {
                    self.linger().await;
                }
                return Ok(());
            }
        }
    }

    /// Send `req` to a backend (retrying on another when that is safe) and relay the answer.
    async fn forward(&mut self, req: Request) -> Next {
        let started = Instant::now();
        self.head_only = req.method == Method::Head;
        let table = self.port.table.load();
        let proxy_port = self.port.spec.listen.port();
        let mut tried = [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_ATTEMPTS];
        let mut n_tried = 0;
        let mut fresh = false;
        let mut continued = false;
        let head_len = self.head.len();
        // The body, once read from the client, cannot be sent again.
        let mut body_taken = false;
        for _ in 0..MAX_ATTEMPTS * 2 {
            if n_tried == MAX_ATTEMPTS {
                break;
            }
            let Some(backend) = table.pick(&tried[..n_tried]) else {
                break;
            };
            let guard = backend.begin();
            let reused = if fresh { None } else { backend.conns.take() };
            let is_reused = reused.is_some();
            let mut up = match reused {
                Some(s) => s,
                None => match connect(&backend).await {
                    Ok(s) => s,
                    Err(e) if own_shortage(&e) => {
                        drop(guard);
                        return self.busy(&req, body_taken, started, &e).await;
                    }
                    Err(e) => {
                        backend.error();
                        backend.eject();
                        tried[n_tried] = backend.addr;
                        n_tried += 1;
                        tracing::warn!(proxy_port, backend = %backend.addr, error = %e, retry = true, "Backend connection failed");
                        continue;
                    }
                },
            };
            self.head.truncate(head_len);
            head::finish_request(&mut self.head, req.needs_host, backend.addr);
            self.upbuf.clear();
            let sent = self
                .exchange(&mut up, &req, &mut body_taken, &mut continued)
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(Failure::Stale) if is_reused && !body_taken => {
                    fresh = true;
                    continue;
                }
                Err(f @ (Failure::Stale | Failure::Unanswered(_))) => {
                    let e = match f {
                        Failure::Unanswered(e) => e,
                        _ => io::Error::new(io::ErrorKind::ConnectionReset, "connection closed unanswered"),
                    };
                    backend.error();
                    tried[n_tried] = backend.addr;
                    n_tried += 1;
                    let retry = !body_taken && req.method.idempotent();
                    tracing::warn!(proxy_port, backend = %backend.addr, error = %e, retry, "Backend request failed");
                    if retry {
                        fresh = false;
                        continue;
                    }
                    self.port.observe(started.elapsed(), true);
                    self.local(502, "Bad Gateway", "the backend failed", true).await;
                    return Next::Close;
                }
                Err(Failure::Client(e)) => {
                    tracing::debug!(proxy_port, peer = %self.peer_ip, error = %e, "Client went away during the request");
                    match e.kind() {
                        io::ErrorKind::InvalidData => {
                            self.local(400, "Bad Request", "malformed request body", true)
                                .await
                        }
                        io::ErrorKind::TimedOut => {
                            self.local(408, "Request Timeout", "the request body came too slowly", true)
                                .await
                        }
                        _ => {}
                    }
                    return Next::Close;
                }
                Err(Failure::Own(e)) => {
                    drop(guard);
                    return self.busy(&req, body_taken, started, &e).await;
                }
                Err(Failure::Timeout) => {
                    backend.error();
                    self.port.observe(started.elapsed(), true);
                    tracing::warn!(proxy_port, backend = %backend.addr, "Backend response timed out");
                    self.local(504, "Gateway Timeout", "the backend did not answer in time", true)
                        .await;
                    return Next::Close;
                }
                Err(Failure::Malformed(why)) => {
                    backend.error();
                    self.port.observe(started.elapsed(), true);
                    tracing::warn!(proxy_port, backend = %backend.addr, error = why, "Backend answered with a malformed response");
                    self.local(502, "Bad Gateway", "the backend's response was malformed", true)
                        .await;
                    return Next::Close;
                }
            };
            self.port.observe(started.elapsed(), resp.status >= 500);
            let next = self.relay(up, resp, &req, &backend).await;
            drop(guard);
            return next;
        }
        self.port.observe(started.elapsed(), true);
        // An unread body keeps the connection from being reused.
        let close = !body_taken && req.body != Framing::Empty;
        self.linger = close;
        if n_tried == 0 {
            tracing::debug!(proxy_port, "No backend available");
            self.local(502, "Bad Gateway", "no backend available", close)
                .await;
        } else {
            self.local(502, "Bad Gateway", "no backend answered", close).await;
        }
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Answer `503` with `Retry-After` when the proxy itself lacks a resource to reach a backend
    /// (descriptors, buffers, local ports): the backend is neither blamed nor ejected.
    async fn busy(&mut self, req: &Request, body_taken: bool, started: Instant, e: &io::Error) -> Next {
        static SHORT: Throttle = Throttle::new(Duration::from_secs(5));
        if let Some(held) = SHORT.allow() {
            tracing::warn!(proxy_port = self.port.spec.listen.port(), error = %e, similar_not_logged = held, "The proxy is short of resources: answering 503");
        }
        self.port.observe(started.elapsed(), true);
        let close = !body_taken && req.body != Framing::Empty;
        self.linger = close;
        self.local_with(
            503,
            "Service Unavailable",
            "the proxy is overloaded",
            close,
            "Retry-After: 1\r\n",
        )
        .await;
        if close || self.said_close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }
}

/// Errors that say the proxy itself is short of something (descriptors, socket buffers, memory,
/// local ports), not that the backend failed.
pub fn own_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// A failure before any response byte: on a reused connection it means the backend had closed it.
fn stale_or(e: io::Error) -> Failure {
    if own_shortage(&e) {
        return Failure::Own(e);
    }
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => Failure::Stale,
        _ => Failure::Unanswered(e),
    }
}

async fn connect(backend: &Backend) -> io::Result<TcpStream> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = s.set_nodelay(true);
    Ok(s)
}
