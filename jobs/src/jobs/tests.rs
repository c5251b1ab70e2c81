//! The registry's promises: unique names, inputs from the data contract, every
//! declared output table in the migrated schema with every published column, and each
//! job writing exactly the tables it declares — so adding a job cannot silently write
//! a table that publishing, the schema or the docs do not know.

use super::*;
use crate::app::App;
use crate::close::{self, CloseOptions};
use crate::generate::{self, Format, GenerateOptions};
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn transient_job_errors() {
    let period = Period::parse("2025-08").unwrap();
    let job = "payouts";
    let db = |source| JobError::Database {
        job,
        period,
        source: crate::db::DbError::query("reading history")(source),
    };
    let cases = [
        (db(sqlx::Error::PoolTimedOut), true),
        (
            db(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::BrokenPipe,
            ))),
            true,
        ),
        (db(sqlx::Error::RowNotFound), false),
        (
            JobError::Data {
                job,
                period,
                message: "negative amount".into(),
            },
            false,
        ),
        (
            JobError::Payout {
                job,
                period,
                source: opnet_pipelines::payouts::PayoutError::ControlTotals {
                    currency: "USD".into(),
                    detail: "lines do not sum".into(),
                },
            },
            false,
        ),
        (
            JobError::Polars {
                job,
                period,
                source: polars::prelude::PolarsError::ComputeError("x".into()),
            },
            false,
        ),
        (
            JobError::Mail {
                job,
                period,
                source: crate::mail::MailError::TransportSpec {
                    spec: "x".into(),
                    reason: "y".into(),
                },
            },
            false,
        ),
    ];
    for (e, transient) in cases {
        assert_eq!(e.is_transient(), transient, "{e}");
    }
}

#[test]
fn job_names_are_unique_and_inputs_are_contract_datasets() {
    let jobs = registry();
    let names: BTreeSet<_> = jobs.iter().map(|j| j.name()).collect();
    assert_eq!(names.len(), jobs.len());
    for j in &jobs {
        for d in j.inputs() {
            assert!(
                opnet_pipelines::contract::Dataset::by_name(d).is_some(),
                "{} reads unknown {d}",
                j.name()
            );
        }
    }
}

/// Table → its columns, from a freshly migrated SQLite database (every migration).
async fn migrated_schema(url: &str) -> BTreeMap<String, BTreeSet<String>> {
    let db = crate::db::Db::connect(url).await.unwrap();
    db.migrate().await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let cols: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .fetch_all(&db.pool)
                .await
                .unwrap();
        out.insert(t, cols.into_iter().collect());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_output_table_and_column_is_in_the_migrated_schema() {
    let dir = tempfile::tempdir().unwrap();
    let schema = migrated_schema(&format!("sqlite://{}/s.db", dir.path().display())).await;
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for j in registry() {
        for spec in j.outputs() {
            if let Some(other) = owners.insert(spec.table, j.name()) {
                panic!("{} is written by {other} and {}", spec.table, j.name());
            }
            let Some(columns) = schema.get(spec.table) else {
                panic!(
                    "{} declares {}, which no migration creates",
                    j.name(),
                    spec.table
                );
            };
            for (c, _) in spec.columns {
                assert!(
                    columns.contains(*c),
                    "{}: {}.{c} is published but not in the schema",
                    j.name(),
                    spec.table
                );
            }
            for c in columns {
                assert!(
                    spec.columns.iter().any(|(n, _)| n == c),
                    "{}: {}.{c} is in the schema but not published",
                    j.name(),
                    spec.table
                );
            }
        }
    }
}

/// Runs every job of the registry on a small generated network and compares the
/// tables each writes (and their columns) with what it declares.
/// A 12-operator network generated in `dir` and closed through the period before
/// `end`: the app, the close's time and its report.
async fn closed_before(
    dir: &std::path::Path,
    end: Period,
    seed: u64,
) -> (App, chrono::DateTime<Utc>, close::CloseReport) {
    generate::generate(&GenerateOptions {
        out: dir.join("source"),
        operators: 12,
        months: 4,
        end,
        seed,
        format: Format::Csv,
    })
    .unwrap();
    let config = Config {
        source: dir.join("source").display().to_string(),
        lake: dir.join("lake").display().to_string(),
        database: format!("sqlite://{}/o.db", dir.display()),
        mail: format!("file:{}", dir.join("outbox").display()),
        email: Default::default(),
        schedule: Default::default(),
        plan: Default::default(),
        plan_origin: "test".into(),
        file: None,
        sources: Default::default(),
        smtp: Default::default(),
        s3: Default::default(),
        ingest: Default::default(),
        close: Default::default(),
        leads: Default::default(),
    };
    let app = App::open(config).await.unwrap();
    let now = Utc::now();
    let report = close::close(
        &app,
        &CloseOptions {
            through: Some(end.prev()),
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    (app, now, report)
}

/// A run's context for `period` outside a close (no ledger run, no `--revise`, no
/// manifest counts).
fn test_context<'a>(
    app: &'a App,
    inputs: &'a Inputs,
    plan: &'a Plan,
    period: Period,
    now: DateTime<Utc>,
    mail_suppressed: bool,
) -> JobContext<'a> {
    JobContext {
        period,
        plan,
        inputs,
        config: &app.config,
        run_id: "test",
        now,
        revise: false,
        datasets: &[],
        mail_suppressed,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_job_writes_exactly_its_declared_tables() {
    let dir = tempfile::tempdir().unwrap();
    let end = Period::parse("2025-06").unwrap();
    let (app, now, report) = closed_before(dir.path(), end, 3).await;
    let inputs = app.lake.read_snapshot(&report.snapshot).await.unwrap();
    let plan = app.config.plan.for_period(end).unwrap();
    for job in registry() {
        let ctx = test_context(&app, &inputs, plan, end, now, false);
        let mut tx = app.db.begin_write().await.unwrap();
        let out = job.run(&ctx, &mut tx).await.unwrap();
        tx.rollback().await.unwrap();
        let written: BTreeSet<&str> = out.writes.iter().map(|w| w.table).collect();
        let declared: BTreeSet<&str> = job.outputs().iter().map(|s| s.table).collect();
        assert_eq!(written, declared, "{}", job.name());
        for w in &out.writes {
            let spec = job.outputs().iter().find(|s| s.table == w.table).unwrap();
            for c in w.frame.get_column_names() {
                assert!(
                    spec.columns.iter().any(|(n, _)| *n == c.as_str()),
                    "{} writes {}.{c}, which it does not declare",
                    job.name(),
                    w.table
                );
            }
        }
    }
}

/// Issue 13: a job computed ahead of its run (`run_detached`, on the close's worker
/// thread) gives exactly what its run gives — the same rows, the same mails, the same
/// summary — for a period whose mail goes out and for a backfilled one; and the jobs
/// that read history (payouts, the report) are never detached.
#[tokio::test(flavor = "multi_thread")]
async fn a_detached_job_gives_exactly_what_its_run_gives() {
    let dir = tempfile::tempdir().unwrap();
    let end = Period::parse("2025-06").unwrap();
    let (app, now, report) = closed_before(dir.path(), end, 5).await;
    let inputs = app.lake.read_snapshot(&report.snapshot).await.unwrap();
    let plan = app.config.plan.for_period(end).unwrap();
    let mut detached_jobs = BTreeSet::new();
    let mut compared_rows = 0usize;
    for mail_suppressed in [false, true] {
        for job in registry() {
            let ctx = test_context(&app, &inputs, plan, end, now, mail_suppressed);
            let Some(detached) = job.run_detached(&ctx) else {
                continue;
            };
            detached_jobs.insert((job.name(), mail_suppressed));
            let detached = detached.unwrap();
            let mut tx = app.db.begin_write().await.unwrap();
            let run = job.run(&ctx, &mut tx).await.unwrap();
            tx.rollback().await.unwrap();
            assert_eq!(detached.writes.len(), run.writes.len(), "{}", job.name());
            for (d, r) in detached.writes.iter().zip(&run.writes) {
                assert_eq!(d.table, r.table);
                assert_eq!(d.replace, r.replace);
                compared_rows += r.frame.height();
                assert!(d.frame.equals_missing(&r.frame), "{}", d.table);
            }
            assert_eq!(detached.emails, run.emails, "{}", job.name());
            assert_eq!(detached.files, run.files, "{}", job.name());
            assert_eq!(detached.summary, run.summary, "{}", job.name());
            assert_eq!(detached.rows_in, run.rows_in, "{}", job.name());
        }
    }
    assert!(compared_rows > 0, "the test compares real rows");
    let names = |suppressed: bool| -> Vec<&str> {
        detached_jobs
            .iter()
            .filter(|(_, s)| *s == suppressed)
            .map(|(n, _)| *n)
            .collect()
    };
    assert_eq!(names(false), ["alerts", "equity", "exclusivity"]);
    assert_eq!(
        names(true),
        ["alerts", "equity", "exclusivity", "scorecard"]
    );
}
