//! The email outbox: queue in the job's transaction, deliver afterwards.
//!
//! [`enqueue`] writes fully built messages into `email_outbox` on the connection the
//! job uses for its results, so they commit or roll back together; a dedup key that is
//! already in the table (whatever its status) is skipped, which makes re-running a job
//! harmless. A mail can also be recorded without ever being sent: `suppressed` (the
//! operator mail of a backfilled period, [`Disposition::Suppress`]) or `failed` at once
//! when it cannot be delivered (an invalid recipient address: that one mail fails
//! with its reason, never the job).
//!
//! [`deliver_queued`] then sends each queued row through a [`Transport`] — a
//! directory of `.eml` files for local runs and tests, or an SMTP relay. Several
//! deliverers may run at once (two commands, two replicas): each row is first
//! *claimed* — `queued` → `sending` with the deliverer's id and the time, in one
//! statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers) —
//! so no row is sent by two of them. After the send the row becomes `sent` or
//! `failed` (only if the claim is still ours). A claim whose deliverer died is
//! released — by the next deliverer once it is older than [`CLAIM_TIMEOUT`], or at
//! once by a process that takes the scheduler lease over ([`release_claims_of_others`])
//! — back to `failed`, so the mail is sent again under the same `Message-ID`: the
//! documented SMTP-accept window stays one mail per dead deliverer. Failed rows are
//! retried by later calls until they have had [`MAX_ATTEMPTS`] attempts (an attempt is
//! counted when the row is claimed). Within one call an SMTP send that fails
//! transiently (connection, timeout, 4xx) is first retried in-process with
//! [`retry::SMTP_SEND`], each try bounded by [`SEND_TIMEOUT`].
//!
//! A payout statement's status follows its email (issue 9 item 3): whenever a
//! statement's row changes state here, `payout_statements` is updated in the same
//! transaction (`queued` → `sent`, or `failed` with the reason), and the payouts runs of
//! that period are marked for re-publishing their marts (`job_runs.published_at` set
//! to NULL); [`DeliveryReport::statement_periods`] names those periods.

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sqlx::Row;

use super::smtp::{self, Relay};
use super::{MailError, OutgoingEmail, build_message, message_id, parse_mailbox};
use crate::db::timestamp;
use crate::retry::{self, Backoff};

/// A failed row is retried until it has been attempted this many times; after that it
/// stays `failed` for a human to look at (its `last_error` says why).
pub const MAX_ATTEMPTS: i64 = 5;

/// The longest one SMTP send may take, connection to the relay's final reply. Lettre's
/// own timeout bounds each command and the connect, not a send as a whole (lettre
/// issue #1027), so a relay that trickles its replies could hold a delivery for ever.
/// A send cut off by this is transient (retried).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// A `sending` claim older than this belongs to a deliverer that died: the next
/// deliverer releases it. Longer than one row's worst case (three tries of
/// [`SEND_TIMEOUT`] and the waits between them).
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What [`enqueue_one`] does with a mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Queue it for delivery (a key already in the outbox is left as it is).
    Queue,
    /// Queue it, and also re-queue a `suppressed` or `failed` row with the same key
    /// (`close --send-mail all`, `payouts send` of a statement whose mail failed): the new
    /// message replaces the stored one, under the same `Message-ID`.
    Requeue,
    /// Record it as `suppressed`: never sent, its key kept so a re-run does not send
    /// it either. `summarize`: list it in the next backfill summary.
    Suppress { reason: String, summarize: bool },
    /// Record it as `failed` at once with `reason` (no address to send it to).
    Undeliverable { reason: String },
}

/// What became of one mail in [`enqueue_one`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    Suppressed,
    /// Recorded `failed`, with this reason; it is not retried by deliveries.
    Failed(String),
    /// The key was already in the outbox and was left alone; its status.
    AlreadyThere(String),
}

/// How many mails of one [`enqueue_all`] call went which way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    pub queued: usize,
    pub suppressed: usize,
    pub failed: usize,
    pub already_there: usize,
}

impl EnqueueReport {
    /// Counts one mail's outcome.
    pub fn count(&mut self, outcome: &Enqueued) {
        match outcome {
            Enqueued::Queued => self.queued += 1,
            Enqueued::Suppressed => self.suppressed += 1,
            Enqueued::Failed(_) => self.failed += 1,
            Enqueued::AlreadyThere(_) => self.already_there += 1,
        }
    }
}

/// Queues `emails` from `sender`, returning how many were newly queued.
///
/// Meant to run inside the job's transaction (`&mut *tx`). Each message is built
/// here, dated `now`, and stored whole in `body`, so delivery later sends exactly
/// what the job produced even if templates change in between. A mail whose
/// recipient is not a valid address is recorded `failed` with the reason instead of
/// failing the call (see [`enqueue_one`]).
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    sender: &str,
    emails: &[OutgoingEmail],
    run_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize, MailError> {
    Ok(
        enqueue_all(conn, sender, emails, run_id, now, &Disposition::Queue)
            .await?
            .queued,
    )
}

/// [`enqueue_one`] for each of `emails`, with one disposition.
pub async fn enqueue_all(
    conn: &mut sqlx::AnyConnection,
    sender: &str,
    emails: &[OutgoingEmail],
    run_id: Option<&str>,
    now: DateTime<Utc>,
    disposition: &Disposition,
) -> Result<EnqueueReport, MailError> {
    let mut report = EnqueueReport::default();
    for email in emails {
        report.count(&enqueue_one(conn, sender, email, run_id, now, disposition).await?);
    }
    Ok(report)
}

/// Status, body, reason, attempts and summary id of an outbox row.
type StoredRow = (&'static str, String, Option<String>, i64, Option<String>);

/// `INSERT INTO email_outbox (…) VALUES `: the columns [`bind_row`] binds, in order.
const INSERT_ROW: &str = "INSERT INTO email_outbox (message_id, dedup_key, kind, period, recipient, \
     sender, subject, status, attempts, last_error, queued_at, run_id, body, summary_id) VALUES ";

/// The number of columns of [`INSERT_ROW`].
const ROW_COLUMNS: usize = 14;

/// Binds one outbox row, in [`INSERT_ROW`]'s column order.
fn bind_row<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    email: &'q OutgoingEmail,
    sender: &'q str,
    row: &'q StoredRow,
    queued_at: &'q str,
    run_id: Option<&'q str>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let (status, body, last_error, attempts, summary_id) = row;
    q.bind(message_id(&email.dedup_key))
        .bind(email.dedup_key.as_str())
        .bind(email.kind.as_str())
        .bind(email.period.as_deref())
        .bind(email.recipient.as_str())
        .bind(sender)
        .bind(email.subject.as_str())
        .bind(*status)
        .bind(*attempts)
        .bind(last_error.as_deref())
        .bind(queued_at)
        .bind(run_id)
        .bind(body.as_str())
        .bind(summary_id.as_deref())
}

/// The row of a mail that is queued or suppressed; an error when an address is bad
/// (the caller records a bad recipient `failed`) or the mail cannot be built.
fn stored_row(
    sender: &str,
    email: &OutgoingEmail,
    now: DateTime<Utc>,
    disposition: &Disposition,
) -> Result<StoredRow, MailError> {
    match disposition {
        // A suppressed mail is never sent as it stands: a later `close --send-mail
        // all` renders it anew and its row takes the new body. So it keeps its key,
        // recipient, subject and reason but no body; building and storing the MIME
        // text of every backfilled month's mail was most of a backfill's time (issue
        // 13). Its addresses are still checked, so a bad one reads `failed` as before.
        Disposition::Suppress { reason, summarize } => {
            parse_mailbox("sender", sender, &email.dedup_key)?;
            parse_mailbox("recipient", &email.recipient, &email.dedup_key)?;
            Ok((
                "suppressed",
                String::new(),
                Some(reason.clone()),
                0,
                (!summarize).then(|| NOT_SUMMARIZED.to_string()),
            ))
        }
        _ if email.is_unrendered() => Err(MailError::NotRendered {
            dedup_key: email.dedup_key.clone(),
            recipient: email.recipient.clone(),
        }),
        _ => {
            let bytes = build_message(sender, email, now)?;
            // Formatted messages are 7-bit (non-ASCII text is QP/base64-encoded by the
            // builder), so this only fails on a builder bug; the column is TEXT.
            let body = String::from_utf8(bytes).map_err(|_| MailError::NotUtf8 {
                dedup_key: email.dedup_key.clone(),
                recipient: email.recipient.clone(),
            })?;
            Ok(("queued", body, None, 0, None))
        }
    }
}

/// [`stored_row`], with a bad recipient recorded `failed` (with the reason and no
/// attempts left) instead of failing the caller.
fn row_or_failed(
    sender: &str,
    email: &OutgoingEmail,
    now: DateTime<Utc>,
    disposition: &Disposition,
) -> Result<StoredRow, MailError> {
    match stored_row(sender, email, now, disposition) {
        Err(
            e @ MailError::Address {
                role: "recipient", ..
            },
        ) => Ok((
            "failed",
            String::new(),
            Some(e.to_string()),
            MAX_ATTEMPTS,
            None,
        )),
        other => other,
    }
}

/// Records one mail in the outbox as `disposition` says.
///
/// A recipient that is not one valid address (a list `a@x, b@y`, a line break, no
/// domain…) does not fail the caller: the row is recorded `failed` with the reason
/// and [`MAX_ATTEMPTS`] attempts (no delivery retries it), its body empty, so the
/// rest of the run's mail goes out and finance sees which one did not. Any other
/// build error (a bad sender, a template bug) is the caller's error.
pub async fn enqueue_one(
    conn: &mut sqlx::AnyConnection,
    sender: &str,
    email: &OutgoingEmail,
    run_id: Option<&str>,
    now: DateTime<Utc>,
    disposition: &Disposition,
) -> Result<Enqueued, MailError> {
    let queued_at = timestamp(now);
    let row: StoredRow = match disposition {
        Disposition::Undeliverable { reason } => (
            "failed",
            String::new(),
            Some(reason.clone()),
            MAX_ATTEMPTS,
            None,
        ),
        _ => row_or_failed(sender, email, now, disposition)?,
    };
    // ON CONFLICT (PostgreSQL, SQLite ≥ 3.24) rather than a check-then-insert: it
    // stays correct when two runs race on the same key.
    let on_conflict = if *disposition == Disposition::Requeue {
        "ON CONFLICT (dedup_key) DO UPDATE SET status = 'queued', attempts = 0, last_error = NULL, \
         recipient = excluded.recipient, subject = excluded.subject, body = excluded.body, \
         queued_at = excluded.queued_at, run_id = excluded.run_id, claimed_by = NULL, claimed_at = NULL, \
         summary_id = NULL WHERE email_outbox.status IN ('suppressed', 'failed')"
    } else {
        "ON CONFLICT (dedup_key) DO NOTHING"
    };
    let mut sql = String::from(INSERT_ROW);
    crate::db::push_value_rows(&mut sql, 1, ROW_COLUMNS, false);
    let result = bind_row(
        sqlx::query(&format!("{sql} {on_conflict}")),
        email,
        sender,
        &row,
        &queued_at,
        run_id,
    )
    .execute(&mut *conn)
    .await
    .map_err(|source| MailError::Db {
        context: format!("queueing email {} to {}", email.dedup_key, email.recipient),
        source,
    })?;
    if result.rows_affected() == 0 {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT status FROM email_outbox WHERE dedup_key = $1")
                .bind(email.dedup_key.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(|source| MailError::Db {
                    context: format!("reading email {}", email.dedup_key),
                    source,
                })?;
        tracing::debug!(dedup_key = %email.dedup_key, "email already in the outbox, not queued again");
        return Ok(Enqueued::AlreadyThere(existing.unwrap_or_default()));
    }
    let (status, _, last_error, _, _) = row;
    Ok(match status {
        "queued" => Enqueued::Queued,
        "suppressed" => Enqueued::Suppressed,
        _ => {
            let reason = last_error.unwrap_or_default();
            tracing::warn!(dedup_key = %email.dedup_key, recipient = %email.recipient, error = %reason, "email not deliverable; recorded as failed");
            Enqueued::Failed(reason)
        }
    })
}

/// Rows per statement of [`enqueue_suppressed`]: 14 parameters each stays under
/// SQLite's 32,766 and PostgreSQL's 65,535.
const SUPPRESSED_ROWS_PER_STMT: usize = 2_000;

/// [`enqueue_one`] with `Disposition::Suppress` for many mails, in multi-row
/// statements: a backfill records tens of thousands of suppressed mails, and one
/// round trip each was a large share of a PostgreSQL backfill (issue 13). Same rows,
/// same outcomes: a key already in the outbox is left as it is (`already_there`), a
/// bad recipient is recorded `failed`.
pub async fn enqueue_suppressed(
    conn: &mut sqlx::AnyConnection,
    sender: &str,
    emails: &[&OutgoingEmail],
    run_id: Option<&str>,
    now: DateTime<Utc>,
    disposition: &Disposition,
) -> Result<EnqueueReport, MailError> {
    if !matches!(disposition, Disposition::Suppress { .. }) {
        let mut report = EnqueueReport::default();
        for email in emails {
            report.count(&enqueue_one(conn, sender, email, run_id, now, disposition).await?);
        }
        return Ok(report);
    }
    let queued_at = timestamp(now);
    let mut rows = Vec::with_capacity(emails.len());
    for email in emails {
        rows.push((*email, row_or_failed(sender, email, now, disposition)?));
    }
    // SQLite resolves `$N` by a linear search per name (see db::insert_frame).
    let positional = conn.backend_name() == "SQLite";
    let mut report = EnqueueReport::default();
    for chunk in rows.chunks(SUPPRESSED_ROWS_PER_STMT) {
        let mut sql = String::from(INSERT_ROW);
        crate::db::push_value_rows(&mut sql, chunk.len(), ROW_COLUMNS, positional);
        sql.push_str(" ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key, status");
        let mut q = sqlx::query(&sql).persistent(false);
        for (email, row) in chunk {
            q = bind_row(q, email, sender, row, &queued_at, run_id);
        }
        let inserted = q
            .fetch_all(&mut *conn)
            .await
            .map_err(|source| MailError::Db {
                context: format!("recording {} suppressed email(s)", chunk.len()),
                source,
            })?;
        let mut new = BTreeSet::new();
        for row in &inserted {
            let key: String = row.try_get(0).map_err(|source| MailError::Db {
                context: "reading recorded emails".into(),
                source,
            })?;
            let status: String = row.try_get(1).map_err(|source| MailError::Db {
                context: "reading recorded emails".into(),
                source,
            })?;
            if status == "suppressed" {
                report.suppressed += 1;
            } else {
                report.failed += 1;
            }
            new.insert(key);
        }
        for (email, (status, _, last_error, _, _)) in chunk {
            // The first mail of a key was inserted; a repeat in the batch was not.
            if !new.remove(&email.dedup_key) {
                report.already_there += 1;
                tracing::debug!(dedup_key = %email.dedup_key, "email already in the outbox, not recorded again");
            } else if *status == "failed" {
                tracing::warn!(dedup_key = %email.dedup_key, recipient = %email.recipient, error = %last_error.as_deref().unwrap_or(""), "email not deliverable; recorded as failed");
            }
        }
    }
    Ok(report)
}

/// `summary_id` of a suppressed row that no backfill summary is to list (`close
/// --send-mail none`).
pub const NOT_SUMMARIZED: &str = "-";

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

/// What one delivery call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: usize,
    pub failed: usize,
    /// Periods of payout statements whose status changed with their mail (their
    /// marts are due to be published again).
    pub statement_periods: BTreeSet<String>,
}

impl DeliveryReport {
    /// Adds another call's counts to this one.
    pub fn absorb(&mut self, other: DeliveryReport) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.statement_periods.extend(other.statement_periods);
    }
}

/// How a delivery call runs.
#[derive(Debug, Clone)]
pub struct DeliverOptions {
    /// The id recorded in `claimed_by`: the scheduler-lease holder id of the process
    /// when it holds the lease, so a process taking the lease over can release its
    /// claims; else a fresh id per call.
    pub holder: Option<String>,
    /// In-process retries of one SMTP send.
    pub smtp_retry: Backoff,
    /// Bound of one SMTP send.
    pub send_timeout: Duration,
}

impl Default for DeliverOptions {
    fn default() -> Self {
        DeliverOptions {
            holder: None,
            smtp_retry: retry::SMTP_SEND,
            send_timeout: SEND_TIMEOUT,
        }
    }
}

/// A transport ready to send (the SMTP client is built once per delivery run).
enum Sender {
    File(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends every queued row (and every failed row with attempts left), oldest first.
///
/// Each row is claimed just before it is sent and marked `sent` or `failed` as soon as
/// its attempt ends, so a crash mid-run loses at most the record of one send — and a
/// resend carries the same `Message-ID`. One row's failure does not stop the others;
/// only a database error ends the call early.
pub async fn deliver_queued(
    pool: &sqlx::AnyPool,
    transport: &Transport,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, MailError> {
    deliver(pool, transport, now, &DeliverOptions::default()).await
}

/// [`deliver_queued`] with the in-process retry policy of an SMTP send given (tests
/// make it fast). The file transport is never retried in-process.
pub async fn deliver_queued_with(
    pool: &sqlx::AnyPool,
    transport: &Transport,
    now: DateTime<Utc>,
    smtp_retry: &Backoff,
) -> Result<DeliveryReport, MailError> {
    let opts = DeliverOptions {
        smtp_retry: *smtp_retry,
        ..DeliverOptions::default()
    };
    deliver(pool, transport, now, &opts).await
}

fn db_err(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> MailError {
    let context = context.into();
    move |source| MailError::Db { context, source }
}

/// One claimed row.
struct Claimed {
    id: String,
    kind: String,
    from: String,
    to: String,
    body: String,
}

/// [`deliver_queued`] with every option given.
pub async fn deliver(
    pool: &sqlx::AnyPool,
    transport: &Transport,
    now: DateTime<Utc>,
    opts: &DeliverOptions,
) -> Result<DeliveryReport, MailError> {
    let mut report = DeliveryReport::default();
    let mut conn = pool.acquire().await.map_err(db_err("acquire connection"))?;
    let postgres = conn.backend_name() == "PostgreSQL";
    let stale = Utc::now() - chrono::TimeDelta::from_std(CLAIM_TIMEOUT).unwrap_or_default();
    report
        .statement_periods
        .extend(release_claims(&mut conn, None, Some(stale)).await?);
    let holder = opts.holder.clone().unwrap_or_else(|| {
        format!(
            "deliver:{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    });
    // Rows this call failed are not tried again by it: only rows claimed before it
    // started (or never) are eligible among the failed ones.
    let started = timestamp(Utc::now());
    let sent_at = timestamp(now);
    let mut sender: Option<Sender> = None;
    // The file transport takes its rows in batches (below); SMTP one at a time, so
    // the relay's accept window stays one mail wide.
    let batch_size = match transport {
        Transport::File(_) => FILE_BATCH,
        Transport::Smtp(_) => 1,
    };
    loop {
        let batch = claim_batch(&mut conn, postgres, &holder, &started, batch_size).await?;
        if batch.is_empty() {
            break;
        }
        let active = match &sender {
            Some(s) => s,
            None => match open_sender(transport).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    // Without a transport nothing can be sent: give the claims back
                    // untouched (not an attempt) and report the error.
                    for row in &batch {
                        let id = row.id.as_str();
                        sqlx::query(
                            "UPDATE email_outbox SET status = CASE WHEN attempts > 1 THEN 'failed' ELSE 'queued' END, \
                             attempts = attempts - 1, claimed_by = NULL WHERE message_id = $1 AND claimed_by = $2",
                        )
                        .bind(id)
                        .bind(holder.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(db_err(format!("giving back the claim of {id}")))?;
                    }
                    return Err(e);
                }
            },
        };
        let outcomes: Vec<Result<(), String>> = match active {
            Sender::File(dir) => write_files(dir, &batch).await,
            Sender::Smtp(_) => {
                let mut outcomes = Vec::with_capacity(batch.len());
                for row in &batch {
                    let Claimed {
                        id, from, to, body, ..
                    } = row;
                    let sent = retry::retry(
                        &opts.smtp_retry,
                        &format!("smtp send {id} to {to}"),
                        MailError::is_transient,
                        || async {
                            match tokio::time::timeout(
                                opts.send_timeout,
                                send_one(active, id, from, to, body.as_bytes()),
                            )
                            .await
                            {
                                Ok(r) => r,
                                Err(_) => Err(MailError::Transport {
                                    context: "smtp".into(),
                                    reason: format!(
                                        "no final reply from the relay within {} s",
                                        opts.send_timeout.as_secs()
                                    ),
                                    transient: true,
                                }),
                            }
                        },
                    )
                    .await;
                    if sent.is_ok() {
                        // The SMTP-accept window: accepted by the relay, not yet
                        // marked. A crash here resends this one mail, under the same
                        // Message-ID.
                        crate::failpoint::point(crate::failpoint::DELIVER_AFTER_SEND);
                    }
                    outcomes.push(sent.map_err(|e| last_error(&e)));
                }
                outcomes
            }
        };
        let marked: Vec<(&Claimed, Outcome<'_>)> = batch
            .iter()
            .zip(&outcomes)
            .map(|(row, r)| {
                let outcome = match r {
                    Ok(()) => Outcome::Sent(&sent_at),
                    Err(reason) => Outcome::Failed(reason),
                };
                (row, outcome)
            })
            .collect();
        let periods = mark_all(&mut conn, postgres, &marked, &holder).await?;
        report.statement_periods.extend(periods);
        for (row, r) in batch.iter().zip(&outcomes) {
            let (id, to) = (&row.id, &row.to);
            match r {
                Ok(()) => {
                    report.sent += 1;
                    tracing::debug!(message_id = %id, recipient = %to, %transport, "email sent");
                    crate::failpoint::point(crate::failpoint::DELIVER_AFTER_MARK);
                }
                Err(reason) => {
                    report.failed += 1;
                    tracing::warn!(message_id = %id, recipient = %to, %transport, error = %reason, "email not sent");
                }
            }
        }
    }
    // One line per delivery batch at info; each mail is a debug line (or a warning).
    if report.sent + report.failed > 0 {
        tracing::info!(sent = report.sent, failed = report.failed, %transport, "Delivery finished");
    }
    Ok(report)
}

async fn open_sender(transport: &Transport) -> Result<Sender, MailError> {
    Ok(match transport {
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
    })
}

/// Claims the oldest eligible row for `holder` (an attempt is counted now), or none.
async fn claim_batch(
    conn: &mut sqlx::AnyConnection,
    postgres: bool,
    holder: &str,
    started: &str,
    limit: usize,
) -> Result<Vec<Claimed>, MailError> {
    // One statement: on PostgreSQL the subquery locks the rows it picks and skips rows
    // another deliverer has locked; the outer status test re-checks each row after
    // any wait. SQLite runs one writer at a time, so the statement is atomic as it is.
    let sql = format!(
        "UPDATE email_outbox SET status = 'sending', claimed_by = $1, claimed_at = $2, attempts = attempts + 1 \
         WHERE message_id IN (SELECT message_id FROM email_outbox \
           WHERE status = 'queued' OR (status = 'failed' AND attempts < $3 AND (claimed_at IS NULL OR claimed_at < $4)) \
           ORDER BY queued_at, message_id LIMIT {limit}{}) \
         AND status IN ('queued', 'failed') \
         RETURNING message_id, kind, sender, recipient, body, queued_at",
        if postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    );
    let rows = sqlx::query(&sql)
        .bind(holder)
        .bind(timestamp(Utc::now()))
        .bind(MAX_ATTEMPTS)
        .bind(started)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("claiming queued emails"))?;
    let mut claimed = rows
        .iter()
        .map(|r| -> Result<(String, Claimed), sqlx::Error> {
            Ok((
                r.try_get(5)?,
                Claimed {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    from: r.try_get(2)?,
                    to: r.try_get(3)?,
                    body: r.try_get(4)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err("decoding claimed emails"))?;
    // RETURNING has no order: oldest first, as they were picked.
    claimed.sort_by(|(qa, a), (qb, b)| (qa, &a.id).cmp(&(qb, &b.id)));
    Ok(claimed.into_iter().map(|(_, c)| c).collect())
}

/// Rows the file transport claims and writes at once: one claim, one directory sync
/// and one marking transaction per batch instead of per mail (issue 13). A crash
/// before the batch is marked rewrites the same files (named by `Message-ID`) on the
/// next delivery, so a batch never yields a second copy of a mail.
const FILE_BATCH: usize = 200;

/// Threads writing a batch's files side by side ([`write_files`]).
const FILE_WRITERS: usize = 8;

/// Writes each claimed row's `.eml`, then syncs the directory once; a failed sync
/// fails the whole batch (the files may not be durable; the next delivery rewrites
/// them).
///
/// The files are written side by side by [`FILE_WRITERS`] blocking threads, each
/// file with its own fsync (issue 13): the file system commits concurrent fsyncs
/// together, where one after the other each waited for its own journal commit. Every file is still on disk
/// before its rename, and the renames before the directory sync.
async fn write_files(dir: &Path, batch: &[Claimed]) -> Vec<Result<(), String>> {
    let failed = |reason: String| {
        last_error(&MailError::Transport {
            context: format!("writing {}", dir.display()),
            reason,
            transient: false,
        })
    };
    let mut writes = tokio::task::JoinSet::new();
    for writer in 0..FILE_WRITERS {
        let dir = dir.to_path_buf();
        let rows: Vec<(usize, String, String)> = batch
            .iter()
            .enumerate()
            .skip(writer)
            .step_by(FILE_WRITERS)
            .map(|(i, row)| (i, row.id.clone(), row.body.clone()))
            .collect();
        writes.spawn_blocking(move || {
            rows.into_iter()
                .map(|(i, id, body)| (i, write_eml_now(&dir, &id, body.as_bytes())))
                .collect::<Vec<_>>()
        });
    }
    let mut outcomes: Vec<Result<(), String>> =
        vec![Err(failed("the writing task stopped".into())); batch.len()];
    while let Some(joined) = writes.join_next().await {
        // A writer that panicked leaves its rows' outcomes failed.
        for (i, written) in joined.unwrap_or_default() {
            if let Some(outcome) = outcomes.get_mut(i) {
                *outcome = written.map_err(|e| failed(e.to_string()));
            }
        }
    }
    for _ in outcomes.iter().filter(|o| o.is_ok()) {
        crate::failpoint::point(crate::failpoint::DELIVER_AFTER_SEND);
    }
    if let Err(e) = sync_dir(dir).await {
        let reason = format!("syncing {}: {e}", dir.display());
        for o in &mut outcomes {
            if o.is_ok() {
                *o = Err(reason.clone());
            }
        }
    }
    outcomes
}

enum Outcome<'a> {
    Sent(&'a str),
    Failed(&'a str),
}

/// Records the outcome of a claimed row — only while the claim is still ours — and
/// lets a statement follow its mail, in one transaction. Returns the statement's
/// period when one changed.
async fn mark_all(
    conn: &mut sqlx::AnyConnection,
    postgres: bool,
    rows: &[(&Claimed, Outcome<'_>)],
    holder: &str,
) -> Result<Vec<String>, MailError> {
    let ctx = match rows {
        [(row, _)] => format!("marking email {} to {}", row.id, row.to),
        _ => format!("marking {} emails", rows.len()),
    };
    let mut tx = if postgres {
        sqlx::Connection::begin(&mut *conn).await
    } else {
        sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await
    }
    .map_err(db_err(ctx.clone()))?;
    let mut periods = Vec::new();
    for (row, outcome) in rows {
        let id = row.id.as_str();
        let q = match outcome {
            Outcome::Sent(sent_at) => sqlx::query(
                "UPDATE email_outbox SET status = 'sent', sent_at = $1, last_error = NULL \
                 WHERE message_id = $2 AND claimed_by = $3 AND status = 'sending'",
            )
            .bind(*sent_at),
            Outcome::Failed(reason) => sqlx::query(
                "UPDATE email_outbox SET status = 'failed', last_error = $1 \
                 WHERE message_id = $2 AND claimed_by = $3 AND status = 'sending'",
            )
            .bind(*reason),
        };
        let res = q
            .bind(id)
            .bind(holder)
            .execute(&mut *tx)
            .await
            .map_err(db_err(format!("{ctx}: {id}")))?;
        if res.rows_affected() == 0 {
            // Released as dead (this process was cut off longer than a claim lasts,
            // or lost the lease): another deliverer owns the row now and records it.
            tracing::warn!(message_id = %id, "claim was released while sending; the row is left to its new owner");
            continue;
        }
        if row.kind == super::kind::STATEMENT
            && let Some(period) = statement_follows(&mut tx, id).await?
        {
            periods.push(period);
        }
    }
    tx.commit().await.map_err(db_err(ctx))?;
    Ok(periods)
}

/// Sets the status of the statement(s) mailed as `message_id` from their outbox row —
/// `sent` (with `sent_at`), `failed` (with the row's `last_error` as `mail_error`), else
/// `queued` — and marks the period's payouts runs for re-publishing. Returns the period.
pub async fn statement_follows(
    conn: &mut sqlx::AnyConnection,
    message_id: &str,
) -> Result<Option<String>, MailError> {
    let ctx = || format!("updating the statement of email {message_id}");
    let res = sqlx::query(
        "UPDATE payout_statements SET \
         status = (SELECT CASE o.status WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'failed' ELSE 'queued' END \
                   FROM email_outbox o WHERE o.message_id = payout_statements.message_id), \
         sent_at = (SELECT o.sent_at FROM email_outbox o WHERE o.message_id = payout_statements.message_id), \
         mail_error = (SELECT CASE WHEN o.status = 'failed' THEN o.last_error END \
                       FROM email_outbox o WHERE o.message_id = payout_statements.message_id) \
         WHERE message_id = $1 AND EXISTS (SELECT 1 FROM email_outbox o WHERE o.message_id = $1)",
    )
    .bind(message_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err(ctx()))?;
    if res.rows_affected() == 0 {
        return Ok(None);
    }
    let period: Option<String> =
        sqlx::query_scalar("SELECT period FROM payout_statements WHERE message_id = $1 LIMIT 1")
            .bind(message_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err(ctx()))?;
    if let Some(p) = &period {
        sqlx::query(
            "UPDATE job_runs SET published_at = NULL WHERE job = 'payouts' AND period = $1 AND status = 'succeeded'",
        )
        .bind(p)
        .execute(&mut *conn)
        .await
        .map_err(db_err(ctx()))?;
    }
    Ok(period)
}

/// Releases `sending` claims as dead: of every holder other than `keep` (a process
/// that just took the scheduler lease: the others no longer hold it), and/or claimed
/// before `older_than`. The rows become `failed` ("interrupted while sending"), so the
/// next delivery sends them again under the same `Message-ID` (the relay may or may
/// not have accepted them: the SMTP-accept window). Returns the periods of statements
/// that changed.
async fn release_claims(
    conn: &mut sqlx::AnyConnection,
    keep: Option<&str>,
    older_than: Option<DateTime<Utc>>,
) -> Result<BTreeSet<String>, MailError> {
    let mut cond = Vec::new();
    if keep.is_some() {
        cond.push("claimed_by IS NULL OR claimed_by <> $2");
    }
    if older_than.is_some() {
        cond.push("claimed_at IS NULL OR claimed_at < $3");
    }
    if cond.is_empty() {
        return Ok(BTreeSet::new());
    }
    let sql = format!(
        "UPDATE email_outbox SET status = 'failed', \
         last_error = $1 || COALESCE(claimed_by, '?') || ' at ' || COALESCE(claimed_at, '?') || ')', \
         claimed_at = NULL WHERE status = 'sending' AND (({})) RETURNING message_id, kind",
        cond.join(") OR (")
    );
    let rows = sqlx::query(&sql)
        .bind("interrupted while sending (claimed by ")
        .bind(keep.unwrap_or(""))
        .bind(older_than.map(timestamp).unwrap_or_default())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("releasing claims of dead deliverers"))?;
    let mut periods = BTreeSet::new();
    for r in &rows {
        let id: String = r.try_get(0).map_err(db_err("decoding a released claim"))?;
        let kind: String = r.try_get(1).map_err(db_err("decoding a released claim"))?;
        tracing::warn!(message_id = %id, "released the claim of a dead deliverer; the mail will be sent again under the same Message-ID");
        if kind == super::kind::STATEMENT {
            periods.extend(statement_follows(conn, &id).await?);
        }
    }
    Ok(periods)
}

/// Called by a process that has just taken the scheduler lease: every other holder
/// is gone (or cut off), so their `sending` claims are dead and released now rather
/// than after [`CLAIM_TIMEOUT`]. Returns the periods of statements that changed.
pub async fn release_claims_of_others(
    pool: &sqlx::AnyPool,
    holder: &str,
) -> Result<BTreeSet<String>, MailError> {
    let mut conn = pool.acquire().await.map_err(db_err("acquire connection"))?;
    release_claims(&mut conn, Some(holder), None).await
}

/// How many mails are `failed` that were queued or tried at or after `since` — the
/// mail a command that started then left failed (its exit code says so).
pub async fn failed_since(pool: &sqlx::AnyPool, since: DateTime<Utc>) -> Result<i64, MailError> {
    let since = timestamp(since);
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM email_outbox WHERE status = 'failed' AND (queued_at >= $1 OR claimed_at >= $1)",
    )
    .bind(since)
    .fetch_one(pool)
    .await
    .map_err(db_err("counting failed emails"))
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
        // Deliveries write files in batches (`write_files`); one file on its own is
        // written and its directory synced here.
        Sender::File(dir) => {
            let written = match write_eml(dir, id, body).await {
                Ok(()) => sync_dir(dir).await,
                Err(e) => Err(e),
            };
            written.map_err(|e| MailError::Transport {
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
/// never sees half a message and a resend overwrites rather than duplicates. The file
/// is flushed to disk before the rename and the directory after it, so a message
/// recorded `sent` survives a power cut.
async fn write_eml(dir: &Path, id: &str, body: &[u8]) -> std::io::Result<()> {
    let (dir, id, body) = (dir.to_path_buf(), id.to_string(), body.to_vec());
    tokio::task::spawn_blocking(move || write_eml_now(&dir, &id, &body))
        .await
        .map_err(std::io::Error::other)?
}

/// [`write_eml`] on the calling thread, which it blocks.
fn write_eml_now(dir: &Path, id: &str, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
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
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(body)?;
    file.sync_all()?;
    drop(file);
    // The directory is synced by the caller, once per batch ([`write_files`]).
    std::fs::rename(&tmp, &path)
}

/// fsync a directory, so a rename in it is durable (POSIX; elsewhere a no-op).
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        tokio::fs::File::open(dir).await?.sync_all().await?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
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

#[cfg(test)]
mod tests;
