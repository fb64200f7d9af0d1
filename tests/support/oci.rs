//! A real OCI registry (Debian's `docker-registry`, the CNCF Distribution server) on a free
//! port, optionally behind htpasswd Basic auth, and image pushes through its HTTP API (blob
//! uploads and an OCI manifest), so the tests need no container engine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::proc::Daemon;
use super::{free_port, wait_for};

pub const USER: &str = "dewy";
pub const PASSWORD: &str = "registry-secret";

/// A running registry; stopped on drop.
pub struct OciServer {
    pub port: u16,
    daemon: Daemon,
    auth: bool,
    _dir: tempfile::TempDir,
}

impl OciServer {
    /// Start a registry; with `auth`, every request needs Basic `USER:PASSWORD`.
    pub fn start(auth: bool) -> OciServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: dewy-test\n",
            dir.path().join("data").display()
        );
        if auth {
            let htpasswd = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd (apache2-utils) is needed by the registry auth tests");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(&htpasswd, out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: dewy-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let bin = binary();
        let daemon = Daemon::start(
            bin.to_str().expect("path"),
            &["serve", config_path.to_str().expect("path")],
            &[],
            dir.path(),
            &dir.path().join("registry.log"),
        );
        let server = OciServer {
            port,
            daemon,
            auth,
            _dir: dir,
        };
        wait_for("the registry to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        server
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.auth {
            req.basic_auth(USER, Some(PASSWORD))
        } else {
            req
        }
    }

    /// Upload a blob and return its digest.
    async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        let c = Self::client();
        let start = self
            .with_auth(c.post(format!("http://{}/v2/{repo}/blobs/uploads/", self.host())))
            .send()
            .await
            .expect("start upload");
        assert_eq!(start.status().as_u16(), 202, "start upload: {:?}", start.status());
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload location")
            .to_string();
        let mut url = reqwest::Url::parse(&format!("http://{}", self.host()))
            .expect("base")
            .join(&location)
            .expect("location");
        url.query_pairs_mut().append_pair("digest", &digest);
        let done = self
            .with_auth(c.put(url))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("finish upload");
        assert_eq!(done.status().as_u16(), 201, "finish upload: {:?}", done.status());
        digest
    }

    /// Push a one-layer OCI image `repo:tag` whose layer holds `payload`; returns the manifest
    /// digest.
    pub async fn push(&self, repo: &str, tag: &str, payload: &str) -> String {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"payload":"{payload}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let config_digest = self.blob(repo, config.as_bytes()).await;
        let layer = payload.as_bytes();
        let layer_digest = self.blob(repo, layer).await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let resp = self
            .with_auth(Self::client().put(format!("http://{}/v2/{repo}/manifests/{tag}", self.host())))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
            .expect("put manifest");
        assert_eq!(resp.status().as_u16(), 201, "put manifest: {:?}", resp.status());
        format!("sha256:{}", hex::encode(Sha256::digest(manifest.as_bytes())))
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

fn binary() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join("docker-registry");
        if p.is_file() {
            return p;
        }
    }
    panic!("docker-registry is not installed; the OCI tests need it: apt-get install docker-registry apache2-utils");
}
