//! End-to-end (issue 9 items 2, 3, 5; issue 14 item 9): mail delivery against a real
//! SMTP capture server (aiosmtpd).
//!
//! - Several deliverers at once — tasks on separate connection pools, on PostgreSQL
//!   and on SQLite, and `opnet deliver` processes — send each Message-ID exactly once.
//! - With the relay down, `payouts send` leaves the statements `failed` with the
//!   reason and exits non-zero; with the relay up, `opnet deliver` sends them and they
//!   become `sent`. The published statements mart, read by pyarrow, has the database's
//!   status after approve, after the failed send and after the delivery.
//! - An operator email `a@x, b@y` and one with a CRLF header injection fail their own
//!   statements (with the reason) while every other statement goes out, and nothing
//!   is sent to the injected address.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::SmtpCapture;
use mail_parser::MessageParser;
use opnet::generate::{self, Format, GenerateOptions};
use opnet::mail::{self, OutgoingEmail};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The binary with this test's database, source, lake and mail transport.
fn opnet(dir: &Path, database: &str, mail: &str) -> Command {
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
        .arg(mail);
    c
}

/// Message-ID → how many times the capture server received it.
fn received_ids(smtp: &SmtpCapture) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for raw in smtp.received() {
        let m = MessageParser::default().parse(raw.as_slice()).unwrap();
        *ids.entry(m.message_id().unwrap().to_string()).or_default() += 1;
    }
    ids
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

fn alert(i: usize) -> OutgoingEmail {
    OutgoingEmail {
        dedup_key: mail::dedup_key("alert", &["2025-08", &format!("OP-{i:04}"), "x"]),
        kind: "alert".into(),
        audience: mail::Audience::Operator,
        period: Some("2025-08".into()),
        recipient: format!("ops@op-{i:04}.example.com"),
        subject: format!("Alert {i}"),
        text: format!("Mail number {i}\n"),
        html: None,
        attachments: Vec::new(),
    }
}

/// N deliverers on separate pools (separate connections, as separate processes would
/// have) drain one outbox of 200 mails into a real SMTP server: every Message-ID
/// arrives exactly once and every row is `sent` after one attempt.
async fn concurrent_deliverers(database: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    let db = opnet::db::Db::connect(database).await.unwrap();
    db.migrate().await.unwrap();
    let emails: Vec<OutgoingEmail> = (0..200).map(alert).collect();
    let mut conn = db.pool.acquire().await.unwrap();
    let sender = "Candlefish <payouts@candlefish.example>";
    assert_eq!(
        mail::enqueue(&mut conn, sender, &emails, None, Utc::now())
            .await
            .unwrap(),
        200
    );
    drop(conn);
    let transport = mail::Transport::parse(&smtp.url()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pool = opnet::db::Db::connect(database).await.unwrap().pool;
        let transport = transport.clone();
        tasks.push(tokio::spawn(async move {
            mail::deliver_queued(&pool, &transport, Utc::now()).await
        }));
    }
    let mut per_deliverer = Vec::new();
    for t in tasks {
        per_deliverer.push(t.await.unwrap().unwrap().sent);
    }
    assert_eq!(
        per_deliverer.iter().sum::<usize>(),
        200,
        "{per_deliverer:?}"
    );
    let ids = received_ids(&smtp);
    assert_eq!(ids.len(), 200, "every mail arrived");
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "received more than once: {twice:?}");
    let expected: std::collections::BTreeSet<String> = emails
        .iter()
        .map(|e| {
            mail::message_id(&e.dedup_key)
                .trim_matches(['<', '>'])
                .to_string()
        })
        .collect();
    assert_eq!(
        ids.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected
    );
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT status, attempts FROM email_outbox")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(rows.iter().all(|(s, a)| s == "sent" && *a == 1), "{rows:?}");
    db.pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deliverers_send_each_mail_once_on_postgres() {
    let Some(url) = common::pg_database("deliver_n").await else {
        return;
    };
    concurrent_deliverers(&url).await;
    drop_database(&url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deliverers_send_each_mail_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_deliverers(&format!("sqlite://{}/opnet.db", dir.path().display())).await;
}

/// Three `opnet deliver` processes started together on one SQLite outbox: the lease
/// lets one work at a time (the others wait with `--lease-wait`), and the SMTP server
/// receives every Message-ID once.
#[tokio::test(flavor = "multi_thread")]
async fn deliver_processes_started_together_send_each_mail_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    let database = format!("sqlite://{}/opnet.db", dir.path().display());
    let db = opnet::db::Db::connect(&database).await.unwrap();
    db.migrate().await.unwrap();
    let emails: Vec<OutgoingEmail> = (0..60).map(alert).collect();
    let mut conn = db.pool.acquire().await.unwrap();
    mail::enqueue(
        &mut conn,
        "payouts@candlefish.example",
        &emails,
        None,
        Utc::now(),
    )
    .await
    .unwrap();
    drop(conn);
    std::fs::create_dir_all(dir.path().join("source")).unwrap();
    let spawn = |wait: &str| {
        opnet(dir.path(), &database, &smtp.url())
            .args(["--lease-wait", wait, "deliver"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let procs: Vec<_> = (0..3).map(|_| spawn("120")).collect();
    let outs: Vec<Output> = procs
        .into_iter()
        .map(|p| p.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let delivered: Vec<String> = outs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .collect();
    assert!(
        delivered
            .iter()
            .any(|l| l.starts_with("delivered 60 email(s)")),
        "{delivered:?}"
    );
    let ids = received_ids(&smtp);
    assert_eq!(ids.len(), 60);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");

    // Without --lease-wait a command that finds the lease held does nothing and says
    // who holds it (exit 75).
    let now = opnet::db::timestamp(Utc::now());
    let later = opnet::db::timestamp(Utc::now() + chrono::TimeDelta::minutes(5));
    sqlx::query("INSERT INTO job_leases (name, holder, acquired_at, expires_at, command) VALUES ('close', 'otherhost:4242:abcd', $1, $2, 'opnet close --through 2025-08')")
        .bind(&now)
        .bind(&later)
        .execute(&db.pool)
        .await
        .unwrap();
    let o = opnet(dir.path(), &database, &smtp.url())
        .arg("deliver")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("otherhost:4242:abcd") && msg.contains("opnet close --through 2025-08"),
        "{msg}"
    );
    db.pool.close().await;
}

/// A small network whose last month is the last complete one.
fn generate_source(dir: &Path) -> String {
    let end = opnet::app::last_complete_period(Utc::now(), chrono_tz::Tz::UTC);
    generate::generate(&GenerateOptions {
        out: dir.join("source"),
        operators: 10,
        months: 2,
        end,
        seed: 31,
        format: Format::Csv,
    })
    .unwrap();
    end.to_string()
}

/// The payout_statements mart of `period`, read by pyarrow: sorted (operator,
/// currency, revision, status). `None` when pyarrow is not installed (and not
/// required).
fn mart_statuses(lake: &Path, period: &str) -> Option<Vec<(String, String, i64, String)>> {
    let file = lake.join(format!(
        "marts/payout_statements/period={period}/part-0.parquet"
    ));
    let script = r#"
import json, sys
import pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
print(json.dumps(sorted([r['operator_id'], r['currency'], r['revision'], r['status']] for r in rows)))
"#;
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .output();
    match o {
        Ok(o) if o.status.success() => {
            let v: Vec<(String, String, i64, String)> = serde_json::from_slice(&o.stdout).unwrap();
            Some(v)
        }
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

async fn db_statuses(pool: &sqlx::AnyPool, period: &str) -> Vec<(String, String, i64, String)> {
    sqlx::query_as(
        "SELECT operator_id, currency, revision, status FROM payout_statements WHERE period = $1 \
         ORDER BY operator_id, currency, revision",
    )
    .bind(period)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Issue 9 item 3 and issue 14 item 9, through the binary on SQLite.
#[tokio::test(flavor = "multi_thread")]
async fn statements_follow_their_mail_and_the_mart_follows_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    let period = generate_source(dir.path());
    let database = format!("sqlite://{}/opnet.db", dir.path().display());
    let files = format!("file:{}", dir.path().join("outbox").display());
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("smtp://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let lake = dir.path().join("lake");

    let o = opnet(dir.path(), &database, &files)
        .arg("close")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let pool = sqlx::AnyPool::connect(&database).await.unwrap();
    let drafts = db_statuses(&pool, &period).await;
    assert!(!drafts.is_empty());
    assert!(drafts.iter().all(|r| r.3 == "draft"));
    if let Some(mart) = mart_statuses(&lake, &period) {
        assert_eq!(mart, drafts);
    }

    let o = opnet(dir.path(), &database, &files)
        .args(["payouts", "approve", "--period", &period])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let approved = db_statuses(&pool, &period).await;
    assert!(approved.iter().all(|r| r.3 == "approved"));
    if let Some(mart) = mart_statuses(&lake, &period) {
        assert_eq!(mart, approved, "the mart says approved, as the database");
    }

    // The relay is down: the statements are not sent, they are failed with the
    // reason, and the command says so in its exit code.
    let o = opnet(dir.path(), &database, &down)
        .args(["payouts", "send", "--period", &period])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("email(s) of this command are failed"),
        "{}",
        text(&o)
    );
    let failed = db_statuses(&pool, &period).await;
    assert!(failed.iter().all(|r| r.3 == "failed"), "{failed:?}");
    let errors: Vec<Option<String>> =
        sqlx::query_scalar("SELECT mail_error FROM payout_statements WHERE period = $1")
            .bind(&period)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref().unwrap_or("").starts_with("smtp")),
        "{errors:?}"
    );
    if let Some(mart) = mart_statuses(&lake, &period) {
        assert_eq!(mart, failed);
    }
    let s = opnet(dir.path(), &database, &down)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&s.stdout).contains(&format!("{} failed", failed.len())),
        "{}",
        text(&s)
    );
    assert!(smtp.received().is_empty());

    // The relay is up: `deliver` sends them, and they are sent.
    let o = opnet(dir.path(), &database, &smtp.url())
        .arg("deliver")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let sent = db_statuses(&pool, &period).await;
    assert!(sent.iter().all(|r| r.3 == "sent"), "{sent:?}");
    let unsent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payout_statements WHERE period = $1 AND (sent_at IS NULL OR mail_error IS NOT NULL)",
    )
    .bind(&period)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unsent, 0);
    if let Some(mart) = mart_statuses(&lake, &period) {
        assert_eq!(mart, sent, "the mart says sent, as the database");
    }
    let ids = received_ids(&smtp);
    assert_eq!(ids.len(), sent.len());
    assert!(ids.values().all(|n| *n == 1));
    // Nothing more to send.
    let o = opnet(dir.path(), &database, &smtp.url())
        .args(["payouts", "send", "--period", &period])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("0 statement email(s) queued"));
    assert_eq!(smtp.received().len(), sent.len());
    pool.close().await;
}

/// Rewrites `crm/operators.csv`, setting the email of `id` to `email` (quoted).
fn set_email(source: &Path, id: &str, email: &str) {
    let path = source.join("crm/operators.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with(&format!("{id},")) {
            let mut fields: Vec<String> = line.split(',').map(str::to_string).collect();
            fields[2] = format!("\"{}\"", email.replace('"', "\"\""));
            out.push_str(&fields.join(","));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

/// Issue 9 item 5 (send half): one bad address fails only its own mail.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_operator_address_fails_only_its_own_statement() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    let period = generate_source(dir.path());
    let database = format!("sqlite://{}/opnet.db", dir.path().display());
    let files = format!("file:{}", dir.path().join("outbox").display());

    // A first close shows which operators have a statement this month.
    let o = opnet(dir.path(), &database, &files)
        .arg("close")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let pool = sqlx::AnyPool::connect(&database).await.unwrap();
    let ops: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT operator_id FROM payout_statements WHERE period = $1 ORDER BY operator_id",
    )
    .bind(&period)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(ops.len() >= 3, "{ops:?}");
    let (list, crlf) = (ops[0].clone(), ops[1].clone());
    set_email(
        &dir.path().join("source"),
        &list,
        "a@x.example, b@y.example",
    );
    set_email(
        &dir.path().join("source"),
        &crlf,
        "c@x.example\r\nBcc: evil@y.example",
    );

    // The re-run reads the new CRM: every job of every period succeeds (one bad
    // address used to fail the alerts job, and network health never ran).
    let o = opnet(dir.path(), &database, &smtp.url())
        .arg("close")
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0) | Some(3)), "{}", text(&o));
    let not_ok: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_runs WHERE status NOT IN ('succeeded', 'refused')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(not_ok, 0, "{}", text(&o));
    let health: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM network_health WHERE period = $1")
        .bind(&period)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(health > 0);

    let o = opnet(dir.path(), &database, &smtp.url())
        .args(["payouts", "approve", "--period", &period])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let before = smtp.received().len();
    let o = opnet(dir.path(), &database, &smtp.url())
        .args(["payouts", "send", "--period", &period])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "two statements failed: {}",
        text(&o)
    );

    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT operator_id, status, mail_error FROM payout_statements WHERE period = $1 ORDER BY operator_id",
    )
    .bind(&period)
    .fetch_all(&pool)
    .await
    .unwrap();
    for (op, status, error) in &rows {
        if *op == list || *op == crlf {
            assert_eq!(status, "failed", "{op}");
            let e = error.as_deref().unwrap_or("");
            assert!(
                e.contains(op.as_str()) || e.contains("address"),
                "{op}: the reason names the operator or the address: {e:?}"
            );
        } else {
            assert_eq!(status, "sent", "{op}: {error:?}");
        }
    }
    let sent_statements = rows.iter().filter(|r| r.1 == "sent").count();
    let new: Vec<Vec<u8>> = smtp.received().split_off(before);
    assert_eq!(new.len(), sent_statements);
    for raw in smtp.received() {
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.contains("evil@y.example"),
            "an injected address got mail"
        );
    }
    pool.close().await;
}
