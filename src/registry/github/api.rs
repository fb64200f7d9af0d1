//! GitHub REST client for releases: authenticated requests, paginated listing with ETag
//! revalidation (a 304 costs no rate limit), tag look-ups and streaming asset downloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::TryStreamExt;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::{RequestBuilder, StatusCode};

use crate::registry::link::{next_link, same_origin};
use url::Url;

use super::status;
use crate::registry::{ByteStream, CheckError};

mod model;
mod origins;

pub use model::{ApiAsset, ApiRelease, NewAsset};
use origins::{may_upload, redirect_policy};

/// Most list pages read per poll (100 releases each).
const MAX_PAGES: usize = 10;
/// Largest page of the release list read (100 releases with their assets and notes).
const MAX_LIST_PAGE: usize = 32 << 20;
/// Largest single release read.
const MAX_RELEASE: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Whole-request limit of API calls (not of downloads, which may be large).
const API_TIMEOUT: Duration = Duration::from_secs(60);

static ANONYMOUS_WARNED: AtomicBool = AtomicBool::new(false);

/// Say once per process that GitHub is polled without a token.
pub fn warn_anonymous_once(owner: &str, repo: &str) {
    if !ANONYMOUS_WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            repository = %format!("{owner}/{repo}"),
            "No GitHub token (GH_TOKEN, GITHUB_TOKEN or credential github-token): anonymous API access, limited to 60 requests per hour"
        );
    }
}

/// One list page as last seen, for `If-None-Match`.
#[derive(Debug, Clone)]
struct CachedPage {
    etag: String,
    releases: Arc<Vec<ApiRelease>>,
    next: Option<String>,
}

/// The last complete listing, keyed by page URL.
#[derive(Debug, Default)]
struct ListCache {
    pages: HashMap<String, CachedPage>,
    full: Option<Arc<Vec<ApiRelease>>>,
}

/// HTTP access to one GitHub API base.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    /// GitHub App authentication; when set, its installation token replaces `token`.
    app: Option<super::app::AppAuth>,
    lists: Mutex<HashMap<String, ListCache>>,
}

impl Client {
    pub fn new(base: Url, token: Option<String>, user_agent: &str) -> anyhow::Result<Client> {
        let user_agent = if user_agent.is_empty() {
            crate::registry::default_user_agent()
        } else {
            user_agent.to_string()
        };
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(redirect_policy(base.clone()))
            .build()
            .context("building the GitHub HTTP client")?;
        Ok(Client {
            http,
            base,
            token,
            app: None,
            lists: Mutex::new(HashMap::new()),
        })
    }

    /// Authenticate as a GitHub App installation instead of with a token.
    pub fn with_app(mut self, app: super::app::AppAuth) -> Client {
        self.app = Some(app);
        self
    }

    /// The bearer token of the requests: the App's installation token, or the configured one.
    async fn bearer(&self) -> anyhow::Result<Option<String>> {
        match &self.app {
            Some(app) => Ok(Some(app.token(&self.http, &self.base).await?)),
            None => Ok(self.token.clone()),
        }
    }

    /// After a 401: an App's installation token is fetched again on the next request.
    async fn refused(&self, status: StatusCode) {
        if status == StatusCode::UNAUTHORIZED {
            if let Some(app) = &self.app {
                app.invalidate().await;
            }
        }
    }

    fn endpoint(&self, segments: &[&str]) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| anyhow!("GitHub API URL {} cannot take a path", self.base))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// A GET with the API headers; the token only goes to the API's own origin.
    async fn get(&self, url: &Url, accept: &str) -> anyhow::Result<RequestBuilder> {
        self.request(reqwest::Method::GET, url, accept, same_origin(url, &self.base))
            .await
    }

    /// A request with the API headers, and the bearer token when `authorized`.
    async fn request(
        &self,
        method: reqwest::Method,
        url: &Url,
        accept: &str,
        authorized: bool,
    ) -> anyhow::Result<RequestBuilder> {
        let mut req = self
            .http
            .request(method, url.clone())
            .header(ACCEPT, accept)
            .header("X-GitHub-Api-Version", "2022-11-28");
        if authorized {
            if let Some(token) = self.bearer().await? {
                req = req.header(AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        Ok(req)
    }

    /// All releases of a repository, newest first, revalidated with `If-None-Match`.
    pub async fn list_releases(&self, owner: &str, repo: &str) -> Result<Arc<Vec<ApiRelease>>, CheckError> {
        let mut url = self.endpoint(&["repos", owner, repo, "releases"])?;
        url.query_pairs_mut().append_pair("per_page", "100");
        let cache_key = url.to_string();
        let mut all: Vec<ApiRelease> = Vec::new();
        let mut seen: HashMap<String, CachedPage> = HashMap::new();
        for page_no in 0..MAX_PAGES {
            let key = url.to_string();
            let cached = self.cached_page(&cache_key, &key);
            let mut req = self
                .get(&url, "application/vnd.github+json")
                .await?
                .timeout(API_TIMEOUT);
            if let Some(c) = &cached {
                req = req.header(IF_NONE_MATCH, c.etag.as_str());
            }
            let what = format!("GET {url}");
            let resp = req.send().await.with_context(|| format!("GitHub API {what}"))?;
            let page = if resp.status() == StatusCode::NOT_MODIFIED {
                let page = cached
                    .ok_or_else(|| anyhow!("GitHub API {what}: 304 Not Modified without a cached copy"))?;
                if page_no == 0 {
                    if let Some(full) = self.cached_full(&cache_key) {
                        tracing::debug!(url = %url, "Release list not modified");
                        return Ok(full);
                    }
                }
                page
            } else {
                self.refused(resp.status()).await;
                let resp = status::check(resp, &what).await?;
                log_rate_limit(resp.headers());
                let etag = resp
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let next = next_link(resp.headers(), &url).map(|u| u.to_string());
                let body = status::read_limited(resp, MAX_LIST_PAGE)
                    .await
                    .with_context(|| format!("GitHub API {what}: reading the body"))?;
                let releases: Vec<ApiRelease> = serde_json::from_slice(&body)
                    .with_context(|| format!("GitHub API {what}: malformed JSON release list"))?;
                CachedPage {
                    etag: etag.unwrap_or_default(),
                    releases: Arc::new(releases),
                    next,
                }
            };
            all.extend(page.releases.iter().cloned());
            let next = page.next.clone();
            if !page.etag.is_empty() {
                seen.insert(key, page);
            }
            let Some(next) = next else { break };
            let next = Url::parse(&next).with_context(|| format!("GitHub API {what}: bad next link"))?;
            if !same_origin(&next, &self.base) {
                return Err(anyhow!("GitHub API {what}: next page {next} is on another host").into());
            }
            if page_no + 1 == MAX_PAGES {
                tracing::warn!(repository = %format!("{owner}/{repo}"), "More than {MAX_PAGES} pages of releases; older ones ignored");
            }
            url = next;
        }
        let full = Arc::new(all);
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.insert(
            cache_key,
            ListCache {
                pages: seen,
                full: Some(full.clone()),
            },
        );
        Ok(full)
    }

    fn cached_page(&self, list: &str, page: &str) -> Option<CachedPage> {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.get(list)?.pages.get(page).cloned()
    }

    fn cached_full(&self, list: &str) -> Option<Arc<Vec<ApiRelease>>> {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.get(list)?.full.clone()
    }

    /// `GET /repos/{owner}/{repo}/releases/tags/{tag}`; `None` on 404.
    pub async fn release_by_tag(
        &self,
        owner: &str,
        repo: &str,
        tag: &str,
    ) -> Result<Option<ApiRelease>, CheckError> {
        let url = self.endpoint(&["repos", owner, repo, "releases", "tags", tag])?;
        let what = format!("GET {url}");
        let resp = self
            .get(&url, "application/vnd.github+json")
            .await?
            .timeout(API_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("GitHub API {what}"))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.refused(resp.status()).await;
        let resp = status::check(resp, &what).await?;
        let body = status::read_limited(resp, MAX_RELEASE)
            .await
            .with_context(|| format!("GitHub API {what}: reading the body"))?;
        let release = serde_json::from_slice(&body)
            .with_context(|| format!("GitHub API {what}: malformed JSON release"))?;
        Ok(Some(release))
    }

    /// Upload a release asset to the release tagged `tag`, at the `upload_url` the API gives
    /// (uploads.github.com, or the Enterprise server's own), which must belong to the API's host.
    pub async fn upload_asset(
        &self,
        owner: &str,
        repo: &str,
        tag: &str,
        asset: NewAsset,
    ) -> anyhow::Result<()> {
        let release = self
            .release_by_tag(owner, repo, tag)
            .await
            .map_err(anyhow::Error::from)?
            .with_context(|| format!("release not found: {tag}"))?;
        let template = release
            .upload_url
            .filter(|u| !u.is_empty())
            .with_context(|| format!("release {tag} of {owner}/{repo} has no upload_url"))?;
        let raw = template.split('{').next().unwrap_or(&template);
        let mut url =
            Url::parse(raw).with_context(|| format!("release {tag}: invalid upload_url {template:?}"))?;
        if !may_upload(&self.base, &url) {
            anyhow::bail!(
                "release {tag}: upload_url {} is not on the GitHub API's host {}; refusing to send the token there",
                url.origin().ascii_serialization(),
                self.base.origin().ascii_serialization()
            );
        }
        url.query_pairs_mut().append_pair("name", &asset.name);
        let what = format!("POST {url}");
        let resp = self
            .request(reqwest::Method::POST, &url, "application/vnd.github+json", true)
            .await?
            .header(reqwest::header::CONTENT_TYPE, asset.content_type)
            .body(asset.body)
            .timeout(API_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("GitHub uploads API {what}"))?;
        self.refused(resp.status()).await;
        status::check(resp, &what).await.map_err(anyhow::Error::from)?;
        Ok(())
    }

    /// Stream an asset. GitHub answers the asset API URL with a redirect to its CDN; the
    /// redirect is followed without the `Authorization` header (dropped on a host change).
    /// Only URLs of the API's own origin are fetched, and redirects only go to the CDN
    /// ([`may_follow`](origins::may_follow)).
    pub async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        let url = Url::parse(url).with_context(|| format!("invalid GitHub asset URL \"{url}\""))?;
        if !same_origin(&url, &self.base) {
            anyhow::bail!(
                "asset URL {url} is not on the configured GitHub API {}; refusing to download it",
                self.base
            );
        }
        let what = format!("download {url}");
        let resp = self
            .get(&url, "application/octet-stream")
            .await?
            .send()
            .await
            .with_context(|| format!("GitHub {what}"))?;
        self.refused(resp.status()).await;
        let resp = status::check(resp, &what).await.map_err(anyhow::Error::from)?;
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        Ok(Box::pin(stream))
    }
}

fn log_rate_limit(headers: &HeaderMap) {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let (Some(remaining), Some(limit)) = (get("x-ratelimit-remaining"), get("x-ratelimit-limit")) {
        if remaining * 10 < limit {
            tracing::warn!(remaining, limit, "GitHub API rate limit nearly used up");
        } else {
            tracing::debug!(remaining, limit, "GitHub API rate limit");
        }
    }
}

#[cfg(test)]
mod tests;
