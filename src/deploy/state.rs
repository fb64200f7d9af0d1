//! The deployer's persistent state: what is live, the previous release, deploy history, bad
//! versions and an in-flight deploy marker. Written atomically (temp file, fsync, rename, fsync dir).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many history entries are kept.
pub const HISTORY_LIMIT: usize = 200;

/// A release that is (or was) live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    pub version: String,
    pub cache_key: String,
    /// Where the artifact came from (a re-uploaded artifact gets a new URL on GitHub).
    #[serde(default)]
    pub artifact_url: String,
    /// Directory name under `releases/`.
    pub release: String,
    pub sha256: Option<String>,
    pub deployed_at: DateTime<Utc>,
}

/// How a deploy attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Deployed,
    Failed,
    RolledBack,
    /// A deploy interrupted by a crash and completed or undone when the deployer started again.
    Recovered,
}

/// One line of `dewy history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub from: Option<String>,
    pub to: String,
    pub result: Outcome,
    pub duration_ms: u64,
    /// Why the deploy ran (`new release`, `operator`, `rollback`…) or why it failed.
    pub reason: String,
}

/// A version whose deploy failed; not retried until its artifact changes or an operator clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadVersion {
    pub version: String,
    pub artifact_url: String,
    pub sha256: Option<String>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A deploy in progress, recorded before anything is written to `releases/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub version: String,
    pub cache_key: String,
    #[serde(default)]
    pub artifact_url: String,
    pub sha256: Option<String>,
    /// The committed release directory, once it exists.
    pub release: Option<String>,
    pub started_at: DateTime<Utc>,
    pub reason: String,
}

/// An operator's pause (`dewy pause`): no release found by the watcher is deployed until
/// `dewy resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Why, as the operator gave it ("" when no reason was given).
    #[serde(default)]
    pub reason: String,
    pub since: DateTime<Utc>,
}

impl Pause {
    /// `paused since 2026-01-15T10:30:00Z: reason`, as status and skip reasons say it.
    pub fn describe(&self) -> String {
        format!("paused {}", self.detail())
    }

    /// `since 2026-01-15T10:30:00Z: reason` (the `paused:` line of `dewy status`).
    pub fn detail(&self) -> String {
        let since = self.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self.reason.is_empty() {
            true => format!("since {since}"),
            false => format!("since {since}: {}", self.reason),
        }
    }
}

/// Everything the deployer must remember across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub live: Option<Live>,
    pub previous: Option<Live>,
    #[serde(default)]
    pub history: VecDeque<HistoryEntry>,
    #[serde(default)]
    pub bad: BTreeMap<String, BadVersion>,
    pub pending: Option<Pending>,
    /// When recent versions were first offered: the age `min-age` counts for a source that
    /// gives no publication time (images). At most [`FIRST_SEEN_LIMIT`] entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub first_seen: BTreeMap<String, DateTime<Utc>>,
    /// Set by `dewy pause`, cleared by `dewy resume` (absent from state files written before
    /// pausing existed, and while not paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// Fleet-wide bad marks (`fleet-store`) not yet written because the store could not be
    /// reached: kept here so that a restart does not lose them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fleet_bad_owed: Vec<super::fleet_store::FleetBad>,
}

/// How many first-seen times are kept.
pub const FIRST_SEEN_LIMIT: usize = 64;

impl State {
    /// When `version` was first offered; recorded as `now` when it was not (true then: the state
    /// changed). The oldest entries go past [`FIRST_SEEN_LIMIT`].
    pub fn first_seen(&mut self, version: &str, now: DateTime<Utc>) -> (DateTime<Utc>, bool) {
        if let Some(t) = self.first_seen.get(version) {
            return (*t, false);
        }
        self.first_seen.insert(version.to_string(), now);
        while self.first_seen.len() > FIRST_SEEN_LIMIT {
            let oldest = self
                .first_seen
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(v, _)| v.clone());
            match oldest {
                Some(v) => self.first_seen.remove(&v),
                None => break,
            };
        }
        (now, true)
    }

    /// Append to the history, dropping the oldest entries past [`HISTORY_LIMIT`].
    pub fn record(&mut self, entry: HistoryEntry) {
        self.history.push_back(entry);
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_front();
        }
    }
}

/// Reads and writes `state.json` in the state directory.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Load the state; a missing file is an empty state, a corrupt one is an error (never
    /// silently discarded: it holds the bad-version ledger).
    pub fn load(&self) -> anyhow::Result<State> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {} (move it away to start afresh)", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    /// Replace the state file atomically.
    pub fn save(&self, state: &State) -> anyhow::Result<()> {
        let dir = self.path.parent().context("state path has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".state.json.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write()
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_history_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let file = StateFile::new(tmp.path());
        assert_eq!(file.load().unwrap(), State::default());
        let mut s = State::default();
        for i in 0..HISTORY_LIMIT + 5 {
            s.record(HistoryEntry {
                at: Utc::now(),
                from: None,
                to: format!("v{i}"),
                result: Outcome::Deployed,
                duration_ms: 1,
                reason: "test".into(),
            });
        }
        file.save(&s).unwrap();
        let back = file.load().unwrap();
        assert_eq!(back.history.len(), HISTORY_LIMIT);
        assert_eq!(back.history.front().unwrap().to, "v5");
        std::fs::write(file.path(), b"{not json").unwrap();
        assert!(file.load().is_err());
    }

    #[test]
    fn a_pause_survives_a_save_and_older_files_load_unpaused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = StateFile::new(tmp.path());
        // A state file as written before pausing existed.
        std::fs::write(
            file.path(),
            br#"{"live":null,"previous":null,"history":[],"bad":{},"pending":null}"#,
        )
        .unwrap();
        let mut s = file.load().unwrap();
        assert_eq!(s.paused, None);
        let text = String::from_utf8(serde_json::to_vec(&s).unwrap()).unwrap();
        assert!(!text.contains("paused"), "not written while not paused: {text}");
        let since = DateTime::parse_from_rfc3339("2026-01-15T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        s.paused = Some(Pause {
            reason: "incident 42".into(),
            since,
        });
        file.save(&s).unwrap();
        let back = file.load().unwrap();
        assert_eq!(back.paused, s.paused);
        assert_eq!(
            back.paused.unwrap().describe(),
            "paused since 2026-01-15T10:30:00Z: incident 42"
        );
    }
}
