//! `opnet demo`: the whole product on the embedded defaults in one command —
//! generate a synthetic network into the source folder, close every month of it,
//! approve and send the last month's statements, distribute the unassigned leads
//! once (R8.3), and say what was produced where.
//!
//! Running it again on the same day regenerates identical data, so ingest reuses the
//! snapshot, the approved month is refused rather than changed (R1.9) and no email is
//! sent twice; the summary then says what earlier runs already did instead of
//! printing zeros.
//!
//! The output is a summary a newcomer can read on one screen (about 40 lines
//! whatever the size of the network): one row per period for the last
//! [`SHOWN_PERIODS`] periods, the totals, and commands to look further — in the form
//! that works where the demo was started (`cargo run -- …` under cargo).

use crate::app::App;
use crate::close::{self, CloseOptions, CloseReport};
use crate::commands::payouts;
use crate::config::Config;
use crate::generate::{self, Format, GenerateOptions};
use crate::jobs::payouts::{latest_revision, latest_statements};
use crate::mail::DeliveryReport;
use crate::term::table;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use opnet_pipelines::Period;
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Periods listed one per row; older ones are summed up in one line.
pub const SHOWN_PERIODS: usize = 12;

pub async fn run(config: Config, operators: usize, months: u32, seed: u64) -> Result<()> {
    let now = Utc::now();
    let generated = generate_network(&config, operators, months, seed, now)?;
    let (first, end) = (generated.first_period, generated.end);
    let app = App::open(config).await?;
    let report = close_every_month(&app, first, end, now).await?;
    print_periods(&app, &report, first, end).await?;
    let leads = distribute_leads(&app, &report, now).await?;
    let mut statements = approve_and_send(&app, end, now).await?;
    // What the lead run queued and the send did not deliver (no statement to send).
    let late = crate::close::deliver(&app).await?;
    statements.delivery.sent += late.sent;
    statements.delivery.failed += late.failed;
    let totals = Totals::read(&app, end).await?;
    print_summary(&app, &report, first, end, &statements, &totals, &leads);
    print_hints(end);
    Ok(())
}

/// The network the demo generated: its first period and the last complete one.
struct Generated {
    first_period: Period,
    end: Period,
}

/// Generates the synthetic network into the local source folder, through the last
/// complete period, and says so.
fn generate_network(
    config: &Config,
    operators: usize,
    months: u32,
    seed: u64,
    now: DateTime<Utc>,
) -> Result<Generated> {
    let source =
        local_dir(&config.source).context("the demo writes its data to a local source folder")?;
    let end = crate::app::last_complete_period(now, config.schedule.timezone);
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
    Ok(Generated {
        first_period: generated.first_period,
        end,
    })
}

/// Closes every month from `first` through `end`, and says on which snapshot.
async fn close_every_month(
    app: &App,
    first: Period,
    end: Period,
    now: DateTime<Utc>,
) -> Result<CloseReport> {
    let report = close::close(
        app,
        &CloseOptions {
            from: Some(first),
            through: Some(end),
            ..Default::default()
        },
        now,
    )
    .await?;
    println!(
        "closed {first} .. {end}: {} job runs on snapshot {}{}",
        report.runs.len(),
        report.snapshot,
        if report.ingest.as_ref().is_some_and(|i| i.reused) {
            " (sources unchanged: reused)"
        } else {
            ""
        }
    );
    Ok(report)
}

/// Lead distribution once, as the scheduler's `leads` task would now (R8.3), on the
/// close's snapshot (a second demo finds nothing new to assign); its mail goes out
/// with the statements'.
async fn distribute_leads(
    app: &App,
    report: &CloseReport,
    now: DateTime<Utc>,
) -> Result<crate::leads::LeadReport> {
    let leads = crate::leads::assign_with(
        app,
        now,
        crate::leads::LeadOptions {
            snapshot: Some(&report.snapshot),
            skip_delivery: true,
        },
    )
    .await?;
    for p in &leads.problems {
        eprintln!("lead distribution: {p}");
    }
    Ok(leads)
}

/// What the demo did to the last period's statements, and where they stand after.
struct StatementsDone {
    approved_now: u64,
    sent_now: usize,
    delivery: DeliveryReport,
    after: StatementStatus,
}

/// Approves and sends the last period's statements — only what is left to do, so a
/// second demo reports what earlier runs did instead of "approved 0".
async fn approve_and_send(app: &App, end: Period, now: DateTime<Utc>) -> Result<StatementsDone> {
    let before = statement_status(app, end).await?;
    let approved_now = if before.drafts > 0 {
        payouts::approve(app, end, None, now).await?
    } else {
        0
    };
    let after_approve = statement_status(app, end).await?;
    let (sent_now, delivery) = if after_approve.approved > 0 {
        payouts::send(app, end, now).await?
    } else {
        (0, Default::default())
    };
    let after = statement_status(app, end).await?;
    Ok(StatementsDone {
        approved_now,
        sent_now,
        delivery,
        after,
    })
}

/// The summary's totals read back from the database.
struct Totals {
    /// Reconciliation exceptions of all periods.
    exceptions: i64,
    /// What is payable for the last period, per currency.
    payable: Vec<(String, i64)>,
    /// Mails of the outbox sent and failed, by any run.
    mails_sent: i64,
    mails_failed: i64,
    /// Leads assigned to an operator, by any run.
    leads_assigned: i64,
}

impl Totals {
    /// Reads the totals of the database after the demo's close and sends.
    async fn read(app: &App, end: Period) -> Result<Totals> {
        let exceptions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reconciliation_exceptions")
            .fetch_one(&app.db.pool)
            .await?;
        let payable = payouts::payable_by_currency(app, end).await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT) FROM email_outbox",
        )
        .fetch_one(&app.db.pool)
        .await?;
        let leads_assigned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM lead_assignments WHERE operator_id IS NOT NULL",
        )
        .fetch_one(&app.db.pool)
        .await?;
        Ok(Totals {
            exceptions,
            payable,
            mails_sent: row.try_get(0)?,
            mails_failed: row.try_get(1)?,
            leads_assigned,
        })
    }
}

/// Prints the summary table: what the demo produced, how much, and where.
fn print_summary(
    app: &App,
    report: &CloseReport,
    first: Period,
    end: Period,
    statements: &StatementsDone,
    totals: &Totals,
    leads: &crate::leads::LeadReport,
) {
    let ingest = report.ingest.as_ref();
    let quarantined = ingest.map(|r| r.rows_quarantined()).unwrap_or(0);
    let delivered_now = report.delivery.sent + statements.delivery.sent;
    let failed_now = report.delivery.failed + statements.delivery.failed;
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
        format!("{first} .. {end}"),
        crate::db::redact(&app.config.database),
    ]);
    t.add_row([
        format!("statements {end}"),
        statements_wording(
            &statements.after,
            statements.approved_now,
            statements.sent_now as u64,
        ),
        "payout_statements".to_string(),
    ]);
    for (currency, cents) in &totals.payable {
        t.add_row([
            format!("payable {end} {currency}"),
            crate::mail::format_cents(*cents, currency),
            String::new(),
        ]);
    }
    t.add_row([
        "leads distributed (R8.3)".to_string(),
        leads_wording(leads, totals.leads_assigned),
        format!(
            "lead_assignments, {}/exports/lead_assignments",
            app.config.lake
        ),
    ]);
    t.add_row([
        "reconciliation exceptions (all periods)".to_string(),
        totals.exceptions.to_string(),
        "reconciliation_exceptions".to_string(),
    ]);
    t.add_row([
        "emails".to_string(),
        emails_wording(
            delivered_now,
            failed_now,
            totals.mails_sent,
            totals.mails_failed,
        ),
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
}

/// Prints the commands to look further, in the form that works where the demo ran.
fn print_hints(end: Period) {
    let run = command_prefix();
    let hints = [
        (
            format!("{run} payouts show --period {end}"),
            "the statements, one row each",
        ),
        (format!("{run} leads show"), "the lead assignments"),
        (format!("{run} runs"), "the run ledger"),
        (format!("{run} --help"), "every command"),
    ];
    let width = hints
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    for (i, (command, what)) in hints.iter().enumerate() {
        let lead = if i == 0 { "next:" } else { "" };
        println!("{lead:<5} {command:<width$}   {what}");
    }
}

/// How the demo's hints spell a command: `cargo run --` when the demo was started
/// by `cargo run` (which sets `CARGO_PKG_NAME` for the program it runs), where no
/// `opnet` is on the PATH; `opnet` otherwise (installed with `cargo install --path
/// jobs`, or in the image).
pub fn command_prefix() -> &'static str {
    command_prefix_for(std::env::var("CARGO_PKG_NAME").ok().as_deref())
}

fn command_prefix_for(cargo_pkg_name: Option<&str>) -> &'static str {
    match cargo_pkg_name {
        Some("opnet") => "cargo run --",
        _ => "opnet",
    }
}

/// The latest revision's statements of a period, by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatementStatus {
    pub revision: i64,
    pub drafts: i64,
    pub approved: i64,
    pub sent: i64,
}

impl StatementStatus {
    fn total(&self) -> i64 {
        self.drafts + self.approved + self.sent
    }
}

async fn statement_status(app: &App, period: Period) -> Result<StatementStatus> {
    let rows = sqlx::query(&format!(
        "SELECT s.status, COUNT(*), MAX(s.revision) {} GROUP BY s.status",
        latest_statements()
    ))
    .bind(period.to_string())
    .fetch_all(&app.db.pool)
    .await?;
    let mut out = StatementStatus::default();
    for r in rows {
        let status: String = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        out.revision = out.revision.max(r.try_get(2)?);
        match status.as_str() {
            "draft" => out.drafts += n,
            "approved" => out.approved += n,
            _ => out.sent += n,
        }
    }
    Ok(out)
}

/// What happened to the last period's statements, in words: done now, or already
/// done by an earlier run (R1.9: an approved period is never changed by a re-run).
pub fn statements_wording(s: &StatementStatus, approved_now: u64, sent_now: u64) -> String {
    let total = s.total();
    if total == 0 {
        return "none".to_string();
    }
    let approved_now = i64::try_from(approved_now).unwrap_or(i64::MAX);
    let sent_now = i64::try_from(sent_now).unwrap_or(i64::MAX);
    let step = |now: i64, done: i64, verb: &str| -> String {
        if done == 0 {
            String::new()
        } else if now >= done {
            format!("{verb} now")
        } else if now == 0 {
            format!("already {verb}")
        } else {
            format!("{now} {verb} now, {} already", done - now)
        }
    };
    // Sent statements went through approval too.
    let approved = step(approved_now, s.approved + s.sent, "approved");
    let sent = step(sent_now, s.sent, "sent");
    let mut parts: Vec<String> = [approved, sent]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if s.drafts > 0 {
        parts.push(format!("{} draft", s.drafts));
    }
    format!(
        "{total} (revision {}): {}",
        s.revision.max(1),
        parts.join(", ")
    )
}

/// The demo's lead run in words: assigned now (by rule) or by earlier runs, and the
/// leads left waiting without capacity.
fn leads_wording(r: &crate::leads::LeadReport, assigned_total: i64) -> String {
    let now = r.assigned() as i64;
    let mut out = if now == 0 && assigned_total > 0 {
        format!("none new; {assigned_total} assigned before")
    } else {
        format!(
            "{now} assigned now ({})",
            r.by_rule
                .iter()
                .map(|(rule, n)| format!("{rule} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if r.waiting > 0 {
        out.push_str(&format!(", {} waiting (no capacity)", r.waiting));
    }
    out
}

/// Emails in words: delivered by this run, and what earlier runs already sent.
pub fn emails_wording(
    delivered_now: usize,
    failed_now: usize,
    sent_total: i64,
    failed_total: i64,
) -> String {
    let now = i64::try_from(delivered_now).unwrap_or(i64::MAX);
    let earlier = sent_total.saturating_sub(now).max(0);
    let mut out = if now == 0 && earlier > 0 {
        format!("none new; {earlier} already sent")
    } else if earlier > 0 {
        format!("{now} delivered now, {earlier} sent before")
    } else {
        format!("{now} delivered")
    };
    if failed_now > 0 || failed_total > 0 {
        out.push_str(&format!(", {failed_total} failed (see `runs`, `status`)"));
    }
    out
}

/// One row per period of the close (the last [`SHOWN_PERIODS`]), with the figures
/// a reader checks first, read back from the result tables; a job the close refused
/// says so in the last column.
async fn print_periods(app: &App, report: &CloseReport, first: Period, end: Period) -> Result<()> {
    let count_by_period = |sql: String| async move {
        let rows = sqlx::query(&sql)
            .bind(first.to_string())
            .bind(end.to_string())
            .fetch_all(&app.db.pool)
            .await?;
        let mut m: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for r in rows {
            m.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
        anyhow::Ok(m)
    };
    let statements = count_by_period(
        format!(
            "SELECT s.period, COUNT(*), CAST(0 AS BIGINT) FROM payout_statements s WHERE s.period >= $1 \
             AND s.period <= $2 AND {} GROUP BY s.period",
            latest_revision("s")
        ),
    )
    .await?;
    let exceptions = count_by_period(
        "SELECT period, COUNT(*), CAST(0 AS BIGINT) FROM reconciliation_exceptions \
         WHERE period >= $1 AND period <= $2 GROUP BY period"
            .to_string(),
    )
    .await?;
    let breaches = count_by_period(
        "SELECT period, CAST(COALESCE(SUM(CASE WHEN compliant THEN 0 ELSE 1 END), 0) AS BIGINT), COUNT(*) \
         FROM exclusivity_checks WHERE period >= $1 AND period <= $2 GROUP BY period"
        .to_string(),
    )
    .await?;
    let alerted = count_by_period(
        "SELECT period, COUNT(DISTINCT CASE WHEN breached THEN operator_id END), \
         COUNT(DISTINCT operator_id) FROM operator_metrics \
         WHERE period >= $1 AND period <= $2 GROUP BY period"
            .to_string(),
    )
    .await?;
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // A refused run has no run id today; once refusals are recorded in the ledger
    // their note still starts with "refused".
    let refused_run = |r: &&crate::close::RunSummary| {
        r.run_id.is_none() || r.notes.iter().any(|n| n.starts_with("refused"))
    };
    for r in report.runs.iter().filter(refused_run) {
        refused
            .entry(r.period.to_string())
            .or_default()
            .push(format!(
                "{} {}",
                r.job,
                refusal_wording(&r.notes.join("; "))
            ));
    }

    let periods: Vec<Period> = first.through(end).collect();
    let hidden = periods.len().saturating_sub(SHOWN_PERIODS);
    let mut t = table([
        "period",
        "statements",
        "exceptions",
        "territories in breach",
        "operators alerted",
        "notes",
    ]);
    let get = |m: &BTreeMap<String, (i64, i64)>, p: &str| m.get(p).copied().unwrap_or((0, 0));
    for p in &periods[hidden..] {
        let p = p.to_string();
        let (b, territories) = get(&breaches, &p);
        let (a, active) = get(&alerted, &p);
        t.add_row([
            p.clone(),
            get(&statements, &p).0.to_string(),
            get(&exceptions, &p).0.to_string(),
            format!("{b} of {territories}"),
            format!("{a} of {active}"),
            refused.get(&p).map(|v| v.join("; ")).unwrap_or_default(),
        ]);
    }
    println!("{t}");
    if hidden > 0 {
        println!(
            "(and {} .. {}, not shown: `{} runs --limit 200` lists every run)",
            periods[0],
            periods[hidden - 1],
            command_prefix()
        );
    }
    Ok(())
}

/// A refusal in a few words: the payouts job's reason starts with "refused:".
fn refusal_wording(reason: &str) -> String {
    let reason = reason.strip_prefix("refused: ").unwrap_or(reason);
    if let Some(rev) = reason
        .split("(revision ")
        .nth(1)
        .and_then(|r| r.split(')').next())
    {
        format!("already approved (revision {rev}): kept")
    } else {
        format!("not run: {reason}")
    }
}

fn local_dir(location: &str) -> Result<PathBuf> {
    if location.starts_with("s3://") {
        bail!("source {location} is not a local directory");
    }
    Ok(PathBuf::from(
        location.strip_prefix("file:").unwrap_or(location),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_cargo_run_under_cargo_and_opnet_otherwise() {
        assert_eq!(command_prefix_for(Some("opnet")), "cargo run --");
        assert_eq!(command_prefix_for(None), "opnet");
        assert_eq!(command_prefix_for(Some("other")), "opnet");
    }

    #[test]
    fn r1_9_statements_say_what_was_done_now_and_what_was_already_done() {
        let all_sent = StatementStatus {
            revision: 1,
            drafts: 0,
            approved: 0,
            sent: 53,
        };
        assert_eq!(
            statements_wording(&all_sent, 53, 53),
            "53 (revision 1): approved now, sent now"
        );
        assert_eq!(
            statements_wording(&all_sent, 0, 0),
            "53 (revision 1): already approved, already sent"
        );
        let partly = StatementStatus {
            revision: 2,
            drafts: 1,
            approved: 0,
            sent: 4,
        };
        assert_eq!(
            statements_wording(&partly, 3, 3),
            "5 (revision 2): 3 approved now, 1 already, 3 sent now, 1 already, 1 draft"
        );
        assert_eq!(
            statements_wording(&StatementStatus::default(), 0, 0),
            "none"
        );
    }

    #[test]
    fn emails_say_what_earlier_runs_sent() {
        assert_eq!(emails_wording(650, 0, 650, 0), "650 delivered");
        assert_eq!(emails_wording(0, 0, 650, 0), "none new; 650 already sent");
        assert_eq!(
            emails_wording(3, 0, 653, 0),
            "3 delivered now, 650 sent before"
        );
        assert_eq!(
            emails_wording(0, 2, 650, 2),
            "none new; 650 already sent, 2 failed (see `runs`, `status`)"
        );
    }

    #[test]
    fn r1_9_refusal_reads_as_already_approved() {
        assert_eq!(
            refusal_wording(
                "refused: 2026-10 has approved statements (revision 1); they stay as they are — re-run with --revise to write revision 2"
            ),
            "already approved (revision 1): kept"
        );
        assert_eq!(refusal_wording("something else"), "not run: something else");
    }
}
