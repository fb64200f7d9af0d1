//! Notifications: deploy events sent to Slack, mail and webhooks (see docs/operations.md).
//!
//! The pipeline emits [`Event`]s into an [`EventSink`]; the [`Dispatcher`] queues them per
//! notifier so a notifier that is slow or down never blocks or fails a deploy.

mod dispatch;
pub mod event;
mod mail;
pub mod retry;
mod slack;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

pub use dispatch::{hostname, Dispatcher, NotifierCounts, DEFAULT_SEND_TIMEOUT, QUEUE_CAPACITY};
pub use event::{Event, Note, Stage};

/// Where the pipeline reports events.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
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

/// Options every notifier URL accepts.
#[derive(Debug, Clone)]
pub struct Common {
    pub quiet: bool,
    pub timeout: Duration,
}

/// Build the notifiers of the given URLs; an unknown scheme or a malformed URL is an error
/// naming the URL (secrets in it are not repeated).
pub fn build(urls: &[String]) -> anyhow::Result<Vec<Arc<dyn Notifier>>> {
    urls.iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| build_one(u.trim()).with_context(|| format!("notifier {}", redact(u))))
        .collect()
}

fn build_one(url: &str) -> anyhow::Result<Arc<dyn Notifier>> {
    let (scheme, _) = url.split_once("://").ok_or_else(|| {
        anyhow!("not a URL (expected slack://, slack+https://, mail://, smtp:// or webhook+https://)")
    })?;
    Ok(match scheme {
        "slack" => Arc::new(slack::Slack::from_url(url)?),
        "slack+https" => Arc::new(slack::SlackWebhook::from_url(url)?),
        "mail" | "smtp" => Arc::new(mail::Mail::from_url(url)?),
        "webhook+https" | "webhook+http" => Arc::new(webhook::Webhook::from_url(url)?),
        other => bail!(
            "unknown scheme {other:?} (expected slack, slack+https, mail, smtp, webhook+https or webhook+http)"
        ),
    })
}

/// Take the query of `url` apart; repeated keys are an error.
pub(crate) fn query(url: &url::Url) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in url.query_pairs() {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            bail!("query key {k:?} given twice");
        }
    }
    Ok(out)
}

/// Remove `quiet` and `timeout` from the query map.
pub(crate) fn common(q: &mut HashMap<String, String>) -> anyhow::Result<Common> {
    let quiet = match q.remove("quiet") {
        None => false,
        Some(v) => parse_bool("quiet", &v)?,
    };
    let timeout = match q.remove("timeout") {
        None => DEFAULT_SEND_TIMEOUT,
        Some(v) => crate::units::parse_duration(&v).context("timeout")?,
    };
    let timeout = crate::config::ranges::NOTIFIER_TIMEOUT
        .check(timeout)
        .map_err(|e| anyhow!(e))?;
    Ok(Common { quiet, timeout })
}

pub(crate) fn parse_bool(key: &str, v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => bail!("{key}={v:?} is not true or false"),
    }
}

/// Refuse query keys nobody took.
pub(crate) fn no_leftovers(q: &HashMap<String, String>, known: &str) -> anyhow::Result<()> {
    if let Some(k) = q.keys().next() {
        bail!("unknown query key {k:?} (known: {known})");
    }
    Ok(())
}

/// A URL for logs and errors: the password and the query values are replaced.
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.split('?').next().unwrap_or(url).to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| format!("{k}=…")).collect();
        u.set_query(Some(&keys.join("&")));
    }
    if u.scheme().contains('+') {
        // Webhook paths often hold the secret: keep only where it goes.
        let host = u.host_str().unwrap_or_default();
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        return format!("{}://{host}{port}/…", u.scheme());
    }
    u.to_string()
}

/// A secret from the systemd credential `cred`, else the environment variable `var`.
pub(crate) fn secret(cred: &str, var: &str) -> Option<String> {
    crate::systemd::credential(cred).or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_malformed_urls_are_refused() {
        let e = format!("{:#}", build(&["discord://x".into()]).err().unwrap());
        assert!(e.contains("discord://x") && e.contains("unknown scheme"), "{e}");
        let e = format!(
            "{:#}",
            build(&["webhook+https://h/x?quiet=maybe".into()]).err().unwrap()
        );
        assert!(e.contains("quiet"), "{e}");
        let e = format!(
            "{:#}",
            build(&["mail://smtp.example.com/?from=a@b".into()])
                .err()
                .unwrap()
        );
        assert!(e.contains("recipient"), "{e}");
        let e = format!(
            "{:#}",
            build(&["mail://smtp.example.com/ops@example.com?colour=red".into()])
                .err()
                .unwrap()
        );
        assert!(e.contains("colour"), "{e}");
        assert!(build(&["webhook+http://127.0.0.1:9/hook?quiet=true&timeout=2s".into()]).is_ok());
    }

    #[test]
    fn slack_urls() {
        // (The bot-token form is exercised end to end in tests/notify.rs.)
        let e = format!(
            "{:#}",
            build(&["slack://deploys?colour=red".into()]).err().unwrap()
        );
        assert!(e.contains("colour"), "{e}");
        let e = format!("{:#}", build(&["slack://?thread=true".into()]).err().unwrap());
        assert!(e.contains("no channel"), "{e}");
        let hook = build(&["slack+https://hooks.slack.com/services/T0/B0/secret?quiet=true".into()]).unwrap();
        assert!(
            hook[0].quiet() && !hook[0].name().contains("secret"),
            "{}",
            hook[0].name()
        );
    }

    #[test]
    fn redaction_hides_secrets() {
        let r = redact("mail://smtp.example.com/ops@example.com?username=u&password=hunter2");
        assert!(!r.contains("hunter2"), "{r}");
        let r = redact("slack+https://hooks.slack.com/services/T0/B0/secret");
        assert_eq!(r, "slack+https://hooks.slack.com/…");
        let r = redact("webhook+http://127.0.0.1:8080/hooks/secret?x=1");
        assert_eq!(r, "webhook+http://127.0.0.1:8080/…");
    }
}
