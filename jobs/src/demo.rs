//! `opnet demo`: the whole product on the embedded defaults in one command —
//! generate a synthetic network into the source folder, close every month of it,
//! approve and send the last month's statements, and say what was produced where.
//!
//! Running it again on the same day regenerates identical data, so ingest reuses the
//! snapshot, the approved month is refused rather than changed (R1.9) and no email is
//! sent twice.

use crate::cli::{print_close, table};
use crate::close::{self, App, CloseOptions};
use crate::config::Config;
use crate::generate::{self, Format, GenerateOptions};
use crate::jobs::payouts;
use anyhow::{Context, Result, bail};
use chrono::Utc;
use std::path::PathBuf;

pub async fn run(config: Config, operators: usize, months: u32, seed: u64) -> Result<()> {
    let now = Utc::now();
    let source =
        local_dir(&config.source).context("the demo writes its data to a local source folder")?;
    let end = close::last_complete_period(now, config.schedule.timezone);
    let generated = generate::generate(&GenerateOptions {
        out: source.clone(),
        operators,
        months,
        end,
        seed,
        format: Format::Csv,
    })?;
    println!(
        "generated {operators} operators × {months} months ({} .. {}) into {}",
        generated.first_period,
        generated.last_period,
        source.display()
    );
    let app = App::open(config).await?;
    let report = close::close(
        &app,
        &CloseOptions {
            from: Some(generated.first_period),
            through: Some(end),
            ..Default::default()
        },
        now,
    )
    .await?;
    print_close(&report);
    let approved = payouts::approve(&app, end, None, now).await?;
    let (queued, delivery) = payouts::send(&app, end, now).await?;

    let ingest = report.ingest.as_ref();
    let quarantined = ingest.map(|r| r.rows_quarantined()).unwrap_or(0);
    let exceptions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reconciliation_exceptions")
        .fetch_one(&app.db.pool)
        .await?;
    let payable = payouts::payable_by_currency(&app, end).await?;
    let outbox = app
        .config
        .mail
        .strip_prefix("file:")
        .map(str::to_string)
        .unwrap_or(app.config.mail.clone());
    let mut t = table(["what", "how much", "where"]);
    t.add_row([
        "input rows (quarantined)".to_string(),
        format!(
            "{} ({quarantined})",
            ingest.map(|r| r.rows_in()).unwrap_or(0)
        ),
        format!("{}/raw, …/quarantine", app.config.lake),
    ]);
    t.add_row([
        "periods closed".to_string(),
        format!("{} .. {}", generated.first_period, end),
        crate::db::redact(&app.config.database),
    ]);
    t.add_row([
        format!("statements {end} approved"),
        approved.to_string(),
        "payout_statements (opnet payouts show --period …)".to_string(),
    ]);
    for (currency, cents) in &payable {
        t.add_row([
            format!("payable {end} {currency}"),
            crate::mail::format_cents(*cents, currency),
            String::new(),
        ]);
    }
    t.add_row([
        "reconciliation exceptions (all periods)".to_string(),
        exceptions.to_string(),
        "reconciliation_exceptions".to_string(),
    ]);
    t.add_row([
        format!("emails delivered (statements queued {end})"),
        format!("{} ({queued})", report.delivery.sent + delivery.sent),
        outbox,
    ]);
    t.add_row([
        "network-health report".to_string(),
        end.to_string(),
        format!(
            "{}/reports/network_health/period={end}/report.html",
            app.config.lake
        ),
    ]);
    println!("{t}");
    println!("next: opnet payouts show --period {end}   ·   opnet runs");
    Ok(())
}

fn local_dir(location: &str) -> Result<PathBuf> {
    if location.starts_with("s3://") {
        bail!("source {location} is not a local directory");
    }
    Ok(PathBuf::from(
        location.strip_prefix("file:").unwrap_or(location),
    ))
}
