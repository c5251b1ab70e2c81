//! `[schedule]`: what the config file says and its resolved, validated form — the
//! business timezone, one cron expression per task, the lease TTL, the first period.

use chrono::Utc;
use chrono_tz::Tz;
use opnet_pipelines::Period;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

use super::cron::*;
use super::error::*;

/// The scheduled task that runs the monthly close (the whole job registry).
pub const CLOSE: &str = "close";
/// The scheduled task that snapshots the sources into the lake.
pub const INGEST: &str = "ingest";
/// The scheduled task that distributes new leads (R8.3, `crate::leads`).
pub const LEADS: &str = "leads";

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
    /// The schedules; default: ingest daily at 02:00, close on the 1st at 06:00,
    /// leads every 15 minutes.
    pub jobs: Option<Vec<ScheduleJobFile>>,
}

/// One `[[schedule.jobs]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleJobFile {
    /// `ingest`, `close` or `leads`.
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
/// R8.3: leads must reach an operator within hours, so they are distributed often.
pub const DEFAULT_LEADS_CRON: &str = "0 */15 * * * *";
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
                job(LEADS, DEFAULT_LEADS_CRON),
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
                if ![INGEST, CLOSE, LEADS].contains(&j.name.as_str()) {
                    p.push(format!(
                        "key schedule.jobs[{i}].name: unknown task {:?}; expected {INGEST:?}, {CLOSE:?} or {LEADS:?} \
                         (the close runs every job of the registry)",
                        j.name
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
