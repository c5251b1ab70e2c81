//! Outgoing email: the message model, MIME building, the outbox and the templates.
//!
//! Jobs never talk to a mail server. They render [`OutgoingEmail`]s (see [`render`]),
//! then [`enqueue`] them into the `email_outbox` table in the same database
//! transaction that commits their results, so an email exists if and only if the
//! results it describes do. A separate step, [`deliver_queued`], sends what is queued
//! and records the outcome per row. Every email carries a `dedup_key` that names what
//! it is about (a statement revision, an operator's alerts for a period…): the outbox
//! refuses a key it has already seen, and the `Message-ID` is derived from the key so
//! that even a receiver can drop a duplicate.

pub mod outbox;
pub mod render;
pub mod smtp;

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

pub use outbox::{DeliveryReport, MAX_ATTEMPTS, SmtpSettings, Transport, deliver_queued, enqueue};
pub use render::{
    AlertView, CurrencyTotalsView, ExceptionView, ExclusivityView, FinanceSummaryView,
    MetricBreachView, StatementLineView, StatementView, TierChangeView, alert_email,
    escalation_email, exceptions_csv, exclusivity_breach_email, finance_summary_email,
    format_cents, html_report_email, run_failed_email, statement_email, statement_lines_csv,
    tier_change_email,
};

/// The `kind` column of `email_outbox`: one id per kind of email.
pub mod kind {
    pub const STATEMENT: &str = "statement";
    pub const FINANCE_SUMMARY: &str = "finance_summary";
    pub const TIER_CHANGE: &str = "tier_change";
    pub const ALERT: &str = "alert";
    pub const EXCLUSIVITY_BREACH: &str = "exclusivity_breach";
    pub const ESCALATION: &str = "escalation";
    pub const NETWORK_HEALTH: &str = "network_health";
    pub const RUN_FAILED: &str = "run_failed";
}

/// A file attached to an email (a CSV of payout lines, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// A MIME type such as `text/csv; charset=utf-8`.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One email as a job produces it, before it has a sender or a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// What the email is about; the outbox sends a key at most once.
    pub dedup_key: String,
    /// One of the ids in [`kind`].
    pub kind: String,
    pub period: Option<String>,
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// Everything that can go wrong between a view and a delivered message.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("template {template}: {source:#}")]
    Template {
        template: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("invalid {role} address {address:?} for email {dedup_key}: {reason}")]
    Address {
        role: &'static str,
        address: String,
        dedup_key: String,
        reason: String,
    },
    #[error("invalid content type {content_type:?} of attachment {filename} in email {dedup_key}")]
    ContentType {
        content_type: String,
        filename: String,
        dedup_key: String,
    },
    #[error("cannot build email {dedup_key} to {recipient}: {source}")]
    Build {
        dedup_key: String,
        recipient: String,
        #[source]
        source: lettre::error::Error,
    },
    #[error("email {dedup_key} to {recipient} is not valid UTF-8 once formatted")]
    NotUtf8 {
        dedup_key: String,
        recipient: String,
    },
    #[error("email outbox: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "invalid mail transport {spec:?}: {reason} (expected file:DIR, smtp://HOST[:PORT], smtp+starttls://HOST[:PORT] or smtps://HOST[:PORT])"
    )]
    TransportSpec { spec: String, reason: String },
    /// The transport failed; `transient` says whether trying again soon may work
    /// (connection, I/O, timeout, a 4xx SMTP reply) or not (a 5xx reply, a refused
    /// envelope, a local directory that cannot be written).
    #[error("mail transport: {context}: {reason}")]
    Transport {
        context: String,
        reason: String,
        transient: bool,
    },
}

impl MailError {
    /// Worth retrying: a transport failure marked transient where it happened, or an
    /// outbox query that lost its database connection. Templates, addresses, content
    /// types and message building fail the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            MailError::Transport { transient, .. } => *transient,
            MailError::Db { source, .. } => matches!(
                source,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ),
            MailError::Template { .. }
            | MailError::Address { .. }
            | MailError::ContentType { .. }
            | MailError::Build { .. }
            | MailError::NotUtf8 { .. }
            | MailError::TransportSpec { .. } => false,
        }
    }
}

/// The `Message-ID` of the email with this dedup key.
///
/// Derived from the key alone, so the same email always carries the same id: if a
/// crash between sending and recording `sent` makes the outbox send it again, a
/// receiver (or a mailing tool) can recognise and drop the duplicate.
pub fn message_id(dedup_key: &str) -> String {
    let digest = Sha256::digest(dedup_key.as_bytes());
    let hex = hex::encode(digest);
    format!("<{}@opnet>", &hex[..32])
}

/// Parses an address (`a@b.c` or `Name <a@b.c>`), naming the email on failure.
pub(crate) fn parse_mailbox(
    role: &'static str,
    address: &str,
    dedup_key: &str,
) -> Result<Mailbox, MailError> {
    address
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| MailError::Address {
            role,
            address: address.to_owned(),
            dedup_key: dedup_key.to_owned(),
            reason: e.to_string(),
        })
}

/// Builds the full RFC 5322 message text of `email`, as stored in the outbox.
///
/// Structure: `multipart/mixed(multipart/alternative(text, html), attachments…)`;
/// without attachments the `mixed` wrapper is left out, and without HTML the body is
/// a single `text/plain` part. The date is an argument (the run's clock) rather than
/// "now" so that a message is reproducible.
pub fn build_message(
    sender: &str,
    email: &OutgoingEmail,
    date: DateTime<Utc>,
) -> Result<Vec<u8>, MailError> {
    let key = email.dedup_key.as_str();
    let from = parse_mailbox("sender", sender, key)?;
    let to = parse_mailbox("recipient", &email.recipient, key)?;
    let build_err = |source| MailError::Build {
        dedup_key: key.to_owned(),
        recipient: email.recipient.clone(),
        source,
    };

    let builder = Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(message_id(key)))
        .date(SystemTime::from(date));

    // Lettre draws MIME boundaries at random; deriving them from the dedup key
    // instead makes the stored message a pure function of its inputs, so a re-run
    // reproduces it byte for byte. (A hash-named boundary cannot occur in the
    // encoded parts by accident.)
    let boundary = |part: &str| {
        let digest = Sha256::digest(format!("{part}\n{key}").as_bytes());
        format!("opnet-{part}-{}", &hex::encode(digest)[..24])
    };

    let body: Either = match &email.html {
        Some(html) => Either::Multi(
            MultiPart::alternative()
                .boundary(boundary("alt"))
                .singlepart(SinglePart::plain(email.text.clone()))
                .singlepart(SinglePart::html(html.clone())),
        ),
        None => Either::Single(SinglePart::plain(email.text.clone())),
    };

    let message = if email.attachments.is_empty() {
        match body {
            Either::Multi(m) => builder.multipart(m),
            Either::Single(s) => builder.singlepart(s),
        }
        .map_err(build_err)?
    } else {
        let mut mixed = match body {
            Either::Multi(m) => MultiPart::mixed().boundary(boundary("mixed")).multipart(m),
            Either::Single(s) => MultiPart::mixed().boundary(boundary("mixed")).singlepart(s),
        };
        for a in &email.attachments {
            let content_type =
                ContentType::parse(&a.content_type).map_err(|_| MailError::ContentType {
                    content_type: a.content_type.clone(),
                    filename: a.filename.clone(),
                    dedup_key: key.to_owned(),
                })?;
            // Base64 always: a CSV with bare-LF line endings would pass lettre's 7bit
            // check (no line over 998 bytes by LF) yet reach SMTP as one long CRLF line,
            // which servers reject (RFC 5321 4.5.3.1.6).
            let body = lettre::message::Body::new_with_encoding(
                a.bytes.clone(),
                lettre::message::header::ContentTransferEncoding::Base64,
            )
            .map_err(|_| MailError::ContentType {
                content_type: a.content_type.clone(),
                filename: a.filename.clone(),
                dedup_key: key.to_owned(),
            })?;
            mixed = mixed.singlepart(
                lettre::message::Attachment::new(a.filename.clone()).body(body, content_type),
            );
        }
        builder.multipart(mixed).map_err(build_err)?
    };
    Ok(message.formatted())
}

/// The body of a message before it is wrapped with attachments.
enum Either {
    Single(SinglePart),
    Multi(MultiPart),
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> OutgoingEmail {
        OutgoingEmail {
            dedup_key: "statement:2025-08:OP-0001:USD:r1".into(),
            kind: kind::STATEMENT.into(),
            period: Some("2025-08".into()),
            recipient: "Acme Ops <ops@acme.example>".into(),
            subject: "Candlefish payout statement 2025-08 — OP-0001 (USD)".into(),
            text: "Hello plain world\n".into(),
            html: Some("<p>Hello html world</p>\n".into()),
            attachments: vec![Attachment {
                filename: "payout_lines_OP-0001_2025-08_USD.csv".into(),
                content_type: "text/csv; charset=utf-8".into(),
                bytes: b"a,b\n1,2\n".to_vec(),
            }],
        }
    }

    #[test]
    fn transient_mail_errors() {
        let transport = |transient| MailError::Transport {
            context: "smtp".into(),
            reason: "x".into(),
            transient,
        };
        let db = |source| MailError::Db {
            context: "listing".into(),
            source,
        };
        let address = parse_mailbox("recipient", "not an address", "k").expect_err("bad");
        let template = MailError::Template {
            template: "t".into(),
            source: minijinja::Error::new(minijinja::ErrorKind::UndefinedError, "x"),
        };
        let cases: Vec<(MailError, bool)> = vec![
            (transport(true), true),
            (transport(false), false),
            (db(sqlx::Error::PoolTimedOut), true),
            (
                db(sqlx::Error::Io(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
                true,
            ),
            (db(sqlx::Error::RowNotFound), false),
            (address, false),
            (template, false),
            (
                MailError::TransportSpec {
                    spec: "x".into(),
                    reason: "y".into(),
                },
                false,
            ),
            (
                MailError::NotUtf8 {
                    dedup_key: "k".into(),
                    recipient: "r".into(),
                },
                false,
            ),
            (
                MailError::ContentType {
                    content_type: "x".into(),
                    filename: "f".into(),
                    dedup_key: "k".into(),
                },
                false,
            ),
        ];
        for (e, transient) in cases {
            assert_eq!(e.is_transient(), transient, "{e}");
        }
    }

    #[test]
    fn message_id_is_stable_and_key_specific() {
        let a = message_id("statement:2025-08:OP-0001:USD:r1");
        assert_eq!(a, message_id("statement:2025-08:OP-0001:USD:r1"));
        assert_ne!(a, message_id("statement:2025-08:OP-0001:USD:r2"));
        assert!(a.starts_with('<') && a.ends_with("@opnet>"));
        assert_eq!(a.len(), 1 + 32 + "@opnet>".len());
    }

    #[test]
    fn build_message_has_headers_parts_and_attachment() {
        let date = Utc
            .with_ymd_and_hms(2025, 9, 1, 6, 0, 0)
            .single()
            .expect("date");
        let email = sample();
        let bytes =
            build_message("Candlefish <payouts@candlefish.example>", &email, date).expect("build");
        let text = String::from_utf8(bytes).expect("ascii message");
        assert!(text.contains(&format!("Message-ID: {}", message_id(&email.dedup_key))));
        assert!(text.contains("From: Candlefish <payouts@candlefish.example>"));
        assert!(text.contains("To: \"Acme Ops\" <ops@acme.example>"));
        assert!(text.contains("Date: Mon, 01 Sep 2025 06:00:00 +0000"));
        assert!(text.contains("multipart/mixed"));
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(text.contains("Content-Type: text/html; charset=utf-8"));
        assert!(text.contains("Hello plain world"));
        assert!(text.contains("Hello html world"));
        assert!(text.contains("Content-Disposition: attachment;"));
        // Lettre writes the name as an RFC 2231 parameter (`filename*0="…"`).
        assert!(text.contains("\"payout_lines_OP-0001_2025-08_USD.csv\""));
        // The subject has a non-ASCII dash, so it must travel as an encoded word.
        assert!(text.contains("=?utf-8?b?4oCU?="), "{text}");
        // Same input, same bytes: the outbox can store and resend it verbatim.
        let again =
            build_message("Candlefish <payouts@candlefish.example>", &email, date).expect("build");
        assert_eq!(text.as_bytes(), again.as_slice());
    }

    #[test]
    fn build_message_plain_only_and_bad_address() {
        let date = Utc
            .with_ymd_and_hms(2025, 9, 1, 6, 0, 0)
            .single()
            .expect("date");
        let mut email = sample();
        email.html = None;
        email.attachments.clear();
        let text = String::from_utf8(
            build_message("payouts@candlefish.example", &email, date).expect("build"),
        )
        .expect("utf8");
        assert!(!text.contains("multipart/"));
        assert!(text.contains("Content-Type: text/plain; charset=utf-8"));

        email.recipient = "not an address".into();
        let err =
            build_message("payouts@candlefish.example", &email, date).expect_err("bad recipient");
        let msg = err.to_string();
        assert!(
            msg.contains("not an address") && msg.contains(&email.dedup_key),
            "{msg}"
        );
    }
}
