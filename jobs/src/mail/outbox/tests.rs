//! Tests of the email outbox: idempotent enqueue inside the job's transaction, delivery
//! to .eml files and SMTP (failing, closed, hanging and permanent-error relays), invalid
//! recipients, suppressed mail, claims by concurrent deliverers (SQLite and PostgreSQL)
//! and the statement status that follows its mail.

use super::*;
use crate::mail::{Attachment, kind};
use chrono::TimeZone;
use sqlx::AnyPool;
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

/// A migrated SQLite database of its own.
async fn db() -> (tempfile::TempDir, AnyPool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("opnet.db").display());
    let db = crate::db::Db::connect(&url).await.expect("connect");
    db.migrate().await.expect("migrate");
    (dir, db.pool)
}

fn email(key: &str, to: &str) -> OutgoingEmail {
    OutgoingEmail {
        dedup_key: key.into(),
        kind: "alert".into(),
        audience: crate::mail::Audience::Operator,
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
    assert_eq!(queued_at, "2025-09-01T06:00:00.000Z");
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
    assert_eq!(
        report,
        DeliveryReport {
            sent: 2,
            failed: 0,
            ..Default::default()
        }
    );

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
            .all(|(s,)| s.as_deref() == Some("2025-09-01T06:00:00.000Z"))
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
    assert_eq!(
        report,
        DeliveryReport {
            sent: 0,
            failed: 2,
            ..Default::default()
        },
        "both tried"
    );
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
    assert_eq!(
        report,
        DeliveryReport {
            sent: 0,
            failed: 1,
            ..Default::default()
        }
    );
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
    assert_eq!(
        report,
        DeliveryReport {
            sent: 0,
            failed: 1,
            ..Default::default()
        }
    );
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

/// The same queue-and-deliver cycle on PostgreSQL (a database of its own,
/// migrated like production).
#[tokio::test(flavor = "multi_thread")]
async fn postgres_enqueue_deliver_and_fail() {
    let Some(pg) = crate::db::testing::pg_database("outbox").await else {
        return;
    };
    let db = crate::db::Db::connect(&pg.url).await.expect("connect");
    db.migrate().await.expect("migrate");
    let pool = db.pool.clone();

    let a = email("alert:2025-08:OP-0001:abc", "ops@acme.example");
    assert_eq!(queue(&pool, &[a.clone(), a.clone()], None).await, 1);

    let dir = tempfile::tempdir().expect("tempdir");
    let files = Transport::File(dir.path().to_owned());
    let report = deliver_queued(&pool, &files, now()).await.expect("deliver");
    assert_eq!(report.sent, 1);
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
    assert_eq!((report.sent, report.failed), (0, 1));
    let rows = statuses(&pool).await;
    assert_eq!(rows[0].1, "sent");
    assert_eq!((rows[1].1.as_str(), rows[1].2), ("failed", 1));
    assert!(rows[1].3.is_some());
    pool.close().await;
}

/// Issue 9 item 5: a recipient that is not one valid address fails that one mail
/// with its reason at enqueue — not the call, not the other mails — and no
/// delivery tries it.
#[tokio::test]
async fn an_invalid_recipient_fails_only_its_own_mail() {
    let (dir, pool) = db().await;
    let emails = [
        email("alert:2025-08:OP-0001:a", "ops@acme.example"),
        email("alert:2025-08:OP-0002:b", "a@x.example, b@y.example"),
        email(
            "alert:2025-08:OP-0003:c",
            "c@x.example\r\nBcc: evil@y.example",
        ),
        email("alert:2025-08:OP-0004:d", ""),
    ];
    let mut conn = pool.acquire().await.expect("acquire");
    let report = enqueue_all(&mut conn, SENDER, &emails, None, now(), &Disposition::Queue)
        .await
        .expect("one bad address does not fail the call");
    drop(conn);
    assert_eq!((report.queued, report.failed), (1, 3));
    let rows = statuses(&pool).await;
    assert_eq!(rows[0].1, "queued");
    for (key, status, attempts, error) in &rows[1..] {
        assert_eq!(
            (status.as_str(), *attempts),
            ("failed", MAX_ATTEMPTS),
            "{key}"
        );
        assert!(
            error
                .as_deref()
                .unwrap_or("")
                .contains("invalid recipient address"),
            "{key}: {error:?}"
        );
    }
    assert!(
        rows[1]
            .3
            .as_deref()
            .unwrap_or("")
            .contains("list of addresses")
    );
    assert!(rows[2].3.as_deref().unwrap_or("").contains("line break"));
    let out = Transport::File(dir.path().join("out"));
    let d = deliver_queued(&pool, &out, now()).await.expect("deliver");
    assert_eq!(
        (d.sent, d.failed),
        (1, 0),
        "only the good one is sent, the bad ones are not retried"
    );
    let files = std::fs::read_dir(dir.path().join("out"))
        .expect("dir")
        .count();
    assert_eq!(files, 1);
}

/// Issue 9 item 16: a suppressed mail is never sent and keeps its key, so a re-run
/// does not queue it; only `Requeue` (`close --send-mail all`) releases it.
#[tokio::test]
async fn suppressed_mail_is_kept_and_only_released_on_request() {
    let (dir, pool) = db().await;
    let a = email("alert:2024-01:OP-0001:a", "ops@acme.example");
    let mut conn = pool.acquire().await.expect("acquire");
    let suppress = Disposition::Suppress {
        reason: "suppressed: backfill".into(),
        summarize: true,
    };
    assert_eq!(
        enqueue_one(&mut conn, SENDER, &a, None, now(), &suppress)
            .await
            .expect("enqueue"),
        Enqueued::Suppressed
    );
    assert_eq!(
        enqueue_one(&mut conn, SENDER, &a, None, now(), &Disposition::Queue)
            .await
            .expect("again"),
        Enqueued::AlreadyThere("suppressed".into())
    );
    drop(conn);
    let out = Transport::File(dir.path().join("out"));
    assert_eq!(
        deliver_queued(&pool, &out, now()).await.expect("deliver"),
        DeliveryReport::default()
    );
    let mut conn = pool.acquire().await.expect("acquire");
    assert_eq!(
        enqueue_one(&mut conn, SENDER, &a, None, now(), &Disposition::Requeue)
            .await
            .expect("requeue"),
        Enqueued::Queued
    );
    drop(conn);
    assert_eq!(
        deliver_queued(&pool, &out, now())
            .await
            .expect("deliver")
            .sent,
        1
    );
    // A sent mail is not requeued by anything.
    let mut conn = pool.acquire().await.expect("acquire");
    assert_eq!(
        enqueue_one(&mut conn, SENDER, &a, None, now(), &Disposition::Requeue)
            .await
            .expect("requeue"),
        Enqueued::AlreadyThere("sent".into())
    );
}

/// Issue 13: a suppressed mail is stored without a body (and may arrive unrendered);
/// an unrendered mail is never queued, and `close --send-mail all` stores the
/// rendered body it brings.
#[tokio::test]
async fn suppressed_mail_has_no_body_and_unrendered_mail_is_never_queued() {
    let (_dir, pool) = db().await;
    let full = email("alert:2024-02:OP-0001:a", "ops@acme.example");
    let bare = OutgoingEmail::unrendered(
        full.dedup_key.clone(),
        &full.kind,
        full.audience,
        full.period.clone(),
        full.recipient.clone(),
        full.subject.clone(),
    );
    let suppress = Disposition::Suppress {
        reason: "suppressed: backfill".into(),
        summarize: true,
    };
    let mut conn = pool.acquire().await.expect("acquire");
    for how in [Disposition::Queue, Disposition::Requeue] {
        let err = enqueue_one(&mut conn, SENDER, &bare, None, now(), &how)
            .await
            .expect_err("an unrendered mail is refused");
        assert!(matches!(err, MailError::NotRendered { .. }), "{err}");
    }
    assert_eq!(
        enqueue_one(&mut conn, SENDER, &bare, None, now(), &suppress)
            .await
            .expect("suppress"),
        Enqueued::Suppressed
    );
    let body: String = sqlx::query_scalar("SELECT body FROM email_outbox WHERE dedup_key = $1")
        .bind(&full.dedup_key)
        .fetch_one(&mut *conn)
        .await
        .expect("row");
    assert_eq!(body, "");
    // A bad recipient still reads failed when suppressed.
    let mut bad = bare.clone();
    bad.dedup_key = "alert:2024-02:OP-0002:a".into();
    bad.recipient = "a@x, b@y".into();
    assert!(matches!(
        enqueue_one(&mut conn, SENDER, &bad, None, now(), &suppress)
            .await
            .expect("suppress"),
        Enqueued::Failed(_)
    ));
    assert_eq!(
        enqueue_one(&mut conn, SENDER, &full, None, now(), &Disposition::Requeue)
            .await
            .expect("requeue"),
        Enqueued::Queued
    );
    let body: String = sqlx::query_scalar("SELECT body FROM email_outbox WHERE dedup_key = $1")
        .bind(&full.dedup_key)
        .fetch_one(&mut *conn)
        .await
        .expect("row");
    assert!(
        body.contains("Subject:"),
        "the rendered body is stored when queued"
    );
}

/// Issue 9 item 2: a claim whose deliverer died is released — by age, or at once
/// by a process that took the lease over — and the mail is sent again; a live
/// claim is left alone.
#[tokio::test]
async fn dead_claims_are_released_and_sent_live_ones_are_not() {
    let (dir, pool) = db().await;
    queue(
        &pool,
        &[
            email("alert:2025-08:OP-0001:a", "ops@acme.example"),
            email("alert:2025-08:OP-0002:b", "ops@beta.example"),
        ],
        None,
    )
    .await;
    let old = timestamp(Utc::now() - chrono::TimeDelta::hours(1));
    let fresh = timestamp(Utc::now());
    for (key, holder, at) in [
        ("alert:2025-08:OP-0001:a", "host:1:dead", old.as_str()),
        ("alert:2025-08:OP-0002:b", "host:2:alive", fresh.as_str()),
    ] {
        sqlx::query("UPDATE email_outbox SET status = 'sending', attempts = 1, claimed_by = $1, claimed_at = $2 WHERE dedup_key = $3")
            .bind(holder)
            .bind(at)
            .bind(key)
            .execute(&pool)
            .await
            .expect("claim");
    }
    let out = Transport::File(dir.path().join("out"));
    let d = deliver_queued(&pool, &out, now()).await.expect("deliver");
    assert_eq!(
        d.sent, 1,
        "the stale claim is released and sent; the live one is not touched"
    );
    let rows = statuses(&pool).await;
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("sent", 2));
    assert_eq!(rows[1].1, "sending");
    // The process that takes the lease over releases every other holder's claim.
    release_claims_of_others(&pool, "host:3:new")
        .await
        .expect("release");
    let rows = statuses(&pool).await;
    assert_eq!(rows[1].1, "failed");
    assert!(
        rows[1]
            .3
            .as_deref()
            .unwrap_or("")
            .contains("interrupted while sending (claimed by host:2:alive"),
        "{rows:?}"
    );
    let d = deliver_queued(&pool, &out, now()).await.expect("deliver");
    assert_eq!(d.sent, 1);
}

/// Issue 9 item 2: deliverers on separate pools (separate connections, as separate
/// processes) share the queue without sending a row twice: every row ends `sent`
/// after exactly one attempt (a second claim would count a second attempt).
async fn concurrent_deliverers_claim_each_row_once(url: &str) {
    let db = crate::db::Db::connect(url).await.expect("connect");
    db.migrate().await.expect("migrate");
    let emails: Vec<OutgoingEmail> = (0..120)
        .map(|i| email(&format!("alert:2025-08:OP-{i:04}:x"), "ops@acme.example"))
        .collect();
    queue(&db.pool, &emails, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Transport::File(dir.path().to_owned());
    let mut pools = Vec::new();
    for _ in 0..4 {
        pools.push(crate::db::Db::connect(url).await.expect("connect").pool);
    }
    let tasks: Vec<_> = pools
        .iter()
        .map(|p| {
            let (p, out) = (p.clone(), out.clone());
            tokio::spawn(async move { deliver_queued(&p, &out, now()).await })
        })
        .collect();
    let mut sent = 0;
    let mut each = Vec::new();
    for t in tasks {
        let r = t.await.expect("join").expect("deliver");
        sent += r.sent;
        each.push(r.sent);
    }
    assert_eq!(sent, 120, "{each:?}");
    let attempts: Vec<(String, i64)> = sqlx::query_as("SELECT status, attempts FROM email_outbox")
        .fetch_all(&db.pool)
        .await
        .expect("rows");
    assert!(
        attempts.iter().all(|(s, a)| s == "sent" && *a == 1),
        "{attempts:?}"
    );
    for p in pools {
        p.close().await;
    }
    db.pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_concurrent_deliverers_claim_each_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    concurrent_deliverers_claim_each_row_once(&format!(
        "sqlite://{}/opnet.db",
        dir.path().display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_concurrent_deliverers_claim_each_row_once() {
    let Some(pg) = crate::db::testing::pg_database("outbox_claims").await else {
        return;
    };
    concurrent_deliverers_claim_each_row_once(&pg.url).await;
}

/// Issue 9 item 3: a statement's status follows its mail — `failed` with the
/// reason while the relay is down, then `sent` — and its payouts runs are marked
/// for re-publishing the marts.
#[tokio::test]
async fn a_statement_follows_its_mail() {
    let (dir, pool) = db().await;
    let mut st = email("statement:2025-08:OP-0001:USD:r1", "ops@acme.example");
    st.kind = kind::STATEMENT.into();
    let id = message_id(&st.dedup_key);
    queue(&pool, &[st], None).await;
    for sql in [
        "INSERT INTO job_runs (run_id, job, period, started_at, finished_at, status, published_at) \
         VALUES ('r1', 'payouts', '2025-08', 'a', 'b', 'succeeded', 'c')",
        "INSERT INTO payout_statements (period, operator_id, currency, phase, tier, software_cents, implementation_cents, \
         support_cents, operator_share_cents, candlefish_share_cents, clawback_cents, carried_in_cents, payable_cents, \
         carried_out_cents, statement_on, due_on, status, revision, plan_version, run_id, message_id) \
         VALUES ('2025-08', 'OP-0001', 'USD', 'p', 'none', 1, 0, 0, 1, 0, 0, 0, 1, 0, '2025-09-01', '2025-10-01', 'queued', 1, 'v', 'r1', $1)",
    ] {
        sqlx::query(sql)
            .bind(&id)
            .execute(&pool)
            .await
            .expect("seed");
    }
    let state = || async {
        sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
            "SELECT status, sent_at, mail_error FROM payout_statements",
        )
        .fetch_one(&pool)
        .await
        .expect("statement")
    };
    let published = || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT published_at FROM job_runs")
            .fetch_one(&pool)
            .await
            .expect("run")
    };
    let down = Transport::Smtp(Relay::plain("127.0.0.1", closed_port()));
    let d = deliver_queued_with(&pool, &down, now(), &FAST)
        .await
        .expect("deliver");
    assert_eq!(d.failed, 1);
    assert_eq!(d.statement_periods.iter().collect::<Vec<_>>(), ["2025-08"]);
    let (status, sent_at, error) = state().await;
    assert_eq!((status.as_str(), sent_at), ("failed", None));
    assert!(error.unwrap_or_default().starts_with("smtp"));
    assert_eq!(published().await, None, "marked for re-publishing");

    sqlx::query("UPDATE job_runs SET published_at = 'c'")
        .execute(&pool)
        .await
        .expect("reset");
    let up = Transport::File(dir.path().join("out"));
    let d = deliver_queued(&pool, &up, now()).await.expect("deliver");
    assert_eq!(d.sent, 1);
    assert_eq!(
        state().await,
        ("sent".into(), Some("2025-09-01T06:00:00.000Z".into()), None)
    );
    assert_eq!(published().await, None);
}

/// Issue 9 item 17: one SMTP send is bounded as a whole. A relay that accepts the
/// connection and then never answers is cut off after the timeout; a timeout is
/// transient (retried in-process, then the row is `failed` and retried later).
#[tokio::test]
async fn an_smtp_send_that_hangs_times_out_as_transient() {
    let (_dir, pool) = db().await;
    queue(
        &pool,
        &[email("alert:2025-08:OP-0001:a", "ops@acme.example")],
        None,
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts and sends a greeting, then stays silent for ever.
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"220 slow.example ESMTP\r\n").await;
            held.push(s);
        }
    });
    let (_guard, logs) = retry::capture::start();
    let opts = DeliverOptions {
        holder: None,
        smtp_retry: FAST,
        send_timeout: Duration::from_millis(300),
    };
    let started = std::time::Instant::now();
    let d = deliver(
        &pool,
        &Transport::Smtp(Relay::plain("127.0.0.1", port)),
        now(),
        &opts,
    )
    .await
    .expect("deliver");
    assert_eq!((d.sent, d.failed), (0, 1));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        logs.retries(),
        (FAST.max_attempts - 1) as usize,
        "transient: retried"
    );
    let rows = statuses(&pool).await;
    assert!(
        rows[0]
            .3
            .as_deref()
            .unwrap_or("")
            .contains("no final reply"),
        "{rows:?}"
    );
    server.abort();
}

/// Issue 9 item 17: the `.eml` is written through a synced temporary file and
/// renamed; no temporary file is left behind.
#[tokio::test]
async fn eml_files_are_complete_and_no_temporary_file_is_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_eml(dir.path(), "<abc@opnet>", b"Subject: x\r\n\r\nbody")
        .await
        .expect("write");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["abc@opnet.eml"]);
    assert_eq!(
        std::fs::read(dir.path().join("abc@opnet.eml")).expect("read"),
        b"Subject: x\r\n\r\nbody"
    );
}

/// message_id, dedup_key, recipient, status, attempts, last_error, body, summary_id.
type OutboxRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    String,
    Option<String>,
);

/// Issue 13: recording suppressed mail in multi-row statements gives exactly the rows
/// and outcomes of recording it one by one — a key already there is left alone, a
/// repeated key in the batch counts once, a bad recipient is `failed` — across the
/// statement boundary, on SQLite and PostgreSQL.
async fn suppressed_batch_equals_one_by_one(url_a: &str, url_b: &str) {
    let suppress = Disposition::Suppress {
        reason: "suppressed: backfill".into(),
        summarize: true,
    };
    let mut mails: Vec<OutgoingEmail> = (0..2_503)
        .map(|i| email(&format!("alert:2024-01:OP-{i:04}:a"), "ops@acme.example"))
        .collect();
    mails[7].recipient = "a@x, b@y".into();
    mails[2_100].recipient = "line\r\nbreak@x.example".into();
    mails.push(mails[3].clone());
    let already = email("alert:2024-01:OP-0011:a", "ops@acme.example");
    let mut states = Vec::new();
    for (url, batched) in [(url_a, true), (url_b, false)] {
        let db = crate::db::Db::connect(url).await.expect("connect");
        db.migrate().await.expect("migrate");
        let mut conn = db.pool.acquire().await.expect("acquire");
        enqueue_one(
            &mut conn,
            SENDER,
            &already,
            None,
            now(),
            &Disposition::Queue,
        )
        .await
        .expect("queue one");
        let report = if batched {
            let refs: Vec<&OutgoingEmail> = mails.iter().collect();
            enqueue_suppressed(&mut conn, SENDER, &refs, Some("run"), now(), &suppress)
                .await
                .expect("batch")
        } else {
            enqueue_all(&mut conn, SENDER, &mails, Some("run"), now(), &suppress)
                .await
                .expect("one by one")
        };
        assert_eq!(
            (
                report.suppressed,
                report.failed,
                report.already_there,
                report.queued
            ),
            (2_500, 2, 2, 0),
            "batched: {batched}"
        );
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT message_id, dedup_key, recipient, status, attempts, last_error, body, summary_id \
             FROM email_outbox ORDER BY dedup_key",
        )
        .fetch_all(&mut *conn)
        .await
        .expect("rows");
        states.push(rows);
        drop(conn);
        db.pool.close().await;
    }
    assert_eq!(states[0].len(), 2_503);
    assert_eq!(states[0], states[1]);
}

#[tokio::test]
async fn sqlite_suppressed_batch_equals_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = format!("sqlite://{}", dir.path().join("a.db").display());
    let b = format!("sqlite://{}", dir.path().join("b.db").display());
    suppressed_batch_equals_one_by_one(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_suppressed_batch_equals_one_by_one() {
    let (Some(a), Some(b)) = (
        crate::db::testing::pg_database("outbox_batch_a").await,
        crate::db::testing::pg_database("outbox_batch_b").await,
    ) else {
        return;
    };
    suppressed_batch_equals_one_by_one(&a.url, &b.url).await;
}

/// Issue 13: the file transport claims, writes and marks in batches of
/// [`FILE_BATCH`]: every queued mail of several batches becomes exactly one `.eml`
/// named by its Message-ID, holding its stored bytes, and is marked sent once; a
/// second delivery finds nothing.
#[tokio::test]
async fn file_delivery_in_batches_writes_each_mail_once() {
    let (dir, pool) = db().await;
    let n = 2 * FILE_BATCH + 37;
    let mails: Vec<OutgoingEmail> = (0..n)
        .map(|i| email(&format!("alert:2025-08:OP-{i:04}:a"), "ops@acme.example"))
        .collect();
    assert_eq!(queue(&pool, &mails, None).await, n);
    let out = Transport::File(dir.path().join("out"));
    let d = deliver_queued(&pool, &out, now()).await.expect("deliver");
    assert_eq!((d.sent, d.failed), (n, 0));
    let files: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(files.len(), n, "one file per mail, no temporary files left");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT message_id, body FROM email_outbox WHERE status = 'sent'")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(rows.len(), n);
    for (id, body) in &rows {
        let stem = id.trim_matches(|c| c == '<' || c == '>');
        let written = std::fs::read(dir.path().join("out").join(format!("{stem}.eml")))
            .expect("the mail's file");
        assert_eq!(written, body.as_bytes());
    }
    let again = deliver_queued(&pool, &out, now()).await.expect("again");
    assert_eq!((again.sent, again.failed), (0, 0));
}

/// Issue 13: a batch's files are written by several threads; a file that cannot be
/// written fails its own mail only (with the folder named), and every other mail of
/// the batch is written and marked sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_cannot_be_written_fails_only_its_own_mail() {
    let (dir, pool) = db().await;
    let n = FILE_BATCH + 3;
    let mails: Vec<OutgoingEmail> = (0..n)
        .map(|i| email(&format!("alert:2025-09:OP-{i:04}:a"), "ops@acme.example"))
        .collect();
    assert_eq!(queue(&pool, &mails, None).await, n);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let blocked: String = sqlx::query_scalar(
        "SELECT message_id FROM email_outbox WHERE dedup_key = 'alert:2025-09:OP-0042:a'",
    )
    .fetch_one(&pool)
    .await
    .expect("message id");
    let stem = blocked.trim_matches(|c| c == '<' || c == '>');
    // A folder where its temporary file would go: creating the file fails.
    std::fs::create_dir(out.join(format!(".{stem}.eml.tmp"))).expect("blocker");
    let d = deliver_queued(&pool, &Transport::File(out.clone()), now())
        .await
        .expect("deliver");
    assert_eq!(d.sent, n - 1);
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT message_id, status, last_error FROM email_outbox")
            .fetch_all(&pool)
            .await
            .expect("rows");
    for (id, status, error) in rows {
        let stem = id.trim_matches(|c| c == '<' || c == '>');
        let file = out.join(format!("{stem}.eml"));
        if id == blocked {
            assert_ne!(status, "sent");
            let error = error.unwrap_or_default();
            assert!(
                error.contains("writing") && error.contains("out"),
                "{error}"
            );
            assert!(!file.exists());
        } else {
            assert_eq!(status, "sent", "{id}");
            assert!(file.exists(), "{id}");
        }
    }
}
