//! The fleet store (`fleet-store = "etcd://host:2379/prefix"`): the etcd keys where the hosts of
//! a fleet record which release each runs, and which releases failed, so that canary waves
//! (`fleet-wave`) roll a release out in order and a release that failed anywhere is deployed
//! nowhere else.
//!
//! Keys under the prefix (values are JSON):
//!
//! - `hosts/<fleet-id>`: `{"wave": 0, "version": "v1.2.0", "since": "…"}`, the release the host
//!   runs healthy since when (written after each deploy, rollback and start; one key per host,
//!   overwritten, so a host that moved on or rolled back no longer counts for a release);
//! - `bad/<version>`: `{"version", "reason", "by", "at"}`, written once (an etcd transaction that
//!   creates the key only if it does not exist, so the first reason stays) when a release fails on
//!   a host, and deleted by `dewy forget-bad` on any host.
//!
//! A host of wave N > 0 deploys a release only when at least `canary-hosts` hosts of wave N−1
//! record it with a `since` at least `soak` ago (by this host's clock: the hosts' clocks must
//! agree, as NTP keeps them). Records owed while etcd cannot be reached are written at the next
//! check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::etcd_lock::{bounded, connect};
use super::fleet_lock::LockError;
use super::Deployer;
use crate::config::fleet_store::FleetStore;
use crate::logging::MSG_SKIP;

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
    text.chars()
        .take(REASON_LIMIT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
    /// `<prefix>hosts/`, `<prefix>bad/`.
    hosts: String,
    bad: String,
    owed: Mutex<Owed>,
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
    pub fn new(cfg: &FleetStore) -> Self {
        let wave = cfg.wave.map(|w| format!(", wave {w}")).unwrap_or_default();
        Self {
            hosts: format!("{}hosts/", cfg.etcd.prefix),
            bad: format!("{}bad/", cfg.etcd.prefix),
            described: format!("{} (id {}{wave})", cfg.url, cfg.id),
            cfg: cfg.clone(),
            owed: Mutex::new(Owed::default()),
            failing: AtomicBool::new(false),
        }
    }

    fn owed(&self) -> std::sync::MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record that this host runs `version` healthy since `since` (written at the next
    /// [`flush`](Self::flush)).
    pub fn owe_live(&self, version: &str, since: DateTime<Utc>) {
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

    fn owes(&self) -> bool {
        let owed = self.owed();
        owed.live.is_some() || !owed.bad.is_empty()
    }

    /// Write what is owed; what could not be written stays owed.
    pub async fn flush(&self) -> Result<(), LockError> {
        if !self.owes() {
            return Ok(());
        }
        let mut client = connect(&self.cfg.etcd).await?;
        let live = self.owed().live.clone();
        if let Some(rec) = live {
            self.put_live(&mut client, &rec).await?;
            let mut owed = self.owed();
            if owed.live.as_ref() == Some(&rec) {
                owed.live = None;
            }
        }
        let bad = self.owed().bad.clone();
        for b in bad {
            self.put_bad(&mut client, &b).await?;
            self.owed().bad.retain(|o| o != &b);
        }
        Ok(())
    }

    /// Put this host's record; one already there for the same release and wave keeps its
    /// `since` (a deployer restart does not restart the soak).
    async fn put_live(&self, client: &mut Client, rec: &HostRecord) -> Result<(), LockError> {
        let key = format!("{}{}", self.hosts, self.cfg.id);
        let got = bounded("reading this host's record", client.get(key.as_str(), None)).await?;
        let kept = got
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<HostRecord>(kv.value()).ok())
            .is_some_and(|old| old.version == rec.version && old.wave == rec.wave);
        if kept {
            return Ok(());
        }
        let value = serde_json::to_vec(rec).map_err(|e| LockError::Refused(e.to_string()))?;
        bounded("writing this host's record", client.put(key, value, None)).await?;
        tracing::debug!(fleet_store = %self.described, dewy_version = %rec.version, "Fleet store: release recorded");
        Ok(())
    }

    /// Create `bad/<version>` unless it exists (the first reason stays).
    async fn put_bad(&self, client: &mut Client, bad: &FleetBad) -> Result<(), LockError> {
        let key = format!("{}{}", self.bad, bad.version);
        let value = serde_json::to_vec(bad).map_err(|e| LockError::Refused(e.to_string()))?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), value, None)]);
        let done = bounded("marking the release bad fleet-wide", client.txn(txn)).await?;
        if done.succeeded() {
            tracing::warn!(fleet_store = %self.described, dewy_version = %bad.version, reason = %bad.reason, "Release marked bad fleet-wide");
        }
        Ok(())
    }

    /// The fleet-wide mark of `version`, if any.
    pub async fn bad_mark(&self, version: &str) -> Result<Option<FleetBad>, LockError> {
        let mut client = connect(&self.cfg.etcd).await?;
        let key = format!("{}{version}", self.bad);
        let got = bounded("reading the fleet-wide bad releases", client.get(key, None)).await?;
        Ok(got.kvs().first().map(|kv| {
            let mark = serde_json::from_slice::<FleetBad>(kv.value()).unwrap_or_else(|_| FleetBad {
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
        let mut client = connect(&self.cfg.etcd).await?;
        let key = format!("{}{version}", self.bad);
        let done = bounded("clearing the fleet-wide bad mark", client.delete(key, None)).await?;
        Ok(done.deleted() > 0)
    }

    /// Whether this host's wave lets `version` deploy now.
    pub async fn gate(&self, version: &str, now: DateTime<Utc>) -> Result<Gate, LockError> {
        let Some(wave) = self.cfg.wave.filter(|w| *w > 0) else {
            return Ok(Gate::Open);
        };
        let before = wave - 1;
        let mut client = connect(&self.cfg.etcd).await?;
        let got = bounded(
            "listing the fleet's hosts",
            client.get(self.hosts.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut running: Vec<(String, DateTime<Utc>)> = got
            .kvs()
            .iter()
            .filter_map(|kv| {
                let rec = serde_json::from_slice::<HostRecord>(kv.value()).ok()?;
                let key = String::from_utf8_lossy(kv.key());
                let id = key.strip_prefix(self.hosts.as_str())?.to_string();
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

impl Deployer {
    /// Write the records this host owes the fleet store (at start, after each deploy and
    /// rollback, and at each check until etcd takes them).
    pub(super) async fn settle_fleet(&self) {
        let Some(store) = &self.fleet_records else { return };
        match store.flush().await {
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
    pub(super) async fn record_live(&self, version: &str, since: DateTime<Utc>) {
        if let Some(store) = &self.fleet_records {
            store.owe_live(version, since);
            self.settle_fleet().await;
        }
    }

    /// Record in the fleet store that `version` failed here (written at the next settle).
    pub(super) fn record_bad(&self, version: &str, reason: &str) {
        if let Some(store) = &self.fleet_records {
            store.owe_bad(version, reason);
        }
    }

    /// With a fleet store, before a release the watcher found (cache key `key`) is deployed:
    /// why it waits (marked bad fleet-wide, the wave before has not run it long enough, or the
    /// store cannot be asked), or `None` when it may go ahead. A repair of the live release is
    /// never held back.
    pub(super) async fn fleet_gate(&self, version: &str, key: &str) -> Option<String> {
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
            Err(LockError::Refused(e) | LockError::Unreachable(e)) => (
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
    pub(super) async fn forget_fleet_bad(&self, version: &str) -> anyhow::Result<bool> {
        let Some(store) = &self.fleet_records else {
            return Ok(false);
        };
        store.forget_bad(version).await.map_err(|e| match e {
            LockError::Refused(e) | LockError::Unreachable(e) => {
                anyhow::anyhow!("clearing the fleet-wide mark in {}: {e}", store.described)
            }
        })
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
