//! The close: mail of a backfill by audience and age, the range and its guard, run
//! errors that decide retries.

use super::*;

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

/// Issue 9 item 16: under the default policy only mail of the latest
/// `max_age` complete months goes out; older operator and per-period internal mail
/// is suppressed (and summarised); notices (a failed run) never are.
#[test]
fn mail_of_a_backfill_is_suppressed_by_audience_and_age() {
    use mail::Audience;
    let recent_from = p("2026-10");
    let d =
        |policy, audience, period: &str| disposition(policy, audience, p(period), recent_from, 1);
    for audience in [Audience::Operator, Audience::PeriodicInternal] {
        assert_eq!(
            d(MailPolicy::Recent, audience, "2026-10"),
            Disposition::Queue,
            "{audience:?}"
        );
        assert_eq!(
            d(MailPolicy::Recent, audience, "2026-11"),
            Disposition::Queue,
            "{audience:?}"
        );
        assert!(
            matches!(
                d(MailPolicy::Recent, audience, "2026-09"),
                Disposition::Suppress {
                    summarize: true,
                    ..
                }
            ),
            "{audience:?}"
        );
        assert_eq!(
            d(MailPolicy::All, audience, "2020-01"),
            Disposition::Requeue
        );
        assert!(matches!(
            d(MailPolicy::None, audience, "2026-10"),
            Disposition::Suppress {
                summarize: false,
                ..
            }
        ));
    }
    assert_eq!(
        d(MailPolicy::Recent, Audience::Notice, "2020-01"),
        Disposition::Queue
    );
}

/// Issue 9 item 9: more than `close.max_backfill_months` periods without an
/// explicit --from are refused with what to do instead.
#[test]
fn a_default_range_beyond_max_backfill_is_refused() {
    assert!(check_backfill(p("2023-11"), p("2026-10"), 36).is_ok());
    let err = check_backfill(p("2000-01"), p("2026-10"), 36)
        .unwrap_err()
        .to_string();
    for needle in [
        "322 periods",
        "2000-01 .. 2026-10",
        "close.max_backfill_months = 36",
        "--from 2000-01",
        "--from 2023-11",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
}

/// Issue 9 item 9: the default --from is the first month that moved money (paid or
/// refunded), not the earliest issued invoice.
#[test]
fn first_billing_period_comes_from_paid_and_refunded_dates() {
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let mut inputs = Inputs::empty();
    inputs.invoices = df!(
        "issued_on" => [d("2000-01-15"), d("2025-03-02"), d("2025-04-01")],
        "paid_on" => [None, Some(d("2025-03-20")), Some(d("2025-04-03"))],
    )
    .unwrap()
    .lazy();
    inputs.refunds = df!("refunded_on" => [d("2025-05-01")]).unwrap().lazy();
    assert_eq!(first_billing_period(&inputs).unwrap(), Some(p("2025-03")));
    inputs.refunds = df!("refunded_on" => [d("2025-02-27")]).unwrap().lazy();
    assert_eq!(first_billing_period(&inputs).unwrap(), Some(p("2025-02")));
    inputs.invoices = df!(
        "issued_on" => [d("2000-01-15")],
        "paid_on" => [None::<chrono::NaiveDate>],
    )
    .unwrap()
    .lazy();
    inputs.refunds = df!("refunded_on" => Vec::<chrono::NaiveDate>::new())
        .unwrap()
        .lazy();
    assert_eq!(first_billing_period(&inputs).unwrap(), None);
}

/// Issue 9 item 14: a job run that hits "database is locked" is run again (a
/// transient failure), not failed for good with a failure mail.
#[tokio::test]
async fn a_locked_sqlite_database_fails_a_run_transiently() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let db = crate::db::Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let mut other = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut other)
        .await
        .unwrap();
    let _writer = db.begin_write().await.unwrap();
    let busy = sqlx::query("INSERT INTO job_leases (name, holder, acquired_at, expires_at) VALUES ('x', 'h', 'a', 'b')")
        .execute(&mut other)
        .await
        .expect_err("locked");
    let e = RunError::Db(db::DbError::Write {
        table: "payout_lines".into(),
        source: busy,
    });
    assert!(e.is_transient(), "{e}");
}

#[test]
fn run_errors_say_whether_another_run_may_succeed() {
    let period = Period::parse("2025-08").unwrap();
    let transient = [
        RunError::Job(jobs::JobError::Database {
            job: "payouts",
            period,
            source: db::DbError::query("history")(sqlx::Error::PoolTimedOut),
        }),
        RunError::Db(db::DbError::Write {
            table: "payout_lines".into(),
            source: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        }),
        RunError::sql("replacing payout_lines of 2025-08")(sqlx::Error::PoolClosed),
    ];
    for e in &transient {
        assert!(e.is_transient(), "{e}");
    }
    let permanent = [
        RunError::Job(jobs::JobError::Payout {
            job: "payouts",
            period,
            source: opnet_pipelines::payouts::PayoutError::ControlTotals {
                currency: "USD".into(),
                detail: "lines do not sum".into(),
            },
        }),
        RunError::Job(jobs::JobError::Data {
            job: "alerts",
            period,
            message: "bad row".into(),
        }),
        RunError::sql("replacing")(sqlx::Error::RowNotFound),
    ];
    for e in &permanent {
        assert!(!e.is_transient(), "{e}");
    }
    // The ledger's text names every layer.
    let e = RunError::Job(jobs::JobError::Database {
        job: "payouts",
        period,
        source: db::DbError::query("reading history")(sqlx::Error::PoolTimedOut),
    });
    assert!(
        error_chain(&e).contains("reading history"),
        "{}",
        error_chain(&e)
    );
}
