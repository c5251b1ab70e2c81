//! Errors of the scheduler; each names what it was doing.

use crate::db::DbError;

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
    /// What the wake-up ran failed; the run's own error is the source.
    #[error("{what}: {source:#}")]
    Run { what: String, source: anyhow::Error },
}

impl From<tokio_cron_scheduler::JobSchedulerError> for ScheduleError {
    fn from(e: tokio_cron_scheduler::JobSchedulerError) -> Self {
        ScheduleError::Timer(e)
    }
}

pub(super) fn run_err(what: impl Into<String>) -> impl FnOnce(anyhow::Error) -> ScheduleError {
    let what = what.into();
    move |source| ScheduleError::Run { what, source }
}
