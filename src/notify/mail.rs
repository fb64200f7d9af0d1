//! Mail: `mail://<host>[:port]/<to>?username=…&password=…&from=…&subject=…&tls=…` (or `smtp://`)
//! through lettre: STARTTLS, implicit TLS (`tls=implicit`, or port 465) or plain (`tls=false`);
//! `ca-file=` adds a private CA for the relay's certificate.

use std::time::Duration;

use anyhow::{anyhow, Context};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::event::{Event, Note};
use super::Notifier;
use crate::config::notifier::{Common, MailSecurity as Security, MailTarget};

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
    /// A mail notifier for a parsed `mail://` target.
    pub fn new(target: &MailTarget, common: Common) -> anyhow::Result<Self> {
        let ca = target
            .ca_pem
            .as_deref()
            .map(|pem| Certificate::from_pem(pem).map_err(|e| anyhow!("ca-file: not a PEM certificate: {e}")))
            .transpose()?;
        Ok(Self {
            host: target.host.clone(),
            port: target.port,
            security: target.security,
            from: target.from.clone(),
            to: target.to.clone(),
            subject: target.subject.clone(),
            credentials: target
                .credentials
                .as_ref()
                .map(|(user, pass)| Credentials::new(user.clone(), pass.0.clone())),
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
