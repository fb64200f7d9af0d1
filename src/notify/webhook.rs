//! `webhook+https://…` and `webhook+http://…`: POST the event as JSON (body in docs/operations.md).

use std::time::Duration;

use anyhow::Context;

use super::event::Note;
use super::{retry, Notifier};
use crate::config::notifier::Common;

/// A generic JSON webhook.
pub struct Webhook {
    target: url::Url,
    common: Common,
    client: reqwest::Client,
}

impl Webhook {
    pub fn new(target: url::Url, common: Common) -> anyhow::Result<Self> {
        Ok(Self {
            target,
            client: client(common.timeout)?,
            common,
        })
    }
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
