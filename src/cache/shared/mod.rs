//! The shared cache a fleet reads together: `s3://<region>/<bucket>/<prefix>?endpoint=…&registry-ttl=30s`.
//! Artifacts are written to the bucket once and read by every host; with `registry-ttl`, one host
//! per window asks the origin registry and the others read its answer (see [`registry`]).
//! Per-host state (what is live, bad versions) never goes to the bucket.

pub mod registry;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use url::Url;

use crate::registry::ByteStream;

/// How an object may be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Only if no object exists (S3 `If-None-Match: *`).
    Absent,
    /// Only if the object is still at this version (S3 `If-Match: <etag>`).
    Matches(String),
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written; the object's new version token.
    Done(String),
    /// Someone else wrote first.
    Conflict,
}

/// A bucket of objects with conditional writes.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A small object and its version token, `None` when absent.
    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, String)>>;
    /// Write a small object under a condition.
    async fn put(&self, key: &str, body: Vec<u8>, condition: Condition) -> anyhow::Result<Written>;
    /// Stream an object, `None` when absent.
    async fn open(&self, key: &str) -> anyhow::Result<Option<ByteStream>>;
    /// Upload a file unless the object exists already.
    async fn create_from_file(&self, key: &str, path: &Path) -> anyhow::Result<Written>;
    /// Where the store is, for logs and errors.
    fn describe(&self) -> String;
}

/// A parsed `--cache` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub region: String,
    pub bucket: String,
    /// Empty or ending with `/`.
    pub prefix: String,
    pub endpoint: Option<String>,
    /// One origin request per window across the fleet; `None`: every host asks the origin.
    pub registry_ttl: Option<Duration>,
}

/// Parse `s3://<region>/<bucket>/<prefix>?endpoint=…&registry-ttl=…`; unknown keys are refused.
pub fn parse_url(s: &str) -> anyhow::Result<Spec> {
    let url = Url::parse(s.trim()).with_context(|| format!("invalid cache URL \"{s}\""))?;
    match url.scheme() {
        "s3" => {}
        "gs" => bail!("cache URL {s}: a gs:// shared cache is not supported by this build yet; use s3://"),
        other => bail!("unsupported cache scheme \"{other}\" in {s}; supported: s3://"),
    }
    let region = url.host_str().unwrap_or_default().to_string();
    let path = url.path().trim_start_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if region.is_empty() || bucket.is_empty() {
        bail!("cache URL {s} must be s3://<region>/<bucket>/<prefix>");
    }
    let prefix = prefix.trim_matches('/');
    let mut spec = Spec {
        region,
        bucket: bucket.to_string(),
        prefix: if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
        endpoint: None,
        registry_ttl: None,
    };
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "endpoint" => spec.endpoint = Some(value.into_owned()),
            "registry-ttl" => {
                let ttl = crate::config::values::parse_duration(&value)
                    .map_err(|e| anyhow::anyhow!("parameter \"registry-ttl\" of cache URL {s}: {e}"))?;
                spec.registry_ttl = Some(ttl).filter(|d| !d.is_zero());
            }
            other => bail!("unknown parameter \"{other}\" in cache URL {s}; allowed: endpoint, registry-ttl"),
        }
    }
    Ok(spec)
}

/// An S3 bucket as an [`ObjectStore`]; the client is built at the first request.
pub struct S3Store {
    spec: Spec,
    client: tokio::sync::OnceCell<aws_sdk_s3::Client>,
}

impl S3Store {
    pub fn new(spec: Spec) -> S3Store {
        S3Store {
            spec,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| crate::registry::s3::connect(&self.spec.region, self.spec.endpoint.as_deref()))
            .await
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.spec.prefix)
    }
}

fn is_conflict(code: Option<&str>) -> bool {
    matches!(code, Some("PreconditionFailed" | "ConditionalRequestConflict"))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        let full = self.key(key);
        let out = match self
            .client()
            .await
            .get_object()
            .bucket(&self.spec.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("NoSuchKey") => return Ok(None),
            Err(e) => bail!(
                "reading {full} from {}: {}",
                self.describe(),
                crate::registry::s3::describe(&e)
            ),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = out
            .body
            .collect()
            .await
            .with_context(|| format!("reading {full} from {}", self.describe()))?;
        Ok(Some((body.to_vec(), etag)))
    }

    async fn put(&self, key: &str, body: Vec<u8>, condition: Condition) -> anyhow::Result<Written> {
        let full = self.key(key);
        let mut req = self
            .client()
            .await
            .put_object()
            .bucket(&self.spec.bucket)
            .key(&full)
            .content_type("application/json")
            .body(body.into());
        req = match condition {
            Condition::Absent => req.if_none_match("*"),
            Condition::Matches(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(out) => Ok(Written::Done(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if is_conflict(e.code()) => Ok(Written::Conflict),
            Err(e) => bail!(
                "writing {full} to {}: {}",
                self.describe(),
                crate::registry::s3::describe(&e)
            ),
        }
    }

    async fn open(&self, key: &str) -> anyhow::Result<Option<ByteStream>> {
        let full = self.key(key);
        match self
            .client()
            .await
            .get_object()
            .bucket(&self.spec.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(Some(crate::registry::s3::body_stream(out.body))),
            Err(e) if e.code() == Some("NoSuchKey") => Ok(None),
            Err(e) => bail!(
                "reading {full} from {}: {}",
                self.describe(),
                crate::registry::s3::describe(&e)
            ),
        }
    }

    async fn create_from_file(&self, key: &str, path: &Path) -> anyhow::Result<Written> {
        let full = self.key(key);
        let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        let sent = self
            .client()
            .await
            .put_object()
            .bucket(&self.spec.bucket)
            .key(&full)
            .if_none_match("*")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(out) => Ok(Written::Done(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if is_conflict(e.code()) => Ok(Written::Conflict),
            Err(e) => bail!(
                "uploading {full} to {}: {}",
                self.describe(),
                crate::registry::s3::describe(&e)
            ),
        }
    }

    fn describe(&self) -> String {
        let at = self
            .spec
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS region {}", self.spec.region));
        format!(
            "shared cache s3://{}/{} ({at})",
            self.spec.bucket, self.spec.prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_urls() {
        let spec =
            parse_url("s3://us-east-1/bkt/fleet?endpoint=http://127.0.0.1:9&registry-ttl=30s").expect("ok");
        assert_eq!((spec.bucket.as_str(), spec.prefix.as_str()), ("bkt", "fleet/"));
        assert_eq!(spec.registry_ttl, Some(Duration::from_secs(30)));
        assert_eq!(spec.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        let err = parse_url("s3://r/b?ttl=1").expect_err("key").to_string();
        assert!(err.contains("unknown parameter \"ttl\""), "{err}");
        assert!(parse_url("file:///tmp/x").is_err());
        assert!(parse_url("s3://r/b?registry-ttl=soon").is_err());
        assert!(parse_url("s3://r").is_err());
    }
}
