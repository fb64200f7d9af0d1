//! The `img://` registry against a real OCI registry (the Distribution server, Debian's
//! `docker-registry`): newest tag by SemVer, pre-releases, digests, `Link` paging, CalVer, slots
//! written with `_`, Basic auth through the environment and `docker login`'s config file, and the
//! errors an operator sees for a missing repository or an unreachable registry.

mod support;

use std::sync::Arc;

use dewy::registry::{self, CheckError, OpenOptions, Registry};
use support::oci::{Auth, OciServer, PASSWORD, USER};

fn open(url: &str, slot: Option<&str>, page: Option<usize>) -> Arc<dyn Registry> {
    let opts = OpenOptions {
        slot: slot.map(str::to_string),
        oci_page_size: page,
        ..OpenOptions::default()
    };
    registry::open(url, &opts).expect("open registry")
}

#[tokio::test]
async fn newest_tag_prerelease_and_digest() {
    let reg = OciServer::start(Auth::None);
    let mut digests = std::collections::HashMap::new();
    for tag in ["v1.0.0", "v1.10.0", "v1.2.0", "v2.0.0-rc.1", "latest", "main"] {
        digests.insert(tag, reg.push("test/app", tag, tag).await);
    }
    let host = reg.host();
    let stable = open(&format!("img://{host}/test/app"), None, None);
    let rel = stable.latest().await.expect("latest");
    assert_eq!(rel.version, "v1.10.0");
    assert_eq!(rel.artifact, format!("{host}/test/app:v1.10.0"));
    assert_eq!(
        rel.artifact_url,
        format!("{host}/test/app@{}", digests["v1.10.0"])
    );
    assert_eq!(rel.checksum_url, None);
    let pre = open(&format!("img://{host}/test/app?pre-release=true"), None, None);
    assert_eq!(pre.latest().await.expect("pre").version, "v2.0.0-rc.1");
    let found = stable.find("1.2.0").await.expect("find");
    assert_eq!(
        found.artifact_url,
        format!("{host}/test/app@{}", digests["v1.2.0"])
    );
    assert!(matches!(
        stable.find("v9.9.9").await,
        Err(CheckError::NoRelease(_))
    ));
    let err = stable
        .fetch(&rel.artifact_url)
        .await
        .err()
        .expect("fetch refused");
    assert!(
        err.to_string().contains("pulled by the container engine"),
        "{err}"
    );
}

#[tokio::test]
async fn tags_are_listed_across_pages() {
    let reg = OciServer::start(Auth::None);
    for i in 0..7 {
        reg.push("paged/app", &format!("v1.0.{i}"), &format!("p{i}"))
            .await;
    }
    let paged = open(&format!("img://{}/paged/app", reg.host()), None, Some(2));
    assert_eq!(paged.latest().await.expect("latest").version, "v1.0.6");
    assert_eq!(paged.find("v1.0.5").await.expect("find").version, "v1.0.5");
}

#[tokio::test]
async fn calver_and_slots() {
    let reg = OciServer::start(Auth::None);
    for tag in ["2026.9.14", "2026.11.3", "2026.10.30", "v0.1.0"] {
        reg.push("cal/app", tag, tag).await;
    }
    let cal = open(
        &format!("img://{}/cal/app?calver=YYYY.MM.MICRO", reg.host()),
        None,
        None,
    );
    assert_eq!(cal.latest().await.expect("calver").version, "2026.11.3");
    for tag in ["v1.2.0_blue", "v1.3.0_green", "v1.1.0_blue"] {
        reg.push("slot/app", tag, tag).await;
    }
    let url = format!("img://{}/slot/app", reg.host());
    let blue = open(&url, Some("blue"), None).latest().await.expect("blue");
    assert_eq!(blue.version, "v1.2.0_blue");
    assert_eq!(
        open(&url, Some("green"), None)
            .latest()
            .await
            .expect("green")
            .version,
        "v1.3.0_green"
    );
    match open(&url, Some("red"), None).latest().await {
        Err(CheckError::NoRelease(msg)) => assert!(msg.contains("slot: red"), "{msg}"),
        other => panic!("expected NoRelease, got {other:?}"),
    }
}

/// One test owns the credential environment (Basic and Bearer): the lookup reads process-wide
/// variables.
#[tokio::test]
async fn credentials_answer_basic_and_bearer_challenges() {
    let home = tempfile::tempdir().expect("tempdir");
    std::env::set_var("DOCKER_CONFIG", home.path());
    basic_auth_from_environment_and_docker_config(home.path()).await;
    bearer_token_from_the_realm().await;
    std::env::remove_var("DOCKER_CONFIG");
}

async fn bearer_token_from_the_realm() {
    let reg = OciServer::start(Auth::Token);
    reg.push("tok/app", "v2.1.0", "tok").await;
    let url = format!("img://{}/tok/app", reg.host());
    std::env::remove_var("DOCKER_USERNAME");
    std::env::remove_var("DOCKER_PASSWORD");
    let text = format!(
        "{:#}",
        open(&url, None, None).latest().await.expect_err("anonymous")
    );
    assert!(text.contains("no credentials were found"), "{text}");
    std::env::set_var("DOCKER_USERNAME", USER);
    std::env::set_var("DOCKER_PASSWORD", "wrong");
    let text = format!("{:#}", open(&url, None, None).latest().await.expect_err("wrong"));
    assert!(text.contains("refused the credentials"), "{text}");
    std::env::set_var("DOCKER_PASSWORD", PASSWORD);
    let before = reg.tokens_issued();
    let registry = open(&url, None, None);
    assert_eq!(registry.latest().await.expect("bearer").version, "v2.1.0");
    assert_eq!(registry.latest().await.expect("bearer again").version, "v2.1.0");
    assert_eq!(
        reg.tokens_issued() - before,
        1,
        "the token is kept between checks"
    );
    std::env::remove_var("DOCKER_USERNAME");
    std::env::remove_var("DOCKER_PASSWORD");
}

/// htpasswd Basic auth: no credentials, a wrong password in the docker config, the right one,
/// then the environment.
async fn basic_auth_from_environment_and_docker_config(home: &std::path::Path) {
    let reg = OciServer::start(Auth::Basic);
    reg.push("private/app", "v1.0.0", "one").await;
    let url = format!("img://{}/private/app", reg.host());
    std::env::remove_var("DOCKER_USERNAME");
    std::env::remove_var("DOCKER_PASSWORD");

    let err = open(&url, None, None).latest().await.expect_err("anonymous");
    let text = format!("{err}");
    assert!(
        text.contains("asks for credentials and none were found"),
        "{text}"
    );

    let auth = |user: &str, pass: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    };
    let config = home.join("config.json");
    let write = |pass: &str| {
        let body = format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.host(),
            auth(USER, pass)
        );
        std::fs::write(&config, body).expect("config.json");
    };
    write("wrong");
    let text = format!(
        "{}",
        open(&url, None, None).latest().await.expect_err("wrong password")
    );
    assert!(text.contains("refused the credentials"), "{text}");

    write(PASSWORD);
    assert_eq!(
        open(&url, None, None)
            .latest()
            .await
            .expect("docker config")
            .version,
        "v1.0.0"
    );

    std::fs::remove_file(&config).expect("rm config");
    std::env::set_var("DOCKER_USERNAME", USER);
    std::env::set_var("DOCKER_PASSWORD", PASSWORD);
    let rel = open(&url, None, None).latest().await.expect("environment");
    assert!(rel.artifact_url.contains("@sha256:"), "{}", rel.artifact_url);
    std::env::remove_var("DOCKER_USERNAME");
    std::env::remove_var("DOCKER_PASSWORD");
}

#[tokio::test]
async fn missing_repository_and_unreachable_registry() {
    let reg = OciServer::start(Auth::None);
    match open(&format!("img://{}/nothing/here", reg.host()), None, None)
        .latest()
        .await
    {
        Err(CheckError::NoRelease(msg)) => assert!(msg.contains("not found"), "{msg}"),
        other => panic!("expected NoRelease, got {other:?}"),
    }
    let port = support::free_port();
    match open(&format!("img://127.0.0.1:{port}/a/b"), None, None)
        .latest()
        .await
    {
        Err(CheckError::Other(e)) => assert!(format!("{e:#}").contains("registry unreachable"), "{e:#}"),
        other => panic!("expected a network error, got {other:?}"),
    }
}

/// `dewy config check` names a registry that refuses the credentials (exit 1), and reports the
/// newest tag when they are right.
#[tokio::test]
async fn config_check_reports_authentication() {
    let reg = OciServer::start(Auth::Basic);
    reg.push("checked/app", "v3.0.0", "three").await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("web.toml");
    let body = format!(
        "mode = \"container\"\nregistry = \"img://{}/checked/app\"\nport = [\"8080:80\"]\n",
        reg.host()
    );
    std::fs::write(&cfg, body).expect("config");
    let cfg = cfg.to_str().expect("path");
    let docker_config = tmp.path().to_str().expect("path");
    let env = [
        ("DOCKER_CONFIG", docker_config),
        ("DOCKER_USERNAME", USER),
        ("DOCKER_PASSWORD", "nope"),
    ];
    let (code, _, err) = support::proc::dewy(&["config", "check", cfg], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    let env = [
        ("DOCKER_CONFIG", docker_config),
        ("DOCKER_USERNAME", USER),
        ("DOCKER_PASSWORD", PASSWORD),
    ];
    let (code, out, err) = support::proc::dewy(&["config", "check", cfg], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reachable; newest release v3.0.0"), "{out}");
}
