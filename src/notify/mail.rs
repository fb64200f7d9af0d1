//! Mail: `mail://<host>[:port]/<to>?username=…&password=…&from=…&subject=…&tls=…` (or `smtp://`)
//! through lettre: STARTTLS, implicit TLS (`tls=implicit`, or port 465) or plain (`tls=false`);
//! `ca-file=` adds a private CA for the relay's certificate.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::event::{Event, Note};
use super::{common, no_leftovers, query, Common, Notifier};

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// STARTTLS, required (the default, port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all (`tls=false`), for a local relay.
    Plain,
}

/// A mail notifier.
pub struct Mail {
    host: String,
    port: u16,
    security: Security,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    credentials: Option<Credentials>,
    /// An extra trusted CA (`ca-file=`), for relays with a private certificate; read and parsed
    /// once, when the notifier is set up.
    ca: Option<Certificate>,
    common: Common,
}

impl Mail {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
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
                    Security::Implicit
                } else {
                    Security::StartTls
                }
            }
            Some("implicit" | "wrapper") => Security::Implicit,
            Some("false") => Security::Plain,
            Some(other) => bail!("tls={other:?}: expected true, starttls, implicit or false"),
        };
        let port = u.port().unwrap_or(match security {
            Security::StartTls => 587,
            Security::Implicit => 465,
            Security::Plain => 25,
        });
        let username = q
            .remove("username")
            .or_else(|| std::env::var("MAIL_USERNAME").ok())
            .filter(|s| !s.is_empty());
        let password = q
            .remove("password")
            .or_else(|| super::secret("mail-password", "MAIL_PASSWORD"))
            .filter(|s| !s.is_empty());
        let from_raw = q
            .remove("from")
            .or_else(|| std::env::var("MAIL_FROM").ok())
            .filter(|s| !s.is_empty())
            .or_else(|| username.clone().filter(|u| u.contains('@')))
            .ok_or_else(|| {
                anyhow!("no sender: add ?from=… (or MAIL_FROM, or a username that is an address)")
            })?;
        let from = from_raw
            .parse::<Mailbox>()
            .with_context(|| format!("sender {from_raw:?}"))?;
        let subject = q.remove("subject").unwrap_or_else(|| "Dewy Notification".into());
        let ca = match q.remove("ca-file").filter(|f| !f.is_empty()) {
            None => None,
            Some(_) if security == Security::Plain => {
                bail!("ca-file applies to TLS; it conflicts with tls=false")
            }
            Some(path) => {
                let pem = std::fs::read(&path).with_context(|| format!("ca-file {path}"))?;
                Some(
                    Certificate::from_pem(&pem)
                        .map_err(|e| anyhow!("ca-file {path}: not a PEM certificate: {e}"))?,
                )
            }
        };
        no_leftovers(
            &q,
            "username, password, from, subject, tls, ca-file, quiet, timeout",
        )?;
        let credentials = match (username, password) {
            (Some(user), Some(pass)) => Some(Credentials::new(user, pass)),
            (Some(_), None) => {
                bail!("username given but no password (MAIL_PASSWORD or the mail-password credential)")
            }
            (None, _) => None,
        };
        Ok(Self {
            host,
            port,
            security,
            from,
            to,
            subject,
            credentials,
            ca,
            common,
        })
    }

    fn tls_parameters(&self) -> anyhow::Result<TlsParameters> {
        let mut b = TlsParameters::builder(self.host.clone());
        if let Some(ca) = &self.ca {
            b = b.add_root_certificate(ca.clone());
        }
        Ok(b.build_rustls()?)
    }

    fn transport(&self) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(self.common.timeout));
        b = match self.security {
            Security::Plain => b.tls(Tls::None),
            Security::StartTls => b.tls(Tls::Required(self.tls_parameters()?)),
            Security::Implicit => b.tls(Tls::Wrapper(self.tls_parameters()?)),
        };
        if let Some(c) = &self.credentials {
            b = b.credentials(c.clone());
        }
        Ok(b.build())
    }

    fn subject_for(&self, event: &Event) -> String {
        match event {
            Event::Failed { .. } | Event::Digest { .. } => format!("{}: FAILURE", self.subject),
            Event::Hook { kind, success, .. } => format!(
                "{}: {} deploy hook {}",
                self.subject,
                if kind == "before" { "Before" } else { "After" },
                if *success { "SUCCESS" } else { "FAILED" }
            ),
            _ => self.subject.clone(),
        }
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Notifier for Mail {
    fn name(&self) -> String {
        format!("mail://{}:{}", self.host, self.port)
    }
    fn quiet(&self) -> bool {
        self.common.quiet
    }
    fn timeout(&self) -> Duration {
        self.common.timeout
    }
    async fn send(&self, note: &Note) -> anyhow::Result<()> {
        let body = format!(
            "{}\n\nApp: {}\nHost: {}\nTime: {}\nEvent: {}\n\n-- \ndewy {}\n",
            note.event.message(),
            note.app,
            note.host,
            note.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            note.event.kind(),
            env!("CARGO_PKG_VERSION"),
        );
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(self.subject_for(&note.event));
        for to in &self.to {
            m = m.to(to.clone());
        }
        let msg = m
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("building the message")?;
        let what = format!("sending mail through {}:{}", self.host, self.port);
        match self.transport()?.send(msg).await {
            Ok(_) => Ok(()),
            // Refused or dropped connections and 4xx replies may pass; 5xx replies, TLS failures
            // and malformed exchanges will not.
            Err(e) if !(e.is_permanent() || e.is_tls() || e.is_client() || e.is_response()) => {
                Err(super::retry::transient(format!("{what}: {e}"), None))
            }
            Err(e) => Err(anyhow::Error::new(e).context(what)),
        }
    }
}
