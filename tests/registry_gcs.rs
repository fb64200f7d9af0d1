//! The `gs://` registry against the GCS emulator: version choice, pre-releases, explicit
//! artifacts, slots, CalVer, missing artifacts, and a deploy through `dewy assets` with the
//! published checksum verified. (Paging is unit-tested in `src/registry/gcs/tests.rs`: the
//! emulator does not page.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use dewy::registry::{self, CheckError, OpenOptions, Registry};
use support::gcs::GcsEmulator;
use support::proc::Daemon;
use support::{current_file, tar_gz, wait_for};

fn host_artifact() -> String {
    format!("app_{}_{}.tar.gz", std::env::consts::OS, std::env::consts::ARCH)
}

fn open(emu: &GcsEmulator, prefix: &str, query: &str, slot: Option<&str>) -> Arc<dyn Registry> {
    let opts = OpenOptions {
        slot: slot.map(str::to_string),
        gcs_endpoint: Some(emu.endpoint()),
        ..OpenOptions::default()
    };
    registry::open(&emu.registry_url(prefix, query), &opts).expect("open registry")
}

#[tokio::test]
async fn newest_prerelease_explicit_slots_and_calver() {
    let emu = GcsEmulator::start("bkt");
    let art = host_artifact();
    for v in [
        "v1.0.0",
        "v1.10.0",
        "v1.2.0",
        "v2.0.0-rc.1",
        "v1.11.0+blue",
        "v1.12.0+green",
    ] {
        emu.put(&format!("app/{v}/{art}"), format!("payload {v}").as_bytes())
            .await;
        emu.put(&format!("app/{v}/custom.bin"), b"custom").await;
    }
    emu.put(&format!("app/v1.10.0/{art}.sha256"), b"x").await;
    emu.put(&format!("app/.cache/{art}"), b"junk").await;
    emu.put(&format!("other/v9.0.0/{art}"), b"elsewhere").await;

    let reg = open(&emu, "app", "", Some("blue"));
    let rel = reg.latest().await.expect("latest");
    assert_eq!(rel.version, "v1.11.0+blue");
    assert_eq!(rel.artifact_url, format!("gs://bkt/app/v1.11.0+blue/{art}"));
    assert_eq!(
        support::read_all(reg.as_ref(), &rel.artifact_url).await,
        b"payload v1.11.0+blue"
    );

    let reg = open(&emu, "app", "", None);
    let rel = reg.latest().await.expect("latest");
    assert_eq!(rel.version, "v1.12.0+green");
    let rel = reg.find("v1.10.0").await.expect("find");
    assert!(rel.checksum_url.is_some_and(|u| u.ends_with(".sha256")));
    assert!(rel.published_at.is_some());
    assert!(reg.fetch(&format!("gs://bkt/other/v9.0.0/{art}")).await.is_err());

    let pre = open(&emu, "app/", "pre-release=true", Some(""));
    assert_eq!(pre.latest().await.expect("latest").version, "v2.0.0-rc.1");

    let explicit = open(&emu, "app", "artifact=custom.bin", None);
    let rel = explicit.latest().await.expect("latest");
    assert_eq!(rel.artifact, "custom.bin");
    assert_eq!(
        support::read_all(explicit.as_ref(), &rel.artifact_url).await,
        b"custom"
    );

    for v in ["2024.9.3", "2024.10.1", "2024.10.12", "2024.11.0-rc.1"] {
        emu.put(&format!("cal/{v}/app.tar.gz"), v.as_bytes()).await;
    }
    let cal = open(&emu, "cal", "artifact=app.tar.gz&calver=YYYY.MM.MICRO", None);
    assert_eq!(cal.latest().await.expect("latest").version, "2024.10.12");
}

#[tokio::test]
async fn missing_artifact_and_missing_bucket() {
    let emu = GcsEmulator::start("bkt");
    emu.put("rel/v1.0.0/app.tar.gz", b"one").await;
    emu.put("rel/v1.1.0/NOTES.md", b"notes").await;
    let reg = open(&emu, "rel", "artifact=app.tar.gz", None);
    match reg.latest().await {
        Err(CheckError::ArtifactNotFound {
            version,
            published_at,
        }) => {
            assert_eq!(version, "v1.1.0");
            let age = chrono::Utc::now() - published_at.expect("published_at");
            assert!(age.num_seconds().abs() < 600, "{age}");
        }
        other => panic!("expected ArtifactNotFound, got {other:?}"),
    }
    let opts = OpenOptions {
        gcs_endpoint: Some(emu.endpoint()),
        ..OpenOptions::default()
    };
    let none = registry::open("gs://nope/rel", &opts).expect("open");
    let err = format!("{:#}", none.latest().await.expect_err("no bucket"));
    assert!(err.contains("nope"), "{err}");
}

fn site(version: &str) -> Vec<u8> {
    tar_gz(&[("VERSION", 0o644, version.as_bytes())])
}

#[tokio::test]
async fn deploys_through_dewy_assets_with_checksum() {
    let emu = GcsEmulator::start("bkt");
    let v1 = site("v1.0.0");
    let sum = format!("{}  site.tar.gz\n", hex::encode(Sha256::digest(&v1)));
    emu.put("site/v1.0.0/site.tar.gz", &v1).await;
    emu.put("site/v1.0.0/checksums.txt", sum.as_bytes()).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    let url = emu.registry_url("site", "artifact=site.tar.gz");
    let endpoint = emu.endpoint();
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &["assets", "--registry", &url, "--interval", "1", "--bus", "none"],
        &[("STORAGE_EMULATOR_HOST", endpoint.as_str())],
        &root,
        &root.join("../dewy.log"),
    );
    let root2 = root.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("v1.0.0 live", Duration::from_secs(60), || {
            (current_file(&root2, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
        })
    })
    .await
    .expect("join");
    let v2 = site("v1.1.0");
    emu.put("site/v1.1.0/site.tar.gz", &v2).await;
    emu.put(
        "site/v1.1.0/checksums.txt",
        b"0000000000000000000000000000000000000000000000000000000000000000  site.tar.gz\n",
    )
    .await;
    let log = tokio::task::spawn_blocking(move || {
        wait_for("checksum refusal", Duration::from_secs(60), || {
            d.log().contains("checksum mismatch").then(|| {
                d.kill9();
                d.log()
            })
        })
    })
    .await
    .expect("join");
    assert!(log.contains("v1.1.0"), "{log}");
    assert_eq!(current_file(&root, "VERSION").as_deref(), Some("v1.0.0"));
}

/// The shipping report: an empty object `<prefix><tag>/shipped_to_…txt` in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipping_report_is_an_empty_object_next_to_the_version() {
    use dewy::notify::shipping::ShippingReport;
    use dewy::notify::Event;
    use dewy::registry::shipping::Shipment;
    let emu = GcsEmulator::start("bkt");
    emu.put(&format!("app/v1.0.0/{}", host_artifact()), b"x").await;
    let reg = open(&emu, "app", "", None);
    assert!(reg.reports_shipping());
    let direct = Shipment {
        version: "v1.0.0".into(),
        command: "assets".into(),
        host: "web-3".into(),
        at: chrono::Utc::now(),
    };
    reg.report_shipped(&direct).await.expect("a direct report");
    let names = emu.list("app/v1.0.0/").await;
    let want = format!("app/v1.0.0/{}", direct.file_name());
    assert!(names.contains(&want), "{want} in {names:?}");
    let sink = ShippingReport::sink(&reg, true).expect("GCS takes reports");
    sink.emit(Event::Deployed {
        version: "v1.0.0".into(),
        previous: None,
        duration: Duration::from_secs(1),
        command: "server".into(),
    });
    let mut found = None;
    for _ in 0..100 {
        let names = emu.list("app/v1.0.0/").await;
        if let Some(n) = names.into_iter().find(|n| n.contains("_server_at_")) {
            found = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = found.expect("the shipping report object");
    assert!(
        name.starts_with("app/v1.0.0/shipped_to_") && name.contains("_server_at_"),
        "{name}"
    );
    let media = format!(
        "{}/storage/v1/b/bkt/o/{}?alt=media",
        emu.endpoint(),
        name.replace('/', "%2F")
    );
    let body = reqwest::get(&media).await.unwrap();
    assert!(body.status().is_success(), "{}", body.status());
    assert!(body.bytes().await.unwrap().is_empty(), "empty object");
}
