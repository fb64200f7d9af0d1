//! Server-mode benchmark (not a test): failed requests and latency while `dewy server` deploys
//! 20 releases under steady load, against a naive stop-then-start restart measured in the same run.
//!
//! `cargo bench --bench server` (DEWY_BENCH_DEPLOYS changes the number of deploys).

#[path = "../tests/support/mod.rs"]
mod support;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::proc::Daemon;
use support::server::{get, publish, served, setup, start, LONG};
use support::wait_for;

const CLIENTS: usize = 4;

#[derive(Default)]
struct Samples {
    steady: Vec<Duration>,
    during: Vec<Duration>,
    failed_steady: u64,
    failed_during: u64,
}

/// Clients sending one request per connection until `stop`; samples are filed by `phase`.
fn load(
    port: Arc<Mutex<u16>>,
    busy: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Samples>>, Vec<std::thread::JoinHandle<()>>) {
    let samples = Arc::new(Mutex::new(Samples::default()));
    let threads = (0..CLIENTS)
        .map(|_| {
            let (port, busy, stop, samples) = (port.clone(), busy.clone(), stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let p = *port.lock().unwrap();
                    let during = busy.load(Ordering::Relaxed);
                    let t = Instant::now();
                    let ok = get(p, "/").is_ok();
                    let took = t.elapsed();
                    let mut s = samples.lock().unwrap();
                    match (ok, during) {
                        (true, false) => s.steady.push(took),
                        (true, true) => s.during.push(took),
                        (false, false) => s.failed_steady += 1,
                        (false, true) => s.failed_during += 1,
                    }
                }
            })
        })
        .collect();
    (samples, threads)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    support::percentile(v, p).as_secs_f64() * 1000.0
}

fn report(name: &str, s: &mut Samples) {
    println!(
        "{name}: steady {} ok / {} failed, p50 {:.2} ms p99 {:.2} ms max {:.2} ms | during restarts {} ok / {} failed, p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        s.steady.len(),
        s.failed_steady,
        pct(&mut s.steady, 0.5),
        pct(&mut s.steady, 0.99),
        pct(&mut s.steady, 1.0),
        s.during.len(),
        s.failed_during,
        pct(&mut s.during, 0.5),
        pct(&mut s.during, 0.99),
        pct(&mut s.during, 1.0),
    );
}

fn with_dewy(deploys: usize) -> Samples {
    let s = setup();
    publish(&s.registry, "v1.0.0", "notify");
    let mut d: Daemon = start(&s, &["--readiness", "notify", "--drain-time", "5"]);
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    let (busy, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (samples, threads) = load(Arc::new(Mutex::new(s.port)), busy.clone(), stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    for n in 1..=deploys {
        let v = format!("v1.0.{n}");
        busy.store(true, Ordering::Relaxed);
        publish(&s.registry, &v, "notify");
        wait_for("the new version served", LONG, || served(s.port, &v));
        std::thread::sleep(Duration::from_millis(500));
        busy.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    d.terminate(Duration::from_secs(30));
    let mut out = samples.lock().unwrap();
    std::mem::take(&mut *out)
}

/// The naive way: stop the app (closing its port), then bind again and start the next one.
fn naive(restarts: usize) -> Samples {
    let s = setup();
    let dir = s.root.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    let spawn = |version: &str| {
        std::fs::write(dir.join("app"), support::server::APP).unwrap();
        std::fs::write(dir.join("VERSION"), version).unwrap();
        std::fs::write(dir.join("MODE"), "plain").unwrap();
        let listener = std::net::TcpListener::bind(("127.0.0.1", s.port)).unwrap();
        let fd = listener.as_raw_fd();
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(dir.join("app")).env("LISTEN_FDS", "1");
        // SAFETY: only dup2/fcntl between fork and exec. dup2 onto itself keeps FD_CLOEXEC, so
        // a listener that already is fd 3 gets the flag cleared instead.
        unsafe {
            cmd.pre_exec(move || {
                let rc = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(listener);
        child
    };
    let mut child = spawn("v1.0.0");
    wait_for("naive v1.0.0", LONG, || served(s.port, "v1.0.0"));
    let (busy, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (samples, threads) = load(Arc::new(Mutex::new(s.port)), busy.clone(), stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    for n in 1..=restarts {
        let v = format!("v1.0.{n}");
        busy.store(true, Ordering::Relaxed);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = child.wait();
        child = spawn(&v);
        wait_for("the new version served", LONG, || served(s.port, &v));
        std::thread::sleep(Duration::from_millis(500));
        busy.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    let _ = child.kill();
    let _ = child.wait();
    let mut out = samples.lock().unwrap();
    std::mem::take(&mut *out)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("DEWY_BENCH_DEPLOYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    println!("{n} restarts each, {CLIENTS} clients, one request per connection");
    report("dewy server deploys", &mut with_dewy(n));
    report("naive stop-then-start", &mut naive(n));
}
