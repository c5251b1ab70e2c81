//! End-to-end (issue 5): the scheduler through the real binary. Two `opnet schedule
//! --once` processes against one PostgreSQL close each period exactly once (counted in
//! the ledger) and assign each lead once (R8.3); the lease admits one holder among racing replicas; on SQLite the
//! daemon catches up at start-up, keeps waking from its timer, refuses a second
//! scheduler, and stops cleanly on SIGTERM with nothing left `running`.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use opnet::generate::{self, Format, GenerateOptions};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const REGISTRY: [&str; 6] = [
    "payouts",
    "exclusivity",
    "alerts",
    "scorecard",
    "equity",
    "network_health",
];

/// A small network whose last month is the last complete one, so the daemon's
/// "through" (the last complete month, UTC business time) covers all of it.
fn generate_source(dir: &Path) -> Vec<String> {
    let end = opnet::app::last_complete_period(Utc::now(), chrono_tz::Tz::UTC);
    let summary = generate::generate(&GenerateOptions {
        out: dir.join("source"),
        operators: 10,
        months: 3,
        end,
        seed: 5,
        format: Format::Csv,
    })
    .unwrap();
    summary
        .first_period
        .through(summary.last_period)
        .map(|p| p.to_string())
        .collect()
}

fn opnet(dir: &Path, database: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_opnet"));
    c.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("OPNET_CONFIG")
        .env("OPNET_LOG", "info")
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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// (job, period, succeeded runs) for the registry jobs (lead runs, also recorded
/// with a period, run at every wake-up and are counted apart).
async fn succeeded_per_job_period(pool: &sqlx::AnyPool) -> Vec<(String, String, i64)> {
    sqlx::query_as(
        "SELECT job, period, COUNT(*) FROM job_runs WHERE status = 'succeeded' AND period IS NOT NULL \
         AND job <> 'leads' GROUP BY job, period ORDER BY job, period",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn count(pool: &sqlx::AnyPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schedulers_on_one_postgres_close_each_period_exactly_once() {
    let Some(url) = common::pg_database("schedule").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let periods = generate_source(dir.path());
    assert_eq!(periods.len(), 3);

    // Two replicas wake at the same moment.
    let spawn = || {
        opnet(dir.path(), &url)
            .args(["schedule", "--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "replica a:\n{}", text(&a));
    assert!(b.status.success(), "replica b:\n{}", text(&b));

    let pool = pool(&url).await;
    let runs = succeeded_per_job_period(&pool).await;
    let expected: Vec<(String, String, i64)> = {
        let mut v: Vec<_> = REGISTRY
            .iter()
            .flat_map(|j| periods.iter().map(move |p| (j.to_string(), p.clone(), 1)))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        runs,
        expected,
        "each (job, period) succeeded exactly once\n--- a:\n{}\n--- b:\n{}",
        text(&a),
        text(&b)
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM job_runs WHERE status <> 'succeeded'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM job_leases").await,
        0,
        "the lease is released"
    );
    // Each replica's wake-up ran the leads task too, one after the other under the
    // lease (R8.3): the first assigned the unassigned leads, the second found nothing
    // new — no lead twice, every lead mailed once.
    let lead_runs: Vec<i64> = sqlx::query_scalar(
        "SELECT rows_out FROM job_runs WHERE job = 'leads' AND status = 'succeeded' ORDER BY started_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(lead_runs.len(), 2, "{lead_runs:?}");
    assert!(lead_runs[0] > 0 && lead_runs[1] == 0, "{lead_runs:?}");
    let assigned = count(&pool, "SELECT COUNT(*) FROM lead_assignments").await;
    assert_eq!(assigned, lead_runs[0]);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM email_outbox WHERE kind = 'lead_assignment'"
        )
        .await,
        count(
            &pool,
            "SELECT COUNT(DISTINCT operator_id) FROM lead_assignments WHERE operator_id IS NOT NULL"
        )
        .await,
        "one mail per operator with new leads"
    );
    // Every run of the close records the input fingerprint of the snapshot it read.
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM job_runs WHERE period IS NOT NULL AND (input_fingerprint IS NULL OR snapshot IS NULL)"
        )
        .await,
        0
    );

    // A third (doubled or late) wake-up finds nothing due and runs nothing of the
    // close; its lead run assigns nothing new.
    let closing = "SELECT COUNT(*) FROM job_runs WHERE period IS NOT NULL AND job <> 'leads'";
    let before = count(&pool, closing).await;
    let c = opnet(dir.path(), &url)
        .args(["schedule", "--once"])
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", text(&c));
    assert!(
        String::from_utf8_lossy(&c.stdout).contains("close: nothing due"),
        "{}",
        text(&c)
    );
    let after = count(&pool, closing).await;
    assert_eq!(before, after);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM lead_assignments").await,
        assigned
    );

    // `opnet status` shows the schedules, the last runs and that nothing is due.
    let s = opnet(dir.path(), &url).arg("status").output().unwrap();
    assert!(s.status.success(), "{}", text(&s));
    let out = String::from_utf8_lossy(&s.stdout);
    for needle in [
        "0 0 6 1 * *",
        "network_health",
        "succeeded",
        "close: nothing due",
        "0 */15 * * * *",
        "leads: ",
        "mails:",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_replicas_get_one_lease() {
    let Some(url) = common::pg_database("lease").await else {
        return;
    };
    let db = opnet::db::Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let now = Utc::now();
    let ttl = Duration::from_secs(60);
    let tries = (0..16).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            opnet::schedule::try_lease(&db, "close", &format!("replica-{i}"), ttl, now)
                .await
                .unwrap()
        })
    });
    let mut won = 0;
    for t in tries {
        won += t.await.unwrap() as i32;
    }
    assert_eq!(won, 1, "exactly one replica holds the lease");
}

/// Send a signal with the system `kill` (the test has no libc binding).
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_daemon_catches_up_keeps_waking_refuses_a_second_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let periods = generate_source(dir.path());
    let db_path = dir.path().join("opnet.db");
    let url = format!("sqlite://{}", db_path.display());
    // Ingest every 2 s, so the test sees the timer's wake-ups; the close on the 1st.
    let config = dir.path().join("opnet.toml");
    std::fs::write(
        &config,
        "[schedule]\ntimezone = \"Europe/Berlin\"\n\
         [[schedule.jobs]]\nname = \"ingest\"\ncron = \"*/2 * * * * *\"\n\
         [[schedule.jobs]]\nname = \"close\"\ncron = \"0 0 6 1 * *\"\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut daemon = opnet(dir.path(), &url)
        .arg("--config")
        .arg(&config)
        .arg("schedule")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let daemon_log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();

    // Catch-up at start-up: every period closed; then the timer keeps waking the ingest.
    let started = Instant::now();
    let mut pool = None;
    let ingests_after_catch_up = loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the daemon did not catch up:\n{}",
            daemon_log()
        );
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "daemon exited:\n{}",
            daemon_log()
        );
        std::thread::sleep(Duration::from_millis(500));
        if !db_path.exists() {
            continue;
        }
        let p = pool.get_or_insert(self::pool(&url).await);
        let Ok(n) = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM job_runs WHERE status = 'succeeded' AND job = 'network_health'",
        )
        .fetch_one(&*p)
        .await
        else {
            continue;
        };
        if n as usize == periods.len() {
            break count(p, "SELECT COUNT(*) FROM job_runs WHERE job = 'ingest'").await;
        }
    };
    let pool = pool.unwrap();
    let woke = loop {
        let n = count(&pool, "SELECT COUNT(*) FROM job_runs WHERE job = 'ingest'").await;
        if n >= ingests_after_catch_up + 2 {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(360),
            "no timer wake-ups:\n{}",
            daemon_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(woke >= ingests_after_catch_up + 2);

    // A second scheduler on the same SQLite database is refused, naming the holder.
    let second = opnet(dir.path(), &url)
        .args(["schedule", "--once"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let msg = text(&second);
    assert!(
        msg.contains(&format!("another opnet schedule (pid {})", daemon.id())),
        "{msg}"
    );

    // SIGTERM: the daemon finishes what it is doing and exits 0; nothing is left running.
    signal(daemon.id(), "-TERM");
    let stopping = Instant::now();
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(60),
            "no graceful stop:\n{}",
            daemon_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{status:?}\n{}", daemon_log());
    assert!(daemon_log().contains("Stopping"), "{}", daemon_log());
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM job_runs WHERE status = 'running'"
        )
        .await,
        0
    );
    let runs = succeeded_per_job_period(&pool).await;
    assert!(runs.iter().all(|(_, _, n)| *n == 1), "{runs:?}");
    assert_eq!(runs.len(), REGISTRY.len() * periods.len(), "{runs:?}");
}
