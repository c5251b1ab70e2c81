//! The scheduler daemon (`opnet schedule`) and `opnet status`: wake at configured
//! times in the business timezone, and let the run ledger decide what to do.
//!
//! A fire is only a wake-up. What is due is derived from `job_runs` each time: every
//! period from the first one through the last complete month (in business time) that
//! lacks a succeeded run of some registry job, oldest first. So a missed, late, early
//! or doubled fire neither skips nor repeats a period, and the first wake after
//! downtime closes the missing periods in order. Fire times are computed here (the
//! cron expression is evaluated on the local wall clock with `croner`, then mapped to
//! UTC with explicit rules for the DST gap and overlap); `tokio-cron-scheduler` only
//! runs one-shot timers at those instants, backed by a watchdog, so its known DST and
//! "tick in the past" bugs cannot stop or shift the daemon.
//!
//! One run at a time across replicas: every scheduled run holds the lease row `close`
//! of `job_leases` (acquired with one upsert that only takes over an expired lease,
//! renewed every ttl/3; a holder that loses it abandons its run, whose transaction
//! rolls back). On SQLite a second daemon is refused up front by an OS file lock
//! (`flock` on `<database>.schedule.lock`, released by the kernel if the process dies).
//! On SIGTERM/SIGINT the daemon starts no new run, lets the one in progress finish,
//! and exits; a run cut short by a crash stays `running` in the ledger until the next
//! lease holder marks it `failed` with "interrupted (process stopped)".

use crate::app::App;
use crate::close::{self, CloseOptions};
use crate::db::{self, Backend, Db, DbError};
use crate::ingest::IngestReport;
use crate::jobs;
use crate::mail;
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use opnet_pipelines::Period;
use serde::Deserialize;
use sqlx::Row;
use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

/// The scheduled task that runs the monthly close (the whole job registry).
pub const CLOSE: &str = "close";
/// The scheduled task that snapshots the sources into the lake.
pub const INGEST: &str = "ingest";
/// The lease every scheduled run holds, so replicas never run anything at once.
pub const LEASE: &str = "close";
/// What an interrupted run is marked with in the ledger.
pub const INTERRUPTED: &str = "interrupted (process stopped)";

/// How often a waiting daemon retries a held lease.
const LEASE_POLL: Duration = Duration::from_secs(1);
/// A wake-up the timer library failed to deliver is made up this long after its time.
const WATCHDOG: TimeDelta = TimeDelta::seconds(60);
/// Larger than any UTC-offset change of a zone at one transition (2 h in tzdb), so a
/// search that starts this far back on the wall clock sees both occurrences of an
/// ambiguous hour.
const MAX_SHIFT: TimeDelta = TimeDelta::hours(3);

/// Errors of the scheduler; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron expression {expr:?}: {message}")]
    Cron { expr: String, message: String },
    #[error("unknown time zone {0:?}: expected an IANA name such as Europe/Berlin")]
    TimeZone(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("job_runs.period {0:?} is not YYYY-MM")]
    Period(String),
    #[error(
        "another opnet schedule (pid {pid}) holds {path}; one scheduler per SQLite database (use PostgreSQL for replicas)"
    )]
    Locked { pid: String, path: String },
    #[error("lock file {path}: {source}")]
    LockFile {
        path: String,
        source: std::io::Error,
    },
    #[error("lease {name:?} was lost (expired or taken over): the run was abandoned")]
    LeaseLost { name: String },
    /// A manual command found the lease held by another process (and waited, if
    /// asked to, without getting it): it did nothing.
    #[error(
        "another opnet process is working on this database: lease {name:?} is held by {holder} ({command}) \
         until {expires_at} (renewed while it works). Nothing was done; run the command again when it has \
         finished (`opnet status` shows the lease), or pass --lease-wait SECS to wait for it"
    )]
    LeaseBusy {
        name: String,
        holder: String,
        command: String,
        expires_at: String,
    },
    #[error("timer: {0:?}")]
    Timer(tokio_cron_scheduler::JobSchedulerError),
    #[error("{what}: {message}")]
    Run { what: String, message: String },
}

impl From<tokio_cron_scheduler::JobSchedulerError> for ScheduleError {
    fn from(e: tokio_cron_scheduler::JobSchedulerError) -> Self {
        ScheduleError::Timer(e)
    }
}

fn run_err(what: impl Into<String>) -> impl FnOnce(anyhow::Error) -> ScheduleError {
    let what = what.into();
    move |e| ScheduleError::Run {
        what,
        message: format!("{e:#}"),
    }
}

// ---------------------------------------------------------------------------------
// Configuration

/// `[schedule]` as written in the config file (every key optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// IANA name of the business timezone the cron expressions are read in.
    pub timezone: Option<String>,
    /// Seconds a lease lasts without renewal (a crashed holder's is taken over after).
    pub lease_ttl_secs: Option<u64>,
    /// First period the daemon closes; default: the earliest in the ledger, else the
    /// first month with billing activity (paid or refunded).
    pub first_period: Option<String>,
    /// The schedules; default: ingest daily at 02:00, close on the 1st at 06:00.
    pub jobs: Option<Vec<ScheduleJobFile>>,
}

/// One `[[schedule.jobs]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleJobFile {
    /// `ingest` or `close`.
    pub name: String,
    /// Cron expression, `sec min hour day-of-month month day-of-week` (seconds optional).
    pub cron: String,
}

/// One resolved schedule.
#[derive(Clone, Debug)]
pub struct ScheduledJob {
    pub name: String,
    pub cron: CronSchedule,
}

/// The resolved, validated `[schedule]` section.
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    pub timezone: Tz,
    pub jobs: Vec<ScheduledJob>,
    pub lease_ttl: Duration,
    pub first_period: Option<Period>,
}

pub const DEFAULT_INGEST_CRON: &str = "0 0 2 * * *";
pub const DEFAULT_CLOSE_CRON: &str = "0 0 6 1 * *";
pub const DEFAULT_LEASE_TTL_SECS: u64 = 300;

impl Default for ScheduleConfig {
    fn default() -> Self {
        let job = |name: &str, cron: &str| ScheduledJob {
            name: name.into(),
            cron: CronSchedule::parse(cron).unwrap_or_else(|e| panic!("default cron: {e}")),
        };
        ScheduleConfig {
            timezone: Tz::UTC,
            jobs: vec![
                job(INGEST, DEFAULT_INGEST_CRON),
                job(CLOSE, DEFAULT_CLOSE_CRON),
            ],
            lease_ttl: Duration::from_secs(DEFAULT_LEASE_TTL_SECS),
            first_period: None,
        }
    }
}

impl ScheduleConfig {
    /// Resolve the file's section; every problem is reported with its key
    /// (`key schedule.timezone: …`, `key schedule.jobs[1].cron: …`).
    pub fn resolve(file: Option<&ScheduleFile>) -> Result<ScheduleConfig, Vec<String>> {
        let mut cfg = ScheduleConfig::default();
        let Some(file) = file else {
            return Ok(cfg);
        };
        let mut p = Vec::new();
        if let Some(tz) = &file.timezone {
            match tz.parse::<Tz>() {
                Ok(tz) => cfg.timezone = tz,
                Err(_) => p.push(format!(
                    "key schedule.timezone: {}",
                    ScheduleError::TimeZone(tz.clone())
                )),
            }
        }
        if let Some(ttl) = file.lease_ttl_secs {
            if (10..=86_400).contains(&ttl) {
                cfg.lease_ttl = Duration::from_secs(ttl);
            } else {
                p.push(format!(
                    "key schedule.lease_ttl_secs: must be between 10 and 86400 seconds, got {ttl}"
                ));
            }
        }
        if let Some(s) = &file.first_period {
            match Period::parse(s) {
                Ok(period) => cfg.first_period = Some(period),
                Err(e) => p.push(format!("key schedule.first_period: {e}")),
            }
        }
        if let Some(jobs) = &file.jobs {
            cfg.jobs.clear();
            let mut seen = BTreeSet::new();
            for (i, j) in jobs.iter().enumerate() {
                if j.name != INGEST && j.name != CLOSE {
                    p.push(format!(
                        "key schedule.jobs[{i}].name: unknown task {:?}; expected {INGEST:?} or {CLOSE:?} \
                         (the close runs the whole registry: {})",
                        j.name,
                        registry_names().join(", ")
                    ));
                } else if !seen.insert(j.name.clone()) {
                    p.push(format!(
                        "key schedule.jobs[{i}].name: {:?} is scheduled twice; give one cron expression per task",
                        j.name
                    ));
                }
                let cron = CronSchedule::parse(&j.cron).and_then(|c| {
                    // An expression that never fires (31 February) is a mistake too.
                    c.next_fires(cfg.timezone, Utc::now(), 1)?;
                    Ok(c)
                });
                match cron {
                    Ok(cron) => cfg.jobs.push(ScheduledJob {
                        name: j.name.clone(),
                        cron,
                    }),
                    Err(e) => p.push(format!("key schedule.jobs[{i}].cron: {e}")),
                }
            }
        }
        if p.is_empty() { Ok(cfg) } else { Err(p) }
    }
}

fn registry_names() -> Vec<&'static str> {
    jobs::registry().iter().map(|j| j.name()).collect()
}

// ---------------------------------------------------------------------------------
// Fire times

/// A parsed cron expression and how it behaves at DST transitions.
///
/// The expression is matched against the local wall clock. A wall-clock match that
/// does not exist (spring forward) fires at the first valid instant after the gap if
/// the expression names one fixed time of day (`0 30 2 * * *`), and is skipped if it
/// repeats within the day (`0 0 * * * *`: the skipped hour never happened). A match
/// that exists twice (fall back) fires once, at its first occurrence, for a fixed time
/// of day, and at both occurrences for a repeating one (they are different hours).
/// This is croner's classification (`JobType`), applied by opnet.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
    fixed_time: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule").field(&self.expr).finish()
    }
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<CronSchedule, ScheduleError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron {
                expr: expr.into(),
                message: e.to_string(),
            })?;
        let fixed_time = cron.determine_job_type() == croner::JobType::FixedTime;
        Ok(CronSchedule {
            expr: expr.to_string(),
            cron,
            fixed_time,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The next wall-clock match strictly after `t` (a naive local time).
    fn wall_after(&self, t: NaiveDateTime) -> Result<NaiveDateTime, ScheduleError> {
        // Searching in UTC makes croner a pure wall-clock matcher: UTC has no DST, so
        // none of its own transition handling applies; the mapping is ours (`instants`).
        self.cron
            .find_next_occurrence(&Utc.from_utc_datetime(&t), false)
            .map(|d| d.naive_utc())
            .map_err(|e| ScheduleError::Cron {
                expr: self.expr.clone(),
                message: format!("no fire time after {t}: {e}"),
            })
    }

    /// The instants one wall-clock match stands for (none, one or two).
    fn instants(&self, tz: Tz, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = if a <= b { (a, b) } else { (b, a) };
                if self.fixed_time {
                    vec![first.with_timezone(&Utc)]
                } else {
                    vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
                }
            }
            LocalResult::None if self.fixed_time => {
                first_valid_after(tz, wall).into_iter().collect()
            }
            LocalResult::None => Vec::new(),
        }
    }

    /// The next `n` fire instants strictly after `after`, ascending, without repeats.
    pub fn next_fires(
        &self,
        tz: Tz,
        after: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
        let mut out = BTreeSet::new();
        if n == 0 {
            return Ok(Vec::new());
        }
        // Start early on the wall clock: after a fall-back, a wall time before
        // `after`'s can still have a second occurrence after it.
        let mut wall = after.with_timezone(&tz).naive_local() - MAX_SHIFT;
        loop {
            wall = self.wall_after(wall)?;
            out.extend(self.instants(tz, wall).into_iter().filter(|&t| t > after));
            // Once the wall clock is MAX_SHIFT past the n-th fire, no later match can
            // map before it.
            if let Some(nth) = out.iter().nth(n - 1)
                && wall > nth.with_timezone(&tz).naive_local() + MAX_SHIFT
            {
                break;
            }
        }
        Ok(out.into_iter().take(n).collect())
    }

    /// The last fire instant at or before `at` (within about a year), if any.
    pub fn prev_fire(
        &self,
        tz: Tz,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        // Widening windows keep this cheap for frequent and for rare expressions.
        for window in [
            TimeDelta::hours(2),
            TimeDelta::days(2),
            TimeDelta::days(32),
            TimeDelta::days(400),
        ] {
            let start = at - window;
            let mut last = None;
            let mut from = start;
            'scan: loop {
                for t in self.next_fires(tz, from, 64)? {
                    if t > at {
                        break 'scan;
                    }
                    last = Some(t);
                    from = t;
                }
            }
            if last.is_some() {
                return Ok(last);
            }
        }
        Ok(None)
    }
}

/// The first instant after a DST gap that contains `wall`.
fn first_valid_after(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Gaps are at most a few hours and start and end on whole seconds.
    let mut t = wall;
    for _ in 0..(MAX_SHIFT.num_seconds() + 1) {
        t += TimeDelta::seconds(1);
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return Some(dt.with_timezone(&Utc));
        }
    }
    None
}

/// The next `n` fires of a cron expression in business timezone `tz` strictly after
/// `after`, as UTC instants (see [`CronSchedule`] for the DST rules).
pub fn next_fires(
    cron: &str,
    tz: Tz,
    after: DateTime<Utc>,
    n: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    CronSchedule::parse(cron)?.next_fires(tz, after, n)
}

/// The last complete month on the business calendar: the one definition, in
/// `close` (issue 10 item 6).
use crate::app::last_complete_period;

// ---------------------------------------------------------------------------------
// The ledger

/// The job names a scheduled task stands for in `job_runs`.
fn ledger_jobs(task: &str) -> Vec<String> {
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
async fn succeeded_runs(
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
    let jobs = ledger_jobs(job);
    let done = succeeded_runs(db, &jobs, first, through).await?;
    Ok(first
        .through(through)
        .filter(|p| jobs.iter().any(|j| !done.contains(&(j.clone(), *p))))
        .collect())
}

/// The earliest period any of `jobs` ran for (whatever the status).
async fn earliest_ledger_period(db: &Db, jobs: &[String]) -> Result<Option<Period>, ScheduleError> {
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

// ---------------------------------------------------------------------------------
// Leases and the SQLite process lock

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::seconds(d.as_secs().min(i32::MAX as u64) as i64)
}

/// Take lease `name` for `holder` if it is free, expired, or already `holder`'s.
pub async fn try_lease(
    db: &Db,
    name: &str,
    holder: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<bool, ScheduleError> {
    try_lease_for(db, name, holder, "opnet schedule", ttl, now).await
}

/// [`try_lease`], recording what the holder is doing (`opnet close`, …) for the
/// message another command gets while it holds the lease.
pub async fn try_lease_for(
    db: &Db,
    name: &str,
    holder: &str,
    command: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<bool, ScheduleError> {
    // One statement, so two replicas cannot both see "free": the row lock of the
    // upsert serialises them, and the loser's WHERE sees the winner's fresh expiry.
    sqlx::query(
        "INSERT INTO job_leases (name, holder, acquired_at, expires_at, command) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, \
         expires_at = excluded.expires_at, command = excluded.command \
         WHERE job_leases.expires_at < excluded.acquired_at OR job_leases.holder = excluded.holder",
    )
    .bind(name)
    .bind(holder)
    .bind(db::timestamp(now))
    .bind(db::timestamp(now + delta(ttl)))
    .bind(command)
    .execute(&db.pool)
    .await
    .map_err(DbError::query(format!("take lease {name}")))?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT holder FROM job_leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&db.pool)
            .await
            .map_err(DbError::query(format!("read lease {name}")))?;
    Ok(current.as_deref() == Some(holder))
}

/// Extend `holder`'s lease; false when it is no longer theirs.
pub async fn renew(
    db: &Db,
    name: &str,
    holder: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<bool, ScheduleError> {
    let res = sqlx::query("UPDATE job_leases SET expires_at = $1 WHERE name = $2 AND holder = $3")
        .bind(db::timestamp(now + delta(ttl)))
        .bind(name)
        .bind(holder)
        .execute(&db.pool)
        .await
        .map_err(DbError::query(format!("renew lease {name}")))?;
    Ok(res.rows_affected() == 1)
}

/// Give the lease up (only if still `holder`'s).
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<(), ScheduleError> {
    sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(&db.pool)
        .await
        .map_err(DbError::query(format!("release lease {name}")))?;
    Ok(())
}

/// Who this process is in `job_leases.holder`: host, pid and a random suffix.
pub fn holder_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Run `work` while holding [`LEASE`]: wait for it (unless stopping), renew it every
/// ttl/3, abandon the work if the lease is lost, release it after.
/// `Ok(None)`: stopped before the lease was acquired.
async fn with_lease<T>(
    db: &Db,
    holder: &str,
    ttl: Duration,
    stop: &watch::Receiver<bool>,
    work: impl Future<Output = Result<T, ScheduleError>>,
) -> Result<Option<T>, ScheduleError> {
    let mut waited = false;
    loop {
        if *stop.borrow() {
            return Ok(None);
        }
        if try_lease(db, LEASE, holder, ttl, Utc::now()).await? {
            break;
        }
        if !waited {
            info!(lease = LEASE, "Lease held by another process; waiting");
            waited = true;
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
    holding(db, holder, ttl, work, || ScheduleError::LeaseLost {
        name: LEASE.into(),
    })
    .await
    .map(Some)
}

/// Run `work` with the lease already taken: renew it every ttl/3, abandon the work
/// (`lost()`) if the lease is lost, release it after.
async fn holding<T, E>(
    db: &Db,
    holder: &str,
    ttl: Duration,
    work: impl Future<Output = Result<T, E>>,
    lost: impl FnOnce() -> E,
) -> Result<T, E> {
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let renewer = tokio::spawn(renew_loop(db.clone(), holder.to_string(), ttl, lost_tx));
    let result = tokio::select! {
        r = work => r,
        _ = async {
            if lost_rx.wait_for(|lost| *lost).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => Err(lost()),
    };
    renewer.abort();
    if let Err(e) = release(db, LEASE, holder).await {
        // It expires by itself; the next holder takes it over.
        warn!(error = %e, "Could not release the lease");
    }
    result
}

/// Take the lease for a manual command (`opnet close`, `ingest`, `deliver`, `payouts
/// approve`/`send`), waiting at most `wait` for another holder to finish — then refuse,
/// naming the holder ([`ScheduleError::LeaseBusy`]). Two commands started together
/// therefore never repeat each other's work (issue 9 item 2): the second one does
/// nothing and says why. Once taken, the command first recovers what dead holders
/// left (see [`recover`]), runs `work` while renewing the lease, and gives it up.
pub async fn with_command_lease<T>(
    app: &App,
    holder: &str,
    command: &str,
    wait: Duration,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let ttl = app.config.schedule.lease_ttl;
    let deadline = std::time::Instant::now() + wait;
    let mut waited = false;
    loop {
        if try_lease_for(&app.db, LEASE, holder, command, ttl, Utc::now()).await? {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let row = sqlx::query(
                "SELECT holder, COALESCE(command, 'opnet schedule'), expires_at FROM job_leases WHERE name = $1",
            )
            .bind(LEASE)
            .fetch_optional(&app.db.pool)
            .await
            .map_err(DbError::query("read job_leases"))?;
            let Some(row) = row else {
                // Released just now: try again.
                continue;
            };
            let d = || DbError::query("decode job_leases");
            return Err(ScheduleError::LeaseBusy {
                name: LEASE.into(),
                holder: row.try_get(0).map_err(d())?,
                command: row.try_get(1).map_err(d())?,
                expires_at: row.try_get(2).map_err(d())?,
            }
            .into());
        }
        if !waited {
            info!(lease = LEASE, "Lease held by another process; waiting");
            waited = true;
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
    let work = async {
        for line in recover(app, holder).await? {
            info!("{line}");
        }
        work.await
    };
    holding(&app.db, holder, ttl, work, || {
        anyhow::Error::from(ScheduleError::LeaseLost { name: LEASE.into() })
    })
    .await
}

/// What a new lease holder does first: the other holders no longer hold the lease,
/// so their `running` runs are dead (or cut off, and then fenced: no longer
/// `running`, they cannot commit) and are marked interrupted; their `sending`
/// claims are released (the mail in flight is sent again, same Message-ID); runs of
/// manual commands of earlier versions (no holder) are taken for dead once older than
/// a lease; and marts that a dead process committed but did not publish are published.
pub async fn recover(app: &App, holder: &str) -> Result<WakeLog, ScheduleError> {
    let now = Utc::now();
    let ttl = app.config.schedule.lease_ttl;
    let n = mark_orphaned(&app.db, holder, now).await?
        + mark_interrupted(&app.db, now - delta(ttl), now).await?;
    let mut log = Vec::new();
    if n > 0 {
        warn!(runs = n, "Marked interrupted runs as failed");
        log.push(format!("marked {n} interrupted run(s) failed"));
    }
    mail::outbox::release_claims_of_others(&app.db.pool, holder)
        .await
        .map_err(|e| run_err("releasing claims of dead deliverers")(e.into()))?;
    let published = close::publish_pending(app)
        .await
        .map_err(run_err("publishing marts of committed runs"))?;
    if published > 0 {
        log.push(format!(
            "published the marts of {published} committed run(s)"
        ));
    }
    Ok(log)
}

async fn renew_loop(db: Db, holder: String, ttl: Duration, lost: watch::Sender<bool>) {
    let mut expires = Utc::now() + delta(ttl);
    loop {
        tokio::time::sleep(ttl / 3).await;
        let now = Utc::now();
        match renew(&db, LEASE, &holder, ttl, now).await {
            Ok(true) => expires = now + delta(ttl),
            Ok(false) => {
                error!(lease = LEASE, "Lease taken over by another scheduler");
                let _ = lost.send(true);
                return;
            }
            // A transient error is survivable until the lease actually expires.
            Err(e) if Utc::now() < expires => warn!(error = %e, "Lease renewal failed; retrying"),
            Err(e) => {
                error!(error = %e, "Lease expired: renewal kept failing");
                let _ = lost.send(true);
                return;
            }
        }
    }
}

/// The SQLite single-scheduler lock: an exclusive `flock` on `<db>.schedule.lock`,
/// holding the owner's pid; released when dropped or when the process dies.
#[derive(Debug)]
pub struct ProcessLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

/// Take the process lock for an SQLite database (`None` for PostgreSQL, whose
/// replicas coordinate through the lease, and for in-memory databases).
pub fn process_lock(database_url: &str) -> Result<Option<ProcessLock>, ScheduleError> {
    use std::io::Write;
    if db::backend_of(database_url)? != Backend::Sqlite {
        return Ok(None);
    }
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .unwrap_or(database_url);
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return Ok(None);
    }
    let lock_path = PathBuf::from(format!("{path}.schedule.lock"));
    let io_err = |source| ScheduleError::LockFile {
        path: lock_path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_err)?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {
            file.set_len(0).map_err(io_err)?;
            (&file)
                .write_all(std::process::id().to_string().as_bytes())
                .map_err(io_err)?;
            Ok(Some(ProcessLock {
                _file: file,
                path: lock_path,
            }))
        }
        Err(fs4::TryLockError::WouldBlock) => Err(ScheduleError::Locked {
            pid: std::fs::read_to_string(&lock_path)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into()),
            path: lock_path.display().to_string(),
        }),
        Err(fs4::TryLockError::Error(e)) => Err(io_err(e)),
    }
}

// ---------------------------------------------------------------------------------
// Wake-ups

/// What one wake-up did, a line per action, for logs and `--once`.
pub type WakeLog = Vec<String>;

/// Handle one wake-up of task `task` (`ingest` or `close`) under the lease.
pub async fn wake(
    app: &App,
    cfg: &ScheduleConfig,
    task: &ScheduledJob,
    holder: &str,
    stop: &watch::Receiver<bool>,
) -> Result<WakeLog, ScheduleError> {
    let ttl = cfg.lease_ttl;
    let work = async {
        let now = Utc::now();
        // Runs of other schedulers and commands: they no longer hold the lease (we
        // do), so they are dead — or cut off, and then fenced. See `recover`.
        let mut log = recover(app, holder).await?;
        let result = if task.name == INGEST {
            ingest_if_due(app, cfg, task, now).await
        } else {
            match close_due(app, cfg, stop, now).await {
                // After every close wake, also one that found nothing due: a crash
                // before the summary of a backfill leaves its mail unlisted.
                Ok(mut lines) => match close::queue_backfill_summary(app, Utc::now()).await {
                    Ok(0) => Ok(lines),
                    Ok(n) => {
                        lines.push(format!("backfill summary queued for {n} address(es)"));
                        Ok(lines)
                    }
                    Err(e) => Err(run_err("queueing the backfill summary")(e)),
                },
                Err(e) => Err(e),
            }
        };
        // The relay: every wake-up delivers what is queued — also after a failed run
        // (earlier periods' mails) and after a crash between a commit and its delivery.
        let delivered = close::deliver(app).await;
        log.extend(result?);
        match delivered {
            Ok(d) if d.sent + d.failed > 0 => {
                log.push(format!("deliver: {} sent, {} failed", d.sent, d.failed));
            }
            Ok(_) => {}
            Err(e) => return Err(run_err("delivering queued emails")(e)),
        }
        Ok(log)
    };
    match with_lease(&app.db, holder, ttl, stop, work).await? {
        Some(log) => Ok(log),
        None => Ok(vec![format!("{}: not started (stopping)", task.name)]),
    }
}

/// Ingest unless a succeeded ingest started at or after the latest scheduled fire.
async fn ingest_if_due(
    app: &App,
    cfg: &ScheduleConfig,
    task: &ScheduledJob,
    now: DateTime<Utc>,
) -> Result<WakeLog, ScheduleError> {
    let since = task.cron.prev_fire(cfg.timezone, now)?;
    let last: Option<String> = sqlx::query_scalar(
        "SELECT MAX(started_at) FROM job_runs WHERE job = 'ingest' AND status = 'succeeded'",
    )
    .fetch_one(&app.db.pool)
    .await
    .map_err(DbError::query("read the last ingest"))?;
    if let (Some(last), Some(since)) = (&last, since)
        && last.as_str() >= db::timestamp(since).as_str()
    {
        return Ok(vec![format!("ingest: nothing due (last ingest {last})")]);
    }
    let r = close::run_ingest(app, Utc::now())
        .await
        .map_err(run_err("ingest"))?;
    info!(snapshot = %r.snapshot, reused = r.reused, "Scheduled ingest succeeded");
    Ok(vec![format!(
        "ingest: snapshot {}{}",
        r.snapshot,
        if r.reused { " (reused)" } else { "" }
    )])
}

/// Close every due period, oldest first, one registry job at a time (so a stop
/// request is honoured between runs), against one fresh snapshot.
async fn close_due(
    app: &App,
    cfg: &ScheduleConfig,
    stop: &watch::Receiver<bool>,
    now: DateTime<Utc>,
) -> Result<WakeLog, ScheduleError> {
    let names = ledger_jobs(CLOSE);
    let through = last_complete_period(now, cfg.timezone);
    let mut ingest: Option<IngestReport> = None;
    let first = match cfg.first_period {
        Some(p) => p,
        None => match earliest_ledger_period(&app.db, &names).await? {
            Some(p) => p,
            None => {
                // Nothing closed yet: start at the first month with billing data.
                let r = close::run_ingest(app, Utc::now())
                    .await
                    .map_err(run_err("ingest before the close"))?;
                let inputs =
                    app.lake.read_snapshot(&r.snapshot).await.map_err(|e| {
                        run_err(format!("reading snapshot {}", r.snapshot))(e.into())
                    })?;
                let first = close::first_billing_period(&inputs)
                    .map_err(run_err("reading the first billing month"))?;
                ingest = Some(r);
                match first {
                    Some(p) => {
                        // The guard of a manual close without --from: one stray old
                        // date must not make the scheduler close decades.
                        close::check_backfill(p, through, app.config.close.max_backfill_months)
                            .map_err(run_err("the first close"))?;
                        p
                    }
                    None => return Ok(vec!["close: nothing due (no billing activity)".into()]),
                }
            }
        },
    };
    if first > through {
        return Ok(vec![format!("close: nothing due through {through}")]);
    }
    let done = succeeded_runs(&app.db, &names, first, through).await?;
    let due: Vec<Period> = first
        .through(through)
        .filter(|p| names.iter().any(|j| !done.contains(&(j.clone(), *p))))
        .collect();
    if due.is_empty() {
        return Ok(vec![format!("close: nothing due through {through}")]);
    }
    info!(
        due = %due.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
        "Closing due periods"
    );
    let ingest = match ingest {
        Some(r) => r,
        None => close::run_ingest(app, Utc::now())
            .await
            .map_err(run_err("ingest before the close"))?,
    };
    let mut log = Vec::new();
    for period in due {
        for name in &names {
            if done.contains(&(name.clone(), period)) {
                continue;
            }
            if *stop.borrow() {
                log.push(format!("close: stopping before {period} {name}"));
                return Ok(log);
            }
            let opts = CloseOptions {
                from: Some(period),
                through: Some(period),
                snapshot: Some(ingest.snapshot.clone()),
                only: vec![name.clone()],
                revise: false,
                mail: close::MailPolicy::Recent,
                defer_backfill_summary: true,
            };
            let report = close::close(app, &opts, Utc::now())
                .await
                .map_err(run_err(format!("close {period} {name}")))?;
            for run in &report.runs {
                match (&run.run_id, &run.refusal) {
                    (Some(id), _) => {
                        log.push(format!("close {period} {}: succeeded ({id})", run.job))
                    }
                    (None, Some(r)) => log.push(format!(
                        "close {period} {}: refused ({})",
                        run.job, r.reason
                    )),
                    (None, None) => log.push(format!("close {period} {}: not run", run.job)),
                }
            }
        }
    }
    Ok(log)
}

/// Turn a shutdown future into a stop flag that the work checks between runs.
fn stop_flag(shutdown: impl Future<Output = ()> + Send + 'static) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
        // Keep the sender alive: a dropped sender would look like a change.
        tx.closed().await;
    });
    rx
}

/// `opnet schedule --once`: one wake-up of every schedule, in config order, then exit.
pub async fn run_once(
    app: &App,
    cfg: &ScheduleConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WakeLog, ScheduleError> {
    let _lock = process_lock(&app.config.database)?;
    let stop = stop_flag(shutdown);
    let holder = app.lease_holder.clone().unwrap_or_else(holder_id);
    let mut log = Vec::new();
    let mut first_error = None;
    for task in &cfg.jobs {
        match wake(app, cfg, task, &holder, &stop).await {
            Ok(lines) => log.extend(lines),
            Err(e) => {
                error!(task = %task.name, error = %e, "Scheduled run failed");
                log.push(format!("{}: failed: {e}", task.name));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(log),
    }
}

/// The daemon: wake once at start-up (catch-up), then at every fire time of every
/// schedule, until `shutdown` resolves; the run in progress then finishes first.
pub async fn run_daemon(
    app: &App,
    cfg: &ScheduleConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ScheduleError> {
    let _lock = process_lock(&app.config.database)?;
    let mut stop = stop_flag(shutdown);
    let holder = app.lease_holder.clone().unwrap_or_else(holder_id);
    let tz = cfg.timezone;
    let mut timer = tokio_cron_scheduler::JobScheduler::new().await?;
    timer.start().await?;
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<usize>();
    let now = Utc::now();
    let mut next = Vec::with_capacity(cfg.jobs.len());
    for (i, task) in cfg.jobs.iter().enumerate() {
        let at = first_fire(task, tz, now)?;
        arm(&timer, i, at, wake_tx.clone()).await?;
        info!(task = %task.name, next = %at.with_timezone(&tz), "Scheduled");
        next.push(at);
    }
    info!(%holder, timezone = %tz, "Scheduler started; catching up");
    for task in &cfg.jobs {
        log_wake(task, wake(app, cfg, task, &holder, &stop).await);
    }
    while !*stop.borrow() {
        let Some(earliest) = next.iter().min().copied() else {
            break;
        };
        let watchdog = (earliest + WATCHDOG - Utc::now())
            .to_std()
            .unwrap_or_default();
        let mut woken: BTreeSet<usize> = tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() { break; }
                continue;
            }
            Some(i) = wake_rx.recv() => [i].into(),
            _ = tokio::time::sleep(watchdog) => {
                let now = Utc::now();
                let late: BTreeSet<usize> = (0..next.len()).filter(|&i| next[i] <= now).collect();
                if !late.is_empty() {
                    warn!("A wake-up was not delivered by the timer; waking from the watchdog");
                }
                late
            }
        };
        while let Ok(i) = wake_rx.try_recv() {
            woken.insert(i);
        }
        for i in woken {
            if *stop.borrow() {
                break;
            }
            let Some(task) = cfg.jobs.get(i) else {
                continue;
            };
            let now = Utc::now();
            if now < next[i] {
                // Not yet: a stale or early timer. Its own timer or the watchdog comes.
                continue;
            }
            // Re-arm before the run, so a long run does not push the next wake-up.
            let at = first_fire(task, tz, now.max(next[i]))?;
            arm(&timer, i, at, wake_tx.clone()).await?;
            next[i] = at;
            info!(task = %task.name, next = %at.with_timezone(&tz), "Woke");
            log_wake(task, wake(app, cfg, task, &holder, &stop).await);
        }
    }
    info!("Scheduler stopping: no run in progress");
    if let Err(e) = timer.shutdown().await {
        warn!(error = ?e, "Timer shutdown");
    }
    Ok(())
}

fn first_fire(
    task: &ScheduledJob,
    tz: Tz,
    after: DateTime<Utc>,
) -> Result<DateTime<Utc>, ScheduleError> {
    task.cron
        .next_fires(tz, after, 1)?
        .into_iter()
        .next()
        .ok_or_else(|| ScheduleError::Cron {
            expr: task.cron.as_str().into(),
            message: format!("no fire time after {after}"),
        })
}

fn log_wake(task: &ScheduledJob, result: Result<WakeLog, ScheduleError>) {
    match result {
        Ok(lines) => {
            for l in lines {
                info!(task = %task.name, "{l}");
            }
        }
        // The failure is in the ledger (and mailed to ops by the close); the next
        // wake-up retries what is still due.
        Err(e) => error!(task = %task.name, error = %e, "Scheduled run failed"),
    }
}

/// A one-shot timer of tokio-cron-scheduler that reports wake-up `index` at `at`.
async fn arm(
    timer: &tokio_cron_scheduler::JobScheduler,
    index: usize,
    at: DateTime<Utc>,
    tx: mpsc::UnboundedSender<usize>,
) -> Result<(), ScheduleError> {
    // The library truncates the delay to whole seconds and ticks every 500 ms, so it
    // can fire up to a second early: aim 2 s late instead.
    let delay = (at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2);
    let job = tokio_cron_scheduler::Job::new_one_shot_at_instant_async(
        std::time::Instant::now() + delay,
        move |_id, _timer| {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.send(index);
            })
        },
    )?;
    timer.add(job).await?;
    Ok(())
}

/// Resolves at the first SIGINT or SIGTERM; a second one exits at once (the ledger
/// then shows the cut run as `running`, marked interrupted by the next scheduler).
pub async fn shutdown_signal() {
    let which = wait_signal().await;
    warn!(
        signal = which,
        "Stopping: the run in progress finishes, no new run starts (signal again to exit now)"
    );
    tokio::spawn(async {
        let which = wait_signal().await;
        error!(signal = which, "Exiting now");
        std::process::exit(130);
    });
}

async fn wait_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

// ---------------------------------------------------------------------------------
// `opnet status`

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

#[cfg(test)]
mod tests;
