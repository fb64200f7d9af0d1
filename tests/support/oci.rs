//! A real OCI registry (Debian's `docker-registry`, the CNCF Distribution server) on a free
//! port, optionally behind htpasswd Basic auth or Bearer tokens from a token server, and image pushes through its HTTP API (blob
//! uploads and an OCI manifest), so the tests need no container engine.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::oci_token::{self, TokenIssuer};
use super::proc::Daemon;
use super::{free_port, wait_for};

/// How the registry authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// htpasswd: Basic `USER:PASSWORD` on every request.
    Basic,
    /// Bearer tokens from a token server that wants Basic `USER:PASSWORD`.
    Token,
}

pub const USER: &str = "dewy";
pub const PASSWORD: &str = "registry-secret";

/// A running registry; stopped on drop.
pub struct OciServer {
    pub port: u16,
    daemon: Daemon,
    auth: Auth,
    issuer: Option<Arc<TokenIssuer>>,
    _dir: tempfile::TempDir,
}

impl OciServer {
    /// Start a registry with the given authentication.
    pub fn start(auth: Auth) -> OciServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: dewy-test\n",
            dir.path().join("data").display()
        );
        let mut issuer = None;
        if auth == Auth::Token {
            let iss = Arc::new(TokenIssuer::new(dir.path()));
            let realm = oci_token::serve(iss.clone(), USER, PASSWORD);
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                oci_token::SERVICE,
                oci_token::ISSUER,
                iss.bundle.display()
            ));
            issuer = Some(iss);
        }
        if auth == Auth::Basic {
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
            issuer,
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

    pub fn with_auth(&self, req: reqwest::RequestBuilder, repo: &str) -> reqwest::RequestBuilder {
        match (&self.auth, &self.issuer) {
            (Auth::Basic, _) => req.basic_auth(USER, Some(PASSWORD)),
            (Auth::Token, Some(issuer)) => req.bearer_auth(issuer.mint(USER, repo, &["pull", "push"])),
            _ => req,
        }
    }

    /// Tokens the token server and the pushes have issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.issuer
            .as_ref()
            .map_or(0, |i| i.issued.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Upload a blob and return its digest.
    pub async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        let c = Self::client();
        let start = self
            .with_auth(
                c.post(format!("http://{}/v2/{repo}/blobs/uploads/", self.host())),
                repo,
            )
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
            .with_auth(c.put(url), repo)
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
            .with_auth(
                Self::client().put(format!("http://{}/v2/{repo}/manifests/{tag}", self.host())),
                repo,
            )
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
