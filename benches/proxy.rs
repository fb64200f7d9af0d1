//! Proxy benchmark (not a test): requests/s and latency through `dewy-proxy` (HTTP and TCP) against
//! nginx (HTTP reverse proxy with a keep-alive upstream, and `stream` TCP proxy) and against the
//! backend directly, all measured with wrk in the same run; RSS of dewy-proxy idle and under load;
//! failed requests across 20 table swaps under load.
//!
//! `cargo bench --bench proxy` (needs `wrk` and `nginx`; DEWY_BENCH_SECS sets each run's length,
//! default 10; DEWY_BENCH_CONNS the connections, default 64).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::dbus::PrivateBus;
use support::proc::Daemon;
use support::wait_for;

const LONG: Duration = Duration::from_secs(60);

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

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

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let _ = self.0.wait();
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
}

fn ms(v: &str) -> f64 {
    let v = v.trim();
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mult
}

fn parse_wrk(out: &str) -> Wrk {
    let mut w = Wrk::default();
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            w.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            w.p50_ms = ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            w.p99_ms = ms(v);
        } else if t.contains("requests in") {
            w.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            w.failed += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // connect N, read N, write N, timeout N
            w.failed += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
                .sum::<u64>();
        }
    }
    w
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

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn line(name: &str, w: &Wrk) {
    println!(
        "{name:<22} {:>10.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   {} requests, {} failed",
        w.rps, w.p50_ms, w.p99_ms, w.requests, w.failed
    );
}

fn main() {
    if !have("wrk") || !have("nginx") {
        println!("proxy benchmark skipped: wrk and nginx are needed (apt-get install -y wrk nginx)");
        return;
    }
    let secs = env_or("DEWY_BENCH_SECS", 10);
    let conns = env_or("DEWY_BENCH_CONNS", 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let (b1, b2) = (free_port(), free_port());
    let (dp_http, dp_tcp, ng_http, ng_tcp) = (free_port(), free_port(), free_port(), free_port());

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

    // dewy-proxy as a daemon, backends set over D-Bus.
    let bus = PrivateBus::start();
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "mode = \"container\"\nlog-level = \"warn\"\nport = [\"127.0.0.1:{dp_http}\", \"127.0.0.1:{dp_tcp}/tcp\"]\n"
        ),
    )
    .expect("config");
    let state = dir.path().join("state");
    let proxy = Daemon::start(
        env!("CARGO_BIN_EXE_dewy-proxy"),
        &[
            "bench",
            "--config",
            config.to_str().expect("utf-8"),
            "--bus",
            &bus.address,
            "-l",
            "warn",
        ],
        &[
            ("STATE_DIRECTORY", state.to_str().expect("utf-8")),
            ("DEWY_LOG", "warn"),
        ],
        dir.path(),
        &dir.path().join("proxy.log"),
    );
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
    for p in [b1, dp_http, dp_tcp, ng_http] {
        wrk(&format!("http://127.0.0.1:{p}/"), 1, 8);
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss_kib(proxy.pid());

    println!("wrk -t2 -c{conns} -d{secs}s --latency; backend: nginx (1 worker) returning a short body; 2 cores shared by all");
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
    let dewy_http = wrk(&format!("http://127.0.0.1:{dp_http}/"), secs, conns);
    line("dewy-proxy HTTP", &dewy_http);
    let dewy_tcp = wrk(&format!("http://127.0.0.1:{dp_tcp}/"), secs, conns);
    line("dewy-proxy TCP", &dewy_tcp);
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let nginx_http = wrk(&format!("http://127.0.0.1:{ng_http}/"), secs, conns);
    line("nginx HTTP", &nginx_http);
    let nginx_tcp = stream
        .as_ref()
        .map(|_| wrk(&format!("http://127.0.0.1:{ng_tcp}/"), secs, conns));
    match &nginx_tcp {
        Some(w) => line("nginx stream TCP", w),
        None => println!("nginx stream TCP       skipped: this nginx has no stream module"),
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

    println!();
    println!("ratios (1.00 = same):");
    let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "  HTTP dewy/nginx: throughput {:.2}, p50 {:.2}, p99 {:.2}",
        r(dewy_http.rps, nginx_http.rps),
        r(dewy_http.p50_ms, nginx_http.p50_ms),
        r(dewy_http.p99_ms, nginx_http.p99_ms)
    );
    if let Some(n) = &nginx_tcp {
        println!(
            "  TCP  dewy/nginx: throughput {:.2}, p50 {:.2}, p99 {:.2}",
            r(dewy_tcp.rps, n.rps),
            r(dewy_tcp.p50_ms, n.p50_ms),
            r(dewy_tcp.p99_ms, n.p99_ms)
        );
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
    drop(proxy);
}
