//! Deploy windows as the deployer applies them: outside every `[[window]]` a release the watcher
//! finds waits (like `min-age`, through [`Status::waiting`](super::Status)), and an operator's
//! `dewy deploy` is refused unless it names the `window` override.

use chrono::{DateTime, Utc};

use super::{DeployResult, Deployer, Overrides};
use crate::config::window::{state_at, WindowState};
use crate::logging::MSG_SKIP;

/// An instant as the window texts write it (`2026-01-05T22:00:00Z`).
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Deployer {
    /// Where the windows stand now, for `dewy status` (`None` without windows).
    pub fn window_state(&self) -> Option<String> {
        Some(match state_at(&self.settings.window, Utc::now())? {
            WindowState::Open { until } => format!("open until {}", stamp(until)),
            WindowState::Closed { opens } => format!("closed until {}", stamp(opens)),
        })
    }

    /// With deploy windows, all closed now: why the release `version` (cache key `key`) waits.
    /// The live release deployed again (a repair) does not wait.
    pub(super) fn outside_window(&self, version: &str, key: &str) -> Option<String> {
        if self.settings.window.is_empty() || self.repairs_live(key) {
            return None;
        }
        let WindowState::Closed { opens } = state_at(&self.settings.window, Utc::now())? else {
            return None;
        };
        let text = format!("waiting for a deploy window until {}", stamp(opens));
        if self.set_waiting(Some(text.clone())) {
            tracing::info!(message_id = MSG_SKIP, dewy_version = %version, reason = %text, "Deploy waits for a deploy window");
        }
        Some(text)
    }

    /// An operator's deploy while every window is closed, without the `window` override:
    /// refused.
    pub(super) fn refused_by_window(&self, version: &str, overrides: Overrides) -> Option<DeployResult> {
        if overrides.window {
            return None;
        }
        let WindowState::Closed { opens } = state_at(&self.settings.window, Utc::now())? else {
            return None;
        };
        let error = format!(
            "every deploy window of {} is closed until {}; `dewy deploy {version} --ignore-window` deploys now",
            self.settings.app,
            stamp(opens)
        );
        tracing::warn!(dewy_version = %version, reason = %error, "Operator deploy refused: outside the deploy windows");
        Some(DeployResult::Failed {
            version: version.to_string(),
            error,
        })
    }
}
