//! Undoing: operator rollback to the previous release, and repairing what a crash left behind.

use anyhow::Context;
use chrono::Utc;

use super::pipeline::dir_name;
use std::path::Path;

use super::state::{BadVersion, HistoryEntry, Live, Outcome};
use super::{DeployResult, Deployer};
use crate::logging::MSG_ROLLBACK;
use crate::notify::{Event, Stage};

impl Deployer {
    /// The live release and the one a rollback brings back; the failure to return when there is
    /// no previous release.
    pub(super) fn rollback_pair(&self) -> Result<(Live, Live), DeployResult> {
        let st = self.lock_state();
        match (st.live.clone(), st.previous.clone()) {
            (Some(live), Some(previous)) => Ok((live, previous)),
            _ => Err(DeployResult::Failed {
                version: String::new(),
                error: "no previous release to roll back to".into(),
            }),
        }
    }

    /// A rollback to `previous` that failed: tell the operators what to do next.
    pub(super) fn rollback_failed(&self, previous: Live, error: String, next_step: String) -> DeployResult {
        self.emit(Event::Failed {
            stage: Stage::Rollback,
            version: Some(previous.version.clone()),
            error: error.clone(),
            next_step,
            command: self.settings.mode.to_string(),
        });
        DeployResult::Failed {
            version: previous.version,
            error,
        }
    }

    pub(super) fn do_rollback(&self, reason: &str) -> DeployResult {
        let (live, previous) = match self.rollback_pair() {
            Ok(pair) => pair,
            Err(failed) => return failed,
        };
        let dir = self.releases.releases_dir().join(&previous.release);
        if let Err(e) = self.releases.switch_current(&dir) {
            let next_step = format!(
                "{} stays live; check {} (disk full? permissions?) and run `dewy rollback {}` again",
                live.version,
                self.releases.releases_dir().display(),
                self.settings.app
            );
            return self.rollback_failed(
                previous,
                format!("switching current to {}: {e}", dir.display()),
                next_step,
            );
        }
        tracing::warn!(
            message_id = MSG_ROLLBACK,
            dewy_version = %previous.version,
            dewy_release_dir = %dir.display(),
            from = %live.version,
            reason,
            "Rolled back"
        );
        self.set_activity("idle".into());
        self.finish_rollback(&live, previous.clone(), reason)
    }

    /// After `previous` serves again in place of `live`: mark `live` bad, record the rollback,
    /// make `previous` live (deployed now) and tell the operators.
    pub(super) fn finish_rollback(&self, live: &Live, previous: Live, reason: &str) -> DeployResult {
        let saved = self.update_state(|st| {
            st.bad.insert(
                live.version.clone(),
                BadVersion {
                    version: live.version.clone(),
                    artifact_url: live.artifact_url.clone(),
                    sha256: live.sha256.clone(),
                    reason: reason.to_string(),
                    at: Utc::now(),
                },
            );
            st.record(HistoryEntry {
                at: Utc::now(),
                from: Some(live.version.clone()),
                to: previous.version.clone(),
                result: Outcome::RolledBack,
                duration_ms: 0,
                reason: reason.to_string(),
            });
            st.live = Some(Live {
                deployed_at: Utc::now(),
                ..previous.clone()
            });
            st.previous = Some(live.clone());
        });
        if let Err(e) = saved {
            return DeployResult::Failed {
                version: previous.version,
                error: format!("{e:#}"),
            };
        }
        self.emit(Event::RolledBack {
            from: live.version.clone(),
            to: previous.version.clone(),
            reason: reason.to_string(),
        });
        DeployResult::Deployed {
            version: previous.version,
            release: previous.release,
        }
    }

    /// Server mode: the new release did not start; point `current` back at the previous release.
    pub(super) fn undo_switch(&self, previous: Option<&Live>, dir: &Path) {
        let back = previous.map(|p| self.releases.releases_dir().join(&p.release));
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

    /// Keep what recovery found until the operators can be told (after the start message).
    fn note_recovery(&self, event: Event) {
        self.recovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// A deploy killed between moving its release into place and recording its name left a
    /// release directory nothing refers to: the one named (by its UTC time) at or after the
    /// deploy began that is neither live, previous nor current. Remove it.
    fn remove_unrecorded(&self, p: &super::state::Pending, st: &super::State, current: Option<&str>) {
        let since = p.started_at.format("%Y%m%dT%H%M%SZ").to_string();
        let known: Vec<&str> = [&st.live, &st.previous]
            .into_iter()
            .flatten()
            .map(|l| l.release.as_str())
            .chain(current)
            .collect();
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

    /// Repair what a crash left: staging dirs, a deploy that was cut short.
    pub(super) fn recover(&self) -> anyhow::Result<()> {
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
        let current = self.releases.current().ok().flatten().map(|p| dir_name(&p));
        let mut st = self.lock_state();
        if let Some(p) = st.pending.take() {
            let switched = p.release.is_some() && p.release == current;
            if switched {
                let live = Live {
                    version: p.version.clone(),
                    cache_key: p.cache_key.clone(),
                    artifact_url: p.artifact_url.clone(),
                    release: p.release.clone().unwrap_or_default(),
                    sha256: p.sha256.clone(),
                    deployed_at: Utc::now(),
                };
                st.previous = st.live.take();
                st.live = Some(live);
                let from = st.previous.as_ref().map(|l| l.version.clone());
                st.record(HistoryEntry {
                    at: Utc::now(),
                    from,
                    to: p.version.clone(),
                    result: Outcome::Recovered,
                    duration_ms: 0,
                    reason: "deploy finished before a restart of the deployer; after-deploy hook not run"
                        .into(),
                });
                tracing::warn!(dewy_version = %p.version, "Interrupted deploy had switched current; keeping it live");
                self.note_recovery(Event::Failed {
                    stage: Stage::Deploy,
                    version: Some(p.version.clone()),
                    error: "the deployer stopped after the switch of current and before the after-deploy hook"
                        .into(),
                    next_step: format!(
                        "{} is live and kept; its after-deploy hook did not run: run it by hand if it matters",
                        p.version
                    ),
                    command: self.settings.mode.to_string(),
                });
            } else {
                if let Some(name) = &p.release {
                    let dir = self.releases.releases_dir().join(name);
                    if dir.exists() {
                        let _ = self.releases.remove_release(&dir);
                    }
                } else {
                    self.remove_unrecorded(&p, &st, current.as_deref());
                }
                let from = st.live.as_ref().map(|l| l.version.clone());
                st.record(HistoryEntry {
                    at: Utc::now(),
                    from,
                    to: p.version.clone(),
                    result: Outcome::Failed,
                    duration_ms: 0,
                    reason: "interrupted by a restart of the deployer; will retry".into(),
                });
                tracing::warn!(dewy_version = %p.version, "Interrupted deploy undone; the previous release stays live");
                let live = st
                    .live
                    .as_ref()
                    .map_or_else(|| "nothing".to_string(), |l| l.version.clone());
                self.note_recovery(Event::Failed {
                    stage: Stage::Deploy,
                    version: Some(p.version.clone()),
                    error: "interrupted by a stop of the deployer; the half-done release was removed".into(),
                    next_step: format!(
                        "{live} stays live; dewy deploys {} again at the next check",
                        p.version
                    ),
                    command: self.settings.mode.to_string(),
                });
            }
            self.state_file.save(&st)?;
        }
        Ok(())
    }
}
