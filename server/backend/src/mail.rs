//! Outbound email (lettre over SMTP): the mails that confirm an address on open sign-up.
//!
//! Configured by `KEYWARD_SMTP_URL` (`smtps://user:pass@host:465`, `smtp://host:587?tls=required`,
//! or plain `smtp://host:25` for a relay on a trusted network) and `KEYWARD_MAIL_FROM`. Sending
//! happens off the request: the answer a visitor gets never depends on which mail was sent or
//! how long the relay took.

use crate::config::{ConfigError, Settings};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;
use std::time::Duration;

/// How long one delivery to the relay may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A mail to send: recipient, subject, plain-text body.
#[derive(Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Hides the body (it may hold a one-time link) from logs and panics.
impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The SMTP relay and the sender address. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl Mailer {
    /// The mailer the settings describe, or `None` when no relay is configured.
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, ConfigError> {
        let (Some(url), Some(from)) = (&settings.smtp_url, settings.mail_sender()?) else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| ConfigError::Invalid {
                key: "smtp_url",
                reason: format!("{e} ({})", url.redacted()),
            })?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        Ok(Some(Self {
            transport: Arc::new(transport),
            from,
        }))
    }

    /// Delivers `mail` to the relay.
    pub async fn send(&self, mail: &Mail) -> Result<(), String> {
        let to: Mailbox = mail.to.parse().map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            // lettre picks the encoding: 7bit while every line is short ASCII (our templates
            // keep theirs short, so a link stays whole unless the public URL is long).
            .body(mail.body.clone())
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Sends `mail` in the background (on `tasks`, which shutdown waits for); a failure is
    /// logged (recipient and subject, never the body), not returned.
    pub fn send_later(&self, mail: Mail, tasks: &tokio_util::task::TaskTracker) {
        let mailer = self.clone();
        tasks.spawn(async move {
            if let Err(error) = mailer.send(&mail).await {
                tracing::error!(to = %mail.to, subject = %mail.subject, %error, "mail not sent");
            } else {
                tracing::info!(to = %mail.to, subject = %mail.subject, "mail sent");
            }
        });
    }
}
