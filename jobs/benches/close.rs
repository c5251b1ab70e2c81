//! Benchmark of the monthly close (`cargo bench -p opnet --bench close`): prints wall
//! times and peak memory, never asserts on them.
//!
//! 1. generate a network (default 1000 operators × 36 months, Parquet);
//! 2. close the last period alone on a fresh SQLite database (ingest included), then
//!    again on another fresh database from the snapshot step 2 recorded (no ingest),
//!    and once more with all its mail (`--send-mail all`) rendered and delivered;
//! 3. backfill all 36 periods on another fresh database, with per-job totals;
//!    then `opnet simulate` over its periods with a +500 bp software share;
//! 4. distribute the leads on it (R8.3) twice: the first run, the next (nothing new);
//! 5. deliver again, to a fresh `.eml` folder, the one period's mails of step 2
//!    (delivery timed on its own).
//!
//! Each step prints wall time, CPU time (user + system, all threads) and its own peak
//! RSS (the high-water mark is reset before each step), with the RSS it started
//! from. Steps 3–5 run in a second process of this binary (`OPNET_BENCH_LATER=DIR`),
//! so the backfill's peak is not raised by the heap the one-period steps left behind
//! (the allocator keeps what they freed).
//!
//! Sizes: `OPNET_BENCH_OPERATORS`, `OPNET_BENCH_MONTHS`; database of step 3:
//! `OPNET_BENCH_DATABASE` (default a temporary SQLite file; must be empty).
//! `OPNET_BENCH_KEEP=DIR`: work in DIR and keep it (databases, lake, outboxes), e.g.
//! to compare the result tables with `scripts/compare-tables.py`.

#![allow(clippy::unwrap_used)]

use opnet::app::App;
use opnet::close::{self, CloseOptions};
use opnet::config::{Config, EmailConfig};
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::{Period, PlanBook};
use std::collections::BTreeMap;
use std::time::Instant;

/// A line of /proc/self/status in MiB: `VmHWM` (peak RSS) or `VmRSS` (now).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user, system) of this process so far, all threads (/proc/self/stat).
fn cpu_secs() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ, 100 on every Linux we run on
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) in parentheses.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime, stime are fields 14 and 15 of the line: 12 and 13 after ')'.
            Some((
                f.get(11)?.parse::<f64>().ok()? / ticks,
                f.get(12)?.parse::<f64>().ok()? / ticks,
            ))
        })
        .unwrap_or((f64::NAN, f64::NAN))
}

/// Resets the peak-RSS high-water mark, so the next step reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Wall and CPU time of one step, and the RSS it started with (what the process
/// still held from earlier steps, part of the step's peak).
struct Step {
    wall: Instant,
    cpu: (f64, f64),
    rss_at_start: f64,
}

impl Step {
    fn start() -> Step {
        reset_peak_rss();
        Step {
            wall: Instant::now(),
            cpu: cpu_secs(),
            rss_at_start: status_mib("VmRSS"),
        }
    }
    /// `12.34s wall, 15.00s CPU (13.10 user + 1.90 sys); peak RSS 432 MiB (40 MiB at start)`
    fn done(&self) -> String {
        let (u, s) = cpu_secs();
        let (du, ds) = (u - self.cpu.0, s - self.cpu.1);
        format!(
            "{:.2}s wall, {:.2}s CPU ({du:.2} user + {ds:.2} sys); peak RSS {:.0} MiB ({:.0} MiB at start)",
            self.wall.elapsed().as_secs_f64(),
            du + ds,
            status_mib("VmHWM"),
            self.rss_at_start
        )
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &std::path::Path, database: String, tag: &str) -> Config {
    Config {
        source: dir.join("source").display().to_string(),
        lake: dir.join(format!("lake-{tag}")).display().to_string(),
        database,
        mail: format!("file:{}", dir.join(format!("outbox-{tag}")).display()),
        email: EmailConfig::default(),
        schedule: Default::default(),
        plan: PlanBook::default(),
        plan_origin: "bench".into(),
        file: None,
        sources: Default::default(),
        smtp: Default::default(),
        s3: Default::default(),
        ingest: Default::default(),
        close: Default::default(),
        leads: Default::default(),
    }
}

/// The plan `opnet simulate` is timed with: the Playbook (deploy/plan.example.toml)
/// with each phase's software share 500 bp higher.
const SIMULATED_PLAN: &str = r#"
[[version]]
version = "bench-software-plus-500bp"
effective_from = "2000-01"

[version.revenue_share]
initial = { software = 7500, implementation = 9000, support = 10000 }
growth  = { software = 6500, implementation = 8500, support = 10000 }
mature  = { software = 5500, implementation = 8000, support = 10000 }
"#;

/// Set in the second process: the first one's working folder.
const LATER: &str = "OPNET_BENCH_LATER";

/// The database and outbox of step 2's close with all its mail, which step 5 delivers
/// again.
fn mail_config(dir: &std::path::Path) -> Config {
    let mail_db = format!("sqlite://{}/one-mail.db", dir.display());
    let mut with_mail = config(dir, mail_db, "one");
    with_mail.mail = format!("file:{}", dir.join("outbox-one-mail").display());
    with_mail
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let operators: usize = env_or("OPNET_BENCH_OPERATORS", 1000);
    let months: u32 = env_or("OPNET_BENCH_MONTHS", 36);
    let end = Period::parse("2025-12")?;
    if let Some(dir) = std::env::var_os(LATER) {
        return later_steps(std::path::Path::new(&dir), months, end);
    }
    let tmp = tempfile::tempdir()?;
    let dir: std::path::PathBuf = match std::env::var("OPNET_BENCH_KEEP") {
        Ok(d) => {
            std::fs::create_dir_all(&d)?;
            d.into()
        }
        Err(_) => tmp.path().to_path_buf(),
    };
    let dir = dir.as_path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let t = Step::start();
    let summary = generate::generate(&GenerateOptions {
        out: dir.join("source"),
        operators,
        months,
        end,
        seed: 1,
        format: Format::Parquet,
    })?;
    let rows: usize = summary.rows.iter().map(|(_, n)| n).sum();
    println!(
        "generate {operators} operators x {months} months (parquet), {rows} rows: {}",
        t.done()
    );
    for (d, n) in &summary.rows {
        println!("  {d:<28} {n:>10}");
    }

    rt.block_on(async {
        let one_db = format!("sqlite://{}/one.db", dir.display());
        let ingest_app = App::open(config(dir, one_db, "one")).await?;
        let t = Step::start();
        let r = close::close(&ingest_app, &CloseOptions { from: Some(end), through: Some(end), ..Default::default() }, chrono::Utc::now())
            .await?;
        println!(
            "close one period ({end}, incl. ingest of {} rows): {}",
            r.ingest.as_ref().map(|i| i.rows_in()).unwrap_or(0),
            t.done()
        );
        print_jobs(&r);

        // The same period from the snapshot just recorded, on a fresh database.
        let snapshot = r.snapshot.clone();
        let again_db = format!("sqlite://{}/one-snapshot.db", dir.display());
        let mut again = config(dir, again_db, "one");
        again.mail = format!("file:{}", dir.join("outbox-one-snapshot").display());
        let snapshot_app = App::open(again).await?;
        let t = Step::start();
        let r = close::close(&snapshot_app, &CloseOptions { from: Some(end), through: Some(end), snapshot: Some(snapshot.clone()), ..Default::default() }, chrono::Utc::now())
            .await?;
        println!("close one period ({end}) from recorded snapshot {snapshot} (no ingest): {}", t.done());
        print_jobs(&r);

        // The period's mail as a monthly close sends it (`--send-mail all`: the bench's
        // months lie in the past, where the default suppresses it), on a third fresh
        // database; its delivery is timed again on its own at the end.
        let mail_app = App::open(mail_config(dir)).await?;
        let t = Step::start();
        let r = close::close(&mail_app, &CloseOptions { from: Some(end), through: Some(end), snapshot: Some(snapshot.clone()), mail: close::MailPolicy::All, ..Default::default() }, chrono::Utc::now())
            .await?;
        println!("close one period ({end}) from the snapshot with all its mail rendered and delivered: {}", t.done());
        print_jobs(&r);

        anyhow::Ok(())
    })?;

    // Steps 3–5 in a fresh process, which finds the generated sources and the mail
    // database of step 2 in `dir`.
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(LATER, dir)
        .status()?;
    anyhow::ensure!(status.success(), "the bench's later steps failed: {status}");
    Ok(())
}

/// Steps 3–5 (backfill, leads, delivery again) on the sources and the step-2 mail
/// database in `dir`.
fn later_steps(dir: &std::path::Path, months: u32, end: Period) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let with_mail = mail_config(dir);
        let db = std::env::var("OPNET_BENCH_DATABASE")
            .unwrap_or_else(|_| format!("sqlite://{}/backfill.db", dir.display()));
        let app = App::open(config(dir, db.clone(), "backfill")).await?;
        let t = Step::start();
        // The generated months exactly: a larger network has stray billing activity a month
        // before them, which the default range (and its max-backfill guard) would take in.
        let from = end.add_months(1 - months as i32);
        let r = close::close(&app, &CloseOptions { from: Some(from), through: Some(end), ..Default::default() }, chrono::Utc::now()).await?;
        let periods = r.runs.iter().map(|x| x.period).collect::<std::collections::BTreeSet<_>>().len();
        println!(
            "close backfill ({periods} periods on {}, incl. ingest of {} rows and the delivery of {} mail(s)): {}",
            opnet::db::redact(&db),
            r.ingest.as_ref().map(|i| i.rows_in()).unwrap_or(0),
            r.delivery.sent,
            t.done()
        );
        print_jobs(&r);
        println!(
            "  mail of the close: {} queued, {} suppressed (backfill), {} failed, {} already there",
            r.mail.queued, r.mail.suppressed, r.mail.failed, r.mail.already_there
        );

        // `opnet simulate` over the backfilled periods: the Playbook with every
        // phase's software share 500 bp higher (issue 13: ≤ 10 s on 1000 × 36).
        let plan_file = dir.join("plan-software-plus-500bp.toml");
        std::fs::write(&plan_file, SIMULATED_PLAN)?;
        let t = Step::start();
        let sim = opnet::commands::simulate::run(
            &app,
            &opnet::commands::simulate::Options {
                plan_file,
                from: None,
                through: None,
                out: Some(dir.join("simulation")),
            },
        )
        .await?;
        let difference: i64 = sim.rows.iter().map(|row| row.difference_cents).sum();
        println!(
            "simulate software share +500 bp, {} to {} ({} statements, payable {:+} cents): {}",
            sim.from,
            sim.through,
            sim.rows.len(),
            difference,
            t.done()
        );

        // R8.3 lead distribution on the closed database, as the scheduler's `leads`
        // task: the first run assigns every unassigned lead of the whole history, the
        // second (every 15 minutes in production) finds nothing new.
        let after_end = end
            .add_months(1)
            .first_day()
            .and_hms_opt(12, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or_else(chrono::Utc::now);
        let at = after_end.min(chrono::Utc::now());
        for label in ["first", "second"] {
            let t = Step::start();
            let opts = opnet::leads::LeadOptions {
                snapshot: Some(&r.snapshot),
                skip_delivery: false,
            };
            let l = opnet::leads::assign_with(&app, at, opts).await?;
            println!(
                "leads, {label} run (T = {at}): {}; {} assigned, {} new no_capacity, {} mail(s) delivered",
                t.done(),
                l.assigned(),
                l.no_capacity,
                l.delivery.sent,
            );
        }

        // Delivery on its own: the one period's mails again, to a fresh .eml folder.
        let requeued = sqlx::query("UPDATE email_outbox SET status = 'queued', attempts = 0, sent_at = NULL, claimed_by = NULL, claimed_at = NULL WHERE status = 'sent'")
            .execute(&App::open(with_mail.clone()).await?.db.pool)
            .await?
            .rows_affected();
        let mut redeliver = with_mail;
        redeliver.mail = format!("file:{}", dir.join("outbox-redeliver").display());
        let app = App::open(redeliver).await?;
        let t = Step::start();
        let d = close::deliver(&app).await?;
        let secs = t.wall.elapsed().as_secs_f64();
        println!(
            "deliver {} of {requeued} mail(s) again as .eml files: {} = {:.2} ms per mail",
            d.sent,
            t.done(),
            secs * 1000.0 / (d.sent.max(1) as f64)
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

fn print_jobs(r: &close::CloseReport) {
    let mut by_job: BTreeMap<&str, (f64, i64, usize, f64)> = BTreeMap::new();
    for run in &r.runs {
        let e = by_job.entry(run.job).or_default();
        e.0 += run.elapsed_ms as f64 / 1000.0;
        e.1 += run.rows_out;
        e.2 += 1;
        e.3 += run.ahead_ms as f64 / 1000.0;
    }
    // A detached job's output is computed by the close's worker while earlier runs
    // write (issue 13): its run's time is mostly the write, the rest overlapped.
    for (job, (secs, rows, n, ahead)) in by_job {
        let ahead = if ahead > 0.0 {
            format!(" (+ {ahead:.2}s computed ahead, overlapping other runs)")
        } else {
            String::new()
        };
        println!("  {job:<15} {n:>3} run(s) {secs:>8.2}s {rows:>10} rows written{ahead}");
    }
    let ms = r.delivery_elapsed_ms as f64;
    println!(
        "  emails delivered: {} in {:.2}s ({:.2} ms per mail; the step's wall time includes it)",
        r.delivery.sent,
        ms / 1000.0,
        ms / (r.delivery.sent.max(1) as f64)
    );
}
