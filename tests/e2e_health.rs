//! End-to-end (issue 4): a 12-month close on PostgreSQL sends each kind of email once
//! to a real SMTP capture server, a second close of the same months sends none, and
//! the leadership report renders in headless Chromium with the charts present and the
//! numbers of `network_health`; each operator's monthly report (R8.1) goes to its own
//! address only and renders too. The screenshots are kept under
//! `target/test-artifacts/` for a person to look at.

#![allow(clippy::unwrap_used)]

mod common;

use common::SmtpCapture;
use mail_parser::MessageParser;
use opnet::app::App;
use opnet::close::{self, CloseOptions};
use opnet::commands::{payouts, report};
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::Period;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn twelve_month_close_sends_each_kind_once_and_the_report_renders() {
    let Some(database) = common::pg_database("health").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    generate::generate(&GenerateOptions {
        out: dir.path().join("source"),
        operators: 40,
        months: 12,
        end: p("2025-12"),
        seed: 21,
        format: Format::Parquet,
    })
    .unwrap();
    let config = common::config(dir.path(), database.url.clone(), smtp.url());
    let app = App::open(config).await.unwrap();
    let now = chrono::Utc::now();
    // Every mail of every period (these months are older than the latest complete
    // one, whose mail alone the default policy sends).
    let opts = CloseOptions {
        through: Some(p("2025-12")),
        mail: close::MailPolicy::All,
        ..Default::default()
    };
    let closed = close::close(&app, &opts, now).await.unwrap();
    payouts::approve(&app, p("2025-12"), None, now)
        .await
        .unwrap();
    payouts::send(&app, p("2025-12"), now).await.unwrap();

    let pool = &app.db.pool;
    let sent: BTreeMap<String, i64> =
        sqlx::query("SELECT kind, COUNT(*) FROM email_outbox WHERE status = 'sent' GROUP BY kind")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    for kind in [
        "statement",
        "finance_summary",
        "tier_change",
        "alert",
        "exclusivity_breach",
        "escalation",
        "network_health",
        "operator_report",
    ] {
        assert!(
            sent.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} email was sent: {sent:?}"
        );
    }
    let unsent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM email_outbox WHERE status <> 'sent'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(unsent, 0);
    // The capture server saw each outbox message exactly once.
    let received = smtp.received();
    let total: i64 = sent.values().sum();
    assert_eq!(received.len() as i64, total);
    let ids: BTreeSet<String> = received
        .iter()
        .map(|raw| {
            MessageParser::default()
                .parse(raw.as_slice())
                .unwrap()
                .message_id()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), received.len(), "a Message-ID arrived twice");

    // A second close of the same months sends nothing.
    close::close(&app, &opts, chrono::Utc::now()).await.unwrap();
    assert_eq!(
        smtp.received().len(),
        received.len(),
        "the second close sent mail"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM email_outbox")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(rows, total);

    // R8.1: each operator's report goes to its own address, about itself only.
    let inputs = app.lake.read_snapshot(&closed.snapshot).await.unwrap();
    let directory = opnet_pipelines::directory::operator_directory(&inputs).unwrap();
    let mut reports = 0;
    let mut an_operator_report: Option<String> = None;
    for raw in &received {
        let m = MessageParser::default().parse(raw.as_slice()).unwrap();
        let subject = m.subject().unwrap_or("");
        if !subject.starts_with("Your Candlefish scorecard for 2025-12") {
            continue;
        }
        reports += 1;
        let to = m
            .to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_string();
        let (id, contact) = directory
            .iter()
            .find(|(id, _)| subject.ends_with(&format!("({id})")))
            .unwrap();
        assert_eq!(to, contact.email, "{id}'s report went to {to}");
        let html = m.body_html(0).unwrap().to_string();
        for other in directory.keys().filter(|o| *o != id) {
            assert!(
                !html.contains(other.as_str()),
                "{id}'s report names {other}"
            );
        }
        an_operator_report.get_or_insert(html);
    }
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT operator_id) FROM operator_scorecards WHERE period = '2025-12'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(active > 0);
    assert_eq!(reports, active, "one report per operator with a scorecard");

    // The leadership report, rendered by a browser.
    let report = report::report(&app, p("2025-12")).await.unwrap();
    let html_path = artifacts().join("network-health-2025-12.html");
    std::fs::write(&html_path, &report.html).unwrap();
    let png = artifacts().join("network-health-2025-12.png");
    let _ = std::fs::remove_file(&png);
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    let Some(chromium) = chromium else {
        common::unavailable("chromium");
        return;
    };
    let profile = dir.path().join("chromium-profile");
    let base = |extra: &[String]| {
        let mut c = Command::new(chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", html_path.display()));
        c.output().unwrap()
    };
    let shot = base(&[
        format!("--screenshot={}", png.display()),
        "--window-size=1280,4200".into(),
    ]);
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 20_000,
        "screenshot looks empty"
    );
    let dom = String::from_utf8(base(&["--dump-dom".to_string()]).stdout).unwrap();
    for id in [
        "chart-active-operators",
        "chart-total-mrr-usd",
        "chart-mrr-per-operator-usd",
        "chart-operator-retention",
        "chart-tier-mix",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "chart {id} missing from the rendered page"
        );
    }
    assert!(dom.matches("<svg").count() >= 5);
    // The numbers of the KPI table are those of network_health.
    let figures = sqlx::query(
        "SELECT metric, dimension, value, value_cents FROM network_health WHERE period = '2025-12'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!figures.is_empty());
    for r in &figures {
        let metric: String = r.get(0);
        let dimension: Option<String> = r.get(1);
        let value: Option<f64> = r.get(2);
        let cents: Option<i64> = r.get(3);
        let shown = match (cents, value) {
            (Some(c), _) => opnet::mail::format_cents(c, dimension.as_deref().unwrap_or("")),
            (None, Some(v)) if v.fract() == 0.0 => format!("{v:.0}"),
            _ => continue,
        };
        assert!(
            dom.contains(&shown),
            "{metric} {dimension:?}: {shown} not in the rendered report"
        );
    }

    // An operator's report, rendered by the same browser.
    let op_html = artifacts().join("operator-report-2025-12.html");
    std::fs::write(&op_html, an_operator_report.unwrap()).unwrap();
    let op_png = artifacts().join("operator-report-2025-12.png");
    let _ = std::fs::remove_file(&op_png);
    let render = |extra: &[String]| {
        let mut c = Command::new(chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", op_html.display()));
        c.output().unwrap()
    };
    render(&[
        format!("--screenshot={}", op_png.display()),
        "--window-size=900,2400".into(),
    ]);
    assert!(
        std::fs::metadata(&op_png)
            .map(|m| m.len() > 20_000)
            .unwrap_or(false)
    );
    let dom = String::from_utf8(render(&["--dump-dom".to_string()]).stdout).unwrap();
    for id in [
        "chart-score",
        "chart-mrr",
        "chart-customers",
        "lead-pipeline",
        "training",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "{id} missing from the operator report"
        );
    }
}
