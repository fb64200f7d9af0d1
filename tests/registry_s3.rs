//! The `s3://` registry against a real S3-compatible server (`s3s-fs`, SigV4 checked): version
//! choice, pre-releases, explicit artifacts, paging, missing artifacts, slots, CalVer, bad
//! credentials, and deploys through `dewy assets` with the published checksum verified.

mod support;

use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use dewy::registry::{self, CheckError, OpenOptions, Registry};
use support::proc::Daemon;
use support::s3::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};
use support::{current_file, tar_gz, wait_for};

/// The AWS credential chain reads the environment: set it once, before any client exists.
fn credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

fn host_artifact() -> String {
    format!("app_{}_{}.tar.gz", std::env::consts::OS, std::env::consts::ARCH)
}

fn open(url: &str, slot: Option<&str>, max_keys: Option<i32>) -> Arc<dyn Registry> {
    credentials();
    let opts = OpenOptions {
        slot: slot.map(str::to_string),
        s3_max_keys: max_keys,
        ..OpenOptions::default()
    };
    registry::open(url, &opts).expect("open registry")
}

#[tokio::test]
async fn newest_version_prerelease_and_explicit_artifact() {
    let s3 = S3Server::start(&["rel"]);
    let art = host_artifact();
    for v in ["v1.0.0", "v1.10.0", "v1.2.0", "v2.0.0-rc.1"] {
        s3.put(
            "rel",
            &format!("app/{v}/{art}"),
            format!("payload {v}").as_bytes(),
            None,
        );
        s3.put("rel", &format!("app/{v}/custom.bin"), b"custom", None);
    }
    s3.put("rel", &format!("app/.cache/{art}"), b"junk", None);
    s3.put("rel", "app/README", b"not a version", None);
    s3.put("rel", &format!("other/v9.0.0/{art}"), b"elsewhere", None);

    let reg = open(&s3.registry_url("rel", "app", ""), None, None);
    let rel = reg.latest().await.expect("latest");
    assert_eq!(rel.version, "v1.10.0");
    assert_eq!(rel.artifact, art);
    assert_eq!(rel.artifact_url, format!("s3://{REGION}/rel/app/v1.10.0/{art}"));
    assert!(rel.published_at.is_some());
    assert_eq!(
        support::read_all(reg.as_ref(), &rel.artifact_url).await,
        b"payload v1.10.0"
    );
    assert!(reg
        .fetch(&format!("s3://{REGION}/rel/other/v9.0.0/{art}"))
        .await
        .is_err());

    let pre = open(&s3.registry_url("rel", "app/", "pre-release=true"), None, None);
    assert_eq!(pre.latest().await.expect("latest").version, "v2.0.0-rc.1");

    let explicit = open(&s3.registry_url("rel", "app", "artifact=custom.bin"), None, None);
    let rel = explicit.latest().await.expect("latest");
    assert_eq!(rel.artifact, "custom.bin");
    assert_eq!(
        support::read_all(explicit.as_ref(), &rel.artifact_url).await,
        b"custom"
    );
    assert_eq!(explicit.find("1.2.0").await.expect("find").version, "v1.2.0");
    assert!(matches!(
        explicit.find("v3.0.0").await,
        Err(CheckError::NoRelease(_))
    ));
}

#[tokio::test]
async fn small_pages_are_followed() {
    let s3 = S3Server::start(&["paged"]);
    for minor in 0..9 {
        let v = format!("v1.{minor}.0");
        s3.put("paged", &format!("{v}/app.tar.gz"), v.as_bytes(), None);
    }
    for i in 0..5 {
        s3.put("paged", &format!("v1.8.0/extra-{i}.txt"), b"x", None);
    }
    s3.put("paged", "v1.8.0/app.tar.gz.sha256", b"x", None);
    let reg = open(
        &s3.registry_url("paged", "", "artifact=app.tar.gz"),
        None,
        Some(2),
    );
    let rel = reg.latest().await.expect("latest");
    assert_eq!(rel.version, "v1.8.0");
    assert_eq!(
        rel.checksum_url.as_deref(),
        Some(format!("s3://{REGION}/paged/v1.8.0/app.tar.gz.sha256").as_str())
    );
}

#[tokio::test]
async fn missing_artifact_reports_oldest_object_time() {
    let s3 = S3Server::start(&["rel"]);
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    s3.put("rel", "v1.0.0/app.tar.gz", b"one", None);
    s3.put(
        "rel",
        "v1.1.0/README.md",
        b"notes",
        Some(old + Duration::from_secs(60)),
    );
    s3.put("rel", "v1.1.0/NOTES.md", b"notes", Some(old));
    let reg = open(&s3.registry_url("rel", "", "artifact=app.tar.gz"), None, None);
    match reg.latest().await {
        Err(CheckError::ArtifactNotFound {
            version,
            published_at,
        }) => {
            assert_eq!(version, "v1.1.0");
            assert_eq!(published_at.map(|t| t.timestamp()), Some(1_700_000_000));
        }
        other => panic!("expected ArtifactNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn slots_and_calver() {
    let s3 = S3Server::start(&["rel"]);
    for v in ["v1.0.0+blue", "v1.1.0+green", "v1.2.0"] {
        s3.put("rel", &format!("sem/{v}/app.tar.gz"), v.as_bytes(), None);
    }
    for v in [
        "2024.09.3",
        "2024.10.1",
        "2024.10.12",
        "2024.10.13-rc.1",
        "v1.9.9",
    ] {
        s3.put("rel", &format!("cal/{v}/app.tar.gz"), v.as_bytes(), None);
    }
    let blue = open(
        &s3.registry_url("rel", "sem", "artifact=app.tar.gz"),
        Some("blue"),
        None,
    );
    let rel = blue.latest().await.expect("latest");
    assert_eq!(rel.version, "v1.0.0+blue");
    assert_eq!(
        support::read_all(blue.as_ref(), &rel.artifact_url).await,
        b"v1.0.0+blue"
    );
    let cal = open(
        &s3.registry_url("rel", "cal", "artifact=app.tar.gz&calver=YYYY.0M.MICRO"),
        None,
        None,
    );
    assert_eq!(cal.latest().await.expect("latest").version, "2024.10.12");
}

#[tokio::test]
async fn unknown_bucket_is_a_clear_error() {
    let s3 = S3Server::start(&["rel"]);
    let reg = open(&s3.registry_url("nope", "", ""), None, None);
    let err = format!("{:#}", reg.latest().await.expect_err("no bucket"));
    assert!(err.contains("nope"), "{err}");
    assert!(err.contains(&s3.endpoint()), "{err}");
}

fn site(version: &str) -> Vec<u8> {
    tar_gz(&[("VERSION", 0o644, version.as_bytes())])
}

fn sha256_line(body: &[u8], name: &str) -> String {
    format!("{}  {name}\n", hex::encode(Sha256::digest(body)))
}

fn start_assets(s3: &S3Server, root: &std::path::Path, secret: &str) -> Daemon {
    start_assets_with(s3, root, &[("AWS_SECRET_ACCESS_KEY", secret)])
}

fn start_assets_with(s3: &S3Server, root: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
    let url = s3.registry_url("rel", "site", "artifact=site.tar.gz");
    let mut all = vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    all.extend_from_slice(env);
    Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &["assets", "--registry", &url, "--interval", "1", "--bus", "none"],
        &all,
        root,
        &root.join("../dewy.log"),
    )
}

#[test]
fn systemd_credentials_win_over_the_environment() {
    let s3 = S3Server::start(&["rel"]);
    s3.put("rel", "site/v1.0.0/site.tar.gz", &site("v1.0.0"), None);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let creds = tmp.path().join("creds");
    std::fs::create_dir_all(&root).expect("root");
    std::fs::create_dir_all(&creds).expect("creds");
    std::fs::write(creds.join("aws-access-key-id"), format!("{ACCESS_KEY}\n")).expect("id");
    std::fs::write(creds.join("aws-secret-access-key"), SECRET_KEY).expect("secret");
    let dir = creds.display().to_string();
    let mut d = start_assets_with(
        &s3,
        &root,
        &[
            ("AWS_SECRET_ACCESS_KEY", "wrong-secret"),
            ("CREDENTIALS_DIRECTORY", dir.as_str()),
        ],
    );
    wait_for("v1.0.0 live", Duration::from_secs(60), || {
        (current_file(&root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    d.kill9();
}

#[test]
fn deploys_with_checksum_and_refuses_a_bad_one() {
    let s3 = S3Server::start(&["rel"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    let v1 = site("v1.0.0");
    s3.put("rel", "site/v1.0.0/site.tar.gz", &v1, None);
    s3.put(
        "rel",
        "site/v1.0.0/site.tar.gz.sha256",
        sha256_line(&v1, "site.tar.gz").as_bytes(),
        None,
    );
    let mut d = start_assets(&s3, &root, SECRET_KEY);
    wait_for("v1.0.0 live", Duration::from_secs(60), || {
        (current_file(&root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    // v1.1.0 with a checksum file that does not match: never goes live.
    let v2 = site("v1.1.0");
    s3.put("rel", "site/v1.1.0/site.tar.gz", &v2, None);
    s3.put(
        "rel",
        "site/v1.1.0/site.tar.gz.sha256",
        sha256_line(b"other", "site.tar.gz").as_bytes(),
        None,
    );
    wait_for("checksum refusal", Duration::from_secs(60), || {
        d.log().contains("checksum mismatch").then_some(())
    });
    assert_eq!(current_file(&root, "VERSION").as_deref(), Some("v1.0.0"));
    d.kill9();
}

#[test]
fn bad_credentials_are_a_clear_error() {
    let s3 = S3Server::start(&["rel"]);
    s3.put("rel", "site/v1.0.0/site.tar.gz", &site("v1.0.0"), None);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    let mut d = start_assets(&s3, &root, "wrong-secret");
    let line = wait_for("a credentials error", Duration::from_secs(60), || {
        d.log()
            .lines()
            .find(|l| l.contains("SignatureDoesNotMatch") || l.contains("InvalidAccessKeyId"))
            .map(str::to_string)
    });
    assert!(line.contains("check the AWS credentials"), "{line}");
    assert!(line.contains(&s3.endpoint()), "{line}");
    assert!(line.contains("s3://rel/"), "{line}");
    d.kill9();
}

/// The shipping report: an empty text/plain object next to the version's files, written through
/// the same SigV4-signed client; the deploy-event sink writes it in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipping_report_is_an_empty_object_next_to_the_version() {
    use dewy::notify::shipping::ShippingReport;
    use dewy::notify::Event;
    use dewy::registry::shipping::Shipment;
    let s3 = S3Server::start(&["rel"]);
    s3.put("rel", &format!("app/v1.0.0/{}", host_artifact()), b"x", None);
    let reg = open(&s3.registry_url("rel", "app", ""), None, None);
    assert!(reg.reports_shipping());
    let sink = ShippingReport::sink(&reg, true).expect("S3 takes reports");
    assert!(ShippingReport::sink(&reg, false).is_none(), "report = false");
    sink.emit(Event::Deployed {
        version: "v1.0.0".into(),
        previous: None,
        duration: Duration::from_secs(1),
        command: "assets".into(),
    });
    let dir = s3.data_dir().join("rel/app/v1.0.0");
    let report = wait_for("the shipping report", Duration::from_secs(20), || {
        std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("shipped_to_"))
    });
    assert!(
        report.contains("_assets_at_") && report.ends_with("Z.txt"),
        "{report}"
    );
    assert_eq!(
        std::fs::metadata(dir.join(&report)).unwrap().len(),
        0,
        "empty object"
    );
    let shipment = Shipment {
        version: "v1.0.0".into(),
        command: "server".into(),
        host: "web-2".into(),
        at: chrono::Utc::now(),
    };
    reg.report_shipped(&shipment).await.expect("a direct report");
    assert!(
        dir.join(shipment.file_name()).is_file(),
        "{}",
        shipment.file_name()
    );
    // A store that does not answer: the error names the object, for the log.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!(
        "s3://us-east-1/rel/app?endpoint=http://{}",
        dead.local_addr().unwrap()
    );
    drop(dead);
    let refused = open(&dead_url, None, None)
        .report_shipped(&shipment)
        .await
        .expect_err("no store there");
    let want = format!("s3://rel/app/v1.0.0/{}", shipment.file_name());
    assert!(format!("{refused:#}").contains(&want), "{refused:#}");
}
