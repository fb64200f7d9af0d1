//! The one deploy pipeline, as methods of [`Deployer`]: skip rules, then fetch, pending record,
//! unpack, hooks, activation and the state that records it, each step done by the mode's
//! [`Runtime`](super::runtime::Runtime), and what a failure marks (rollback and crash recovery
//! are in `recovery.rs`).

use std::path::Path;
use std::time::Instant;

use chrono::Utc;

use super::runtime::{Fetched, Place};
use super::state::{BadVersion, HistoryEntry, Live, Outcome, Pending};
use super::{DeployResult, Deployer, Trigger};
use crate::config::HookFailure;
use crate::failure::DeployFailure;
use crate::fault_inject;
use crate::logging::{MSG_DEPLOY, MSG_DOWNLOAD, MSG_FAILURE, MSG_SKIP};
use crate::notify::{Event, Stage};
use crate::registry::Release;
use crate::release::HookKind;

impl Deployer {
    pub(super) async fn run(&self, release: Release, trigger: Trigger) -> DeployResult {
        let version = release.version.clone();
        let key = release.cache_key();
        self.runtime.catch_up(self.live_version().as_deref()).await;
        // A slot of the fleet lock still held (its steady-state call failed) is given back at
        // the next check.
        self.settle_lock().await;
        self.settle_fleet().await;
        if let Some(reason) = self.skip_reason(&release, &key, trigger) {
            tracing::debug!(
                message_id = MSG_SKIP,
                dewy_version = %version,
                dewy_cache_key = %key,
                reason = %reason,
                "Deploy skipped"
            );
            self.set_waiting(None);
            return DeployResult::Skipped { version, reason };
        }
        if trigger == Trigger::Watcher {
            if let Some(held) = self.held_by_pause(&version, &key) {
                return DeployResult::Skipped {
                    version,
                    reason: held,
                };
            }
            if let Some(wait) = self.cooldown(&release) {
                return DeployResult::Skipped {
                    version,
                    reason: wait,
                };
            }
            if let Some(wait) = self.outside_window(&version, &key) {
                return DeployResult::Skipped {
                    version,
                    reason: wait,
                };
            }
            if let Some(wait) = self.fleet_gate(&version, &key).await {
                return DeployResult::Skipped {
                    version,
                    reason: wait,
                };
            }
        }
        let locked = match self.take_lock(&version, &key).await {
            Ok(locked) => locked,
            Err(why) if trigger == Trigger::Watcher => return DeployResult::Skipped { version, reason: why },
            Err(error) => return DeployResult::Failed { version, error },
        };
        self.set_waiting(None);
        let started = Instant::now();
        if trigger == Trigger::Watcher {
            self.emit(Event::ReleaseFound {
                version: version.clone(),
                previous: self.live_version(),
            });
        }
        self.set_activity(format!("deploying {version}"));
        let sink = self.events.get().cloned();
        let result = super::steps::scope(&version, sink, self.deploy(&release, &key, trigger, started)).await;
        let out = match result {
            Ok(dir) => {
                // Healthy (after the after-deploy hook): the fleet's later waves may count it.
                self.record_live(&version, Utc::now()).await;
                DeployResult::Deployed {
                    version: version.clone(),
                    release: dir,
                }
            }
            Err(step) => {
                let error = format!("{:#}", step.error);
                tracing::error!(
                    message_id = MSG_FAILURE,
                    dewy_version = %version,
                    dewy_cache_key = %key,
                    error = %error,
                    "Deploy failed; the previous release keeps serving"
                );
                {
                    let mut st = self.lock_state();
                    let from = st.live.as_ref().map(|l| l.version.clone());
                    // Starting the live version again (a repair) and failing is retried at the next
                    // check, as the Go Dewy does, in either mode; a new version's fault marks it bad.
                    if step.marks_bad() && from.as_deref() != Some(version.as_str()) {
                        self.record_bad(&mut st, &version, &error);
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
                }
                self.settle_fleet().await;
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
        if locked {
            self.release_lock().await;
        }
        self.set_activity("idle".into());
        out
    }

    /// With `min-age`: why `release` waits (too young by its publication time, or by when it
    /// was first offered when the source gives none), or `None` when it may go ahead.
    fn cooldown(&self, release: &Release) -> Option<String> {
        let min_age = self.settings.min_age?;
        let now = Utc::now();
        let first_seen = match release.published_at {
            Some(_) => None,
            None => {
                let mut st = self.lock_state();
                let (seen, new) = st.first_seen(&release.version, now);
                if new {
                    if let Err(e) = self.state_file.save(&st) {
                        tracing::warn!(error = %format!("{e:#}"), "Saving the first-seen time failed");
                    }
                }
                Some(seen)
            }
        };
        let wait = crate::signature::cooldown_until(release.published_at, first_seen, min_age, now).err()?;
        let text = wait.to_string();
        if self.set_waiting(Some(text.clone())) {
            tracing::info!(message_id = MSG_SKIP, dewy_version = %release.version, reason = %text, "Deploy waits for cooldown");
        }
        Some(text)
    }

    /// True when the release of cache key `key` is the live one: deploying it again repairs
    /// what is live (it is not running), which neither a pause nor a closed window holds back.
    pub(super) fn repairs_live(&self, key: &str) -> bool {
        self.lock_state()
            .live
            .as_ref()
            .is_some_and(|l| l.cache_key == key)
    }

    fn skip_reason(&self, release: &Release, key: &str, trigger: Trigger) -> Option<String> {
        let st = self.lock_state();
        if let Some(live) = &st.live {
            if live.cache_key == key && self.runtime.holds(live) {
                if self.runtime.running() {
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

    /// The one deploy pipeline: fetch, record as pending, unpack, before-deploy hook, activate,
    /// record as live with the after-deploy hook, clean up. The runtime does each step its
    /// mode's way; a failure says whose fault it is.
    async fn deploy(
        &self,
        release: &Release,
        key: &str,
        trigger: Trigger,
        started: Instant,
    ) -> Result<String, DeployFailure> {
        let version = &release.version;
        let fetched = self.runtime.fetch(release, key).await?;
        fault_inject::point("downloaded", version);
        self.announce_fetched(release, &fetched);
        let reason = trigger.reason();
        let previous = self.lock_state().live.clone();
        let prev_version = previous.as_ref().map(|l| l.version.clone());
        self.begin(release, key, fetched.digest(), reason, prev_version.as_deref())
            .map_err(DeployFailure::transient)?;
        fault_inject::point("pending", version);
        let prepared = self.runtime.unpack(release, key, fetched).await?;
        fault_inject::point("extracted", version);
        if let Place::Dir(_) = prepared.place {
            let name = prepared.name.clone();
            self.update_state(|st| {
                if let Some(p) = st.pending.as_mut() {
                    p.release = Some(name);
                }
            })
            .map_err(DeployFailure::transient)?;
        }

        let hook_env = self.hook_env(version, prev_version.as_deref(), &prepared.hook_dir);
        fault_inject::during("before-hook", version);
        if let Err(e) = self.before_hook(&prepared.hook_dir, &hook_env, version).await {
            self.runtime.discard(&prepared);
            return Err(DeployFailure::transient(e));
        }

        self.runtime
            .activate(release, &prepared, previous.as_ref())
            .await?;
        let live = Live {
            version: version.clone(),
            cache_key: key.to_string(),
            artifact_url: release.artifact_url.clone(),
            release: prepared.name.clone(),
            sha256: prepared.digest.clone(),
            deployed_at: Utc::now(),
        };
        self.complete(
            live,
            prev_version.clone(),
            reason,
            started,
            &prepared.hook_dir,
            hook_env,
        )
        .await
        .map_err(DeployFailure::transient)?;
        let (live, previous) = {
            let st = self.lock_state();
            (st.live.clone(), st.previous.clone())
        };
        let keep: Vec<&Live> = [&live, &previous].into_iter().flatten().collect();
        let cleaning = std::time::SystemTime::now();
        self.runtime.clean_up(&prepared, &keep).await;
        super::steps::record("clean-up", cleaning, None, Vec::new());
        tracing::info!(
            message_id = MSG_DEPLOY,
            dewy_version = %version,
            dewy_release_dir = %prepared.hook_dir.display(),
            dewy_release = %prepared.name,
            duration_ms = started.elapsed().as_millis() as u64,
            "Deploy completed"
        );
        self.emit(Event::Deployed {
            version: version.clone(),
            previous: prev_version,
            duration: started.elapsed(),
            command: self.settings.mode.to_string(),
        });
        Ok(prepared.name)
    }

    /// Log and notify what a fetch brought in: a downloaded artifact or a pulled image.
    fn announce_fetched(&self, release: &Release, fetched: &Fetched) {
        let version = &release.version;
        match fetched {
            Fetched::Artifact { .. } => {
                tracing::info!(
                    message_id = MSG_DOWNLOAD,
                    dewy_version = %version,
                    notification = %format!("Downloaded artifact for {version}"),
                    "Download notification"
                );
                self.emit(Event::Downloaded {
                    version: version.clone(),
                });
            }
            Fetched::Image(_) => {
                tracing::info!(
                    dewy_version = %version,
                    notification = %format!("Pulled image for {version}"),
                    "Image pull notification"
                );
                self.emit(Event::ImagePulled {
                    version: version.clone(),
                    image: release.artifact.clone(),
                });
            }
        }
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
}
