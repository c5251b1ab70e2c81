//! End-to-end through the binary on SQLite, with a real SMTP capture server:
//!
//! - issue 9 item 16: a close of several months sends operator mail only for the
//!   latest complete month; older periods' mail is recorded `suppressed` (shown by
//!   `opnet status`), the internal lists get one backfill summary each, a re-run sends
//!   nothing, `--send-mail all` sends a period's suppressed mail, `--send-mail none`
//!   sends nothing at all;
//! - issue 9 item 9: the default `--from` comes from paid/refunded activity (one open
//!   invoice of 2000 does not pull the close back), and a default range of more than
//!   `close.max_backfill_months` is refused with what to do;
//! - issue 14 items 6–8: a refused payouts run is in the ledger and counts as done,
//!   `payouts approve` says why it approved nothing, failure mail goes out only with
//!   `--notify` and names the command that failed;
//! - issue 10 item 7: every mail carries its period, and every timestamp in the
//!   database has one format.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::SmtpCapture;
use mail_parser::MessageParser;
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::Period;
use std::path::Path;
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Site {
    dir: tempfile::TempDir,
    database: String,
    mail: String,
    last: Period,
}

impl Site {
    fn new(months: u32, mail: impl FnOnce(&Path) -> String) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let last = opnet::app::last_complete_period(Utc::now(), chrono_tz::Tz::UTC);
        generate::generate(&GenerateOptions {
            out: dir.path().join("source"),
            operators: 12,
            months,
            end: last,
            seed: 17,
            format: Format::Csv,
        })
        .unwrap();
        let database = format!("sqlite://{}/opnet.db", dir.path().display());
        let mail = mail(dir.path());
        Site {
            dir,
            database,
            mail,
            last,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn opnet(&self, args: &[&str]) -> Output {
        self.opnet_from(&self.path().join("source"), args)
    }

    /// `opnet` with another `--source`.
    fn opnet_from(&self, source: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_opnet"))
            .current_dir(self.path())
            .env_remove("DATABASE_URL")
            .env_remove("OPNET_CONFIG")
            .env("OPNET_LOG", "warn")
            .arg("--database")
            .arg(&self.database)
            .arg("--source")
            .arg(source)
            .arg("--lake")
            .arg(self.path().join("lake"))
            .arg("--mail")
            .arg(&self.mail)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.opnet(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    async fn pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.database).await.unwrap()
    }
}

async fn count(pool: &sqlx::AnyPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

const PERIODIC: &str = "('tier_change', 'alert', 'exclusivity_breach', 'finance_summary', 'network_health', 'escalation')";

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_sends_recent_mail_and_one_summary() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    let site = Site::new(4, |_| smtp.url());
    let last = site.last.to_string();
    let out = site.ok(&["close"]);
    assert!(out.contains("suppressed"), "{out}");
    let pool = site.pool().await;

    // Every periodic mail of an older period is suppressed, none of the latest month.
    let old_not_suppressed = count(
        &pool,
        &format!(
            "SELECT COUNT(*) FROM email_outbox WHERE kind IN {PERIODIC} AND period < '{last}' AND status <> 'suppressed'"
        ),
    )
    .await;
    assert_eq!(old_not_suppressed, 0);
    let suppressed = count(
        &pool,
        "SELECT COUNT(*) FROM email_outbox WHERE status = 'suppressed'",
    )
    .await;
    assert!(suppressed > 20, "{suppressed}");
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT kind FROM email_outbox WHERE status = 'suppressed' ORDER BY kind",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for k in ["finance_summary", "network_health"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    assert!(
        kinds.iter().any(|k| k == "alert" || k == "tier_change"),
        "operator mail was suppressed: {kinds:?}"
    );
    let latest_sent = count(
        &pool,
        &format!("SELECT COUNT(*) FROM email_outbox WHERE period = '{last}' AND status = 'sent'"),
    )
    .await;
    let latest_all = count(
        &pool,
        &format!("SELECT COUNT(*) FROM email_outbox WHERE period = '{last}' AND kind <> 'backfill_summary'"),
    )
    .await;
    assert!(latest_sent > 0);
    assert_eq!(latest_sent, latest_all, "the latest month's mail is sent");

    // One summary per internal address (finance, leadership, ops, partner success).
    let summaries: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT recipient, status, period FROM email_outbox WHERE kind = 'backfill_summary' ORDER BY recipient",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(summaries.len(), 4, "{summaries:?}");
    assert!(summaries.iter().all(|(_, s, p)| s == "sent" && p.is_some()));
    let first = site.last.add_months(-3).to_string();
    let before_last = site.last.prev().to_string();
    let summary = smtp
        .received()
        .into_iter()
        .filter_map(|raw| {
            let m = MessageParser::default().parse(raw.as_slice())?;
            let to = m.to()?.first()?.address()?.to_string();
            let subject = m.subject()?.to_string();
            (to == "finance@candlefish.example" && subject.starts_with("opnet backfill"))
                .then(|| m.body_text(0).map(|t| t.to_string()).unwrap_or_default())
        })
        .next()
        .expect("finance got the backfill summary");
    assert!(
        summary.contains(&format!("{first} .. {before_last}")),
        "{summary}"
    );
    for p in site.last.add_months(-3).through(site.last.prev()) {
        assert!(summary.contains(&p.to_string()), "{p} listed: {summary}");
    }

    // Issue 9 item 10: the finance summary shows the snapshot's quarantine counts.
    let finance: String = sqlx::query_scalar(&format!(
        "SELECT body FROM email_outbox WHERE kind = 'finance_summary' AND period = '{last}'"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    let finance = MessageParser::default()
        .parse(finance.as_bytes())
        .and_then(|m| m.body_text(0).map(|t| t.to_string()))
        .unwrap();
    assert!(
        finance.contains("Ingest quarantine of the run's snapshot"),
        "{finance}"
    );
    for dataset in [
        "billing/invoices:",
        "crm/operators:",
        "survey/survey_responses:",
    ] {
        assert!(finance.contains(dataset), "{dataset} in {finance}");
    }

    // What the capture server received is exactly what the outbox says was sent.
    let sent = count(
        &pool,
        "SELECT COUNT(*) FROM email_outbox WHERE status = 'sent'",
    )
    .await;
    assert_eq!(smtp.received().len() as i64, sent);
    // Issue 10 item 7: every mail carries its period.
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM email_outbox WHERE period IS NULL"
        )
        .await,
        0
    );
    // `opnet status` shows the suppressed mail.
    let status = site.ok(&["status"]);
    assert!(
        status.contains(&format!("{suppressed} suppressed")),
        "{status}"
    );

    // A re-run sends nothing and summarises nothing again.
    site.ok(&["close"]);
    assert_eq!(smtp.received().len() as i64, sent);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM email_outbox WHERE kind = 'backfill_summary'"
        )
        .await,
        4
    );

    // `--send-mail all` sends one old period's suppressed mail after all.
    let old = site.last.add_months(-2).to_string();
    let to_send = count(
        &pool,
        &format!(
            "SELECT COUNT(*) FROM email_outbox WHERE period = '{old}' AND status = 'suppressed'"
        ),
    )
    .await;
    assert!(to_send > 0);
    site.ok(&[
        "close",
        "--from",
        &old,
        "--through",
        &old,
        "--send-mail",
        "all",
    ]);
    assert_eq!(smtp.received().len() as i64, sent + to_send);
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT COUNT(*) FROM email_outbox WHERE period = '{old}' AND status = 'suppressed'"
            )
        )
        .await,
        0
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn send_mail_none_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    let site = Site::new(2, |_| smtp.url());
    site.ok(&["close", "--send-mail", "none"]);
    assert!(smtp.received().is_empty());
    let pool = site.pool().await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM email_outbox WHERE status <> 'suppressed'"
        )
        .await,
        0,
        "no mail, not even a backfill summary"
    );
    assert!(count(&pool, "SELECT COUNT(*) FROM email_outbox").await > 0);
    pool.close().await;
}

/// Appends rows to a source CSV.
fn append(site: &Site, dataset: &str, rows: &[&str]) {
    let path = site.path().join(format!("source/{dataset}.csv"));
    let mut text = std::fs::read_to_string(&path).unwrap();
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_range_starts_at_paid_activity_and_a_long_one_is_refused() {
    let site = Site::new(3, |d| format!("file:{}", d.join("outbox").display()));
    // One open invoice issued in 2000, never paid: it moved no money.
    let customer = std::fs::read_to_string(site.path().join("source/billing/invoices.csv"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_string();
    append(
        &site,
        "billing/invoices",
        &[&format!("INV-OLD-1,{customer},USD,2000-01-15,open,,1000")],
    );
    site.ok(&["close"]);
    let pool = site.pool().await;
    let first: String =
        sqlx::query_scalar("SELECT MIN(period) FROM job_runs WHERE period IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(first, site.last.add_months(-2).to_string(), "not 2000-01");
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(DISTINCT period) FROM job_runs WHERE period IS NOT NULL"
        )
        .await,
        3
    );

    // A paid invoice of 2000: the default range would be 300+ periods — refused.
    append(
        &site,
        "billing/invoices",
        &[&format!(
            "INV-OLD-2,{customer},USD,2000-01-15,paid,2000-01-20,1000"
        )],
    );
    let runs_before = count(
        &pool,
        "SELECT COUNT(*) FROM job_runs WHERE period IS NOT NULL",
    )
    .await;
    let o = site.opnet(&["close"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    for needle in [
        "refusing to close",
        "2000-01 ..",
        "close.max_backfill_months = 36",
        "--from",
    ] {
        assert!(msg.contains(needle), "{needle:?} in {msg}");
    }
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM job_runs WHERE period IS NOT NULL"
        )
        .await,
        runs_before,
        "nothing ran"
    );
    // An explicit --from is obeyed.
    let from = site.last.to_string();
    site.ok(&["close", "--from", &from]);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_recorded_and_explained() {
    let site = Site::new(2, |d| format!("file:{}", d.join("outbox").display()));
    let last = site.last.to_string();
    site.ok(&["close"]);
    let approved = site.ok(&["payouts", "approve", "--period", &last]);
    assert!(approved.starts_with("approved "), "{approved}");
    site.ok(&["payouts", "send", "--period", &last]);

    // Approving again says why nothing was approved.
    let again = site.ok(&["payouts", "approve", "--period", &last]);
    assert!(
        again.contains("already sent (revision 1); nothing to approve"),
        "{again}"
    );
    // A second close refuses the approved period's payouts and records it.
    let out = site.ok(&["close", "--from", &last, "--through", &last]);
    assert!(out.contains("refused"), "{out}");
    let pool = site.pool().await;
    let refused: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT period, error FROM job_runs WHERE job = 'payouts' AND status = 'refused'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, last);
    assert!(
        refused[0]
            .1
            .as_deref()
            .unwrap_or("")
            .contains("approved statements (revision 1)"),
        "{refused:?}"
    );
    // `runs` and `status` show it as payouts' last run; nothing is due.
    let runs = site.ok(&["runs"]);
    assert!(runs.contains("refused"), "{runs}");
    let status = site.ok(&["status"]);
    assert!(status.contains("refused"), "{status}");
    assert!(status.contains("close: nothing due"), "{status}");

    // Issue 10 item 7: one timestamp format in every table.
    let re = |s: &str| {
        let b = s.as_bytes();
        s.len() == 24
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'.'
            && s.ends_with('Z')
            && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    };
    let mut checked = 0;
    for (table, cols) in [
        (
            "job_runs",
            &["started_at", "finished_at", "published_at"][..],
        ),
        ("email_outbox", &["queued_at", "sent_at", "claimed_at"][..]),
        (
            "payout_statements",
            &["approved_at", "queued_at", "sent_at"][..],
        ),
        ("opnet_migrations", &["applied_at"][..]),
    ] {
        for c in cols {
            let values: Vec<Option<String>> =
                sqlx::query_scalar(&format!("SELECT {c} FROM {table}"))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            for v in values.into_iter().flatten() {
                assert!(re(&v), "{table}.{c} = {v:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_mail_only_when_unattended_naming_the_command() {
    let site = Site::new(2, |d| format!("file:{}", d.join("outbox").display()));
    let typo = |args: &[&str]| {
        let o = site.opnet_from(&site.path().join("sauce"), args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    };
    let last = site.last.to_string();
    typo(&["close", "--through", &last]);
    let pool = site.pool().await;
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM email_outbox").await,
        0,
        "a typo at a terminal emails nobody"
    );
    typo(&["--notify", "close", "--through", &last]);
    let text_of = |raw: &String| {
        MessageParser::default()
            .parse(raw.as_bytes())
            .and_then(|m| m.body_text(0).map(|t| t.to_string()))
            .unwrap_or_default()
    };
    let bodies: Vec<String> =
        sqlx::query_scalar::<_, String>("SELECT body FROM email_outbox WHERE kind = 'run_failed'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(text_of)
            .collect();
    assert_eq!(bodies.len(), 1, "one ops address");
    assert!(
        bodies[0].contains(&format!("opnet close --through {last}")),
        "{}",
        bodies[0]
    );
    typo(&["--notify", "ingest"]);
    let bodies: Vec<String> = sqlx::query_scalar::<_, String>(
        "SELECT body FROM email_outbox WHERE kind = 'run_failed' ORDER BY queued_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(text_of)
    .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[1].contains("    opnet ingest"), "{}", bodies[1]);
    pool.close().await;
}
