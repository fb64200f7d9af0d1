//! The `ghr://` registry against the GitHub REST stand-in: selection rules, pagination,
//! conditional polling, rate limits, missing artifacts and downloads through the CDN redirect.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use dewy::registry::{self, CheckError, OpenOptions, Registry};
use support::github::{AssetBody, GithubFake, ReleaseSpec};

fn host_asset() -> String {
    format!("app_{}_{}.tar.gz", std::env::consts::OS, std::env::consts::ARCH)
}

fn release(tag: &str) -> ReleaseSpec {
    ReleaseSpec::new(tag).with_asset(&host_asset(), format!("payload of {tag}"))
}

fn open_with(fake: &GithubFake, query: &str, token: Option<&str>, slot: Option<&str>) -> Arc<dyn Registry> {
    let url = if query.is_empty() {
        fake.registry_url()
    } else {
        format!("{}?{query}", fake.registry_url())
    };
    let opts = OpenOptions {
        slot: slot.map(str::to_string),
        github_api_url: Some(fake.api_url()),
        github_token: Some(token.unwrap_or("").to_string()),
        ..OpenOptions::default()
    };
    registry::open(&url, &opts).expect("open registry")
}

fn open(fake: &GithubFake, query: &str) -> Arc<dyn Registry> {
    open_with(fake, query, None, None)
}

#[tokio::test]
async fn newest_of_several_releases() {
    let fake = GithubFake::start().await;
    for tag in ["v1.0.0", "v1.10.0", "latest", "v1.2.0", "v0.9.0"] {
        fake.add_release(release(tag));
    }
    let rel = open(&fake, "").latest().await.expect("latest");
    assert_eq!(rel.version, "v1.10.0");
    assert_eq!(rel.artifact, host_asset());
    assert!(
        rel.artifact_url.starts_with(&fake.api_url()),
        "{}",
        rel.artifact_url
    );
    assert!(
        rel.artifact_url.contains("/releases/assets/"),
        "{}",
        rel.artifact_url
    );
    assert!(rel.published_at.is_some());
    assert_eq!(rel.checksum_url, None);
}

#[tokio::test]
async fn drafts_are_skipped() {
    let fake = GithubFake::start().await;
    fake.add_release(release("v1.0.0"));
    fake.add_release(release("v2.0.0").draft());
    let reg = open(&fake, "pre-release=true");
    assert_eq!(reg.latest().await.expect("latest").version, "v1.0.0");
    assert!(matches!(reg.find("v2.0.0").await, Err(CheckError::NoRelease(_))));
}

#[tokio::test]
async fn prereleases_opt_in_by_flag_and_by_tag() {
    let fake = GithubFake::start().await;
    fake.add_release(release("v1.0.0"));
    fake.add_release(release("v1.1.0").prerelease());
    fake.add_release(release("v1.2.0-rc.1"));
    assert_eq!(open(&fake, "").latest().await.expect("stable").version, "v1.0.0");
    let pre = open(&fake, "pre-release=true");
    assert_eq!(pre.latest().await.expect("pre").version, "v1.2.0-rc.1");
    // `find` ignores the pre-release filter.
    let stable = open(&fake, "pre-release=false");
    assert_eq!(stable.find("1.1.0").await.expect("find").version, "v1.1.0");
}

#[tokio::test]
async fn slot_picks_newest_of_its_slot() {
    let fake = GithubFake::start().await;
    fake.add_release(release("v1.2.0+blue"));
    fake.add_release(release("v1.3.0+green"));
    let blue = open_with(&fake, "", None, Some("blue"));
    assert_eq!(blue.latest().await.expect("blue").version, "v1.2.0+blue");
    let red = open_with(&fake, "", None, Some("red"));
    assert!(matches!(red.latest().await, Err(CheckError::NoRelease(_))));
}

#[tokio::test]
async fn pagination_across_pages() {
    let fake = GithubFake::start().await;
    fake.set_max_per_page(2);
    // The highest version is the oldest release, so it sits on the last page.
    for tag in ["v1.4.0", "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"] {
        fake.add_release(release(tag));
    }
    let rel = open(&fake, "").latest().await.expect("latest");
    assert_eq!(rel.version, "v1.4.0");
    assert_eq!(fake.list_requests_200(), 3);
}

#[tokio::test]
async fn conditional_polling_costs_one_200() {
    let fake = GithubFake::start().await;
    fake.add_release(release("v1.0.0"));
    let reg = open(&fake, "");
    for _ in 0..3 {
        assert_eq!(reg.latest().await.expect("latest").version, "v1.0.0");
    }
    assert_eq!(fake.list_requests_200(), 1);
    assert_eq!(fake.list_requests_304(), 2);
    let remaining = fake.rate_limit_remaining();
    reg.latest().await.expect("latest");
    assert_eq!(
        fake.rate_limit_remaining(),
        remaining,
        "a 304 must not cost rate limit"
    );
    fake.add_release(release("v1.1.0"));
    assert_eq!(reg.latest().await.expect("latest").version, "v1.1.0");
    assert_eq!(fake.list_requests_200(), 2);
}

#[tokio::test]
async fn conditional_polling_stops_at_unchanged_first_page() {
    let fake = GithubFake::start().await;
    fake.set_max_per_page(2);
    for tag in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0"] {
        fake.add_release(release(tag));
    }
    let reg = open(&fake, "");
    reg.latest().await.expect("first poll");
    assert_eq!(fake.list_requests_200(), 3);
    assert_eq!(reg.latest().await.expect("second poll").version, "v1.4.0");
    assert_eq!(fake.list_requests_200(), 3);
    assert_eq!(fake.list_requests_304(), 1);
}

#[tokio::test]
async fn rate_limit_gives_retry_after() {
    let fake = GithubFake::start().await;
    fake.add_release(release("v1.0.0"));
    fake.set_rate_limit_exhausted(Some(Duration::from_secs(30)));
    match open(&fake, "").latest().await {
        Err(CheckError::RateLimited { retry_after }) => {
            assert!(
                retry_after >= Duration::from_secs(25) && retry_after <= Duration::from_secs(31),
                "{retry_after:?}"
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn artifact_not_found_then_uploaded() {
    let fake = GithubFake::start().await;
    let at: DateTime<Utc> = "2024-05-01T12:00:00Z".parse().expect("time");
    fake.add_release(
        ReleaseSpec::new("v1.0.0")
            .with_asset("checksums.txt", "x")
            .published(at),
    );
    let reg = open(&fake, "");
    match reg.latest().await {
        Err(CheckError::ArtifactNotFound {
            version,
            published_at,
        }) => {
            assert_eq!(version, "v1.0.0");
            assert_eq!(published_at, Some(at));
        }
        other => panic!("expected ArtifactNotFound, got {other:?}"),
    }
    fake.add_asset("v1.0.0", &host_asset(), "late upload");
    let rel = reg.latest().await.expect("latest after upload");
    assert_eq!(rel.artifact, host_asset());
    assert!(rel.checksum_url.is_some());
}

#[tokio::test]
async fn explicit_artifact_name() {
    let fake = GithubFake::start().await;
    fake.add_release(release("v1.0.0").with_asset("custom.bin", "custom"));
    let rel = open(&fake, "artifact=custom.bin").latest().await.expect("latest");
    assert_eq!(rel.artifact, "custom.bin");
    let missing = open(&fake, "artifact=nope.bin").latest().await;
    assert!(matches!(missing, Err(CheckError::ArtifactNotFound { .. })));
}

#[tokio::test]
async fn checksum_url_found_and_fetchable() {
    let fake = GithubFake::start().await;
    let sums = format!("{}  {}\n", "ab".repeat(32), host_asset());
    fake.add_release(release("v1.0.0").with_asset("checksums.txt", sums.clone()));
    let reg = open(&fake, "");
    let rel = reg.latest().await.expect("latest");
    let url = rel.checksum_url.expect("checksum url");
    assert_eq!(support::read_all(reg.as_ref(), &url).await, sums.as_bytes());
    let small = dewy::artifact::fetch_small(reg.as_ref(), &url, 1 << 20)
        .await
        .expect("small");
    let text = String::from_utf8(small).expect("utf-8");
    let expected = dewy::artifact::checksum::parse_expected(&text, &rel.artifact);
    assert_eq!(expected, Some("ab".repeat(32)));
}

#[tokio::test]
async fn fetch_follows_redirect_without_leaking_token() {
    let fake = GithubFake::start().await;
    fake.set_token(Some("s3cret".into()));
    let body = AssetBody::generated(3 * 1024 * 1024 + 5, 7);
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset(&host_asset(), body.clone()));
    let reg = open_with(&fake, "", Some("s3cret"), None);
    let rel = reg.latest().await.expect("latest");
    let bytes = support::read_all(reg.as_ref(), &rel.artifact_url).await;
    assert_eq!(bytes.len() as u64, body.len());
    assert_eq!(hex::encode(Sha256::digest(&bytes)), body.sha256_hex());
    assert!(fake.cdn_requests() >= 1);
    assert_eq!(fake.cdn_rejected(), 0, "the CDN saw an Authorization header");
    // The CDN does refuse credentials, as presigned-URL stores do.
    let direct = format!(
        "{}/dewy-test/app/releases/download/v1.0.0/{}",
        fake.cdn_url(),
        host_asset()
    );
    let resp = reqwest::Client::new()
        .get(&direct)
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("CDN request");
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(fake.cdn_rejected(), 1);
}

#[tokio::test]
async fn cdn_stall_stops_the_body() {
    let fake = GithubFake::start().await;
    fake.add_release(ReleaseSpec::new("v1.0.0").with_asset(&host_asset(), AssetBody::generated(1 << 20, 1)));
    fake.set_cdn_stall(Some(100_000));
    let reg = open(&fake, "");
    let rel = reg.latest().await.expect("latest");
    let mut stream = reg.fetch(&rel.artifact_url).await.expect("fetch");
    let mut got = 0usize;
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(chunk) = stream.next().await {
            got += chunk.expect("chunk").len();
        }
    })
    .await;
    assert!(read.is_err(), "the body should stall");
    assert_eq!(got, 100_000);
}

#[tokio::test]
async fn bad_token_is_reported() {
    let fake = GithubFake::start().await;
    fake.set_token(Some("right".into()));
    fake.add_release(release("v1.0.0"));
    let err = open_with(&fake, "", Some("wrong"), None)
        .latest()
        .await
        .expect_err("401");
    let text = format!("{err:#}");
    assert!(matches!(err, CheckError::Other(_)), "{text}");
    assert!(text.contains("Bad credentials"), "{text}");
    assert!(text.contains("401"), "{text}");
}

#[tokio::test]
async fn unknown_repository_is_reported() {
    let fake = GithubFake::start().await;
    let opts = OpenOptions {
        github_api_url: Some(fake.api_url()),
        github_token: Some(String::new()),
        ..OpenOptions::default()
    };
    let reg = registry::open("ghr://nobody/nothing", &opts).expect("open");
    let text = format!("{:#}", reg.latest().await.expect_err("404"));
    assert!(text.contains("Not Found"), "{text}");
}

#[tokio::test]
async fn find_by_version() {
    let fake = GithubFake::start().await;
    fake.add_release(release("v1.0.0"));
    fake.add_release(release("2.0.0"));
    let reg = open(&fake, "");
    assert_eq!(reg.find("1.0.0").await.expect("find").version, "v1.0.0");
    assert_eq!(reg.find("v2.0.0").await.expect("find").version, "2.0.0");
    assert!(matches!(reg.find("v9.9.9").await, Err(CheckError::NoRelease(_))));
}

#[test]
fn unknown_query_parameter_rejected() {
    let err = registry::open("ghr://o/r?foo=bar", &OpenOptions::default())
        .err()
        .expect("rejected");
    let text = err.to_string();
    assert!(text.contains("unknown parameter \"foo\""), "{text}");
    assert!(text.contains("allowed: artifact, pre-release"), "{text}");
}
