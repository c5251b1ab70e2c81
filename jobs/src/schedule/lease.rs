//! One run at a time across replicas: the lease row of `job_leases` (taken over only
//! once expired, renewed while the run lasts) for schedulers and manual commands, and
//! on SQLite an OS file lock that refuses a second daemon.

use crate::app::App;
use crate::close::{self};
use crate::db::{self, Backend, Db, DbError};
use crate::mail;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::daemon::*;
use super::error::*;
use super::ledger::*;

/// The lease every scheduled run holds, so replicas never run anything at once.
pub const LEASE: &str = "close";
/// How often a waiting daemon retries a held lease.
const LEASE_POLL: Duration = Duration::from_secs(1);

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
    let host = crate::db::hostname();
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Run `work` while holding [`LEASE`]: wait for it (unless stopping), renew it every
/// ttl/3, abandon the work if the lease is lost, release it after.
/// `Ok(None)`: stopped before the lease was acquired.
pub(super) async fn with_lease<T>(
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
        .map_err(run_err("publishing marts of committed runs"))?
        + crate::leads::publish::publish_pending(app)
            .await
            .map_err(run_err("publishing committed lead runs"))?;
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
