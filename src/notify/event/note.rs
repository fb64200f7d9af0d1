//! A [`Note`] (an event with its app, host and time) and the JSON body a webhook notifier posts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Event;

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
