//! dewy-proxy at the network edge, on real sockets: clients that trickle heads or bodies, more
//! clients than the cap, idle backend connections closed under the pool, and the drain of
//! keep-alive connections when the proxy stops.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dewy::metrics::Render;
use dewy::proxy::{self, Options, PortSpec, ProxyHandle, Server, Timeouts};
use support::backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Start an HTTP proxy in-process on a free 127.0.0.1 port with `options`, its table set to
/// `backends`.
async fn proxy_with(options: Options, backends: Vec<SocketAddr>) -> (ProxyHandle, Server, SocketAddr) {
    let l = backend::listener();
    let addr = l.local_addr().expect("addr");
    let spec: PortSpec = format!("{addr}/http").parse().expect("spec");
    let (h, s) = proxy::start_with(vec![spec], vec![l], options)
        .await
        .expect("proxy starts");
    h.set_backends(addr.port(), backends).await.expect("set");
    (h, s, addr)
}

fn short_timeouts() -> Timeouts {
    Timeouts {
        head: Duration::from_secs(1),
        body_grace: Duration::from_secs(1),
        drain_idle: Duration::from_secs(1),
    }
}

/// Read one response (head lowercased, body by Content-Length); `None` when the connection
/// closes first.
async fn response(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut byte)).await {
            Ok(Ok(1)) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

/// True when the peer closes within `within` (reading and dropping what comes first).
async fn closes_within(s: &mut TcpStream, within: Duration) -> bool {
    let until = tokio::time::Instant::now() + within;
    let mut scratch = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut scratch)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n";

/// Send `pieces` one per `every`, looking for an answer after each; what was answered (empty
/// when nothing came before the pieces ran out or the proxy closed).
async fn trickle<'a>(s: &mut TcpStream, pieces: impl Iterator<Item = &'a [u8]>, every: Duration) -> String {
    let mut answered = Vec::new();
    for piece in pieces {
        if s.write_all(piece).await.is_err() {
            break;
        }
        tokio::time::sleep(every).await;
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            answered.extend_from_slice(&buf[..n]);
            if n == 0 || answered.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    String::from_utf8_lossy(&answered).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_cut_at_the_deadline() {
    let b = backend::http("a").await;
    let options = Options {
        timeouts: short_timeouts(),
        ..Options::default()
    };
    let (_h, _s, addr) = proxy_with(options, vec![b.addr]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // One byte every 200 ms: each read comes well within any per-read timeout, the whole head
    // never does.
    let started = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: app.example\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let answered = trickle(&mut s, head.chunks(1), Duration::from_millis(200)).await;
    assert!(
        answered.starts_with("HTTP/1.1 408"),
        "a head trickled for {:?} was not cut: {answered:?}",
        started.elapsed()
    );
    assert_eq!(b.served(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_body_is_cut_below_the_rate_floor() {
    let b = backend::http("a").await;
    let options = Options {
        timeouts: short_timeouts(),
        ..Options::default()
    };
    let (_h, _s, addr) = proxy_with(options, vec![b.addr]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
        .await
        .expect("head");
    // 10 bytes every 100 ms is 100 B/s, below the 500 B/s floor: cut after about the 1 s grace.
    let body = [b'x'; 10 * 200];
    let answered = trickle(&mut s, body.chunks(10), Duration::from_millis(100)).await;
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_clients_get_503_and_open_ones_are_served() {
    let b = backend::http("a").await;
    let options = Options {
        max_connections: Some(3),
        ..Options::default()
    };
    let (h, _s, addr) = proxy_with(options, vec![b.addr]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(GET).await.expect("write");
        let (head, _) = response(&mut s).await.expect("answered");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        held.push(s);
    }
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    extra.write_all(GET).await.expect("write");
    let (head, body) = response(&mut extra).await.expect("answered");
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("too many open connections"));
    assert!(closes_within(&mut extra, Duration::from_secs(10)).await);
    // The connections it has are still served.
    for s in &mut held {
        s.write_all(GET).await.expect("write");
        let (head, _) = response(s).await.expect("answered");
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    let text = h.render();
    assert!(text.contains("dewy_proxy_connections_shed_total 1"), "{text}");
    assert!(text.contains("dewy_proxy_client_connections_max 3"), "{text}");
    // Once one closes, a new client is served again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(GET).await.expect("write");
        if let Some((head, _)) = response(&mut s).await {
            if head.starts_with("http/1.1 200") {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "no client served after one closed");
}

/// A backend that answers every request on a connection with a small keep-alive response and
/// closes all its connections when told to.
async fn closing_backend() -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let mut close = close_rx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    tokio::select! {
                        r = s.read(&mut chunk) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        },
                        _ = close.wait_for(|c| *c) => return,
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    (addr, close_tx)
}

fn gauge(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_backend_connections_closed_by_the_backend_are_reaped_without_a_request() {
    let (up, close) = closing_backend().await;
    let (h, _s, addr) = proxy_with(Options::default(), vec![up]).await;
    // A burst of 20 concurrent requests leaves about 20 idle backend connections.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(GET).await.expect("write");
            response(&mut s).await.expect("answered").0
        }));
    }
    for c in clients {
        assert!(c.await.expect("client").starts_with("http/1.1 200"));
    }
    let before = gauge(&h.render(), "dewy_proxy_idle_backend_connections");
    assert!(before >= 2, "the burst left {before} idle backend connections");
    // The backend closes them all; no request comes to take one, yet they are closed.
    close.send_replace(true);
    let mut after = before;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = gauge(&h.render(), "dewy_proxy_idle_backend_connections");
        if after == 0 {
            break;
        }
    }
    assert_eq!(
        after, 0,
        "idle backend connections still kept after the backend closed them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_serves_the_next_request_of_an_idle_keep_alive_connection() {
    let b = backend::http("a").await;
    let options = Options {
        timeouts: Timeouts {
            drain_idle: Duration::from_secs(20),
            ..Timeouts::default()
        },
        ..Options::default()
    };
    let (_h, server, addr) = proxy_with(options, vec![b.addr]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(GET).await.expect("write");
    let (head, _) = response(&mut s).await.expect("answered");
    assert!(!head.contains("connection: close"), "{head}");
    let drained = tokio::spawn(server.shutdown(Duration::from_secs(30)));
    // The client's pool reuses the connection a moment after the stop began.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(GET).await.expect("write");
    let (head, _) = response(&mut s)
        .await
        .expect("a request sent on an idle keep-alive connection while stopping is answered");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closes_within(&mut s, Duration::from_secs(10)).await);
    tokio::time::timeout(Duration::from_secs(20), drained)
        .await
        .expect("the drain ends once no connection is left")
        .expect("drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_answers_pipelined_requests_already_received() {
    let b = backend::http("a").await;
    let (_h, server, addr) = proxy_with(Options::default(), vec![b.addr]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(GET).await.expect("write");
    response(&mut s).await.expect("answered");
    // A slow request in flight while the stop comes, with two more pipelined behind it.
    s.write_all(b"GET /slow?ms=500 HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let drained = tokio::spawn(server.shutdown(Duration::from_secs(30)));
    let mut heads = Vec::new();
    while let Some((head, _)) = response(&mut s).await {
        heads.push(head);
    }
    assert_eq!(heads.len(), 3, "{heads:?}");
    assert!(heads.iter().all(|h| h.starts_with("http/1.1 200")), "{heads:?}");
    assert!(!heads[0].contains("connection: close"), "{heads:?}");
    assert!(heads[2].contains("connection: close"), "{heads:?}");
    tokio::time::timeout(Duration::from_secs(20), drained)
        .await
        .expect("drain ends")
        .expect("drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_closes_quiet_keep_alive_connections_after_the_idle_grace() {
    let b = backend::http("a").await;
    let options = Options {
        timeouts: short_timeouts(),
        ..Options::default()
    };
    let (h, server, addr) = proxy_with(options, vec![b.addr]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(GET).await.expect("write");
    response(&mut s).await.expect("answered");
    let started = Instant::now();
    let drained = tokio::spawn(server.shutdown(Duration::from_secs(60)));
    assert!(closes_within(&mut s, Duration::from_secs(30)).await);
    tokio::time::timeout(Duration::from_secs(30), drained)
        .await
        .expect("drain ends")
        .expect("drain");
    // Well before drain-time (60 s): the idle grace (1 s here) closed it.
    assert!(started.elapsed() < Duration::from_secs(50));
    let text = h.render();
    assert!(
        text.contains("dewy_proxy_drain_connections_total{end=\"idle\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("dewy_proxy_drain_connections_total{end=\"cut\"} 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_are_kept_until_drain_time_and_then_cut() {
    let b = backend::http("a").await;
    let (h, server, addr) = proxy_with(Options::default(), vec![b.addr]).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = response(&mut s).await.expect("101");
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let drained = tokio::spawn(server.shutdown(Duration::from_secs(2)));
    // The tunnel still echoes during the drain...
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"ping").await.expect("write");
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.expect("echo while draining");
    assert_eq!(&echo, b"ping");
    // ...and is cut at drain-time.
    assert!(closes_within(&mut s, Duration::from_secs(30)).await);
    drained.await.expect("drain");
    let text = h.render();
    assert!(
        text.contains("dewy_proxy_drain_connections_total{end=\"cut\"} 1"),
        "{text}"
    );
}
