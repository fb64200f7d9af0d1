//! Slack: `slack://<channel>` through `chat.postMessage` with a bot token (one thread per deploy
//! with `thread=true`), and incoming webhooks spelled `slack+https://hooks.slack.com/…`.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use super::event::{Event, Note};
use super::{common, no_leftovers, parse_bool, query, retry, Common, Notifier};

/// The Slack Web API base URL unless `SLACK_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Footer and colour options shared by both Slack forms.
struct Look {
    title: Option<String>,
    link: Option<String>,
}

impl Look {
    fn take(q: &mut std::collections::HashMap<String, String>) -> Self {
        Self {
            title: q.remove("title").filter(|t| !t.is_empty()),
            link: q.remove("url").filter(|t| !t.is_empty()),
        }
    }

    fn payload(&self, note: &Note) -> Value {
        let footer = match (&self.title, &self.link) {
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
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let u = url::Url::parse(url).context("malformed URL")?;
        let channel = u
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('#')
            .to_string();
        if channel.is_empty() {
            bail!("no channel: write slack://<channel> (a name without '#', or a channel ID)");
        }
        if !u.path().is_empty() && u.path() != "/" {
            bail!(
                "unexpected path {:?}: the channel is the host part, slack://<channel>",
                u.path()
            );
        }
        let mut q = query(&u)?;
        let common = common(&mut q)?;
        let thread = q
            .remove("thread")
            .map(|v| parse_bool("thread", &v))
            .transpose()?
            .unwrap_or(false);
        let look = Look::take(&mut q);
        no_leftovers(&q, "title, url, thread, quiet, timeout")?;
        let token = super::secret("slack-token", "SLACK_TOKEN").ok_or_else(|| {
            anyhow!("no bot token: set SLACK_TOKEN or pass the systemd credential slack-token")
        })?;
        let api = std::env::var("SLACK_API_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.into());
        Ok(Self {
            channel,
            token,
            api: api.trim_end_matches('/').to_string(),
            thread,
            look,
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
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("slack+").unwrap_or(url);
        let mut u = url::Url::parse(rest).context("malformed URL")?;
        if u.host_str().is_none_or(str::is_empty) {
            bail!("no host: write slack+https://hooks.slack.com/services/…");
        }
        let mut q = query(&u)?;
        let common = common(&mut q)?;
        let look = Look::take(&mut q);
        no_leftovers(&q, "title, url, quiet, timeout")?;
        u.set_query(None);
        Ok(Self {
            target: u,
            look,
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
