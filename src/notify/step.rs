//! One finished step of a deploy (download, verify, extract, a hook, switch, restart…), as the
//! deploy pipeline reports it to the sinks that trace deploys.

use std::time::SystemTime;

/// A step of the deploy of `version`, from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub version: String,
    /// `download`, `verify`, `pull`, `extract`, `hook.before`, `switch`, `restart`, `rollout`,
    /// `hook.after` or `clean-up`.
    pub name: &'static str,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Why the step failed; `None` when it succeeded.
    pub error: Option<String>,
    /// What else is known (a hook's command and exit code).
    pub attributes: Vec<(&'static str, String)>,
}
