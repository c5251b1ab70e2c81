//! The email outbox: queue in the job's transaction, deliver afterwards.
//!
//! [`enqueue`] writes fully built messages into `email_outbox` on the connection the
//! job uses for its results, so they commit or roll back together; a dedup key that is
//! already in the table (queued, sent or failed) is skipped, which makes re-running a
//! job harmless. [`deliver_queued`] then sends each queued row through a [`Transport`]
//! — a directory of `.eml` files for local runs and tests, or an SMTP relay — and
//! records `sent` or `failed` per row; failed rows are retried by later calls until
//! they have had [`MAX_ATTEMPTS`] attempts. Within one call, an SMTP send that fails
//! transiently (connection, timeout, 4xx) is first retried in-process with
//! [`retry::SMTP_SEND`]; one delivery attempt, as counted in `attempts`, is that
//! whole sequence.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::smtp::{self, Relay};
use super::{MailError, OutgoingEmail, build_message, message_id, parse_mailbox};
use crate::retry::{self, Backoff};

/// A failed row is retried until it has been attempted this many times; after that it
/// stays `failed` for a human to look at (its `last_error` says why).
pub const MAX_ATTEMPTS: i64 = 5;

/// Queues `emails` from `sender`, returning how many were newly queued.
///
/// Meant to run inside the job's transaction (`&mut *tx`). Each message is built
/// here, dated `now`, and stored whole in `body`, so delivery later sends exactly
/// what the job produced even if templates change in between.
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    sender: &str,
    emails: &[OutgoingEmail],
    run_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize, MailError> {
    let queued_at = timestamp(now);
    let mut queued = 0usize;
    for email in emails {
        let bytes = build_message(sender, email, now)?;
        // Formatted messages are 7-bit (non-ASCII text is QP/base64-encoded by the
        // builder), so this only fails on a builder bug; the column is TEXT.
        let body = String::from_utf8(bytes).map_err(|_| MailError::NotUtf8 {
            dedup_key: email.dedup_key.clone(),
            recipient: email.recipient.clone(),
        })?;
        // ON CONFLICT … DO NOTHING (PostgreSQL, SQLite ≥ 3.24) rather than a
        // check-then-insert: it stays correct when two runs race on the same key.
        let result = sqlx::query(
            "INSERT INTO email_outbox (message_id, dedup_key, kind, period, recipient, sender, \
             subject, status, attempts, queued_at, run_id, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $9, $10) \
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(message_id(&email.dedup_key))
        .bind(email.dedup_key.as_str())
        .bind(email.kind.as_str())
        .bind(email.period.as_deref())
        .bind(email.recipient.as_str())
        .bind(sender)
        .bind(email.subject.as_str())
        .bind(queued_at.as_str())
        .bind(run_id)
        .bind(body)
        .execute(&mut *conn)
        .await
        .map_err(|source| MailError::Db {
            context: format!("queueing email {} to {}", email.dedup_key, email.recipient),
            source,
        })?;
        if result.rows_affected() > 0 {
            queued += 1;
        } else {
            tracing::debug!(dedup_key = %email.dedup_key, "email already in the outbox, not queued again");
        }
    }
    Ok(queued)
}

/// Where [`deliver_queued`] sends messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Writes each message to `DIR/<message id>.eml` (local runs, tests, dry runs).
    File(PathBuf),
    /// An SMTP relay: plain, STARTTLS or implicit TLS, optionally authenticated.
    Smtp(Relay),
}

impl Transport {
    /// Parses `file:DIR` (also `file://DIR`) or an SMTP URL (`smtp://`,
    /// `smtp+starttls://`, `smtps://`; see [`smtp`]). Credentials and a CA file are
    /// added from the config by [`Transport::with_smtp`].
    pub fn parse(s: &str) -> Result<Self, MailError> {
        let spec_err = |reason: &str| MailError::TransportSpec {
            // A password someone put into the URL must not reach a log.
            spec: match s.split_once("://") {
                Some((scheme, rest)) if rest.contains('@') => {
                    format!("{scheme}://***@{}", rest.rsplit('@').next().unwrap_or(""))
                }
                _ => s.to_owned(),
            },
            reason: reason.to_owned(),
        };
        let s_trim = s.trim();
        if let Some(rest) = s_trim.strip_prefix("file:") {
            // `file:///abs` and `file://rel` are accepted as URL-ish spellings.
            let dir = rest.strip_prefix("//").unwrap_or(rest);
            if dir.is_empty() {
                return Err(spec_err("empty directory"));
            }
            return Ok(Transport::File(PathBuf::from(dir)));
        }
        match Relay::parse(s_trim) {
            Some(Ok(relay)) => Ok(Transport::Smtp(relay)),
            Some(Err(reason)) => Err(spec_err(&reason)),
            None => Err(spec_err("unknown scheme")),
        }
    }

    /// The transport with the SMTP settings of the config (`[smtp]`, `OPNET_SMTP_*`).
    /// Authentication over a plain connection is refused: the password would cross
    /// the network in clear.
    pub fn with_smtp(self, settings: &SmtpSettings) -> Result<Self, MailError> {
        let Transport::Smtp(mut relay) = self else {
            return Ok(self);
        };
        let spec = relay.to_string();
        let spec_err = |reason: String| MailError::TransportSpec {
            spec: spec.clone(),
            reason,
        };
        relay.ca_file = settings.ca_file.clone();
        relay.auth = match (&settings.username, &settings.password) {
            (None, None) => None,
            (Some(username), Some(password)) => Some(smtp::Auth {
                username: username.clone(),
                password: password.clone(),
            }),
            (Some(_), None) => {
                return Err(spec_err(
                    "smtp.username is set but no password (OPNET_SMTP_PASSWORD or smtp.password_file)"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(spec_err(
                    "an SMTP password is set but smtp.username is not".into(),
                ));
            }
        };
        if relay.auth.is_some() && relay.security == smtp::Security::Plain {
            return Err(spec_err(
                "SMTP credentials need an encrypted connection: use smtp+starttls:// or smtps://"
                    .into(),
            ));
        }
        Ok(Transport::Smtp(relay))
    }
}

/// SMTP settings beside the URL: who to log in as, where the password is, which CA to
/// trust besides the system's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpSettings {
    pub username: Option<String>,
    pub password: Option<smtp::Password>,
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::File(dir) => write!(f, "file:{}", dir.display()),
            Transport::Smtp(relay) => write!(f, "{relay}"),
        }
    }
}

/// What one [`deliver_queued`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: usize,
    pub failed: usize,
}

/// A transport ready to send (the SMTP client is built once per delivery run).
enum Sender {
    File(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends every queued row (and every failed row with attempts left), oldest first.
///
/// Each row is marked `sent` or `failed` as soon as its attempt ends, so a crash
/// mid-run loses at most the record of one send — and a resend carries the same
/// `Message-ID`. One row's failure does not stop the others; only a database error
/// ends the call early.
pub async fn deliver_queued(
    pool: &sqlx::AnyPool,
    transport: &Transport,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, MailError> {
    deliver_queued_with(pool, transport, now, &retry::SMTP_SEND).await
}

/// [`deliver_queued`] with the in-process retry policy of an SMTP send given (tests
/// make it fast). The file transport is never retried in-process.
pub async fn deliver_queued_with(
    pool: &sqlx::AnyPool,
    transport: &Transport,
    now: DateTime<Utc>,
    smtp_retry: &Backoff,
) -> Result<DeliveryReport, MailError> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT message_id, sender, recipient, body FROM email_outbox \
         WHERE status = 'queued' OR (status = 'failed' AND attempts < $1) \
         ORDER BY queued_at, message_id",
    )
    .bind(MAX_ATTEMPTS)
    .fetch_all(pool)
    .await
    .map_err(|source| MailError::Db {
        context: "listing queued emails".into(),
        source,
    })?;

    let mut report = DeliveryReport::default();
    if rows.is_empty() {
        return Ok(report);
    }
    let sender = match transport {
        Transport::File(dir) => {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| MailError::Transport {
                    context: format!("creating mail directory {}", dir.display()),
                    reason: e.to_string(),
                    // A directory that cannot be created (permissions, read-only
                    // disk) will not fix itself within seconds.
                    transient: false,
                })?;
            Sender::File(dir.clone())
        }
        Transport::Smtp(relay) => Sender::Smtp(relay.client()?),
    };
    let sent_at = timestamp(now);

    for (id, from, to, body) in rows {
        let result = match &sender {
            Sender::Smtp(_) => {
                retry::retry(
                    smtp_retry,
                    &format!("smtp send {id} to {to}"),
                    MailError::is_transient,
                    || send_one(&sender, &id, &from, &to, body.as_bytes()),
                )
                .await
            }
            Sender::File(_) => send_one(&sender, &id, &from, &to, body.as_bytes()).await,
        };
        match result.map_err(|e| last_error(&e)) {
            Ok(()) => {
                // The SMTP-accept window: accepted by the relay, not yet marked. A
                // crash here resends this one mail, under the same Message-ID.
                crate::failpoint::point(crate::failpoint::DELIVER_AFTER_SEND);
                sqlx::query(
                    "UPDATE email_outbox SET status = 'sent', sent_at = $1, \
                     attempts = attempts + 1, last_error = NULL WHERE message_id = $2",
                )
                .bind(sent_at.as_str())
                .bind(id.as_str())
                .execute(pool)
                .await
                .map_err(|source| MailError::Db {
                    context: format!("marking email {id} to {to} sent"),
                    source,
                })?;
                report.sent += 1;
                tracing::debug!(message_id = %id, recipient = %to, %transport, "email sent");
                crate::failpoint::point(crate::failpoint::DELIVER_AFTER_MARK);
            }
            Err(reason) => {
                sqlx::query(
                    "UPDATE email_outbox SET status = 'failed', attempts = attempts + 1, \
                     last_error = $1 WHERE message_id = $2",
                )
                .bind(reason.as_str())
                .bind(id.as_str())
                .execute(pool)
                .await
                .map_err(|source| MailError::Db {
                    context: format!("marking email {id} to {to} failed"),
                    source,
                })?;
                report.failed += 1;
                tracing::warn!(message_id = %id, recipient = %to, %transport, error = %reason, "email not sent");
            }
        }
    }
    Ok(report)
}

/// Sends one stored message. A transport error says whether it is transient.
async fn send_one(
    sender: &Sender,
    id: &str,
    from: &str,
    to: &str,
    body: &[u8],
) -> Result<(), MailError> {
    let from_addr = parse_mailbox("sender", from, id)?;
    let to_addr = parse_mailbox("recipient", to, id)?;
    let envelope = Envelope::new(Some(from_addr.email), vec![to_addr.email]).map_err(|e| {
        MailError::Transport {
            context: "envelope".into(),
            reason: chain(&e),
            transient: false,
        }
    })?;
    match sender {
        Sender::File(dir) => {
            write_eml(dir, id, body)
                .await
                .map_err(|e| MailError::Transport {
                    context: format!("writing {}", dir.display()),
                    reason: e.to_string(),
                    // Not retried in-process (the file path is unchanged); the next
                    // delivery retries the row.
                    transient: false,
                })
        }
        Sender::Smtp(smtp) => smtp
            .send_raw(&envelope, body)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Transport {
                context: "smtp".into(),
                reason: chain(&e),
                transient: smtp::is_transient(&e),
            }),
    }
}

/// The `last_error` text of a failed send: `smtp: …`, `envelope: …`, `writing DIR: …`
/// for transport errors, the error itself otherwise.
fn last_error(e: &MailError) -> String {
    match e {
        MailError::Transport {
            context, reason, ..
        } => format!("{context}: {reason}"),
        other => other.to_string(),
    }
}

/// Writes `DIR/<message id>.eml` through a temporary file and a rename, so a reader
/// never sees half a message and a resend overwrites rather than duplicates.
async fn write_eml(dir: &Path, id: &str, body: &[u8]) -> std::io::Result<()> {
    let stem: String = id
        .trim_matches(|c| c == '<' || c == '>')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tmp = dir.join(format!(".{stem}.eml.tmp"));
    let path = dir.join(format!("{stem}.eml"));
    tokio::fs::write(&tmp, body).await?;
    tokio::fs::rename(&tmp, &path).await
}

/// An error with its sources, on one line (lettre's top-level messages are terse).
fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

/// RFC 3339 UTC to the second, the timestamp format of every table.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{Attachment, kind};
    use chrono::TimeZone;
    use sqlx::{AnyPool, Connection};
    use std::time::Duration;

    const SENDER: &str = "Candlefish Payouts <payouts@candlefish.example>";

    /// In-process SMTP retries in milliseconds, so failing-relay tests stay fast.
    const FAST: Backoff = Backoff {
        initial: Duration::from_millis(5),
        factor: 2.0,
        max_delay: Duration::from_millis(10),
        max_attempts: 3,
        jitter: retry::Jitter::Equal,
    };

    /// A port that was just free: nothing listens there, so connecting is refused.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    async fn db() -> (tempfile::TempDir, AnyPool) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("opnet.db").display()
        );
        let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(include_str!("../../../sql/sqlite/0001_init.sql"))
            .execute(&mut conn)
            .await
            .expect("schema");
        conn.close().await.expect("close");
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("pool");
        (dir, pool)
    }

    fn email(key: &str, to: &str) -> OutgoingEmail {
        OutgoingEmail {
            dedup_key: key.into(),
            kind: kind::ALERT.into(),
            period: Some("2025-08".into()),
            recipient: to.into(),
            subject: format!("Test {key}"),
            text: "Numbers: 1,234.56 USD\n".into(),
            html: Some("<p>Numbers: 1,234.56 USD</p>\n".into()),
            attachments: vec![Attachment {
                filename: "x.csv".into(),
                content_type: "text/csv; charset=utf-8".into(),
                bytes: b"a\n1\n".to_vec(),
            }],
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 9, 1, 6, 0, 0)
            .single()
            .expect("date")
    }

    /// Queue `emails` on a connection of their own, as a job's transaction would.
    async fn queue(pool: &AnyPool, emails: &[OutgoingEmail], run_id: Option<&str>) -> usize {
        let mut conn = pool.acquire().await.expect("acquire");
        enqueue(&mut conn, SENDER, emails, run_id, now())
            .await
            .expect("enqueue")
    }

    async fn statuses(pool: &AnyPool) -> Vec<(String, String, i64, Option<String>)> {
        sqlx::query_as(
            "SELECT dedup_key, status, attempts, last_error FROM email_outbox ORDER BY dedup_key",
        )
        .fetch_all(pool)
        .await
        .expect("select")
    }

    #[test]
    fn transport_parse() {
        assert_eq!(
            Transport::parse("file:/tmp/mail").expect("file"),
            Transport::File("/tmp/mail".into())
        );
        assert_eq!(
            Transport::parse("file:///tmp/mail").expect("file url"),
            Transport::File("/tmp/mail".into())
        );
        assert_eq!(
            Transport::parse("smtp://relay.internal:2525").expect("smtp"),
            Transport::Smtp(Relay::plain("relay.internal", 2525))
        );
        assert_eq!(
            Transport::parse("smtp://relay.internal").expect("smtp default port"),
            Transport::Smtp(Relay::plain("relay.internal", 25))
        );
        assert_eq!(
            Transport::parse("smtp://[::1]:25").expect("smtp v6"),
            Transport::Smtp(Relay::plain("::1", 25))
        );
        for bad in [
            "",
            "file:",
            "smtp://",
            "smtp://host:notaport",
            "http://x",
            "smtp://h:70000",
        ] {
            assert!(Transport::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[tokio::test]
    async fn enqueue_is_idempotent_per_dedup_key() {
        let (_dir, pool) = db().await;
        let mut conn = pool.acquire().await.expect("acquire");
        let a = email("alert:2025-08:OP-0001:abc", "ops@acme.example");
        let n = enqueue(
            &mut conn,
            SENDER,
            &[a.clone(), a.clone()],
            Some("run-1"),
            now(),
        )
        .await
        .expect("enqueue");
        assert_eq!(n, 1, "the same key twice in one call queues once");
        let n = enqueue(
            &mut conn,
            SENDER,
            std::slice::from_ref(&a),
            Some("run-2"),
            now(),
        )
        .await
        .expect("enqueue again");
        assert_eq!(n, 0, "a re-run queues nothing new");
        drop(conn);

        let rows: Vec<(String, String, String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT message_id, status, queued_at, run_id, period, body FROM email_outbox",
        )
        .fetch_all(&pool)
        .await
        .expect("select");
        assert_eq!(rows.len(), 1);
        let (id, status, queued_at, run_id, period, body) = &rows[0];
        assert_eq!(id, &message_id(&a.dedup_key));
        assert_eq!(status, "queued");
        assert_eq!(queued_at, "2025-09-01T06:00:00Z");
        assert_eq!(run_id, "run-1");
        assert_eq!(period.as_deref(), Some("2025-08"));
        assert!(body.contains(&format!("Message-ID: {id}")));
    }

    #[tokio::test]
    async fn enqueue_rolls_back_with_the_transaction() {
        let (_dir, pool) = db().await;
        let mut tx = pool.begin().await.expect("begin");
        let n = enqueue(
            &mut tx,
            SENDER,
            &[email("alert:2025-08:OP-0001:abc", "ops@acme.example")],
            None,
            now(),
        )
        .await
        .expect("enqueue");
        assert_eq!(n, 1);
        tx.rollback().await.expect("rollback");
        assert!(statuses(&pool).await.is_empty());
    }

    #[tokio::test]
    async fn deliver_to_files_once() {
        let (dir, pool) = db().await;
        let emails = [
            email("alert:2025-08:OP-0001:abc", "ops@acme.example"),
            email("alert:2025-08:OP-0002:def", "Beta Ops <ops@beta.example>"),
        ];
        queue(&pool, &emails, Some("run-1")).await;

        let out = dir.path().join("outbox");
        let transport = Transport::parse(&format!("file:{}", out.display())).expect("transport");
        let report = deliver_queued(&pool, &transport, now())
            .await
            .expect("deliver");
        assert_eq!(report, DeliveryReport { sent: 2, failed: 0 });

        let mut files: Vec<String> = std::fs::read_dir(&out)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut expected: Vec<String> = emails
            .iter()
            .map(|e| format!("{}.eml", message_id(&e.dedup_key).trim_matches(['<', '>'])))
            .collect();
        expected.sort();
        assert_eq!(files, expected, "one .eml per message, named by Message-ID");
        let eml = std::fs::read_to_string(out.join(&expected[0])).expect("read eml");
        assert!(eml.contains("Message-ID: <"));

        for (_, status, attempts, last_error) in statuses(&pool).await {
            assert_eq!((status.as_str(), attempts, last_error), ("sent", 1, None));
        }
        let sent_at: Vec<(Option<String>,)> = sqlx::query_as("SELECT sent_at FROM email_outbox")
            .fetch_all(&pool)
            .await
            .expect("sent_at");
        assert!(
            sent_at
                .iter()
                .all(|(s,)| s.as_deref() == Some("2025-09-01T06:00:00Z"))
        );

        let again = deliver_queued(&pool, &transport, now())
            .await
            .expect("deliver again");
        assert_eq!(again, DeliveryReport::default(), "nothing is sent twice");
    }

    #[tokio::test]
    async fn failing_smtp_marks_rows_failed_and_retries_until_max() {
        let (_dir, pool) = db().await;
        queue(
            &pool,
            &[
                email("alert:2025-08:OP-0001:abc", "ops@acme.example"),
                email("alert:2025-08:OP-0002:def", "ops@beta.example"),
            ],
            None,
        )
        .await;

        let transport = Transport::Smtp(Relay::plain("127.0.0.1", closed_port()));
        let report = deliver_queued_with(&pool, &transport, now(), &FAST)
            .await
            .expect("deliver");
        assert_eq!(report, DeliveryReport { sent: 0, failed: 2 }, "both tried");
        for (key, status, attempts, last_error) in statuses(&pool).await {
            assert_eq!(status, "failed", "{key}");
            assert_eq!(attempts, 1, "{key}");
            assert!(last_error.is_some_and(|e| e.starts_with("smtp")), "{key}");
        }

        // Retried on later calls, then left alone after MAX_ATTEMPTS.
        for _ in 1..MAX_ATTEMPTS {
            deliver_queued_with(&pool, &transport, now(), &FAST)
                .await
                .expect("retry");
        }
        assert!(statuses(&pool).await.iter().all(|r| r.2 == MAX_ATTEMPTS));
        let last = deliver_queued_with(&pool, &transport, now(), &FAST)
            .await
            .expect("exhausted");
        assert_eq!(last, DeliveryReport::default());
    }

    /// A refused SMTP connection is transient: each message is tried
    /// `max_attempts` times in-process before its row is marked `failed`, and the
    /// row counts that as one delivery attempt.
    #[tokio::test]
    async fn closed_smtp_port_is_retried_in_process_before_failing() {
        let (_dir, pool) = db().await;
        queue(
            &pool,
            &[email("alert:2025-08:OP-0001:abc", "ops@acme.example")],
            None,
        )
        .await;

        let (_guard, logs) = retry::capture::start();
        let transport = Transport::Smtp(Relay::plain("127.0.0.1", closed_port()));
        let report = deliver_queued_with(&pool, &transport, now(), &FAST)
            .await
            .expect("deliver");
        assert_eq!(report, DeliveryReport { sent: 0, failed: 1 });
        assert_eq!(
            logs.retries(),
            (FAST.max_attempts - 1) as usize,
            "{}",
            logs.text()
        );
        let rows = statuses(&pool).await;
        assert_eq!((rows[0].1.as_str(), rows[0].2), ("failed", 1));
        assert!(
            rows[0]
                .3
                .as_deref()
                .is_some_and(|e| e.starts_with("smtp: ")),
            "{rows:?}"
        );
    }

    /// A permanent failure (an address the envelope cannot hold) is not retried
    /// in-process; the row fails after one try.
    #[tokio::test]
    async fn a_permanent_send_error_is_not_retried_in_process() {
        let (_dir, pool) = db().await;
        queue(
            &pool,
            &[email("alert:2025-08:OP-0001:abc", "ops@acme.example")],
            None,
        )
        .await;
        // Corrupt the stored recipient: parsing it at send time fails permanently.
        sqlx::query("UPDATE email_outbox SET recipient = 'not an address'")
            .execute(&pool)
            .await
            .expect("corrupt");

        let (_guard, logs) = retry::capture::start();
        let transport = Transport::Smtp(Relay::plain("127.0.0.1", closed_port()));
        let report = deliver_queued_with(&pool, &transport, now(), &FAST)
            .await
            .expect("deliver");
        assert_eq!(report, DeliveryReport { sent: 0, failed: 1 });
        assert_eq!(logs.retries(), 0, "{}", logs.text());
        let rows = statuses(&pool).await;
        assert!(
            rows[0]
                .3
                .as_deref()
                .is_some_and(|e| e.contains("not an address")),
            "{rows:?}"
        );
    }

    /// The same queue-and-deliver cycle on PostgreSQL, run when
    /// `OPNET_TEST_POSTGRES_URL` names a server (skipped otherwise). It works in a
    /// throw-away schema, so any database the URL points at is left as it was.
    #[tokio::test]
    async fn postgres_enqueue_deliver_and_fail() {
        let Ok(base) = std::env::var("OPNET_TEST_POSTGRES_URL") else {
            eprintln!("OPNET_TEST_POSTGRES_URL not set: PostgreSQL outbox test skipped");
            return;
        };
        sqlx::any::install_default_drivers();
        let schema = format!("opnet_mail_test_{}", std::process::id());
        let mut admin = sqlx::AnyConnection::connect(&base).await.expect("connect");
        let reset = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}");
        sqlx::raw_sql(&reset)
            .execute(&mut admin)
            .await
            .expect("schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("pool");
        sqlx::raw_sql(include_str!("../../../sql/postgres/0001_init.sql"))
            .execute(&pool)
            .await
            .expect("tables");

        let a = email("alert:2025-08:OP-0001:abc", "ops@acme.example");
        assert_eq!(queue(&pool, &[a.clone(), a.clone()], None).await, 1);

        let dir = tempfile::tempdir().expect("tempdir");
        let files = Transport::File(dir.path().to_owned());
        let report = deliver_queued(&pool, &files, now()).await.expect("deliver");
        assert_eq!(report, DeliveryReport { sent: 1, failed: 0 });
        assert_eq!(
            deliver_queued(&pool, &files, now()).await.expect("again"),
            DeliveryReport::default()
        );

        let b = email("alert:2025-08:OP-0002:def", "ops@beta.example");
        queue(&pool, &[a, b], Some("run-2")).await;
        let smtp = Transport::Smtp(Relay::plain("127.0.0.1", closed_port()));
        let report = deliver_queued_with(&pool, &smtp, now(), &FAST)
            .await
            .expect("deliver");
        assert_eq!(report, DeliveryReport { sent: 0, failed: 1 });
        let rows = statuses(&pool).await;
        assert_eq!(rows[0].1, "sent");
        assert_eq!((rows[1].1.as_str(), rows[1].2), ("failed", 1));
        assert!(rows[1].3.is_some());

        pool.close().await;
        sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await
            .expect("drop schema");
    }
}
