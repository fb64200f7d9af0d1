//! A [`Registry`] wrapper over the shared cache: artifacts are fetched from the bucket when a
//! peer already put them there (else from the origin, then shared), and with `registry-ttl` one
//! host per window asks the origin while the others read its answer, under a lock taken with
//! conditional writes. A lock holder that dies is taken over once its lock is older than the
//! lock TTL; when the origin fails, the last answer is served and the failure logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::{Condition, ObjectStore, Written};
use crate::registry::{ByteStream, CheckError, Registry, Release};

/// How often a host waiting for a peer's refresh reads the entry again.
const POLL: Duration = Duration::from_millis(250);

/// The registry answer kept in the bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Entry {
    release: Option<Release>,
    fetched_at: Option<DateTime<Utc>>,
    locked_at: Option<DateTime<Utc>>,
    locked_by: Option<String>,
}

/// The origin registry seen through the shared cache.
pub struct SharedRegistry {
    origin: Arc<dyn Registry>,
    store: Arc<dyn ObjectStore>,
    ttl: Option<Duration>,
    lock_ttl: Duration,
    entry_key: String,
    node: String,
    spool: PathBuf,
}

/// The lock TTL for a registry TTL: twice the TTL, between 10 s and 5 min.
pub fn lock_ttl(ttl: Duration) -> Duration {
    (ttl * 2).clamp(Duration::from_secs(10), Duration::from_secs(300))
}

fn hash16(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

impl SharedRegistry {
    /// Wrap `origin`. `registry_url` and `slot` name the answer (hosts with the same ones share
    /// it); `node` names this host in locks (`host:pid`).
    pub fn new(
        origin: Arc<dyn Registry>,
        store: Arc<dyn ObjectStore>,
        registry_url: &str,
        slot: Option<&str>,
        ttl: Option<Duration>,
        node: String,
    ) -> SharedRegistry {
        let id = hash16(&[
            registry_url,
            std::env::consts::OS,
            std::env::consts::ARCH,
            slot.unwrap_or(""),
        ]);
        SharedRegistry {
            origin,
            store,
            lock_ttl: ttl.map_or(Duration::from_secs(10), lock_ttl),
            ttl,
            entry_key: format!("registry-cache/{id}.json"),
            node,
            spool: std::env::temp_dir(),
        }
    }

    /// Override the lock TTL (tests).
    pub fn with_lock_ttl(mut self, lock_ttl: Duration) -> SharedRegistry {
        self.lock_ttl = lock_ttl;
        self
    }

    /// Where the answer lives in the bucket.
    pub fn entry_key(&self) -> &str {
        &self.entry_key
    }

    async fn read(&self) -> anyhow::Result<(Entry, Option<String>)> {
        Ok(match self.store.get(&self.entry_key).await? {
            Some((body, etag)) => (serde_json::from_slice(&body).unwrap_or_default(), Some(etag)),
            None => (Entry::default(), None),
        })
    }

    async fn write(&self, entry: &Entry, condition: Condition) -> anyhow::Result<Written> {
        let body = serde_json::to_vec(entry).context("encoding the shared registry entry")?;
        self.store.put(&self.entry_key, body, condition).await
    }

    /// This host holds the lock (`etag` is the claim's version): ask the origin and publish.
    async fn refresh(&self, previous: Entry, etag: String) -> Result<Release, CheckError> {
        match self.origin.latest().await {
            Ok(release) => {
                let entry = Entry {
                    release: Some(release.clone()),
                    fetched_at: Some(Utc::now()),
                    locked_at: None,
                    locked_by: None,
                };
                match self.write(&entry, Condition::Matches(etag)).await {
                    Ok(Written::Done(_)) => {
                        tracing::info!(node = %self.node, version = %release.version, "Registry result refreshed from upstream")
                    }
                    Ok(Written::Conflict) => {
                        tracing::warn!(node = %self.node, "Shared registry lock was taken over during the refresh")
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "Could not publish the registry result")
                    }
                }
                Ok(release)
            }
            Err(err) => {
                let unlocked = Entry {
                    locked_at: None,
                    locked_by: None,
                    ..previous.clone()
                };
                if let Err(e) = self.write(&unlocked, Condition::Matches(etag)).await {
                    tracing::warn!(error = %format!("{e:#}"), "Could not release the shared registry lock");
                }
                match (&err, previous.release) {
                    (CheckError::Other(_) | CheckError::RateLimited { .. }, Some(stale)) => {
                        tracing::warn!(error = %err, version = %stale.version, "Upstream registry failed; serving the last shared answer");
                        Ok(stale)
                    }
                    _ => Err(err),
                }
            }
        }
    }
}

#[async_trait]
impl Registry for SharedRegistry {
    async fn latest(&self) -> Result<Release, CheckError> {
        let Some(ttl) = self.ttl else {
            return self.origin.latest().await;
        };
        let give_up = Instant::now() + self.lock_ttl + Duration::from_secs(5);
        while Instant::now() < give_up {
            let (entry, etag) = match self.read().await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "Shared registry cache unreadable; asking the origin");
                    return self.origin.latest().await;
                }
            };
            let now = Utc::now();
            if let (Some(release), Some(at)) = (&entry.release, entry.fetched_at) {
                if age(now, at) < ttl {
                    return Ok(release.clone());
                }
            }
            let held_by_peer = entry.locked_by.as_deref().is_some_and(|n| n != self.node)
                && entry.locked_at.is_some_and(|t| age(now, t) < self.lock_ttl);
            if held_by_peer {
                tokio::time::sleep(POLL).await;
                continue;
            }
            let claim = Entry {
                locked_at: Some(now),
                locked_by: Some(self.node.clone()),
                ..entry.clone()
            };
            let condition = etag.map_or(Condition::Absent, Condition::Matches);
            match self.write(&claim, condition).await {
                Ok(Written::Done(mine)) => return self.refresh(entry, mine).await,
                Ok(Written::Conflict) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "Shared registry lock unavailable; asking the origin");
                    return self.origin.latest().await;
                }
            }
        }
        tracing::warn!("No shared registry answer in time; asking the origin");
        self.origin.latest().await
    }

    fn selector(&self) -> crate::registry::version::Selector {
        self.origin.selector()
    }

    fn version_of(
        &self,
        text: &str,
    ) -> Result<crate::registry::version::Version, crate::registry::version::VersionError> {
        self.origin.version_of(text)
    }

    async fn find(&self, version: &str) -> Result<Release, CheckError> {
        self.origin.find(version).await
    }

    fn reports_shipping(&self) -> bool {
        self.origin.reports_shipping()
    }

    async fn report_shipped(&self, shipment: &crate::registry::shipping::Shipment) -> anyhow::Result<()> {
        self.origin.report_shipped(shipment).await
    }

    async fn image_signatures(
        &self,
        digest: &str,
    ) -> anyhow::Result<Vec<crate::registry::oci::cosign::CosignSignature>> {
        self.origin.image_signatures(digest).await
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        let base = url.split('?').next().unwrap_or(url);
        let name = base
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("artifact");
        let key = format!("artifacts/{}/{name}", hash16(&[url]));
        match self.store.open(&key).await {
            Ok(Some(stream)) => {
                tracing::debug!(key, "Artifact read from the shared cache");
                return Ok(stream);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Shared cache unreadable; downloading from the origin")
            }
        }
        let path = self.spool.join(format!(
            ".dewy-shared-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let spooled = spool(self.origin.fetch(url).await?, &path).await;
        if let Err(e) = spooled {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        match self.store.create_from_file(&key, &path).await {
            Ok(_) => tracing::info!(key, "Artifact written to the shared cache"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Could not write the artifact to the shared cache")
            }
        }
        let file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("reopening {}", path.display()));
        let _ = tokio::fs::remove_file(&path).await;
        Ok(Box::pin(ReaderStream::with_capacity(file?, 256 * 1024)))
    }
}

/// Write a stream to `path`, chunk by chunk.
async fn spool(mut stream: ByteStream, path: &std::path::Path) -> anyhow::Result<()> {
    let mut file = tokio::fs::File::create(path)
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("downloading the artifact from the origin")?;
        file.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.flush()
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
