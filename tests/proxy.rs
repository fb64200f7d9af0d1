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

/// Start the proxy in-process on a free 127.0.0.1 port.
async fn proxy_on(proto: &str, state: Option<std::path::PathBuf>) -> (ProxyHandle, Server, SocketAddr) {
    let l = backend::listener();
    let addr = l.local_addr().expect("addr");
    let spec: PortSpec = format!("{addr}/{proto}").parse().expect("spec");
    let (h, s) = proxy::start(vec![spec], vec![l], state)
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
    let rss = rss_kib();
    assert!(rss < 200 * 1024, "RSS {rss} KiB after 512 MiB through the proxy");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
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
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.expect("read"), 1, "closed: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
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
    assert_eq!(
        dead_stats.errors, 1,
        "the refusing backend is ejected after one failure: {st:?}"
    );
    assert!(dead_stats.ejected);
    assert_eq!(st.errors, 0, "{st:?}");
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
    assert_eq!(d.errors, 1, "ejected after the first refusal: {st:?}");
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
        async move { c.get(format!("http://{addr}/slow?ms=1500")).send().await }
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
        async move { c.get(format!("http://{addr}/slow?ms=1000")).send().await }
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
    let (h2, _s2) = proxy::start(vec![spec], vec![l], Some(state.clone()))
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
    let (h3, _s3) = proxy::start(vec![spec], vec![l], Some(state.clone()))
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
    s.shutdown(Duration::from_secs(20)).await;
    let r = slow.await.expect("task").expect("finished during shutdown");
    assert_eq!(r.status(), 200);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
    let _: &Backend = &b;
}
