//! The monthly close: ingest a snapshot, then run every job of the registry for each
//! period in order, each in its own transaction with its ledger row, then deliver the
//! queued emails.
//!
//! Periods run oldest first because a period reads the one before it (carried
//! balances, clawbacks of earlier collections). A failed run rolls back, leaves its
//! `failed` ledger row, and stops the close: later periods would build on a gap.

use crate::config::Config;
use crate::db::{self, Db, RunCounts, RunStart, Value};
use crate::ingest::{self, IngestReport};
use crate::jobs::{self, JobContext, JobOutput, Replace};
use crate::lake::Lake;
use crate::mail::{self, DeliveryReport, Transport};
use crate::retry;
use crate::store::{self, ObjectStore};
use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use opnet_pipelines::{Inputs, Period};
use polars::prelude::*;
use std::sync::Arc;

/// Everything a command needs, built once from the validated config.
pub struct App {
    pub config: Config,
    pub db: Db,
    pub source: Arc<dyn ObjectStore>,
    pub lake: Lake,
    pub transport: Transport,
    /// The scheduler's lease holder id, recorded on the runs it starts (`None` for
    /// manual commands), so a scheduler taking the lease over knows which `running`
    /// rows belong to a dead holder.
    pub lease_holder: Option<String>,
}

impl App {
    pub async fn open(config: Config) -> Result<App> {
        let db = Db::connect(&config.database)
            .await
            .context("opening the database")?;
        db.migrate().await.context("migrating the database")?;
        let source = store::open(&config.source, &config.s3)
            .await
            .with_context(|| format!("source {}", config.source))?;
        let lake = Lake::new(
            store::open(&config.lake, &config.s3)
                .await
                .with_context(|| format!("lake {}", config.lake))?,
        );
        let transport = Transport::parse(&config.mail)
            .and_then(|t| t.with_smtp(&config.smtp))
            .with_context(|| format!("mail {}", config.mail))?;
        // Fail at start-up, not at the first delivery, when the password cannot be read.
        if let Transport::Smtp(relay) = &transport
            && let Some(auth) = &relay.auth
        {
            auth.password.read().context(
                "reading the SMTP password (smtp.password_file / OPNET_SMTP_PASSWORD_FILE)",
            )?;
        }
        Ok(App {
            config,
            db,
            source,
            lake,
            transport,
            lease_holder: None,
        })
    }
}

/// `opnet close` options.
#[derive(Clone, Debug, Default)]
pub struct CloseOptions {
    pub from: Option<Period>,
    pub through: Option<Period>,
    /// R1.9: write a new revision of approved periods instead of refusing them.
    pub revise: bool,
    /// Re-run against this recorded snapshot instead of ingesting the sources.
    pub snapshot: Option<String>,
    /// Run only these jobs (by name); all when empty.
    pub only: Vec<String>,
}

/// One job run of the close, for the summary.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub period: Period,
    pub job: &'static str,
    pub run_id: Option<String>,
    pub rows_out: i64,
    /// Wall time of the run, for summaries and the benchmark.
    pub elapsed_ms: u128,
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct CloseReport {
    pub ingest: Option<IngestReport>,
    pub snapshot: String,
    pub runs: Vec<RunSummary>,
    pub delivery: DeliveryReport,
}

/// Ingest every source dataset into a lake snapshot and record the run.
pub async fn run_ingest(app: &App, now: DateTime<Utc>) -> Result<IngestReport> {
    let run_id = app
        .db
        .start_run(
            &RunStart {
                job: "ingest",
                lease_holder: app.lease_holder.clone(),
                ..Default::default()
            },
            now,
        )
        .await?;
    match ingest::ingest_with_sources(
        app.source.as_ref(),
        &app.lake,
        now,
        &app.config.sources,
        &app.config.ingest,
    )
    .await
    {
        Ok(report) => {
            let mut tx = app.db.pool.begin().await.context("begin")?;
            sqlx::query(
                "UPDATE job_runs SET input_fingerprint = $1, snapshot = $2 WHERE run_id = $3",
            )
            .bind(&report.fingerprint)
            .bind(&report.snapshot)
            .bind(&run_id)
            .execute(&mut *tx)
            .await
            .context("recording the snapshot")?;
            let counts = RunCounts {
                rows_in: report.rows_in() as i64,
                rows_quarantined: report.rows_quarantined() as i64,
                rows_out: report.rows_ok() as i64,
            };
            db::finish_run(&mut tx, &run_id, &counts, Utc::now()).await?;
            tx.commit().await.context("commit")?;
            Ok(report)
        }
        Err(e) => {
            let msg = e.to_string();
            app.db.fail_run(&run_id, &msg, Utc::now()).await?;
            queue_failure_notice(app, "ingest", None, &run_id, &msg, "opnet ingest").await;
            Err(anyhow!(e)).context("ingest failed")
        }
    }
}

/// The first month with billing data (`--from`'s default): the earliest `issued_on`.
pub fn first_billing_period(inputs: &Inputs) -> Result<Option<Period>> {
    let df = inputs
        .invoices
        .clone()
        .select([col("issued_on").min().alias("first")])
        .collect()
        .map_err(anyhow::Error::from)
        .context("reading the first billing month")?;
    let first = df.column("first")?.cast(&DataType::Int32)?.i32()?.get(0);
    Ok(first.map(|d| Period::of_date(opnet_pipelines::period::days_to_date(d))))
}

/// The last complete month before `now` (the default `--through`).
pub fn last_complete_period(now: DateTime<Utc>) -> Period {
    Period::of_date(now.date_naive()).prev()
}

/// Run the close for every period of the options, in order.
pub async fn close(app: &App, opts: &CloseOptions, now: DateTime<Utc>) -> Result<CloseReport> {
    let (ingest_report, snapshot) = match &opts.snapshot {
        Some(s) => (None, s.clone()),
        None => {
            let r = run_ingest(app, now).await?;
            let s = r.snapshot.clone();
            (Some(r), s)
        }
    };
    // A re-run against a recorded snapshot records that snapshot's fingerprint too.
    let fingerprint = match &ingest_report {
        Some(r) => Some(r.fingerprint.clone()),
        None => Some(
            app.lake
                .read_manifest(&snapshot)
                .await
                .with_context(|| format!("reading snapshot {snapshot}"))?
                .fingerprint,
        ),
    };
    let inputs = app
        .lake
        .read_snapshot(&snapshot)
        .await
        .with_context(|| format!("reading snapshot {snapshot}"))?;
    let through = opts.through.unwrap_or_else(|| last_complete_period(now));
    let from = match opts.from {
        Some(p) => p,
        None => first_billing_period(&inputs)?
            .ok_or_else(|| anyhow!("no billing data: billing/invoices is empty"))?,
    };
    let registry = jobs::registry();
    for name in &opts.only {
        if !registry.iter().any(|j| j.name() == name) {
            return Err(anyhow!(
                "unknown job {name:?}; jobs: {}",
                registry
                    .iter()
                    .map(|j| j.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let mut runs = Vec::new();
    let progress = progress_bar((from.through(through).count() * registry.len()) as u64);
    for period in from.through(through) {
        let plan = app.config.plan.for_period(period)?;
        for job in &registry {
            if !opts.only.is_empty() && !opts.only.iter().any(|n| n == job.name()) {
                continue;
            }
            progress.set_message(format!("{period} {}", job.name()));
            progress.inc(1);
            let ctx = JobContext {
                period,
                plan,
                inputs: &inputs,
                config: &app.config,
                run_id: "",
                now,
                revise: opts.revise,
            };
            {
                let mut conn = app.db.pool.acquire().await.context("acquire")?;
                if let Some(reason) = job.refuse(&ctx, &mut conn).await? {
                    tracing::warn!(job = job.name(), %period, %reason, "Run refused");
                    runs.push(RunSummary {
                        period,
                        job: job.name(),
                        run_id: None,
                        rows_out: 0,
                        elapsed_ms: 0,
                        notes: vec![reason],
                    });
                    continue;
                }
            }
            // A run that fails transiently (a dropped database connection) is tried
            // again as a new run, up to `retry::JOB_RUN.max_attempts` runs in all;
            // each failed one has rolled back and keeps its `failed` ledger row.
            let mut attempt = 1u32;
            loop {
                let run_id = app
                    .db
                    .start_run(
                        &RunStart {
                            job: job.name(),
                            period: Some(period.to_string()),
                            plan_version: Some(plan.version.clone()),
                            input_fingerprint: fingerprint.clone(),
                            snapshot: Some(snapshot.clone()),
                            lease_holder: app.lease_holder.clone(),
                        },
                        Utc::now(),
                    )
                    .await?;
                let ctx = JobContext {
                    run_id: &run_id,
                    ..ctx
                };
                let started = std::time::Instant::now();
                let mut tx = app.db.pool.begin().await.context("begin")?;
                let result = run_in_tx(app, job.as_ref(), &ctx, &mut tx).await;
                match result {
                    Ok((out, rows_out)) => {
                        crate::failpoint::point(crate::failpoint::JOB_BEFORE_COMMIT);
                        tx.commit()
                            .await
                            .with_context(|| format!("commit {} {period}", job.name()))?;
                        crate::failpoint::point(crate::failpoint::JOB_AFTER_COMMIT);
                        tracing::info!(job = job.name(), %period, run_id = %run_id, rows_out, "Run succeeded");
                        runs.push(RunSummary {
                            period,
                            job: job.name(),
                            run_id: Some(run_id.clone()),
                            rows_out,
                            elapsed_ms: started.elapsed().as_millis(),
                            notes: out.summary,
                        });
                        break;
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        let msg = format!("{e:#}");
                        app.db.fail_run(&run_id, &msg, Utc::now()).await?;
                        let transient = is_transient(&e);
                        if transient && attempt < retry::JOB_RUN.max_attempts {
                            tracing::warn!(job = job.name(), %period, run_id = %run_id, attempt, error = %msg, "Run failed transiently; running it again");
                            let what = format!("{} {period}", job.name());
                            retry::pause(&retry::JOB_RUN, &what, attempt, &msg).await;
                            attempt += 1;
                            continue;
                        }
                        tracing::error!(job = job.name(), %period, run_id = %run_id, attempt, transient, error = %msg, "Run failed");
                        let notice = if attempt > 1 {
                            format!(
                                "{msg}\n\n(run {attempt} of this close; the {} before it failed transiently)",
                                attempt - 1
                            )
                        } else {
                            msg
                        };
                        let rerun = format!("opnet close --from {period} --through {period}");
                        queue_failure_notice(
                            app,
                            job.name(),
                            Some(period),
                            &run_id,
                            &notice,
                            &rerun,
                        )
                        .await;
                        return Err(e.context(format!(
                            "{} {period} failed (run {run_id}); nothing was committed",
                            job.name()
                        )));
                    }
                }
            }
        }
    }
    progress.finish_and_clear();
    let delivery = mail::deliver_queued(&app.db.pool, &app.transport, Utc::now()).await?;
    Ok(CloseReport {
        ingest: ingest_report,
        snapshot,
        runs,
        delivery,
    })
}

/// Whether a failed run is worth running again: the first error in the chain that
/// knows its layer decides (a job's, the database's, the outbox's, a store's, or a
/// bare sqlx error from the runner). Anything else — control totals, bad data, a
/// constraint — is permanent.
fn is_transient(e: &anyhow::Error) -> bool {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<jobs::JobError>() {
            return e.is_transient();
        }
        if let Some(e) = cause.downcast_ref::<db::DbError>() {
            return e.is_transient();
        }
        if let Some(e) = cause.downcast_ref::<mail::MailError>() {
            return e.is_transient();
        }
        if let Some(e) = cause.downcast_ref::<store::StoreError>() {
            return e.is_transient();
        }
        if let Some(e) = cause.downcast_ref::<sqlx::Error>() {
            return matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            );
        }
    }
    false
}

/// A progress bar on a terminal; hidden (logs only) under cron, CI or a pipe.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed}]")
    {
        bar.set_style(style);
    }
    bar
}

/// Write a job's output and its ledger row in the run's transaction, then publish
/// its marts.
async fn run_in_tx(
    app: &App,
    job: &dyn jobs::Job,
    ctx: &JobContext<'_>,
    tx: &mut sqlx::AnyConnection,
) -> Result<(JobOutput, i64)> {
    let out = job.run(ctx, tx).await?;
    let period = ctx.period.to_string();
    let mut rows_out = 0i64;
    for w in &out.writes {
        if w.replace == Replace::Period {
            sqlx::query(&format!("DELETE FROM {} WHERE period = $1", w.table))
                .bind(&period)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("replacing {} of {period}", w.table))?;
        }
        rows_out += db::insert_frame(
            tx,
            w.table,
            &w.frame,
            &[("run_id", Value::Text(ctx.run_id.to_string()))],
        )
        .await? as i64;
    }
    mail::enqueue(
        tx,
        &app.config.email.from,
        &out.emails,
        Some(ctx.run_id),
        ctx.now,
    )
    .await?;
    let counts = RunCounts {
        rows_in: out.rows_in,
        rows_quarantined: 0,
        rows_out,
    };
    db::finish_run(tx, ctx.run_id, &counts, Utc::now()).await?;
    // Marts last, before the caller commits: a committed run always has its marts,
    // even after a crash right after the commit. Marts of a run that then fails to
    // commit are overwritten by the re-run of its period, which is due because
    // nothing of it committed.
    publish(app, job.name(), ctx.period, &out).await?;
    Ok((out, rows_out))
}

/// Just before the commit: the Parquet marts and files in the lake. A re-run
/// overwrites them, so they match the committed tables once the run commits.
async fn publish(app: &App, job: &str, period: Period, out: &JobOutput) -> Result<()> {
    for w in out.writes.iter().filter(|w| w.publish) {
        let mut frame = w.frame.clone();
        app.lake
            .write_mart(w.table, period, &mut frame)
            .await
            .with_context(|| format!("{job} {period}: publishing mart {}", w.table))?;
    }
    for (key, bytes) in &out.files {
        app.lake
            .put_file(key, bytes.clone())
            .await
            .with_context(|| format!("{job} {period}: writing {key}"))?;
    }
    Ok(())
}

/// A failed run tells the ops list (best effort: the failure itself is already in
/// the ledger and on stderr).
async fn queue_failure_notice(
    app: &App,
    job: &str,
    period: Option<Period>,
    run_id: &str,
    error: &str,
    rerun: &str,
) {
    let period = period.map(|p| p.to_string());
    for to in &app.config.email.ops {
        let email = mail::run_failed_email(job, period.as_deref(), run_id, error, rerun, to);
        if let Ok(mut conn) = app.db.pool.acquire().await {
            let _ = mail::enqueue(
                &mut conn,
                &app.config.email.from,
                &[email],
                Some(run_id),
                Utc::now(),
            )
            .await;
        }
    }
    let _ = mail::deliver_queued(&app.db.pool, &app.transport, Utc::now()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_errors_are_classified_through_their_context() {
        let period = Period::parse("2025-08").unwrap();
        let transient = [
            anyhow!(jobs::JobError::Database {
                job: "payouts",
                period,
                source: db::DbError::query("history")(sqlx::Error::PoolTimedOut),
            })
            .context("payouts 2025-08"),
            anyhow!(db::DbError::Write {
                table: "payout_lines".into(),
                source: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            }),
            Err::<(), _>(sqlx::Error::PoolClosed)
                .context("replacing payout_lines of 2025-08")
                .unwrap_err(),
        ];
        for e in &transient {
            assert!(is_transient(e), "{e:#}");
        }
        let permanent = [
            anyhow!(jobs::JobError::Control {
                job: "payouts",
                period,
                message: "lines do not sum".into(),
            }),
            anyhow!(jobs::JobError::Data {
                job: "alerts",
                period,
                message: "bad row".into(),
            })
            .context("alerts 2025-08"),
            Err::<(), _>(sqlx::Error::RowNotFound)
                .context("replacing")
                .unwrap_err(),
            anyhow!("injected failure"),
        ];
        for e in &permanent {
            assert!(!is_transient(e), "{e:#}");
        }
    }
}
