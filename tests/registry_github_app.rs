//! GitHub App authentication and the shipping report against the GitHub stand-in: RS256 JWTs
//! from PKCS#1 and PKCS#8 keys checked with the app's public key, expiring installation tokens
//! renewed, a wrong key refused clearly, and the report uploaded through the uploads API.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use dewy::notify::shipping::ShippingReport;
use dewy::notify::Event;
use dewy::registry::github::app::{load_key, AppAuth, AppCredentials};
use dewy::registry::shipping::Shipment;
use dewy::registry::{self, OpenOptions, Registry};
use ring::signature::KeyPair;
use support::github::{GithubFake, ReleaseSpec};
use support::proc::Daemon;
use support::wait_for;

const APP_ID: u64 = 424242;
const INSTALLATION: u64 = 9001;

fn host_asset() -> String {
    format!("app_{}_{}.tar.gz", std::env::consts::OS, std::env::consts::ARCH)
}

/// Run openssl with `args` then `paths`; its output is shown only when it fails.
fn openssl(args: &[&str], paths: &[&std::path::Path]) {
    let out = Command::new("openssl")
        .args(args)
        .args(paths)
        .output()
        .expect("openssl is needed");
    assert!(
        out.status.success(),
        "openssl {args:?} {paths:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new RSA key as (PKCS#8 PEM, PKCS#1 PEM), made by openssl.
fn new_key(dir: &std::path::Path, name: &str) -> (String, String) {
    let p8 = dir.join(format!("{name}.p8.pem"));
    let p1 = dir.join(format!("{name}.p1.pem"));
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ],
        &[&p8],
    );
    openssl(
        &["pkey", "-traditional", "-in"],
        &[&p8, std::path::Path::new("-out"), &p1],
    );
    let (p8, p1) = (
        std::fs::read_to_string(p8).unwrap(),
        std::fs::read_to_string(p1).unwrap(),
    );
    assert!(p8.starts_with("-----BEGIN PRIVATE KEY-----"), "{p8}");
    assert!(p1.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{p1}");
    (p8, p1)
}

fn public_der(pem: &str) -> Vec<u8> {
    load_key(pem).expect("key").public_key().as_ref().to_vec()
}

fn open_as_app(fake: &GithubFake, pem: &str) -> Arc<dyn Registry> {
    let opts = OpenOptions {
        github_api_url: Some(fake.api_url()),
        github_app: Some(AppCredentials {
            app_id: APP_ID.to_string(),
            installation_id: INSTALLATION.to_string(),
            private_key_pem: pem.to_string(),
        }),
        ..OpenOptions::default()
    };
    registry::open(&fake.registry_url(), &opts).expect("open registry")
}

async fn download(reg: &dyn Registry, url: &str) -> Vec<u8> {
    let mut s = reg.fetch(url).await.expect("fetch");
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs1_and_pkcs8_keys_get_installation_tokens_for_the_api_and_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let (p8, p1) = new_key(tmp.path(), "app");
    let fake = GithubFake::start().await;
    fake.set_app(APP_ID, INSTALLATION, public_der(&p8), Duration::from_secs(3600));
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset(&host_asset(), "payload"));
    for pem in [&p8, &p1] {
        let reg = open_as_app(&fake, pem);
        let rel = reg.latest().await.expect("latest with the installation token");
        assert_eq!(rel.version, "v1.0.0");
        assert_eq!(download(reg.as_ref(), &rel.artifact_url).await, b"payload");
    }
    assert_eq!(
        fake.tokens_issued(),
        2,
        "one token per registry, cached: {:?}",
        fake.token_refusals()
    );
    assert!(fake.token_refusals().is_empty());
    assert_eq!(fake.cdn_rejected(), 0, "the token never goes to the CDN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_renewed_and_an_expired_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (p8, _) = new_key(tmp.path(), "app");
    let fake = GithubFake::start().await;
    fake.set_app(APP_ID, INSTALLATION, public_der(&p8), Duration::from_secs(3));
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset(&host_asset(), "payload"));
    let reg = open_as_app(&fake, &p8);
    reg.latest().await.expect("first");
    reg.latest().await.expect("second, same token");
    assert_eq!(fake.tokens_issued(), 1, "cached while fresh");
    tokio::time::sleep(Duration::from_millis(3300)).await;
    reg.latest().await.expect("after expiry: a new token");
    assert_eq!(fake.tokens_issued(), 2, "renewed");
    assert_eq!(
        fake.expired_token_uses(),
        0,
        "renewed before use, never sent expired"
    );

    // The stand-in refuses an expired installation token like GitHub.
    let url = format!("{}/repos/dewy-test/app/releases", fake.api_url());
    let client = reqwest::Client::new();
    let resp = client
        .post(format!(
            "{}/app/installations/{INSTALLATION}/access_tokens",
            fake.api_url()
        ))
        .bearer_auth(load_key(&p8).map(|_| ()).map_or(String::new(), |_| {
            // A JWT made the same way dewy makes it.
            AppAuth::new(&AppCredentials {
                app_id: APP_ID.to_string(),
                installation_id: INSTALLATION.to_string(),
                private_key_pem: p8.clone(),
            })
            .unwrap()
            .jwt(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            )
            .unwrap()
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let token: serde_json::Value = resp.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let resp = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    assert_eq!(fake.expired_token_uses(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_the_server_must_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let (p8, _) = new_key(tmp.path(), "app");
    let (other, _) = new_key(tmp.path(), "other");
    let fake = GithubFake::start().await;
    fake.set_app(APP_ID, INSTALLATION, public_der(&p8), Duration::from_secs(3600));
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset(&host_asset(), "payload"));

    let err = open_as_app(&fake, &other).latest().await.expect_err("wrong key");
    let err = format!("{err:#}");
    assert!(err.contains("GitHub App authentication failed"), "{err}");
    assert!(
        err.contains("401") && err.contains("could not be decoded"),
        "{err}"
    );
    assert!(
        err.contains("GITHUB_APP_PRIVATE_KEY"),
        "says what to check: {err}"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let auth = |app_id: u64| {
        AppAuth::new(&AppCredentials {
            app_id: app_id.to_string(),
            installation_id: INSTALLATION.to_string(),
            private_key_pem: p8.clone(),
        })
        .unwrap()
    };
    let exchange = |jwt: String| {
        let url = format!(
            "{}/app/installations/{INSTALLATION}/access_tokens",
            fake.api_url()
        );
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(jwt)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(exchange(auth(APP_ID).jwt(now).unwrap()).await, 201, "a good JWT");
    assert_eq!(
        exchange(auth(APP_ID + 1).jwt(now).unwrap()).await,
        404,
        "another app's iss"
    );
    assert_eq!(
        exchange(auth(APP_ID).jwt(now - 3600).unwrap()).await,
        401,
        "expired"
    );
    assert_eq!(
        exchange(auth(APP_ID).jwt(now + 3600).unwrap()).await,
        401,
        "issued in the future"
    );
    let good = auth(APP_ID).jwt(now).unwrap();
    let tampered = good.replacen('.', ".e30", 1);
    assert_eq!(exchange(tampered).await, 401, "claims changed after signing");
    assert!(fake.token_refusals().len() >= 5, "{:?}", fake.token_refusals());

    let bad = AppCredentials {
        app_id: "not-a-number".into(),
        installation_id: INSTALLATION.to_string(),
        private_key_pem: p8.clone(),
    };
    let opts = OpenOptions {
        github_api_url: Some(fake.api_url()),
        github_app: Some(bad),
        ..OpenOptions::default()
    };
    let err = registry::open(&fake.registry_url(), &opts)
        .err()
        .expect("bad app id")
        .to_string();
    assert!(err.contains("GitHub App"), "{err}");
    assert!(load_key("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----").is_err());
}

/// The report after a deploy: `POST {upload_url}?name=shipped_to_…txt` on the uploads host with
/// the token and `Content-Type: text/plain`; the asset then appears on the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipping_report_is_uploaded_to_the_release() {
    let tmp = tempfile::tempdir().unwrap();
    let (p8, _) = new_key(tmp.path(), "app");
    let fake = GithubFake::start().await;
    fake.set_app(APP_ID, INSTALLATION, public_der(&p8), Duration::from_secs(3600));
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset(&host_asset(), "payload"));
    let reg = open_as_app(&fake, &p8);
    let sink = ShippingReport::sink(&reg, true).expect("GitHub takes reports");
    sink.emit(Event::Deployed {
        version: "v1.0.0".into(),
        previous: None,
        duration: Duration::from_secs(2),
        command: "server".into(),
    });
    let mut uploads = Vec::new();
    for _ in 0..100 {
        uploads = fake.uploads();
        if !uploads.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let up = &uploads[0];
    assert_eq!(up.method, "POST");
    assert!(
        up.path.starts_with("/repos/dewy-test/app/releases/") && up.path.ends_with("/assets"),
        "{}",
        up.path
    );
    assert_eq!(up.content_type, "text/plain");
    assert!(
        up.authorization.starts_with("Bearer ghs_"),
        "the installation token: {}",
        up.authorization
    );
    let host = dewy::host::name().to_ascii_lowercase();
    assert!(
        up.name.starts_with(&format!("shipped_to_{host}_server_at_")),
        "{}",
        up.name
    );
    assert!(up.name.ends_with("Z.txt"), "{}", up.name);
    let text = String::from_utf8(up.body.to_vec()).unwrap();
    assert_eq!(text, up.name.trim_end_matches(".txt").replace('_', " "));
    assert!(fake.asset_names("v1.0.0").contains(&up.name));

    // A missing release or a refused upload: an error for the log, never a panic.
    let mut shipment = Shipment {
        version: "v9.9.9".into(),
        command: "server".into(),
        host: "web-1".into(),
        at: chrono::Utc::now(),
    };
    let err = reg.report_shipped(&shipment).await.expect_err("no such release");
    assert!(
        format!("{err:#}").contains("release not found: v9.9.9"),
        "{err:#}"
    );
    shipment.version = "v1.0.0".into();
    reg.report_shipped(&shipment).await.expect("a second report");
    let err = reg
        .report_shipped(&shipment)
        .await
        .expect_err("the same name twice");
    assert!(format!("{err:#}").contains("422"), "{err:#}");
    assert_eq!(fake.uploads().len(), 2);
}

/// With a plain token the upload carries it too; `report = false` makes no sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_uses_the_configured_token_and_can_be_turned_off() {
    let fake = GithubFake::start().await;
    fake.set_token(Some("t0ken".into()));
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset(&host_asset(), "payload"));
    let opts = OpenOptions {
        github_api_url: Some(fake.api_url()),
        github_token: Some("t0ken".into()),
        ..OpenOptions::default()
    };
    let reg = registry::open(&fake.registry_url(), &opts).unwrap();
    assert!(ShippingReport::sink(&reg, false).is_none());
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let shipment = Shipment {
        version: "v1.0.0".into(),
        command: "assets".into(),
        host: "H".into(),
        at: at.with_timezone(&chrono::Utc),
    };
    reg.report_shipped(&shipment).await.expect("upload");
    let up = &fake.uploads()[0];
    assert_eq!(up.name, "shipped_to_h_assets_at_20260101T000000.000000000Z.txt");
    assert_eq!(up.authorization, "Bearer t0ken");
    assert_eq!(
        up.body.as_ref(),
        b"shipped to h assets at 20260101T000000.000000000Z"
    );
}

/// The whole path in a foreground `dewy assets`: the App from `GITHUB_APP_*` (the key in a file),
/// the deploy, then the report uploaded with the installation token; `--report false` uploads
/// nothing.
#[test]
fn a_foreground_deploy_authenticates_as_the_app_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, p1) = new_key(tmp.path(), "app");
    let key_path = tmp.path().join("app.pem");
    std::fs::write(&key_path, &p1).unwrap();
    let fake = GithubFake::start_blocking();
    fake.set_app(APP_ID, INSTALLATION, public_der(&p1), Duration::from_secs(3600));
    let tar = support::tar_gz(&[("VERSION", 0o644, b"v1.0.0")]);
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset("app.tar.gz", tar));
    let url = format!("{}?artifact=app.tar.gz", fake.registry_url());
    let (api, app_id, installation) = (fake.api_url(), APP_ID.to_string(), INSTALLATION.to_string());
    let key = key_path.to_string_lossy().into_owned();
    let env = [
        ("GITHUB_API_URL", api.as_str()),
        ("GITHUB_APP_ID", app_id.as_str()),
        ("GITHUB_APP_INSTALLATION_ID", installation.as_str()),
        ("GITHUB_APP_PRIVATE_KEY_PATH", key.as_str()),
        ("GH_TOKEN", "ghp_not_used_when_the_app_is_set"),
    ];
    let run = |root: &std::path::Path, report: &str| {
        std::fs::create_dir_all(root).unwrap();
        let args = [
            "assets",
            "--registry",
            &url,
            "--interval",
            "1",
            "--bus",
            "none",
            "--report",
            report,
        ];
        Daemon::start(
            env!("CARGO_BIN_EXE_dewy"),
            &args,
            &env,
            root,
            &root.join("../dewy.log"),
        )
    };

    let root = tmp.path().join("on/root");
    let mut d = run(&root, "true");
    wait_for("v1.0.0 live", Duration::from_secs(60), || {
        (support::current_file(&root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    let up = wait_for("the shipping report", Duration::from_secs(30), || {
        fake.uploads().into_iter().next()
    });
    d.kill9();
    assert!(up.name.contains("_assets_at_"), "{}", up.name);
    assert!(
        up.authorization.starts_with("Bearer ghs_"),
        "{}",
        up.authorization
    );
    assert!(fake.asset_names("v1.0.0").contains(&up.name));
    let log = d.log();
    assert!(
        log.contains("Report shipping") && !log.contains("Report shipping failure"),
        "{log}"
    );
    assert!(fake.tokens_issued() >= 1, "{:?}", fake.token_refusals());

    let root = tmp.path().join("off/root");
    let mut d = run(&root, "false");
    wait_for("v1.0.0 live again", Duration::from_secs(60), || {
        (support::current_file(&root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    d.kill9();
    assert_eq!(fake.uploads().len(), 1, "report = false: no upload");
}
