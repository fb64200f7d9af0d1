//! Pause and resume (`dewy pause`, `dewy resume`): while paused, a release the watcher finds is
//! held back; an operator's `dewy deploy` is refused unless it overrides the pause. The pause is
//! kept in the state file, so it survives restarts.

use chrono::Utc;

use super::state::Pause;
use super::{DeployResult, Deployer, Overrides};
use crate::logging::MSG_SKIP;
use crate::notify::Event;

/// Most characters of a pause's reason.
pub const REASON_LIMIT: usize = 500;

/// A reason given to `dewy pause`, checked: at most [`REASON_LIMIT`] characters, no control
/// characters (it is shown in terminals and notifications), surrounding blanks trimmed.
pub fn check_reason(reason: &str) -> anyhow::Result<String> {
    let reason = reason.trim();
    if reason.chars().count() > REASON_LIMIT {
        anyhow::bail!("the pause reason is longer than {REASON_LIMIT} characters");
    }
    if reason.chars().any(char::is_control) {
        anyhow::bail!("the pause reason holds a control character (a newline, an escape…)");
    }
    Ok(reason.to_string())
}

impl Deployer {
    /// Pause the app's deploys with `reason`. Returns the pause in force and whether this call
    /// made it (false: the app was paused already; that pause, its reason and time are kept).
    /// A deploy already running finishes.
    pub fn pause(&self, reason: &str) -> anyhow::Result<(Pause, bool)> {
        let reason = check_reason(reason)?;
        let mut st = self.lock_state();
        if let Some(p) = &st.paused {
            return Ok((p.clone(), false));
        }
        let pause = Pause {
            reason,
            since: Utc::now(),
        };
        st.paused = Some(pause.clone());
        if let Err(e) = self.state_file.save(&st) {
            st.paused = None;
            return Err(e.context("recording the pause"));
        }
        drop(st);
        tracing::warn!(reason = %pause.reason, "Deploys paused by an operator");
        self.emit(Event::Paused {
            reason: pause.reason.clone(),
        });
        Ok((pause, true))
    }

    /// End the pause; returns it (`None`: the app was not paused). The next check deploys a
    /// release that was held back.
    pub fn resume(&self) -> anyhow::Result<Option<Pause>> {
        let mut st = self.lock_state();
        let Some(pause) = st.paused.take() else {
            return Ok(None);
        };
        if let Err(e) = self.state_file.save(&st) {
            st.paused = Some(pause);
            return Err(e.context("recording the end of the pause"));
        }
        drop(st);
        self.set_waiting(None);
        tracing::info!(paused_since = %pause.since, "Deploys resumed by an operator");
        self.emit(Event::Resumed { since: pause.since });
        Ok(Some(pause))
    }

    /// The pause in force, if any.
    pub fn paused(&self) -> Option<Pause> {
        self.lock_state().paused.clone()
    }

    /// While paused: why the release `version` (cache key `key`) found by the watcher waits.
    /// The live release deployed again (a repair, when it is not running) is not held back.
    pub(super) fn held_by_pause(&self, version: &str, key: &str) -> Option<String> {
        let pause = self.paused().filter(|_| !self.repairs_live(key))?;
        let text = format!(
            "{version} held back: {}; `dewy resume {}` lets it deploy",
            pause.describe(),
            self.settings.app
        );
        if self.set_waiting(Some(text.clone())) {
            tracing::info!(message_id = MSG_SKIP, dewy_version = %version, reason = %text, "Deploy waits: paused");
        }
        Some(text)
    }

    /// An operator's deploy while paused, without the `pause` override: refused.
    pub(super) fn refused_by_pause(&self, version: &str, overrides: Overrides) -> Option<DeployResult> {
        if overrides.pause {
            return None;
        }
        let pause = self.paused()?;
        let error = format!(
            "{} is {}; `dewy resume {}` first, or `dewy deploy {version} --ignore-pause`",
            self.settings.app,
            pause.describe(),
            self.settings.app
        );
        tracing::warn!(dewy_version = %version, reason = %error, "Operator deploy refused: paused");
        Some(DeployResult::Failed {
            version: version.to_string(),
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_checked() {
        assert_eq!(check_reason("  db migration  ").unwrap(), "db migration");
        assert_eq!(check_reason("").unwrap(), "");
        assert!(check_reason("a\nb").is_err());
        assert!(check_reason("\u{1b}[2J").is_err());
        assert!(check_reason(&"x".repeat(REASON_LIMIT)).is_ok());
        let err = check_reason(&"x".repeat(REASON_LIMIT + 1)).unwrap_err();
        assert!(err.to_string().contains("500"), "{err}");
    }
}
