//! OAuth access tokens for the GCS JSON API: a service account's signed JWT (RS256) exchanged at
//! its token URI, or the metadata server's token on Google Compute Engine; cached until shortly
//! before they expire.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use tokio::sync::Mutex;

/// Access to objects: reading releases, and writing the shipping report next to them.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Renew a token this long before it expires.
const MARGIN: Duration = Duration::from_secs(300);
const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// The fields of a service-account key file that dewy uses.
#[derive(Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_string()
}

/// Where tokens come from.
pub enum Source {
    /// An emulator: no `Authorization` header.
    None,
    ServiceAccount(Box<ServiceAccount>),
    /// The GCE metadata server (`GCE_METADATA_HOST` or metadata.google.internal).
    Metadata(String),
}

impl Source {
    /// Service-account JSON from `GOOGLE_APPLICATION_CREDENTIALS` or the systemd credential
    /// `gcs-credentials`; otherwise the metadata server.
    pub fn from_env() -> anyhow::Result<Source> {
        let text = match std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
            Ok(path) if !path.trim().is_empty() => Some(
                std::fs::read_to_string(path.trim())
                    .with_context(|| format!("reading GOOGLE_APPLICATION_CREDENTIALS file {path}"))?,
            ),
            _ => crate::systemd::credential("gcs-credentials"),
        };
        match text {
            Some(text) => Ok(Source::ServiceAccount(Box::new(
                serde_json::from_str(&text).context("parsing the Google service-account JSON")?,
            ))),
            None => {
                let host = std::env::var("GCE_METADATA_HOST")
                    .ok()
                    .filter(|h| !h.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string());
                Ok(Source::Metadata(host))
            }
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A token source with its cached token.
pub struct Tokens {
    source: Source,
    cached: Mutex<Option<(String, Instant)>>,
}

impl Tokens {
    pub fn new(source: Source) -> Tokens {
        Tokens {
            source,
            cached: Mutex::new(None),
        }
    }

    /// The bearer token to send, `None` for an emulator.
    pub async fn token(&self, http: &reqwest::Client) -> anyhow::Result<Option<String>> {
        if matches!(self.source, Source::None) {
            return Ok(None);
        }
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(Some(token.clone()));
            }
        }
        let answer = match &self.source {
            Source::None => return Ok(None),
            Source::ServiceAccount(sa) => exchange_jwt(http, sa).await?,
            Source::Metadata(host) => metadata_token(http, host).await?,
        };
        let life = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let until = Instant::now() + life.saturating_sub(MARGIN).max(Duration::from_secs(30));
        *cached = Some((answer.access_token.clone(), until));
        Ok(Some(answer.access_token))
    }
}

/// A signed RS256 JWT asserting the service account for [`SCOPE`].
pub fn signed_jwt(sa: &ServiceAccount, now: u64) -> anyhow::Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": sa.client_email,
        "scope": SCOPE,
        "aud": sa.token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let message = format!("{header}.{claims}");
    let der = pem_body(&sa.private_key)?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| anyhow::anyhow!("the service account's private_key is not a PKCS#8 RSA key: {e}"))?;
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message.as_bytes(),
        &mut sig,
    )
    .map_err(|_| anyhow::anyhow!("signing the service-account JWT failed"))?;
    Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// The DER bytes of a `-----BEGIN PRIVATE KEY-----` PEM block.
pub(super) fn pem_body(pem: &str) -> anyhow::Result<Vec<u8>> {
    if !pem.contains("-----BEGIN PRIVATE KEY-----") {
        bail!("the service account's private_key is not a PEM \"PRIVATE KEY\" (PKCS#8) block");
    }
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    STANDARD
        .decode(body)
        .context("the service account's private_key has invalid base64")
}

async fn exchange_jwt(http: &reqwest::Client, sa: &ServiceAccount) -> anyhow::Result<TokenAnswer> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let jwt = signed_jwt(sa, now)?;
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", jwt.as_str()),
    ];
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let resp = http
        .post(&sa.token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .with_context(|| format!("requesting a Google access token from {}", sa.token_uri))?;
    read_token(
        resp,
        &format!("token exchange for {} at {}", sa.client_email, sa.token_uri),
    )
    .await
}

async fn metadata_token(http: &reqwest::Client, host: &str) -> anyhow::Result<TokenAnswer> {
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let resp = http
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| {
            format!(
                "no Google credentials: GOOGLE_APPLICATION_CREDENTIALS and the systemd credential \
                 gcs-credentials are unset, and the metadata server {url} is unreachable"
            )
        })?;
    read_token(resp, &format!("metadata server token at {url}")).await
}

async fn read_token(resp: reqwest::Response, what: &str) -> anyhow::Result<TokenAnswer> {
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!(
            "{what} failed with HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    resp.json()
        .await
        .with_context(|| format!("{what}: malformed answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_refused_clearly() {
        let sa = ServiceAccount {
            client_email: "x@y".into(),
            private_key: "not a key".into(),
            token_uri: default_token_uri(),
        };
        let err = signed_jwt(&sa, 0).expect_err("bad key").to_string();
        assert!(err.contains("PKCS#8"), "{err}");
        let sa = ServiceAccount {
            private_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
            ..sa
        };
        let err = signed_jwt(&sa, 0).expect_err("bad key").to_string();
        assert!(err.contains("not a PKCS#8 RSA key"), "{err}");
    }
}
