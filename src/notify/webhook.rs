//! `webhook+https://…` and `webhook+http://…`: POST the event as JSON (body in docs/operations.md).

use std::time::Duration;

use anyhow::{bail, Context};

use super::event::Note;
use super::{common, query, retry, Common, Notifier};

/// A generic JSON webhook.
pub struct Webhook {
    target: url::Url,
    common: Common,
    client: reqwest::Client,
}

impl Webhook {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("webhook+").unwrap_or(url);
        let (target, common) = split_target(rest)?;
        Ok(Self {
            target,
            client: client(common.timeout)?,
            common,
        })
    }
}

/// Parse an http(s) target, taking `quiet` and `timeout` out of its query (other keys stay).
pub(crate) fn split_target(rest: &str) -> anyhow::Result<(url::Url, Common)> {
    let mut target = url::Url::parse(rest).context("malformed URL")?;
    if !matches!(target.scheme(), "http" | "https") || target.host_str().is_none_or(str::is_empty) {
        bail!("expected an http or https URL with a host");
    }
    let mut q = query(&target)?;
    let common = common(&mut q)?;
    let kept: Vec<(String, String)> = target
        .query_pairs()
        .filter(|(k, _)| q.contains_key(k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        target.set_query(None);
    } else {
        target.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((target, common))
}

/// An HTTP client; the whole send is bounded by the dispatcher's timeout, so only connecting
/// is bounded here.
pub(crate) fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .user_agent(concat!("dewy/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("creating the HTTP client")
}

#[async_trait::async_trait]
impl Notifier for Webhook {
    fn name(&self) -> String {
        super::redact(&format!("webhook+{}", self.target))
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
            .json(&note.webhook_body())
            .send()
            .await
            .map_err(|e| retry::http_error(e, "posting the webhook"))?;
        retry::http_status(&resp, "webhook")
    }
}
