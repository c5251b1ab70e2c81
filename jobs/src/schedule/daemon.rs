//! Wake-ups: `schedule --once` and the daemon — ingest when due, close every due
//! period in order, distribute new leads, all under the lease, deliver what is
//! queued; graceful on SIGTERM/SIGINT.

use crate::app::App;
use crate::close::{self, CloseOptions};
use crate::db::{self, DbError};
use crate::ingest::IngestReport;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::config::*;
use super::error::*;
use super::lease::*;
use super::ledger::*;
use crate::app::last_complete_period;

/// A wake-up the timer library failed to deliver is made up this long after its time.
const WATCHDOG: TimeDelta = TimeDelta::seconds(60);

/// What one wake-up did, a line per action, for logs and `--once`.
pub type WakeLog = Vec<String>;

/// Handle one wake-up of task `task` (`ingest`, `close` or `leads`) under the lease.
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
        } else if task.name == LEADS {
            distribute_leads(app).await
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

/// One lead run at the wake-up's time (R8.3): every lead created by now that opnet
/// has not assigned is assigned (or tried again). Steps after the commit that failed
/// (publish, write-back) fail the wake-up in the log; the next one redoes them.
async fn distribute_leads(app: &App) -> Result<WakeLog, ScheduleError> {
    // The wake-up delivers right after every task.
    let opts = crate::leads::LeadOptions {
        skip_delivery: true,
        ..Default::default()
    };
    let r = crate::leads::assign_with(app, Utc::now(), opts)
        .await
        .map_err(run_err("leads"))?;
    let line = format!(
        "leads: {} assigned ({}), {} new without capacity, {} waiting, {} operator(s) mailed (run {})",
        r.assigned(),
        r.by_rule
            .iter()
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.no_capacity,
        r.waiting,
        r.operators_mailed,
        r.run_id
    );
    if r.problems.is_empty() {
        return Ok(vec![line]);
    }
    info!("{line}");
    Err(run_err(format!("leads run {}", r.run_id))(anyhow::anyhow!(
        "committed, but: {}",
        r.problems.join("; ")
    )))
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
    let due = due_jobs(&app.db, CLOSE, first, through).await?;
    if due.is_empty() {
        return Ok(vec![format!("close: nothing due through {through}")]);
    }
    info!(
        due = %due.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(","),
        "Closing due periods"
    );
    let ingest = match ingest {
        Some(r) => r,
        None => close::run_ingest(app, Utc::now())
            .await
            .map_err(run_err("ingest before the close"))?,
    };
    let mut log = Vec::new();
    for (period, missing) in due {
        for name in &missing {
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
