//! Signed releases through the whole pipeline (file source, assets runtime, real `minisign`):
//! what verifies goes live, every refusal names its reason in the bad-version ledger and
//! `current` never moves; keys rotate; `min-age` holds a young release back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DeployResult, Deployer};
use crate::signature::test_tools::Minisign;

struct Source {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
}

/// A `.tar.gz` holding `VERSION`.
fn artifact(version: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(version.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "VERSION", version.as_bytes())
        .expect("append");
    tar.into_inner().expect("tar").finish().expect("gzip")
}

impl Source {
    fn new() -> Source {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("src");
        let root = tmp.path().join("app");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::create_dir_all(&root).expect("mkdir");
        Source { tmp, dir, root }
    }

    /// Publish `version` (its artifact written but not yet visible: `finish` renames it in).
    fn stage(&self, version: &str) -> PathBuf {
        let d = self.tmp.path().join(format!("stage-{version}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("app.tar.gz"), artifact(version)).expect("write");
        d
    }

    fn finish(&self, staged: &Path, version: &str) {
        std::fs::rename(staged, self.dir.join(version)).expect("publish");
    }

    fn deployer(&self, keys: &[&Minisign], extra: &str) -> Arc<Deployer> {
        let verify: Vec<String> = keys
            .iter()
            .map(|k| format!("\"minisign-file:{}\"", k.public.display()))
            .collect();
        let text = format!(
            "registry = \"file://{}?artifact=app.tar.gz\"\nroot = \"{}\"\nverify = [{}]\n{extra}\n",
            self.dir.display(),
            self.root.display(),
            verify.join(", ")
        );
        let settings =
            crate::config::from_text("app", &self.tmp.path().join("app.toml"), &text).expect("settings");
        let registry = crate::registry::open(&settings.registry, &Default::default()).expect("registry");
        Deployer::open(settings, registry).expect("deployer")
    }

    fn current(&self) -> Option<String> {
        std::fs::read_to_string(self.root.join("current/VERSION")).ok()
    }
}

/// Offer `version` as the watcher would and return the result.
async fn offer(d: &Deployer, version: &str) -> DeployResult {
    d.nominate(version).await
}

/// A refusal of `version`: failed, marked bad with a reason containing `why`, `current` still
/// at `live`.
async fn refused(s: &Source, d: &Deployer, version: &str, why: &str, live: &str) {
    let out = offer(d, version).await;
    assert_eq!(out.kind(), "failed", "{version}: {out:?}");
    let status = d.status();
    let bad = status
        .bad
        .iter()
        .find(|b| b.version == version)
        .unwrap_or_else(|| panic!("{version} not marked bad: {status:?}"));
    assert!(
        bad.reason.contains(why),
        "{version}: {:?} lacks {why:?}",
        bad.reason
    );
    assert_eq!(s.current().as_deref(), Some(live), "{version} moved current");
}

#[tokio::test]
async fn only_releases_signed_by_a_trusted_key_go_live() {
    let s = Source::new();
    let keys = s.tmp.path();
    let trusted = Minisign::generate(keys, "trusted");
    let stranger = Minisign::generate(keys, "stranger");
    let d = s.deployer(&[&trusted], "");

    // Good: a signature of the artifact itself.
    let v1 = s.stage("v1.0.0");
    trusted.sign(&v1.join("app.tar.gz"), &v1.join("app.tar.gz.minisig"), &[]);
    s.finish(&v1, "v1.0.0");
    let out = offer(&d, "v1.0.0").await;
    assert_eq!(out.kind(), "deployed", "{out:?}");
    assert_eq!(s.current().as_deref(), Some("v1.0.0"));

    // Signed by a key nobody listed.
    let v = s.stage("v1.1.0");
    stranger.sign(&v.join("app.tar.gz"), &v.join("app.tar.gz.minisig"), &[]);
    s.finish(&v, "v1.1.0");
    refused(&s, &d, "v1.1.0", "untrusted key", "v1.0.0").await;

    // Tampered after signing.
    let v = s.stage("v1.2.0");
    trusted.sign(&v.join("app.tar.gz"), &v.join("app.tar.gz.minisig"), &[]);
    std::fs::write(v.join("app.tar.gz"), artifact("v6.6.6")).expect("tamper");
    s.finish(&v, "v1.2.0");
    refused(&s, &d, "v1.2.0", "bad signature", "v1.0.0").await;

    // No signature at all.
    let v = s.stage("v1.3.0");
    s.finish(&v, "v1.3.0");
    refused(&s, &d, "v1.3.0", "no signature", "v1.0.0").await;

    // A truncated signature.
    let v = s.stage("v1.4.0");
    let sig = trusted.sign(&v.join("app.tar.gz"), &v.join("app.tar.gz.minisig"), &[]);
    let text = std::fs::read(&sig).expect("sig");
    std::fs::write(&sig, &text[..text.len() / 2]).expect("truncate");
    s.finish(&v, "v1.4.0");
    refused(&s, &d, "v1.4.0", "malformed", "v1.0.0").await;

    // Replay: v1.0.0's genuine signature next to another build of the same file name.
    let v = s.stage("v1.5.0");
    std::fs::copy(
        s.dir.join("v1.0.0/app.tar.gz.minisig"),
        v.join("app.tar.gz.minisig"),
    )
    .expect("copy");
    s.finish(&v, "v1.5.0");
    let out = offer(&d, "v1.5.0").await;
    assert_eq!(out.kind(), "failed", "{out:?}");
    let reason = d
        .status()
        .bad
        .iter()
        .find(|b| b.version == "v1.5.0")
        .map(|b| b.reason.clone());
    let reason = reason.expect("v1.5.0 marked bad");
    assert!(
        reason.contains("bad signature") || reason.contains("replay"),
        "{reason}"
    );
    assert_eq!(s.current().as_deref(), Some("v1.0.0"));

    // A signed checksum file, then tampered together with the artifact: the checksum check
    // passes, the signature over the checksums does not.
    let v = s.stage("v1.6.0");
    let sum = |dir: &Path| {
        use sha2::Digest;
        let bytes = std::fs::read(dir.join("app.tar.gz")).expect("read");
        format!("{:x}  app.tar.gz\n", sha2::Sha256::digest(&bytes))
    };
    std::fs::write(v.join("SHA256SUMS"), sum(&v)).expect("sums");
    trusted.sign(&v.join("SHA256SUMS"), &v.join("SHA256SUMS.minisig"), &[]);
    std::fs::write(v.join("app.tar.gz"), artifact("v6.6.6")).expect("tamper");
    std::fs::write(v.join("SHA256SUMS"), sum(&v)).expect("tamper sums");
    s.finish(&v, "v1.6.0");
    refused(&s, &d, "v1.6.0", "bad signature", "v1.0.0").await;

    // The signed checksum file, untouched: deploys.
    let v = s.stage("v1.7.0");
    std::fs::write(v.join("SHA256SUMS"), sum(&v)).expect("sums");
    trusted.sign(&v.join("SHA256SUMS"), &v.join("SHA256SUMS.minisig"), &[]);
    s.finish(&v, "v1.7.0");
    let out = offer(&d, "v1.7.0").await;
    assert_eq!(out.kind(), "deployed", "{out:?}");
    assert_eq!(s.current().as_deref(), Some("v1.7.0"));
}

#[tokio::test]
async fn both_keys_are_accepted_while_both_are_listed() {
    let s = Source::new();
    let old = Minisign::generate(s.tmp.path(), "old");
    let new = Minisign::generate(s.tmp.path(), "new");
    for (version, key) in [("v1.0.0", &old), ("v2.0.0", &new)] {
        let v = s.stage(version);
        key.sign(&v.join("app.tar.gz"), &v.join("app.tar.gz.minisig"), &[]);
        s.finish(&v, version);
    }
    let d = s.deployer(&[&old, &new], "");
    assert_eq!(offer(&d, "v1.0.0").await.kind(), "deployed");
    assert_eq!(offer(&d, "v2.0.0").await.kind(), "deployed");
    assert_eq!(s.current().as_deref(), Some("v2.0.0"));
    drop(d);

    // Once the old key is dropped, its releases are refused.
    let v = s.stage("v2.1.0");
    old.sign(&v.join("app.tar.gz"), &v.join("app.tar.gz.minisig"), &[]);
    s.finish(&v, "v2.1.0");
    let d = s.deployer(&[&new], "");
    refused(&s, &d, "v2.1.0", "untrusted key", "v2.0.0").await;
}

#[tokio::test]
async fn a_young_release_waits_for_its_cooldown_and_an_operator_may_deploy_it() {
    let s = Source::new();
    let key = Minisign::generate(s.tmp.path(), "k");
    let v = s.stage("v1.0.0");
    key.sign(&v.join("app.tar.gz"), &v.join("app.tar.gz.minisig"), &[]);
    s.finish(&v, "v1.0.0");
    let d = s.deployer(&[&key], "min-age = \"1h\"");
    let out = offer(&d, "v1.0.0").await;
    match &out {
        DeployResult::Skipped { reason, .. } => {
            assert!(reason.starts_with("waiting for cooldown until "), "{reason}")
        }
        other => panic!("not held back: {other:?}"),
    }
    let waiting = d.status().waiting.expect("status says it waits");
    assert!(waiting.contains("waiting for cooldown until"), "{waiting}");
    assert_eq!(s.current(), None);
    // `dewy deploy VERSION` is the operator's decision: no cooldown.
    assert_eq!(
        d.deploy_version("v1.0.0", Default::default()).await.kind(),
        "deployed"
    );
    assert_eq!(s.current().as_deref(), Some("v1.0.0"));
}
