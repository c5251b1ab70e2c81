//! The run ledger (`job_runs`): a run is recorded `running` when it starts, then
//! `succeeded` inside its results transaction, or `failed`/`refused`; `opnet runs`
//! reads it back.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{Db, DbError, timestamp};

/// One row of the run ledger, as `opnet runs` shows it.
#[derive(Clone, Debug)]
pub struct RunRow {
    pub run_id: String,
    pub job: String,
    pub period: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub plan_version: Option<String>,
    pub input_fingerprint: Option<String>,
    pub snapshot: Option<String>,
    pub rows_in: i64,
    pub rows_quarantined: i64,
    pub rows_out: i64,
    pub error: Option<String>,
}

/// What a run declares when it starts.
#[derive(Clone, Debug, Default)]
pub struct RunStart<'a> {
    pub job: &'a str,
    pub period: Option<String>,
    pub plan_version: Option<String>,
    pub input_fingerprint: Option<String>,
    pub snapshot: Option<String>,
    /// The scheduler (lease holder) running it; `None` for manual commands.
    pub lease_holder: Option<String>,
}

/// What a run reports when it ends.
#[derive(Clone, Debug, Default)]
pub struct RunCounts {
    pub rows_in: i64,
    pub rows_quarantined: i64,
    pub rows_out: i64,
}

fn new_run_id(start: &RunStart<'_>) -> String {
    format!(
        "{}-{}-{}",
        start.job,
        start.period.as_deref().unwrap_or("all"),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl Db {
    /// Record a `running` run, committed at once so a crash leaves it visible.
    pub async fn start_run(
        &self,
        start: &RunStart<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, DbError> {
        let run_id = new_run_id(start);
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, period, started_at, status, plan_version, input_fingerprint, snapshot, host, lease_holder) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9)",
        )
        .bind(&run_id)
        .bind(start.job)
        .bind(start.period.clone())
        .bind(timestamp(now))
        .bind(start.plan_version.clone())
        .bind(start.input_fingerprint.clone())
        .bind(start.snapshot.clone())
        .bind(hostname())
        .bind(start.lease_holder.clone())
        .execute(&self.pool)
        .await
        .map_err(DbError::query("insert job_runs"))?;
        Ok(run_id)
    }

    /// Record a run that was refused before it started (issue 14: e.g. payouts of an
    /// approved period without `--revise`): status `refused`, the reason in `error`,
    /// started and finished `now`. For the due-period logic a refused run counts as
    /// done: what it would have changed is deliberately kept.
    pub async fn refuse_run(
        &self,
        start: &RunStart<'_>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<String, DbError> {
        let run_id = new_run_id(start);
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, period, started_at, finished_at, status, plan_version, input_fingerprint, \
             snapshot, host, lease_holder, error) VALUES ($1, $2, $3, $4, $4, 'refused', $5, $6, $7, $8, $9, $10)",
        )
        .bind(&run_id)
        .bind(start.job)
        .bind(start.period.clone())
        .bind(timestamp(now))
        .bind(start.plan_version.clone())
        .bind(start.input_fingerprint.clone())
        .bind(start.snapshot.clone())
        .bind(hostname())
        .bind(start.lease_holder.clone())
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(DbError::query("insert refused job_runs"))?;
        Ok(run_id)
    }

    /// Mark a run failed. Called after its transaction rolled back, so the failed
    /// record is all that the run leaves behind.
    pub async fn fail_run(
        &self,
        run_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE job_runs SET status = 'failed', finished_at = $1, error = $2 WHERE run_id = $3",
        )
        .bind(timestamp(now))
        .bind(error)
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(DbError::query("update job_runs"))?;
        Ok(())
    }

    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunRow>, DbError> {
        let rows = sqlx::query(
            "SELECT run_id, job, period, started_at, finished_at, status, plan_version, input_fingerprint, snapshot, \
             rows_in, rows_quarantined, rows_out, error FROM job_runs ORDER BY started_at DESC, run_id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(DbError::query("read job_runs"))?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    run_id: r.try_get(0)?,
                    job: r.try_get(1)?,
                    period: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    finished_at: r.try_get(4)?,
                    status: r.try_get(5)?,
                    plan_version: r.try_get(6)?,
                    input_fingerprint: r.try_get(7)?,
                    snapshot: r.try_get(8)?,
                    rows_in: r.try_get(9)?,
                    rows_quarantined: r.try_get(10)?,
                    rows_out: r.try_get(11)?,
                    error: r.try_get(12)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::query("decode job_runs"))
    }
}

/// Mark a run succeeded inside its results transaction: both commit or neither.
pub async fn finish_run(
    conn: &mut AnyConnection,
    run_id: &str,
    counts: &RunCounts,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    // Only a `running` row can succeed: a scheduler that took the lease over may
    // have marked this run interrupted, and then its transaction must not commit
    // (the run is being, or has been, redone by the new holder).
    let res = sqlx::query(
        "UPDATE job_runs SET status = 'succeeded', finished_at = $1, rows_in = $2, rows_quarantined = $3, rows_out = $4 \
         WHERE run_id = $5 AND status = 'running'",
    )
    .bind(timestamp(now))
    .bind(counts.rows_in)
    .bind(counts.rows_quarantined)
    .bind(counts.rows_out)
    .bind(run_id)
    .execute(&mut *conn)
    .await
    .map_err(DbError::query("finish job_runs"))?;
    if res.rows_affected() != 1 {
        return Err(DbError::RunNotRunning {
            run_id: run_id.to_string(),
        });
    }
    Ok(())
}

/// This machine's name (`$HOSTNAME`, else `/etc/hostname`, else empty): the `host` of
/// a run and the first part of a scheduler's lease holder id.
pub(crate) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default()
}
