//! The steps of one deploy, as methods of [`Deployer`]: skip rules, download and verify into the
//! cache, extract, hooks, the `current` switch, the app's start, the state that records it, and
//! what a failure marks (rollback and crash recovery are in `recovery.rs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context};
use chrono::Utc;

use super::state::{BadVersion, HistoryEntry, Live, Outcome, Pending};
use super::{DeployResult, Deployer, Trigger};
use crate::cache::{StoreError, StoreOptions};
use crate::config::HookFailure;
use crate::failure::DeployFailure;
use crate::fault_inject;
use crate::logging::{MSG_DEPLOY, MSG_DOWNLOAD, MSG_FAILURE, MSG_SKIP};
use crate::notify::{Event, Stage};
use crate::registry::Release;
use crate::release::{self, HookKind, Limits};

impl Deployer {
    pub(super) async fn run(&self, release: Release, trigger: Trigger) -> DeployResult {
        let version = release.version.clone();
        let key = release.cache_key();
        if let Some(c) = &self.containers {
            c.catch_up(self.live_version().as_deref()).await;
        }
        if let Some(reason) = self.skip_reason(&release, &key, trigger) {
            tracing::debug!(
                message_id = MSG_SKIP,
                dewy_version = %version,
                dewy_cache_key = %key,
                reason = %reason,
                "Deploy skipped"
            );
            return DeployResult::Skipped { version, reason };
        }
        let started = Instant::now();
        if trigger == Trigger::Watcher {
            self.emit(Event::ReleaseFound {
                version: version.clone(),
                previous: self.live_version(),
            });
        }
        self.set_activity(format!("deploying {version}"));
        let result = self.deploy(&release, &key, trigger, started).await;
        let out = match result {
            Ok(dir) => DeployResult::Deployed {
                version: version.clone(),
                release: dir,
            },
            Err(step) => {
                let error = format!("{:#}", step.error);
                tracing::error!(
                    message_id = MSG_FAILURE,
                    dewy_version = %version,
                    dewy_cache_key = %key,
                    error = %error,
                    "Deploy failed; the previous release keeps serving"
                );
                let mut st = self.lock_state();
                let from = st.live.as_ref().map(|l| l.version.clone());
                // Starting the live version again (a repair) and failing is retried at the next
                // check, as the Go Dewy does, in either mode; a new version's fault marks it bad.
                if step.marks_bad() && from.as_deref() != Some(version.as_str()) {
                    st.bad.insert(
                        version.clone(),
                        BadVersion {
                            version: version.clone(),
                            artifact_url: release.artifact_url.clone(),
                            sha256: step.sha256.clone(),
                            reason: error.clone(),
                            at: Utc::now(),
                        },
                    );
                }
                st.pending = None;
                st.record(HistoryEntry {
                    at: Utc::now(),
                    from,
                    to: version.clone(),
                    result: Outcome::Failed,
                    duration_ms: started.elapsed().as_millis() as u64,
                    reason: error.clone(),
                });
                if let Err(e) = self.state_file.save(&st) {
                    tracing::error!(error = %format!("{e:#}"), "Saving state failed");
                }
                drop(st);
                let next_step = step.next_step(&self.settings.app, &version);
                self.emit(Event::Failed {
                    stage: Stage::Deploy,
                    version: Some(version.clone()),
                    error: error.clone(),
                    next_step,
                    command: self.settings.mode.to_string(),
                });
                DeployResult::Failed { version, error }
            }
        };
        self.set_activity("idle".into());
        out
    }

    fn skip_reason(&self, release: &Release, key: &str, trigger: Trigger) -> Option<String> {
        let st = self.lock_state();
        if let Some(live) = &st.live {
            let intact = self.containers.is_some()
                || self
                    .releases
                    .current()
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == live.release));
            if live.cache_key == key && intact {
                if self.app_running() {
                    return Some(format!("{} is live", release.version));
                }
                tracing::warn!(dewy_version = %release.version, "The server is not running; deploying the live version again");
            }
        }
        if trigger == Trigger::Watcher {
            if let Some(bad) = st.bad.get(&release.version) {
                if bad.artifact_url.is_empty() || bad.artifact_url == release.artifact_url {
                    return Some(format!(
                        "{} failed before ({}); `dewy forget-bad {}` to retry",
                        release.version, bad.reason, release.version
                    ));
                }
            }
        }
        None
    }

    async fn deploy(
        &self,
        release: &Release,
        key: &str,
        trigger: Trigger,
        started: Instant,
    ) -> Result<String, DeployFailure> {
        if let Some(c) = self.containers.clone() {
            return self.deploy_container(&c, release, key, trigger, started).await;
        }
        let version = &release.version;
        let sha256 = self.fetch_artifact(release, key).await?;
        fault_inject::point("downloaded", version);
        tracing::info!(
            message_id = MSG_DOWNLOAD,
            dewy_version = %version,
            notification = %format!("Downloaded artifact for {version}"),
            "Download notification"
        );
        self.emit(Event::Downloaded {
            version: version.clone(),
        });
        let reason = trigger.reason();
        let previous = self.lock_state().live.clone();
        let prev_version = previous.as_ref().map(|l| l.version.clone());
        self.begin(release, key, sha256.clone(), reason, prev_version.as_deref())
            .map_err(DeployFailure::transient)?;
        fault_inject::point("pending", version);
        let dir = self.extract(release, key, sha256.clone()).await?;
        fault_inject::point("extracted", version);
        let name = dir_name(&dir);
        self.update_state(|st| {
            if let Some(p) = st.pending.as_mut() {
                p.release = Some(name.clone());
            }
        })
        .map_err(DeployFailure::transient)?;

        let hook_env = self.hook_env(version, prev_version.as_deref(), &dir);
        fault_inject::during("before-hook", version);
        if let Err(e) = self.before_hook(&dir, &hook_env, version).await {
            let _ = self.releases.remove_release(&dir);
            return Err(DeployFailure::transient(e));
        }

        fault_inject::point("switch", version);
        self.releases
            .switch_current(&dir)
            .with_context(|| format!("switching current to {}", dir.display()))
            .map_err(|e| {
                let _ = self.releases.remove_release(&dir);
                DeployFailure::transient(e)
            })?;
        tracing::info!(
            message_id = MSG_DEPLOY,
            dewy_version = %version,
            dewy_release_dir = %dir.display(),
            from = %dir.display(),
            to = %self.releases.current_link().display(),
            "Create symlink"
        );
        fault_inject::point("switched", version);
        if let Some(app) = &self.app {
            if let Err(e) = app.start(version, crate::supervise::Restart::Deploy).await {
                self.undo_switch(previous.as_ref(), &dir);
                return Err(DeployFailure::release(e, sha256));
            }
        }
        let live = Live {
            version: version.clone(),
            cache_key: key.to_string(),
            artifact_url: release.artifact_url.clone(),
            release: name.clone(),
            sha256,
            deployed_at: Utc::now(),
        };
        self.complete(live, prev_version.clone(), reason, started, &dir, hook_env)
            .await
            .map_err(DeployFailure::transient)?;
        self.prune();
        tracing::info!(
            message_id = MSG_DEPLOY,
            dewy_version = %version,
            dewy_release_dir = %dir.display(),
            duration_ms = started.elapsed().as_millis() as u64,
            "Deploy completed"
        );
        self.emit(Event::Deployed {
            version: version.clone(),
            previous: prev_version,
            duration: started.elapsed(),
            command: self.settings.mode.to_string(),
        });
        Ok(name)
    }

    /// Make sure the artifact is in the cache (verified), returning its SHA-256 when known.
    async fn fetch_artifact(&self, release: &Release, key: &str) -> Result<Option<String>, DeployFailure> {
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
                    return Ok(Some(actual));
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
                Ok(Some(stored.sha256))
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

    async fn extract(
        &self,
        release: &Release,
        key: &str,
        sha256: Option<String>,
    ) -> Result<PathBuf, DeployFailure> {
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
        Ok(dir)
    }

    /// Record the deploy as pending (for recovery after a crash) and announce it.
    pub(super) fn begin(
        &self,
        release: &Release,
        key: &str,
        sha256: Option<String>,
        reason: &str,
        previous: Option<&str>,
    ) -> anyhow::Result<()> {
        self.update_state(|st| {
            st.pending = Some(Pending {
                version: release.version.clone(),
                cache_key: key.to_string(),
                artifact_url: release.artifact_url.clone(),
                sha256,
                release: None,
                started_at: Utc::now(),
                reason: reason.to_string(),
            })
        })?;
        self.emit(Event::DeployStarted {
            version: release.version.clone(),
            previous: previous.map(str::to_string),
        });
        Ok(())
    }

    /// The before-deploy hook, run in `dir`; an error when it failed and the config says abort
    /// (the caller removes what it prepared).
    pub(super) async fn before_hook(
        &self,
        dir: &Path,
        env: &[(String, String)],
        version: &str,
    ) -> anyhow::Result<()> {
        let Some(cmd) = &self.settings.before_deploy_hook else {
            return Ok(());
        };
        let ok = self
            .hook_step(HookKind::Before, cmd, dir, env.to_vec(), version)
            .await;
        if !ok && self.settings.before_hook_failure == HookFailure::Abort {
            anyhow::bail!(
                "before-deploy hook failed (before-hook-failure = \"abort\"); will retry at the next check"
            );
        }
        Ok(())
    }

    /// Make `live` the live release with its history entry, then run the after-deploy hook in
    /// `dir` (its failure is noted in that entry).
    pub(super) async fn complete(
        &self,
        live: Live,
        previous: Option<String>,
        reason: &str,
        started: Instant,
        dir: &Path,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let version = live.version.clone();
        let mut entry = HistoryEntry {
            at: Utc::now(),
            from: previous,
            to: version.clone(),
            result: Outcome::Deployed,
            duration_ms: started.elapsed().as_millis() as u64,
            reason: reason.to_string(),
        };
        self.mark_live(live, &entry)?;
        fault_inject::point("live", &version);
        if let Some(cmd) = &self.settings.after_deploy_hook {
            fault_inject::during("after-hook", &version);
            if !self.hook_step(HookKind::After, cmd, dir, env, &version).await {
                entry.reason = format!("{reason}; after-deploy hook failed");
                let _ = self.update_state(|st| {
                    if let Some(last) = st.history.back_mut() {
                        *last = entry.clone();
                    }
                });
            }
        }
        Ok(())
    }

    /// Record `live` as the live release (the one it replaces becomes previous, unless the same
    /// version was deployed again: a repair keeps the older previous), clear the pending deploy
    /// and the version's bad mark, and add `entry` to the history.
    pub(super) fn mark_live(&self, live: Live, entry: &HistoryEntry) -> anyhow::Result<()> {
        self.update_state(|st| {
            let old = st.live.take();
            if old.as_ref().is_some_and(|o| o.version != live.version) || st.previous.is_none() {
                st.previous = old;
            }
            st.bad.remove(&live.version);
            st.live = Some(live);
            st.pending = None;
            st.record(entry.clone());
        })
    }

    pub(super) fn update_state(&self, f: impl FnOnce(&mut super::State)) -> anyhow::Result<()> {
        let mut st = self.lock_state();
        f(&mut st);
        self.state_file.save(&st)
    }

    fn prune(&self) {
        let (live, previous) = {
            let st = self.lock_state();
            (st.live.clone(), st.previous.clone())
        };
        let protect: Vec<PathBuf> = [&live, &previous]
            .into_iter()
            .flatten()
            .map(|l| self.releases.releases_dir().join(&l.release))
            .collect();
        match self.releases.prune(self.settings.keep_releases, &protect) {
            Ok(removed) => tracing::info!(
                count = self.settings.keep_releases,
                removed = removed.len(),
                "Keep releases"
            ),
            Err(e) => tracing::warn!(error = %e, "Keep releases failure"),
        }
        let keys: Vec<String> = [&live, &previous]
            .into_iter()
            .flatten()
            .map(|l| l.cache_key.clone())
            .collect();
        if let Err(e) = self.cache.prune(&keys, self.settings.keep_artifacts) {
            tracing::warn!(error = %e, "Pruning the artifact cache failed");
        }
    }
}

pub(super) fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
