//! The fleet store (`fleet-store = "etcd://host:2379/prefix"`, or an S3 or GCS bucket prefix):
//! where the hosts of a fleet record which release each runs, and which releases failed, so that
//! canary waves (`fleet-wave`) roll a release out in order and a release that failed anywhere is
//! deployed nowhere else.
//!
//! Keys under the prefix (values are JSON):
//!
//! - `hosts/<wave>/<fleet-id>`: `{"wave": 0, "version": "v1.2.0", "since": "…"}`, the release a
//!   host of a wave runs healthy since when (written after each deploy, rollback and start; one
//!   key per host, overwritten, so a host that moved on or rolled back no longer counts for a
//!   release; a host that changed waves deletes its key in the old one);
//! - `bad/<version>`: `{"version", "reason", "by", "at"}`, created only if absent (an etcd
//!   transaction, or a conditional write: S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`), so
//!   the first reason stays, when a release fails on a host; deleted by `dewy forget-bad` on any
//!   host.
//!
//! A host of wave N > 0 deploys a release only when at least `canary-hosts` hosts of wave N−1
//! record it with a `since` at least `soak` ago (by this host's clock: the hosts' clocks must
//! agree, as NTP keeps them). Records owed while the store cannot be reached are written at the
//! next check; owed bad marks are kept in the state file, so a restart does not lose them.

mod backend;
mod deployer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fleet_lock::LockError;
use crate::config::fleet_store::{FleetStore, StoreBackend};
use backend::Backend;

/// Most characters of a reason written to or read from the store.
const REASON_LIMIT: usize = 500;
/// Most hosts named in a message.
const NAMED_HOSTS: usize = 5;

/// What a host records about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HostRecord {
    wave: Option<u32>,
    version: String,
    since: DateTime<Utc>,
}

/// A release marked bad fleet-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetBad {
    pub version: String,
    pub reason: String,
    /// The `fleet-id` of the host it failed on.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Text from the store made safe to show: control characters blanked, at most
/// [`REASON_LIMIT`] characters.
fn shown(text: &str) -> String {
    crate::text::blanked(text, REASON_LIMIT)
}

/// What this host still has to write (the store could not be reached).
#[derive(Default)]
struct Owed {
    live: Option<HostRecord>,
    bad: Vec<FleetBad>,
}

/// The store's client for one host.
pub struct FleetRecords {
    cfg: FleetStore,
    backend: Backend,
    owed: Mutex<Owed>,
    /// This host's keys in other waves (left by an earlier config) were deleted.
    tidied: AtomicBool,
    /// The last write failed (warned once, then logged at debug).
    failing: AtomicBool,
    /// `etcd://host:2379/prefix (id web-1, wave 1)`, for messages.
    pub described: String,
}

/// Where a release stands for this host's wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// It may be deployed.
    Open,
    /// It waits; why.
    Wait(String),
}

impl FleetRecords {
    pub fn new(cfg: &FleetStore) -> anyhow::Result<Self> {
        let wave = cfg.wave.map(|w| format!(", wave {w}")).unwrap_or_default();
        let backend = match &cfg.backend {
            StoreBackend::Etcd(e) => Backend::Etcd {
                cfg: e.clone(),
                client: Box::new(tokio::sync::OnceCell::new()),
            },
            StoreBackend::Objects(spec) => Backend::Objects(crate::cache::shared::open_store(
                spec.clone(),
                &crate::registry::default_user_agent(),
            )?),
        };
        Ok(Self {
            described: format!("{} (id {}{wave})", cfg.url, cfg.id),
            cfg: cfg.clone(),
            backend,
            owed: Mutex::new(Owed::default()),
            tidied: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        })
    }

    fn owed(&self) -> std::sync::MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This host's record key (`None` without a wave: it counts for none).
    fn host_key(&self) -> Option<String> {
        self.cfg.wave.map(|w| format!("hosts/{w}/{}", self.cfg.id))
    }

    /// Record that this host runs `version` healthy since `since` (written at the next
    /// [`flush`](Self::flush)).
    pub fn owe_live(&self, version: &str, since: DateTime<Utc>) {
        if self.cfg.wave.is_none() {
            return;
        }
        self.owed().live = Some(HostRecord {
            wave: self.cfg.wave,
            version: version.to_string(),
            since,
        });
    }

    /// Record that `version` failed here because of `reason`.
    pub fn owe_bad(&self, version: &str, reason: &str) {
        let mut owed = self.owed();
        owed.bad.retain(|b| b.version != version);
        owed.bad.push(FleetBad {
            version: version.to_string(),
            reason: shown(reason),
            by: self.cfg.id.clone(),
            at: Utc::now(),
        });
    }

    /// The bad marks still owed (kept in the state file across restarts).
    pub fn owed_bad(&self) -> Vec<FleetBad> {
        self.owed().bad.clone()
    }

    /// Owe again the bad marks an earlier run could not write.
    pub fn restore_bad(&self, marks: &[FleetBad]) {
        let mut owed = self.owed();
        for mark in marks {
            if !owed.bad.iter().any(|b| b.version == mark.version) {
                owed.bad.push(mark.clone());
            }
        }
    }

    fn owes(&self) -> bool {
        let owed = self.owed();
        owed.live.is_some() || !owed.bad.is_empty() || !self.tidied.load(Ordering::Relaxed)
    }

    /// Write what is owed; what could not be written stays owed.
    pub async fn flush(&self) -> Result<(), LockError> {
        if !self.owes() {
            return Ok(());
        }
        if !self.tidied.load(Ordering::Relaxed) {
            self.tidy().await?;
            self.tidied.store(true, Ordering::Relaxed);
        }
        let live = self.owed().live.clone();
        if let Some(rec) = live {
            self.put_live(&rec).await?;
            let mut owed = self.owed();
            if owed.live.as_ref() == Some(&rec) {
                owed.live = None;
            }
        }
        let bad = self.owed().bad.clone();
        for b in bad {
            self.put_bad(&b).await?;
            self.owed().bad.retain(|o| o != &b);
        }
        Ok(())
    }

    /// Delete this host's records in waves other than its own (its config changed).
    async fn tidy(&self) -> Result<(), LockError> {
        let mine = self.host_key();
        let suffix = format!("/{}", self.cfg.id);
        for key in self.backend.keys("hosts/").await? {
            if key.ends_with(&suffix) && Some(&key) != mine.as_ref() {
                self.backend.delete(&key).await?;
            }
        }
        Ok(())
    }

    /// Put this host's record; one already there for the same release and wave keeps its
    /// `since` (a deployer restart does not restart the soak).
    async fn put_live(&self, rec: &HostRecord) -> Result<(), LockError> {
        let Some(key) = self.host_key() else {
            return Ok(());
        };
        let kept = self
            .backend
            .get(&key)
            .await?
            .and_then(|v| serde_json::from_slice::<HostRecord>(&v).ok())
            .is_some_and(|old| old.version == rec.version && old.wave == rec.wave);
        if kept {
            return Ok(());
        }
        let value = serde_json::to_vec(rec).map_err(|e| LockError::Refused(e.to_string()))?;
        self.backend.put(&key, value).await?;
        tracing::debug!(fleet_store = %self.described, dewy_version = %rec.version, "Fleet store: release recorded");
        Ok(())
    }

    /// Create `bad/<version>` unless it exists (the first reason stays).
    async fn put_bad(&self, bad: &FleetBad) -> Result<(), LockError> {
        let value = serde_json::to_vec(bad).map_err(|e| LockError::Refused(e.to_string()))?;
        if self
            .backend
            .create(&format!("bad/{}", bad.version), value)
            .await?
        {
            tracing::warn!(fleet_store = %self.described, dewy_version = %bad.version, reason = %bad.reason, "Release marked bad fleet-wide");
        }
        Ok(())
    }

    /// The fleet-wide mark of `version`, if any.
    pub async fn bad_mark(&self, version: &str) -> Result<Option<FleetBad>, LockError> {
        let got = self.backend.get(&format!("bad/{version}")).await?;
        Ok(got.map(|v| {
            let mark = serde_json::from_slice::<FleetBad>(&v).unwrap_or_else(|_| FleetBad {
                version: version.to_string(),
                reason: "(an unreadable record)".into(),
                by: "?".into(),
                at: DateTime::<Utc>::UNIX_EPOCH,
            });
            FleetBad {
                version: version.to_string(),
                reason: shown(&mark.reason),
                by: shown(&mark.by),
                at: mark.at,
            }
        }))
    }

    /// Clear the fleet-wide mark of `version`; true when there was one.
    pub async fn forget_bad(&self, version: &str) -> Result<bool, LockError> {
        self.owed().bad.retain(|b| b.version != version);
        self.backend.delete(&format!("bad/{version}")).await
    }

    /// Whether this host's wave lets `version` deploy now.
    pub async fn gate(&self, version: &str, now: DateTime<Utc>) -> Result<Gate, LockError> {
        let Some(wave) = self.cfg.wave.filter(|w| *w > 0) else {
            return Ok(Gate::Open);
        };
        let before = wave - 1;
        let dir = format!("hosts/{before}/");
        let mut running: Vec<(String, DateTime<Utc>)> = self
            .backend
            .entries(&dir, true)
            .await?
            .into_iter()
            .filter_map(|(key, value)| {
                let rec = serde_json::from_slice::<HostRecord>(&value).ok()?;
                let id = key.strip_prefix(dir.as_str())?.to_string();
                (rec.wave == Some(before) && rec.version == version).then(|| (shown(&id), rec.since))
            })
            .collect();
        running.sort_by_key(|(_, since)| *since);
        let Ok(soak) = chrono::Duration::from_std(self.cfg.soak) else {
            return Ok(Gate::Wait(format!("soak {:?} is too long", self.cfg.soak)));
        };
        let need = usize::try_from(self.cfg.canary_hosts).unwrap_or(usize::MAX);
        let soaked = running.iter().filter(|(_, since)| *since + soak <= now).count();
        if soaked >= need {
            return Ok(Gate::Open);
        }
        let soak_text = crate::units::format_duration(self.cfg.soak);
        let mut text = format!(
            "{version} waits for wave {before}: {soaked} of {need} host{} of wave {before} ran it healthy for {soak_text}",
            if need == 1 { "" } else { "s" }
        );
        if running.len() >= need {
            let ready = running[need - 1].1 + soak;
            text.push_str(&format!(
                " (enough will have at {})",
                ready.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if !running.is_empty() {
            let names: Vec<&str> = running
                .iter()
                .take(NAMED_HOSTS)
                .map(|(id, _)| id.as_str())
                .collect();
            text.push_str(&format!(
                "; running it: {}{}",
                names.join(", "),
                if running.len() > NAMED_HOSTS { "…" } else { "" }
            ));
        }
        Ok(Gate::Wait(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_store_is_made_safe() {
        assert_eq!(shown("a\nb\u{1b}[2J"), "a b [2J");
        assert_eq!(shown(&"x".repeat(900)).chars().count(), REASON_LIMIT);
    }
}
