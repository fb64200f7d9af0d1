//! The release policy with signatures made by the real tools: good signatures of each kind,
//! wrong keys, altered artifacts and checksum files, missing, truncated and replayed signatures,
//! and key rotation.

use std::path::{Path, PathBuf};

use super::test_tools::{key, Cosign, Gpg, Minisign, Signify};
use super::*;

const ARTIFACT: &str = "app.tar.gz";

/// Two releases of the same artifact name with different bytes, in a temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for v in ["v1", "v2"] {
            std::fs::create_dir(f.dir.path().join(v)).expect("mkdir");
            let body = format!("the {v} artifact\n").repeat(1000);
            std::fs::write(f.artifact(v), body).expect("write artifact");
        }
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `<dir>/<version>/app.tar.gz`.
    fn artifact(&self, version: &str) -> PathBuf {
        self.dir.path().join(version).join(ARTIFACT)
    }

    /// `SHA256SUMS` of `version` listing its artifact and another file.
    fn sums(&self, version: &str) -> PathBuf {
        let bytes = std::fs::read(self.artifact(version)).expect("read");
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let path = self.dir.path().join(version).join("SHA256SUMS");
        let text = format!("{}  other.zip\n{sha}  {ARTIFACT}\n", "0".repeat(64));
        std::fs::write(&path, text).expect("write sums");
        path
    }
}

/// A candidate for the artifact from a signature file.
fn of_artifact(sig: &Path) -> Candidate {
    Candidate {
        name: format!("{ARTIFACT}{}", suffix(sig)),
        signature: Ok(std::fs::read(sig).expect("read sig")),
        signs: ARTIFACT.into(),
        checksum: None,
    }
}

/// A candidate for a checksum file from a signature file.
fn of_sums(sig: &Path, sums: &Path) -> Candidate {
    Candidate {
        name: format!("SHA256SUMS{}", suffix(sig)),
        signature: Ok(std::fs::read(sig).expect("read sig")),
        signs: "SHA256SUMS".into(),
        checksum: Some(Ok(std::fs::read(sums).expect("read sums"))),
    }
}

fn suffix(sig: &Path) -> String {
    let name = sig.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    [".minisig", ".sig", ".asc"]
        .into_iter()
        .find(|s| name.ends_with(s))
        .unwrap_or(".sig")
        .to_string()
}

fn check(
    keys: &[TrustedKey],
    version: &str,
    artifact: &Path,
    candidates: &[Candidate],
) -> Result<Verified, Refusal> {
    let subject = Subject {
        version,
        artifact: ARTIFACT,
        path: artifact,
    };
    verify_release(keys, &subject, candidates)
}

#[track_caller]
fn refused(result: Result<Verified, Refusal>, kind: RefusalKind, words: &[&str]) -> Refusal {
    let r = match result {
        Ok(v) => panic!("expected a {kind:?} refusal, got verified: {v}"),
        Err(r) => r,
    };
    assert_eq!(r.kind, kind, "{}", r.message);
    for w in words {
        assert!(r.message.contains(w), "{:?} lacks {w:?}", r.message);
    }
    r
}

fn tamper(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(path, bytes).expect("write");
}

fn truncated(c: &Candidate) -> Candidate {
    let mut c = c.clone();
    if let Ok(sig) = &mut c.signature {
        sig.truncate(sig.len() / 2);
    }
    c
}

#[test]
fn minisign_good_wrong_key_tampered_truncated_missing() {
    let f = Fixture::new();
    let a = Minisign::generate(f.dir.path(), "a");
    let b = Minisign::generate(f.dir.path(), "b");
    let sig = a.sign(&f.artifact("v2"), &f.path("v2.minisig"), &[]);
    let c = of_artifact(&sig);
    let ok = check(&[a.key()], "v2", &f.artifact("v2"), std::slice::from_ref(&c)).expect("good signature");
    assert_eq!(ok.signature, "app.tar.gz.minisig");
    assert!(ok.key.starts_with("minisign key "), "{}", ok.key);
    assert_eq!(ok.via_checksum, None);
    // The inline forms: the key line, and the whole .pub text.
    let inline = key(&format!("minisign:{}", a.base64()));
    check(&[inline], "v2", &f.artifact("v2"), std::slice::from_ref(&c)).expect("inline key");
    let text = std::fs::read_to_string(&a.public).expect("pub");
    check(
        &[key(&format!("minisign:{text}"))],
        "v2",
        &f.artifact("v2"),
        std::slice::from_ref(&c),
    )
    .expect("pub text");

    let id_a = ok.key.split_whitespace().nth(2).expect("id").to_string();
    refused(
        check(&[b.key()], "v2", &f.artifact("v2"), std::slice::from_ref(&c)),
        RefusalKind::UntrustedKey,
        &[
            "app.tar.gz.minisig",
            &format!("signed by minisign key {id_a}"),
            "not trusted",
        ],
    );
    refused(
        check(&[b.key()], "v2", &f.artifact("v2"), &[truncated(&c)]),
        RefusalKind::Malformed,
        &["app.tar.gz.minisig", "truncated or malformed minisign"],
    );
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[]),
        RefusalKind::NoSignature,
        &["publishes no signature for app.tar.gz", ".minisig"],
    );
    refused(
        check(
            &[Signify::generate(f.dir.path(), "s").key()],
            "v2",
            &f.artifact("v2"),
            std::slice::from_ref(&c),
        ),
        RefusalKind::UntrustedKey,
        &["a minisign signature, and no minisign key is trusted"],
    );
    tamper(&f.artifact("v2"));
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[c]),
        RefusalKind::BadSignature,
        &["app.tar.gz.minisig", "does not match app.tar.gz", "altered"],
    );
}

#[test]
fn minisign_legacy_signatures_are_read_whole_within_a_bound() {
    let f = Fixture::new();
    let a = Minisign::generate(f.dir.path(), "a");
    let sig = a.sign(&f.artifact("v2"), &f.path("legacy.minisig"), &["-l"]);
    let line = std::fs::read_to_string(&sig)
        .expect("sig")
        .lines()
        .nth(1)
        .expect("line")
        .to_string();
    let bin = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, line).expect("base64");
    assert_eq!(&bin[..2], b"Ed", "minisign -l writes a legacy signature");
    check(&[a.key()], "v2", &f.artifact("v2"), &[of_artifact(&sig)]).expect("legacy signature");
    tamper(&f.artifact("v2"));
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[of_artifact(&sig)]),
        RefusalKind::BadSignature,
        &["does not match app.tar.gz"],
    );
    let big = f.path("big.tar.gz");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(MAX_RAW_SIGNED_SIZE + 1).expect("sparse file");
    refused(
        check(&[a.key()], "v2", &big, &[of_artifact(&sig)]),
        RefusalKind::TooLarge,
        &["legacy minisign", "prehashed"],
    );
}

#[test]
fn minisign_replay_of_another_release_is_refused() {
    let f = Fixture::new();
    let a = Minisign::generate(f.dir.path(), "a");
    // A signature of v1's artifact (same file name, other bytes) offered with v2.
    let v1 = a.sign(&f.artifact("v1"), &f.path("v1.minisig"), &[]);
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[of_artifact(&v1)]),
        RefusalKind::BadSignature,
        &["does not match app.tar.gz", "file:app.tar.gz"],
    );
    // Signed with the version in the trusted comment: named as a replay.
    let v1 = a.sign(
        &f.artifact("v1"),
        &f.path("v1v.minisig"),
        &["-t", "file:app.tar.gz version:v1.0.0"],
    );
    refused(
        check(&[a.key()], "v2.0.0", &f.artifact("v2"), &[of_artifact(&v1)]),
        RefusalKind::Replay,
        &["version v1.0.0, not v2.0.0", "replayed"],
    );
    check(&[a.key()], "1.0.0", &f.artifact("v1"), &[of_artifact(&v1)]).expect("its own release");
    // Valid over these very bytes, but signed as another file (an artifact swapped for another).
    let other = a.sign(
        &f.artifact("v2"),
        &f.path("other.minisig"),
        &["-t", "file:app_linux_arm64.tar.gz"],
    );
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[of_artifact(&other)]),
        RefusalKind::Replay,
        &["file app_linux_arm64.tar.gz, not app.tar.gz"],
    );
}

#[test]
fn key_rotation_accepts_either_listed_key() {
    let f = Fixture::new();
    let old = Minisign::generate(f.dir.path(), "old");
    let new = Minisign::generate(f.dir.path(), "new");
    let by_old = old.sign(&f.artifact("v1"), &f.path("old.minisig"), &[]);
    let by_new = new.sign(&f.artifact("v2"), &f.path("new.minisig"), &[]);
    let both = [old.key(), new.key()];
    let v = check(&both, "v1", &f.artifact("v1"), &[of_artifact(&by_old)]).expect("old key");
    assert_eq!(v.key, both[0].label());
    let v = check(&both, "v2", &f.artifact("v2"), &[of_artifact(&by_new)]).expect("new key");
    assert_eq!(v.key, both[1].label());
    // Across kinds too: a cosign key next to the minisign ones.
    let cosign = Cosign::generate(f.dir.path(), "cosign");
    let sig = cosign.sign(&f.artifact("v2"), &f.path("v2.sig"));
    let keys = [old.key(), cosign.key()];
    let v = check(
        &keys,
        "v2",
        &f.artifact("v2"),
        &[of_artifact(&by_new), of_artifact(&sig)],
    )
    .expect("rotated to cosign");
    assert_eq!(v.key, keys[1].label());
    // Once the old key is dropped, its signatures no longer pass.
    refused(
        check(&[new.key()], "v1", &f.artifact("v1"), &[of_artifact(&by_old)]),
        RefusalKind::UntrustedKey,
        &["not trusted"],
    );
}

#[test]
fn signify_good_wrong_key_tampered_truncated_too_large() {
    let f = Fixture::new();
    let a = Signify::generate(f.dir.path(), "a");
    let b = Signify::generate(f.dir.path(), "b");
    let sig = a.sign(&f.artifact("v2"), &f.path("v2.sig"));
    let c = of_artifact(&sig);
    let v =
        check(&[a.key()], "v2", &f.artifact("v2"), std::slice::from_ref(&c)).expect("good signify signature");
    assert!(v.key.starts_with("signify key "), "{}", v.key);
    refused(
        check(&[b.key()], "v2", &f.artifact("v2"), std::slice::from_ref(&c)),
        RefusalKind::UntrustedKey,
        &["app.tar.gz.sig", "signify key number", "not trusted"],
    );
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[truncated(&c)]),
        RefusalKind::Malformed,
        &["truncated or malformed signify"],
    );
    let v1 = a.sign(&f.artifact("v1"), &f.path("v1.sig"));
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[of_artifact(&v1)]),
        RefusalKind::BadSignature,
        &["does not match app.tar.gz"],
    );
    let big = f.path("big");
    std::fs::File::create(&big)
        .expect("create")
        .set_len(MAX_RAW_SIGNED_SIZE + 1)
        .expect("sparse");
    refused(
        check(&[a.key()], "v2", &big, std::slice::from_ref(&c)),
        RefusalKind::TooLarge,
        &["signify signs the raw bytes"],
    );
    tamper(&f.artifact("v2"));
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[c]),
        RefusalKind::BadSignature,
        &["signify key", "does not match app.tar.gz"],
    );
}

#[test]
fn cosign_blob_good_wrong_key_tampered_truncated() {
    let f = Fixture::new();
    let a = Cosign::generate(f.dir.path(), "a");
    let b = Cosign::generate(f.dir.path(), "b");
    let sig = a.sign(&f.artifact("v2"), &f.path("v2.sig"));
    let c = of_artifact(&sig);
    let v =
        check(&[a.key()], "v2", &f.artifact("v2"), std::slice::from_ref(&c)).expect("good cosign signature");
    assert!(v.key.starts_with("cosign key "), "{}", v.key);
    // The raw DER, as `openssl dgst -sign` writes it, is read too.
    let der = f.path("v2.der.sig");
    std::fs::write(&der, a.sign_der(&f.artifact("v2"))).expect("write");
    check(&[a.key()], "v2", &f.artifact("v2"), &[of_artifact(&der)]).expect("DER signature");
    refused(
        check(&[b.key()], "v2", &f.artifact("v2"), std::slice::from_ref(&c)),
        RefusalKind::BadSignature,
        &[
            "does not verify over app.tar.gz with any trusted cosign key",
            "signed by another key",
        ],
    );
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[truncated(&c)]),
        RefusalKind::Malformed,
        &["truncated or malformed cosign"],
    );
    let v1 = a.sign(&f.artifact("v1"), &f.path("v1.sig"));
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[of_artifact(&v1)]),
        RefusalKind::BadSignature,
        &["app.tar.gz.sig"],
    );
    tamper(&f.artifact("v2"));
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[c]),
        RefusalKind::BadSignature,
        &["altered"],
    );
}

#[test]
fn openpgp_armored_and_binary_good_wrong_key_tampered_truncated() {
    let f = Fixture::new();
    let a = Gpg::generate("alice", "ed25519", false);
    let b = Gpg::generate("bob", "ed25519", false);
    let binary = a.sign(&f.artifact("v2"), &f.path("v2.sig"), false);
    let armored = a.sign(&f.artifact("v2"), &f.path("v2.asc"), true);
    assert!(std::fs::read_to_string(&armored)
        .expect("asc")
        .starts_with("-----BEGIN PGP SIGNATURE-----"));
    for armor in [true, false] {
        let k = a.key(f.dir.path(), armor);
        for sig in [&binary, &armored] {
            let v = check(
                std::slice::from_ref(&k),
                "v2",
                &f.artifact("v2"),
                &[of_artifact(sig)],
            )
            .expect("good OpenPGP signature");
            assert!(v.key.contains(&a.fingerprint), "{}", v.key);
        }
    }
    let c = of_artifact(&armored);
    refused(
        check(
            &[b.key(f.dir.path(), true)],
            "v2",
            &f.artifact("v2"),
            std::slice::from_ref(&c),
        ),
        RefusalKind::UntrustedKey,
        &[
            "app.tar.gz.asc",
            &format!("signed by OpenPGP key {}", a.fingerprint),
            "not trusted",
        ],
    );
    for sig in [&binary, &armored] {
        refused(
            check(
                &[a.key(f.dir.path(), true)],
                "v2",
                &f.artifact("v2"),
                &[truncated(&of_artifact(sig))],
            ),
            RefusalKind::Malformed,
            &["truncated or malformed OpenPGP signature"],
        );
    }
    let v1 = a.sign(&f.artifact("v1"), &f.path("v1.sig"), false);
    refused(
        check(
            &[a.key(f.dir.path(), true)],
            "v2",
            &f.artifact("v2"),
            &[of_artifact(&v1)],
        ),
        RefusalKind::BadSignature,
        &["does not match app.tar.gz"],
    );
    tamper(&f.artifact("v2"));
    refused(
        check(&[a.key(f.dir.path(), false)], "v2", &f.artifact("v2"), &[c]),
        RefusalKind::BadSignature,
        &["does not match app.tar.gz"],
    );
}

#[test]
fn openpgp_signing_subkey_and_rsa() {
    let f = Fixture::new();
    let a = Gpg::generate("carol", "rsa2048", true);
    let sig = a.sign(&f.artifact("v1"), &f.path("v1.asc"), true);
    let v = check(
        &[a.key(f.dir.path(), true)],
        "v1",
        &f.artifact("v1"),
        &[of_artifact(&sig)],
    )
    .expect("subkey signature");
    assert!(v.key.contains(&a.fingerprint), "{}", v.key);
    refused(
        check(
            &[a.key(f.dir.path(), true)],
            "v2",
            &f.artifact("v2"),
            &[of_artifact(&sig)],
        ),
        RefusalKind::BadSignature,
        &["does not match"],
    );
}

#[test]
fn signed_checksum_file_covers_the_artifact() {
    let f = Fixture::new();
    let a = Minisign::generate(f.dir.path(), "a");
    let g = Gpg::generate("dave", "ed25519", false);
    let sums = f.sums("v2");
    let msig = a.sign(&sums, &f.path("SHA256SUMS.minisig"), &[]);
    let gsig = g.sign(&sums, &f.path("SHA256SUMS.asc"), true);
    for (keys, sig) in [(vec![a.key()], &msig), (vec![g.key(f.dir.path(), true)], &gsig)] {
        let v = check(&keys, "v2", &f.artifact("v2"), &[of_sums(sig, &sums)]).expect("checksums signed");
        assert_eq!(v.via_checksum.as_deref(), Some("SHA256SUMS"));
        assert!(v.to_string().contains("SHA256SUMS lists its SHA-256"), "{v}");
    }
    // The artifact altered: the signed list names another digest.
    let v2 = f.artifact("v2");
    let original = std::fs::read(&v2).expect("read");
    tamper(&v2);
    refused(
        check(&[a.key()], "v2", &v2, &[of_sums(&msig, &sums)]),
        RefusalKind::ChecksumMismatch,
        &["SHA256SUMS is signed but lists sha256", "for app.tar.gz"],
    );
    std::fs::write(&v2, original).expect("restore");
    // The checksum file altered after signing.
    let mut altered = of_sums(&msig, &sums);
    if let Some(Ok(bytes)) = &mut altered.checksum {
        bytes[0] = if bytes[0] == b'0' { b'1' } else { b'0' };
    }
    refused(
        check(&[a.key()], "v2", &v2, &[altered]),
        RefusalKind::BadSignature,
        &["SHA256SUMS.minisig", "does not match SHA256SUMS"],
    );
    // Signed, but listing only other files.
    let other = f.path("OTHER-SUMS");
    std::fs::write(&other, format!("{}  other.zip\n", "0".repeat(64))).expect("write");
    let osig = a.sign(&other, &f.path("OTHER.minisig"), &["-t", "file:SHA256SUMS"]);
    refused(
        check(&[a.key()], "v2", &v2, &[of_sums(&osig, &other)]),
        RefusalKind::NotListed,
        &["SHA256SUMS is signed but does not list app.tar.gz"],
    );
    // Replay: v1's signed checksum file offered with v2's artifact.
    let sums1 = f.sums("v1");
    let sig1 = a.sign(
        &sums1,
        &f.path("SHA256SUMS-v1.minisig"),
        &["-t", "file:SHA256SUMS"],
    );
    refused(
        check(&[a.key()], "v2", &v2, &[of_sums(&sig1, &sums1)]),
        RefusalKind::ChecksumMismatch,
        &["the checksum file of another release"],
    );
}

#[test]
fn any_one_valid_signature_verifies_and_fetch_errors_are_transient() {
    let f = Fixture::new();
    let a = Minisign::generate(f.dir.path(), "a");
    let good = of_artifact(&a.sign(&f.artifact("v2"), &f.path("v2.minisig"), &[]));
    let unfetched = Candidate {
        name: "SHA256SUMS.asc".into(),
        signature: Err("HTTP 503".into()),
        signs: "SHA256SUMS".into(),
        checksum: None,
    };
    let v = check(
        &[a.key()],
        "v2",
        &f.artifact("v2"),
        &[truncated(&good), unfetched.clone(), good.clone()],
    )
    .expect("one good");
    assert_eq!(v.signature, "app.tar.gz.minisig");
    let r = refused(
        check(
            &[a.key()],
            "v2",
            &f.artifact("v2"),
            &[truncated(&good), unfetched],
        ),
        RefusalKind::Unavailable,
        &[
            "SHA256SUMS.asc: not fetched: HTTP 503",
            "app.tar.gz.minisig: truncated",
        ],
    );
    assert!(r.is_transient());
    let r = refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[truncated(&good)]),
        RefusalKind::Malformed,
        &["release v2 (app.tar.gz) refused (malformed signature)"],
    );
    assert!(!r.is_transient());
    let junk = Candidate {
        signature: Ok(b"hello, this is not a signature".to_vec()),
        ..good
    };
    refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &[junk]),
        RefusalKind::Malformed,
        &["not a minisign, signify, OpenPGP or cosign signature"],
    );
}

#[test]
fn image_payload_must_be_signed_and_name_the_digest() {
    use base64::Engine;
    let f = Fixture::new();
    let a = Cosign::generate(f.dir.path(), "a");
    let b = Cosign::generate(f.dir.path(), "b");
    let digest = format!("sha256:{}", "ab".repeat(32));
    let other = format!("sha256:{}", "cd".repeat(32));
    let payload = |digest: &str, typ: &str| {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{typ}"}},"optional":null}}"#
        )
    };
    let sign = |text: &str| {
        let p = f.path("payload.json");
        std::fs::write(&p, text).expect("write");
        base64::engine::general_purpose::STANDARD.encode(a.sign_der(&p))
    };
    let good = payload(&digest, IMAGE_SIGNATURE_TYPE);
    let sig = sign(&good);
    let v = verify_image_payload(&[a.key()], good.as_bytes(), &sig, &digest).expect("good image signature");
    assert_eq!(v.key, a.key().label());
    refused(
        verify_image_payload(&[a.key()], good.as_bytes(), &sig, &other),
        RefusalKind::Replay,
        &[&format!("is for image {digest}, not {other}")],
    );
    refused(
        verify_image_payload(&[b.key()], good.as_bytes(), &sig, &digest),
        RefusalKind::BadSignature,
        &["does not verify with any trusted cosign key"],
    );
    refused(
        verify_image_payload(&[a.key()], good.replace("app", "evil").as_bytes(), &sig, &digest),
        RefusalKind::BadSignature,
        &["payload was altered"],
    );
    refused(
        verify_image_payload(&[a.key()], good.as_bytes(), &sig[..sig.len() / 2], &digest),
        RefusalKind::Malformed,
        &["truncated or malformed image signature"],
    );
    let odd = payload(&digest, "something else");
    refused(
        verify_image_payload(&[a.key()], odd.as_bytes(), &sign(&odd), &digest),
        RefusalKind::Malformed,
        &["not \"cosign container image signature\""],
    );
    let minisign = Minisign::generate(f.dir.path(), "m");
    refused(
        verify_image_payload(&[minisign.key()], good.as_bytes(), &sig, &digest),
        RefusalKind::UntrustedKey,
        &["no cosign key is trusted"],
    );
    // Several layers: one good one is enough; none at all is refused.
    let layer = |payload: &str, signature: &str| crate::registry::oci::cosign::CosignSignature {
        layer: "sha256:00".into(),
        payload: payload.as_bytes().to_vec(),
        signature: signature.to_string(),
    };
    let bad = layer(
        &payload(&other, IMAGE_SIGNATURE_TYPE),
        &sign(&payload(&other, IMAGE_SIGNATURE_TYPE)),
    );
    let v = verify_image(
        &[b.key(), a.key()],
        "host/app",
        &digest,
        &[bad.clone(), layer(&good, &sig)],
    )
    .expect("one good layer");
    assert!(
        v.signature
            .starts_with(&format!("sha256-{}.sig layer", "ab".repeat(32))),
        "{}",
        v.signature
    );
    refused(
        verify_image(&[a.key()], "host/app", &digest, &[bad]),
        RefusalKind::Replay,
        &["host/app@sha256:abab", "replayed from another image"],
    );
    refused(
        verify_image(&[a.key()], "host/app", &digest, &[]),
        RefusalKind::NoSignature,
        &["has no cosign signature", ".sig"],
    );
}

#[test]
fn keys_parse_with_clear_errors() {
    let f = Fixture::new();
    let err = |spec: &str| TrustedKey::parse_with(spec, None).expect_err(spec).to_string();
    let e = err("gpg:/etc/key.asc");
    assert!(
        e.contains("verify key \"gpg:/etc/key.asc\"") && e.contains("unknown key kind \"gpg\""),
        "{e}"
    );
    let e = err("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3");
    assert!(e.contains("expected KIND:VALUE"), "{e}");
    let e = err("minisign:not base64!");
    assert!(e.contains("not base64"), "{e}");
    let e = err("minisign:RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7");
    assert!(e.contains("not an Ed25519 public key"), "{e}");
    let e = err("cosign:/nonexistent/cosign.pub");
    assert!(
        e.contains("verify key \"cosign:/nonexistent/cosign.pub\"") && e.contains("/nonexistent/cosign.pub"),
        "{e}"
    );
    let m = Minisign::generate(f.dir.path(), "m");
    let e = err(&format!("cosign:{}", m.public.display()));
    assert!(e.contains("not a PEM ECDSA P-256 public key"), "{e}");
    let e = err(&format!("openpgp:{}", m.public.display()));
    assert!(e.contains("not an OpenPGP public key"), "{e}");
    let e = err("credential:signing-key");
    assert!(e.contains("$CREDENTIALS_DIRECTORY is not set"), "{e}");
    let e = err("openpgp:credential:../x");
    assert!(e.contains("invalid credential name"), "{e}");
    // A credential: by its kind, or detected from its contents.
    let creds = f.path("creds");
    std::fs::create_dir(&creds).expect("mkdir");
    let c = Cosign::generate(f.dir.path(), "c");
    let s = Signify::generate(f.dir.path(), "s");
    let g = Gpg::generate("erin", "ed25519", false);
    std::fs::copy(&m.public, creds.join("minisign")).expect("copy");
    std::fs::copy(&c.public, creds.join("cosign")).expect("copy");
    std::fs::copy(&s.public, creds.join("signify")).expect("copy");
    g.export(&creds.join("openpgp"), false);
    for (name, kind) in [
        ("minisign", KeyKind::Minisign),
        ("cosign", KeyKind::Cosign),
        ("signify", KeyKind::Signify),
        ("openpgp", KeyKind::OpenPgp),
    ] {
        let k = TrustedKey::parse_with(&format!("credential:{name}"), Some(&creds)).expect(name);
        assert_eq!(k.kind(), kind, "{name}");
        assert_eq!(k.spec(), format!("credential:{name}"));
    }
    let k = TrustedKey::parse_with("cosign:credential:cosign", Some(&creds)).expect("explicit kind");
    assert_eq!(k.kind(), KeyKind::Cosign);
    let e = TrustedKey::parse_with("minisign-file:credential:absent", Some(&creds))
        .expect_err("absent")
        .to_string();
    assert!(e.contains("creds/absent"), "{e}");
    // Shown as written in the settings.
    assert_eq!(
        serde_json::to_string(&k).expect("json"),
        "\"cosign:credential:cosign\""
    );
}

/// A source serving fixed bodies by URL.
struct Files(std::collections::HashMap<String, Vec<u8>>);

#[async_trait::async_trait]
impl crate::registry::Registry for Files {
    async fn latest(&self) -> Result<crate::registry::Release, crate::registry::CheckError> {
        Err(crate::registry::CheckError::NoRelease("none".into()))
    }
    async fn find(&self, _: &str) -> Result<crate::registry::Release, crate::registry::CheckError> {
        Err(crate::registry::CheckError::NoRelease("none".into()))
    }
    async fn fetch(&self, url: &str) -> anyhow::Result<crate::registry::ByteStream> {
        let body = self
            .0
            .get(url)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{url}: HTTP 404"))?;
        let chunks = vec![Ok(bytes::Bytes::from(body))];
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }
}

#[tokio::test]
async fn candidates_are_fetched_with_their_checksum_files() {
    let f = Fixture::new();
    let a = Minisign::generate(f.dir.path(), "a");
    let sums = f.sums("v2");
    let sig = a.sign(&sums, &f.path("SHA256SUMS.minisig"), &[]);
    let read = |p: &Path| std::fs::read(p).expect("read");
    let files = Files(
        [
            ("u/SHA256SUMS".to_string(), read(&sums)),
            ("u/SHA256SUMS.minisig".to_string(), read(&sig)),
            ("u/big.asc".to_string(), vec![b'x'; MAX_SIGNATURE_SIZE + 1]),
        ]
        .into_iter()
        .collect(),
    );
    let asset = |name: &str, signs: &str| crate::registry::SignatureAsset {
        name: name.into(),
        url: format!("u/{name}"),
        signs: signs.into(),
        signs_url: format!("u/{signs}"),
    };
    let release = crate::registry::Release {
        version: "v2".into(),
        artifact: ARTIFACT.into(),
        artifact_url: "u/app.tar.gz".into(),
        checksum_url: Some("u/SHA256SUMS".into()),
        published_at: None,
        signatures: vec![
            asset("app.tar.gz.minisig", ARTIFACT),
            asset("big.asc", ARTIFACT),
            asset("SHA256SUMS.minisig", "SHA256SUMS"),
        ],
    };
    let got = fetch_candidates(&files, &release).await;
    assert_eq!(got.len(), 3);
    assert!(
        got[0].signature.as_ref().is_err_and(|e| e.contains("HTTP 404")),
        "{:?}",
        got[0]
    );
    assert_eq!(got[0].checksum, None);
    assert!(
        got[1]
            .signature
            .as_ref()
            .is_err_and(|e| e.contains("larger than")),
        "{:?}",
        got[1]
    );
    assert_eq!(got[2].signature.as_deref().ok(), Some(&read(&sig)[..]));
    assert_eq!(got[2].checksum, Some(Ok(read(&sums))));
    let v = check(&[a.key()], "v2", &f.artifact("v2"), &got).expect("verified through the checksum file");
    assert_eq!(v.via_checksum.as_deref(), Some("SHA256SUMS"));
    let r = refused(
        check(&[a.key()], "v2", &f.artifact("v2"), &got[..2]),
        RefusalKind::Unavailable,
        &["app.tar.gz.minisig: not fetched", "big.asc: not fetched"],
    );
    assert!(r.is_transient());
}
