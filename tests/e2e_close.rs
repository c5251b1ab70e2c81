//! End-to-end (issues 2 and 3): generated data → ingest → `close --through` on real
//! PostgreSQL and on SQLite → approve → send over SMTP to a real capture server; the
//! mails are read back and checked against the database.

#![allow(clippy::unwrap_used)]

mod common;

use common::SmtpCapture;
use mail_parser::{MessageParser, MimeHeaders};
use opnet::app::App;
use opnet::close::{self, CloseOptions};
use opnet::commands::payouts;
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::Period;
use sqlx::Row;
use std::collections::HashMap;

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

async fn scenario(database: String) {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    generate::generate(&GenerateOptions {
        out: dir.path().join("source"),
        operators: 25,
        months: 8,
        end: p("2025-06"),
        seed: 11,
        format: Format::Csv,
    })
    .unwrap();
    let app = App::open(common::config(dir.path(), database, smtp.url()))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let report = close::close(
        &app,
        &CloseOptions {
            through: Some(p("2025-06")),
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    assert!(
        report.ingest.as_ref().unwrap().rows_quarantined() > 0,
        "the generator injects bad rows"
    );

    // The ledger: one succeeded ingest and one succeeded run per job and period, nothing failed.
    let pool = &app.db.pool;
    let failed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM job_runs WHERE status <> 'succeeded'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);
    let ingests: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_runs WHERE job = 'ingest' AND status = 'succeeded'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(ingests, 1);
    let payout_runs: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT period) FROM job_runs WHERE job = 'payouts' AND status = 'succeeded'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(payout_runs, 8, "2024-11 .. 2025-06");

    // R1.10 on what was committed: statements add up to the lines, per currency and period.
    let rows = sqlx::query(
        "SELECT s.period, s.currency, CAST(SUM(s.operator_share_cents + s.clawback_cents + s.candlefish_share_cents) AS BIGINT), \
         (SELECT CAST(COALESCE(SUM(l.amount_cents), 0) AS BIGINT) FROM payout_lines l WHERE l.period = s.period AND l.currency = s.currency) \
         FROM payout_statements s GROUP BY s.period, s.currency",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    for r in &rows {
        let (a, b): (i64, i64) = (r.get(2), r.get(3));
        assert_eq!(
            a,
            b,
            "control total {} {}",
            r.get::<String, _>(0),
            r.get::<String, _>(1)
        );
    }
    // R1.7: a carried balance is never paid and never lost.
    let bad: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payout_statements WHERE operator_share_cents + clawback_cents + carried_in_cents <> payable_cents + carried_out_cents \
         OR payable_cents < 0 OR carried_out_cents > 0",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(bad, 0);

    // Drafts are never sent (R1.9).
    let (queued, _) = payouts::send(&app, p("2025-06"), now).await.unwrap();
    assert_eq!(queued, 0, "nothing approved yet");
    let approved = payouts::approve(&app, p("2025-06"), None, now)
        .await
        .unwrap();
    assert!(approved > 0);
    let before = smtp.received().len();
    let (queued, delivery) = payouts::send(&app, p("2025-06"), now).await.unwrap();
    assert_eq!(queued as u64, approved);
    let errors: Vec<(String, Option<String>)> =
        sqlx::query("SELECT kind, last_error FROM email_outbox WHERE status <> 'sent'")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(delivery.failed, 0, "{errors:?}");

    // Read the statements back from the capture server.
    let statements: HashMap<(String, String), (i64, i64, String)> = sqlx::query(
        "SELECT operator_id, currency, operator_share_cents, clawback_cents, status FROM payout_statements WHERE period = '2025-06'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4))))
    .collect();
    let emails: HashMap<String, String> = {
        let inputs = app.lake.read_snapshot(&report.snapshot).await.unwrap();
        opnet_pipelines::directory::operator_directory(&inputs)
            .unwrap()
            .into_iter()
            .map(|(k, c)| (k, c.email))
            .collect()
    };
    let mails = smtp.received();
    // Maildir names are not in arrival order; statements are only ever mailed by `send`.
    assert!(mails.len() > before);
    let statement_mails: Vec<_> = mails
        .iter()
        .filter_map(|raw| MessageParser::default().parse(raw.as_slice()))
        .filter(|m| m.subject().unwrap_or("").contains("payout statement"))
        .collect();
    assert_eq!(statement_mails.len() as u64, approved);
    for m in &statement_mails {
        let to = m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap()
            .to_string();
        let csv = m
            .attachments()
            .find(|a| a.attachment_name().unwrap_or("").ends_with(".csv"))
            .expect("CSV attachment");
        let text = String::from_utf8_lossy(csv.contents()).to_string();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let idx = |n: &str| header.iter().position(|h| *h == n).unwrap();
        let sum: i64 = lines
            .map(|l| {
                l.split(',')
                    .nth(idx("operator_cents"))
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            })
            .sum();
        let subject = m.subject().unwrap();
        assert!(subject.contains("2025-06"), "{subject}");
        let key = statements
            .keys()
            .find(|(op, cur)| subject.contains(op.as_str()) && subject.contains(cur.as_str()))
            .unwrap();
        let (share, clawback, status) = &statements[key];
        assert_eq!(
            &emails[&key.0], &to,
            "each operator receives only its own statement"
        );
        assert_eq!(
            sum,
            share + clawback,
            "attachment rows sum to the statement"
        );
        assert_eq!(status, "sent");
    }
    // Sending again sends nothing new.
    let (queued, delivery) = payouts::send(&app, p("2025-06"), now).await.unwrap();
    assert_eq!((queued, delivery.sent), (0, 0));
    assert_eq!(smtp.received().len(), mails.len());

    // R1.9: re-closing the approved period refuses; --revise writes revision 2 as a draft.
    let again = close::close(
        &app,
        &CloseOptions {
            from: Some(p("2025-06")),
            through: Some(p("2025-06")),
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    assert!(
        again
            .runs
            .iter()
            .any(|r| r.job == "payouts" && r.run_id.is_none()),
        "refused"
    );
    let revised = close::close(
        &app,
        &CloseOptions {
            from: Some(p("2025-06")),
            through: Some(p("2025-06")),
            revise: true,
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    assert!(
        revised
            .runs
            .iter()
            .any(|r| r.job == "payouts" && r.run_id.is_some())
    );
    let revs: Vec<(i64, String)> = sqlx::query("SELECT DISTINCT revision, status FROM payout_statements WHERE period = '2025-06' ORDER BY revision")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        revs,
        vec![(1, "sent".to_string()), (2, "draft".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn close_approve_send_on_postgres() {
    let Some(url) = common::pg_database("close").await else {
        return;
    };
    scenario(url.url.clone()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn close_approve_send_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(format!("sqlite://{}/opnet.db", dir.path().display())).await;
}

/// Issue 2: a run that fails after writing some of its tables commits nothing but its
/// `failed` ledger row. The failure is injected by a trigger on `payout_statements`,
/// which the payouts job writes after `operator_tiers` and `payout_lines`.
async fn failed_run_commits_nothing(database: String, trigger: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    generate::generate(&GenerateOptions {
        out: dir.path().join("source"),
        operators: 10,
        months: 3,
        end: p("2025-03"),
        seed: 5,
        format: Format::Csv,
    })
    .unwrap();
    let mail = format!("file:{}", dir.path().join("outbox").display());
    let mut app = App::open(common::config(dir.path(), database, mail))
        .await
        .unwrap();
    // Unattended, as the scheduler runs it: a failed run emails ops.
    app.notify = true;
    for sql in trigger {
        sqlx::raw_sql(sql).execute(&app.db.pool).await.unwrap();
    }
    let err = close::close(
        &app,
        &CloseOptions {
            through: Some(p("2025-03")),
            ..Default::default()
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("injected failure"), "{err:#}");
    let pool = &app.db.pool;
    let runs: Vec<(String, String, Option<String>)> =
        sqlx::query("SELECT job, status, error FROM job_runs ORDER BY started_at, job")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        (runs[0].0.as_str(), runs[0].1.as_str()),
        ("ingest", "succeeded")
    );
    assert_eq!(
        (runs[1].0.as_str(), runs[1].1.as_str()),
        ("payouts", "failed")
    );
    assert!(
        runs[1]
            .2
            .as_deref()
            .unwrap_or("")
            .contains("injected failure")
    );
    for table in [
        "operator_tiers",
        "payout_lines",
        "payout_statements",
        "reconciliation_exceptions",
    ] {
        let n = common::count_rows(pool, table).await;
        assert_eq!(n, 0, "{table} kept rows of the failed run");
    }
    // Only the ops notice is queued: none of the run's own emails.
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM email_outbox")
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(kinds.iter().all(|k| k == "run_failed"), "{kinds:?}");
    assert!(!kinds.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_run_commits_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    failed_run_commits_nothing(
        format!("sqlite://{}/opnet.db", dir.path().display()),
        &["CREATE TRIGGER opnet_test_fail BEFORE INSERT ON payout_statements BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_run_commits_nothing_on_postgres() {
    let Some(url) = common::pg_database("failed").await else {
        return;
    };
    failed_run_commits_nothing(
        url.url.clone(),
        &[
            "CREATE FUNCTION opnet_test_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER opnet_test_fail BEFORE INSERT ON payout_statements FOR EACH ROW EXECUTE FUNCTION opnet_test_fail()",
        ],
    )
    .await;
}
