//! Container-mode benchmark (not a test): failed requests and latency through dewy's proxy while
//! 20 rolling updates of 3 replicas run under steady load, against the same load with no deploy.
//!
//! `cargo bench --bench container` (needs dockerd and docker-registry, as the container tests;
//! DEWY_BENCH_DEPLOYS changes the number of deploys).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dewy::deploy::DeployResult;
use support::container::{get, open, release, settings, start_proxy, unique, Cleanup};
use support::docker::{Registry, TestImage};
use support::{free_port, percentile};

const CLIENTS: usize = 4;
const REPLICAS: usize = 3;

#[derive(Default)]
struct Samples {
    steady: Vec<Duration>,
    during: Vec<Duration>,
    failed_steady: u64,
    failed_during: u64,
    errors: Vec<String>,
}

fn report(name: &str, mut v: Vec<Duration>, failed: u64) {
    v.sort();
    println!(
        "{name:<24} {:>7} requests, {failed} failed, p50 {:>7.2} ms, p99 {:>7.2} ms, max {:>7.2} ms",
        v.len(),
        percentile(&v, 0.50).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() {
    let deploys: usize = std::env::var("DEWY_BENCH_DEPLOYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let reg = Registry::start();
    let app = unique("bench");
    let _cleanup = Cleanup::new(&app);
    let images: Vec<(String, (String, String))> = (0..=deploys)
        .map(|i| {
            let v = format!("v1.{i}.0");
            let refs = reg.push(&app, &TestImage::new(&v));
            (v, refs)
        })
        .collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.replicas = Some(REPLICAS);
        f.drain_time = Some("2s".parse().expect("duration"));
    });
    let (proxy, _server) = rt.block_on(start_proxy(&s));
    let _guard = rt.enter();
    let d = open(s, &proxy);
    let first = rt.block_on(d.offer(release(&images[0].0, &images[0].1)));
    assert!(matches!(first, DeployResult::Deployed { .. }), "{first:?}");

    let busy = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (busy, stop, samples) = (busy.clone(), stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let during = busy.load(Ordering::Relaxed);
                    let t = Instant::now();
                    let r = get(port, "/");
                    let took = t.elapsed();
                    let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
                    match (r, during) {
                        (Ok(_), false) => s.steady.push(took),
                        (Ok(_), true) => s.during.push(took),
                        (Err(e), false) => {
                            s.failed_steady += 1;
                            s.errors.push(e);
                        }
                        (Err(e), true) => {
                            s.failed_during += 1;
                            s.errors.push(e);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let mut took = Vec::new();
    for (v, refs) in images.iter().skip(1) {
        busy.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let r = rt.block_on(d.offer(release(v, refs)));
        took.push(t.elapsed());
        busy.store(false, Ordering::Relaxed);
        assert!(matches!(r, DeployResult::Deployed { .. }), "{v}: {r:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let s = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    took.sort();
    println!(
        "{deploys} rolling updates of {REPLICAS} replicas behind dewy's proxy, {CLIENTS} clients (one request per connection):"
    );
    println!(
        "rolling update duration: p50 {:.2} s, max {:.2} s",
        percentile(&took, 0.5).as_secs_f64(),
        took.last().copied().unwrap_or_default().as_secs_f64()
    );
    report("steady (no deploy)", s.steady, s.failed_steady);
    report("during rolling updates", s.during, s.failed_during);
    if !s.errors.is_empty() {
        println!("first errors: {:?}", &s.errors[..s.errors.len().min(5)]);
    }
    let errors: u64 = proxy.status().iter().map(|p| p.errors).sum();
    println!("proxy errors counted: {errors}");
    rt.block_on(d.stop_app());
}
