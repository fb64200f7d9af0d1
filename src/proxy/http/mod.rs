//! HTTP mode: each client connection is served by one task that reads a request, forwards it on a
//! pooled keep-alive connection to the next backend, and streams the response back — no
//! per-request tasks, channels or copies of the head beyond one rewrite. Forwarded headers,
//! hop-by-hop removal, streamed bodies both ways, upgrades (a tunnel after `101`), retries on
//! another backend, and `100 Continue`.

pub(crate) mod body;
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

    /// The next request head, or `None` when the client closed, went quiet, or the proxy stops.
    ///
    /// A head must be complete within the head timeout (30 s) of the accept (first request) or of
    /// its first byte (later ones), however it trickles in (then 408): a deadline, not a limit on
    /// each read. Between requests the connection may idle for [`KEEPALIVE_IDLE`]. Once the proxy
    /// stops, a new connection's first request is still waited for
    /// [`FIRST_REQUEST_WHEN_STOPPING`], and an idle keep-alive connection for the drain's idle
    /// grace (5 s): a request arriving meanwhile is served (and answered with
    /// `Connection: close`), else the connection gets a lingering close.
    async fn read_request(&mut self, first: bool) -> io::Result<Option<Request>> {
        use tokio::time::Instant;
        self.head_only = false;
        let limits = self.port.timeouts;
        let idle_since = Instant::now();
        let mut head_by = first.then_some(self.accepted + limits.head);
        loop {
            if !self.inbuf.is_empty() {
                match head::parse_request(&self.inbuf, &self.peer_ip, &mut self.head) {
                    Ok(Some(r)) => {
                        self.inbuf.advance(r.len);
                        return Ok(Some(r));
                    }
                    Ok(None) => {}
                    Err(why) => {
                        self.reject(why).await;
                        self.linger().await;
                        return Ok(None);
                    }
                }
                head_by.get_or_insert_with(|| Instant::now() + limits.head);
            }
            let stopped = self.life.is_stopped();
            let started = !self.inbuf.is_empty();
            let until = match head_by {
                Some(by) if !started && stopped => by.min(idle_since + FIRST_REQUEST_WHEN_STOPPING),
                Some(by) => by,
                None if stopped => idle_since + limits.drain_idle.min(KEEPALIVE_IDLE),
                None => idle_since + KEEPALIVE_IDLE,
            };
            let left = until.saturating_duration_since(Instant::now());
            let read = if stopped || started {
                body::read_some(&mut self.client, &mut self.inbuf, left).await
            } else {
                // Waiting between requests: a stop changes how long to wait.
                tokio::select! {
                    r = body::read_some(&mut self.client, &mut self.inbuf, left) => r,
                    _ = self.life.stopped() => continue,
                }
            };
            match read {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !self.inbuf.is_empty() => {
                    self.local(
                        408,
                        "Request Timeout",
                        "the request head did not arrive in time",
                        true,
                    )
                    .await;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut && stopped => {
                    // Last call: a request that came just now is still served.
                    if matches!(self.client.try_read_buf(&mut self.inbuf), Ok(n) if n > 0) {
                        continue;
                    }
                    self.open.ended(DrainEnd::IdleGrace);
                    self.linger().await;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Close the sending side, then read and drop what the client still sends, up to
    /// [`LINGER_BYTES`] or for [`LINGER_FOR`].
    async fn linger(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = self.client.shutdown().await;
        let until = tokio::time::Instant::now() + LINGER_FOR;
        let mut drained = 0;
        let mut scratch = [0u8; 16 * 1024];
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(until, self.client.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    /// Answer a request refused before any backend saw it, then close.
    async fn reject(&mut self, why: Reject) {
        let (status, reason, text) = why.status();
        tracing::debug!(peer = %self.peer_ip, status, reason = text, "Request refused");
        // Counted as a request, not as an error of the proxy or its backends.
        self.port.observe(Duration::ZERO, false);
        self.local(status, reason, text, true).await;
    }

    /// Write a short plain-text response made here.
    async fn local(&mut self, status: u16, reason: &str, text: &str, close: bool) {
        self.local_with(status, reason, text, close, "").await;
    }

    /// [`Conn::local`] with `extra` header lines (each ending in CRLF). A stopping proxy closes
    /// the connection after it unless another request has already arrived.
    async fn local_with(&mut self, status: u16, reason: &str, text: &str, close: bool, extra: &str) {
        use std::io::Write as _;
        let close = close || (self.life.is_stopped() && self.inbuf.is_empty());
        self.said_close = close;
        self.out.clear();
        let _ = write!(
            self.out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}{}\r\n",
            status.to_string().len() + reason.len() + text.len() + 4,
            if close { "Connection: close\r\n" } else { "" },
        );
        if !self.head_only {
            let _ = writeln!(self.out, "{status} {reason}: {text}");
        }
        let _ = body::write_all(&mut self.client, &self.out, BODY_IDLE).await;
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

    /// Send the head and body on `up` and read the response head (interim responses handled).
    /// On success the response head for the client is in `out` and its body starts in `upbuf`.
    async fn exchange(
        &mut self,
        up: &mut TcpStream,
        req: &Request,
        body_taken: &mut bool,
        continued: &mut bool,
    ) -> Result<head::Response, Failure> {
        // A body already here goes in the same write as the head.
        // It stays in `inbuf` until the response comes, so a retry can send it again.
        let mut body_done = req.body == Framing::Empty;
        let mut combined = 0;
        if let Framing::Length(n) = req.body {
            if self.inbuf.len() as u64 >= n {
                combined = n as usize;
                self.head.extend_from_slice(&self.inbuf[..combined]);
                body_done = true;
            }
        }
        if let Err(e) = body::write_all(up, &self.head, BODY_IDLE).await {
            return Err(stale_or(e));
        }
        if !body_done {
            if req.expect_continue && !*continued && self.inbuf.is_empty() {
                *continued = true;
                body::write_all(&mut self.client, b"HTTP/1.1 100 Continue\r\n\r\n", BODY_IDLE)
                    .await
                    .map_err(Failure::Client)?;
            }
            *body_taken = true;
            let pace = Pace::floor(BODY_IDLE, self.port.timeouts.body_grace, BODY_MIN_RATE);
            match body::copy(&mut self.client, &mut self.inbuf, up, req.body, false, pace).await {
                Ok(_) => {}
                Err(BodyError::Read(e)) => return Err(Failure::Client(e)),
                Err(BodyError::Write(e)) => {
                    // The backend may have answered before taking the whole body (413, 401) and
                    // closed: that answer goes to the client, whose connection then closes.
                    let soon = tokio::time::Instant::now() + EARLY_ANSWER_WAIT;
                    return match self.response_head(up, req, soon, false).await {
                        Ok(mut r) => {
                            r.reusable = false;
                            self.linger = true;
                            Ok(r)
                        }
                        Err(_) => Err(Failure::Unanswered(e)),
                    };
                }
            }
        }
        let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
        self.body_in_inbuf = combined;
        let r = self.response_head(up, req, deadline, true).await;
        self.body_in_inbuf = 0;
        let r = r?;
        self.inbuf.advance(combined);
        Ok(r)
    }

    /// Read the backend's response head (passing interim responses on) until `deadline`. With
    /// `keep_alive` false the client connection is closed after the response.
    async fn response_head(
        &mut self,
        up: &mut TcpStream,
        req: &Request,
        deadline: tokio::time::Instant,
        keep_alive: bool,
    ) -> Result<head::Response, Failure> {
        loop {
            let client = ForClient {
                head_request: req.method == Method::Head,
                http10: req.http10,
                // A stopping proxy says so in the last response of each connection.
                // unless the client's next request has already arrived (pipelined).
                keep_alive: keep_alive
                    && req.keep_alive
                    && (!self.life.is_stopped() || self.inbuf.len() > self.body_in_inbuf),
                upgrade: req.upgrade,
            };
            match head::parse_response(&self.upbuf, client, &mut self.out) {
                // A 101 is final (tunnel); one the client did not ask for was refused by the parser.
                Ok(Some(r)) if (100..200).contains(&r.status) && r.status != 101 => {
                    // Interim: 100 is answered here already; others go to HTTP/1.1 clients.
                    self.upbuf.advance(r.len);
                    if r.status != 100 && !req.http10 {
                        body::write_all(&mut self.client, &self.out, BODY_IDLE)
                            .await
                            .map_err(Failure::Client)?;
                    }
                    continue;
                }
                Ok(Some(r)) => {
                    self.upbuf.advance(r.len);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(why) => return Err(Failure::Malformed(why)),
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match body::read_some(up, &mut self.upbuf, left).await {
                Ok(0) if self.upbuf.is_empty() => return Err(Failure::Stale),
                Ok(0) => {
                    return Err(Failure::Malformed(
                        "the backend closed in the middle of the response head",
                    ))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Failure::Timeout),
                Err(e) if self.upbuf.is_empty() => return Err(stale_or(e)),
                Err(e) => return Err(Failure::Unanswered(e)),
            }
        }
    }

    /// Send the response head and body to the client; keep the backend connection when it can
    /// serve another request.
    async fn relay(
        &mut self,
        mut up: TcpStream,
        resp: head::Response,
        req: &Request,
        backend: &Backend,
    ) -> Next {
        if resp.status == 101 && req.upgrade {
            return self.tunnel(up, backend).await;
        }
        // A body already here goes in the same write as the head.
        let mut body_done = resp.body == Framing::Empty;
        if let Framing::Length(n) = resp.body {
            if self.upbuf.len() as u64 >= n {
                self.out.extend_from_slice(&self.upbuf[..n as usize]);
                self.upbuf.advance(n as usize);
                body_done = true;
            }
        }
        if let Err(e) = body::write_all(&mut self.client, &self.out, BODY_IDLE).await {
            tracing::debug!(peer = %self.peer_ip, error = %e, "Client went away before the response");
            return Next::Close;
        }
        if !body_done {
            let unchunk = req.http10 && resp.body == Framing::Chunked;
            match body::copy(
                &mut up,
                &mut self.upbuf,
                &mut self.client,
                resp.body,
                unchunk,
                Pace::idle(BODY_IDLE),
            )
            .await
            {
                Ok(_) => {}
                Err(BodyError::Read(e)) => {
                    backend.error();
                    tracing::warn!(proxy_port = self.port.spec.listen.port(), backend = %backend.addr, error = %e, "Backend failed in the middle of a response body");
                    return Next::Close;
                }
                Err(BodyError::Write(e)) => {
                    tracing::debug!(peer = %self.peer_ip, error = %e, "Client went away during the response");
                    return Next::Close;
                }
            }
        }
        if resp.reusable && self.upbuf.is_empty() {
            backend.conns.put(up);
        }
        self.upbuf.clear();
        if resp.close_client {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// After `101`: bytes both ways until either side closes (counted in flight meanwhile).
    async fn tunnel(&mut self, mut up: TcpStream, backend: &Backend) -> Next {
        let result = async {
            body::write_all(&mut self.client, &self.out, BODY_IDLE).await?;
            if !self.upbuf.is_empty() {
                body::write_all(&mut self.client, &self.upbuf, BODY_IDLE).await?;
                self.upbuf.clear();
            }
            if !self.inbuf.is_empty() {
                body::write_all(&mut up, &self.inbuf, BODY_IDLE).await?;
                self.inbuf.clear();
            }
            super::copy::both_ways(&mut self.client, &mut up, self.tunnel_idle).await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(backend = %backend.addr, error = %e, "Tunnel ended with an error");
        }
        Next::Close
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
