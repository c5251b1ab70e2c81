//! The job registry: every monthly job of the close, in the order it runs.
//!
//! A job declares its name, the datasets it reads and the tables it writes, and
//! computes its results from one lake snapshot for one period and plan. The runner
//! ([`crate::close`]) gives it the run's transaction — to read history such as earlier
//! payout lines — and writes what it returns (tables, emails, ledger row) in that same
//! transaction, so a run commits whole or not at all. Adding a job touches its own
//! module and one line of [`registry`].

use crate::config::Config;
pub use crate::db::TableSpec;
use crate::mail::OutgoingEmail;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use opnet_pipelines::{Inputs, Period, Plan};
use polars::prelude::DataFrame;
use sqlx::AnyConnection;

pub mod alerts;
pub mod equity;
pub mod exclusivity;
pub mod network_health;
pub mod payouts;
pub mod scorecard;

/// What a job is given for one run.
pub struct JobContext<'a> {
    pub period: Period,
    pub plan: &'a Plan,
    pub inputs: &'a Inputs,
    pub config: &'a Config,
    pub run_id: &'a str,
    /// Wall-clock time of the run, for timestamps in rows and emails — never used by a rule.
    pub now: DateTime<Utc>,
    /// R1.9 `--revise`: write a new revision of an approved period instead of refusing.
    pub revise: bool,
    /// Row counts per dataset of the snapshot the run reads (its manifest), so the
    /// finance summary can always show what ingest quarantined.
    pub datasets: &'a [DatasetCounts],
    /// The run's operator and periodic internal mail will be recorded `suppressed`
    /// (a backfilled period, `--send-mail none`) and never sent as it stands: a job
    /// may leave such mail unrendered ([`OutgoingEmail::unrendered`]), which saves a
    /// backfill rendering reports and charts nobody receives (issue 13).
    pub mail_suppressed: bool,
}

/// One dataset of a snapshot: rows read and rows quarantined (from its manifest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatasetCounts {
    /// `billing/invoices`, …
    pub dataset: String,
    pub rows_in: u64,
    pub rows_quarantined: u64,
}

/// Why a job does not run for a period (see [`Job::refuse`]); the run is recorded
/// `refused` in `job_runs` with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// One line for the ledger and the terminal.
    pub reason: String,
    /// Payouts: the approved (or sent) revision that is kept, so a summary can say
    /// "already approved (revision N), nothing changed".
    pub approved_revision: Option<i64>,
}

/// How a table's rows for the period are replaced by a re-run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replace {
    /// Delete the period's rows, then insert: a re-run of a period replaces its results.
    Period,
    /// The job removed what it replaces itself (e.g. keeps approved revisions).
    Append,
}

/// Rows for one output table.
pub struct TableWrite {
    pub table: &'static str,
    pub frame: DataFrame,
    pub replace: Replace,
    /// The table is published as a Parquet mart (`marts/<table>/period=…`). The
    /// runner publishes every output table of a job after the commit, from the rows
    /// the database then holds (see `close::publish_pending`); keep this `true`.
    pub publish: bool,
}

/// What a run produced; the runner writes it in the run's transaction.
#[derive(Default)]
pub struct JobOutput {
    pub writes: Vec<TableWrite>,
    pub emails: Vec<OutgoingEmail>,
    /// Files to put in the lake after commit (key, bytes), e.g. the HTML report.
    pub files: Vec<(String, Vec<u8>)>,
    pub rows_in: i64,
    /// One-line facts for the terminal summary ("statements: 42").
    pub summary: Vec<String>,
}

/// Errors a job can end with. `Data`, `Payout` and `Polars` are permanent (bad input,
/// broken control totals); `Database` and `Mail` may be transient.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{job} {period}: {source}")]
    Polars {
        job: &'static str,
        period: Period,
        source: polars::prelude::PolarsError,
    },
    #[error("{job} {period}: {source}")]
    Database {
        job: &'static str,
        period: Period,
        source: crate::db::DbError,
    },
    #[error("{job} {period}: {message}")]
    Data {
        job: &'static str,
        period: Period,
        message: String,
    },
    /// The payout close (R1) refused to produce a result: broken control totals
    /// (R1.10), an invalid plan value, or a computation error — kept as its own error.
    #[error("{job} {period}: {source}")]
    Payout {
        job: &'static str,
        period: Period,
        source: opnet_pipelines::payouts::PayoutError,
    },
    #[error("{job} {period}: {source}")]
    Mail {
        job: &'static str,
        period: Period,
        source: crate::mail::MailError,
    },
}

impl JobError {
    /// `map_err` for a job's Polars errors: `.map_err(JobError::polars(JOB, period))`.
    pub fn polars(
        job: &'static str,
        period: Period,
    ) -> impl Fn(polars::prelude::PolarsError) -> JobError + Copy {
        move |source| JobError::Polars {
            job,
            period,
            source,
        }
    }

    /// `map_err` for a job's database errors.
    pub fn db(job: &'static str, period: Period) -> impl Fn(crate::db::DbError) -> JobError + Copy {
        move |source| JobError::Database {
            job,
            period,
            source,
        }
    }

    /// `map_err` for a job's mail errors (rendering an email).
    pub fn mail(
        job: &'static str,
        period: Period,
    ) -> impl Fn(crate::mail::MailError) -> JobError + Copy {
        move |source| JobError::Mail {
            job,
            period,
            source,
        }
    }

    /// Only a database error that is about the connection (I/O, pool timeout) is
    /// worth another run, and a mail error the outbox marks transient; bad data,
    /// broken control totals and Polars errors fail the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            JobError::Database { source, .. } => source.is_transient(),
            JobError::Mail { source, .. } => source.is_transient(),
            JobError::Polars { .. } | JobError::Data { .. } | JobError::Payout { .. } => false,
        }
    }
}

/// One job of the monthly close.
#[async_trait]
pub trait Job: Send + Sync {
    /// The name in `job_runs.job` and on the command line.
    fn name(&self) -> &'static str;
    /// Datasets of the data contract it reads (`billing/invoices`, …).
    fn inputs(&self) -> &'static [&'static str];
    /// The tables it writes, with their columns as published (its marts).
    fn outputs(&self) -> &'static [TableSpec];
    /// Why this period must not be run now (e.g. approved statements without
    /// `--revise`, R1.9), checked before a run starts; the runner records the refusal
    /// in the ledger.
    async fn refuse(
        &self,
        _ctx: &JobContext<'_>,
        _conn: &mut AnyConnection,
    ) -> Result<Option<Refusal>, JobError> {
        Ok(None)
    }
    /// Compute the period's results. The default serves a job that reads nothing from
    /// the database: its [`Job::run_detached`] output.
    async fn run(
        &self,
        ctx: &JobContext<'_>,
        _conn: &mut AnyConnection,
    ) -> Result<JobOutput, JobError> {
        self.run_detached(ctx).unwrap_or_else(|| {
            Err(JobError::Data {
                job: self.name(),
                period: ctx.period,
                message: "the job implements neither run nor run_detached".into(),
            })
        })
    }
    /// The period's results when, for this context, they depend on the snapshot, the
    /// period and the plan alone — nothing read from the database, no run id (the
    /// context's `run_id` is empty) — so they can be computed before the run starts.
    /// The runner computes these on a worker thread while the period's earlier jobs
    /// write, and writes them in the job's own run (issue 13). `None` (the default):
    /// the job reads history and is computed by [`Job::run`] in its transaction. A job
    /// that returns `Some` and implements `run` too must return exactly what `run`
    /// would; a job that never reads the database implements only this.
    fn run_detached(&self, _ctx: &JobContext<'_>) -> Option<Result<JobOutput, JobError>> {
        None
    }
}

/// Stack for evaluating a pipeline. Polars converts a lazy plan recursively, and the
/// plans of the close (exclusivity's month-by-month joins above all) nest deep
/// enough to overflow the 2 MiB of a tokio worker or test thread in a debug build.
const PIPELINE_STACK: usize = 256 * 1024 * 1024;

/// Run a pipeline computation (`collect()`, `close_payouts`…) on a scoped thread with
/// [`PIPELINE_STACK`] of stack. The job is CPU-bound either way; only untouched stack
/// pages are reserved, not used.
pub fn compute<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("opnet-pipeline".into())
            .stack_size(PIPELINE_STACK)
            .spawn_scoped(scope, f)
        {
            Ok(handle) => match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => panic!("cannot start a pipeline thread: {e}"),
        }
    })
}

/// Every job of the monthly close, in run order: payouts (tiers first, R2) before
/// the jobs that read its results.
pub fn registry() -> Vec<Box<dyn Job>> {
    vec![
        Box::new(payouts::Payouts),
        Box::new(exclusivity::Exclusivity),
        Box::new(alerts::Alerts),
        Box::new(scorecard::Scorecard),
        Box::new(equity::Equity),
        Box::new(network_health::NetworkHealth),
    ]
}

#[cfg(test)]
mod tests;
