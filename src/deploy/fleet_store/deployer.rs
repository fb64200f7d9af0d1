//! The deployer's side of the fleet store: the records it owes after deploys and rollbacks,
//! and the gate a found release passes (not marked bad fleet-wide, the wave before ran it).

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::super::fleet_lock::LockError;
use super::super::Deployer;
use super::Gate;
use crate::deploy::State;
use crate::logging::MSG_SKIP;

impl Deployer {
    /// Write the records this host owes the fleet store (at start, after each deploy and
    /// rollback, and at each check until etcd takes them).
    pub(in crate::deploy) async fn settle_fleet(&self) {
        let Some(store) = &self.fleet_records else { return };
        let flushed = store.flush().await;
        self.keep_owed_marks();
        match flushed {
            Ok(()) => {
                if store.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(fleet_store = %store.described, "Fleet store: records written");
                }
            }
            Err(LockError::Refused(e) | LockError::Unreachable(e)) => {
                if store.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(fleet_store = %store.described, error = %e, "Fleet store: writing the records failed again");
                } else {
                    tracing::warn!(fleet_store = %store.described, error = %e, "Fleet store: writing the records failed; retried at each check");
                }
            }
        }
    }

    /// Record in the fleet store that `version` runs here now.
    pub(in crate::deploy) async fn record_live(&self, version: &str, since: DateTime<Utc>) {
        if let Some(store) = &self.fleet_records {
            store.owe_live(version, since);
            self.settle_fleet().await;
        }
    }

    /// Record in the fleet store that `version` failed here (written at the next settle; kept
    /// in `st`, which the caller saves, until then).
    pub(in crate::deploy) fn record_bad(&self, st: &mut State, version: &str, reason: &str) {
        if let Some(store) = &self.fleet_records {
            store.owe_bad(version, reason);
            st.fleet_bad_owed = store.owed_bad();
        }
    }

    /// Save the bad marks still owed to the store in the state file, if they changed.
    fn keep_owed_marks(&self) {
        let Some(store) = &self.fleet_records else { return };
        let owed = store.owed_bad();
        let mut st = self.lock_state();
        if st.fleet_bad_owed != owed {
            st.fleet_bad_owed = owed;
            if let Err(e) = self.state_file.save(&st) {
                tracing::error!(error = %format!("{e:#}"), "Saving state failed");
            }
        }
    }

    /// With a fleet store, before a release the watcher found (cache key `key`) is deployed:
    /// why it waits (marked bad fleet-wide, the wave before has not run it long enough, or the
    /// store cannot be asked), or `None` when it may go ahead. A repair of the live release is
    /// never held back.
    pub(in crate::deploy) async fn fleet_gate(&self, version: &str, key: &str) -> Option<String> {
        let store = self.fleet_records.as_ref()?;
        if self.repairs_live(key) {
            return None;
        }
        let checked = async {
            if let Some(bad) = store.bad_mark(version).await? {
                return Ok::<_, LockError>((
                    format!(
                        "{version} is marked bad fleet-wide: it failed on {} at {} ({}); `dewy forget-bad {version}` clears it",
                        bad.by,
                        bad.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        bad.reason
                    ),
                    "Deploy skipped: the release is marked bad fleet-wide",
                ));
            }
            Ok(match store.gate(version, Utc::now()).await? {
                Gate::Open => (String::new(), ""),
                Gate::Wait(why) => (why, "Deploy waits for the canary wave"),
            })
        }
        .await;
        let (text, log) = match checked {
            Ok((_, "")) => return None,
            Ok(found) => found,
            Err(LockError::Refused(e)) => (
                format!(
                    "the fleet store {} refused: {e}; not deploying, the live release keeps serving",
                    store.described
                ),
                "Deploy waits: the fleet store refused",
            ),
            Err(LockError::Unreachable(e)) => (
                format!(
                    "cannot reach the fleet store {}: {e}; not deploying, the live release keeps serving",
                    store.described
                ),
                "Deploy waits: the fleet store cannot be reached",
            ),
        };
        if self.set_waiting(Some(text.clone())) {
            tracing::info!(message_id = MSG_SKIP, dewy_version = %version, reason = %text, "{log}");
        }
        Some(text)
    }

    /// Clear `version`'s fleet-wide bad mark (no store: false).
    pub(in crate::deploy) async fn forget_fleet_bad(&self, version: &str) -> anyhow::Result<bool> {
        let Some(store) = &self.fleet_records else {
            return Ok(false);
        };
        let forgot = store.forget_bad(version).await;
        self.keep_owed_marks();
        forgot.map_err(|e| match e {
            LockError::Refused(e) | LockError::Unreachable(e) => {
                anyhow::anyhow!("clearing the fleet-wide mark in {}: {e}", store.described)
            }
        })
    }
}
