//! The GCS emulator (PyPI `gcp-storage-emulator`) started for one test on a free port, in memory,
//! with one bucket; objects are uploaded through its JSON API.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running emulator; killed on drop.
pub struct GcsEmulator {
    child: Child,
    pub port: u16,
    pub bucket: String,
}

impl GcsEmulator {
    pub fn start(bucket: &str) -> GcsEmulator {
        let port = free_port();
        let child = Command::new("gcp-storage-emulator")
            .args([
                "start",
                "--host=127.0.0.1",
                &format!("--port={port}"),
                "--in-memory",
            ])
            .arg(format!("--default-bucket={bucket}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start gcp-storage-emulator ({e}); the GCS tests need it: \
                     python3 -m pip install gcp-storage-emulator"
                )
            });
        let mut emu = GcsEmulator {
            child,
            port,
            bucket: bucket.to_string(),
        };
        super::wait_for("gcp-storage-emulator to listen", Duration::from_secs(30), || {
            if let Ok(Some(status)) = emu.child.try_wait() {
                panic!("gcp-storage-emulator exited at start ({status}); is it installed? python3 -m pip install gcp-storage-emulator");
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        emu
    }

    /// The value for `STORAGE_EMULATOR_HOST` / `OpenOptions::gcs_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn registry_url(&self, prefix: &str, query: &str) -> String {
        let mut url = format!("gs://{}/{prefix}", self.bucket);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Upload one object.
    pub async fn put(&self, name: &str, body: &[u8]) {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/upload/storage/v1/b/{}/o", self.endpoint(), self.bucket),
            &[("uploadType", "media"), ("name", name)],
        )
        .expect("upload url");
        let resp = reqwest::Client::new()
            .post(url)
            .body(body.to_vec())
            .send()
            .await
            .expect("upload");
        assert!(resp.status().is_success(), "upload of {name}: {}", resp.status());
    }
}

impl Drop for GcsEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
