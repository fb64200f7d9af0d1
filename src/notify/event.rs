//! What dewy reports: the [`Event`]s of a run, their message text and the webhook JSON body.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::units::format_duration;

/// Most lines and characters of hook output put in a message.
const OUTPUT_LINES: usize = 50;
const OUTPUT_CHARS: usize = 2000;

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

    /// The message text, as every notifier sends it.
    pub fn message(&self) -> String {
        match self {
            Event::Started { command } => format!(
                "Automatic shipping started by Dewy (v{}: {command})",
                env!("CARGO_PKG_VERSION")
            ),
            Event::ReleaseFound { version, previous } => match previous {
                Some(p) => format!("New release {version} found ({p} is live)"),
                None => format!("New release {version} found"),
            },
            Event::Downloaded { version } => format!("Downloaded artifact for {version}"),
            Event::DeployStarted { version, previous } => match previous {
                Some(p) => format!("Deploying {version} (replacing {p})"),
                None => format!("Deploying {version}"),
            },
            Event::Hook {
                kind,
                command,
                success,
                exit_code,
                duration,
                output,
                ..
            } => {
                let hook = if kind == "before" {
                    "Before deploy hook"
                } else {
                    "After deploy hook"
                };
                let took = format_duration(round_ms(*duration));
                let mut m = if *success {
                    format!("{hook} succeeded in {took}: `{command}`")
                } else {
                    let code = exit_code.map_or("none".to_string(), |c| c.to_string());
                    format!("{hook} failed (exit code {code}) after {took}: `{command}`")
                };
                if !output.is_empty() {
                    m.push_str("\n```\n");
                    m.push_str(&truncate_output(output));
                    m.push_str("\n```");
                }
                m
            }
            Event::Deployed { version, command, .. } if command == "container" => {
                format!("Container deployed successfully for {version}")
            }
            Event::Deployed {
                version,
                previous,
                duration,
                ..
            } => {
                let took = format_duration(round_ms(*duration));
                match previous {
                    Some(p) => format!("Deployed {version} in {took} (was {p})"),
                    None => format!("Deployed {version} in {took}"),
                }
            }
            Event::RolledBack { from, to, reason } => {
                format!("Rolled back from {from} to {to}: {reason}; {from} is marked bad")
            }
            Event::Failed {
                stage,
                version,
                error,
                next_step,
                ..
            } => {
                let what = match (stage, version) {
                    (Stage::Check, _) => "Registry check failed".to_string(),
                    (Stage::Deploy, Some(v)) => format!("Deploy of {v} failed"),
                    (Stage::Deploy, None) => "Deploy failed".to_string(),
                    (Stage::Rollback, _) => "Rollback failed".to_string(),
                    (Stage::Run, Some(v)) => format!("Server {v} stopped"),
                    (Stage::Run, None) => "Server stopped".to_string(),
                };
                format!("{what}: {error}\nNext step: {next_step}")
            }
            Event::CheckSucceeded { version } => format!("Checked the registry: {version} is the newest"),
            Event::Recovered { failures, last_error } => format!(
                "Recovered after {failures} failure{}; the last one was: {last_error}",
                if *failures == 1 { "" } else { "s" }
            ),
            Event::Digest {
                repeats,
                since,
                error,
            } => format!(
                "The same failure happened {repeats} more time{} since {} (not sent one by one): {error}",
                if *repeats == 1 { "" } else { "s" },
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Event::ServerStarted { version } => format!("Server started for {version}"),
            Event::ServerRestarted { version, reason } => match reason {
                Restart::Deploy => format!("Server restarted for {version}"),
                Restart::Crash => format!("Server restarted for {version} after it exited"),
                other => format!("Server restarted for {version} ({})", other.as_str()),
            },
            Event::ImagePulled { version, .. } => format!("Pulled image for {version}"),
            Event::Paused { reason } if reason.is_empty() => {
                "Deploys paused by an operator; new releases wait for `dewy resume`".to_string()
            }
            Event::Paused { reason } => {
                format!("Deploys paused by an operator: {reason}; new releases wait for `dewy resume`")
            }
            Event::Resumed { since } => format!(
                "Deploys resumed (paused since {})",
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Event::Stopped { signal } => format!("Stop receiving by {signal} signal"),
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    let ms = d.as_millis();
    if ms >= 1000 {
        Duration::from_secs(((ms + 500) / 1000) as u64)
    } else {
        Duration::from_millis(ms as u64)
    }
}

/// Keep the last [`OUTPUT_LINES`] lines and [`OUTPUT_CHARS`] characters, saying what was cut.
pub fn truncate_output(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let skip = lines.len().saturating_sub(OUTPUT_LINES);
    let mut out = lines[skip..].join("\n");
    let chars = out.chars().count();
    let mut cut_chars = 0;
    if chars > OUTPUT_CHARS {
        cut_chars = chars - OUTPUT_CHARS;
        out = out.chars().skip(cut_chars).collect();
    }
    if skip > 0 || cut_chars > 0 {
        out = format!("… ({skip} more lines, {cut_chars} more characters truncated)\n{out}");
    }
    out
}

/// An event ready to send: the event with where and when it happened.
#[derive(Debug, Clone)]
pub struct Note {
    pub event: Event,
    pub app: String,
    pub host: String,
    pub time: DateTime<Utc>,
}

/// The JSON body a `webhook+…` notifier posts (documented in docs/operations.md).
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    pub event: &'static str,
    pub app: &'a str,
    pub version: Option<&'a str>,
    pub previous_version: Option<&'a str>,
    pub result: Option<&'static str>,
    pub error: Option<&'a str>,
    pub duration_ms: Option<u64>,
    pub host: &'a str,
    pub time: String,
    pub message: String,
}

/// version, previous version, result, error and duration of an event.
type Fields<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'static str>,
    Option<&'a str>,
    Option<Duration>,
);

impl Note {
    /// The webhook body of this note.
    pub fn webhook_body(&self) -> WebhookBody<'_> {
        let (version, previous, result, error, duration): Fields<'_> = match &self.event {
            Event::ReleaseFound { version, previous } | Event::DeployStarted { version, previous } => {
                (Some(version), previous.as_deref(), None, None, None)
            }
            Event::Downloaded { version } | Event::CheckSucceeded { version } => {
                (Some(version), None, None, None, None)
            }
            Event::Hook {
                version,
                success,
                duration,
                ..
            } => (
                Some(version),
                None,
                Some(if *success { "success" } else { "failure" }),
                None,
                Some(*duration),
            ),
            Event::Deployed {
                version,
                previous,
                duration,
                ..
            } => (
                Some(version),
                previous.as_deref(),
                Some("deployed"),
                None,
                Some(*duration),
            ),
            Event::RolledBack { from, to, .. } => (Some(to), Some(from), Some("rolled-back"), None, None),
            Event::Failed { version, error, .. } => {
                (version.as_deref(), None, Some("failed"), Some(error), None)
            }
            Event::Recovered { last_error, .. } => (None, None, Some("recovered"), Some(last_error), None),
            Event::Digest { error, .. } => (None, None, Some("failed"), Some(error), None),
            Event::ServerStarted { version } | Event::ServerRestarted { version, .. } => {
                (Some(version), None, None, None, None)
            }
            Event::ImagePulled { version, .. } => (Some(version), None, None, None, None),
            Event::Started { .. } | Event::Stopped { .. } | Event::Paused { .. } | Event::Resumed { .. } => {
                (None, None, None, None, None)
            }
        };
        WebhookBody {
            event: self.event.kind(),
            app: &self.app,
            version,
            previous_version: previous,
            result,
            error,
            duration_ms: duration.map(|d| d.as_millis() as u64),
            host: &self.host,
            time: self.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            message: self.event.message(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_wording() {
        let e = Event::Downloaded {
            version: "v1.2.3".into(),
        };
        assert_eq!(e.message(), "Downloaded artifact for v1.2.3");
        let s = Event::Started {
            command: "assets".into(),
        };
        assert_eq!(
            s.message(),
            format!(
                "Automatic shipping started by Dewy (v{}: assets)",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn container_wording() {
        let pulled = Event::ImagePulled {
            version: "v1.2.3".into(),
            image: "ghcr.io/o/app:v1.2.3".into(),
        };
        assert_eq!(pulled.message(), "Pulled image for v1.2.3");
        assert_eq!(pulled.kind(), "image-pulled");
        assert_eq!(pulled.deploy_version(), Some("v1.2.3"));
        let deployed = Event::Deployed {
            version: "v1.2.3".into(),
            previous: Some("v1.2.2".into()),
            duration: Duration::from_secs(4),
            command: "container".into(),
        };
        assert_eq!(deployed.message(), "Container deployed successfully for v1.2.3");
    }

    #[test]
    fn pause_wording() {
        let p = Event::Paused {
            reason: "incident 42".into(),
        };
        assert_eq!(p.kind(), "paused");
        assert_eq!(
            p.message(),
            "Deploys paused by an operator: incident 42; new releases wait for `dewy resume`"
        );
        let bare = Event::Paused { reason: "".into() };
        assert_eq!(
            bare.message(),
            "Deploys paused by an operator; new releases wait for `dewy resume`"
        );
        let since = DateTime::parse_from_rfc3339("2026-01-15T10:30:45Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = Event::Resumed { since };
        assert_eq!(r.kind(), "resumed");
        assert_eq!(
            r.message(),
            "Deploys resumed (paused since 2026-01-15 10:30:45 UTC)"
        );
        assert!(!p.is_alert() && !r.is_alert() && p.deploy_version().is_none());
    }

    #[test]
    fn output_is_truncated_from_the_top() {
        let long: String = (0..60).map(|i| format!("line {i}\n")).collect();
        let t = truncate_output(&long);
        assert!(t.starts_with("… (10 more lines"), "{t}");
        assert!(t.ends_with("line 59"), "{t}");
    }
}
