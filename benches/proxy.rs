//! Proxy benchmark (not a test): requests/s, latency and CPU time per request through `dewy-proxy`
//! (HTTP and TCP) against nginx (HTTP reverse proxy with a keep-alive upstream, and `stream` TCP
//! proxy), HAProxy (`mode http` with idle upstream connections, and `mode tcp`) and against the
//! backend directly, all measured with wrk in the same run, the proxies taking turns over several
//! rounds so that a slower or busier moment of the machine does not favour one; RSS of dewy-proxy
//! idle and under load; failed requests across 20 table swaps under load; throughput with 1,000
//! slowloris connections open against the same without them; descriptors of dewy-proxy after a
//! burst of 500 connections, and once the idle backend connections have expired.
//!
//! `cargo bench --bench proxy` (needs `wrk` and `nginx`, and `haproxy` for its lines;
//! DEWY_BENCH_SECS sets each run's length, default 5; DEWY_BENCH_ROUNDS the rounds, default 3;
//! DEWY_BENCH_CONNS the connections, default 64).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{free_port, have, wait_for};

const LONG: Duration = Duration::from_secs(60);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An nginx with a private config and prefix; stopped on drop.
struct Nginx(Child);

impl Nginx {
    fn start(dir: &Path, name: &str, conf: &str, ports: &[u16]) -> Nginx {
        let prefix = dir.join(name);
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx dir");
        let path = prefix.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&prefix)
            .args(["-g", "daemon off; pid nginx.pid;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx");
        for p in ports {
            wait_for(&format!("nginx {name} on {p}"), LONG, || {
                std::net::TcpStream::connect(("127.0.0.1", *p)).ok()
            });
        }
        Nginx(child)
    }
}

impl Nginx {
    /// The worker processes (children of the master).
    fn workers(&self) -> Vec<i32> {
        let pid = self.0.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let _ = self.0.wait();
    }
}

/// An HAProxy with a private config; stopped on drop.
struct Haproxy(Child);

impl Haproxy {
    fn start(dir: &Path, conf: &str, ports: &[u16]) -> Haproxy {
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).expect("haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy");
        for p in ports {
            wait_for(&format!("haproxy on {p}"), LONG, || {
                std::net::TcpStream::connect(("127.0.0.1", *p)).ok()
            });
        }
        Haproxy(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Open file descriptors of `pid`.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Slowloris: `n` connections that each send a request head a few bytes at a time and never
/// finish it, for as long as the returned flag stays set.
fn slowloris(port: u16, n: usize) -> (Arc<AtomicBool>, Arc<AtomicU64>, std::thread::JoinHandle<usize>) {
    use std::io::Write;
    let on = Arc::new(AtomicBool::new(true));
    let flag = on.clone();
    let open = Arc::new(AtomicU64::new(0));
    let counter = open.clone();
    let t = std::thread::spawn(move || {
        let mut conns: Vec<std::net::TcpStream> = Vec::new();
        for _ in 0..n {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(mut s) => {
                    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: victim\r\n");
                    let _ = s.set_nonblocking(true);
                    conns.push(s);
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("slowloris connect: {e}");
                    break;
                }
            }
        }
        let opened = conns.len();
        while flag.load(Ordering::Relaxed) {
            for s in &mut conns {
                let _ = s.write(b"X-a: b\r\n");
            }
            for _ in 0..10 {
                if !flag.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        opened
    });
    (on, open, t)
}

/// Raise this process's soft descriptor limit (the attack holds 1,000 sockets).
fn raise_own_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard);
        }
    }
}

/// The stream module: built in, or a dynamic module to load.
fn stream_module() -> Option<String> {
    let out = Command::new("nginx").arg("-V").output().ok()?;
    let v = String::from_utf8_lossy(&out.stderr).to_string();
    if v.contains("--with-stream ") || v.contains("--with-stream\n") {
        return Some(String::new());
    }
    for p in [
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "/usr/share/nginx/modules/ngx_stream_module.so",
    ] {
        if Path::new(p).exists() {
            return Some(format!("load_module {p};\n"));
        }
    }
    if v.contains("with-stream=dynamic") {
        return None;
    }
    None
}

#[derive(Debug, Default, Clone)]
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    failed: u64,
    /// CPU time of the proxy per request, in microseconds (0 when not measured).
    cpu_us: f64,
}

fn parse_wrk(out: &str) -> Wrk {
    let w = support::load::parse_wrk(out);
    Wrk {
        rps: w.rps,
        p50_ms: w.p50_ms,
        p99_ms: w.p99_ms,
        requests: w.requests,
        failed: w.non_2xx + w.socket_errors,
        cpu_us: 0.0,
    }
}

fn wrk(url: &str, secs: u64, conns: u64) -> Wrk {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "--timeout",
            "10s",
            url,
        ])
        .output()
        .expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let w = parse_wrk(&text);
    if w.rps == 0.0 {
        eprintln!(
            "wrk gave no figures for {url}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    w
}

/// CPU time (user + system, all threads) of `pids` so far, in microseconds.
fn cpu_us(pids: &[i32]) -> u64 {
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|stat| {
            // Fields after the command name (which may hold spaces): state is the first, then
            // utime is the 12th and stime the 13th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum::<u64>()
        * 1_000_000
        / tick
}

/// One wrk run with the CPU time the proxy processes `pids` spent per request.
fn measured(url: &str, secs: u64, conns: u64, pids: &[i32]) -> Wrk {
    let before = cpu_us(pids);
    let mut w = wrk(url, secs, conns);
    w.cpu_us = (cpu_us(pids) - before) as f64 / w.requests.max(1) as f64;
    w
}

/// The median run of several, by requests/s (its own latency and CPU figures kept).
fn median(mut runs: Vec<Wrk>) -> Wrk {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    runs.get(runs.len() / 2).cloned().unwrap_or_default()
}

fn rss_kib(pid: i32) -> u64 {
    support::status_kib(pid as u32, "VmRSS:")
}

fn line(name: &str, w: &Wrk) {
    let cpu = if w.cpu_us > 0.0 {
        format!("   CPU {:>5.2} us/req", w.cpu_us)
    } else {
        String::new()
    };
    println!(
        "{name:<22} {:>10.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms{cpu}   {} requests, {} failed",
        w.rps, w.p50_ms, w.p99_ms, w.requests, w.failed
    );
}

fn main() {
    if !have("wrk") || !have("nginx") {
        println!("proxy benchmark skipped: wrk and nginx are needed (apt-get install -y wrk nginx)");
        return;
    }
    raise_own_limit();
    let haproxy_here = have("haproxy");
    let secs = env_or("DEWY_BENCH_SECS", 5);
    let rounds = env_or("DEWY_BENCH_ROUNDS", 3).max(1);
    let conns = env_or("DEWY_BENCH_CONNS", 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let (b1, b2) = (free_port(), free_port());
    let (dp_http, dp_tcp, ng_http, ng_tcp) = (free_port(), free_port(), free_port(), free_port());
    let (hp_http, hp_tcp) = (free_port(), free_port());

    // The backend: a separate nginx answering a short body on two ports.
    let backend_conf = format!(
        "worker_processes 1;\nerror_log stderr error;\nevents {{ worker_connections 4096; }}\n\
         http {{ access_log off; keepalive_requests 1000000;\n\
           server {{ listen 127.0.0.1:{b1}; location / {{ return 200 \"hello from b1\\n\"; }} }}\n\
           server {{ listen 127.0.0.1:{b2}; location / {{ return 200 \"hello from b2\\n\"; }} }}\n}}\n"
    );
    let _backend = Nginx::start(dir.path(), "backend", &backend_conf, &[b1, b2]);

    // nginx as the reference proxy: same worker count as dewy-proxy's runtime (2).
    let stream = stream_module();
    let stream_block = match &stream {
        Some(_) => format!(
            "stream {{ upstream s {{ server 127.0.0.1:{b1}; }} server {{ listen 127.0.0.1:{ng_tcp}; proxy_pass s; }} }}\n"
        ),
        None => String::new(),
    };
    let proxy_conf = format!(
        "{}worker_processes 2;\nerror_log stderr error;\nevents {{ worker_connections 4096; }}\n\
         http {{ access_log off; keepalive_requests 1000000;\n\
           upstream app {{ server 127.0.0.1:{b1}; keepalive 128; }}\n\
           server {{ listen 127.0.0.1:{ng_http}; location / {{ proxy_pass http://app; proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\"; proxy_set_header Host $host;\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme; }} }}\n}}\n{stream_block}",
        stream.clone().unwrap_or_default()
    );
    let mut nginx_ports = vec![ng_http];
    if stream.is_some() {
        nginx_ports.push(ng_tcp);
    }
    let _nginx = Nginx::start(dir.path(), "proxy", &proxy_conf, &nginx_ports);
    // HAProxy with the same thread count, idle upstream connections kept (`http-reuse always`).
    let haproxy = haproxy_here.then(|| {
        let conf = format!(
            "global\n  nbthread 2\n  maxconn 4096\n\ndefaults\n  timeout connect 5s\n  timeout client 60s\n  \
             timeout server 60s\n  timeout http-request 30s\n  timeout http-keep-alive 75s\n\n\
             frontend fh\n  mode http\n  bind 127.0.0.1:{hp_http}\n  option forwardfor\n  default_backend bh\n\n\
             backend bh\n  mode http\n  http-reuse always\n  server b1 127.0.0.1:{b1}\n\n\
             frontend ft\n  mode tcp\n  bind 127.0.0.1:{hp_tcp}\n  default_backend bt\n\n\
             backend bt\n  mode tcp\n  server b1 127.0.0.1:{b1}\n"
        );
        Haproxy::start(dir.path(), &conf, &[hp_http, hp_tcp])
    });

    // dewy-proxy as a daemon, backends set over D-Bus.
    let ports = [format!("127.0.0.1:{dp_http}"), format!("127.0.0.1:{dp_tcp}/tcp")];
    let (bus, proxy) = support::proc::proxy_daemon("bench", &ports, dir.path());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let conn = rt.block_on(async {
        dewy::bus::BusChoice::Address(bus.address.clone())
            .connect()
            .await
            .expect("bus")
    });
    let set = |port: u16, backend: u16| {
        rt.block_on(dewy::bus::client::proxy_set_backends(
            &conn,
            "bench",
            port,
            &[SocketAddr::from(([127, 0, 0, 1], backend))],
        ))
    };
    wait_for("dewy-proxy on the bus", LONG, || set(dp_http, b1).ok());
    set(dp_tcp, b1).expect("set tcp");
    // Warm every path once.
    let mut warm = vec![b1, dp_http, dp_tcp, ng_http];
    if haproxy.is_some() {
        warm.extend([hp_http, hp_tcp]);
    }
    for p in warm {
        wrk(&format!("http://127.0.0.1:{p}/"), 1, 8);
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss_kib(proxy.pid());

    println!(
        "wrk -t2 -c{conns} -d{secs}s --latency, {rounds} rounds (proxies taking turns; median round shown); \
         backend: nginx (1 worker) returning a short body; 2 cores shared by all"
    );
    let direct = wrk(&format!("http://127.0.0.1:{b1}/"), secs, conns);
    line("direct to backend", &direct);
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), proxy.pid());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let dewy_pids = [proxy.pid()];
    let nginx_pids = _nginx.workers();
    let haproxy_pids: Vec<i32> = haproxy.iter().map(Haproxy::pid).collect();
    let (mut dh, mut dt, mut nh, mut nt) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut hh, mut ht) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        if haproxy.is_some() {
            hh.push(measured(
                &format!("http://127.0.0.1:{hp_http}/"),
                secs,
                conns,
                &haproxy_pids,
            ));
            ht.push(measured(
                &format!("http://127.0.0.1:{hp_tcp}/"),
                secs,
                conns,
                &haproxy_pids,
            ));
        }
        dh.push(measured(
            &format!("http://127.0.0.1:{dp_http}/"),
            secs,
            conns,
            &dewy_pids,
        ));
        nh.push(measured(
            &format!("http://127.0.0.1:{ng_http}/"),
            secs,
            conns,
            &nginx_pids,
        ));
        dt.push(measured(
            &format!("http://127.0.0.1:{dp_tcp}/"),
            secs,
            conns,
            &dewy_pids,
        ));
        if stream.is_some() {
            nt.push(measured(
                &format!("http://127.0.0.1:{ng_tcp}/"),
                secs,
                conns,
                &nginx_pids,
            ));
        }
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let (dewy_http, dewy_tcp, nginx_http) = (median(dh), median(dt), median(nh));
    let nginx_tcp = stream.as_ref().map(|_| median(nt));
    line("dewy-proxy HTTP", &dewy_http);
    line("nginx HTTP", &nginx_http);
    line("dewy-proxy TCP", &dewy_tcp);
    match &nginx_tcp {
        Some(w) => line("nginx stream TCP", w),
        None => println!("nginx stream TCP       skipped: this nginx has no stream module"),
    }
    let haproxy_figures = haproxy.as_ref().map(|_| (median(hh), median(ht)));
    match &haproxy_figures {
        Some((h, t)) => {
            line("HAProxy HTTP", h);
            line("HAProxy TCP", t);
        }
        None => println!("HAProxy                skipped: apt-get install -y haproxy"),
    }

    // 20 table swaps between the two backends under load.
    let swaps = 20;
    let url = format!("http://127.0.0.1:{dp_http}/");
    let loader = std::thread::spawn(move || wrk(&url, (swaps as u64 * 300).div_ceil(1000) + 2, conns));
    std::thread::sleep(Duration::from_millis(700));
    let mut swap_errors = 0;
    for i in 0..swaps {
        if set(dp_http, if i % 2 == 0 { b2 } else { b1 }).is_err() {
            swap_errors += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let during = loader.join().expect("wrk thread");

    // 1,000 slowloris connections held open while legitimate keep-alive traffic runs.
    let url = format!("http://127.0.0.1:{dp_http}/");
    let calm = wrk(&url, secs, conns);
    let (attack, opened, attacker) = slowloris(dp_http, 1000);
    let start = std::time::Instant::now();
    while opened.load(Ordering::Relaxed) < 1000 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let open_after = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let fds_attacked = fds(proxy.pid());
    let attacked = wrk(&url, secs, conns);
    attack.store(false, Ordering::Relaxed);
    let held = attacker.join().unwrap_or(0);

    // A burst of 500 concurrent connections, then the idle backend connections expire.
    std::thread::sleep(Duration::from_secs(1));
    let fds_before = fds(proxy.pid());
    let burst = wrk(&url, 3, 500);
    let fds_after_burst = fds(proxy.pid());
    let expiry = dewy::proxy::IDLE_BACKEND_FOR + Duration::from_secs(3);
    std::thread::sleep(expiry);
    let fds_later = fds(proxy.pid());

    println!();
    println!("ratios (1.00 = same):");
    let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let vs_nginx = |mode: &str, d: &Wrk, n: &Wrk| {
        println!(
            "  {mode:<4} dewy/nginx: throughput {:.2}, p50 {:.2}, p99 {:.2}, CPU per request {:.2}",
            r(d.rps, n.rps),
            r(d.p50_ms, n.p50_ms),
            r(d.p99_ms, n.p99_ms),
            r(d.cpu_us, n.cpu_us)
        )
    };
    vs_nginx("HTTP", &dewy_http, &nginx_http);
    if let Some(n) = &nginx_tcp {
        vs_nginx("TCP", &dewy_tcp, n);
    }
    if let Some((h, t)) = &haproxy_figures {
        let vs = |mode: &str, d: &Wrk, h: &Wrk| {
            println!(
                "  {mode:<4} dewy/HAProxy: throughput {:.2}, p50 {:.2}, p99 {:.2}, CPU per request {:.2}",
                r(d.rps, h.rps),
                r(d.p50_ms, h.p50_ms),
                r(d.p99_ms, h.p99_ms),
                r(d.cpu_us, h.cpu_us)
            )
        };
        vs("HTTP", &dewy_http, h);
        vs("TCP", &dewy_tcp, t);
    }
    println!(
        "  dewy/direct: HTTP throughput {:.2} (p50 {:.2}x), TCP throughput {:.2} (p50 {:.2}x)",
        r(dewy_http.rps, direct.rps),
        r(dewy_http.p50_ms, direct.p50_ms),
        r(dewy_tcp.rps, direct.rps),
        r(dewy_tcp.p50_ms, direct.p50_ms)
    );
    println!(
        "RSS of dewy-proxy: idle {} KiB, peak under load {} KiB",
        rss_idle,
        peak.load(Ordering::Relaxed)
    );
    println!(
        "{swaps} table swaps under load: {} requests, {} failed ({swap_errors} swap calls failed), {:.0} req/s",
        during.requests, during.failed, during.rps
    );
    println!(
        "under attack ({held} slowloris connections open after {:.1}s, dewy-proxy holding {fds_attacked} descriptors 2s later): \
         {:.0} req/s against {:.0} without, ratio {:.2}; {} requests, {} failed",
        open_after.as_secs_f64(),
        attacked.rps,
        calm.rps,
        r(attacked.rps, calm.rps),
        attacked.requests,
        attacked.failed
    );
    println!(
        "burst of 500 connections ({} requests, {} failed): dewy-proxy descriptors {fds_before} before, \
         {fds_after_burst} right after, {fds_later} {}s later (idle backend connections expire after {}s)",
        burst.requests,
        burst.failed,
        expiry.as_secs(),
        dewy::proxy::IDLE_BACKEND_FOR.as_secs()
    );
    drop(proxy);
}
