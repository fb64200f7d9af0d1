//! HTTP side of the OCI Distribution API: requests that answer the registry's 401 challenge once
//! (Basic with credentials, or a Bearer token from the realm), status codes turned into
//! [`CheckError`]s, tag listing across `Link` pages, and manifest digests by `HEAD`.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::auth::{self, Challenge};
use super::credentials;
use super::location::Location;
use crate::registry::CheckError;

/// Most `Link` pages followed when listing tags.
pub const MAX_PAGES: usize = 100;
/// Tags asked for per page.
pub const PAGE_SIZE: usize = 1000;
/// Largest error body or manifest read into memory.
const MAX_BODY: usize = 4 << 20;
/// Media types accepted for a manifest, newest first.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A client for one repository of one registry.
pub struct Client {
    http: reqwest::Client,
    location: Location,
    /// The `Authorization` value the last challenge led to.
    auth: Mutex<Option<String>>,
    page_size: usize,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Client {
    pub fn new(location: Location, user_agent: &str, page_size: Option<usize>) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the registry HTTP client")?;
        Ok(Client {
            http,
            location,
            auth: Mutex::new(None),
            page_size: page_size.unwrap_or(PAGE_SIZE).max(1),
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Every tag of the repository, following `Link: <…>; rel="next"` up to [`MAX_PAGES`].
    pub async fn tags(&self) -> Result<Vec<String>, CheckError> {
        let base = Url::parse(&self.location.base()).map_err(|e| anyhow!("registry base URL: {e}"))?;
        let mut next = Some(
            base.join(&format!(
                "/v2/{}/tags/list?n={}",
                self.location.repository, self.page_size
            ))
            .map_err(|e| anyhow!("tags URL: {e}"))?,
        );
        let mut tags = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(anyhow!(
                    "{} has more than {MAX_PAGES} pages of tags; refusing to list further",
                    self.location.image()
                )
                .into());
            }
            let resp = self.send(Method::GET, url.as_str(), None, "listing tags").await?;
            next = next_link(resp.headers(), &url)?;
            let body = read_limited(resp, "the tag list").await?;
            let list: TagList = serde_json::from_slice(&body)
                .with_context(|| format!("tag list of {} is not the expected JSON", self.location.image()))?;
            tags.extend(list.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// The digest of `tag`'s manifest: `HEAD` (no pull is counted), falling back to hashing the
    /// `GET` body when the registry sends no `Docker-Content-Digest`.
    pub async fn digest(&self, tag: &str) -> Result<String, CheckError> {
        let url = format!(
            "{}/v2/{}/manifests/{tag}",
            self.location.base(),
            self.location.repository
        );
        let what = format!("reading the manifest of {}:{tag}", self.location.image());
        let resp = self.send(Method::HEAD, &url, Some(MANIFEST_TYPES), &what).await?;
        if let Some(d) = header_digest(resp.headers()) {
            return Ok(d);
        }
        let resp = self.send(Method::GET, &url, Some(MANIFEST_TYPES), &what).await?;
        let body = read_limited(resp, "the manifest").await?;
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(&body))))
    }

    /// `GET` a path of the repository (`manifests/<tag>`, `blobs/<digest>`) into memory, failing
    /// beyond `limit` bytes; `None` when the registry answers 404.
    pub async fn get_optional(
        &self,
        path: &str,
        accept: Option<&str>,
        what: &str,
        limit: usize,
    ) -> Result<Option<(HeaderMap, Vec<u8>)>, CheckError> {
        let url = format!("{}/v2/{}/{path}", self.location.base(), self.location.repository);
        let resp = match self.send(Method::GET, &url, accept, what).await {
            Ok(resp) => resp,
            // `check` turns exactly a 404 into `NoRelease`.
            Err(CheckError::NoRelease(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let headers = resp.headers().clone();
        let body = read_bounded(resp, what, limit).await?;
        Ok(Some((headers, body)))
    }

    /// Send a request; a 401 is answered once from its challenge, other statuses checked.
    async fn send(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response, CheckError> {
        let image = self.location.image();
        let mut had_creds = false;
        for attempt in 0..2 {
            let mut req = self.http.request(method.clone(), url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            let auth = self.auth.lock().map(|a| a.clone()).unwrap_or_default();
            if let Some(value) = auth {
                req = req.header(AUTHORIZATION, value);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("{what} ({}): registry unreachable", self.location.base()))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return check(resp, &image, what).await;
            }
            if attempt == 1 {
                break;
            }
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(auth::parse_challenge)
                .ok_or_else(|| {
                    anyhow!("{what}: registry answered 401 without a challenge dewy understands")
                })?;
            let creds = credentials::lookup(&self.location.host)?;
            had_creds = creds.is_some();
            let value = match &challenge {
                Challenge::Basic => match &creds {
                    Some(c) => c.basic(),
                    None => {
                        return Err(anyhow!(
                            "{what}: {} asks for credentials and none were found (set DOCKER_USERNAME and DOCKER_PASSWORD, the systemd credential docker-password, or docker login)",
                            self.location.host
                        )
                        .into())
                    }
                },
                Challenge::Bearer { .. } => {
                    let host = self.location.host.rsplit_once(':').map_or(self.location.host.as_str(), |(h, _)| h);
                    let token = auth::fetch_token(
                        &self.http,
                        &challenge,
                        &self.location.repository,
                        host.trim_matches(['[', ']']),
                        self.location.plain_http,
                        creds.as_ref(),
                    )
                    .await
                    .with_context(|| format!("{what}: authenticating to {}", self.location.host))?;
                    format!("Bearer {token}")
                }
            };
            if let Ok(mut slot) = self.auth.lock() {
                *slot = Some(value);
            }
        }
        let hint = if had_creds {
            "refused the credentials (HTTP 401); check DOCKER_USERNAME/DOCKER_PASSWORD or the docker login of this registry"
        } else {
            "answered HTTP 401 and no credentials were found for it (set DOCKER_USERNAME and DOCKER_PASSWORD, the systemd credential docker-password, or docker login)"
        };
        Err(anyhow!("{what}: {} {hint}", self.location.host).into())
    }
}

async fn check(resp: Response, image: &str, what: &str) -> Result<Response, CheckError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::registry::github::status::parse_retry_after(v, std::time::SystemTime::now()))
            .unwrap_or(Duration::from_secs(60));
        return Err(CheckError::RateLimited { retry_after });
    }
    let body = read_limited(resp, "the error").await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&body[..body.len().min(512)])
        .trim()
        .to_string();
    if status == StatusCode::NOT_FOUND {
        return Err(CheckError::NoRelease(format!(
            "{what}: {image} not found (HTTP 404) {detail}"
        )));
    }
    Err(anyhow!("{what}: registry answered HTTP {status}: {detail}").into())
}

async fn read_limited(resp: Response, what: &str) -> anyhow::Result<Vec<u8>> {
    read_bounded(resp, what, MAX_BODY).await
}

async fn read_bounded(mut resp: Response, what: &str, limit: usize) -> anyhow::Result<Vec<u8>> {
    if let Some(len) = resp.content_length() {
        if len > limit as u64 {
            anyhow::bail!("{what} is larger than {limit} bytes ({len} announced)");
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("reading {what}"))? {
        if body.len() + chunk.len() > limit {
            anyhow::bail!("{what} is larger than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn header_digest(headers: &HeaderMap) -> Option<String> {
    let d = headers.get("docker-content-digest")?.to_str().ok()?.trim();
    let (algo, hex) = d.split_once(':')?;
    (!algo.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| d.to_string())
}

/// The next page of a listing: the `rel="next"` `Link` target, which must stay on the same
/// registry (credentials are sent to it).
fn next_link(headers: &HeaderMap, current: &Url) -> anyhow::Result<Option<Url>> {
    match crate::registry::link::next_link(headers, current) {
        Some(next) if !crate::registry::link::same_origin(&next, current) => {
            anyhow::bail!("Link header points to another host ({next}); refused")
        }
        next => Ok(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::LINK;

    #[test]
    fn link_pages() {
        let cur = Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=2").expect("url");
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            "</v2/a/tags/list?last=b&n=2>; rel=\"next\"".parse().expect("hv"),
        );
        let next = next_link(&h, &cur).expect("ok").expect("next");
        assert_eq!(next.as_str(), "http://127.0.0.1:5000/v2/a/tags/list?last=b&n=2");
        h.insert(
            LINK,
            "<http://evil.example/v2/a/tags/list>; rel=\"next\""
                .parse()
                .expect("hv"),
        );
        assert!(next_link(&h, &cur).is_err());
        assert!(next_link(&HeaderMap::new(), &cur).expect("ok").is_none());
    }

    #[test]
    fn digests() {
        let mut h = HeaderMap::new();
        h.insert("docker-content-digest", "sha256:abcd".parse().expect("hv"));
        assert_eq!(header_digest(&h).as_deref(), Some("sha256:abcd"));
        h.insert("docker-content-digest", "garbage".parse().expect("hv"));
        assert_eq!(header_digest(&h), None);
    }
}
