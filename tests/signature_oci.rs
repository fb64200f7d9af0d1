//! cosign image signatures stored in a real OCI registry (Debian's `docker-registry`): fetched
//! from the `sha256-<hex>.sig` tag and checked against the digest about to run. Good, missing,
//! wrong-key and other-digest signatures, and key rotation.

mod support;

use dewy::registry::{self, OpenOptions};
use dewy::signature::{verify_image, RefusalKind, TrustedKey};
use support::cosign::{payload, push_signature, SigningKey};
use support::oci::{Auth, OciServer};

fn key(k: &SigningKey) -> TrustedKey {
    TrustedKey::parse(&k.spec()).expect("cosign key")
}

#[tokio::test]
async fn image_signatures_from_the_registry() {
    let server = OciServer::start(Auth::Basic);
    let host = server.host();
    let v1 = server.push("team/app", "v1.0.0", "one").await;
    let v2 = server.push("team/app", "v2.0.0", "two").await;
    let v3 = server.push("team/app", "v3.0.0", "three").await;
    std::env::set_var("DOCKER_USERNAME", support::oci::USER);
    std::env::set_var("DOCKER_PASSWORD", support::oci::PASSWORD);
    let reg = registry::open(&format!("img://{host}/team/app"), &OpenOptions::default()).expect("open");
    let image = format!("{host}/team/app");
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let stranger = SigningKey::generate();

    // v1: signed by the old key; v2: by the new one; both pass while both are listed.
    let p1 = payload(&image, &v1);
    push_signature(&server, "team/app", &v1, &[(p1.clone(), old.sign(p1.as_bytes()))]).await;
    let p2 = payload(&image, &v2);
    push_signature(&server, "team/app", &v2, &[(p2.clone(), new.sign(p2.as_bytes()))]).await;
    let both = [key(&old), key(&new)];
    for digest in [&v1, &v2] {
        let sigs = reg.image_signatures(digest).await.expect("fetch");
        assert_eq!(sigs.len(), 1);
        let ok = verify_image(&both, &image, digest, &sigs).expect("signed image");
        assert!(ok.signature.contains(".sig layer sha256:"), "{}", ok.signature);
    }
    let sigs = reg.image_signatures(&v1).await.expect("fetch");
    let r = verify_image(&[key(&new)], &image, &v1, &sigs).expect_err("old key dropped");
    assert_eq!(r.kind, RefusalKind::BadSignature, "{r}");

    // v3: no signature tag at all.
    let sigs = reg.image_signatures(&v3).await.expect("fetch");
    assert!(sigs.is_empty());
    let r = verify_image(&both, &image, &v3, &sigs).expect_err("unsigned");
    assert_eq!(r.kind, RefusalKind::NoSignature, "{r}");
    assert!(r.message.contains(&format!("sha256-{}.sig", &v3[7..])), "{r}");

    // v3 with v1's signed payload copied under its tag: a replay; and a stranger's signature.
    push_signature(
        &server,
        "team/app",
        &v3,
        &[
            (p1.clone(), old.sign(p1.as_bytes())),
            (
                payload(&image, &v3),
                stranger.sign(payload(&image, &v3).as_bytes()),
            ),
        ],
    )
    .await;
    let sigs = reg.image_signatures(&v3).await.expect("fetch");
    assert_eq!(sigs.len(), 2);
    let r = verify_image(&both, &image, &v3, &sigs).expect_err("replay");
    assert_eq!(r.kind, RefusalKind::Replay, "{r}");
    assert!(r.message.contains(&format!("is for image {v1}, not {v3}")), "{r}");
    assert!(
        r.message.contains("does not verify with any trusted cosign key"),
        "{r}"
    );
}
