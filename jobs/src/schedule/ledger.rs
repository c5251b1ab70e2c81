//! What is due, from the run ledger (`job_runs`): every period through the last
//! complete month without a succeeded run of each registry job; runs cut short by a
//! dead process marked interrupted.

use crate::db::{self, Db, DbError};
use crate::jobs;
use chrono::{DateTime, Utc};
use opnet_pipelines::Period;
use sqlx::Row;
use std::collections::BTreeSet;

use super::config::*;
use super::error::*;

/// What an interrupted run is marked with in the ledger.
pub const INTERRUPTED: &str = "interrupted (process stopped)";

/// The job names a scheduled task stands for in `job_runs`.
pub(super) fn ledger_jobs(task: &str) -> Vec<String> {
    if task == CLOSE {
        registry_names().into_iter().map(String::from).collect()
    } else {
        vec![task.to_string()]
    }
}

fn in_list(first_placeholder: usize, n: usize) -> String {
    (0..n)
        .map(|i| format!("${}", first_placeholder + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// (job, period) pairs that are done — a succeeded run, or a refused one (payouts of
/// an approved period: deliberately kept as it is) — for `jobs` and periods in
/// first..=through.
pub(super) async fn succeeded_runs(
    db: &Db,
    jobs: &[String],
    first: Period,
    through: Period,
) -> Result<BTreeSet<(String, Period)>, ScheduleError> {
    let sql = format!(
        "SELECT DISTINCT job, period FROM job_runs WHERE status IN ('succeeded', 'refused') AND period >= $1 AND period <= $2 \
         AND job IN ({})",
        in_list(3, jobs.len())
    );
    let mut q = sqlx::query(&sql)
        .bind(first.to_string())
        .bind(through.to_string());
    for j in jobs {
        q = q.bind(j.clone());
    }
    let rows = q
        .fetch_all(&db.pool)
        .await
        .map_err(DbError::query("read succeeded runs"))?;
    let mut out = BTreeSet::new();
    for r in &rows {
        let job: String = r.try_get(0).map_err(DbError::query("decode job_runs"))?;
        let period: String = r.try_get(1).map_err(DbError::query("decode job_runs"))?;
        let period = Period::parse(&period).map_err(|_| ScheduleError::Period(period))?;
        out.insert((job, period));
    }
    Ok(out)
}

/// Every period in first..=through without a succeeded (or refused) run of `job`,
/// oldest first. For [`CLOSE`] a period counts as done only when every registry job
/// is done for it.
pub async fn due_periods(
    db: &Db,
    job: &str,
    first: Period,
    through: Period,
) -> Result<Vec<Period>, ScheduleError> {
    Ok(due_jobs(db, job, first, through)
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

/// [`due_periods`] with, for each period, the jobs still to run in registry order —
/// the one reading of the ledger that both `opnet status` and the scheduler use.
pub async fn due_jobs(
    db: &Db,
    task: &str,
    first: Period,
    through: Period,
) -> Result<Vec<(Period, Vec<String>)>, ScheduleError> {
    let jobs = ledger_jobs(task);
    let done = succeeded_runs(db, &jobs, first, through).await?;
    Ok(first
        .through(through)
        .map(|p| {
            let missing: Vec<String> = jobs
                .iter()
                .filter(|j| !done.contains(&((*j).clone(), p)))
                .cloned()
                .collect();
            (p, missing)
        })
        .filter(|(_, missing)| !missing.is_empty())
        .collect())
}

/// The earliest period any of `jobs` ran for (whatever the status).
pub(super) async fn earliest_ledger_period(
    db: &Db,
    jobs: &[String],
) -> Result<Option<Period>, ScheduleError> {
    let sql = format!(
        "SELECT MIN(period) FROM job_runs WHERE period IS NOT NULL AND job IN ({})",
        in_list(1, jobs.len())
    );
    let mut q = sqlx::query_scalar::<_, Option<String>>(&sql);
    for j in jobs {
        q = q.bind(j.clone());
    }
    let min = q
        .fetch_one(&db.pool)
        .await
        .map_err(DbError::query("read the first period of job_runs"))?;
    min.map(|s| Period::parse(&s).map_err(|_| ScheduleError::Period(s)))
        .transpose()
}

/// Mark `running` rows that started before `before` as failed: called by the lease
/// holder, so no live process owns them.
pub async fn mark_interrupted(
    db: &Db,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u64, ScheduleError> {
    let res = sqlx::query(
        "UPDATE job_runs SET status = 'failed', finished_at = $1, error = $2 WHERE status = 'running' AND started_at < $3",
    )
    .bind(db::timestamp(now))
    .bind(INTERRUPTED)
    .bind(db::timestamp(before))
    .execute(&db.pool)
    .await
    .map_err(DbError::query("mark interrupted runs"))?;
    Ok(res.rows_affected())
}

/// Mark `running` rows started under another scheduler's lease as failed: called by
/// the lease holder, so their process has lost the lease (died, or was cut off).
pub async fn mark_orphaned(
    db: &Db,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<u64, ScheduleError> {
    let res = sqlx::query(
        "UPDATE job_runs SET status = 'failed', finished_at = $1, error = $2 \
         WHERE status = 'running' AND lease_holder IS NOT NULL AND lease_holder <> $3",
    )
    .bind(db::timestamp(now))
    .bind(INTERRUPTED)
    .bind(holder)
    .execute(&db.pool)
    .await
    .map_err(DbError::query("mark runs of other schedulers interrupted"))?;
    Ok(res.rows_affected())
}

pub(super) fn registry_names() -> Vec<&'static str> {
    jobs::registry().iter().map(|j| j.name()).collect()
}
