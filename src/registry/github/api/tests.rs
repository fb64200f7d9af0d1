//! Tests of the GitHub client: link headers, endpoints, origins, redirect and upload hosts.

use super::origins::may_follow;
use super::*;
use reqwest::header::LINK;

#[test]
fn link_header_next() {
    let page = Url::parse("https://api.github.com/repos/o/r/releases?per_page=2").expect("url");
    let mut h = HeaderMap::new();
    h.insert(
        LINK,
        "<https://api.github.com/repositories/1/releases?per_page=2&page=2>; rel=\"next\", <https://api.github.com/repositories/1/releases?per_page=2&page=3>; rel=\"last\""
            .parse()
            .expect("value"),
    );
    let next = next_link(&h, &page).expect("next");
    assert_eq!(
        next.as_str(),
        "https://api.github.com/repositories/1/releases?per_page=2&page=2"
    );
    h.insert(LINK, "</x?page=2>; rel=\"next\"".parse().expect("value"));
    assert_eq!(
        next_link(&h, &page).expect("next").as_str(),
        "https://api.github.com/x?page=2"
    );
    h.insert(LINK, "<https://a/b>; rel=\"prev\"".parse().expect("value"));
    assert!(next_link(&h, &page).is_none());
}

#[test]
fn endpoints_tolerate_trailing_slash_and_escape() {
    for base in ["https://ghe.example/api/v3", "https://ghe.example/api/v3/"] {
        let c = Client::new(Url::parse(base).expect("url"), None, "").expect("client");
        let u = c
            .endpoint(&["repos", "o", "r", "releases", "tags", "v1.0.0+blue"])
            .expect("url");
        assert_eq!(
            u.as_str(),
            "https://ghe.example/api/v3/repos/o/r/releases/tags/v1.0.0+blue"
        );
    }
}

#[test]
fn origin_check() {
    let a = Url::parse("https://api.github.com/x").expect("url");
    let b = Url::parse("https://api.github.com:443/y").expect("url");
    let c = Url::parse("https://objects.githubusercontent.com/y").expect("url");
    assert!(same_origin(&a, &b));
    assert!(!same_origin(&a, &c));
}

#[test]
fn redirects_only_to_the_source_and_its_cdn() {
    let u = |s: &str| Url::parse(s).expect("url");
    let dotcom = u("https://api.github.com/");
    for ok in [
        "https://api.github.com/repos/o/r/releases/assets/1",
        "https://objects.githubusercontent.com/github-production-release-asset/1?sig=x",
        "https://release-assets.githubusercontent.com/x",
    ] {
        assert!(may_follow(&dotcom, &u(ok)), "{ok}");
    }
    for bad in [
        "http://objects.githubusercontent.com/x",
        "https://evil.example/x",
        "https://objects.githubusercontent.com.evil.example/x",
        "https://githubusercontent.com/x",
        "http://api.github.com/x",
        "https://api.github.com:8443/x",
        "file:///etc/shadow",
    ] {
        assert!(!may_follow(&dotcom, &u(bad)), "{bad}");
    }
    let ghe = u("https://ghe.example/api/v3");
    assert!(may_follow(&ghe, &u("https://ghe.example/storage/releases/1")));
    assert!(may_follow(&ghe, &u("https://media.ghe.example/x")));
    assert!(
        !may_follow(&ghe, &u("http://media.ghe.example/x")),
        "no HTTPS downgrade"
    );
    assert!(!may_follow(&ghe, &u("https://xghe.example/x")));
    assert!(!may_follow(&ghe, &u("https://objects.githubusercontent.com/x")));
    let local = u("http://127.0.0.1:4000/");
    assert!(may_follow(&local, &u("http://127.0.0.1:4001/download/1/a")));
    assert!(!may_follow(&local, &u("http://127.0.0.2:4001/x")));
    assert!(!may_follow(&local, &u("ftp://127.0.0.1/x")));
}

#[test]
fn uploads_go_only_to_the_api_hosts_uploads_server() {
    let u = |s: &str| Url::parse(s).expect("url");
    let dotcom = u("https://api.github.com/");
    assert!(may_upload(
        &dotcom,
        &u("https://uploads.github.com/repos/o/r/releases/1/assets")
    ));
    for bad in [
        "http://uploads.github.com/x",
        "https://uploads.github.com:8443/x",
        "https://uploads.github.com.evil.example/x",
        "https://api.github.com.evil.example/x",
        "https://objects.githubusercontent.com/x",
    ] {
        assert!(!may_upload(&dotcom, &u(bad)), "{bad}");
    }
    let ghe = u("https://ghe.example/api/v3/");
    assert!(may_upload(
        &ghe,
        &u("https://ghe.example/api/uploads/repos/o/r/releases/1/assets")
    ));
    assert!(!may_upload(&ghe, &u("https://evil.example/x")));
    assert!(!may_upload(&ghe, &u("http://ghe.example/x")));
}

#[tokio::test]
async fn fetch_refuses_urls_off_the_api_origin() {
    let c = Client::new(
        Url::parse("http://127.0.0.1:9/").expect("url"),
        Some("t".into()),
        "",
    )
    .expect("client");
    for foreign in [
        "http://127.0.0.1:10/asset",
        "https://evil.example/a.tar.gz",
        "file:///etc/passwd",
    ] {
        let err = match c.fetch(foreign).await {
            Ok(_) => panic!("{foreign} was fetched"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("not on the configured GitHub API"), "{err}");
    }
}
