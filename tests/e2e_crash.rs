//! Crash tests (issue 5): `kill -9` the scheduler at each crash point of a close —
//! during ingest, inside a job's transaction, after a commit before delivery, in the
//! SMTP-accept window, and between two deliveries — then restart it and compare with
//! an uninterrupted run on the same data: the results (every result table, minus run
//! ids), the ledger (each job and period succeeded once, the killed run marked
//! interrupted, nothing left `running`), the lake's marts, and the mails the SMTP
//! capture server received (each exactly once, the same content under the same
//! Message-ID; in the accept window the one mail in flight arrives twice, under the
//! same Message-ID, which is the documented window).
//!
//! The process stops at a point by `OPNET_FAILPOINT=<name>[@<n>]` (jobs/src/failpoint.rs)
//! and is then killed with SIGKILL by this test — nothing in the process gets to clean
//! up. Runs against PostgreSQL, the production backend.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::SmtpCapture;
use mail_parser::MimeHeaders;
use opnet::generate::{self, Format, GenerateOptions};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::OnceCell;

const RESULT_TABLES: [&str; 7] = [
    "payout_statements",
    "payout_lines",
    "reconciliation_exceptions",
    "operator_tiers",
    "exclusivity_checks",
    "operator_metrics",
    "network_health",
];

/// What a close produced, in a form two runs can be compared by.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Per table, every row as canonical JSON without run-specific columns, sorted.
    tables: BTreeMap<String, Vec<String>>,
    /// (job, period) of every succeeded run, sorted.
    succeeded: Vec<(String, String)>,
    /// Relative paths of the files under the lake's marts/.
    marts: Vec<String>,
    /// Message-ID → (dedup key, recipient, status) of every outbox row.
    outbox: BTreeMap<String, (String, String, String)>,
}

/// One received mail, without what differs between two runs (Date, MIME boundaries).
#[derive(Debug, Clone, PartialEq)]
struct Mail {
    subject: String,
    to: String,
    text: String,
    html: String,
    attachments: Vec<(String, Vec<u8>)>,
}

fn parse_mail(raw: &[u8]) -> (String, Mail) {
    let m = mail_parser::MessageParser::default().parse(raw).unwrap();
    let id = format!("<{}>", m.message_id().unwrap());
    let to = m
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string();
    let mail = Mail {
        subject: m.subject().unwrap_or_default().to_string(),
        to,
        text: m.body_text(0).map(|t| t.to_string()).unwrap_or_default(),
        html: m.body_html(0).map(|t| t.to_string()).unwrap_or_default(),
        attachments: m
            .attachments()
            .map(|a| {
                (
                    a.attachment_name().unwrap_or_default().to_string(),
                    a.contents().to_vec(),
                )
            })
            .collect(),
    };
    (id, mail)
}

/// The mails a capture server received, by Message-ID (a list: a resend shows twice).
fn received(smtp: &SmtpCapture) -> BTreeMap<String, Vec<Mail>> {
    let mut by_id: BTreeMap<String, Vec<Mail>> = BTreeMap::new();
    for raw in smtp.received() {
        let (id, mail) = parse_mail(&raw);
        by_id.entry(id).or_default().push(mail);
    }
    by_id
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A scenario's folder: the same generated network every time (same seed), a config
/// file with a short lease so a restart takes over a killed holder's lease quickly.
struct Site {
    dir: tempfile::TempDir,
    database: common::TestDb,
    smtp: SmtpCapture,
}

impl Site {
    async fn new(tag: &str) -> Option<Site> {
        let database = common::pg_database(tag).await?;
        let dir = tempfile::tempdir().unwrap();
        let smtp = SmtpCapture::start(dir.path())?;
        let end = opnet::app::last_complete_period(Utc::now(), chrono_tz::Tz::UTC);
        generate::generate(&GenerateOptions {
            out: dir.path().join("source"),
            operators: 10,
            months: 3,
            end,
            seed: 23,
            format: Format::Csv,
        })
        .unwrap();
        std::fs::write(
            dir.path().join("opnet.toml"),
            // The close's tasks only: a lead run (every wake-up by default) mails under
            // its run id, which no two runs share, so it would not compare.
            "[schedule]\nlease_ttl_secs = 10\n\
             [[schedule.jobs]]\nname = \"ingest\"\ncron = \"0 0 2 * * *\"\n\
             [[schedule.jobs]]\nname = \"close\"\ncron = \"0 0 6 1 * *\"\n",
        )
        .unwrap();
        Some(Site {
            dir,
            database,
            smtp,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The binary with this site's config, database, source, lake and relay, and
    /// `failpoint` armed.
    fn base(&self, failpoint: Option<&str>) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_opnet"));
        c.current_dir(self.path())
            .env_remove("DATABASE_URL")
            .env_remove("OPNET_FAILPOINT")
            .env("OPNET_LOG", "info")
            .arg("--config")
            .arg(self.path().join("opnet.toml"))
            .arg("--database")
            .arg(&self.database)
            .arg("--source")
            .arg(self.path().join("source"))
            .arg("--lake")
            .arg(self.path().join("lake"))
            .arg("--mail")
            .arg(self.smtp.url());
        if let Some(f) = failpoint {
            c.env("OPNET_FAILPOINT", f);
        }
        c
    }

    fn scheduler(&self, failpoint: Option<&str>) -> Command {
        let mut c = self.base(failpoint);
        c.args(["schedule", "--once"]);
        c
    }

    /// A manual command, waiting for the lease a killed process may still hold.
    fn command(&self, failpoint: Option<&str>, args: &[&str]) -> Command {
        let mut c = self.base(failpoint);
        c.args(["--lease-wait", "120"]).args(args);
        c
    }

    /// `schedule --once` to the end.
    fn run_to_end(&self) -> Output {
        let o = self.scheduler(None).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        o
    }

    /// `schedule --once` until it reports reaching `failpoint`, then SIGKILL.
    fn run_and_kill_at(&self, failpoint: &str) -> String {
        self.kill_at(self.scheduler(Some(failpoint)), failpoint)
    }

    /// Runs `cmd` until it reports reaching `failpoint`, then SIGKILL.
    fn kill_at(&self, mut cmd: Command, failpoint: &str) -> String {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let name = failpoint.split('@').next().unwrap();
        let needle = format!("failpoint {name} reached");
        let mut log = String::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(300)) {
                Ok(line) => {
                    let hit = line.contains(&needle);
                    log.push_str(&line);
                    log.push('\n');
                    if hit {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("{failpoint} was never reached; the scheduler said:\n{log}");
                }
            }
        }
        // SIGKILL: no destructors, no rollback, no lease release.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed");
        log
    }

    async fn outcome(&self) -> Outcome {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.database).await.unwrap();
        let mut tables = BTreeMap::new();
        for t in RESULT_TABLES {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT (to_jsonb(t) - 'run_id' - 'approved_at' - 'sent_at')::text FROM {t} t ORDER BY 1"
            ))
            .fetch_all(&pool)
            .await
            .unwrap();
            tables.insert(t.to_string(), rows);
        }
        let succeeded: Vec<(String, String)> = sqlx::query_as(
            "SELECT job, period FROM job_runs WHERE status = 'succeeded' AND period IS NOT NULL ORDER BY job, period",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let outbox: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT message_id, dedup_key, recipient, status FROM email_outbox ORDER BY message_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        let mut marts = Vec::new();
        walk(&self.path().join("lake/marts"), &mut marts);
        marts.sort();
        let root = self.path().join("lake").display().to_string();
        Outcome {
            tables,
            succeeded,
            marts: marts
                .into_iter()
                .map(|p| p.display().to_string().replace(&root, ""))
                .collect(),
            outbox: outbox
                .into_iter()
                .map(|(id, key, to, status)| (id, (key, to, status)))
                .collect(),
        }
    }

    async fn ledger(&self, sql: &str) -> i64 {
        let pool = sqlx::AnyPool::connect(&self.database).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

struct Reference {
    outcome: Outcome,
    mails: BTreeMap<String, Vec<Mail>>,
}

/// The uninterrupted run every crash is compared with (computed once per test binary).
async fn reference() -> Option<&'static Reference> {
    static REFERENCE: OnceCell<Option<Reference>> = OnceCell::const_new();
    REFERENCE
        .get_or_init(|| async {
            let site = Site::new("crash_ref").await?;
            site.run_to_end();
            let outcome = site.outcome().await;
            let mails = received(&site.smtp);
            assert!(!outcome.succeeded.is_empty());
            assert!(
                mails.len() >= 10,
                "the reference close sends mails: {}",
                mails.len()
            );
            assert!(
                mails.values().all(|v| v.len() == 1),
                "each mail once in the reference run"
            );
            // Three periods: the two older ones are a backfill, their mail recorded
            // `suppressed` and listed in one backfill summary (issue 9 item 16).
            assert!(
                outcome
                    .outbox
                    .values()
                    .all(|(_, _, s)| s == "sent" || s == "suppressed"),
                "{:?}",
                outcome.outbox
            );
            assert!(
                outcome
                    .outbox
                    .values()
                    .any(|(k, _, _)| k.starts_with("backfill_summary:")),
                "a backfill summary was sent"
            );
            Some(Reference { outcome, mails })
        })
        .await
        .as_ref()
}

/// Kill at `failpoint`, restart, compare. `window`: the crash is in the SMTP-accept
/// window, so exactly one mail may arrive twice (same Message-ID, same content).
async fn crash_and_recover(tag: &str, failpoint: &str, window: bool) {
    let Some(reference) = reference().await else {
        return;
    };
    let Some(site) = Site::new(tag).await else {
        return;
    };
    let log = site.run_and_kill_at(failpoint);
    let running = site
        .ledger("SELECT COUNT(*) FROM job_runs WHERE status = 'running'")
        .await;
    if failpoint.starts_with("ingest.") || failpoint.starts_with("job.before") {
        assert_eq!(running, 1, "the killed run is left running:\n{log}");
    }

    let restart = site.run_to_end();
    let outcome = site.outcome().await;
    assert_eq!(
        outcome,
        reference.outcome,
        "results after a crash at {failpoint} and a restart differ from an uninterrupted run\n\
         --- killed run:\n{log}\n--- restart:\n{}",
        text(&restart)
    );
    assert_eq!(
        site.ledger("SELECT COUNT(*) FROM job_runs WHERE status = 'running'")
            .await,
        0,
        "nothing left running"
    );
    assert_eq!(
        site.ledger(
            "SELECT COUNT(*) FROM job_runs WHERE status = 'failed' AND error NOT LIKE '%interrupted%'"
        )
        .await,
        0,
        "the only failed runs are the interrupted one"
    );
    assert_eq!(
        site.ledger("SELECT COUNT(*) FROM job_runs WHERE status = 'failed'")
            .await,
        running,
        "the killed run is marked interrupted"
    );

    let mails = received(&site.smtp);
    assert_eq!(
        mails.keys().collect::<Vec<_>>(),
        reference.mails.keys().collect::<Vec<_>>(),
        "the same Message-IDs arrived"
    );
    let mut twice = Vec::new();
    for (id, copies) in &mails {
        let expected = &reference.mails[id][0];
        for copy in copies {
            assert_eq!(copy, expected, "{id}: content differs from the reference");
        }
        match copies.len() {
            1 => {}
            2 => twice.push(id.clone()),
            n => panic!("{id} arrived {n} times"),
        }
    }
    if window {
        assert_eq!(
            twice.len(),
            1,
            "a crash in the accept window resends exactly the mail in flight: {twice:?}"
        );
    } else {
        assert!(twice.is_empty(), "mails delivered twice: {twice:?}");
    }
}

// Registry order per period: payouts, exclusivity, alerts, network_health; the first
// period's payouts is the first job run, and its delivery the first delivery.

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_ingest_before_the_manifest() {
    crash_and_recover("crash_ingest", "ingest.before-manifest", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_inside_a_job_transaction() {
    // The 6th run: exclusivity of the second period, after a first delivery.
    crash_and_recover("crash_job", "job.before-commit@6", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_after_a_commit_before_its_delivery() {
    // The last run of the close: nothing is due at the restart, only its mails.
    crash_and_recover("crash_commit", "job.after-commit@12", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_between_two_deliveries() {
    crash_and_recover("crash_deliver", "deliver.after-mark@3", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_in_the_smtp_accept_window() {
    crash_and_recover("crash_window", "deliver.after-send@4", true).await;
}

/// `(operator_id, currency, revision, payable_cents)` of the payout_statements mart of
/// `period`, read by pyarrow, sorted; `None` when pyarrow is missing (not required).
fn mart_payables(lake: &Path, period: &str) -> Option<Vec<(String, String, i64, i64)>> {
    let file = lake.join(format!(
        "marts/payout_statements/period={period}/part-0.parquet"
    ));
    let script = r#"
import json, sys
import pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
print(json.dumps(sorted([r['operator_id'], r['currency'], r['revision'], r['payable_cents']] for r in rows)))
"#;
    match Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .output()
    {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            common::unavailable("pyarrow");
            None
        }
        Ok(o) => panic!("pyarrow could not read {}: {}", file.display(), text(&o)),
        Err(e) => {
            common::unavailable(&format!("python3 ({e})"));
            None
        }
    }
}

/// Issue 9 item 13: marts are published after the commit. A re-run of a period with
/// changed data killed before its commit leaves the published mart as the database
/// (the old figures); one killed after its commit, before publishing, is healed by the
/// next wake-up, which publishes the committed figures.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_in_a_rerun_leaves_the_mart_agreeing_with_the_database() {
    let Some(site) = Site::new("crash_rerun").await else {
        return;
    };
    site.run_to_end();
    let period = opnet::app::last_complete_period(Utc::now(), chrono_tz::Tz::UTC).to_string();
    let lake = site.path().join("lake");
    let db_payables = || async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&site.database).await.unwrap();
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT operator_id, currency, revision, payable_cents FROM payout_statements WHERE period = $1 \
             ORDER BY operator_id, currency, revision",
        )
        .bind(&period)
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    };
    let before = db_payables().await;
    let Some(mart) = mart_payables(&lake, &period) else {
        return;
    };
    assert_eq!(mart, before);

    // Change the period's data: one of its paid invoices disappears from billing.
    let path = site.path().join("source/billing/invoices.csv");
    let csv = std::fs::read_to_string(&path).unwrap();
    let mut removed = false;
    let kept: Vec<&str> = csv
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let drop =
                !removed && f.get(5).is_some_and(|d| d.starts_with(&period)) && f[4] == "paid";
            removed |= drop;
            !drop
        })
        .collect();
    assert!(removed);
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let rerun = [
        "close",
        "--from",
        period.as_str(),
        "--through",
        period.as_str(),
        "--job",
        "payouts",
    ];

    // Killed inside the re-run's transaction: nothing committed, nothing published.
    site.kill_at(
        site.command(Some("job.before-commit"), &rerun),
        "job.before-commit",
    );
    assert_eq!(db_payables().await, before);
    assert_eq!(
        mart_payables(&lake, &period).unwrap(),
        before,
        "the mart is the database's"
    );

    // Killed after the re-run's commit, before publishing: the database has the new
    // figures, the mart the old ones until the next wake-up publishes.
    site.kill_at(
        site.command(Some("job.after-commit"), &rerun),
        "job.after-commit",
    );
    let after = db_payables().await;
    assert_ne!(after, before, "the re-run changed the payables");
    assert_eq!(
        site.ledger(
            "SELECT COUNT(*) FROM job_runs WHERE status = 'succeeded' AND period IS NOT NULL AND published_at IS NULL"
        )
        .await,
        1,
        "the committed run is recorded as not yet published"
    );
    let wake = site
        .command(None, &["schedule", "--once"])
        .output()
        .unwrap();
    assert!(wake.status.success(), "{}", text(&wake));
    assert_eq!(mart_payables(&lake, &period).unwrap(), after, "healed");
    assert_eq!(
        site.ledger(
            "SELECT COUNT(*) FROM job_runs WHERE status = 'succeeded' AND period IS NOT NULL AND published_at IS NULL"
        )
        .await,
        0
    );
}
