//! Outgoing email: the message model, MIME building, the outbox and the templates.
//!
//! Jobs never talk to a mail server. They render [`OutgoingEmail`]s (see [`render`]),
//! then [`enqueue`] them into the `email_outbox` table in the same database
//! transaction that commits their results, so an email exists if and only if the
//! results it describes do. A separate step, [`deliver_queued`], sends what is queued
//! and records the outcome per row. Every email carries a `dedup_key` that names what
//! it is about (a statement revision, an operator's alerts for a period…): the outbox
//! refuses a key it has already seen, and the `Message-ID` is derived from the key so
//! that even a receiver can drop a duplicate. Keys are built with [`dedup_key`], which
//! escapes the parts so that two different lists of parts never give the same key.
//!
//! Mail states (`email_outbox.status`): `queued` (waiting for a delivery), `sending`
//! (claimed by one deliverer), `sent`, `failed` (with `last_error`; retried up to
//! [`MAX_ATTEMPTS`] unless it can never be delivered) and `suppressed` (recorded,
//! never sent: mail of a backfilled period, see [`kind::is_operator_facing`]).

pub mod outbox;
pub mod render;
pub mod smtp;

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

pub use outbox::{
    DeliverOptions, DeliveryReport, Disposition, EnqueueReport, Enqueued, MAX_ATTEMPTS,
    SmtpSettings, Transport, deliver, deliver_queued, enqueue, enqueue_all, enqueue_one,
    enqueue_suppressed,
};
pub use render::{format_bp, format_cents, run_failed_email};

/// The kinds of email the mail layer itself knows: the statement (whose delivery the
/// outbox reports back to `payout_statements`, issue 9 item 3), and the notices it or
/// the close builds. Every other kind is its job's own constant (`jobs::<job>::emails`).
pub mod kind {
    /// A payout statement to its operator (built by the payouts job's emails).
    pub const STATEMENT: &str = "statement";
    pub const RUN_FAILED: &str = "run_failed";
    /// One summary per backfill close for the internal lists, instead of their
    /// per-period mails (issue 9 item 16).
    pub const BACKFILL_SUMMARY: &str = "backfill_summary";
}

/// Who an email is for, which decides what a backfill does with it (issue 9 item 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// An operator, about its own period (statement, tier change, alerts, breach
    /// notice): suppressed for backfilled periods.
    Operator,
    /// An internal list, about one period (finance summary, leadership report,
    /// escalation): replaced by the backfill summary for backfilled periods.
    PeriodicInternal,
    /// Everything else (a failed run, the backfill summary itself): always sent.
    Notice,
}

/// A dedup key: `kind` then each part, joined by `:`, every part escaped (`%` →
/// `%25`, `:` → `%3A`, control characters → `%XX`) so the join is unambiguous:
/// operator `A:B` in territory `C` and operator `A` in territory `B:C` get different
/// keys (issue 9 item 17). Parts without those characters appear as they are, so the
/// key stays readable — and keys (and the `Message-ID`s derived from them) of ids
/// without them are the same as before the escaping was introduced.
pub fn dedup_key(kind: &str, parts: &[&str]) -> String {
    let mut key = escape_part(kind);
    for p in parts {
        key.push(':');
        key.push_str(&escape_part(p));
    }
    key
}

fn escape_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if c == '%' || c == ':' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
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
    /// The `email_outbox.kind`: the id of this kind of email.
    pub kind: String,
    /// Who it is for (what a backfill does with it).
    pub audience: Audience,
    pub period: Option<String>,
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
}

impl OutgoingEmail {
    /// A mail with its key, recipient and subject but no body, for a run whose mail
    /// is recorded suppressed ([`crate::jobs::JobContext::mail_suppressed`]): the
    /// outbox keeps such a row without a body and refuses to queue it.
    pub fn unrendered(
        dedup_key: String,
        kind: &str,
        audience: Audience,
        period: Option<String>,
        recipient: String,
        subject: String,
    ) -> Self {
        OutgoingEmail {
            dedup_key,
            kind: kind.into(),
            audience,
            period,
            recipient,
            subject,
            text: String::new(),
            html: None,
            attachments: Vec::new(),
        }
    }

    /// Whether it was left [`unrendered`](Self::unrendered).
    pub fn is_unrendered(&self) -> bool {
        self.text.is_empty() && self.html.is_none() && self.attachments.is_empty()
    }
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
    /// A chart of an email could not be drawn.
    #[error("chart {chart}: {message}")]
    Chart { chart: String, message: String },
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
    /// A mail left unrendered for suppression reached a disposition that sends it:
    /// a bug, refused rather than sending an empty mail.
    #[error("email {dedup_key} to {recipient} was not rendered but is to be sent")]
    NotRendered {
        dedup_key: String,
        recipient: String,
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
            MailError::Db { source, .. } => crate::db::is_transient_sqlx(source),
            MailError::Template { .. }
            | MailError::Address { .. }
            | MailError::ContentType { .. }
            | MailError::Build { .. }
            | MailError::NotUtf8 { .. }
            | MailError::NotRendered { .. }
            | MailError::TransportSpec { .. }
            | MailError::Chart { .. } => false,
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

/// Parses one address (`a@b.c` or `Name <a@b.c>`), naming the email on failure. A
/// list (`a@x, b@y`), a line break or any other control character is refused with a
/// reason of its own: such a value must never reach a header or an envelope.
pub(crate) fn parse_mailbox(
    role: &'static str,
    address: &str,
    dedup_key: &str,
) -> Result<Mailbox, MailError> {
    let refuse = |reason: &str| MailError::Address {
        role,
        address: address.to_owned(),
        dedup_key: dedup_key.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err(refuse("no address"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(refuse("contains a line break or another control character"));
    }
    // Parsed once: a backfill checks two addresses of every suppressed mail.
    match trimmed.parse::<Mailbox>() {
        Ok(mailbox) => Ok(mailbox),
        Err(_) if trimmed.contains(',') => {
            Err(refuse("is a list of addresses; one mailbox expected"))
        }
        Err(e) => Err(refuse(&e.to_string())),
    }
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

/// One period of a backfill summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillPeriodView {
    pub period: String,
    /// Statements of the latest revision.
    pub statements: i64,
    /// Σ payable per currency.
    pub payable: Vec<(String, i64)>,
    pub exceptions: i64,
    /// Network-health figures off target.
    pub off_target: i64,
    /// Suppressed mails by kind.
    pub suppressed: Vec<(String, i64)>,
}

/// What the backfill summary lists (issue 9 item 16).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillSummaryView {
    pub periods: Vec<BackfillPeriodView>,
    /// `email.operator_mail_max_age_months`.
    pub max_age_months: u32,
}

/// The one summary the internal lists get for a backfill, instead of a finance
/// summary, a leadership report and escalations per period: per period the
/// statements, Σ payable, exceptions, network-health figures off target and the mail
/// that was suppressed. Plain text built with `format!` (like the failure notice): it
/// is assembled from the database after the runs and must not fail on a template.
///
/// Dedup key: the periods, the recipient and a hash of the text, so a re-run that
/// finds the same suppressed mail unlisted sends the same message (same Message-ID).
pub fn backfill_summary_email(v: &BackfillSummaryView, recipient: &str) -> OutgoingEmail {
    let first = v
        .periods
        .first()
        .map(|p| p.period.clone())
        .unwrap_or_default();
    let last = v
        .periods
        .last()
        .map(|p| p.period.clone())
        .unwrap_or_default();
    let mut table = format!(
        "{:<8}  {:>10}  {:<28}  {:>10}  {:>10}  suppressed mail\n",
        "period", "statements", "payable", "exceptions", "off target"
    );
    for p in &v.periods {
        let payable = if p.payable.is_empty() {
            "-".to_string()
        } else {
            p.payable
                .iter()
                .map(|(c, cents)| format_cents(*cents, c))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let suppressed = p
            .suppressed
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        table.push_str(&format!(
            "{:<8}  {:>10}  {:<28}  {:>10}  {:>10}  {}\n",
            p.period,
            p.statements,
            payable,
            p.exceptions,
            p.off_target,
            if suppressed.is_empty() {
                "-"
            } else {
                &suppressed
            }
        ));
    }
    let suppressed_total: i64 = v
        .periods
        .iter()
        .flat_map(|p| p.suppressed.iter().map(|(_, n)| *n))
        .sum();
    let text = format!(
        "opnet closed {n} period(s) of history at once (a backfill): {first} .. {last}.\n\
         \n\
         Their {suppressed_total} email(s) were not sent; each is recorded in the outbox as\n\
         `suppressed`. Operator emails (tier changes, alerts, exclusivity notices) are only\n\
         sent for the latest {months} complete month(s) (email.operator_mail_max_age_months),\n\
         and instead of a finance summary, a leadership report and escalations per period\n\
         the internal lists get this one summary:\n\
         \n\
         {table}\
         \n\
         Details of a period: `opnet payouts show --period YYYY-MM`, `opnet report --period\n\
         YYYY-MM --out FILE`, the marts in the lake. To send a period's mail after all:\n\
         \n\
         \x20   opnet close --from YYYY-MM --through YYYY-MM --send-mail all\n\
         \n\
         — opnet\n",
        n = v.periods.len(),
        months = v.max_age_months,
    );
    let digest = hex::encode(Sha256::digest(format!("{}\n{text}", recipient.trim())));
    OutgoingEmail {
        audience: Audience::Notice,
        dedup_key: dedup_key(
            kind::BACKFILL_SUMMARY,
            &[&first, &last, recipient.trim(), &digest[..16]],
        ),
        kind: kind::BACKFILL_SUMMARY.into(),
        period: Some(last.clone()),
        recipient: recipient.to_owned(),
        subject: format!(
            "opnet backfill {first} .. {last}: {} period(s) closed, {suppressed_total} email(s) not sent",
            v.periods.len()
        ),
        text,
        html: None,
        attachments: Vec::new(),
    }
}

/// The body of a message before it is wrapped with attachments.
enum Either {
    Single(SinglePart),
    Multi(MultiPart),
}

#[cfg(test)]
mod tests;
