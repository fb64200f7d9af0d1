//! Proxy soak (not a test): `dewy-proxy` under mixed load for a long run — wrk on keep-alive
//! connections, a client opening a new connection per request, a pipelining client, uploads and
//! WebSocket echo sessions — with its RSS and descriptor count sampled every second. Prints the
//! samples per minute and the trend after warm-up (least-squares slope and last minute against
//! the first minute after warm-up), and every failure the clients saw.
//!
//! `cargo bench --bench proxy_soak` (needs `wrk`; DEWY_SOAK_SECS sets the length, default 600;
//! the first 60 s are warm-up).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{free_port, have, wait_for};

const LONG: Duration = Duration::from_secs(60);
const WARM_UP: u64 = 60;

/// Counters of one kind of client.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
    }
}

/// Read one response from `s` (`buf` keeps what follows it); the status code.
fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16, String> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status: u16 = head
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < end + len {
        let n = s.read(&mut chunk).map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("closed in the body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..end + len);
    Ok(status)
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn expect_200(status: u16) -> Result<(), String> {
    (status == 200).then_some(()).ok_or(format!("status {status}"))
}

/// A new connection per request.
fn one_shot(port: u16) -> Result<(), String> {
    let mut s = connect(port)?;
    s.write_all(b"GET /once HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    expect_200(response(&mut s, &mut Vec::new())?)
}

/// Three requests in one write, three answers, 20 times on one connection.
fn pipelined(port: u16) -> Result<(), String> {
    let mut s = connect(port)?;
    let mut buf = Vec::new();
    for _ in 0..20 {
        s.write_all(b"GET /a HTTP/1.1\r\nHost: soak\r\n\r\nGET /b HTTP/1.1\r\nHost: soak\r\n\r\nGET /c HTTP/1.1\r\nHost: soak\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        for _ in 0..3 {
            expect_200(response(&mut s, &mut buf)?)?;
        }
    }
    Ok(())
}

/// A 256 KiB upload on a kept connection, 5 times.
fn upload(port: u16) -> Result<(), String> {
    let body = vec![b'u'; 256 * 1024];
    let mut s = connect(port)?;
    let mut buf = Vec::new();
    for _ in 0..5 {
        s.write_all(
            format!(
                "POST /up HTTP/1.1\r\nHost: soak\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .map_err(|e| format!("write: {e}"))?;
        s.write_all(&body).map_err(|e| format!("write body: {e}"))?;
        expect_200(response(&mut s, &mut buf)?)?;
    }
    Ok(())
}

/// An upgraded connection echoing 50 messages.
fn websocket(port: u16) -> Result<(), String> {
    let mut s = connect(port)?;
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: soak\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let status = response(&mut s, &mut buf)?;
    if status != 101 {
        return Err(format!("upgrade answered {status}"));
    }
    let mut echo = [0u8; 32];
    for i in 0..50u32 {
        let msg = format!("message {i:>24}");
        s.write_all(msg.as_bytes())
            .map_err(|e| format!("ws write: {e}"))?;
        s.read_exact(&mut echo[..msg.len()])
            .map_err(|e| format!("ws read: {e}"))?;
        if &echo[..msg.len()] != msg.as_bytes() {
            return Err("echo differs".into());
        }
    }
    Ok(())
}

fn rss_kib(pid: i32) -> u64 {
    support::status_kib(pid as u32, "VmRSS:")
}

fn fds(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Least-squares slope of `ys` against their index, per 60 samples.
fn slope_per_minute(ys: &[u64]) -> f64 {
    let n = ys.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<u64>() as f64 / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mean_x;
        num += dx * (*y as f64 - mean_y);
        den += dx * dx;
    }
    num / den * 60.0
}

fn mean(ys: &[u64]) -> f64 {
    ys.iter().sum::<u64>() as f64 / ys.len().max(1) as f64
}

fn main() {
    if !have("wrk") {
        println!("proxy soak skipped: wrk is needed (apt-get install -y wrk)");
        return;
    }
    let secs: u64 = std::env::var("DEWY_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
        .max(WARM_UP + 60);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend = rt.block_on(support::backend::http("soak"));
    let port = free_port();
    let (bus, proxy) = support::proc::proxy_daemon("soak", &[format!("127.0.0.1:{port}")], dir.path());
    let conn = rt.block_on(async {
        dewy::bus::BusChoice::Address(bus.address.clone())
            .connect()
            .await
            .expect("bus")
    });
    let backends: [SocketAddr; 1] = [backend.addr];
    wait_for("dewy-proxy on the bus", LONG, || {
        rt.block_on(dewy::bus::client::proxy_set_backends(
            &conn, "soak", port, &backends,
        ))
        .ok()
    });

    let running = Arc::new(AtomicBool::new(true));
    type Client = (&'static str, fn(u16) -> Result<(), String>);
    let kinds: [Client; 4] = [
        ("new connection each", one_shot),
        ("pipelined x3", pipelined),
        ("upload 256 KiB", upload),
        ("websocket echo", websocket),
    ];
    let mut clients = Vec::new();
    let mut tallies = Vec::new();
    for (name, f) in kinds {
        let tally = Arc::new(Tally::default());
        tallies.push((name, tally.clone()));
        let running = running.clone();
        clients.push(std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                tally.record(f(port));
            }
        }));
    }
    let wrk = Command::new("wrk")
        .args([
            "-t1",
            "-c16",
            &format!("-d{secs}s"),
            "--timeout",
            "10s",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrk");

    let pid = proxy.pid();
    let (mut rss, mut fd) = (Vec::new(), Vec::new());
    let started = Instant::now();
    println!("dewy-proxy soak: {secs} s of mixed load (wrk keep-alive -c16, new connection each, pipelined, uploads, WebSocket echo)");
    println!("minute   RSS KiB (mean)   descriptors (mean)");
    for second in 1..=secs {
        let next = started + Duration::from_secs(second);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        rss.push(rss_kib(pid));
        fd.push(fds(pid));
        if second % 60 == 0 {
            let from = (second - 60) as usize;
            println!(
                "{:>6}   {:>14.0}   {:>18.1}",
                second / 60,
                mean(&rss[from..]),
                mean(&fd[from..])
            );
        }
    }
    running.store(false, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let out = wrk.wait_with_output().expect("wrk output");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("requests in") || l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(str::trim)
        .collect();

    let after = WARM_UP as usize;
    let (rss_w, fd_w) = (&rss[after..], &fd[after..]);
    let first = |v: &[u64]| mean(&v[..60.min(v.len())]);
    let last = |v: &[u64]| mean(&v[v.len().saturating_sub(60)..]);
    println!();
    println!(
        "after warm-up: RSS {:.0} -> {:.0} KiB (last minute / first minute {:.3}), slope {:+.1} KiB/min; \
         descriptors {:.1} -> {:.1}, slope {:+.2}/min; RSS max {} KiB",
        first(rss_w),
        last(rss_w),
        last(rss_w) / first(rss_w).max(1.0),
        slope_per_minute(rss_w),
        first(fd_w),
        last(fd_w),
        slope_per_minute(fd_w),
        rss.iter().max().copied().unwrap_or(0)
    );
    println!("wrk keep-alive: {}", summary.join("; "));
    for (name, t) in &tallies {
        println!(
            "{name}: {} ok, {} failed{}",
            t.ok.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
            t.errors
                .lock()
                .map(|e| if e.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.join("; "))
                })
                .unwrap_or_default()
        );
    }
    drop(proxy);
}
