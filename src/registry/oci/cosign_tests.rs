//! Fetching cosign signatures from a small local registry stand-in that serves fixed paths.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::*;
use crate::registry::OpenOptions;

type Routes = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Serves the bodies in `routes` by path; anything else is a 404.
async fn server(routes: Routes) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let body = routes.lock().expect("lock").get(req.uri().path()).cloned();
                    async move {
                        let resp = match body {
                            Some(b) => Response::new(Full::new(Bytes::from(b))),
                            None => {
                                let mut r = Response::new(Full::new(Bytes::from_static(b"{\"errors\":[]}")));
                                *r.status_mut() = StatusCode::NOT_FOUND;
                                r
                            }
                        };
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
    format!("127.0.0.1:{}", addr.port())
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn manifest(layers: &[(&str, &str, usize, Option<&str>)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(media_type, digest, size, sig)| {
            let mut l = serde_json::json!({"mediaType": media_type, "digest": digest, "size": size});
            if let Some(sig) = sig {
                l["annotations"] = serde_json::json!({ SIGNATURE_ANNOTATION: sig });
            }
            l
        })
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(b"{}"), "size": 2},
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn fetches_payloads_and_signatures_of_the_signature_tag() {
    let routes: Routes = Arc::default();
    let host = server(routes.clone()).await;
    let reg =
        crate::registry::open(&format!("img://{host}/team/app"), &OpenOptions::default()).expect("open");
    let image = format!("sha256:{}", "ab".repeat(32));
    let tag_path = format!("/v2/team/app/manifests/sha256-{}.sig", "ab".repeat(32));

    // No signature tag: no signatures.
    assert!(reg.image_signatures(&image).await.expect("none").is_empty());

    let payload = br#"{"critical":{"type":"cosign container image signature"}}"#.to_vec();
    let pd = digest_of(&payload);
    let other = b"not a payload".to_vec();
    let od = digest_of(&other);
    let put = |path: String, body: Vec<u8>| routes.lock().expect("lock").insert(path, body);
    put(format!("/v2/team/app/blobs/{pd}"), payload.clone());
    put(
        tag_path.clone(),
        manifest(&[
            (SIMPLE_SIGNING_TYPE, &pd, payload.len(), Some("MEUCIQ==")),
            (
                "application/vnd.oci.image.layer.v1.tar",
                &od,
                other.len(),
                Some("x"),
            ),
            (SIMPLE_SIGNING_TYPE, &od, other.len(), None),
        ]),
    );
    let sigs = reg.image_signatures(&image).await.expect("signatures");
    assert_eq!(
        sigs,
        [CosignSignature {
            layer: pd.clone(),
            payload: payload.clone(),
            signature: "MEUCIQ==".into(),
        }]
    );

    // A blob whose bytes do not match its digest is refused.
    put(format!("/v2/team/app/blobs/{pd}"), b"swapped payload".to_vec());
    let err = reg
        .image_signatures(&image)
        .await
        .expect_err("digest")
        .to_string();
    assert!(err.contains("not the digest the manifest names"), "{err}");

    // Sizes are bounded: a payload announced too large, and one that is too large.
    put(
        tag_path.clone(),
        manifest(&[(SIMPLE_SIGNING_TYPE, &pd, MAX_PAYLOAD + 1, Some("MEUCIQ=="))]),
    );
    let err = reg.image_signatures(&image).await.expect_err("size").to_string();
    assert!(err.contains("more than"), "{err}");
    let big = vec![b'x'; MAX_PAYLOAD + 1];
    let bd = digest_of(&big);
    put(format!("/v2/team/app/blobs/{bd}"), big);
    put(
        tag_path.clone(),
        manifest(&[(SIMPLE_SIGNING_TYPE, &bd, 10, Some("MEUCIQ=="))]),
    );
    let err = reg.image_signatures(&image).await.expect_err("big").to_string();
    assert!(err.contains("larger than"), "{err}");
    put(tag_path.clone(), vec![b' '; MAX_MANIFEST + 1]);
    let err = reg
        .image_signatures(&image)
        .await
        .expect_err("manifest")
        .to_string();
    assert!(err.contains("larger than"), "{err}");
    put(tag_path, b"<html>".to_vec());
    let err = reg.image_signatures(&image).await.expect_err("json").to_string();
    assert!(err.contains("not an image manifest"), "{err}");

    let err = reg
        .image_signatures("sha256:abc")
        .await
        .expect_err("digest")
        .to_string();
    assert!(err.contains("not a sha256:<64 hex> digest"), "{err}");
}

#[test]
fn signature_tags() {
    let hex = "0f".repeat(32);
    assert_eq!(
        signature_tag(&format!("sha256:{hex}")).expect("tag"),
        format!("sha256-{hex}.sig")
    );
    assert!(signature_tag("sha512:00").is_err());
    assert!(signature_tag(&format!("sha256:{}", "zz".repeat(32))).is_err());
}
