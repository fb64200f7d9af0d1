//! cosign image signatures in a real registry: a P-256 key made with OpenSSL (cosign's
//! key-based format), simple-signing payloads, and the signature manifest pushed under the
//! `sha256-<hex>.sig` tag through the OCI distribution API, as `cosign sign --key` stores it.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::oci::OciServer;

/// A cosign-format key pair made with OpenSSL.
pub struct SigningKey {
    pub public: PathBuf,
    secret: PathBuf,
    _dir: tempfile::TempDir,
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("cosign-key.pem");
        let public = dir.path().join("cosign.pub");
        openssl(
            Command::new("openssl")
                .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"])
                .arg(&secret),
        );
        openssl(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&secret)
                .arg("-out")
                .arg(&public),
        );
        SigningKey {
            public,
            secret,
            _dir: dir,
        }
    }

    /// `verify = ["cosign:<public key>"]`.
    pub fn spec(&self) -> String {
        format!("cosign:{}", self.public.display())
    }

    /// Base64 of the DER ECDSA signature of `bytes` (`cosign sign-blob --key`).
    pub fn sign(&self, bytes: &[u8]) -> String {
        let file = self._dir.path().join("payload");
        std::fs::write(&file, bytes).expect("write payload");
        let der = openssl(
            Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&self.secret)
                .arg(&file),
        );
        base64::engine::general_purpose::STANDARD.encode(der)
    }
}

fn openssl(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .expect("openssl is needed by the image signature tests: apt-get install openssl");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The simple-signing payload cosign signs for `reference` at `digest`.
pub fn payload(reference: &str, digest: &str) -> String {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
}

/// Push a signature manifest for image `digest` of `repo`: one simple-signing layer per
/// (payload, base64 signature). Returns the signature manifest's digest.
pub async fn push_signature(
    server: &OciServer,
    repo: &str,
    digest: &str,
    layers: &[(String, String)],
) -> String {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (payload, signature) in layers {
        let d = server.blob(repo, payload.as_bytes()).await;
        diff_ids.push(serde_json::Value::String(d.clone()));
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(),
            "digest": d,
            "annotations": {"dev.cosignproject.cosign/signature": signature},
        }));
    }
    let config = serde_json::json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_digest = server.blob(repo, config.as_bytes()).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
        "layers": descriptors,
    })
    .to_string();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let url = format!("http://{}/v2/{repo}/manifests/sha256-{hex}.sig", server.host());
    let client = reqwest::Client::new();
    let resp = server
        .with_auth(client.put(url), repo)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .expect("put signature manifest");
    assert_eq!(
        resp.status().as_u16(),
        201,
        "put signature manifest: {:?}",
        resp.status()
    );
    format!("sha256:{}", hex::encode(Sha256::digest(manifest.as_bytes())))
}
