//! End-to-end `opnet simulate` (issue 13) on SQLite and PostgreSQL: a small generated
//! network is closed, then the binary simulates other plans over its recorded closes.
//!
//! 1. The same plan changes nothing: every difference is 0 and the simulated totals
//!    are the recorded statements'.
//! 2. Software shares +500 bp (every phase): the difference of each statement is
//!    computed here independently from the recorded `payout_lines` (R0.4 half-even in
//!    i128, R1.6 clawbacks, R1.7 carry-forward walked per operator and currency).
//! 3. Nothing is written: every table, the ledger, the outbox and the lake's files are
//!    as before.
//! 4. A bad plan file fails naming the file and key; a period without a recorded close
//!    is refused.

#![allow(clippy::unwrap_used)]

mod common;

use opnet::app::App;
use opnet::close::{self, CloseOptions, MailPolicy};
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::Period;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

const FIRST: &str = "2025-01";
const LAST: &str = "2025-06";

/// The Playbook restated: the recorded closes ran on the embedded Playbook.
const SAME_PLAN: &str = r#"
[[version]]
version = "same"
effective_from = "2000-01"
"#;

/// R1.3's software shares +500 bp in every phase, as a version dated after the
/// recorded closes (finance tries it before it takes effect): it applies to every
/// simulated period. Everything else is the Playbook's.
const PLUS_500: &str = r#"
[[version]]
version = "playbook"
effective_from = "2000-01"

[[version]]
version = "software+500"
effective_from = "2030-01"
[version.revenue_share.initial]
software = 7500
implementation = 9000
support = 10000
[version.revenue_share.growth]
software = 6500
implementation = 8500
support = 10000
[version.revenue_share.mature]
software = 5500
implementation = 8000
support = 10000
"#;

/// Every table, the ledger and the outbox, in a form two reads compare by; run ids
/// and timestamps included, so a rewritten row shows.
async fn database_state(pool: &sqlx::AnyPool) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for t in [
        "job_runs",
        "payout_statements",
        "payout_lines",
        "reconciliation_exceptions",
        "operator_tiers",
        "exclusivity_checks",
        "operator_metrics",
        "network_health",
        "email_outbox",
        "job_leases",
        "operator_scorecards",
        "equity_eligibility",
        "lead_assignments",
    ] {
        let n = common::count_rows(pool, t).await;
        out.insert(format!("{t} rows"), vec![n.to_string()]);
    }
    for (name, sql) in [
        (
            "job_runs",
            "SELECT run_id || '|' || status || '|' || COALESCE(finished_at, '') || '|' || COALESCE(published_at, '') FROM job_runs",
        ),
        (
            "payout_statements",
            "SELECT period || '|' || operator_id || '|' || currency || '|' || CAST(revision AS TEXT) || '|' || status || '|' || \
             CAST(payable_cents AS TEXT) || '|' || run_id FROM payout_statements",
        ),
        (
            "email_outbox",
            "SELECT dedup_key || '|' || status FROM email_outbox",
        ),
    ] {
        let mut rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await.unwrap();
        rows.sort();
        out.insert(name.to_string(), rows);
    }
    out
}

/// Every file under `dir` with its size.
fn files(dir: &Path) -> BTreeSet<(PathBuf, u64)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert((e.path(), m.len()));
            }
        }
    }
    out
}

/// The binary, on the test's source, lake, database and mail folder (no config file).
fn opnet(dir: &Path, database: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opnet"))
        .current_dir(dir)
        .args([
            "--source",
            &dir.join("source").display().to_string(),
            "--lake",
            &dir.join("lake").display().to_string(),
            "--database",
            database,
            "--mail",
            &format!("file:{}", dir.join("outbox").display()),
        ])
        .args(args)
        .env("OPNET_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("OPNET_CONFIG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One row of `simulation.csv`.
#[derive(Debug)]
struct CsvRow {
    period: String,
    operator_id: String,
    currency: String,
    recorded: i64,
    simulated: i64,
    difference: i64,
}

fn read_csv(path: &Path) -> Vec<CsvRow> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "period,operator_id,currency,recorded_tier,simulated_tier,recorded_payable_cents,simulated_payable_cents,difference_cents"
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 8, "{l}");
            CsvRow {
                period: f[0].into(),
                operator_id: f[1].into(),
                currency: f[2].into(),
                recorded: f[5].parse().unwrap(),
                simulated: f[6].parse().unwrap(),
                difference: f[7].parse().unwrap(),
            }
        })
        .collect()
}

/// R0.4, written again here: `round_half_even(amount × bp / 10000)`.
fn share(amount: i64, bp: i64) -> i64 {
    let n = amount as i128 * bp as i128;
    let (q, r) = (n / 10_000, n % 10_000);
    let twice = 2 * r.abs();
    let away = twice > 10_000 || (twice == 10_000 && q % 2 != 0);
    let q = if away { q + n.signum() } else { q };
    i64::try_from(q).unwrap()
}

type Key = (String, String, String);

/// The expected simulated payable of every statement under +500 bp on software,
/// from the recorded tables alone.
///
/// With `--from` the first period of the network every collection is simulated, so
/// each software line — collection, or clawback of a line collected in the range
/// (R1.6: at the share of its collection, now +500) — changes its operator part from
/// the recorded `operator_cents` to `share(amount, operator_bp + 500)`; no software
/// share reaches the 10000 cap (checked). Tiers, reconciliation and every other line
/// stay as recorded. The statement total then changes by the sum of its lines'
/// changes, and R1.7 is walked per operator and currency: a negative total is carried
/// (now the simulated one), never paid — so the payable difference is not simply the
/// sum, and it is asserted per statement.
async fn expected_plus_500(pool: &sqlx::AnyPool) -> (BTreeMap<Key, i64>, i64) {
    let mut delta: BTreeMap<Key, i64> = BTreeMap::new();
    let lines = sqlx::query(
        "SELECT period, operator_id, currency, amount_cents, CAST(operator_bp AS BIGINT), operator_cents FROM payout_lines \
         WHERE revenue_type = 'software'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut lines_delta = 0i64;
    for r in &lines {
        let bp: i64 = r.get(4);
        assert!(bp + 500 <= 10_000, "no share is capped in this network");
        let d = share(r.get(3), bp + 500) - r.get::<i64, _>(5);
        lines_delta += d;
        *delta.entry((r.get(0), r.get(1), r.get(2))).or_default() += d;
    }
    // Recorded statements: operator share + clawback, and what was carried in.
    let statements = sqlx::query(
        "SELECT period, operator_id, currency, operator_share_cents + clawback_cents FROM payout_statements s \
         WHERE s.revision = (SELECT MAX(t.revision) FROM payout_statements t WHERE t.period = s.period \
         AND t.operator_id = s.operator_id AND t.currency = s.currency)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut earned: BTreeMap<Key, i64> = BTreeMap::new();
    for r in &statements {
        earned.insert((r.get(0), r.get(1), r.get(2)), r.get(3));
    }
    let mut expected = BTreeMap::new();
    let mut carried: BTreeMap<(String, String), i64> = BTreeMap::new();
    for m in p(FIRST).through(p(LAST)) {
        let m = m.to_string();
        let mut keys: BTreeSet<(String, String)> = earned
            .keys()
            .filter(|k| k.0 == m)
            .map(|k| (k.1.clone(), k.2.clone()))
            .collect();
        keys.extend(
            carried
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, _)| k.clone()),
        );
        let mut next = BTreeMap::new();
        for (op, cur) in keys {
            let key = (m.clone(), op.clone(), cur.clone());
            let total = earned.get(&key).copied().unwrap_or(0)
                + delta.get(&key).copied().unwrap_or(0)
                + carried
                    .get(&(op.clone(), cur.clone()))
                    .copied()
                    .unwrap_or(0);
            expected.insert(key, total.max(0));
            next.insert((op, cur), total.min(0));
        }
        carried = next;
    }
    (expected, lines_delta)
}

async fn scenario(database: String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate::generate(&GenerateOptions {
        out: root.join("source"),
        operators: 20,
        months: 6,
        end: p(LAST),
        seed: 5,
        format: Format::Csv,
    })
    .unwrap();
    // R1.7 in play: OP-0008 (EUR) collected INV-000253 in 2025-04 (software 41,100
    // and implementation 305,000 cents); refunds of 20,000 and 40,000 of it in 2025-05
    // claw back more than its May collection earns, so May carries a negative balance
    // into June — under the simulated plan a different one (its software clawback is
    // at the new share too). Asserted below, so a change of the generator shows here.
    let refunds = root.join("source/billing/refunds.csv");
    let mut csv = std::fs::read_to_string(&refunds).unwrap();
    csv.push_str(
        "RF-900001,INV-000253,1,2025-05-20,20000\nRF-900002,INV-000253,2,2025-05-20,40000\n",
    );
    std::fs::write(&refunds, csv).unwrap();
    let mail = format!("file:{}", root.join("outbox").display());
    let app = App::open(common::config(root, database.clone(), mail))
        .await
        .unwrap();
    close::close(
        &app,
        &CloseOptions {
            from: Some(p(FIRST)),
            through: Some(p(LAST)),
            mail: MailPolicy::None,
            ..Default::default()
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let pool = &app.db.pool;
    let carried: Vec<(String, i64)> = sqlx::query(
        "SELECT period, carried_out_cents FROM payout_statements WHERE operator_id = 'OP-0008' AND currency = 'EUR' \
         AND carried_out_cents <> 0",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        carried.first().map(|c| c.0.as_str()),
        Some("2025-05"),
        "{carried:?}"
    );
    let before = database_state(pool).await;
    let lake_before = files(&root.join("lake"));
    let clawbacks: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payout_lines WHERE kind = 'clawback' AND revenue_type = 'software'",
    )
    .fetch_one(pool)
    .await
    .unwrap();

    // 1. The same plan: no difference anywhere; the totals are the recorded ones.
    std::fs::write(root.join("same.toml"), SAME_PLAN).unwrap();
    let out = opnet(root, &database, &["simulate", "--plan", "same.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no operator's payable differs"), "{stdout}");
    assert!(
        stdout.contains(&format!("recorded closes {FIRST} .. {LAST}")),
        "{stdout}"
    );
    // The default folder is named after the plan file.
    let rows = read_csv(&root.join("simulation-same/simulation.csv"));
    assert!(root.join("simulation-same/index.html").is_file());
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.difference == 0), "{rows:?}");
    let recorded: Vec<(String, String, i64)> = sqlx::query(
        "SELECT period, currency, CAST(SUM(payable_cents) AS BIGINT) FROM payout_statements GROUP BY period, currency ORDER BY period, currency",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let mut simulated: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r.recorded, r.simulated);
        *simulated
            .entry((r.period.clone(), r.currency.clone()))
            .or_default() += r.simulated;
    }
    let simulated: Vec<(String, String, i64)> =
        simulated.into_iter().map(|((a, b), c)| (a, b, c)).collect();
    assert_eq!(simulated, recorded);
    // Sorted by period, operator, currency.
    let keys: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.period.as_str(),
                r.operator_id.as_str(),
                r.currency.as_str(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // 2. Software +500 bp: each statement's payable as computed here.
    std::fs::write(root.join("plus500.toml"), PLUS_500).unwrap();
    let out_dir = root.join("sim-plus500");
    let out = opnet(
        root,
        &database,
        &[
            "simulate",
            "--plan",
            "plus500.toml",
            "--from",
            FIRST,
            "--through",
            LAST,
            "--out",
            &out_dir.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("version software+500 for {FIRST} .. {LAST}")),
        "{stdout}"
    );
    assert!(stdout.contains("largest differences"), "{stdout}");
    let (expected, lines_delta) = expected_plus_500(pool).await;
    assert!(lines_delta > 0, "the network has software collections");
    let rows = read_csv(&out_dir.join("simulation.csv"));
    let mut seen = BTreeSet::new();
    for r in &rows {
        let key = (r.period.clone(), r.operator_id.clone(), r.currency.clone());
        assert_eq!(
            r.simulated,
            expected.get(&key).copied().unwrap_or(0),
            "{r:?}"
        );
        assert_eq!(r.difference, r.simulated - r.recorded, "{r:?}");
        seen.insert(key);
    }
    for (key, payable) in &expected {
        assert!(seen.contains(key) || *payable == 0, "missing {key:?}");
    }
    let total_difference: i64 = rows.iter().map(|r| r.difference).sum();
    // OP-0008 EUR by hand (initial phase, bronze: software 7000 bp, now 7500):
    //   May  recorded 28,770 − 14,000 − 36,000 = −21,230 → payable 0, carried
    //        simulated 30,825 − 15,000 − 36,000 = −20,175 → payable 0, carried
    //   June recorded 28,770 − 21,230 = 7,540; simulated 30,825 − 20,175 = 10,650
    // so May's lines gain 1,055 cents but its payable does not move, and June's
    // payable gains 3,110 where its lines gain 2,055: the balance carried between
    // simulated periods is the simulated one (R1.7).
    let op8 = |m: &str| {
        rows.iter()
            .find(|r| r.period == m && r.operator_id == "OP-0008" && r.currency == "EUR")
            .map(|r| (r.recorded, r.simulated, r.difference))
    };
    assert_eq!(op8("2025-05"), Some((0, 0, 0)));
    assert_eq!(op8("2025-06"), Some((7_540, 10_650, 3_110)));
    eprintln!(
        "software +500 bp: lines +{lines_delta} cents, payable {total_difference:+} cents, {clawbacks} software clawback(s)"
    );
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("software+500"),
        "{html}"
    );

    // A later --from builds on the recorded closes before it: the same plan from
    // 2025-06 changes nothing; +500 bp from 2025-06 starts from May's *recorded*
    // balance of OP-0008 (−21,230): 30,825 − 21,230 = 9,595 against 7,540 recorded.
    let from_june = |plan: &str, dir: &str| {
        let out_dir = root.join(dir);
        let out = opnet(
            root,
            &database,
            &[
                "simulate",
                "--plan",
                plan,
                "--from",
                LAST,
                "--out",
                &out_dir.display().to_string(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        read_csv(&out_dir.join("simulation.csv"))
    };
    let rows = from_june("same.toml", "same-from-june");
    assert!(
        rows.iter().all(|r| r.period == LAST && r.difference == 0),
        "{rows:?}"
    );
    let rows = from_june("plus500.toml", "plus500-from-june");
    let op8 = rows
        .iter()
        .find(|r| r.operator_id == "OP-0008" && r.currency == "EUR")
        .map(|r| (r.recorded, r.simulated, r.difference));
    assert_eq!(op8, Some((7_540, 9_595, 2_055)));

    // 3. Nothing was written: tables, ledger, outbox, lake.
    assert_eq!(database_state(pool).await, before);
    assert_eq!(files(&root.join("lake")), lake_before);

    // 4. A bad plan file names itself and the key; an unclosed period is refused.
    std::fs::write(
        root.join("bad.toml"),
        "[[version]]\nversion = 'x'\neffective_from = '2025-01'\n[version.tiers.software_bonus_bp]\nbronze = 0\nsilver = 500\ngold = 1000\nplatinum = 15000\n",
    )
    .unwrap();
    let out = opnet(root, &database, &["simulate", "--plan", "bad.toml"]);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("bad.toml") && err.contains("version[0].tiers.software_bonus_bp.platinum"),
        "{err}"
    );
    let out = opnet(
        root,
        &database,
        &["simulate", "--plan", "same.toml", "--through", "2025-07"],
    );
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("2025-07 has no recorded payouts close"),
        "{err}"
    );
    assert_eq!(database_state(pool).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn simulate_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(format!("sqlite://{}/opnet.db", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn simulate_on_postgres() {
    let Some(db) = common::pg_database("simulate").await else {
        return;
    };
    scenario(db.url.clone()).await;
}
