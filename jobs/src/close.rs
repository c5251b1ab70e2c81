//! The monthly close: ingest a snapshot, then run every job of the registry for each
//! period in order, each in its own transaction with its ledger row, publish the
//! committed results to the lake, then deliver the queued emails.
//!
//! Periods run oldest first because a period reads the one before it (carried
//! balances, clawbacks of earlier collections). A failed run rolls back, leaves its
//! `failed` ledger row, and stops the close: later periods would build on a gap. A
//! refused run (payouts of an approved period without `--revise`) is recorded
//! `refused` and the close goes on.
//!
//! Marts are published only after the commit, from the rows the database then holds,
//! and the ledger records it (`job_runs.published_at`); a run whose marts are not
//! published yet — a crash between commit and publish, or statements whose status
//! changed since — is published again by [`publish_pending`], which runs at the start
//! of every close and every scheduler wake-up (issue 9 item 13).
//!
//! Mail of a backfill (issue 9 item 16): operator mail of periods older than the
//! latest `email.operator_mail_max_age_months` complete months is recorded
//! `suppressed`, and so are the per-period internal mails (finance summary, leadership
//! report, escalations), which one backfill summary per close replaces
//! ([`queue_backfill_summary`]); `close --send-mail all|recent|none` overrides
//! ([`MailPolicy`]).

use crate::app::{App, Invocation};
use crate::config::Config;
use crate::db::{self, RunCounts, RunStart};
use crate::ingest::{self, IngestReport};
use crate::jobs::{self, DatasetCounts, JobContext, JobOutput, Refusal, Replace};
use crate::mail::{self, DeliverOptions, DeliveryReport, Disposition, EnqueueReport};
use crate::retry;
use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use opnet_pipelines::{Inputs, Period};
use polars::prelude::*;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};

/// Why one run of a job failed — the job's own error, or writing its results, its
/// mail or its ledger row. Each layer's error says whether another run may succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Job(#[from] jobs::JobError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Mail(#[from] mail::MailError),
    /// A statement of the runner itself (replacing a period's rows, the commit).
    #[error("{context}: {source}")]
    Sql {
        context: String,
        source: sqlx::Error,
    },
}

impl RunError {
    /// Worth another run: a dropped connection, a locked SQLite file, a relay that
    /// did not answer — never bad data, broken control totals or a constraint.
    pub fn is_transient(&self) -> bool {
        match self {
            RunError::Job(e) => e.is_transient(),
            RunError::Db(e) => e.is_transient(),
            RunError::Mail(e) => e.is_transient(),
            RunError::Sql { source, .. } => db::is_transient_sqlx(source),
        }
    }

    fn sql(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> RunError {
        let context = context.into();
        move |source| RunError::Sql { context, source }
    }
}

/// Which mails of a close are sent (`close --send-mail`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MailPolicy {
    /// Every mail of every period, also one recorded `suppressed` by an earlier close.
    All,
    /// Mail of the latest `email.operator_mail_max_age_months` complete months; for
    /// older periods operator and per-period internal mail is suppressed and one
    /// backfill summary goes to the internal lists.
    #[default]
    Recent,
    /// No mail of the close's runs at all (recorded `suppressed`, no summary).
    None,
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
    /// Which mails go out.
    pub mail: MailPolicy,
    /// The caller queues the backfill summary itself, once for several closes (the
    /// scheduler closes one job and period at a time).
    pub defer_backfill_summary: bool,
}

/// One job run of the close, for the summary.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub period: Period,
    pub job: &'static str,
    /// `None` when the run was refused (then `refusal` says why).
    pub run_id: Option<String>,
    pub rows_out: i64,
    /// Wall time of the run, for summaries and the benchmark.
    pub elapsed_ms: u128,
    /// Wall time the close's worker spent computing the run's output before the run
    /// (a detached job, issue 13); 0 when the run computed it. Not part of
    /// `elapsed_ms`: it overlapped earlier runs.
    pub ahead_ms: u128,
    pub notes: Vec<String>,
    /// Why the job did not run for the period (recorded `refused` in `job_runs`),
    /// e.g. payouts of a period whose statements are approved: `approved_revision`
    /// says which revision stays, so a summary can say "already approved (revision
    /// N), nothing changed".
    pub refusal: Option<Refusal>,
}

#[derive(Debug)]
pub struct CloseReport {
    pub ingest: Option<IngestReport>,
    pub snapshot: String,
    pub runs: Vec<RunSummary>,
    /// What the runs' mails became in the outbox (queued, suppressed, failed at once
    /// for a bad address, already there from an earlier run).
    pub mail: EnqueueReport,
    pub delivery: DeliveryReport,
    /// Wall time of that delivery, so a benchmark can report the close and its mail
    /// apart (issue 13).
    pub delivery_elapsed_ms: u128,
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
            let mut tx = app.db.begin_write().await?;
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
            let rerun = match &app.invocation {
                Invocation::Scheduled => SCHEDULED_RERUN.to_string(),
                Invocation::Command(c) => c.clone(),
            };
            queue_failure_notice(app, "ingest", None, &run_id, &msg, &rerun).await;
            Err(anyhow!(e)).context("ingest failed")
        }
    }
}

/// The re-run hint of a failure mail when the scheduler ran the failed run.
const SCHEDULED_RERUN: &str =
    "opnet schedule --once   (the scheduler retries what is due at its next wake-up anyway)";

/// The first month with billing activity (`--from`'s default): the earliest `paid_on`
/// of an invoice or `refunded_on` of a refund — the dates that move money (R1). An
/// invoice that was issued but never paid (one open invoice dated 2000-01) does not
/// pull the close back to its month.
pub fn first_billing_period(inputs: &Inputs) -> Result<Option<Period>> {
    let first = |lf: &LazyFrame, column: &str| -> Result<Option<i32>> {
        let df = lf
            .clone()
            .select([col(column).min().alias("first")])
            .collect()
            .map_err(anyhow::Error::from)
            .with_context(|| format!("reading the earliest {column}"))?;
        Ok(df.column("first")?.cast(&DataType::Int32)?.i32()?.get(0))
    };
    let paid = first(&inputs.invoices, "paid_on")?;
    let refunded = first(&inputs.refunds, "refunded_on")?;
    let day = match (paid, refunded) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(day.map(|d| Period::of_date(opnet_pipelines::period::days_to_date(d))))
}

/// The periods a close runs, `--from` (or the first billing activity) through
/// `--through` (or the last complete month). Without an explicit `--from`, more than
/// `close.max_backfill_months` periods are refused, with what to do instead.
pub fn close_range(
    app: &App,
    opts: &CloseOptions,
    inputs: &Inputs,
    now: DateTime<Utc>,
) -> Result<(Period, Period)> {
    let through = opts
        .through
        .unwrap_or_else(|| app.last_complete_period(now));
    let from = match opts.from {
        Some(p) => p,
        None => {
            let from = first_billing_period(inputs)?.ok_or_else(|| {
                anyhow!(
                    "no billing activity: no invoice has a paid_on date and there are no refunds; \
                     pass --from YYYY-MM to close periods anyway"
                )
            })?;
            check_backfill(from, through, app.config.close.max_backfill_months)?;
            from
        }
    };
    Ok((from, through))
}

/// Refuses a default range of more than `max` periods (issue 9 item 9): one stray old
/// date must not make a close run hundreds of periods and send their mail.
pub fn check_backfill(from: Period, through: Period, max: u32) -> Result<()> {
    let n = from.through(through).count();
    if n > max as usize {
        let suggested = through.add_months(1 - max as i32);
        return Err(anyhow!(
            "refusing to close {n} periods ({from} .. {through}): the first billing activity is {from}, \
             more than close.max_backfill_months = {max} months back. Check the billing data for stray \
             old dates; to close them anyway pass --from explicitly (e.g. --from {from}), or close only \
             the last {max} with --from {suggested}, or raise close.max_backfill_months \
             (for the scheduler: set schedule.first_period)"
        ));
    }
    Ok(())
}

/// The quarantine counts of a snapshot, from its manifest.
async fn dataset_counts(app: &App, snapshot: &str) -> Result<(String, Vec<DatasetCounts>)> {
    let manifest = app
        .lake
        .read_manifest(snapshot)
        .await
        .with_context(|| format!("reading snapshot {snapshot}"))?;
    let counts = manifest
        .datasets
        .iter()
        .map(|d| DatasetCounts {
            dataset: d.dataset.clone(),
            rows_in: d.rows_in,
            rows_quarantined: d.rows_quarantined,
        })
        .collect();
    Ok((manifest.fingerprint, counts))
}

/// What to do with the mails of period `period`'s runs under `policy`.
fn disposition(
    policy: MailPolicy,
    audience: mail::Audience,
    period: Period,
    recent_from: Period,
    max_age: u32,
) -> Disposition {
    match policy {
        MailPolicy::All => Disposition::Requeue,
        MailPolicy::None => Disposition::Suppress {
            reason: "suppressed: close --send-mail none".into(),
            summarize: false,
        },
        MailPolicy::Recent if period < recent_from && audience != mail::Audience::Notice => {
            Disposition::Suppress {
                reason: format!(
                    "suppressed: backfill — {period} is older than the latest {max_age} complete month(s) \
                     (email.operator_mail_max_age_months)"
                ),
                summarize: true,
            }
        }
        MailPolicy::Recent => Disposition::Queue,
    }
}

/// The snapshot a close reads and the periods it runs, settled before any run.
struct Prepared {
    ingest: Option<IngestReport>,
    snapshot: String,
    fingerprint: String,
    datasets: Vec<DatasetCounts>,
    inputs: Inputs,
    from: Period,
    through: Period,
}

/// Heal unpublished marts, ingest (or take the given snapshot), read it, and settle
/// the range and the jobs to run.
async fn prepare(
    app: &App,
    opts: &CloseOptions,
    registry: &[Box<dyn jobs::Job>],
    now: DateTime<Utc>,
) -> Result<Prepared> {
    // Marts of runs committed by a process that died before publishing them.
    publish_pending(app).await?;
    let (ingest, snapshot) = match &opts.snapshot {
        Some(s) => (None, s.clone()),
        None => {
            let r = run_ingest(app, now).await?;
            let s = r.snapshot.clone();
            (Some(r), s)
        }
    };
    // A re-run against a recorded snapshot records that snapshot's fingerprint too.
    let (fingerprint, datasets) = dataset_counts(app, &snapshot).await?;
    let inputs = app
        .lake
        .read_snapshot(&snapshot)
        .await
        .with_context(|| format!("reading snapshot {snapshot}"))?;
    let (from, through) = close_range(app, opts, &inputs, now)?;
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
    Ok(Prepared {
        ingest,
        snapshot,
        fingerprint,
        datasets,
        inputs,
        from,
        through,
    })
}

/// Run the close for every period of the options, in order.
pub async fn close(app: &App, opts: &CloseOptions, now: DateTime<Utc>) -> Result<CloseReport> {
    let registry = jobs::registry();
    let prepared = prepare(app, opts, &registry, now).await?;
    let (from, through) = (prepared.from, prepared.through);
    let mut runs = Vec::new();
    let mut enqueued = EnqueueReport::default();
    let progress = progress_bar((from.through(through).count() * registry.len()) as u64);
    let selected: Vec<&dyn jobs::Job> = registry
        .iter()
        .map(|job| job.as_ref())
        .filter(|job| opts.only.is_empty() || opts.only.iter().any(|n| n == job.name()))
        .collect();
    let mut ahead = Ahead::start(app, opts, &prepared, now, &selected);
    for period in from.through(through) {
        let plan = app.config.plan.for_period(period)?;
        let ctx = JobContext {
            period,
            plan,
            inputs: &prepared.inputs,
            config: &app.config,
            run_id: "",
            now,
            revise: opts.revise,
            datasets: &prepared.datasets,
            mail_suppressed: mail_suppressed(app, opts, period, now),
        };
        for &job in &selected {
            progress.set_message(format!("{period} {}", job.name()));
            progress.inc(1);
            let detached = ahead.take(period, job.name()).await;
            let summary = run_job(app, opts, job, &ctx, &prepared, &mut enqueued, detached).await?;
            runs.push(summary);
        }
    }
    progress.finish_and_clear();
    if !opts.defer_backfill_summary && opts.mail == MailPolicy::Recent {
        queue_backfill_summary(app, now).await?;
    }
    let delivering = std::time::Instant::now();
    let delivery = deliver(app).await?;
    let delivery_elapsed_ms = delivering.elapsed().as_millis();
    Ok(CloseReport {
        ingest: prepared.ingest,
        snapshot: prepared.snapshot,
        runs,
        mail: enqueued,
        delivery,
        delivery_elapsed_ms,
    })
}

/// What becomes of each audience's mail of `period`'s runs ([`disposition`] under
/// the close's policy and the configured age limit).
fn dispositions(
    app: &App,
    opts: &CloseOptions,
    period: Period,
    now: DateTime<Utc>,
) -> impl Fn(mail::Audience) -> Disposition + Sync + use<> {
    let max_age = app.config.email.operator_mail_max_age_months;
    let recent_from = app.last_complete_period(now).add_months(1 - max_age as i32);
    let policy = opts.mail;
    move |audience| disposition(policy, audience, period, recent_from, max_age)
}

/// Whether a run of `period` records its operator and periodic internal mail
/// `suppressed` (then a job may leave that mail unrendered).
fn mail_suppressed(app: &App, opts: &CloseOptions, period: Period, now: DateTime<Utc>) -> bool {
    let dispose = dispositions(app, opts, period, now);
    [mail::Audience::Operator, mail::Audience::PeriodicInternal]
        .into_iter()
        .all(|audience| matches!(dispose(audience), Disposition::Suppress { .. }))
}

/// What a job's detached computation ([`jobs::Job::run_detached`]) gave: its output,
/// or the error its run fails with, and how long the worker took.
struct Detached {
    output: Result<JobOutput, jobs::JobError>,
    elapsed_ms: u128,
}

/// One message of the [`Ahead`] worker: a period's job and what it computed.
type AheadResult = (Period, &'static str, Option<Detached>);

/// The close's detached computations ([`jobs::Job::run_detached`]), made on a worker
/// thread and taken by each run in order (issue 13): on two cores exclusivity, alerts,
/// equity and a backfilled period's scorecard are computed while payouts and the
/// report read history and write, the worker staying at most one period ahead of the
/// runs (a bounded channel), so what it holds stays small. The worker has its own
/// copies of the context (the snapshot's frames are shared, not copied). If the close
/// stops early the worker finds nobody listening and stops after its current job; if
/// it dies, or a period's plan cannot be settled, every job it did not deliver is
/// computed by its run as usual.
struct Ahead {
    results: Option<tokio::sync::mpsc::Receiver<AheadResult>>,
}

impl Ahead {
    fn start(
        app: &App,
        opts: &CloseOptions,
        prepared: &Prepared,
        now: DateTime<Utc>,
        selected: &[&dyn jobs::Job],
    ) -> Ahead {
        let names: Vec<&'static str> = selected.iter().map(|job| job.name()).collect();
        // Settled here, as each run settles them; the first period whose plan does not
        // settle ends the worker (its run reports the error).
        let periods: Vec<(Period, Option<opnet_pipelines::Plan>, bool)> = prepared
            .from
            .through(prepared.through)
            .map(|period| {
                (
                    period,
                    app.config.plan.for_period(period).ok().cloned(),
                    mail_suppressed(app, opts, period, now),
                )
            })
            .collect();
        let (inputs, config, datasets, revise) = (
            prepared.inputs.clone(),
            app.config.clone(),
            prepared.datasets.clone(),
            opts.revise,
        );
        let (tx, rx) = tokio::sync::mpsc::channel(names.len().max(1));
        let worker = std::thread::Builder::new()
            .name("opnet-ahead".into())
            .spawn(move || {
                let registry = jobs::registry();
                for (period, plan, mail_suppressed) in &periods {
                    let Some(plan) = plan else { return };
                    let ctx = JobContext {
                        period: *period,
                        plan,
                        inputs: &inputs,
                        config: &config,
                        run_id: "",
                        now,
                        revise,
                        datasets: &datasets,
                        mail_suppressed: *mail_suppressed,
                    };
                    for job in registry.iter().filter(|job| names.contains(&job.name())) {
                        // Every selected job sends, in order, so that `take` never
                        // waits for a job the worker does not compute.
                        let started = std::time::Instant::now();
                        let detached = job.run_detached(&ctx).map(|output| Detached {
                            output,
                            elapsed_ms: started.elapsed().as_millis(),
                        });
                        let result = (*period, job.name(), detached);
                        if tx.blocking_send(result).is_err() {
                            return;
                        }
                    }
                }
            });
        Ahead {
            results: worker.ok().map(|_| rx),
        }
    }

    /// `job`'s detached output for `period`, once the worker has it; `None` when the
    /// job is not detached for the period or the worker is gone (its run computes it).
    async fn take(&mut self, period: Period, job: &str) -> Option<Detached> {
        let results = self.results.as_mut()?;
        match results.recv().await {
            Some((p, name, detached)) if p == period && name == job => detached,
            // Out of step (cannot happen: both follow the periods and the registry) or
            // gone: stop listening, and let every later run compute its own results.
            _ => {
                self.results = None;
                None
            }
        }
    }
}

/// One job for one period: recorded `refused` when the job refuses it (R1.9), else
/// run — again as a new run after a transient failure, up to
/// `retry::JOB_RUN.max_attempts` runs in all, each failed one rolled back with its
/// `failed` ledger row — and published once committed. `detached`: the job's output
/// computed ahead ([`Ahead`]), used by the first attempt.
async fn run_job(
    app: &App,
    opts: &CloseOptions,
    job: &dyn jobs::Job,
    ctx: &JobContext<'_>,
    prepared: &Prepared,
    enqueued: &mut EnqueueReport,
    detached: Option<Detached>,
) -> Result<RunSummary> {
    let period = ctx.period;
    let start = RunStart {
        job: job.name(),
        period: Some(period.to_string()),
        plan_version: Some(ctx.plan.version.clone()),
        input_fingerprint: Some(prepared.fingerprint.clone()),
        snapshot: Some(prepared.snapshot.clone()),
        lease_holder: app.lease_holder.clone(),
    };
    let refusal = {
        let mut conn = app.db.pool.acquire().await.context("acquire")?;
        job.refuse(ctx, &mut conn).await?
    };
    if let Some(refusal) = refusal {
        tracing::warn!(job = job.name(), %period, reason = %refusal.reason, "Run refused");
        app.db
            .refuse_run(&start, &refusal.reason, Utc::now())
            .await?;
        return Ok(RunSummary {
            period,
            job: job.name(),
            run_id: None,
            rows_out: 0,
            elapsed_ms: 0,
            ahead_ms: 0,
            notes: vec![refusal.reason.clone()],
            refusal: Some(refusal),
        });
    }
    let dispose = dispositions(app, opts, period, ctx.now);
    let ahead_ms = detached.as_ref().map_or(0, |d| d.elapsed_ms);
    let mut detached = detached.map(|d| d.output);
    let mut attempt = 1u32;
    loop {
        let run_id = app.db.start_run(&start, Utc::now()).await?;
        let ctx = JobContext {
            run_id: &run_id,
            ..*ctx
        };
        let started = std::time::Instant::now();
        match attempt_run(app, job, &ctx, &dispose, detached.take()).await {
            Ok(RunDone {
                out,
                rows_out,
                mail,
                whole,
            }) => {
                crate::failpoint::point(crate::failpoint::JOB_AFTER_COMMIT);
                tracing::info!(job = job.name(), %period, run_id = %run_id, rows_out, "Run succeeded");
                add_enqueued(enqueued, &mail);
                // Published from the committed rows; a crash before this is healed by
                // the next `publish_pending`.
                let committed = Committed {
                    run_id: &run_id,
                    frames: out
                        .writes
                        .iter()
                        .filter(|w| whole.contains(&w.table))
                        .map(|w| (w.table, &w.frame))
                        .collect(),
                };
                publish_period(
                    app,
                    job.name(),
                    &period.to_string(),
                    Some(&out.files),
                    Some(&committed),
                )
                .await?;
                return Ok(RunSummary {
                    period,
                    job: job.name(),
                    run_id: Some(run_id),
                    rows_out,
                    elapsed_ms: started.elapsed().as_millis(),
                    ahead_ms,
                    notes: out.summary,
                    refusal: None,
                });
            }
            Err(e) => {
                let msg = error_chain(&e);
                app.db.fail_run(&run_id, &msg, Utc::now()).await?;
                let transient = e.is_transient();
                if transient && attempt < retry::JOB_RUN.max_attempts {
                    tracing::warn!(job = job.name(), %period, run_id = %run_id, attempt, error = %msg, "Run failed transiently; running it again");
                    let what = format!("{} {period}", job.name());
                    retry::pause(&retry::JOB_RUN, &what, attempt, &msg).await;
                    attempt += 1;
                    continue;
                }
                tracing::error!(job = job.name(), %period, run_id = %run_id, attempt, transient, error = %msg, "Run failed");
                notify_failed_run(app, opts, job.name(), period, &run_id, &msg, attempt).await;
                return Err(anyhow::Error::new(e).context(format!(
                    "{} {period} failed (run {run_id}); nothing was committed",
                    job.name()
                )));
            }
        }
    }
}

fn add_enqueued(total: &mut EnqueueReport, run: &EnqueueReport) {
    total.queued += run.queued;
    total.suppressed += run.suppressed;
    total.failed += run.failed;
    total.already_there += run.already_there;
}

/// One run in its own transaction, committed when it succeeds, rolled back when not.
async fn attempt_run(
    app: &App,
    job: &dyn jobs::Job,
    ctx: &JobContext<'_>,
    dispose: &(dyn Fn(mail::Audience) -> Disposition + Sync),
    detached: Option<Result<JobOutput, jobs::JobError>>,
) -> Result<RunDone, RunError> {
    let mut tx = app.db.begin_write().await?;
    match run_in_tx(app, job, ctx, &mut tx, dispose, detached).await {
        Ok(done) => {
            crate::failpoint::point(crate::failpoint::JOB_BEFORE_COMMIT);
            tx.commit().await.map_err(RunError::sql(format!(
                "commit {} {}",
                job.name(),
                ctx.period
            )))?;
            Ok(done)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The failure mail of a run that failed for good, with the command to run it again.
async fn notify_failed_run(
    app: &App,
    opts: &CloseOptions,
    job: &str,
    period: Period,
    run_id: &str,
    msg: &str,
    attempt: u32,
) {
    let notice = if attempt > 1 {
        format!(
            "{msg}\n\n(run {attempt} of this close; the {} before it failed transiently)",
            attempt - 1
        )
    } else {
        msg.to_string()
    };
    let rerun = match &app.invocation {
        Invocation::Scheduled => SCHEDULED_RERUN.to_string(),
        Invocation::Command(_) => format!(
            "opnet close --from {period} --through {period}{}",
            if opts.revise { " --revise" } else { "" }
        ),
    };
    queue_failure_notice(app, job, Some(period), run_id, &notice, &rerun).await;
}

/// Deliver what is queued as this process (its lease holder id on the claims), then
/// publish the statement marts whose status changed with their mail.
pub async fn deliver(app: &App) -> Result<DeliveryReport> {
    let opts = DeliverOptions {
        holder: app.lease_holder.clone(),
        ..DeliverOptions::default()
    };
    let report = mail::deliver(&app.db.pool, &app.transport, Utc::now(), &opts).await?;
    publish_pending(app).await?;
    Ok(report)
}

/// An error and its sources on one line, as the ledger and the failure mail show it.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
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

/// Write a job's output, its mails and its ledger row in the run's transaction.
async fn run_in_tx(
    app: &App,
    job: &dyn jobs::Job,
    ctx: &JobContext<'_>,
    tx: &mut sqlx::AnyConnection,
    dispose: &(dyn Fn(mail::Audience) -> Disposition + Sync),
    detached: Option<Result<JobOutput, jobs::JobError>>,
) -> Result<RunDone, RunError> {
    let mut out = match detached {
        Some(detached) => detached?,
        None => job.run(ctx, tx).await?,
    };
    let period = ctx.period.to_string();
    let mut rows_out = 0i64;
    let mut whole = Vec::new();
    for w in &out.writes {
        // Whether the frame is the period's whole content of the table once written
        // (then its mart can be published from it): replaced, or appended to nothing.
        let is_whole = w.replace == Replace::Period
            || sqlx::query(&format!(
                "SELECT 1 FROM {} WHERE period = $1 LIMIT 1",
                w.table
            ))
            .bind(&period)
            .fetch_optional(&mut *tx)
            .await
            .map_err(RunError::sql(format!("reading {} of {period}", w.table)))?
            .is_none();
        if is_whole {
            whole.push(w.table);
        }
        if w.replace == Replace::Period {
            sqlx::query(&format!("DELETE FROM {} WHERE period = $1", w.table))
                .bind(&period)
                .execute(&mut *tx)
                .await
                .map_err(RunError::sql(format!("replacing {} of {period}", w.table)))?;
        }
        rows_out += db::insert_frame(
            tx,
            w.table,
            &w.frame,
            &[("run_id", db::Value::Text(ctx.run_id.to_string()))],
        )
        .await? as i64;
    }
    let mut report = EnqueueReport::default();
    // Every mail of a period's run carries the period (issue 10 item 7).
    for email in &mut out.emails {
        email.period.get_or_insert_with(|| period.clone());
    }
    // Suppressed mail (a backfill's bulk) is recorded in multi-row statements, by
    // disposition; everything else one by one, in order.
    let mut suppressed: Vec<(Disposition, Vec<&mail::OutgoingEmail>)> = Vec::new();
    for email in &out.emails {
        let how = dispose(email.audience);
        if matches!(how, Disposition::Suppress { .. }) {
            match suppressed.iter_mut().find(|(d, _)| *d == how) {
                Some((_, list)) => list.push(email),
                None => suppressed.push((how, vec![email])),
            }
            continue;
        }
        report.count(
            &mail::enqueue_one(
                tx,
                &app.config.email.from,
                email,
                Some(ctx.run_id),
                ctx.now,
                &how,
            )
            .await?,
        );
    }
    for (how, list) in &suppressed {
        let batch = mail::enqueue_suppressed(
            tx,
            &app.config.email.from,
            list,
            Some(ctx.run_id),
            ctx.now,
            how,
        )
        .await?;
        add_enqueued(&mut report, &batch);
    }
    let counts = RunCounts {
        rows_in: out.rows_in,
        rows_quarantined: 0,
        rows_out,
    };
    db::finish_run(tx, ctx.run_id, &counts, Utc::now()).await?;
    Ok(RunDone {
        out,
        rows_out,
        mail: report,
        whole,
    })
}

/// What a committed run leaves for its caller.
struct RunDone {
    out: JobOutput,
    rows_out: i64,
    mail: EnqueueReport,
    /// The output tables whose frame is the period's whole content.
    whole: Vec<&'static str>,
}

/// Frames a run has just committed as the whole period's content of their tables, to
/// publish without reading them back.
pub struct Committed<'a> {
    pub run_id: &'a str,
    pub frames: Vec<(&'static str, &'a DataFrame)>,
}

/// Publish the marts (and report files) of `job` for `period` from the rows the
/// database holds, and record it on the period's succeeded runs of the job
/// (`published_at`). `files`: the files the run produced; `None` (healing a run
/// published by nobody) regenerates them from the database.
///
/// The ledger rows are claimed first, in the transaction that reads the rows: a
/// status change committed meanwhile (which sets `published_at` back to NULL) either
/// is in what is read, or waits for this commit and marks the period again.
pub async fn publish_period(
    app: &App,
    job: &str,
    period: &str,
    files: Option<&[(String, Vec<u8>)]>,
    committed: Option<&Committed<'_>>,
) -> Result<()> {
    let registry = jobs::registry();
    let Some(j) = registry.iter().find(|j| j.name() == job) else {
        return Ok(());
    };
    let p = Period::parse(period).map_err(|e| anyhow!("job_runs period {period:?}: {e}"))?;
    let mut tx = app.db.begin_write().await?;
    sqlx::query(
        "UPDATE job_runs SET published_at = $1 WHERE job = $2 AND period = $3 AND status = 'succeeded' \
         AND published_at IS NULL",
    )
    .bind(db::timestamp(Utc::now()))
    .bind(job)
    .bind(period)
    .execute(&mut *tx)
    .await
    .with_context(|| format!("recording the publication of {job} {period}"))?;
    for spec in j.outputs() {
        let table = spec.table;
        let written = committed
            .filter(|_| !spec.changes_after_run)
            .and_then(|c| Some((c.run_id, c.frames.iter().find(|(t, _)| *t == table)?.1)));
        // Should the frame not have the declared columns, the database's rows are the
        // mart as always.
        let mut frame =
            match written.and_then(|(run_id, f)| db::written_frame(spec, f, run_id).ok()) {
                Some(frame) => frame,
                None => db::period_frame(&mut tx, spec, period).await?,
            };
        app.lake
            .write_mart(table, p, &mut frame)
            .await
            .with_context(|| format!("{job} {period}: publishing mart {table}"))?;
    }
    match files {
        Some(files) => {
            for (key, bytes) in files {
                app.lake
                    .put_file(key, bytes.clone())
                    .await
                    .with_context(|| format!("{job} {period}: writing {key}"))?;
            }
        }
        None if job == "network_health" => {
            // The key network_health.rs writes the report to.
            let plan = app.config.plan.for_period(p)?;
            let report = jobs::network_health::stored_report(&mut tx, p, plan).await?;
            let key = format!("reports/network_health/period={period}/report.html");
            app.lake
                .put_file(&key, report.html.into_bytes())
                .await
                .with_context(|| format!("{job} {period}: writing {key}"))?;
        }
        None => {}
    }
    tx.commit()
        .await
        .with_context(|| format!("recording the publication of {job} {period}"))?;
    Ok(())
}

/// Publish the marts of every succeeded run whose `published_at` is NULL: runs
/// committed by a process that died before publishing, and payouts periods whose
/// statements changed status (approve, send, delivery) since. Returns how many
/// (job, period) were published.
pub async fn publish_pending(app: &App) -> Result<usize> {
    let rows = sqlx::query(
        "SELECT DISTINCT job, period FROM job_runs WHERE status = 'succeeded' AND published_at IS NULL \
         AND period IS NOT NULL ORDER BY period, job",
    )
    .fetch_all(&app.db.pool)
    .await
    .context("reading runs to publish")?;
    let registry = jobs::registry();
    let mut n = 0;
    for r in &rows {
        let job: String = r.try_get(0)?;
        let period: String = r.try_get(1)?;
        // Runs of tasks outside the close (lead runs) publish themselves.
        if !registry.iter().any(|j| j.name() == job) {
            continue;
        }
        publish_period(app, &job, &period, None, None).await?;
        tracing::info!(%job, %period, "Published marts");
        n += 1;
    }
    Ok(n)
}

/// The internal addresses a backfill summary goes to: finance, leadership, ops and
/// partner success, each once.
fn internal_recipients(config: &Config) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let e = &config.email;
    e.finance
        .iter()
        .chain(&e.leadership)
        .chain(&e.ops)
        .chain(&e.partner_success)
        .filter(|a| seen.insert(a.trim().to_ascii_lowercase()))
        .cloned()
        .collect()
}

/// Queue one backfill summary per internal address for every suppressed mail that no
/// summary has listed yet (a crash before this leaves them unlisted, so the next
/// close lists them), and mark them listed — in one transaction. Returns how many
/// summaries were queued.
pub async fn queue_backfill_summary(app: &App, now: DateTime<Utc>) -> Result<usize> {
    let mut tx = app.db.begin_write().await?;
    let rows = sqlx::query(
        "SELECT period, kind, COUNT(*) FROM email_outbox WHERE status = 'suppressed' AND summary_id IS NULL \
         AND period IS NOT NULL GROUP BY period, kind ORDER BY period, kind",
    )
    .fetch_all(&mut *tx)
    .await
    .context("reading suppressed mail")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut by_period: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for r in &rows {
        by_period
            .entry(r.try_get(0)?)
            .or_default()
            .push((r.try_get(1)?, r.try_get(2)?));
    }
    let mut periods = Vec::new();
    for (period, suppressed) in by_period {
        let payable = sqlx::query(&format!(
            "SELECT s.currency, COUNT(*), CAST(SUM(s.payable_cents) AS BIGINT) {} \
             GROUP BY s.currency ORDER BY s.currency",
            jobs::payouts::latest_statements()
        ))
        .bind(&period)
        .fetch_all(&mut *tx)
        .await
        .context("reading statements for the backfill summary")?;
        let mut statements = 0;
        let mut per_currency = Vec::new();
        for r in &payable {
            statements += r.try_get::<i64, _>(1)?;
            per_currency.push((r.try_get(0)?, r.try_get(2)?));
        }
        let exceptions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM reconciliation_exceptions WHERE period = $1")
                .bind(&period)
                .fetch_one(&mut *tx)
                .await?;
        let off_target: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM (SELECT {} FROM network_health WHERE period = $1) h WHERE h.on_target = 0",
            db::bool_as_int("on_target")
        ))
        .bind(&period)
        .fetch_one(&mut *tx)
        .await?;
        periods.push(mail::BackfillPeriodView {
            period,
            statements,
            payable: per_currency,
            exceptions,
            off_target,
            suppressed,
        });
    }
    let view = mail::BackfillSummaryView {
        periods,
        max_age_months: app.config.email.operator_mail_max_age_months,
    };
    let mut queued = 0;
    let mut summary_id = mail::outbox::NOT_SUMMARIZED.to_string();
    for to in internal_recipients(&app.config) {
        let email = mail::backfill_summary_email(&view, &to);
        if summary_id == mail::outbox::NOT_SUMMARIZED {
            summary_id = mail::message_id(&email.dedup_key);
        }
        if let mail::Enqueued::Queued = mail::enqueue_one(
            &mut tx,
            &app.config.email.from,
            &email,
            None,
            now,
            &Disposition::Queue,
        )
        .await?
        {
            queued += 1;
        }
    }
    sqlx::query(
        "UPDATE email_outbox SET summary_id = $1 WHERE status = 'suppressed' AND summary_id IS NULL",
    )
    .bind(&summary_id)
    .execute(&mut *tx)
    .await
    .context("marking suppressed mail as summarised")?;
    tx.commit().await.context("commit the backfill summary")?;
    Ok(queued)
}

/// A failed run tells the ops list — only when the command is unattended (the
/// scheduler) or asked to (`--notify`): at a terminal the error is on stderr and in
/// the ledger, and a typo must not email anyone. Best effort: the failure itself is
/// already recorded.
pub(crate) async fn queue_failure_notice(
    app: &App,
    job: &str,
    period: Option<Period>,
    run_id: &str,
    error: &str,
    rerun: &str,
) {
    if !app.notify {
        return;
    }
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
    let _ = deliver(app).await;
}

#[cfg(test)]
mod tests;
