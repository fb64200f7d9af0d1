//! `s3s-fs`, a real S3-compatible server that checks SigV4 signatures, started for one test on a
//! free port; objects are files written under `<data>/<bucket>/<key>`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

pub const ACCESS_KEY: &str = "dewy-test-access";
pub const SECRET_KEY: &str = "dewy-test-secret-key";
pub const REGION: &str = "us-east-1";

/// A running `s3s-fs`; killed on drop.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub data: tempfile::TempDir,
}

fn binary() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([home.join(".cargo/bin")])
        .map(|d| d.join("s3s-fs"));
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "s3s-fs is not installed; the S3 tests need it: cargo install s3s-fs@0.14.1 --locked --features binary"
    );
}

impl S3Server {
    /// Start the server with one empty bucket per name in `buckets`.
    pub fn start(buckets: &[&str]) -> S3Server {
        let data = tempfile::tempdir().expect("tmp");
        for b in buckets {
            std::fs::create_dir_all(data.path().join(b)).expect("bucket dir");
        }
        let port = super::free_port();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        let server = S3Server { child, port, data };
        super::wait_for("s3s-fs to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://<region>/<bucket>/<prefix>?endpoint=…` plus `extra` query parameters.
    pub fn registry_url(&self, bucket: &str, prefix: &str, extra: &str) -> String {
        let mut url = format!("s3://{REGION}/{bucket}/{prefix}?endpoint={}", self.endpoint());
        if !extra.is_empty() {
            url.push('&');
            url.push_str(extra);
        }
        url
    }

    /// Write the object `<bucket>/<key>`, with its LastModified set to `mtime` when given.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8], mtime: Option<SystemTime>) -> PathBuf {
        let path = self.data.path().join(bucket).join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, body).expect("write object");
        if let Some(t) = mtime {
            let f = std::fs::File::options().write(true).open(&path).expect("open");
            f.set_modified(t).expect("set mtime");
        }
        path
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
