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

pub mod config;
pub mod cron;
pub mod daemon;
pub mod error;
pub mod lease;
pub mod ledger;
pub mod status;

pub use config::{
    CLOSE, INGEST, LEADS, ScheduleConfig, ScheduleFile, ScheduleJobFile, ScheduledJob,
};
pub use cron::{CronSchedule, next_fires};
pub use daemon::*;
pub use error::ScheduleError;
pub use lease::*;
pub use ledger::*;
pub use status::*;

#[cfg(test)]
mod tests;
