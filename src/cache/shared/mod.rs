//! The shared cache a fleet reads together: `s3://<region>/<bucket>/<prefix>?endpoint=…&registry-ttl=30s`
//! or `gs://<bucket>/<prefix>?registry-ttl=30s`.
//! Artifacts are written to the bucket once and read by every host; with `registry-ttl`, one host
//! per window asks the origin registry and the others read its answer (see [`registry`]).
//! Per-host state (what is live, bad versions) never goes to the bucket.

mod gcs;
pub mod registry;
mod s3;

pub use gcs::GcsStore;
pub use s3::S3Store;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::registry::ByteStream;

/// How an object may be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Only if no object exists (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`).
    Absent,
    /// Only if the object is still at this version (S3 `If-Match: <etag>`, GCS
    /// `ifGenerationMatch=<generation>`).
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

/// Most bytes [`ObjectStore::get`] reads. Its objects are a registry answer and fleet records,
/// a few kilobytes at most; a bigger one (written by whoever else can write the bucket) is
/// refused instead of being read into the deployer's memory.
pub const SMALL_OBJECT_MAX: usize = 1 << 20;

/// A bucket of objects with conditional writes.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A small object and its version token, `None` when absent; an error past
    /// [`SMALL_OBJECT_MAX`] bytes.
    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, String)>>;
    /// Write a small object under a condition.
    async fn put(&self, key: &str, body: Vec<u8>, condition: Condition) -> anyhow::Result<Written>;
    /// Stream an object, `None` when absent.
    async fn open(&self, key: &str) -> anyhow::Result<Option<ByteStream>>;
    /// Upload a file unless the object exists already.
    async fn create_from_file(&self, key: &str, path: &Path) -> anyhow::Result<Written>;
    /// The keys under `prefix` (relative to the store's prefix, as the other calls take them),
    /// every page of the listing.
    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>>;
    /// Delete an object; false when there was none.
    async fn delete(&self, key: &str) -> anyhow::Result<bool>;
    /// Where the store is, for logs and errors.
    fn describe(&self) -> String;
}

pub use crate::config::shared_cache::{parse_url, Backend, Spec};

/// The object store a cache URL names.
pub fn open_store(spec: Spec, user_agent: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match spec.backend {
        Backend::S3 { ref region } => {
            let region = region.clone();
            Arc::new(S3Store::new(spec, region))
        }
        Backend::Gcs => Arc::new(GcsStore::new(spec, user_agent)?),
    })
}
