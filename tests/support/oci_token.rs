//! A token server for the registry's Bearer auth (`auth.token` of the Distribution server): it
//! checks Basic credentials and answers `{"token": JWT}`, an ES256 JWT whose `x5c` header carries
//! a self-signed certificate the registry trusts through `rootcertbundle`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

pub const SERVICE: &str = "dewy-test-registry";
pub const ISSUER: &str = "dewy-test-issuer";

/// Signing material and the issued-token counter.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    /// PEM bundle for the registry's `rootcertbundle`.
    pub bundle: PathBuf,
    pub issued: AtomicU64,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TokenIssuer {
    pub fn new(dir: &Path) -> TokenIssuer {
        let p = |n: &str| dir.join(n).to_str().expect("path").to_string();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &p("key.pem"),
            "-out",
            &p("cert.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=dewy-test-token",
        ]);
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &p("key.pem"),
            "-outform",
            "DER",
            "-out",
            &p("key.der"),
        ]);
        openssl(&[
            "x509",
            "-in",
            &p("cert.pem"),
            "-outform",
            "DER",
            "-out",
            &p("cert.der"),
        ]);
        let rng = ring::rand::SystemRandom::new();
        let key_der = std::fs::read(p("key.der")).expect("key.der");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key_der, &rng).expect("key");
        TokenIssuer {
            key,
            cert_der: std::fs::read(p("cert.der")).expect("cert.der"),
            bundle: dir.join("cert.pem"),
            issued: AtomicU64::new(0),
        }
    }

    /// A JWT granting `actions` on repository `repo` to `subject`.
    pub fn mint(&self, subject: &str, repo: &str, actions: &[&str]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let header =
            serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [STANDARD.encode(&self.cert_der)]});
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 600, "nbf": now - 60, "iat": now,
            "jti": format!("dewy-test-{n}"),
            "access": [{"type": "repository", "name": repo, "actions": actions}],
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = self.key.sign(&rng, signing_input.as_bytes()).expect("sign");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// Serve `GET /token?service=…&scope=repository:<repo>:<actions>` on a free port; only
/// `user:password` gets a token. Returns the realm URL.
pub fn serve(issuer: Arc<TokenIssuer>, user: &'static str, password: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
    let port = listener.local_addr().expect("addr").port();
    let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut authorization = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        authorization = Some(v.trim().to_string());
                    }
                }
            }
            let target = request_line.split(' ').nth(1).unwrap_or_default();
            let url = reqwest::Url::parse(&format!("http://x{target}")).expect("target");
            let scope = url
                .query_pairs()
                .find(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let repo = scope.split(':').nth(1).unwrap_or_default().to_string();
            let answer = if authorization.as_deref() == Some(expected.as_str()) {
                let token = issuer.mint(user, &repo, &["pull", "push"]);
                let body = serde_json::json!({"token": token, "expires_in": 600}).to_string();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let body = r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#;
                format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}/token")
}
