//! Deploy benchmarks (not tests): peak RSS of a 1 GiB deploy, idle RSS of each daemon, and how
//! many registry polls count against GitHub's rate limit in an idle hour.
//!
//! `cargo bench --bench deploy` (DEWY_BENCH_ARTIFACT_MB changes the artifact size).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::dbus::PrivateBus;
use support::github::{AssetBody, GithubFake, ReleaseSpec};
use support::proc::Daemon;
use support::{current_target, wait_for};

fn status_kib(pid: i32, key: &str) -> u64 {
    support::status_kib(pid as u32, key)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

const LONG: Duration = Duration::from_secs(600);

/// A 1 GiB plain binary from the GitHub-compatible server (302 to the CDN host), deployed by
/// `dewy assets`: the download streams through the cache; returns peak RSS in KiB.
fn peak_rss_github(size: u64) -> (u64, Duration) {
    let fake = GithubFake::start_blocking();
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset("app", AssetBody::generated(size, 3)));
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("{}?artifact=app", fake.registry_url());
    let started = Instant::now();
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &["assets", "--registry", &url, "--bus", "none", "-i", "3600"],
        &[("GITHUB_API_URL", &fake.api_url()), ("GH_TOKEN", "")],
        tmp.path(),
        &tmp.path().join("../bench-ghr.log"),
    );
    wait_for("1 GiB deploy", LONG, || current_target(tmp.path()));
    let took = started.elapsed();
    let len = std::fs::metadata(tmp.path().join("current/app"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(len, size, "{}", d.log());
    let peak = status_kib(d.pid(), "VmHWM:");
    d.terminate(Duration::from_secs(30));
    (peak, took)
}

/// A tar.gz expanding to `size` bytes from a `file://` registry; returns peak RSS in KiB.
fn peak_rss_targz(size: u64) -> (u64, Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reg/v1.0.0");
    std::fs::create_dir_all(&dir).unwrap();
    {
        let f = std::fs::File::create(dir.join("big.tar.gz")).unwrap();
        let enc = flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast());
        let mut b = tar::Builder::new(enc);
        let files = 16u64;
        let chunk: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for n in 0..files {
            let mut h = tar::Header::new_gnu();
            let len = size / files;
            h.set_size(len);
            h.set_mode(0o644);
            let reader = std::io::Read::take(std::io::Read::chain(&chunk[..], std::io::repeat(7)), len);
            b.append_data(&mut h, format!("data/{n}.bin"), reader).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    }
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}/reg", tmp.path().display());
    let started = Instant::now();
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &["assets", "--registry", &url, "--bus", "none", "-i", "3600"],
        &[],
        &root,
        &tmp.path().join("bench-tgz.log"),
    );
    wait_for("tar.gz deploy", LONG, || current_target(&root));
    let took = started.elapsed();
    let peak = status_kib(d.pid(), "VmHWM:");
    d.terminate(Duration::from_secs(30));
    (peak, took)
}

/// Idle RSS of the deployer, the watcher (polling every second) and the proxy.
fn idle_rss() -> Vec<(&'static str, u64)> {
    let bus = PrivateBus::start();
    let fake = GithubFake::start_blocking();
    let body = support::tar_gz(&[("VERSION", 0o644, b"v1.0.0")]);
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset("app.tar.gz", body));
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("app.toml");
    std::fs::write(
        &cfg,
        format!(
            "registry = \"{}?artifact=app.tar.gz\"\ninterval = 1\nroot = \"{}/root\"\n",
            fake.registry_url(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let api = fake.api_url();
    let env = [
        ("GITHUB_API_URL", api.as_str()),
        ("DEWY_BUS", bus.address.as_str()),
        ("GH_TOKEN", ""),
    ];
    let cfg_s = cfg.to_str().unwrap();
    let deployer = Daemon::start(
        env!("CARGO_BIN_EXE_dewy-deployer"),
        &["app", "--config", cfg_s],
        &env,
        tmp.path(),
        &tmp.path().join("d.log"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let watcher = Daemon::start(
        env!("CARGO_BIN_EXE_dewy-watcher"),
        &["app", "--config", cfg_s],
        &env,
        tmp.path(),
        &tmp.path().join("w.log"),
    );
    // The proxy serves a container-mode config of its own (one port, no backends).
    let proxy_cfg = tmp.path().join("proxy.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(&proxy_cfg, format!("mode = \"container\"\nport = [\"{port}\"]\n")).unwrap();
    let proxy_state = tmp.path().join("proxy-state");
    let mut proxy_env = env.to_vec();
    proxy_env.push(("STATE_DIRECTORY", proxy_state.to_str().unwrap()));
    let proxy = Daemon::start(
        env!("CARGO_BIN_EXE_dewy-proxy"),
        &["app", "--config", proxy_cfg.to_str().unwrap()],
        &proxy_env,
        tmp.path(),
        &tmp.path().join("p.log"),
    );
    wait_for("first deploy", LONG, || current_target(&tmp.path().join("root")));
    std::thread::sleep(Duration::from_secs(10));
    vec![
        ("dewy-deployer", status_kib(deployer.pid(), "VmRSS:")),
        ("dewy-watcher", status_kib(watcher.pid(), "VmRSS:")),
        ("dewy-proxy", status_kib(proxy.pid(), "VmRSS:")),
    ]
}

/// An idle hour at the default 10 s interval is 360 polls: how many were answered 200?
fn idle_hour_polls() -> (u64, u64) {
    let fake = GithubFake::start_blocking();
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset("app.tar.gz", &b"x"[..]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = dewy::registry::OpenOptions {
        github_api_url: Some(fake.api_url()),
        github_token: Some(String::new()),
        ..Default::default()
    };
    let url = format!("{}?artifact=app.tar.gz", fake.registry_url());
    let reg = dewy::registry::open(&url, &opts).unwrap();
    rt.block_on(async {
        for _ in 0..360 {
            reg.latest().await.unwrap();
        }
    });
    (fake.list_requests_200(), fake.list_requests_304())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mb: u64 = std::env::var("DEWY_BENCH_ARTIFACT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mb << 20;

    let (ok200, ok304) = idle_hour_polls();
    println!("idle hour (360 polls): {ok200} answered 200 (counted against the rate limit), {ok304} answered 304 (target: 1)");

    for (name, kib) in idle_rss() {
        println!("idle RSS {name}: {:.1} MiB (target <= 10 MiB)", mib(kib));
    }

    let (peak, took) = peak_rss_github(size);
    println!(
        "deploy {mb} MiB plain artifact from the GitHub-compatible server: peak RSS {:.1} MiB (target < 64 MiB), {:.1}s",
        mib(peak),
        took.as_secs_f64()
    );
    let (peak, took) = peak_rss_targz(size);
    println!(
        "deploy {mb} MiB tar.gz from file://: peak RSS {:.1} MiB (target < 64 MiB), {:.1}s",
        mib(peak),
        took.as_secs_f64()
    );
}
