//! Support code for the integration tests: real servers and processes started by the tests.
#![allow(dead_code)]

pub mod activate;
pub mod backend;
pub mod container;
pub mod cosign;
pub mod dbus;
pub mod docker;
pub mod etcd;
pub mod fleet;
pub mod gcs;
pub mod github;
pub mod grpc;
pub mod load;
pub mod nspawn;
pub mod oci;
pub mod oci_token;
pub mod otlp;
pub mod packages;
pub mod proc;
pub mod receiver;
pub mod s3;
pub mod server;
pub mod tls;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A `file://` release directory and a root for one `dewy` run, in a temporary directory.
pub struct Workspace {
    pub registry: PathBuf,
    pub root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let tmp = tempfile::tempdir().expect("tempdir");
        let registry = tmp.path().join("registry");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&registry).expect("registry dir");
        std::fs::create_dir_all(&root).expect("root dir");
        Workspace {
            registry,
            root,
            _tmp: tmp,
        }
    }

    /// `file://<registry>?artifact=site.tar.gz`.
    pub fn registry_url(&self) -> String {
        format!("file://{}?artifact=site.tar.gz", self.registry.display())
    }

    /// Publish `<registry>/<version>/site.tar.gz` atomically (written aside, then renamed).
    pub fn publish(&self, version: &str, archive: &[u8]) {
        let tmp = self.registry.join(format!(".tmp-{version}"));
        std::fs::create_dir_all(&tmp).expect("staging dir");
        std::fs::write(tmp.join("site.tar.gz"), archive).expect("write archive");
        std::fs::rename(&tmp, self.registry.join(version)).expect("publish");
    }
}

/// Every byte behind `url` in `reg`.
pub async fn read_all(reg: &dyn dewy::registry::Registry, url: &str) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut stream = reg.fetch(url).await.expect("fetch");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// `GET /metrics` on a metrics unix socket: the raw HTTP answer, `None` while it does not answer.
pub fn scrape_metrics(sock: &Path) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::os::unix::net::UnixStream::connect(sock).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    Some(out)
}

/// True when `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A `/proc/<pid>/status` size in KiB (`"VmRSS:"`, `"VmHWM:"`), 0 when unreadable.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The `p` quantile (0 to 1) of durations sorted ascending; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll the async `f` until it returns `Some`, or panic with `what` after `timeout`.
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The release directory name `current` points to, if any.
pub fn current_target(root: &Path) -> Option<String> {
    std::fs::read_link(root.join("current"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Contents of `current/<file>` if readable.
pub fn current_file(root: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(root.join("current").join(file)).ok()
}

/// Write a gzip-compressed tar with the given (path, mode, contents) entries.
pub fn tar_gz(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(enc);
    for (path, mode, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).expect("tar entry");
    }
    b.into_inner().expect("tar").finish().expect("gzip")
}
