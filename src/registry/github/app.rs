//! GitHub App authentication: an RS256 JWT signed with the app's private key (PKCS#1 or PKCS#8
//! PEM) is exchanged at `POST /app/installations/{id}/access_tokens` for an installation token,
//! which is cached and renewed before it expires.

mod credentials;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ring::signature::RsaKeyPair;
use serde::Deserialize;
use url::Url;

pub use credentials::{load_key, AppCredentials};

/// Renew the installation token when less than this is left (GitHub's tokens last an hour)…
const MARGIN: Duration = Duration::from_secs(300);
/// …or less than this share of its life, for short-lived tokens.
const MARGIN_SHARE: u32 = 5;
/// The JWT is dated this far back, against clock drift (GitHub's advice).
const BACKDATE: u64 = 60;
/// The JWT's life from now (GitHub refuses more than 10 minutes).
const JWT_LIFE: u64 = 540;
/// Largest token answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// Longest installation token taken (GitHub's are 40 characters).
const MAX_TOKEN: usize = 1024;
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    expires_at: DateTime<Utc>,
}

struct Cached {
    token: String,
    renew_at: DateTime<Utc>,
}

/// An app's signing key and its cached installation token.
pub struct AppAuth {
    app_id: String,
    installation_id: String,
    key: RsaKeyPair,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppAuth")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

impl AppAuth {
    /// Check the ids and load the key.
    pub fn new(c: &AppCredentials) -> anyhow::Result<AppAuth> {
        let numeric = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !numeric(&c.app_id) {
            bail!("GITHUB_APP_ID must be the app's numeric id, not {:?}", c.app_id);
        }
        if !numeric(&c.installation_id) {
            bail!(
                "GITHUB_APP_INSTALLATION_ID must be a numeric installation id, not {:?}",
                c.installation_id
            );
        }
        Ok(AppAuth {
            app_id: c.app_id.clone(),
            installation_id: c.installation_id.clone(),
            key: load_key(&c.private_key_pem)?,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The app's JWT for `now` (Unix seconds): `iat` a minute back, `exp` nine minutes ahead.
    pub fn jwt(&self, now: u64) -> anyhow::Result<String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iat": now.saturating_sub(BACKDATE),
            "exp": now + JWT_LIFE,
            "iss": self.app_id,
        });
        let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut sig,
            )
            .map_err(|_| anyhow!("signing the GitHub App JWT failed"))?;
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// The installation token, from the cache or a new exchange at `base`.
    pub async fn token(&self, http: &reqwest::Client, base: &Url) -> anyhow::Result<String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Utc::now() < c.renew_at {
                return Ok(c.token.clone());
            }
        }
        let renewing = cached.is_some();
        let answer = self.exchange(http, base).await?;
        let now = Utc::now();
        let life = (answer.expires_at - now).to_std().unwrap_or_default();
        let margin = MARGIN.min(life / MARGIN_SHARE);
        let renew_at = answer.expires_at - chrono::Duration::from_std(margin).unwrap_or_default();
        tracing::info!(
            app_id = %self.app_id,
            installation_id = %self.installation_id,
            expires_at = %answer.expires_at.to_rfc3339(),
            "GitHub App: installation token {}",
            if renewing { "refreshed" } else { "acquired" }
        );
        *cached = Some(Cached {
            token: answer.token.clone(),
            renew_at,
        });
        Ok(answer.token)
    }

    /// Forget the cached token (the API refused it): the next request gets a new one.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn exchange(&self, http: &reqwest::Client, base: &Url) -> anyhow::Result<TokenAnswer> {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|_| anyhow!("GitHub API URL {base} cannot take a path"))?
            .pop_if_empty()
            .extend(["app", "installations", &self.installation_id, "access_tokens"]);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jwt = self.jwt(now)?;
        let what = format!(
            "GitHub App {} installation {}: POST {url}",
            self.app_id, self.installation_id
        );
        let resp = http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .bearer_auth(jwt)
            .timeout(EXCHANGE_TIMEOUT)
            .send()
            .await
            .with_context(|| what.clone())?;
        let status = resp.status();
        let body = super::status::read_limited(resp, MAX_ANSWER)
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            let message: String = message.chars().filter(|c| !c.is_control()).take(300).collect();
            let hint = match status.as_u16() {
                401 => " (is GITHUB_APP_PRIVATE_KEY the key of this app, and the clock right?)",
                404 => {
                    " (is GITHUB_APP_ID the app's id, and GITHUB_APP_INSTALLATION_ID an installation of it?)"
                }
                403 | 422 => " (is the app installed on this repository, with Contents: read?)",
                _ => "",
            };
            bail!("GitHub App authentication failed: {what}: HTTP {status}: {message}{hint}");
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).with_context(|| format!("{what}: malformed token answer"))?;
        let usable = !answer.token.is_empty()
            && answer.token.len() <= MAX_TOKEN
            && answer.token.bytes().all(|b| b.is_ascii_graphic());
        if !usable {
            bail!("{what}: the installation token in the answer is empty, too long or not printable ASCII");
        }
        Ok(answer)
    }
}
