//! A GCS bucket as the shared cache's [`ObjectStore`], through the JSON API: the version token is
//! the object's generation, and conditional writes use `ifGenerationMatch` (`0`: only if absent).

use std::path::Path;

use anyhow::{bail, Context};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use reqwest::StatusCode;
use serde::Deserialize;

use super::{Condition, ObjectStore, Spec, Written};
use crate::registry::gcs::api::Api;
use crate::registry::ByteStream;

/// A GCS bucket (or emulator) holding the fleet's shared cache.
pub struct GcsStore {
    spec: Spec,
    api: Api,
}

#[derive(Deserialize)]
struct ObjectMeta {
    generation: String,
}

/// A page of `objects.list`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    #[serde(default)]
    items: Vec<Named>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

impl GcsStore {
    pub fn new(spec: Spec, user_agent: &str) -> anyhow::Result<GcsStore> {
        let api = Api::connect(spec.endpoint.as_deref(), user_agent)?;
        Ok(GcsStore { spec, api })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.spec.prefix)
    }

    /// `GET url` for object `full`; `None` on 404, an error on any other failure.
    async fn read(&self, url: url::Url, full: &str) -> anyhow::Result<Option<reqwest::Response>> {
        let resp = self
            .api
            .send(self.api.http.get(url))
            .await
            .with_context(|| format!("reading {full} from {}", self.describe()))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(self.checked(resp, full, "reading").await?))
    }

    /// The object's generation, `None` when absent.
    async fn generation(&self, full: &str) -> anyhow::Result<Option<String>> {
        let url = self.api.objects_url(&self.spec.bucket, Some(full));
        let Some(resp) = self.read(url, full).await? else {
            return Ok(None);
        };
        let meta: ObjectMeta = resp
            .json()
            .await
            .with_context(|| format!("metadata of {full} from {}", self.describe()))?;
        Ok(Some(meta.generation))
    }

    /// Stream `full` (pinned to `generation` when given), `None` when absent.
    async fn media(&self, full: &str, generation: Option<&str>) -> anyhow::Result<Option<reqwest::Response>> {
        let mut url = self.api.objects_url(&self.spec.bucket, Some(full));
        url.query_pairs_mut().append_pair("alt", "media");
        if let Some(g) = generation {
            url.query_pairs_mut().append_pair("generation", g);
        }
        self.read(url, full).await
    }

    /// Upload `body` to `full` if its generation is still `if_generation` (`0`: absent).
    async fn upload(
        &self,
        full: &str,
        body: reqwest::Body,
        len: u64,
        if_generation: &str,
    ) -> anyhow::Result<Written> {
        let mut url = self.api.upload_url(&self.spec.bucket, full);
        url.query_pairs_mut()
            .append_pair("ifGenerationMatch", if_generation);
        let req = self
            .api
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        let resp = self
            .api
            .send(req)
            .await
            .with_context(|| format!("writing {full} to {}", self.describe()))?;
        if resp.status() == StatusCode::PRECONDITION_FAILED {
            return Ok(Written::Conflict);
        }
        let resp = self.checked(resp, full, "writing").await?;
        let meta: ObjectMeta = resp
            .json()
            .await
            .with_context(|| format!("answer to writing {full} to {}", self.describe()))?;
        Ok(Written::Done(meta.generation))
    }

    async fn checked(
        &self,
        resp: reqwest::Response,
        full: &str,
        doing: &str,
    ) -> anyhow::Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        bail!(
            "{doing} {full} in {}: {}",
            self.describe(),
            crate::registry::gcs::api::failure(resp).await
        )
    }
}

#[async_trait]
impl ObjectStore for GcsStore {
    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        let full = self.key(key);
        // GCS names the generation of what it sends in `x-goog-generation`: one request. Without
        // that header (emulators), ask for the generation first and read that generation.
        let Some(resp) = self.media(&full, None).await? else {
            return Ok(None);
        };
        let sent = resp
            .headers()
            .get("x-goog-generation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (resp, generation) = match sent {
            Some(g) => (resp, g),
            None => {
                let Some(g) = self.generation(&full).await? else {
                    return Ok(None);
                };
                let Some(resp) = self.media(&full, Some(&g)).await? else {
                    return Ok(None);
                };
                (resp, g)
            }
        };
        let body = crate::registry::github::status::read_limited(resp, super::SMALL_OBJECT_MAX)
            .await
            .with_context(|| format!("reading {full} from {}", self.describe()))?;
        Ok(Some((body, generation)))
    }

    async fn put(&self, key: &str, body: Vec<u8>, condition: Condition) -> anyhow::Result<Written> {
        let generation = match condition {
            Condition::Absent => "0".to_string(),
            Condition::Matches(g) => g,
        };
        let len = body.len() as u64;
        self.upload(&self.key(key), body.into(), len, &generation).await
    }

    async fn open(&self, key: &str) -> anyhow::Result<Option<ByteStream>> {
        let full = self.key(key);
        Ok(self
            .media(&full, None)
            .await?
            .map(|resp| -> ByteStream { Box::pin(resp.bytes_stream().map_err(std::io::Error::other)) }))
    }

    async fn create_from_file(&self, key: &str, path: &Path) -> anyhow::Result<Written> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        let len = file
            .metadata()
            .await
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let stream = tokio_util::io::ReaderStream::new(file);
        let body = reqwest::Body::wrap_stream(stream);
        self.upload(&self.key(key), body, len, "0").await
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let full = self.key(prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.api.objects_url(&self.spec.bucket, None);
            url.query_pairs_mut()
                .append_pair("prefix", &full)
                .append_pair("fields", "items(name),nextPageToken");
            if let Some(t) = token.take() {
                url.query_pairs_mut().append_pair("pageToken", &t);
            }
            let Some(resp) = self.read(url, &full).await? else {
                anyhow::bail!("listing {full} in {}: no such bucket", self.describe());
            };
            let page: Listing = resp
                .json()
                .await
                .with_context(|| format!("listing {full} in {}", self.describe()))?;
            keys.extend(
                page.items
                    .iter()
                    .filter_map(|o| o.name.strip_prefix(self.spec.prefix.as_str()))
                    .map(str::to_string),
            );
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<bool> {
        let full = self.key(key);
        let url = self.api.objects_url(&self.spec.bucket, Some(&full));
        let resp = self
            .api
            .send(self.api.http.delete(url))
            .await
            .with_context(|| format!("deleting {full} in {}", self.describe()))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.checked(resp, &full, "deleting").await?;
        Ok(true)
    }

    fn describe(&self) -> String {
        format!(
            "shared cache gs://{}/{} (endpoint {})",
            self.spec.bucket, self.spec.prefix, self.api.base
        )
    }
}
