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
        let port = super::free_port();
        let child = Command::new("python3")
            .args(["-m", "gcp_storage_emulator", "start", "--host=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg("--in-memory")
            .arg(format!("--default-bucket={bucket}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start python3 -m gcp_storage_emulator ({e}); the GCS tests need it: \
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
            answers(port, &emu.bucket).then_some(())
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

impl GcsEmulator {
    /// Delete one object (404 is fine).
    pub async fn delete(&self, name: &str) {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint(),
            self.bucket,
            url_encode(name)
        );
        let resp = reqwest::Client::new().delete(url).send().await.expect("delete");
        assert!(
            resp.status().is_success() || resp.status().as_u16() == 404,
            "delete of {name}: {}",
            resp.status()
        );
    }

    /// Names of the objects under `prefix`.
    pub async fn list(&self, prefix: &str) -> Vec<String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/storage/v1/b/{}/o", self.endpoint(), self.bucket),
            &[("prefix", prefix)],
        )
        .expect("list url");
        let page: serde_json::Value = reqwest::get(url).await.expect("list").json().await.expect("json");
        page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|o| o["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Drop for GcsEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the emulator answers a bucket listing with 200 (it listens before it serves).
fn answers(port: u16, bucket: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /storage/v1/b/{bucket}/o HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}
