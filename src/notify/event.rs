//! What dewy reports: the [`Event`]s of a run, their message text and the webhook JSON body.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

mod message;
mod note;
#[cfg(test)]
mod tests;

pub use message::truncate_output;
pub use note::{Note, WebhookBody};

/// Where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Asking the registry for the newest release.
    Check,
    /// Downloading, extracting or switching a release.
    Deploy,
    /// Going back to the previous release.
    Rollback,
    /// The running app (server mode) exited on its own.
    Run,
}

/// Why a new generation of the app is started (reported with `ServerRestarted` and counted in
/// `dewy_app_restarts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// A deploy (or the repair of the live release).
    Deploy,
    /// The previous generation exited on its own.
    Crash,
    /// `dewy restart` or SIGUSR1.
    Operator,
    /// A rollback to the previous release.
    Rollback,
}

impl Restart {
    pub const ALL: [Restart; 4] = [
        Restart::Deploy,
        Restart::Crash,
        Restart::Operator,
        Restart::Rollback,
    ];

    /// Position in [`Restart::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Deploy => "deploy",
            Restart::Crash => "crash",
            Restart::Operator => "operator",
            Restart::Rollback => "rollback",
        }
    }
}

/// One thing worth telling the operators.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// dewy started watching (`command` is assets, server or container).
    Started { command: String },
    /// A newer release is going to be deployed.
    ReleaseFound {
        version: String,
        previous: Option<String>,
    },
    /// The artifact is in the cache.
    Downloaded { version: String },
    /// Extraction and the switch begin.
    DeployStarted {
        version: String,
        previous: Option<String>,
    },
    /// A before- or after-deploy hook finished.
    Hook {
        version: String,
        /// `before` or `after`.
        kind: String,
        command: String,
        success: bool,
        exit_code: Option<i32>,
        duration: Duration,
        output: String,
    },
    /// The release is live.
    Deployed {
        version: String,
        previous: Option<String>,
        duration: Duration,
        command: String,
    },
    /// The previous release is live again.
    RolledBack {
        from: String,
        to: String,
        reason: String,
    },
    /// Something failed; `next_step` tells the operator what to do.
    Failed {
        stage: Stage,
        version: Option<String>,
        error: String,
        next_step: String,
        command: String,
    },
    /// A check went through (never sent itself: it ends a run of failures and feeds metrics).
    CheckSucceeded { version: String },
    /// Failures ended (made by the dispatcher).
    Recovered { failures: u64, last_error: String },
    /// The same failure kept happening; only the first was sent (made by the dispatcher).
    Digest {
        repeats: u64,
        since: DateTime<Utc>,
        error: String,
    },
    /// Server mode: the first generation of the app is serving.
    ServerStarted { version: String },
    /// Server mode: a new generation of the app took over from the previous one; `reason` is
    /// deploy, crash, operator or rollback.
    ServerRestarted { version: String, reason: Restart },
    /// Container mode: the image of a release is pulled.
    ImagePulled { version: String, image: String },
    /// An operator paused the app's deploys (`dewy pause`); `reason` is "" when none was given.
    Paused { reason: String },
    /// An operator resumed the app's deploys (`dewy resume`); `since` is when the pause began.
    Resumed { since: DateTime<Utc> },
    /// dewy stops.
    Stopped { signal: String },
}

impl Event {
    /// The event's name in the webhook body and the docs.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::ReleaseFound { .. } => "release-found",
            Event::Downloaded { .. } => "downloaded",
            Event::DeployStarted { .. } => "deploy-started",
            Event::Hook { .. } => "hook",
            Event::Deployed { .. } => "deployed",
            Event::RolledBack { .. } => "rolled-back",
            Event::Failed { .. } => "failed",
            Event::CheckSucceeded { .. } => "check-succeeded",
            Event::Recovered { .. } => "recovered",
            Event::Digest { .. } => "failure-digest",
            Event::ServerStarted { .. } => "server-started",
            Event::ServerRestarted { .. } => "server-restarted",
            Event::ImagePulled { .. } => "image-pulled",
            Event::Paused { .. } => "paused",
            Event::Resumed { .. } => "resumed",
            Event::Stopped { .. } => "stopped",
        }
    }

    /// The version a deploy event is about (used to thread one deploy's messages).
    pub fn deploy_version(&self) -> Option<&str> {
        match self {
            Event::ReleaseFound { version, .. }
            | Event::Downloaded { version }
            | Event::ImagePulled { version, .. }
            | Event::DeployStarted { version, .. }
            | Event::Hook { version, .. }
            | Event::Deployed { version, .. } => Some(version),
            Event::Failed {
                stage: Stage::Deploy,
                version,
                ..
            } => version.as_deref(),
            _ => None,
        }
    }

    /// True for the last message of a deploy (its thread ends).
    pub fn ends_deploy(&self) -> bool {
        matches!(
            self,
            Event::Deployed { .. }
                | Event::Failed {
                    stage: Stage::Deploy,
                    ..
                }
        )
    }

    /// True for what `quiet=true` still sends: failures and recoveries.
    pub fn is_alert(&self) -> bool {
        matches!(
            self,
            Event::Failed { .. }
                | Event::Recovered { .. }
                | Event::Digest { .. }
                | Event::Hook { success: false, .. }
        )
    }

    /// True for errors (Slack colours them red and broadcasts them out of a thread).
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            Event::Failed { .. } | Event::Digest { .. } | Event::Hook { success: false, .. }
        )
    }
}
