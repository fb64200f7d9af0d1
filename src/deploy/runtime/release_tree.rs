//! The release tree both file modes share: the artifact cache, `releases/<timestamp>`
//! directories, the `current` link, and the repair of what an interrupted deploy left there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use chrono::Utc;

use super::{signature_checked, Fetched, Place, Prepared};
use crate::cache::{Cache, StoreError, StoreOptions};
use crate::config::Settings;
use crate::deploy::state::{Live, Pending};
use crate::deploy::steps;
use crate::failure::DeployFailure;
use crate::fault_inject;
use crate::logging::{MSG_DEPLOY, MSG_DOWNLOAD, MSG_ROLLBACK};
use crate::registry::{Registry, Release};
use crate::release::{self, Limits, Releases};
use crate::signature;

/// The artifact cache and release directories of one app.
pub struct ReleaseTree {
    settings: Settings,
    registry: Arc<dyn Registry>,
    cache: Cache,
    releases: Releases,
}

impl ReleaseTree {
    pub fn open(settings: &Settings, registry: Arc<dyn Registry>) -> anyhow::Result<Self> {
        let cache = Cache::open(&settings.cache_dir)
            .with_context(|| format!("opening cache {}", settings.cache_dir.display()))?;
        Ok(Self {
            settings: settings.clone(),
            registry,
            cache,
            releases: Releases::new(&settings.root),
        })
    }

    /// The directory of a recorded release name.
    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.releases.releases_dir().join(name)
    }

    /// Clean staging directories; for an interrupted deploy, true when it had switched
    /// `current`, else remove the release directory it left.
    pub fn recover(&self, pending: Option<&Pending>, known: &[&str]) -> anyhow::Result<bool> {
        let cleaned = self
            .releases
            .clean_staging()
            .context("cleaning staging directories")?;
        if cleaned > 0 {
            tracing::warn!(
                count = cleaned,
                "Removed staging directories left by an interrupted deploy"
            );
        }
        let Some(p) = pending else { return Ok(false) };
        let current = self.releases.current().ok().flatten().map(|p| dir_name(&p));
        if p.release.is_some() && p.release == current {
            return Ok(true);
        }
        match &p.release {
            Some(name) => {
                let dir = self.dir_of(name);
                if dir.exists() {
                    let _ = self.releases.remove_release(&dir);
                }
            }
            None => {
                let mut known = known.to_vec();
                known.extend(current.as_deref());
                self.remove_unrecorded(p, &known);
            }
        }
        Ok(false)
    }

    /// A deploy killed between moving its release into place and recording its name left a
    /// release directory nothing refers to: the one named (by its UTC time) at or after the
    /// deploy began that is not `known`. Remove it.
    fn remove_unrecorded(&self, p: &Pending, known: &[&str]) {
        let since = p.started_at.format("%Y%m%dT%H%M%SZ").to_string();
        let Ok(dirs) = self.releases.list() else { return };
        for dir in dirs {
            let name = dir_name(&dir);
            if name.as_str() >= since.as_str() && !known.contains(&name.as_str()) {
                tracing::warn!(dewy_release_dir = %dir.display(), "Removing the release directory of an interrupted deploy");
                if let Err(e) = self.releases.remove_release(&dir) {
                    tracing::warn!(error = %e, dewy_release_dir = %dir.display(), "Removing it failed");
                }
            }
        }
    }

    /// True when `current` points at `live`'s release directory.
    pub fn holds(&self, live: &Live) -> bool {
        self.releases
            .current()
            .ok()
            .flatten()
            .is_some_and(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == live.release))
    }

    /// Make sure the artifact is in the cache, matching the published checksum and, with trusted
    /// keys configured, signed by one of them; returns its SHA-256.
    pub async fn fetch(&self, release: &Release, key: &str) -> Result<Fetched, DeployFailure> {
        let fetched = steps::timed("download", self.fetch_checked(release, key)).await?;
        if !self.settings.verify.is_empty() {
            steps::timed("verify", self.verify_signature(release, key, fetched.digest())).await?;
        }
        Ok(fetched)
    }

    /// Check the cached artifact's signature with the keys of this deployer's own
    /// configuration: refused when no trusted key signed it (the release's fault, unless the
    /// signature could not be fetched: then retried).
    async fn verify_signature(
        &self,
        release: &Release,
        key: &str,
        sha256: Option<String>,
    ) -> Result<(), DeployFailure> {
        let candidates = signature::fetch_candidates(self.registry.as_ref(), release).await;
        let keys = self.settings.verify.clone();
        let version = release.version.clone();
        let artifact = release.artifact.clone();
        let path = self.cache.path(key);
        let verdict = tokio::task::spawn_blocking(move || {
            let subject = signature::Subject {
                version: &version,
                artifact: &artifact,
                path: &path,
            };
            signature::verify_release(&keys, &subject, &candidates)
        })
        .await
        .map_err(|e| DeployFailure::transient(anyhow!(e)))?;
        let verified = signature_checked(verdict, release, sha256)?;
        tracing::info!(
            message_id = MSG_DOWNLOAD,
            dewy_version = %release.version,
            signature = %verified,
            "Signature verified"
        );
        Ok(())
    }

    async fn fetch_checked(&self, release: &Release, key: &str) -> Result<Fetched, DeployFailure> {
        let expected = self.expected_checksum(release).await?;
        if self.cache.contains(key) {
            let path = self.cache.path(key);
            let actual = tokio::task::spawn_blocking(move || crate::cache::sha256_file(&path))
                .await
                .map_err(|e| DeployFailure::transient(anyhow!(e)))?
                .map_err(|e| DeployFailure::transient(anyhow!(e).context("hashing the cached artifact")))?;
            match &expected {
                Some(exp) if *exp != actual => {
                    tracing::warn!(
                        dewy_cache_key = key,
                        "Cached artifact does not match the published checksum; downloading again"
                    );
                }
                _ => {
                    tracing::info!(
                        message_id = MSG_DOWNLOAD,
                        dewy_cache_key = key,
                        "Artifact found in cache"
                    );
                    return Ok(Fetched::Artifact { sha256: Some(actual) });
                }
            }
        }
        let stream = self
            .registry
            .fetch(&release.artifact_url)
            .await
            .with_context(|| format!("downloading {}", release.artifact))
            .map_err(DeployFailure::transient)?;
        let stream = fault_inject::in_stream(stream, "download", &release.version);
        let opts = StoreOptions {
            expected_sha256: expected,
            max_bytes: Some(self.settings.max_artifact_size),
        };
        match self.cache.store(key, stream, &opts).await {
            Ok(stored) => {
                tracing::info!(
                    message_id = MSG_DOWNLOAD,
                    dewy_version = %release.version,
                    dewy_cache_key = key,
                    size = stored.size,
                    sha256 = %stored.sha256,
                    "Cached artifact"
                );
                Ok(Fetched::Artifact {
                    sha256: Some(stored.sha256),
                })
            }
            Err(e @ StoreError::ChecksumMismatch { .. }) => {
                let actual = match &e {
                    StoreError::ChecksumMismatch { actual, .. } => Some(actual.clone()),
                    _ => None,
                };
                Err(DeployFailure::release(
                    anyhow!(e).context(format!("verifying {}", release.artifact)),
                    actual,
                ))
            }
            Err(e) => Err(DeployFailure::transient(
                anyhow!(e).context(format!("downloading {}", release.artifact)),
            )),
        }
    }

    async fn expected_checksum(&self, release: &Release) -> Result<Option<String>, DeployFailure> {
        let Some(url) = &release.checksum_url else {
            return Ok(None);
        };
        let bytes = crate::artifact::fetch_small(self.registry.as_ref(), url, 1 << 20)
            .await
            .context("downloading the published checksums")
            .map_err(DeployFailure::transient)?;
        let text = String::from_utf8_lossy(&bytes);
        match crate::artifact::checksum::parse_expected(&text, &release.artifact) {
            Some(sum) => Ok(Some(sum)),
            None => Err(DeployFailure::release(
                anyhow!(
                    "the release publishes checksums but none for {}",
                    release.artifact
                ),
                None,
            )),
        }
    }

    /// Extract the cached artifact into a new release directory.
    pub async fn unpack(
        &self,
        release: &Release,
        key: &str,
        fetched: Fetched,
    ) -> Result<Prepared, DeployFailure> {
        steps::timed("extract", self.extract(release, key, fetched)).await
    }

    async fn extract(
        &self,
        release: &Release,
        key: &str,
        fetched: Fetched,
    ) -> Result<Prepared, DeployFailure> {
        let sha256 = fetched.digest();
        let staging = self
            .releases
            .create_staging()
            .context("creating a staging directory")
            .map_err(DeployFailure::transient)?;
        let archive = self.cache.path(key);
        let artifact = release.artifact.clone();
        let limits = Limits {
            max_total_bytes: self.settings.max_extracted_size,
            ..Limits::default()
        };
        let dest = staging.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let stats = release::extract(&archive, &artifact, &dest, &limits)?;
            release::sync_tree(&dest)?;
            Ok::<_, anyhow::Error>(stats)
        })
        .await
        .map_err(|e| anyhow!(e))
        .and_then(|r| r);
        fault_inject::point("extract", &release.version);
        let stats = match result {
            Ok(stats) => stats,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(DeployFailure::release(
                    e.context(format!("extracting {}", release.artifact)),
                    sha256,
                ));
            }
        };
        let dir = self
            .releases
            .commit_staging(&staging, Utc::now())
            .context("moving the release into place")
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&staging);
                DeployFailure::transient(e)
            })?;
        tracing::info!(
            message_id = MSG_DEPLOY,
            dewy_version = %release.version,
            dewy_release_dir = %dir.display(),
            path = %dir.display(),
            files = stats.files,
            bytes = stats.bytes,
            duration_ms = started.elapsed().as_millis() as u64,
            "Extract archive"
        );
        Ok(Prepared {
            name: dir_name(&dir),
            digest: sha256,
            hook_dir: dir.clone(),
            place: Place::Dir(dir),
        })
    }

    /// Remove a prepared release directory.
    pub fn discard(&self, prepared: &Prepared) {
        if let Place::Dir(dir) = &prepared.place {
            let _ = self.releases.remove_release(dir);
        }
    }

    /// Point `current` at the prepared release; on failure its directory is removed.
    pub fn switch(&self, release: &Release, prepared: &Prepared) -> Result<PathBuf, DeployFailure> {
        let Place::Dir(dir) = &prepared.place else {
            return Err(DeployFailure::transient(anyhow!(
                "{} is not a release directory",
                prepared.name
            )));
        };
        fault_inject::point("switch", &release.version);
        self.releases
            .switch_current(dir)
            .with_context(|| format!("switching current to {}", dir.display()))
            .map_err(|e| {
                let _ = self.releases.remove_release(dir);
                DeployFailure::transient(e)
            })?;
        tracing::info!(
            message_id = MSG_DEPLOY,
            dewy_version = %release.version,
            dewy_release_dir = %dir.display(),
            from = %dir.display(),
            to = %self.releases.current_link().display(),
            "Create symlink"
        );
        fault_inject::point("switched", &release.version);
        Ok(dir.clone())
    }

    /// The app of a switched release did not start: point `current` back at `previous` (or
    /// remove it when there was none) and remove `dir`.
    pub fn undo_switch(&self, previous: Option<&Live>, dir: &Path) {
        let back = previous.map(|p| self.dir_of(&p.release));
        let result = match &back {
            Some(prev) if prev.is_dir() => self.releases.switch_current(prev),
            _ => std::fs::remove_file(self.releases.current_link()),
        };
        match result {
            Ok(()) => tracing::warn!(
                message_id = MSG_ROLLBACK,
                dewy_release_dir = %back.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "Rolled back: current points to the previous release again"
            ),
            Err(e) => tracing::error!(error = %e, "Switching current back failed"),
        }
        let _ = self.releases.remove_release(dir);
    }

    /// Point `current` at `previous` again (a rollback).
    pub fn switch_back(&self, previous: &Live) -> anyhow::Result<()> {
        let dir = self.dir_of(&previous.release);
        self.releases.switch_current(&dir).with_context(|| {
            format!(
                "switching current to {} (disk full? permissions? check {})",
                dir.display(),
                self.releases.releases_dir().display()
            )
        })
    }

    /// Keep the configured number of release directories and cached artifacts, never those of
    /// `keep`.
    pub fn prune(&self, keep: &[&Live]) {
        let protect: Vec<PathBuf> = keep.iter().map(|l| self.dir_of(&l.release)).collect();
        match self.releases.prune(self.settings.keep_releases, &protect) {
            Ok(removed) => tracing::info!(
                count = self.settings.keep_releases,
                removed = removed.len(),
                "Keep releases"
            ),
            Err(e) => tracing::warn!(error = %e, "Keep releases failure"),
        }
        let keys: Vec<String> = keep.iter().map(|l| l.cache_key.clone()).collect();
        if let Err(e) = self.cache.prune(&keys, self.settings.keep_artifacts) {
            tracing::warn!(error = %e, "Pruning the artifact cache failed");
        }
    }
}

/// The last component of a path, as text.
pub(crate) fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
