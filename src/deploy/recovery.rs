//! Undoing: operator rollback to the previous release, and repairing what a crash left behind.

use chrono::Utc;

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

    /// Make the previous release serve again in place of the live one, mark the live one bad
    /// and record it; when the runtime cannot, the live release keeps serving.
    pub(super) async fn roll_back_to_previous(&self, reason: &str) -> DeployResult {
        self.runtime.catch_up(self.live_version().as_deref()).await;
        let (live, previous) = match self.rollback_pair() {
            Ok(pair) => pair,
            Err(failed) => return failed,
        };
        self.set_activity(format!("rolling back to {}", previous.version));
        let rolled = self.runtime.roll_back(&live, &previous).await;
        self.set_activity("idle".into());
        if let Err(e) = rolled {
            let next_step = format!(
                "{} keeps serving; fix the cause and run `dewy rollback {}` again",
                live.version, self.settings.app
            );
            return self.rollback_failed(previous, format!("{e:#}"), next_step);
        }
        tracing::warn!(
            message_id = MSG_ROLLBACK,
            dewy_version = %previous.version,
            dewy_release = %previous.release,
            from = %live.version,
            reason,
            "Rolled back"
        );
        let out = self.finish_rollback(&live, previous.clone(), reason);
        if matches!(out, DeployResult::Deployed { .. }) {
            self.runtime.after_roll_back(&previous).await;
            if let Err(e) = self.update_state(|st| self.record_bad(st, &live.version, reason)) {
                tracing::error!(error = %format!("{e:#}"), "Saving state failed");
            }
            self.record_live(&previous.version, Utc::now()).await;
        }
        out
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

    /// Keep what recovery found until the operators can be told (after the start message).
    fn note_recovery(&self, event: Event) {
        self.recovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// Repair what a crash left: staging dirs, a deploy that was cut short.
    pub(super) fn recover(&self) -> anyhow::Result<()> {
        let mut st = self.lock_state();
        let known: Vec<String> = [&st.live, &st.previous]
            .into_iter()
            .flatten()
            .map(|l| l.release.clone())
            .collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let switched = self.runtime.recover(st.pending.as_ref(), &known)?;
        if let Some(p) = st.pending.take() {
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
