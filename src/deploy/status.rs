//! The deployer's snapshot for `dewy status` (sent over the bus as JSON) and its history.

use serde::Serialize;

use super::state::{self, HistoryEntry, Live};
use super::Deployer;

/// A snapshot of the deployer for `dewy status` (sent over the bus as JSON, read back by the CLI).
/// A field a daemon of another version does not send reads as empty.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Status {
    pub app: String,
    pub mode: String,
    pub registry: String,
    pub root: String,
    pub live: Option<Live>,
    pub previous: Option<Live>,
    pub activity: String,
    /// Server mode: a crash loop dewy restarts the app through instead of rolling back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_loop: Option<String>,
    /// Server mode: the process serving now (`pid 4242 (generation 3) serving`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
    /// `min-age`: the newest release waits (`waiting for cooldown until …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// `dewy pause`: releases the watcher finds are held back until `dewy resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<state::Pause>,
    /// With `[[window]]`s: `open until …` or `closed until …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub last: Option<HistoryEntry>,
    pub bad: Vec<state::BadVersion>,
    /// Container mode: the replicas in the proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::container::Replica>,
}

impl Deployer {
    /// A snapshot for `dewy status`.
    pub fn status(&self) -> Status {
        let st = self.lock_state();
        Status {
            app: self.settings.app.clone(),
            mode: self.settings.mode.to_string(),
            registry: self.settings.registry.clone(),
            root: self.settings.root.display().to_string(),
            live: st.live.clone(),
            previous: st.previous.clone(),
            activity: self.activity(),
            crash_loop: self.crash_loop(),
            serving: self.runtime.describe().serving,
            waiting: self.waiting.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            paused: st.paused.clone(),
            window: self.window_state(),
            last: st.history.back().cloned(),
            bad: st.bad.values().cloned().collect(),
            replicas: self.runtime.describe().replicas,
        }
    }

    /// The newest `limit` history entries, oldest first.
    pub fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        let st = self.lock_state();
        let skip = st.history.len().saturating_sub(limit);
        st.history.iter().skip(skip).cloned().collect()
    }
}
