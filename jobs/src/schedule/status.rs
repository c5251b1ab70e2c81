//! `opnet status`: schedules with their next fires, the last run of each job, the
//! periods due, the leads waiting, the mail queue and the lease.

use crate::app::App;
use crate::db::DbError;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use opnet_pipelines::Period;
use sqlx::Row;
use std::fmt;

use super::config::*;
use super::error::*;
use super::lease::*;
use super::ledger::*;
use crate::app::last_complete_period;

/// One schedule with its next fires.
#[derive(Debug)]
pub struct ScheduleStatus {
    pub name: String,
    pub cron: String,
    pub next: Vec<DateTime<Tz>>,
}

/// The latest run of one job.
#[derive(Debug)]
pub struct LastRun {
    pub job: String,
    pub status: String,
    pub period: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

/// What the close would do now.
#[derive(Debug)]
pub enum Due {
    Periods(Vec<Period>),
    /// Nothing in the ledger and no `schedule.first_period`: every month from the
    /// first one with billing activity.
    FromFirstBilling,
}

/// `opnet status`.
#[derive(Debug)]
pub struct Status {
    pub timezone: Tz,
    pub schedules: Vec<ScheduleStatus>,
    pub last_runs: Vec<LastRun>,
    pub through: Period,
    pub due: Due,
    pub mails_queued: i64,
    pub mails_sending: i64,
    pub mails_failed: i64,
    /// Recorded, never sent: operator mail of backfilled periods (issue 9 item 16).
    pub mails_suppressed: i64,
    /// (holder, expires_at) of the scheduler lease, if held.
    pub lease: Option<(String, String)>,
    /// Leads without an operator (R8.3 `no_capacity`), tried again by every lead run.
    pub leads_waiting: i64,
    /// Assigned leads not yet written back to the CRM (`None`: no write-back).
    pub leads_not_written_back: Option<i64>,
}

/// Gather `opnet status` from the config and the database.
pub async fn status(
    app: &App,
    cfg: &ScheduleConfig,
    now: DateTime<Utc>,
) -> Result<Status, ScheduleError> {
    let tz = cfg.timezone;
    let mut schedules = Vec::new();
    for j in &cfg.jobs {
        schedules.push(ScheduleStatus {
            name: j.name.clone(),
            cron: j.cron.as_str().into(),
            next: j
                .cron
                .next_fires(tz, now, 3)?
                .into_iter()
                .map(|t| t.with_timezone(&tz))
                .collect(),
        });
    }
    let rows = sqlx::query(
        "SELECT r.job, r.status, r.period, r.started_at, r.finished_at, r.error FROM job_runs r \
         WHERE r.started_at = (SELECT MAX(s.started_at) FROM job_runs s WHERE s.job = r.job) \
         ORDER BY r.job, r.run_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .map_err(DbError::query("read the last runs"))?;
    let mut last_runs: Vec<LastRun> = Vec::new();
    for r in &rows {
        let d = DbError::query("decode job_runs");
        let job: String = r.try_get(0).map_err(d)?;
        if last_runs.last().is_some_and(|l| l.job == job) {
            continue;
        }
        let d = || DbError::query("decode job_runs");
        last_runs.push(LastRun {
            job,
            status: r.try_get(1).map_err(d())?,
            period: r.try_get(2).map_err(d())?,
            started_at: r.try_get(3).map_err(d())?,
            finished_at: r.try_get(4).map_err(d())?,
            error: r.try_get(5).map_err(d())?,
        });
    }
    let through = last_complete_period(now, tz);
    let names = ledger_jobs(CLOSE);
    let first = match cfg.first_period {
        Some(p) => Some(p),
        None => earliest_ledger_period(&app.db, &names).await?,
    };
    let due = match first {
        Some(first) => Due::Periods(due_periods(&app.db, CLOSE, first, through).await?),
        None => Due::FromFirstBilling,
    };
    let count = |status: &'static str| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM email_outbox WHERE status = $1")
                .bind(status)
                .fetch_one(&pool)
                .await
                .map_err(DbError::query("count email_outbox"))
        }
    };
    let lease = sqlx::query(
        "SELECT holder || ' (' || COALESCE(command, 'opnet schedule') || ')', expires_at FROM job_leases WHERE name = $1",
    )
        .bind(LEASE)
        .fetch_optional(&app.db.pool)
        .await
        .map_err(DbError::query("read job_leases"))?
        .map(|r| -> Result<(String, String), sqlx::Error> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .transpose()
        .map_err(DbError::query("decode job_leases"))?;
    let (leads_waiting, leads_not_written_back) = crate::leads::status(app)
        .await
        .map_err(run_err("reading lead_assignments"))?;
    Ok(Status {
        timezone: tz,
        schedules,
        last_runs,
        through,
        due,
        mails_queued: count("queued").await?,
        mails_sending: count("sending").await?,
        mails_failed: count("failed").await?,
        mails_suppressed: count("suppressed").await?,
        lease,
        leads_waiting,
        leads_not_written_back,
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
        let table = |header: &[&str]| {
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(header.to_vec());
            t
        };
        writeln!(f, "schedules (business timezone {}):", self.timezone)?;
        let mut t = table(&["task", "cron", "next fires"]);
        for s in &self.schedules {
            t.add_row(vec![
                s.name.clone(),
                s.cron.clone(),
                s.next
                    .iter()
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S %Z").to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ]);
        }
        writeln!(f, "{t}")?;
        writeln!(f, "last run per job:")?;
        if self.last_runs.is_empty() {
            writeln!(f, "  (no runs yet)")?;
        } else {
            let mut t = table(&[
                "job",
                "status",
                "period",
                "started_at",
                "finished_at",
                "error",
            ]);
            for r in &self.last_runs {
                t.add_row(vec![
                    r.job.clone(),
                    r.status.clone(),
                    r.period.clone().unwrap_or_default(),
                    r.started_at.clone(),
                    r.finished_at.clone().unwrap_or_default(),
                    r.error.clone().unwrap_or_default(),
                ]);
            }
            writeln!(f, "{t}")?;
        }
        match &self.due {
            Due::Periods(p) if p.is_empty() => {
                writeln!(f, "close: nothing due through {}", self.through)?
            }
            Due::Periods(p) => writeln!(
                f,
                "close: due {}",
                p.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
            Due::FromFirstBilling => writeln!(
                f,
                "close: due every period from the first month with billing activity through {} (nothing closed yet)",
                self.through
            )?,
        }
        write!(
            f,
            "leads: {} waiting without an operator with capacity (no_capacity; every lead run tries them again)",
            self.leads_waiting
        )?;
        if let Some(n) = self.leads_not_written_back {
            write!(f, ", {n} assignment(s) not yet written back to the CRM")?;
        }
        writeln!(f)?;
        if let Some((holder, expires)) = &self.lease {
            writeln!(f, "lease {LEASE:?}: held by {holder} until {expires}")?;
        }
        write!(
            f,
            "mails: {} queued, {} sending, {} failed, {} suppressed (backfill: recorded, not sent)",
            self.mails_queued, self.mails_sending, self.mails_failed, self.mails_suppressed
        )
    }
}
