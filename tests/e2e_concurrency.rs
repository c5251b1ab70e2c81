//! End-to-end (issue 9 items 2 and 14): two `opnet close` processes started together
//! against one database — PostgreSQL, and a fresh SQLite file — through the real
//! binary. Manual commands take the scheduler's lease: one closes, the other does
//! nothing and exits 75 naming the holder; no run fails (on SQLite neither the
//! migration race nor "database is locked"), no failure email is queued although both
//! ran with `--notify`, each (job, period) succeeded exactly once, and the results
//! equal those of a single close on a database of their own.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use opnet::generate::{self, Format, GenerateOptions};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn opnet(dir: &Path, database: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_opnet"));
    c.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("OPNET_CONFIG")
        .env("OPNET_LOG", "warn")
        .arg("--database")
        .arg(database)
        .arg("--source")
        .arg(dir.join("source"))
        .arg("--lake")
        .arg(dir.join("lake"))
        .arg("--mail")
        .arg(format!("file:{}", dir.join("outbox").display()));
    c
}

fn generate_source(dir: &Path) {
    let end = opnet::app::last_complete_period(Utc::now(), chrono_tz::Tz::UTC);
    generate::generate(&GenerateOptions {
        out: dir.join("source"),
        operators: 12,
        months: 3,
        end,
        seed: 41,
        format: Format::Csv,
    })
    .unwrap();
}

/// What a close produced, comparable between two databases (no run ids, no times).
async fn results(database: &str) -> Vec<Vec<String>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database).await.unwrap();
    let mut out = Vec::new();
    for sql in [
        "SELECT period || ' ' || operator_id || ' ' || currency || ' ' || CAST(payable_cents AS TEXT) || ' ' || \
         CAST(carried_out_cents AS TEXT) || ' ' || status || ' ' || CAST(revision AS TEXT) FROM payout_statements",
        "SELECT period || ' ' || invoice_id || ' ' || CAST(line_no AS TEXT) || ' ' || kind || ' ' || \
         CAST(operator_cents AS TEXT) FROM payout_lines",
        "SELECT period || ' ' || operator_id || ' ' || tier || ' ' || change FROM operator_tiers",
        "SELECT period || ' ' || kind || ' ' || COALESCE(invoice_id, '') || ' ' || detail FROM reconciliation_exceptions",
        "SELECT period || ' ' || operator_id || ' ' || territory_id || ' ' || CAST(consecutive_breaches AS TEXT) FROM exclusivity_checks",
        "SELECT period || ' ' || operator_id || ' ' || metric FROM operator_metrics",
        "SELECT period || ' ' || metric || ' ' || COALESCE(dimension, '') FROM network_health",
        "SELECT dedup_key || ' ' || status FROM email_outbox",
        "SELECT job || ' ' || COALESCE(period, '') || ' ' || status FROM job_runs",
    ] {
        let mut rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        rows.sort();
        out.push(rows);
    }
    pool.close().await;
    out
}

async fn scalar(database: &str, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database).await.unwrap();
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

/// Two closes at once on `race`; one close alone on `reference` (same data).
async fn two_closes_at_once(dir: &Path, race: &str, reference: &str) {
    generate_source(dir);
    let spawn = || {
        opnet(dir, race)
            .args(["--notify", "close"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    let both = format!("--- a:\n{}\n--- b:\n{}", text(&a), text(&b));
    assert!(
        codes == [Some(0), Some(75)] || codes == [Some(75), Some(0)],
        "one closes, the other refuses: {codes:?}\n{both}"
    );
    let refused = if codes[0] == Some(75) { &a } else { &b };
    let msg = text(refused);
    assert!(
        msg.contains("is held by")
            && msg.contains("opnet close")
            && msg.contains("Nothing was done"),
        "{msg}"
    );
    // The refused command did nothing: every (job, period) succeeded exactly once,
    // nothing failed, nothing is left running.
    let pool = sqlx::AnyPool::connect(race).await.unwrap();
    let per: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT job, period, COUNT(*) FROM job_runs WHERE period IS NOT NULL GROUP BY job, period, status",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // Every registered job ran once per period; the job list itself is checked
    // against the lone reference close below (job_runs is part of `results`).
    let jobs: std::collections::BTreeSet<&str> = per.iter().map(|(j, _, _)| j.as_str()).collect();
    assert!(jobs.contains("payouts") && jobs.len() >= 4, "{jobs:?}");
    assert_eq!(
        per.len(),
        jobs.len() * 3,
        "every job × 3 periods: {per:?}\n{both}"
    );
    assert!(per.iter().all(|(_, _, n)| *n == 1), "{per:?}");
    pool.close().await;
    assert_eq!(
        scalar(
            race,
            "SELECT COUNT(*) FROM job_runs WHERE status <> 'succeeded'"
        )
        .await,
        0,
        "{both}"
    );
    assert_eq!(
        scalar(
            race,
            "SELECT COUNT(*) FROM email_outbox WHERE kind = 'run_failed'"
        )
        .await,
        0,
        "no failure mail"
    );
    assert_eq!(
        scalar(race, "SELECT COUNT(*) FROM job_leases").await,
        0,
        "the lease is released"
    );

    // The same close, alone.
    let o = opnet(dir, reference).arg("close").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(results(race).await, results(reference).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_manual_closes_on_one_postgres_close_once() {
    let Some(race) = common::pg_database("race").await else {
        return;
    };
    let Some(reference) = common::pg_database("race_ref").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    two_closes_at_once(dir.path(), &race, &reference).await;
    for url in [race, reference] {
        drop_database(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_manual_closes_on_one_fresh_sqlite_file_close_once() {
    let dir = tempfile::tempdir().unwrap();
    let race = format!("sqlite://{}/race.db", dir.path().display());
    let reference = format!("sqlite://{}/reference.db", dir.path().display());
    assert!(!dir.path().join("race.db").exists(), "a fresh file");
    two_closes_at_once(dir.path(), &race, &reference).await;
}

/// `--lease-wait`: a command waits for the holder to finish instead of refusing.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_waits_for_the_lease_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    generate_source(dir.path());
    let database = format!("sqlite://{}/opnet.db", dir.path().display());
    let close = opnet(dir.path(), &database)
        .arg("close")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the close holds the lease.
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        if dir.path().join("opnet.db").exists() && lease_held(&database).await {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let deliver = opnet(dir.path(), &database)
        .args(["--lease-wait", "300", "deliver"])
        .output()
        .unwrap();
    let close = close.wait_with_output().unwrap();
    assert!(close.status.success(), "{}", text(&close));
    assert!(deliver.status.success(), "{}", text(&deliver));
}

/// Whether the lease row exists (false while the database is still being created).
async fn lease_held(database: &str) -> bool {
    sqlx::any::install_default_drivers();
    let Ok(pool) = sqlx::AnyPool::connect(database).await else {
        return false;
    };
    let n: Result<i64, _> = sqlx::query_scalar("SELECT COUNT(*) FROM job_leases")
        .fetch_one(&pool)
        .await;
    pool.close().await;
    n.is_ok_and(|n| n > 0)
}

/// Drops a database `common::pg_database` created.
async fn drop_database(url: &str) {
    let (base, name) = url.rsplit_once('/').unwrap();
    if let Ok(mut c) =
        <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{base}/postgres")).await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}
