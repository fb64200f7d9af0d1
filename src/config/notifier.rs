//! Notifier URLs (`slack://`, `slack+https://`, `mail://`/`smtp://`, `webhook+https://`) parsed
//! once into typed targets; the notification module builds its clients from these.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use lettre::message::Mailbox;

/// How long one send may take unless `timeout=` says otherwise.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A secret: kept out of `Debug` output and of `dewy config check`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Options every notifier URL accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// `quiet=true`: only failures and recoveries are sent.
    pub quiet: bool,
    /// The longest one send may take.
    pub timeout: Duration,
}

/// Footer options of both Slack forms (`title=`, `url=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlackLook {
    pub title: Option<String>,
    pub link: Option<String>,
}

/// How a mail relay connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailSecurity {
    /// STARTTLS, required (the default, port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all (`tls=false`), for a local relay.
    Plain,
}

/// Where and how a notification goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// `slack://<channel>` with a bot token through `chat.postMessage`.
    Slack {
        channel: String,
        thread: bool,
        look: SlackLook,
        token: Secret,
        /// The Web API base (`SLACK_API_URL`, else Slack's).
        api: String,
    },
    /// `slack+https://hooks.slack.com/…`: an incoming webhook.
    SlackWebhook { target: url::Url, look: SlackLook },
    /// `mail://<host>[:port]/<to>` (or `smtp://`).
    Mail(MailTarget),
    /// `webhook+https://…` or `webhook+http://…`: the event POSTed as JSON.
    Webhook { target: url::Url },
}

/// A `mail://` target: the relay, how to reach it, and the message's sender, recipients and
/// subject.
#[derive(Debug, Clone)]
pub struct MailTarget {
    pub host: String,
    pub port: u16,
    pub security: MailSecurity,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub subject: String,
    pub credentials: Option<(String, Secret)>,
    /// A private CA for the relay's certificate (`ca-file=`), as PEM, checked to parse.
    pub ca_pem: Option<Vec<u8>>,
}

/// One configured notifier. Its `Debug` shows the redacted URL only: webhook paths, query
/// values and passwords hold secrets.
#[derive(Clone)]
pub struct NotifierTarget {
    /// The URL as configured (shown only through [`redact`]).
    pub url: String,
    pub common: Common,
    pub target: Target,
}

impl std::fmt::Debug for NotifierTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierTarget")
            .field("url", &redact(&self.url))
            .field("common", &self.common)
            .finish_non_exhaustive()
    }
}

/// The Slack Web API base URL unless `SLACK_API_URL` says otherwise.
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";

/// Parse the notifier URLs (blank entries are skipped); an unknown scheme or a malformed URL is
/// an error naming the URL (secrets in it are not repeated).
pub fn parse_all(urls: &[String]) -> anyhow::Result<Vec<NotifierTarget>> {
    urls.iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .map(|u| parse(u).with_context(|| format!("notifier {}", redact(u))))
        .collect()
}

/// Parse one notifier URL.
pub fn parse(url: &str) -> anyhow::Result<NotifierTarget> {
    let (scheme, _) = url.split_once("://").ok_or_else(|| {
        anyhow!("not a URL (expected slack://, slack+https://, mail://, smtp:// or webhook+https://)")
    })?;
    let (common, target) = match scheme {
        "slack" => slack(url)?,
        "slack+https" => slack_webhook(url)?,
        "mail" | "smtp" => mail(url)?,
        "webhook+https" | "webhook+http" => {
            let (target, common) = split_target(url.strip_prefix("webhook+").unwrap_or(url))?;
            (common, Target::Webhook { target })
        }
        other => bail!(
            "unknown scheme {other:?} (expected slack, slack+https, mail, smtp, webhook+https or webhook+http)"
        ),
    };
    Ok(NotifierTarget {
        url: url.to_string(),
        common,
        target,
    })
}

fn slack(url: &str) -> anyhow::Result<(Common, Target)> {
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
    let look = take_look(&mut q);
    no_leftovers(&q, "title, url, thread, quiet, timeout")?;
    let token = secret("slack-token", "SLACK_TOKEN")
        .ok_or_else(|| anyhow!("no bot token: set SLACK_TOKEN or pass the systemd credential slack-token"))?;
    let api = std::env::var("SLACK_API_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SLACK_API_URL.into());
    Ok((
        common,
        Target::Slack {
            channel,
            thread,
            look,
            token: Secret(token),
            api: api.trim_end_matches('/').to_string(),
        },
    ))
}

fn slack_webhook(url: &str) -> anyhow::Result<(Common, Target)> {
    let rest = url.strip_prefix("slack+").unwrap_or(url);
    let mut u = url::Url::parse(rest).context("malformed URL")?;
    if u.host_str().is_none_or(str::is_empty) {
        bail!("no host: write slack+https://hooks.slack.com/services/…");
    }
    let mut q = query(&u)?;
    let common = common(&mut q)?;
    let look = take_look(&mut q);
    no_leftovers(&q, "title, url, quiet, timeout")?;
    u.set_query(None);
    Ok((common, Target::SlackWebhook { target: u, look }))
}

fn take_look(q: &mut HashMap<String, String>) -> SlackLook {
    SlackLook {
        title: q.remove("title").filter(|t| !t.is_empty()),
        link: q.remove("url").filter(|t| !t.is_empty()),
    }
}

fn mail(url: &str) -> anyhow::Result<(Common, Target)> {
    let u = url::Url::parse(url).context("malformed URL")?;
    if !u.username().is_empty() || u.password().is_some() {
        bail!("put the user in ?username=… and the password in MAIL_PASSWORD or the mail-password credential, not before the host");
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("no SMTP host: write mail://<host>[:port]/<to>"))?
        .to_string();
    let to_raw = percent_decode(u.path().trim_start_matches('/'));
    if to_raw.is_empty() {
        bail!("no recipient: write mail://<host>[:port]/<to>");
    }
    let to = to_raw
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<Mailbox>()
                .with_context(|| format!("recipient {a:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut q = query(&u)?;
    let common = common(&mut q)?;
    let security = match q.remove("tls").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "starttls") => {
            if u.port() == Some(465) {
                MailSecurity::Implicit
            } else {
                MailSecurity::StartTls
            }
        }
        Some("implicit" | "wrapper") => MailSecurity::Implicit,
        Some("false") => MailSecurity::Plain,
        Some(other) => bail!("tls={other:?}: expected true, starttls, implicit or false"),
    };
    let port = u.port().unwrap_or(match security {
        MailSecurity::StartTls => 587,
        MailSecurity::Implicit => 465,
        MailSecurity::Plain => 25,
    });
    let username = q
        .remove("username")
        .or_else(|| std::env::var("MAIL_USERNAME").ok())
        .filter(|s| !s.is_empty());
    let password = q
        .remove("password")
        .or_else(|| secret("mail-password", "MAIL_PASSWORD"))
        .filter(|s| !s.is_empty());
    let from_raw = q
        .remove("from")
        .or_else(|| std::env::var("MAIL_FROM").ok())
        .filter(|s| !s.is_empty())
        .or_else(|| username.clone().filter(|u| u.contains('@')))
        .ok_or_else(|| anyhow!("no sender: add ?from=… (or MAIL_FROM, or a username that is an address)"))?;
    let from = from_raw
        .parse::<Mailbox>()
        .with_context(|| format!("sender {from_raw:?}"))?;
    let subject = q.remove("subject").unwrap_or_else(|| "Dewy Notification".into());
    let ca_pem = match q.remove("ca-file").filter(|f| !f.is_empty()) {
        None => None,
        Some(_) if security == MailSecurity::Plain => {
            bail!("ca-file applies to TLS; it conflicts with tls=false")
        }
        Some(path) => {
            let pem = std::fs::read(&path).with_context(|| format!("ca-file {path}"))?;
            lettre::transport::smtp::client::Certificate::from_pem(&pem)
                .map_err(|e| anyhow!("ca-file {path}: not a PEM certificate: {e}"))?;
            Some(pem)
        }
    };
    no_leftovers(
        &q,
        "username, password, from, subject, tls, ca-file, quiet, timeout",
    )?;
    let credentials = match (username, password) {
        (Some(user), Some(pass)) => Some((user, Secret(pass))),
        (Some(_), None) => {
            bail!("username given but no password (MAIL_PASSWORD or the mail-password credential)")
        }
        (None, _) => None,
    };
    Ok((
        common,
        Target::Mail(MailTarget {
            host,
            port,
            security,
            from,
            to,
            subject,
            credentials,
            ca_pem,
        }),
    ))
}

/// Percent-decoding of a URL path segment (`%40` → `@`; `+` stays).
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Parse an http(s) target, taking `quiet` and `timeout` out of its query (other keys stay).
fn split_target(rest: &str) -> anyhow::Result<(url::Url, Common)> {
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

/// Take the query of `url` apart; repeated keys are an error.
fn query(url: &url::Url) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in url.query_pairs() {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            bail!("query key {k:?} given twice");
        }
    }
    Ok(out)
}

/// Remove `quiet` and `timeout` from the query map.
fn common(q: &mut HashMap<String, String>) -> anyhow::Result<Common> {
    let quiet = match q.remove("quiet") {
        None => false,
        Some(v) => parse_bool("quiet", &v)?,
    };
    let timeout = match q.remove("timeout") {
        None => DEFAULT_SEND_TIMEOUT,
        Some(v) => crate::units::parse_duration(&v).context("timeout")?,
    };
    let timeout = super::ranges::NOTIFIER_TIMEOUT
        .check(timeout)
        .map_err(|e| anyhow!(e))?;
    Ok(Common { quiet, timeout })
}

fn parse_bool(key: &str, v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => bail!("{key}={v:?} is not true or false"),
    }
}

/// Refuse query keys nobody took.
fn no_leftovers(q: &HashMap<String, String>, known: &str) -> anyhow::Result<()> {
    if let Some(k) = q.keys().next() {
        bail!("unknown query key {k:?} (known: {known})");
    }
    Ok(())
}

/// A secret from the systemd credential `cred`, else the environment variable `var`.
fn secret(cred: &str, var: &str) -> Option<String> {
    crate::systemd::credential(cred).or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

/// A URL for logs and errors: the password and the query values are replaced.
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return crate::text::unparsed_url_redacted(url.split('?').next().unwrap_or(url));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> String {
        format!("{:#}", parse_all(&[url.to_string()]).expect_err(url))
    }

    #[test]
    fn unknown_and_malformed_urls_are_refused() {
        let e = err("discord://x");
        assert!(e.contains("discord://x") && e.contains("unknown scheme"), "{e}");
        assert!(err("webhook+https://h/x?quiet=maybe").contains("quiet"));
        assert!(err("mail://smtp.example.com/?from=a@b").contains("recipient"));
        assert!(err("mail://smtp.example.com/ops@example.com?colour=red").contains("colour"));
        let ok = parse("webhook+http://127.0.0.1:9/hook?quiet=true&timeout=2s&keep=1").expect("webhook");
        assert_eq!(
            ok.common,
            Common {
                quiet: true,
                timeout: Duration::from_secs(2)
            }
        );
        match &ok.target {
            Target::Webhook { target } => assert_eq!(target.as_str(), "http://127.0.0.1:9/hook?keep=1"),
            _ => panic!("not a webhook: {ok:?}"),
        }
    }

    #[test]
    fn slack_urls() {
        assert!(err("slack://deploys?colour=red").contains("colour"));
        assert!(err("slack://?thread=true").contains("no channel"));
        let hook =
            parse("slack+https://hooks.slack.com/services/T0/B0/secret?quiet=true&title=t").expect("hook");
        assert!(hook.common.quiet);
        assert!(!format!("{hook:?}").contains("secret"), "{hook:?}");
        match hook.target {
            Target::SlackWebhook { target, look } => {
                assert_eq!(target.as_str(), "https://hooks.slack.com/services/T0/B0/secret");
                assert_eq!(look.title.as_deref(), Some("t"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mail_urls_are_typed_and_secrets_stay_out_of_debug() {
        let m = parse("mail://relay.example.com:2525/ops%40example.com,dev@example.com?from=dewy@example.com&username=u&password=hunter2&tls=false")
            .expect("mail");
        assert!(!format!("{m:?}").contains("hunter2"));
        match m.target {
            Target::Mail(MailTarget {
                host,
                port,
                security,
                to,
                credentials,
                ..
            }) => {
                assert_eq!(
                    (host.as_str(), port, security),
                    ("relay.example.com", 2525, MailSecurity::Plain)
                );
                assert_eq!(to.len(), 2);
                assert_eq!(credentials.map(|c| c.1 .0), Some("hunter2".to_string()));
            }
            other => panic!("{other:?}"),
        }
        let implicit =
            parse("smtp://relay.example.com:465/ops@example.com?from=a@example.com").expect("mail");
        assert!(matches!(
            implicit.target,
            Target::Mail(MailTarget {
                security: MailSecurity::Implicit,
                ..
            })
        ));
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
