//! Support code for the integration tests: real servers and processes started by the tests.
#![allow(dead_code)]

pub mod activate;
pub mod backend;
pub mod dbus;
pub mod docker;
pub mod gcs;
pub mod github;
pub mod proc;
pub mod receiver;
pub mod s3;
pub mod server;

use std::path::Path;
use std::time::{Duration, Instant};

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
