//! Benchmark of the monthly close (`cargo bench -p opnet --bench close`): prints wall
//! times and peak memory, never asserts on them.
//!
//! 1. generate a network (default 1000 operators × 36 months, Parquet);
//! 2. close the last period alone on a fresh SQLite database;
//! 3. backfill all 36 periods on another fresh database, with per-job totals;
//! 4. distribute the leads on it (R8.3) twice: the first run, the next (nothing new).
//!
//! Sizes: `OPNET_BENCH_OPERATORS`, `OPNET_BENCH_MONTHS`; database of step 3:
//! `OPNET_BENCH_DATABASE` (default a temporary SQLite file).

#![allow(clippy::unwrap_used)]

use opnet::app::App;
use opnet::close::{self, CloseOptions};
use opnet::config::{Config, EmailConfig};
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::{Period, PlanBook};
use std::collections::BTreeMap;
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
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

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let operators: usize = env_or("OPNET_BENCH_OPERATORS", 1000);
    let months: u32 = env_or("OPNET_BENCH_MONTHS", 36);
    let end = Period::parse("2025-12")?;
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let t = Instant::now();
    let summary = generate::generate(&GenerateOptions {
        out: dir.path().join("source"),
        operators,
        months,
        end,
        seed: 1,
        format: Format::Parquet,
    })?;
    let rows: usize = summary.rows.iter().map(|(_, n)| n).sum();
    println!(
        "generate {operators} operators x {months} months (parquet): {:.2}s, {rows} rows",
        t.elapsed().as_secs_f64()
    );
    for (d, n) in &summary.rows {
        println!("  {d:<28} {n:>10}");
    }
    println!("  peak RSS so far: {:.0} MiB", peak_rss_mib());

    rt.block_on(async {
        let one_db = format!("sqlite://{}/one.db", dir.path().display());
        let app = App::open(config(dir.path(), one_db, "one")).await?;
        let t = Instant::now();
        let r = close::close(&app, &CloseOptions { from: Some(end), through: Some(end), ..Default::default() }, chrono::Utc::now())
            .await?;
        println!(
            "close one period ({end}, incl. ingest of {} rows): {:.2}s; peak RSS {:.0} MiB",
            r.ingest.as_ref().map(|i| i.rows_in()).unwrap_or(0),
            t.elapsed().as_secs_f64(),
            peak_rss_mib()
        );
        print_jobs(&r);

        let db = std::env::var("OPNET_BENCH_DATABASE")
            .unwrap_or_else(|_| format!("sqlite://{}/backfill.db", dir.path().display()));
        let app = App::open(config(dir.path(), db.clone(), "backfill")).await?;
        let t = Instant::now();
        let r = close::close(&app, &CloseOptions { through: Some(end), ..Default::default() }, chrono::Utc::now()).await?;
        let periods = r.runs.iter().map(|x| x.period).collect::<std::collections::BTreeSet<_>>().len();
        println!(
            "close backfill ({periods} periods on {}): {:.2}s; peak RSS {:.0} MiB (process high-water mark)",
            opnet::db::redact(&db),
            t.elapsed().as_secs_f64(),
            peak_rss_mib()
        );
        print_jobs(&r);

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
            let t = Instant::now();
            let opts = opnet::leads::LeadOptions {
                snapshot: Some(&r.snapshot),
                skip_delivery: false,
            };
            let l = opnet::leads::assign_with(&app, at, opts).await?;
            println!(
                "leads, {label} run (T = {at}): {:.2}s; {} assigned, {} new no_capacity, {} mail(s) delivered; peak RSS {:.0} MiB",
                t.elapsed().as_secs_f64(),
                l.assigned(),
                l.no_capacity,
                l.delivery.sent,
                peak_rss_mib()
            );
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

fn print_jobs(r: &close::CloseReport) {
    let mut by_job: BTreeMap<&str, (f64, i64, usize)> = BTreeMap::new();
    for run in &r.runs {
        let e = by_job.entry(run.job).or_default();
        e.0 += run.elapsed_ms as f64 / 1000.0;
        e.1 += run.rows_out;
        e.2 += 1;
    }
    for (job, (secs, rows, n)) in by_job {
        println!("  {job:<15} {n:>3} run(s) {secs:>8.2}s {rows:>10} rows written");
    }
    println!("  emails delivered: {}", r.delivery.sent);
}
