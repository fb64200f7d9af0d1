//! The GCS page loop against a tiny local JSON API server that really pages (the emulator does not).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use super::*;

/// Serves three listing pages for the bucket root and two for `v1.1.0/`, recording each query.
async fn paging_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let query = req.uri().query().unwrap_or_default().to_string();
                        log.lock().expect("lock").push(query.clone());
                        let has = |s: &str| query.split('&').any(|kv| kv == s);
                        let t = "2026-01-02T03:04:05.000Z";
                        let body = if has("prefix=rel%2Fv1.1.0%2F") {
                            if has("pageToken=x1") {
                                json!({"items": [{"name": "rel/v1.1.0/app.tar.gz.sha256", "timeCreated": t}]})
                            } else {
                                json!({"items": [{"name": "rel/v1.1.0/app.tar.gz", "timeCreated": t}],
                                       "nextPageToken": "x1"})
                            }
                        } else if has("pageToken=p2") {
                            json!({"prefixes": ["rel/v1.1.0/"]})
                        } else if has("pageToken=p1") {
                            json!({"prefixes": ["rel/v0.9.0/", "rel/.cache/"], "nextPageToken": "p2"})
                        } else {
                            json!({"prefixes": ["rel/v1.0.0/"], "nextPageToken": "p1"})
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn page_loop_follows_page_tokens() {
    let (base, seen) = paging_server().await;
    let opts = OpenOptions {
        gcs_endpoint: Some(base),
        ..OpenOptions::default()
    };
    let url = Url::parse("gs://bucket/rel?artifact=app.tar.gz").expect("url");
    let reg = open(&url, &opts).expect("open");
    assert_eq!(
        reg.list_versions().await.expect("versions"),
        [".cache", "v0.9.0", "v1.0.0", "v1.1.0"]
    );
    let rel = reg.latest().await.expect("latest");
    assert_eq!(rel.version, "v1.1.0");
    assert_eq!(rel.artifact_url, "gs://bucket/rel/v1.1.0/app.tar.gz");
    assert_eq!(
        rel.checksum_url.as_deref(),
        Some("gs://bucket/rel/v1.1.0/app.tar.gz.sha256")
    );
    assert_eq!(
        rel.published_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-01-02T03:04:05+00:00")
    );
    let queries = seen.lock().expect("lock").clone();
    assert!(queries.iter().any(|q| q.contains("pageToken=p2")), "{queries:?}");
    assert!(queries.iter().any(|q| q.contains("pageToken=x1")), "{queries:?}");
    assert!(queries.iter().all(|q| q.contains("prefix=rel%2F")), "{queries:?}");
}

#[test]
fn location_parsing() {
    let loc = parse_location(&Url::parse("gs://bkt/a/b/?pre-release=1").expect("url")).expect("ok");
    assert_eq!((loc.bucket.as_str(), loc.prefix.as_str()), ("bkt", "a/b/"));
    assert!(loc.query.prerelease);
    let root = parse_location(&Url::parse("gs://bkt").expect("url")).expect("ok");
    assert_eq!(root.prefix, "");
    let err = parse_location(&Url::parse("gs://bkt/p?endpoint=x").expect("url")).expect_err("key");
    assert!(
        err.to_string().contains("unknown parameter \"endpoint\""),
        "{err}"
    );
}

#[test]
fn object_urls_escape_slashes() {
    let opts = OpenOptions {
        gcs_endpoint: Some("127.0.0.1:1".into()),
        ..OpenOptions::default()
    };
    let reg = open(&Url::parse("gs://bkt/p").expect("url"), &opts).expect("open");
    let url = reg.objects_url(Some("p/v1+blue/app.tar.gz"));
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:1/storage/v1/b/bkt/o/p%2Fv1%2Bblue%2Fapp.tar.gz"
    );
}

/// A fresh 2048-bit PKCS#8 RSA key in PEM, from the `openssl` command.
fn rsa_key_pem(dir: &std::path::Path) -> String {
    let path = dir.join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the service-account test needs the openssl command (apt-get install openssl)");
    assert!(status.success(), "openssl genpkey failed");
    std::fs::read_to_string(&path).expect("key")
}

/// A token endpoint that checks the JWT's RS256 signature, and a bucket listing that checks
/// the bearer token. Counts token exchanges.
async fn oauth_server(public_key: Vec<u8>, reject: bool) -> (String, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let exchanges = Arc::new(Mutex::new(0usize));
    let count = exchanges.clone();
    let key = Arc::new(public_key);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (count, key) = (count.clone(), key.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (count, key) = (count.clone(), key.clone());
                    async move {
                        use http_body_util::BodyExt;
                        let path = req.uri().path().to_string();
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        let (status, text) = if path == "/token" {
                            *count.lock().expect("lock") += 1;
                            let form: Vec<(String, String)> =
                                url::form_urlencoded::parse(&body).into_owned().collect();
                            let jwt = form
                                .iter()
                                .find(|(k, _)| k == "assertion")
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default();
                            let (msg, sig) = jwt.rsplit_once('.').unwrap_or_default();
                            let sig = base64::Engine::decode(
                                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                                sig,
                            )
                            .unwrap_or_default();
                            let verified = ring::signature::UnparsedPublicKey::new(
                                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                                key.as_slice(),
                            )
                            .verify(msg.as_bytes(), &sig)
                            .is_ok();
                            let grant = form.iter().any(|(k, v)| {
                                k == "grant_type" && v == "urn:ietf:params:oauth:grant-type:jwt-bearer"
                            });
                            if reject || !verified || !grant {
                                (401, r#"{"error":"invalid_grant"}"#.to_string())
                            } else {
                                (200, r#"{"access_token":"tok-1","expires_in":3600}"#.to_string())
                            }
                        } else if auth == "Bearer tok-1" {
                            (200, json!({"prefixes": ["v1.0.0/"]}).to_string())
                        } else {
                            (401, "{}".to_string())
                        };
                        let mut resp = Response::new(Full::new(Bytes::from(text)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), exchanges)
}

fn registry_with(base: &str, sa: auth::ServiceAccount) -> GcsRegistry {
    let location = parse_location(&Url::parse("gs://bkt").expect("url")).expect("location");
    GcsRegistry {
        selector: version_dirs::selector(&location.query, &OpenOptions::default()).expect("selector"),
        location,
        api: api::Api::new(
            Url::parse(base).expect("base"),
            auth::Source::ServiceAccount(Box::new(sa)),
            "dewy-test",
        )
        .expect("api"),
    }
}

#[tokio::test]
async fn service_account_jwt_is_exchanged_once_and_sent() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pem = rsa_key_pem(tmp.path());
    let der = auth::pem_body(&pem).expect("der");
    let public = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .expect("key")
        .public()
        .as_ref()
        .to_vec();
    let (base, exchanges) = oauth_server(public.clone(), false).await;
    let sa = auth::ServiceAccount {
        client_email: "dewy@test.iam".into(),
        private_key: pem.clone(),
        token_uri: format!("{base}/token"),
    };
    let reg = registry_with(&base, sa);
    assert_eq!(reg.list_versions().await.expect("versions"), ["v1.0.0"]);
    assert_eq!(reg.list_versions().await.expect("versions"), ["v1.0.0"]);
    assert_eq!(*exchanges.lock().expect("lock"), 1, "the token is cached");

    let (base, _) = oauth_server(public, true).await;
    let sa = auth::ServiceAccount {
        client_email: "dewy@test.iam".into(),
        private_key: pem,
        token_uri: format!("{base}/token"),
    };
    let err = format!(
        "{:#}",
        registry_with(&base, sa)
            .list_versions()
            .await
            .expect_err("refused")
    );
    assert!(err.contains("token exchange for dewy@test.iam"), "{err}");
    assert!(err.contains("401"), "{err}");
}
