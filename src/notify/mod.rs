//! Notifications: deploy events sent to Slack, mail and webhooks (see docs/operations.md).
//!
//! The pipeline emits [`Event`]s into an [`EventSink`]; the [`Dispatcher`] queues them per
//! notifier so a notifier that is slow or down never blocks or fails a deploy.

mod dispatch;
pub mod event;
mod mail;
pub mod retry;
pub mod shipping;
mod slack;
mod step;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use crate::config::notifier::redact;
use crate::config::notifier::{NotifierTarget, Target};
pub use dispatch::{Dispatcher, NotifierCounts, QUEUE_CAPACITY};
pub use event::{Event, Note, Stage};
pub use step::Step;

/// Where the pipeline reports events.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);

    /// A deploy step finished (for the sinks that trace deploys; the others ignore it).
    fn step(&self, _step: &Step) {}
}

/// Several sinks at once (the notifiers and the metrics).
#[derive(Default, Clone)]
pub struct Sinks(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Sinks {
    fn emit(&self, event: Event) {
        for s in &self.0 {
            s.emit(event.clone());
        }
    }

    fn step(&self, step: &Step) {
        for s in &self.0 {
            s.step(step);
        }
    }
}

/// A way to deliver a message.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// The notifier as shown in logs (no secrets).
    fn name(&self) -> String;
    /// `quiet=true`: only failures and recoveries are sent.
    fn quiet(&self) -> bool;
    /// The longest one send may take.
    fn timeout(&self) -> Duration;
    async fn send(&self, note: &Note) -> anyhow::Result<()>;
}

/// Build the notifiers of the configured targets (their HTTP clients and TLS settings).
pub fn build(targets: &[NotifierTarget]) -> anyhow::Result<Vec<Arc<dyn Notifier>>> {
    targets
        .iter()
        .map(|t| build_one(t).with_context(|| format!("notifier {}", redact(&t.url))))
        .collect()
}

fn build_one(t: &NotifierTarget) -> anyhow::Result<Arc<dyn Notifier>> {
    let common = t.common.clone();
    Ok(match &t.target {
        Target::Slack {
            channel,
            thread,
            look,
            token,
            api,
        } => Arc::new(slack::Slack::new(
            channel.clone(),
            *thread,
            look.clone(),
            token.clone(),
            api.clone(),
            common,
        )?),
        Target::SlackWebhook { target, look } => {
            Arc::new(slack::SlackWebhook::new(target.clone(), look.clone(), common)?)
        }
        Target::Mail(m) => Arc::new(mail::Mail::new(m, common)?),
        Target::Webhook { target } => Arc::new(webhook::Webhook::new(target.clone(), common)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_targets_build_notifiers_that_hide_their_secrets() {
        let targets = crate::config::notifier::parse_all(&[
            "slack+https://hooks.slack.com/services/T0/B0/secret?quiet=true".into(),
            "webhook+http://127.0.0.1:9/hook/secret".into(),
            "mail://relay.example.com/ops@example.com?from=dewy@example.com&tls=false".into(),
        ])
        .expect("targets");
        let built = build(&targets).expect("notifiers");
        assert_eq!(built.len(), 3);
        assert!(
            built[0].quiet() && !built[0].name().contains("secret"),
            "{}",
            built[0].name()
        );
        assert!(!built[1].name().contains("secret"), "{}", built[1].name());
        assert_eq!(built[2].name(), "mail://relay.example.com:25");
    }
}
