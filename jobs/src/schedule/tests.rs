//! Fire times across DST transitions, ledger-derived due periods, leases and the
//! SQLite process lock.

use super::config::*;
use super::cron::*;
use super::lease::*;
use super::ledger::*;
use crate::app::last_complete_period;
use crate::db::{self, Db, DbError};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono::{Datelike, Timelike};
use chrono_tz::Tz;
use chrono_tz::{America::New_York, Europe::Berlin};
use opnet_pipelines::Period;
use std::collections::BTreeSet;
use std::time::Duration;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn fires(cron: &str, tz: Tz, after: &str, n: usize) -> Vec<String> {
    next_fires(cron, tz, utc(after), n)
        .unwrap()
        .into_iter()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect()
}

const DAILY_0230: &str = "0 30 2 * * *";
const DAILY_0130: &str = "0 30 1 * * *";
const HOURLY: &str = "0 0 * * * *";

#[test]
fn new_york_spring_forward_daily_0230_fires_once_after_the_gap() {
    // 2025-03-09 02:00 EST → 03:00 EDT: 02:30 does not exist that day.
    assert_eq!(
        fires(DAILY_0230, New_York, "2025-03-07T12:00:00Z", 4),
        [
            "2025-03-08T07:30:00Z", // 02:30 EST
            "2025-03-09T07:00:00Z", // 03:00 EDT, the first instant after the gap
            "2025-03-10T06:30:00Z", // 02:30 EDT
            "2025-03-11T06:30:00Z",
        ]
    );
}

#[test]
fn new_york_fall_back_fires_an_ambiguous_time_once_at_its_first_occurrence() {
    // 2025-11-02 02:00 EDT → 01:00 EST: 01:30 happens twice.
    assert_eq!(
        fires(DAILY_0130, New_York, "2025-10-31T12:00:00Z", 3),
        [
            "2025-11-01T05:30:00Z", // 01:30 EDT
            "2025-11-02T05:30:00Z", // 01:30 EDT (first occurrence), not 06:30Z too
            "2025-11-03T06:30:00Z", // 01:30 EST
        ]
    );
    // 02:30 is not ambiguous in New York: one hour later in UTC after the change.
    assert_eq!(
        fires(DAILY_0230, New_York, "2025-10-31T12:00:00Z", 3),
        [
            "2025-11-01T06:30:00Z",
            "2025-11-02T07:30:00Z",
            "2025-11-03T07:30:00Z"
        ]
    );
}

#[test]
fn new_york_hourly_fires_every_real_hour_across_both_transitions() {
    assert_eq!(
        fires(HOURLY, New_York, "2025-03-09T04:30:00Z", 5),
        [
            "2025-03-09T05:00:00Z", // 00:00 EST
            "2025-03-09T06:00:00Z", // 01:00 EST
            "2025-03-09T07:00:00Z", // 03:00 EDT (02:00 never happened)
            "2025-03-09T08:00:00Z",
            "2025-03-09T09:00:00Z",
        ]
    );
    assert_eq!(
        fires(HOURLY, New_York, "2025-11-02T03:30:00Z", 5),
        [
            "2025-11-02T04:00:00Z", // 00:00 EDT
            "2025-11-02T05:00:00Z", // 01:00 EDT
            "2025-11-02T06:00:00Z", // 01:00 EST: a different hour, so it fires
            "2025-11-02T07:00:00Z", // 02:00 EST
            "2025-11-02T08:00:00Z",
        ]
    );
}

#[test]
fn berlin_spring_forward_and_fall_back_daily_0230() {
    // 2025-03-30 02:00 CET → 03:00 CEST.
    assert_eq!(
        fires(DAILY_0230, Berlin, "2025-03-28T12:00:00Z", 3),
        [
            "2025-03-29T01:30:00Z", // 02:30 CET
            "2025-03-30T01:00:00Z", // 03:00 CEST
            "2025-03-31T00:30:00Z", // 02:30 CEST
        ]
    );
    // 2025-10-26 03:00 CEST → 02:00 CET: 02:30 happens twice.
    assert_eq!(
        fires(DAILY_0230, Berlin, "2025-10-24T12:00:00Z", 3),
        [
            "2025-10-25T00:30:00Z", // 02:30 CEST
            "2025-10-26T00:30:00Z", // first 02:30 (CEST) only
            "2025-10-27T01:30:00Z", // 02:30 CET
        ]
    );
}

#[test]
fn berlin_hourly_fires_every_real_hour_across_both_transitions() {
    assert_eq!(
        fires(HOURLY, Berlin, "2025-03-29T22:30:00Z", 4),
        [
            "2025-03-29T23:00:00Z", // 00:00 CET
            "2025-03-30T00:00:00Z", // 01:00 CET
            "2025-03-30T01:00:00Z", // 03:00 CEST
            "2025-03-30T02:00:00Z",
        ]
    );
    assert_eq!(
        fires(HOURLY, Berlin, "2025-10-25T22:30:00Z", 5),
        [
            "2025-10-25T23:00:00Z", // 01:00 CEST
            "2025-10-26T00:00:00Z", // 02:00 CEST
            "2025-10-26T01:00:00Z", // 02:00 CET
            "2025-10-26T02:00:00Z", // 03:00 CET
            "2025-10-26T03:00:00Z",
        ]
    );
}

#[test]
fn a_wake_inside_the_repeated_hour_never_gets_a_fire_in_the_past() {
    // At 02:10 CET (the second 02:10) the day's 02:30 already fired at 00:30Z: the next
    // fire is tomorrow, neither the past 00:30Z nor a second one at 01:30Z.
    assert_eq!(
        fires(DAILY_0230, Berlin, "2025-10-26T01:10:00Z", 1),
        ["2025-10-27T01:30:00Z"]
    );
    // Asking again from a fire returns the next one, never the same (no doubled fire).
    let f = next_fires(DAILY_0230, Berlin, utc("2025-10-26T00:30:00Z"), 1).unwrap();
    assert_eq!(f, [utc("2025-10-27T01:30:00Z")]);
}

/// A whole year in both zones: a daily job fires exactly once per local date, at
/// 02:30 or (on the spring-forward day) 03:00; an hourly job exactly every 3600 s.
#[test]
fn a_whole_year_loses_and_doubles_no_fire() {
    for tz in [New_York, Berlin] {
        let start = tz
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let daily = next_fires(DAILY_0230, tz, start, 365).unwrap();
        let dates: BTreeSet<_> = daily
            .iter()
            .map(|t| t.with_timezone(&tz).date_naive())
            .collect();
        assert_eq!(dates.len(), 365, "{tz}: one fire per local date");
        assert!(dates.iter().all(|d| d.year() == 2025), "{tz}");
        for t in &daily {
            let l = t.with_timezone(&tz);
            assert!(
                (l.hour(), l.minute()) == (2, 30) || (l.hour(), l.minute()) == (3, 0),
                "{tz}: {l}"
            );
        }
        assert_eq!(
            daily
                .iter()
                .filter(|t| t.with_timezone(&tz).hour() == 3)
                .count(),
            1,
            "{tz}: only the spring-forward day moves to 03:00"
        );
        let hourly = next_fires(HOURLY, tz, start - TimeDelta::seconds(1), 8760).unwrap();
        assert_eq!(hourly[0], start);
        for w in hourly.windows(2) {
            assert_eq!(
                (w[1] - w[0]).num_seconds(),
                3600,
                "{tz}: {} → {}",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
fn the_monthly_close_fires_on_the_first_in_business_time() {
    assert_eq!(
        fires(DEFAULT_CLOSE_CRON, Berlin, "2025-03-15T00:00:00Z", 2),
        ["2025-04-01T04:00:00Z", "2025-05-01T04:00:00Z"] // 06:00 CEST
    );
    assert_eq!(
        fires(DEFAULT_CLOSE_CRON, Tz::UTC, "2025-12-15T00:00:00Z", 1),
        ["2026-01-01T06:00:00Z"]
    );
}

#[test]
fn prev_fire_is_the_latest_fire_not_after() {
    let c = CronSchedule::parse(DEFAULT_INGEST_CRON).unwrap();
    assert_eq!(
        c.prev_fire(Tz::UTC, utc("2025-07-15T10:00:00Z")).unwrap(),
        Some(utc("2025-07-15T02:00:00Z"))
    );
    assert_eq!(
        c.prev_fire(Tz::UTC, utc("2025-07-15T02:00:00Z")).unwrap(),
        Some(utc("2025-07-15T02:00:00Z"))
    );
    let m = CronSchedule::parse(DEFAULT_CLOSE_CRON).unwrap();
    assert_eq!(
        m.prev_fire(Berlin, utc("2025-07-15T10:00:00Z")).unwrap(),
        Some(utc("2025-07-01T04:00:00Z"))
    );
}

#[test]
fn bad_expressions_and_zones_are_errors() {
    assert!(CronSchedule::parse("every day").is_err());
    assert!(CronSchedule::parse("0 0 25 * * *").is_err());
    let e = ScheduleConfig::resolve(Some(&ScheduleFile {
        jobs: Some(vec![ScheduleJobFile {
            name: "close".into(),
            cron: "0 0 0 31 2 *".into(),
        }]),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(e[0].contains("schedule.jobs[0].cron"), "{e:?}");
    let e = ScheduleConfig::resolve(Some(&ScheduleFile {
        timezone: Some("Europe/Berlln".into()),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(
        e[0].contains("schedule.timezone") && e[0].contains("Berlln"),
        "{e:?}"
    );
}

#[test]
fn the_last_complete_month_is_on_the_business_calendar() {
    // 2025-07-31 23:30 UTC is already August 1st in Berlin.
    let now = utc("2025-07-31T23:30:00Z");
    assert_eq!(last_complete_period(now, Tz::UTC).to_string(), "2025-06");
    assert_eq!(last_complete_period(now, Berlin).to_string(), "2025-07");
}

// ---------------------------------------------------------------------------------
// The ledger (SQLite)

async fn sqlite() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    (dir, db)
}

async fn run(db: &Db, job: &str, period: &str, status: &str) {
    sqlx::query(
        "INSERT INTO job_runs (run_id, job, period, started_at, finished_at, status) VALUES ($1, $2, $3, $4, $4, $5)",
    )
    .bind(format!("{job}-{period}-{}", uuid::Uuid::new_v4().simple()))
    .bind(job)
    .bind(period)
    .bind(db::timestamp(Utc::now()))
    .bind(status)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn close_period(db: &Db, period: &str) {
    for j in registry_names() {
        run(db, j, period, "succeeded").await;
    }
}

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

fn strings(ps: Vec<Period>) -> Vec<String> {
    ps.into_iter().map(|p| p.to_string()).collect()
}

#[tokio::test]
async fn due_periods_after_downtime_are_the_missing_months_in_order() {
    let (_dir, db) = sqlite().await;
    for m in ["2025-01", "2025-02", "2025-03"] {
        close_period(&db, m).await;
    }
    // Down since April; now is mid-July: April..June are due, oldest first.
    let through = last_complete_period(utc("2025-07-15T12:00:00Z"), Tz::UTC);
    let due = due_periods(&db, CLOSE, p("2025-01"), through)
        .await
        .unwrap();
    assert_eq!(strings(due), ["2025-04", "2025-05", "2025-06"]);
}

/// Issue 14 item 6: payouts refused for an approved period (recorded `refused`) is
/// done — the approved statements are kept on purpose — not due again.
#[tokio::test]
async fn a_refused_run_counts_as_done() {
    let (_dir, db) = sqlite().await;
    for j in registry_names() {
        let status = if j == "payouts" {
            "refused"
        } else {
            "succeeded"
        };
        run(&db, j, "2025-01", status).await;
    }
    run(&db, "payouts", "2025-02", "failed").await;
    let due = due_periods(&db, CLOSE, p("2025-01"), p("2025-02"))
        .await
        .unwrap();
    assert_eq!(strings(due), ["2025-02"]);
}

#[tokio::test]
async fn a_failed_or_partial_period_stays_due_and_a_doubled_fire_finds_nothing() {
    let (_dir, db) = sqlite().await;
    close_period(&db, "2025-01").await;
    // 02: payouts failed (a later retry has not happened yet).
    for j in registry_names() {
        let status = if j == "payouts" {
            "failed"
        } else {
            "succeeded"
        };
        run(&db, j, "2025-02", status).await;
    }
    // 03: only payouts ran (the process stopped after it).
    run(&db, "payouts", "2025-03", "succeeded").await;
    let due = due_periods(&db, CLOSE, p("2025-01"), p("2025-03"))
        .await
        .unwrap();
    assert_eq!(strings(due), ["2025-02", "2025-03"]);
    // Per job: payouts is due for 02 only.
    let due = due_periods(&db, "payouts", p("2025-01"), p("2025-03"))
        .await
        .unwrap();
    assert_eq!(strings(due), ["2025-02"]);

    // The retry succeeds; a second (doubled) wake-up then finds nothing due.
    run(&db, "payouts", "2025-02", "succeeded").await;
    for j in registry_names().into_iter().filter(|j| *j != "payouts") {
        run(&db, j, "2025-03", "succeeded").await;
    }
    let due = due_periods(&db, CLOSE, p("2025-01"), p("2025-03"))
        .await
        .unwrap();
    assert!(due.is_empty(), "{due:?}");
    assert_eq!(
        earliest_ledger_period(&db, &ledger_jobs(CLOSE))
            .await
            .unwrap()
            .map(|p| p.to_string()),
        Some("2025-01".into())
    );
}

#[tokio::test]
async fn interrupted_runs_are_marked_failed_by_the_next_holder() {
    let (_dir, db) = sqlite().await;
    let old = utc("2025-07-01T06:00:00Z");
    for (id, started) in [("old", old), ("fresh", old + TimeDelta::minutes(9))] {
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, period, started_at, status) VALUES ($1, 'payouts', '2025-06', $2, 'running')",
        )
        .bind(id)
        .bind(db::timestamp(started))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let now = old + TimeDelta::minutes(10);
    let n = mark_interrupted(&db, now - TimeDelta::minutes(5), now)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM job_runs WHERE run_id = 'old'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(error.as_deref(), Some(INTERRUPTED));
    let status: String = sqlx::query_scalar("SELECT status FROM job_runs WHERE run_id = 'fresh'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "running", "a run younger than the ttl may be alive");
}

#[tokio::test]
async fn a_new_lease_holder_marks_other_holders_runs_at_once_and_fences_them() {
    let (_dir, db) = sqlite().await;
    let started = utc("2025-07-01T06:00:00Z");
    for (id, holder) in [
        ("dead", Some("host:1:aaaa")),
        ("mine", Some("host:2:bbbb")),
        ("manual", None),
    ] {
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, period, started_at, status, lease_holder) VALUES ($1, 'payouts', '2025-06', $2, 'running', $3)",
        )
        .bind(id)
        .bind(db::timestamp(started))
        .bind(holder)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    // A second later, not a lease later: the dead holder's run is marked anyway.
    let now = started + TimeDelta::seconds(1);
    assert_eq!(mark_orphaned(&db, "host:2:bbbb", now).await.unwrap(), 1);
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT run_id, status FROM job_runs ORDER BY run_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![
            ("dead".to_string(), "failed".to_string()),
            ("manual".to_string(), "running".to_string()),
            ("mine".to_string(), "running".to_string()),
        ],
        "a manual run may be alive; only the age rule takes it"
    );
    // If the cut-off holder was alive after all, its commit is refused.
    let mut conn = db.pool.acquire().await.unwrap();
    let err = db::finish_run(&mut conn, "dead", &Default::default(), now)
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::RunNotRunning { .. }), "{err}");
    db::finish_run(&mut conn, "mine", &Default::default(), now)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lease_is_exclusive_renewable_and_taken_over_after_expiry() {
    let (_dir, db) = sqlite().await;
    let ttl = Duration::from_secs(60);
    let t0 = utc("2025-07-01T06:00:00Z");
    assert!(try_lease(&db, LEASE, "a", ttl, t0).await.unwrap());
    assert!(
        try_lease(&db, LEASE, "a", ttl, t0).await.unwrap(),
        "re-entrant"
    );
    assert!(
        !try_lease(&db, LEASE, "b", ttl, t0 + TimeDelta::seconds(30))
            .await
            .unwrap()
    );
    assert!(
        renew(&db, LEASE, "a", ttl, t0 + TimeDelta::seconds(40))
            .await
            .unwrap()
    );
    // Renewed until t0+100s: b still cannot take it at t0+90s …
    assert!(
        !try_lease(&db, LEASE, "b", ttl, t0 + TimeDelta::seconds(90))
            .await
            .unwrap()
    );
    // … but can once a (crashed) stops renewing and it expires.
    assert!(
        try_lease(&db, LEASE, "b", ttl, t0 + TimeDelta::seconds(101))
            .await
            .unwrap()
    );
    assert!(
        !renew(&db, LEASE, "a", ttl, t0 + TimeDelta::seconds(102))
            .await
            .unwrap(),
        "a learns it lost the lease"
    );
    release(&db, LEASE, "a").await.unwrap();
    assert!(
        !try_lease(&db, LEASE, "a", ttl, t0 + TimeDelta::seconds(103))
            .await
            .unwrap(),
        "a's release does not free b's lease"
    );
    release(&db, LEASE, "b").await.unwrap();
    assert!(
        try_lease(&db, LEASE, "a", ttl, t0 + TimeDelta::seconds(104))
            .await
            .unwrap()
    );
}

#[test]
fn a_second_scheduler_on_one_sqlite_database_is_refused_with_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/opnet.db", dir.path().display());
    let lock = process_lock(&url).unwrap().expect("sqlite takes a lock");
    let e = process_lock(&url).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "another opnet schedule (pid {})",
            std::process::id()
        )),
        "{e}"
    );
    assert!(e.contains("opnet.db.schedule.lock"), "{e}");
    drop(lock);
    assert!(process_lock(&url).unwrap().is_some(), "released on drop");
    assert!(process_lock("postgres://u@h/db").unwrap().is_none());
}
