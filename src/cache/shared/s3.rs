//! An S3 bucket as the shared cache's [`ObjectStore`], with `If-None-Match`/`If-Match` writes.

use std::path::Path;

use anyhow::{bail, Context};
use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectOutput;

use super::{Condition, ObjectStore, Spec, Written};
use crate::registry::ByteStream;

/// An S3 bucket as an [`ObjectStore`]; the client is built at the first request.
pub struct S3Store {
    spec: Spec,
    region: String,
    client: tokio::sync::OnceCell<aws_sdk_s3::Client>,
}

impl S3Store {
    pub fn new(spec: Spec, region: String) -> S3Store {
        S3Store {
            spec,
            region,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| crate::registry::s3::connect(&self.region, self.spec.endpoint.as_deref()))
            .await
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.spec.prefix)
    }
}

impl S3Store {
    /// `GetObject` of `full`; `None` when there is no such key.
    async fn object(&self, full: &str) -> anyhow::Result<Option<GetObjectOutput>> {
        let sent = self
            .client()
            .await
            .get_object()
            .bucket(&self.spec.bucket)
            .key(full)
            .send()
            .await;
        match sent {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.code() == Some("NoSuchKey") => Ok(None),
            Err(e) => bail!(
                "reading {full} from {}: {}",
                self.describe(),
                crate::registry::s3::describe(&e)
            ),
        }
    }
}

impl S3Store {
    /// `PutObject` of `full` under `condition`; a failed precondition is [`Written::Conflict`].
    async fn write(
        &self,
        full: &str,
        body: aws_sdk_s3::primitives::ByteStream,
        condition: Condition,
        content_type: Option<&str>,
    ) -> anyhow::Result<Written> {
        let mut req = self
            .client()
            .await
            .put_object()
            .bucket(&self.spec.bucket)
            .key(full)
            .set_content_type(content_type.map(str::to_string))
            .body(body);
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
}

fn is_conflict(code: Option<&str>) -> bool {
    matches!(code, Some("PreconditionFailed" | "ConditionalRequestConflict"))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        let full = self.key(key);
        let Some(out) = self.object(&full).await? else {
            return Ok(None);
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let mut stream = out.body;
        let mut body = Vec::new();
        while let Some(chunk) = stream
            .try_next()
            .await
            .with_context(|| format!("reading {full} from {}", self.describe()))?
        {
            if body.len() + chunk.len() > super::SMALL_OBJECT_MAX {
                bail!(
                    "{full} in {} is larger than {} bytes",
                    self.describe(),
                    super::SMALL_OBJECT_MAX
                );
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some((body, etag)))
    }

    async fn put(&self, key: &str, body: Vec<u8>, condition: Condition) -> anyhow::Result<Written> {
        self.write(&self.key(key), body.into(), condition, Some("application/json"))
            .await
    }

    async fn open(&self, key: &str) -> anyhow::Result<Option<ByteStream>> {
        let out = self.object(&self.key(key)).await?;
        Ok(out.map(|out| crate::registry::s3::body_stream(out.body)))
    }

    async fn create_from_file(&self, key: &str, path: &Path) -> anyhow::Result<Written> {
        let full = self.key(key);
        let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        self.write(&full, body, Condition::Absent, None).await
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let full = self.key(prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client()
                .await
                .list_objects_v2()
                .bucket(&self.spec.bucket)
                .prefix(&full)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "listing {full} in {}: {}",
                        self.describe(),
                        crate::registry::s3::describe(&e)
                    )
                })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(self.spec.prefix.as_str()))
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(keys),
            }
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<bool> {
        // S3 answers a delete the same whether the object existed or not: ask first.
        let full = self.key(key);
        let existed = self
            .client()
            .await
            .head_object()
            .bucket(&self.spec.bucket)
            .key(&full)
            .send()
            .await
            .is_ok();
        self.client()
            .await
            .delete_object()
            .bucket(&self.spec.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "deleting {full} in {}: {}",
                    self.describe(),
                    crate::registry::s3::describe(&e)
                )
            })?;
        Ok(existed)
    }

    fn describe(&self) -> String {
        let at = self
            .spec
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS region {}", self.region));
        format!(
            "shared cache s3://{}/{} ({at})",
            self.spec.bucket, self.spec.prefix
        )
    }
}
