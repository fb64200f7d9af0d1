//! Slack: `slack://<channel>` through `chat.postMessage` with a bot token (one thread per deploy
//! with `thread=true`), and incoming webhooks spelled `slack+https://hooks.slack.com/…`.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::event::{Event, Note};
use super::{retry, Notifier};
use crate::config::notifier::{Common, Secret, SlackLook};

/// Footer and colour options shared by both Slack forms.
struct Look(SlackLook);

impl Look {
    fn payload(&self, note: &Note) -> Value {
        let SlackLook { title, link } = &self.0;
        let footer = match (title, link) {
            (Some(t), Some(u)) => format!("<{u}|{t}>/{}", note.host),
            (Some(t), None) => format!("{t}/{}", note.host),
            _ => note.host.clone(),
        };
        let color = if note.event.is_error() {
            "#dd0000"
        } else if matches!(
            note.event,
            Event::Deployed { .. } | Event::Recovered { .. } | Event::Hook { .. }
        ) {
            "#36a64f"
        } else {
            "#439fe0"
        };
        json!({
            "username": "Dewy",
            "text": note.event.message(),
            "attachments": [{
                "color": color,
                "footer": format!("{} · {footer}", note.app),
                "ts": note.time.timestamp(),
            }],
        })
    }
}

/// `slack://<channel>?title=…&url=…&thread=true` with a bot token.
pub struct Slack {
    channel: String,
    token: String,
    api: String,
    thread: bool,
    look: Look,
    common: Common,
    client: reqwest::Client,
    /// The deploy whose thread is open: (version, thread_ts).
    open: Mutex<Option<(String, String)>>,
}

impl Slack {
    pub fn new(
        channel: String,
        thread: bool,
        look: SlackLook,
        token: Secret,
        api: String,
        common: Common,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            channel,
            token: token.0,
            api,
            thread,
            look: Look(look),
            client: super::webhook::client(common.timeout)?,
            common,
            open: Mutex::new(None),
        })
    }

    async fn post(&self, body: &Value) -> anyhow::Result<Option<String>> {
        let resp = self
            .client
            .post(format!("{}/chat.postMessage", self.api))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| retry::http_error(e, "calling chat.postMessage"))?;
        retry::http_status(&resp, "chat.postMessage")?;
        let status = resp.status();
        let answer: Value = resp
            .json()
            .await
            .with_context(|| format!("reading Slack's answer ({status})"))?;
        if answer.get("ok").and_then(Value::as_bool) != Some(true) {
            let err = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error given");
            let message = format!("chat.postMessage failed: {err}");
            // Slack's own words for "not now": worth another try.
            if matches!(
                err,
                "ratelimited" | "service_unavailable" | "internal_error" | "fatal_error" | "request_timeout"
            ) {
                return Err(retry::transient(message, None));
            }
            bail!(message);
        }
        Ok(answer.get("ts").and_then(Value::as_str).map(str::to_string))
    }
}

#[async_trait::async_trait]
impl Notifier for Slack {
    fn name(&self) -> String {
        format!("slack://{}", self.channel)
    }
    fn quiet(&self) -> bool {
        self.common.quiet
    }
    fn timeout(&self) -> Duration {
        self.common.timeout
    }
    async fn send(&self, note: &Note) -> anyhow::Result<()> {
        let mut body = self.look.payload(note);
        body["channel"] = json!(self.channel);
        let version = note.event.deploy_version().map(str::to_string);
        let parent = match (&version, self.open.lock().ok().and_then(|o| o.clone())) {
            (Some(v), Some((open_v, ts))) if self.thread && *v == open_v => Some(ts),
            _ => None,
        };
        if let Some(ts) = &parent {
            body["thread_ts"] = json!(ts);
            if note.event.is_error() {
                body["reply_broadcast"] = json!(true);
            }
        }
        let result = self.post(&body).await;
        if self.thread {
            if let Ok(mut open) = self.open.lock() {
                if note.event.ends_deploy() {
                    *open = None;
                } else if let (Some(v), None, Ok(Some(ts))) = (&version, &parent, &result) {
                    *open = Some((v.clone(), ts.clone()));
                }
            }
        }
        result.map(|_| ())
    }
}

/// An incoming webhook: `slack+https://hooks.slack.com/services/…` (no threads).
pub struct SlackWebhook {
    target: url::Url,
    look: Look,
    common: Common,
    client: reqwest::Client,
}

impl SlackWebhook {
    pub fn new(target: url::Url, look: SlackLook, common: Common) -> anyhow::Result<Self> {
        Ok(Self {
            target,
            look: Look(look),
            client: super::webhook::client(common.timeout)?,
            common,
        })
    }
}

#[async_trait::async_trait]
impl Notifier for SlackWebhook {
    fn name(&self) -> String {
        super::redact(&format!("slack+{}", self.target))
    }
    fn quiet(&self) -> bool {
        self.common.quiet
    }
    fn timeout(&self) -> Duration {
        self.common.timeout
    }
    async fn send(&self, note: &Note) -> anyhow::Result<()> {
        let resp = self
            .client
            .post(self.target.clone())
            .json(&self.look.payload(note))
            .send()
            .await
            .map_err(|e| retry::http_error(e, "posting to the Slack webhook"))?;
        retry::http_status(&resp, "Slack webhook")
    }
}
