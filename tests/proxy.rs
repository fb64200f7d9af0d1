//! The container-mode reverse proxy against real backends on real sockets: forwarding, streaming,
//! upgrades, TCP mode, round robin, ejection and retry, table swaps, drain and persistence.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dewy::proxy::{self, PortSpec, ProxyHandle, Server};
use support::backend::{self, Backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The proxy's idle timeout in these tests (TCP connections and tunnels).
const IDLE: Duration = Duration::from_secs(300);

/// Start the proxy in-process on a free 127.0.0.1 port.
async fn proxy_on(proto: &str, state: Option<std::path::PathBuf>) -> (ProxyHandle, Server, SocketAddr) {
    let l = backend::listener();
    let addr = l.local_addr().expect("addr");
    let spec: PortSpec = format!("{addr}/{proto}").parse().expect("spec");
    let (h, s) = proxy::start(vec![spec], vec![l], state, IDLE)
        .await
        .expect("proxy starts");
    (h, s, addr)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn get_json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    let r = c.get(url).send().await.expect("request");
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_forwarded_headers_and_hop_by_hop_removal() {
    let b = backend::http("a").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    let r = client()
        .get(format!("http://{addr}/echo?q=1"))
        .header("host", "app.example")
        .header("x-forwarded-for", "10.1.2.3")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eDp5")
        .header("te", "trailers")
        .header("x-app", "kept")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // Hop-by-hop headers of the backend's response are gone too.
    assert!(r.headers().get("x-hop").is_none(), "{:?}", r.headers());
    assert!(r.headers().get("keep-alive").is_none(), "{:?}", r.headers());
    assert_eq!(r.headers()["x-backend"], "a");
    let j: serde_json::Value = r.json().await.expect("json");
    let hd = &j["headers"];
    assert_eq!(j["uri"], "/echo?q=1");
    assert_eq!(hd["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(hd["x-forwarded-proto"], "http");
    assert_eq!(hd["x-forwarded-host"], "app.example");
    assert_eq!(hd["host"], "app.example");
    assert_eq!(hd["x-app"], "kept");
    for gone in ["x-secret", "keep-alive", "proxy-authorization", "te", "upgrade"] {
        assert!(hd.get(gone).is_none(), "{gone} reached the backend: {hd}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_no_backend_is_502_then_round_robin() {
    let (h, _s, addr) = proxy_on("http", None).await;
    let c = client();
    let r = c.get(format!("http://{addr}/")).send().await.expect("request");
    assert_eq!(r.status(), 502);
    assert!(r.text().await.expect("body").contains("no backend"));
    // A HEAD gets the same answer without a body, and the connection goes on.
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    raw.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut raw, false).await;
    assert!(head.starts_with("http/1.1 502"), "{head}");
    let (head, body) = read_response(&mut raw, true).await;
    assert!(head.starts_with("http/1.1 502"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("no backend"));
    let bs = [
        backend::http("a").await,
        backend::http("b").await,
        backend::http("c").await,
    ];
    h.set_backends(addr.port(), bs.iter().map(|b| b.addr).collect())
        .await
        .expect("set");
    let mut seen = Vec::new();
    for _ in 0..9 {
        seen.push(
            get_json(&c, &format!("http://{addr}/")).await["id"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        );
    }
    for id in ["a", "b", "c"] {
        assert_eq!(seen.iter().filter(|s| *s == id).count(), 3, "{seen:?}");
    }
    assert_eq!(
        h.backends()[&addr.port()],
        bs.iter().map(|b| b.addr).collect::<Vec<_>>()
    );
    assert!(h.set_backends(1, vec![]).await.is_err(), "unknown port accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_streams_large_bodies_both_ways() {
    let b = backend::http("a").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    let c = client();
    // Download 256 MiB, reading it as it comes.
    let total: u64 = 256 << 20;
    let mut r = c
        .get(format!("http://{addr}/big?bytes={total}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let mut got = 0u64;
    while let Some(chunk) = r.chunk().await.expect("chunk") {
        got += chunk.len() as u64;
    }
    assert_eq!(got, total);
    // Upload 256 MiB from a stream of unknown length (chunked).
    let chunk = bytes::Bytes::from(vec![b'y'; 1 << 20]);
    let stream = futures_util::stream::iter((0..256).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = c
        .post(format!("http://{addr}/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(j["body_len"], 256u64 << 20);
    assert_eq!(j["headers"]["transfer-encoding"], "chunked");
    // Memory stayed small: the proxy did not hold whole bodies (this process has the client,
    // backend and proxy; 256 MiB bodies would show).
    let rss = support::status_kib(std::process::id(), "VmRSS:");
    assert!(rss < 200 * 1024, "RSS {rss} KiB after 512 MiB through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upgrade_passthrough() {
    let b = backend::http("a").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut s, false).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for msg in ["hello", "over the tunnel"] {
        s.write_all(msg.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await.expect("echo");
        assert_eq!(buf, msg.as_bytes());
    }
    // The tunnel counts as in flight until it closes.
    assert_eq!(h.status()[0].backends[0].in_flight, 1);
    drop(s);
    assert_eq!(h.drain(b.addr, Duration::from_secs(20)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_mode_round_robin_and_refused_backend() {
    let bs = [backend::tcp("a").await, backend::tcp("b").await];
    let dead = backend::refused_addr();
    let (h, _s, addr) = proxy_on("tcp", None).await;
    h.set_backends(addr.port(), vec![bs[0].addr, dead, bs[1].addr])
        .await
        .expect("set");
    let mut seen = Vec::new();
    for i in 0..6 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut id = [0u8; 2];
        s.read_exact(&mut id).await.expect("backend greets");
        seen.push(id[0] as char);
        let msg = format!("ping {i}");
        s.write_all(msg.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await.expect("echo");
        assert_eq!(buf, msg.as_bytes());
    }
    assert!(seen.contains(&'a') && seen.contains(&'b'), "{seen:?}");
    let st = &h.status()[0];
    let dead_stats = st.backends.iter().find(|b| b.addr == dead).expect("dead listed");
    // Ejected after the first refusal (tried again only if the machine stalled past the ejection
    // time); without ejection it would take every other connection.
    assert!((1..=2).contains(&dead_stats.errors), "{st:?}");
    assert_eq!(st.errors, 0, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tunnels_close_after_the_idle_timeout() {
    let tcp_backend = backend::tcp("a").await;
    let http_backend = backend::http("h").await;
    let idle = Duration::from_millis(400);
    let mut started = Vec::new();
    for (proto, b) in [("tcp", tcp_backend.addr), ("http", http_backend.addr)] {
        let l = backend::listener();
        let addr = l.local_addr().expect("addr");
        let spec: PortSpec = format!("{addr}/{proto}").parse().expect("spec");
        let (h, s) = proxy::start(vec![spec], vec![l], None, idle)
            .await
            .expect("proxy");
        h.set_backends(addr.port(), vec![b]).await.expect("set");
        started.push((h, s, addr));
    }
    // TCP: traffic for three times the timeout keeps it open, then silence closes it.
    let mut s = tokio::net::TcpStream::connect(started[0].2)
        .await
        .expect("connect");
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).await.expect("hello");
    for _ in 0..6 {
        s.write_all(b"x").await.expect("write");
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.expect("echo");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(read_to_end(&mut s).await, "", "closed without more bytes");
    // A WebSocket-style tunnel goes the same way.
    let mut s = tokio::net::TcpStream::connect(started[1].2)
        .await
        .expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut s, false).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert_eq!(read_to_end(&mut s).await, "", "tunnel closed when idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refused_backend_ejected_and_retried() {
    let good = backend::http("good").await;
    let dead = backend::refused_addr();
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![dead, good.addr])
        .await
        .expect("set");
    let c = client();
    for i in 0..40 {
        let url = format!("http://{addr}/n{i}");
        let r = if i % 2 == 0 {
            c.get(&url).send().await
        } else {
            c.post(&url).body("payload").send().await
        }
        .expect("request");
        assert_eq!(r.status(), 200, "request {i}");
    }
    assert_eq!(good.served(), 40);
    let st = &h.status()[0];
    let d = st.backends.iter().find(|b| b.addr == dead).expect("listed");
    // Ejected after the first refusal: without ejection it would take every other request.
    assert!((1..=3).contains(&d.errors), "{st:?}");
    assert_eq!(st.errors, 0);
}

/// Send GETs in a loop on keep-alive connections until `stop`; returns (ok, failed).
fn load(
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    path: &'static str,
) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let c = client();
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match c.get(format!("http://{addr}{path}")).send().await {
                Ok(r) => {
                    let status = r.status();
                    match r.bytes().await {
                        Ok(_) if status == 200 => ok += 1,
                        other => {
                            eprintln!("status {status}: {other:?}");
                            failed += 1
                        }
                    }
                }
                Err(e) => {
                    eprintln!("error {e}");
                    failed += 1
                }
            }
        }
        (ok, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_swap_under_load_loses_nothing() {
    let blue = backend::http("blue").await;
    let green = backend::http("green").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![blue.addr]).await.expect("set");
    // A slow request in flight on blue when the table switches to green.
    let slow = tokio::spawn({
        let c = client();
        async move { c.get(format!("http://{addr}/slow?ms=3000")).send().await }
    });
    support::wait_for_async("the slow request on blue", Duration::from_secs(20), || async {
        (h.status()[0].backends[0].in_flight == 1).then_some(())
    })
    .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = (0..4).map(|_| load(addr, stop.clone(), "/")).collect();
    for i in 0..20 {
        let next = if i % 2 == 0 { green.addr } else { blue.addr };
        h.set_backends(addr.port(), vec![next]).await.expect("swap");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.set_backends(addr.port(), vec![green.addr]).await.expect("swap");
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for l in loads {
        let (o, f) = l.await.expect("load task");
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0, "{ok} ok");
    assert!(ok > 20, "{ok}");
    let r = slow.await.expect("task").expect("slow request completes");
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(j["id"], "blue");
    assert_eq!(h.drain(blue.addr, Duration::from_secs(20)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_in_flight_then_returns() {
    let b = backend::http("a").await;
    let other = backend::http("b").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    let slow = tokio::spawn({
        let c = client();
        async move { c.get(format!("http://{addr}/slow?ms=3000")).send().await }
    });
    support::wait_for_async("the slow request", Duration::from_secs(20), || async {
        (h.status()[0].backends[0].in_flight == 1).then_some(())
    })
    .await;
    h.set_backends(addr.port(), vec![other.addr]).await.expect("swap");
    // Too short a drain reports the request still in flight.
    assert_eq!(h.drain(b.addr, Duration::from_millis(10)).await, 1);
    let t = Instant::now();
    assert_eq!(h.drain(b.addr, Duration::from_secs(30)).await, 0);
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(slow.await.expect("task").expect("slow").status(), 200);
    // Idle and unknown backends drain at once.
    assert_eq!(h.drain(backend::refused_addr(), Duration::from_secs(30)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_table_is_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("proxy.json");
    let b = backend::http("a").await;
    let (h, s, addr) = proxy_on("http", Some(state.clone())).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    s.shutdown(Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&state).expect("state file written");
    assert!(text.contains(&b.addr.to_string()), "{text}");
    // A new proxy on the same port serves the saved backend before anyone sets it.
    let l = std::net::TcpListener::bind(addr).expect("rebind");
    let spec: PortSpec = format!("{addr}").parse().expect("spec");
    let (h2, _s2) = proxy::start(vec![spec], vec![l], Some(state.clone()), IDLE)
        .await
        .expect("restart");
    assert_eq!(h2.backends()[&addr.port()], vec![b.addr]);
    assert_eq!(get_json(&client(), &format!("http://{addr}/")).await["id"], "a");
    // A corrupt file is set aside, not fatal.
    std::fs::write(&state, "{broken").expect("write");
    let l = backend::listener();
    let spec: PortSpec = format!("{}", l.local_addr().expect("addr"))
        .parse()
        .expect("spec");
    let (h3, _s3) = proxy::start(vec![spec], vec![l], Some(state.clone()), IDLE)
        .await
        .expect("start");
    assert!(h3.backends().values().all(Vec::is_empty));
    assert!(dir.path().join("proxy.json.bad").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let b = backend::http("a").await;
    let (h, s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    let served = Arc::new(AtomicU64::new(0));
    let slow = tokio::spawn({
        let c = client();
        let served = served.clone();
        async move {
            let r = c.get(format!("http://{addr}/slow?ms=800")).send().await;
            served.fetch_add(1, Ordering::Relaxed);
            r
        }
    });
    support::wait_for_async("the slow request", Duration::from_secs(20), || async {
        (h.status()[0].backends[0].in_flight == 1).then_some(())
    })
    .await;
    // A kept-alive connection with a slow request in flight, and an idle one.
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    raw.write_all(b"GET /slow?ms=800 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut idle, true).await;
    assert!(
        head.starts_with("http/1.1 200") && !head.contains("connection: close"),
        "{head}"
    );
    support::wait_for_async("both slow requests", Duration::from_secs(20), || async {
        (h.status()[0].backends[0].in_flight == 2).then_some(())
    })
    .await;
    s.shutdown(Duration::from_secs(20)).await;
    let r = slow.await.expect("task").expect("finished during shutdown");
    assert_eq!(r.status(), 200);
    // The request in flight was answered, saying the connection closes; the idle one was closed.
    let (head, _) = read_response(&mut raw, true).await;
    assert!(
        head.starts_with("http/1.1 200") && head.contains("connection: close"),
        "{head}"
    );
    assert_eq!(read_to_end(&mut raw).await, "");
    assert_eq!(read_to_end(&mut idle).await, "");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
    let _: &Backend = &b;
}

// ---- the `dewy-proxy` daemon ----

const BIN: &str = env!("CARGO_BIN_EXE_dewy-proxy");
const LONG: Duration = Duration::from_secs(60);

/// A config, state dir and private bus for one `dewy-proxy` app.
struct Daemonised {
    dir: tempfile::TempDir,
    bus: support::dbus::PrivateBus,
    config: std::path::PathBuf,
}

impl Daemonised {
    fn new(ports: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("web.toml");
        let list: Vec<String> = ports.iter().map(|p| format!("{p:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "mode = \"container\"\nregistry = \"img://localhost:5000/web\"\nport = [{}]\ndrain-time = \"20s\"\n",
                list.join(", ")
            ),
        )
        .expect("config");
        Daemonised {
            dir,
            bus: support::dbus::PrivateBus::start(),
            config,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "web".into(),
            "--config".into(),
            self.config.display().to_string(),
            "--bus".into(),
            self.bus.address.clone(),
        ]
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![(
            "STATE_DIRECTORY".into(),
            self.dir.path().join("state").display().to_string(),
        )]
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("proxy.log")
    }

    async fn conn(&self) -> zbus::Connection {
        dewy::bus::BusChoice::Address(self.bus.address.clone())
            .connect()
            .await
            .expect("bus")
    }
}

/// `GET /metrics` over a unix socket.
fn metrics_text(sock: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("metrics socket");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn envs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// Wait until the daemon answers on the bus.
async fn wait_ready(conn: &zbus::Connection, d: &mut support::proc::Daemon) {
    let start = Instant::now();
    loop {
        if dewy::bus::client::proxy_backends(conn, "web").await.is_ok() {
            return;
        }
        assert!(d.running(), "dewy-proxy exited:\n{}", d.log());
        assert!(start.elapsed() < LONG, "dewy-proxy not ready:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_dbus_set_backends_status_drain_and_restore() {
    use dewy::bus::client::{proxy_backends, proxy_drain, proxy_set_backends, proxy_status};
    let port = backend::listener().local_addr().expect("addr");
    let t = Daemonised::new(&[format!("{port}")]);
    // sd_notify: READY and STATUS go to a datagram socket of ours.
    let notify_path = t.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify.set_read_timeout(Some(LONG)).expect("timeout");
    let mut env = t.env();
    env.push(("NOTIFY_SOCKET".into(), notify_path.display().to_string()));
    let mut d = support::proc::Daemon::start(BIN, &strs(&t.args()), &envs(&env), t.dir.path(), &t.log());
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("sd_notify message");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        msg.contains("READY=1") && msg.contains("STATUS=serving 1 port, 0 backends"),
        "{msg}"
    );
    let conn = t.conn().await;
    wait_ready(&conn, &mut d).await;
    let b = backend::http("a").await;
    proxy_set_backends(&conn, "web", port.port(), &[b.addr])
        .await
        .expect("SetBackends");
    assert_eq!(
        proxy_backends(&conn, "web").await.expect("Backends")[&port.port()],
        vec![b.addr]
    );
    assert_eq!(get_json(&client(), &format!("http://{port}/")).await["id"], "a");
    let status = proxy_status(&conn, "web").await.expect("Status");
    assert_eq!(status["ports"][0]["protocol"], "http", "{status}");
    assert_eq!(
        status["ports"][0]["backends"][0]["addr"],
        b.addr.to_string(),
        "{status}"
    );
    assert_eq!(status["ports"][0]["backends"][0]["requests"], 1, "{status}");
    assert_eq!(
        proxy_drain(&conn, "web", b.addr, Duration::from_secs(5))
            .await
            .expect("Drain"),
        0
    );
    // Prometheus metrics on the unix socket beside the table.
    let metrics = metrics_text(&t.dir.path().join("state/metrics.sock"));
    let line = format!(
        "dewy_proxy_requests_total{{proxy_port=\"{}\",protocol=\"http\"}} 1",
        port.port()
    );
    assert!(metrics.contains(&line), "{metrics}");
    assert!(
        metrics.contains("dewy_proxy_request_duration_seconds_count"),
        "{metrics}"
    );
    // Bad input is refused and changes nothing.
    let err = proxy_set_backends(&conn, "web", 1, &[b.addr])
        .await
        .expect_err("unknown port");
    assert!(format!("{err:#}").contains("no proxy port 1"), "{err:#}");
    let proxy = zbus::Proxy::new(
        &conn,
        dewy::bus::names::proxy_name("web"),
        dewy::bus::names::PROXY_PATH,
        dewy::bus::names::PROXY_IFACE,
    )
    .await
    .expect("proxy");
    let r: zbus::Result<()> = proxy.call("SetBackends", &(port.port(), vec!["nonsense"])).await;
    assert!(format!("{:?}", r.expect_err("bad address")).contains("not an address"));
    assert_eq!(
        proxy_backends(&conn, "web").await.expect("Backends")[&port.port()],
        vec![b.addr]
    );
    // The status line follows the table.
    let n = notify.recv(&mut buf).expect("status update");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("serving 1 port, 1 backend"));
    // SIGTERM: exit 0; a new process serves the saved table before anyone sets it.
    assert!(d.terminate(LONG).success(), "{}", d.log());
    let mut d = support::proc::Daemon::start(BIN, &strs(&t.args()), &envs(&t.env()), t.dir.path(), &t.log());
    wait_ready(&conn, &mut d).await;
    assert_eq!(
        proxy_backends(&conn, "web").await.expect("Backends")[&port.port()],
        vec![b.addr]
    );
    assert_eq!(get_json(&client(), &format!("http://{port}/")).await["id"], "a");
    assert!(d.terminate(LONG).success());
    assert!(t.dir.path().join("state/proxy.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_sockets_that_do_not_match_the_ports() {
    let held = backend::listener();
    let other = backend::listener().local_addr().expect("addr");
    let t = Daemonised::new(&[format!("{other}")]);
    let mut d =
        support::activate::spawn_with_sockets(BIN, &strs(&t.args()), &envs(&t.env()), &[&held], &t.log());
    let status = support::wait_for("dewy-proxy to refuse", LONG, || d.child.try_wait().ok().flatten());
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains("do not match the configured ports") && log.contains(&format!("no socket for {other}")),
        "{log}"
    );
    // A config that is not container mode is a config error (EX_CONFIG).
    std::fs::write(&t.config, "mode = \"assets\"\nregistry = \"file:///x\"\n").expect("config");
    let mut d = support::proc::Daemon::start(BIN, &strs(&t.args()), &envs(&t.env()), t.dir.path(), &t.log());
    let status = support::wait_for("dewy-proxy to refuse", LONG, || d.child.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(78), "{}", d.log());
}

/// GET in a loop on a keep-alive client; like browsers and most HTTP libraries, an idempotent
/// request that fails because the server closed a reused connection is sent once more.
fn load_retrying_once(
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, u64)> {
    tokio::spawn(async move {
        let c = client();
        let (mut ok, mut retried, mut failed) = (0, 0, 0);
        while !stop.load(Ordering::Relaxed) {
            let mut outcome = None;
            for attempt in 0..2 {
                match c.get(format!("http://{addr}/")).send().await {
                    Ok(r) if r.status() == 200 => match r.bytes().await {
                        Ok(_) => {
                            outcome = Some(attempt);
                            break;
                        }
                        Err(e) => eprintln!("body: {e}"),
                    },
                    Ok(r) => {
                        eprintln!("status {}", r.status());
                        break;
                    }
                    Err(e) => eprintln!("attempt {attempt}: {e:?}"),
                }
            }
            match outcome {
                Some(0) => ok += 1,
                Some(_) => {
                    ok += 1;
                    retried += 1
                }
                None => failed += 1,
            }
        }
        (ok, retried, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_restart_under_load_with_inherited_socket_loses_nothing() {
    use dewy::bus::client::proxy_set_backends;
    // The test holds the listening socket, as systemd's dewy-proxy@.socket would.
    let held = backend::listener();
    let addr = held.local_addr().expect("addr");
    let t = Daemonised::new(&[format!("{addr}")]);
    let conn = t.conn().await;
    let b = backend::http("a").await;
    let mut d =
        support::activate::spawn_with_sockets(BIN, &strs(&t.args()), &envs(&t.env()), &[&held], &t.log());
    wait_ready(&conn, &mut d).await;
    proxy_set_backends(&conn, "web", addr.port(), &[b.addr])
        .await
        .expect("SetBackends");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = (0..4).map(|_| load_retrying_once(addr, stop.clone())).collect();
    for _ in 0..3 {
        let before = b.served();
        support::wait_for_async("requests through the proxy", LONG, || async {
            (b.served() > before + 50).then_some(())
        })
        .await;
        assert!(d.terminate(LONG).success(), "{}", d.log());
        d = support::activate::spawn_with_sockets(BIN, &strs(&t.args()), &envs(&t.env()), &[&held], &t.log());
        wait_ready(&conn, &mut d).await;
    }
    let before = b.served();
    support::wait_for_async("requests after the last restart", LONG, || async {
        (b.served() > before + 50).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut retried, mut failed) = (0, 0, 0);
    for l in loads {
        let (o, r, f) = l.await.expect("load");
        ok += o;
        retried += r;
        failed += f;
    }
    eprintln!("{ok} ok, {retried} retried once, {failed} failed");
    assert_eq!(failed, 0, "{ok} ok; log:\n{}", d.log());
    assert!(d.log().contains("Backends restored"), "{}", d.log());
    assert!(d.terminate(LONG).success());
}

/// Read one response (head and a `Content-Length` body) from `s`; returns (head, body).
async fn read_response(s: &mut tokio::net::TcpStream, has_body: bool) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.expect("read"),
            1,
            "closed: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("length"));
    let mut body = vec![0u8; if has_body { len } else { 0 }];
    s.read_exact(&mut body).await.expect("body");
    (head, body)
}

async fn read_to_end(s: &mut tokio::net::TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut all))
        .await
        .expect("closed in time")
        .expect("read");
    String::from_utf8_lossy(&all).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_pipelining_keep_alive_and_backend_connection_reuse() {
    let b = backend::http("a").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    // Three requests in one write: three answers in order.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nPOST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .expect("write");
    for (path, len) in [("/one", 0), ("/two", 3), ("/three", 0)] {
        let (head, body) = read_response(&mut s, true).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            (j["uri"].as_str(), j["body_len"].as_u64()),
            (Some(path), Some(len))
        );
    }
    // Sequential requests from other clients reuse backend connections: one per serving thread
    // (one per CPU) at most.
    let c = client();
    for _ in 0..20 {
        get_json(&c, &format!("http://{addr}/")).await;
        let other = client();
        get_json(&other, &format!("http://{addr}/")).await;
    }
    assert_eq!(b.served(), 43);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!(
        b.accepted() <= threads.min(16),
        "{} backend connections for sequential requests",
        b.accepted()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_10_clients_expect_continue_and_head() {
    let b = backend::http("a").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    // HTTP/1.0: a chunked answer arrives unwrapped and the connection closes after it.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /big?bytes=100000 HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let all = read_to_end(&mut s).await;
    let (head, body) = all.split_once("\r\n\r\n").expect("head");
    let head = head.to_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("connection: close"),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(body.len(), 100_000);
    assert!(body.bytes().all(|c| c == b'x'));
    // Expect: 100-continue is answered by the proxy; the backend never sees Expect.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .expect("write");
    let mut cont = [0u8; 25];
    s.read_exact(&mut cont).await.expect("100");
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.expect("body");
    let (head, body) = read_response(&mut s, true).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(j["body_len"], 5);
    assert!(j["headers"].get("expect").is_none(), "{j}");
    // HEAD: a length but no body, and the connection goes on.
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut s, false).await;
    assert!(
        head.starts_with("http/1.1 200") && head.contains("content-length:"),
        "{head}"
    );
    s.write_all(b"GET /after-head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let all = read_to_end(&mut s).await;
    assert!(all.contains("/after-head"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ambiguous_requests_never_reach_a_backend() {
    let b = backend::http("a").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    for (raw, status) in [
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
            "400",
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            "501",
        ),
        ("GET / HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n", "400"),
        ("GET / HTTP/1.1\r\n\r\n", "400"),
        ("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
        ("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03\r\n\r\n", "400"),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(raw.as_bytes()).await.expect("write");
        let all = read_to_end(&mut s).await;
        assert!(
            all.starts_with(&format!("HTTP/1.1 {status} ")),
            "{raw:?} got {all:?}"
        );
    }
    assert_eq!(b.served(), 0, "a refused request reached the backend");
    // A chunked body that breaks its framing: its head has gone on (bodies stream), but the
    // client gets a 400 and the bytes after the break are never read as a request.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let all = read_to_end(&mut s).await;
    assert!(all.starts_with("HTTP/1.1 400 "), "{all:?}");
    assert!(!all.contains("smuggled"), "{all:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.served(), 1, "the smuggled request reached the backend");
}

/// A raw backend: answers the first request of each connection with `reply` and keeps the
/// connection open, then drops any later request on it unanswered (as a backend does when its
/// keep-alive timeout and the next request cross). Returns its address and requests answered.
async fn first_request_only_backend(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
                if s.write_all(reply).await.is_err() {
                    return;
                }
                // The next request is read and dropped with the connection.
                let _ = s.read(&mut chunk).await;
            });
        }
    });
    (addr, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_closing_a_kept_connection_is_retried() {
    let (backend_addr, answered) =
        first_request_only_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![backend_addr])
        .await
        .expect("set");
    let c = client();
    // Each request after the first finds the kept connection dropped under it and is sent again
    // on a new one: a GET, and a POST whose small body was still held by the proxy.
    for i in 0..6 {
        let r = if i % 2 == 0 {
            c.get(format!("http://{addr}/")).send().await
        } else {
            c.post(format!("http://{addr}/")).body("payload").send().await
        }
        .expect("request");
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.expect("body"), "ok");
    }
    assert_eq!(answered.load(Ordering::Relaxed), 6);
    assert_eq!(h.status()[0].errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_malformed_backend_answers_are_502() {
    let (h, _s, addr) = proxy_on("http", None).await;
    let c = client();
    for reply in [
        &b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let (backend_addr, _) = first_request_only_backend(reply).await;
        h.set_backends(addr.port(), vec![backend_addr])
            .await
            .expect("set");
        let r = c.get(format!("http://{addr}/")).send().await;
        match r {
            // A broken chunked body can only be cut short: the head has gone out already.
            Ok(r) if r.status() == 200 => assert!(r.bytes().await.is_err(), "{reply:?}"),
            Ok(r) => assert_eq!(r.status(), 502, "{reply:?}"),
            Err(e) => panic!("{reply:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_early_answer_to_a_large_upload_reaches_the_client() {
    // A backend that refuses the upload as soon as it sees the head and closes without reading
    // the body.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend_addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
                    .await;
            });
        }
    });
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![backend_addr])
        .await
        .expect("set");
    let total: usize = 64 << 20;
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let head = format!("PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n");
        wr.write_all(head.as_bytes()).await.expect("head");
        let chunk = vec![b'u'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
    assert!(
        answer.to_lowercase().contains("connection: close") && answer.ends_with("too large"),
        "{answer:?}"
    );
    let sent = writer.await.expect("writer");
    assert!(sent < total, "the whole upload went through ({sent} bytes)");
}

/// Send `raw` (one request that closes the connection) through the proxy; return the JSON the
/// echo backend answered.
async fn echo_through(addr: SocketAddr, raw: &str) -> serde_json::Value {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw.as_bytes()).await.expect("write");
    let (head, body) = read_response(&mut s, true).await;
    assert!(head.starts_with("http/1.1 200"), "{raw:?}: {head}");
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_host_and_forwarding_headers_survive_connection_and_are_not_spoofed() {
    let b = backend::http("a").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    // `Connection` naming Host, the forwarding chain and the length takes none of them away.
    let j = echo_through(
        addr,
        "POST /named HTTP/1.1\r\nHost: app.example\r\n\
         Connection: Host, X-Forwarded-For, Content-Length, X-Private\r\n\
         X-Forwarded-For: 10.1.2.3\r\nX-Private: 1\r\nContent-Length: 4\r\n\r\nbody",
    )
    .await;
    let hd = &j["headers"];
    assert_eq!(hd["host"], "app.example", "{hd}");
    assert_eq!(hd["x-forwarded-for"], "10.1.2.3, 127.0.0.1", "{hd}");
    assert_eq!(hd["x-forwarded-host"], "app.example", "{hd}");
    assert_eq!(j["body_len"], 4);
    assert!(hd.get("x-private").is_none(), "{hd}");
    // Client-address headers a client could forge are replaced by the proxy's own.
    let j = echo_through(
        addr,
        "GET /spoof HTTP/1.1\r\nHost: app.example\r\nForwarded: for=203.0.113.9\r\n\
         X-Real-IP: 203.0.113.9\r\n\r\n",
    )
    .await;
    let hd = &j["headers"];
    assert_eq!(hd["x-real-ip"], "127.0.0.1", "{hd}");
    assert_eq!(hd["x-forwarded-for"], "127.0.0.1", "{hd}");
    assert!(hd.get("forwarded").is_none(), "{hd}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_absolute_form_targets_go_upstream_in_origin_form() {
    let b = backend::http("a").await;
    let (h, _s, addr) = proxy_on("http", None).await;
    h.set_backends(addr.port(), vec![b.addr]).await.expect("set");
    for (target, uri, host) in [
        ("http://a.example/p?q=1", "/p?q=1", "a.example"),
        ("http://a.example", "/", "a.example"),
        ("http://a.example:8080?q=1", "/?q=1", "a.example:8080"),
        ("HTTPS://b.example/x", "/x", "b.example"),
    ] {
        let j = echo_through(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: other.example\r\n\r\n"),
        )
        .await;
        assert_eq!(j["uri"], uri, "{target}");
        assert_eq!(j["headers"]["host"], host, "{target}");
        assert_eq!(j["headers"]["x-forwarded-host"], host, "{target}");
    }
    let served = b.served();
    for bad in ["ftp://a.example/", "http://user@a.example/", "http:///p"] {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {bad} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let all = read_to_end(&mut s).await;
        assert!(all.starts_with("HTTP/1.1 400 "), "{bad}: {all:?}");
    }
    assert_eq!(b.served(), served, "a refused target reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_unsolicited_101_is_a_502() {
    let (h, _s, addr) = proxy_on("http", None).await;
    for reply in [
        // Another protocol after the 101 ...
        &b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n\x81\x05hello"[..],
        // ... or even a final response: the 101 is not passed on as if it were interim.
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let (backend_addr, answered) = first_request_only_backend(reply).await;
        h.set_backends(addr.port(), vec![backend_addr])
            .await
            .expect("set");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let all = read_to_end(&mut s).await;
        assert!(all.starts_with("HTTP/1.1 502 "), "{all:?}");
        assert!(!all.contains("101") && !all.contains("hello"), "{all:?}");
        assert_eq!(answered.load(Ordering::Relaxed), 1);
    }
}
