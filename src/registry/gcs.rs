//! `gs://<bucket>/<prefix>` registry through the GCS JSON API: versions are the prefixes one level
//! below `<prefix>` (object listing with delimiter `/`, paged by `pageToken`), artifacts the
//! objects inside them, downloaded with `alt=media` as a stream. `STORAGE_EMULATOR_HOST` points
//! it at an emulator (no authentication).

pub(crate) mod api;
mod auth;

use anyhow::{bail, Context};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::Deserialize;
use url::Url;

use super::query::{self, SourceQuery};
use super::version::Selector;
use super::version_dirs::{self, Entry};
use super::{ByteStream, CheckError, OpenOptions, Registry, Release};

/// A bound on listing pages, against a server that never stops paging.
const MAX_PAGES: usize = 10_000;

/// Where a `gs://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    /// Empty (bucket root) or ending with `/`.
    pub prefix: String,
    pub query: SourceQuery,
}

/// Validate `gs://<bucket>/<prefix>?artifact=…&pre-release=…&calver=…`.
pub fn parse_location(url: &Url) -> anyhow::Result<Location> {
    if url.scheme() != "gs" {
        bail!("not a gs:// registry URL: {url}");
    }
    let query = query::parse(url)?;
    let bucket = url.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        bail!("registry URL {url} has no bucket; expected gs://<bucket>/<prefix>");
    }
    let prefix = url.path().trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok(Location {
        bucket,
        prefix,
        query,
    })
}

/// Releases in a GCS bucket.
pub struct GcsRegistry {
    location: Location,
    selector: Selector,
    api: api::Api,
}

impl std::fmt::Debug for GcsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsRegistry")
            .field("location", &self.location)
            .field("base", &self.api.base.as_str())
            .finish()
    }
}

/// Open a `gs://` registry. The API base is `opts.gcs_endpoint`, `STORAGE_EMULATOR_HOST` (both
/// unauthenticated) or storage.googleapis.com with service-account or metadata-server tokens.
pub fn open(url: &Url, opts: &OpenOptions) -> anyhow::Result<GcsRegistry> {
    open_at(parse_location(url)?, opts)
}

/// [`open`] with the URL already parsed into `location`.
pub fn open_at(location: Location, opts: &OpenOptions) -> anyhow::Result<GcsRegistry> {
    let selector = version_dirs::selector(&location.query, opts)?;
    let api = api::Api::connect(opts.gcs_endpoint.as_deref(), &opts.user_agent)?;
    Ok(GcsRegistry {
        location,
        selector,
        api,
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    name: String,
    time_created: Option<DateTime<Utc>>,
    updated: Option<DateTime<Utc>>,
}

impl GcsRegistry {
    fn place_name(&self) -> String {
        format!(
            "gs://{}/{} (endpoint {})",
            self.location.bucket, self.location.prefix, self.api.base
        )
    }

    fn objects_url(&self, object: Option<&str>) -> Url {
        self.api.objects_url(&self.location.bucket, object)
    }

    async fn get(&self, url: Url) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .api
            .send(self.api.http.get(url.clone()))
            .await
            .with_context(|| format!("requesting {url} for {}", self.place_name()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let not_found = resp.status() == reqwest::StatusCode::NOT_FOUND;
        let why = api::failure(resp).await;
        let hint = if not_found {
            format!(" — does bucket \"{}\" exist?", self.location.bucket)
        } else {
            String::new()
        };
        bail!("{} answered {url} with {why}{hint}", self.place_name())
    }

    /// Every page of a listing under `prefix`: (prefixes, objects).
    async fn list(&self, prefix: &str, delimiter: bool) -> Result<(Vec<String>, Vec<Entry>), CheckError> {
        let mut dirs = Vec::new();
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = self.objects_url(None);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("prefix", prefix);
                if delimiter {
                    q.append_pair("delimiter", "/");
                }
                if let Some(t) = &token {
                    q.append_pair("pageToken", t);
                }
            }
            let page: Page = self
                .get(url)
                .await?
                .json()
                .await
                .with_context(|| format!("malformed object listing from {}", self.place_name()))?;
            for p in page.prefixes {
                let name = p.strip_prefix(prefix).unwrap_or(&p).trim_end_matches('/');
                if !name.is_empty() {
                    dirs.push(name.to_string());
                }
            }
            for o in page.items {
                let name = o.name.strip_prefix(prefix).unwrap_or(&o.name);
                if name.is_empty() || name.ends_with('/') || (delimiter && name.contains('/')) {
                    continue;
                }
                objects.push(Entry {
                    name: name.to_string(),
                    modified: o.time_created.or(o.updated),
                });
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
                _ => return Ok((dirs, objects)),
            }
        }
        Err(CheckError::Other(anyhow::anyhow!(
            "listing {} did not end after {MAX_PAGES} pages",
            self.place_name()
        )))
    }

    async fn list_versions(&self) -> Result<Vec<String>, CheckError> {
        let (mut dirs, _) = self.list(&self.location.prefix, true).await?;
        dirs.sort();
        dirs.dedup();
        Ok(dirs)
    }

    async fn release_of(&self, tag: &str) -> Result<Release, CheckError> {
        let vprefix = format!("{}{tag}/", self.location.prefix);
        let (_, objects) = self.list(&vprefix, false).await?;
        let bucket = &self.location.bucket;
        version_dirs::release_from(tag, &objects, &self.location.query, None, |name| {
            Ok(format!("gs://{bucket}/{vprefix}{name}"))
        })
    }
}

#[async_trait]
impl Registry for GcsRegistry {
    async fn latest(&self) -> Result<Release, CheckError> {
        version_dirs::latest_of(self).await
    }

    async fn find(&self, version: &str) -> Result<Release, CheckError> {
        version_dirs::find_in(self, version).await
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        let base = format!("gs://{}/", self.location.bucket);
        let object = url
            .strip_prefix(&base)
            .filter(|k| k.starts_with(&self.location.prefix) && !k.split('/').any(|s| s == ".."))
            .with_context(|| format!("artifact URL {url} is not under {base}{}", self.location.prefix))?;
        let mut media = self.objects_url(Some(object));
        media.query_pairs_mut().append_pair("alt", "media");
        let resp = self.get(media).await?;
        Ok(Box::pin(resp.bytes_stream().map_err(std::io::Error::other)))
    }

    fn reports_shipping(&self) -> bool {
        true
    }

    /// An empty `text/plain` object `<prefix><tag>/<name>`, as Go Dewy writes (a multipart
    /// upload, as Google's client library makes it).
    async fn report_shipped(&self, shipment: &super::shipping::Shipment) -> anyhow::Result<()> {
        let object = format!(
            "{}{}/{}",
            self.location.prefix,
            shipment.version,
            shipment.file_name()
        );
        let what = format!("writing gs://{}/{object}", self.location.bucket);
        let req = self
            .api
            .multipart_upload(&self.location.bucket, &object, "text/plain", b"")
            .timeout(super::shipping::REPORT_TIMEOUT);
        let resp = self.api.send(req).await.with_context(|| what.clone())?;
        if !resp.status().is_success() {
            anyhow::bail!("{what}: {}", api::failure(resp).await);
        }
        tracing::info!(bucket = %self.location.bucket, object = %object, "Write GCS object");
        Ok(())
    }

    fn selector(&self) -> Selector {
        self.selector.clone()
    }
}

#[cfg(test)]
mod tests;

impl version_dirs::VersionedStore for GcsRegistry {
    fn selector(&self) -> &Selector {
        &self.selector
    }
    fn place(&self) -> String {
        self.place_name()
    }
    async fn versions(&self) -> Result<Vec<String>, CheckError> {
        self.list_versions().await
    }
    async fn release_in(&self, tag: &str) -> Result<Release, CheckError> {
        self.release_of(tag).await
    }
}
