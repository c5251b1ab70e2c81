//! End-to-end (issue 12 item 3, R8.3): lead distribution on PostgreSQL through the
//! real binary. A generated network is closed (so the latest closed period's tiers
//! exist), leads are planted unassigned — the newest month's leads with their
//! `assigned_operator_id` blanked, and a burst of leads no operator can take within
//! its monthly capacity — then `opnet leads assign --at T` runs twice. Checked: each
//! lead is assigned at most once and the second run assigns nothing; the mails read
//! back from a real SMTP server (aiosmtpd) — each operator's lists exactly its own
//! new leads, ops's lists exactly the `no_capacity` ones; the CRM's table in a second
//! PostgreSQL database is filled by the write-back (a `timestamptz` column); the
//! Parquet mart is read by an independent reader (pyarrow) and matches the database;
//! `leads show` and `status` show the run.

#![allow(clippy::unwrap_used)]

mod common;

use common::SmtpCapture;
use mail_parser::MessageParser;
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::Period;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

/// T of the runs: the month after the generated data.
const T: &str = "2025-06-02T12:00:00Z";
/// Planted leads nobody can absorb: more than every operator's capacity together.
const BURST: usize = 400;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Blank `assigned_operator_id` of every lead created in `month`, and append
/// [`BURST`] leads created on T's day in a metro without an exclusive territory and
/// a vertical no operator lists (rule 3 for all of them). Returns the blanked ids.
fn plant_leads(source: &Path, month: &str) -> BTreeSet<String> {
    let path = source.join("crm/leads.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let cols: Vec<&str> = header.split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    let (id, created, assigned, contact) = (
        at("lead_id"),
        at("created_at"),
        at("assigned_operator_id"),
        at("first_contact_at"),
    );
    let mut out = vec![header.clone()];
    let mut blanked = BTreeSet::new();
    for line in lines {
        let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
        if !line.contains('"') && f.len() == cols.len() && f[created].starts_with(month) {
            if !f[assigned].is_empty() {
                blanked.insert(f[id].clone());
            }
            f[assigned].clear();
            f[contact].clear();
        }
        out.push(f.join(","));
    }
    for i in 0..BURST {
        let mut f = vec![String::new(); cols.len()];
        f[id] = format!("LD-BURST-{i:04}");
        f[at("source")] = "event".into();
        f[at("vertical")] = "submarine_repair".into();
        f[at("metro")] = "Atlantis".into();
        f[created] = format!("2025-06-01T{:02}:{:02}:00Z", 8 + i / 60, i % 60);
        out.push(f.join(","));
    }
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
    blanked
}

struct Site<'a> {
    dir: &'a Path,
    database: &'a str,
    smtp: &'a SmtpCapture,
    /// The CRM's database, named in the config as `env:CRM_TEST_URL`.
    crm: &'a str,
}

impl Site<'_> {
    fn opnet(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_opnet"))
            .current_dir(self.dir)
            .env_remove("DATABASE_URL")
            .env_remove("OPNET_CONFIG")
            .env("OPNET_LOG", "warn")
            .arg("--config")
            .arg(self.dir.join("opnet.toml"))
            .arg("--database")
            .arg(self.database)
            .arg("--source")
            .arg(self.dir.join("source"))
            .arg("--lake")
            .arg(self.dir.join("lake"))
            .arg("--mail")
            .arg(self.smtp.url())
            .env("CRM_TEST_URL", self.crm)
            .args(args)
            .output()
            .unwrap()
    }
}

/// Lead ids a mail's plain text lists (`N. Lead <id> — …` or `  <id>  …`).
fn listed(text: &str, operator_mail: bool) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            if operator_mail {
                let rest = l.split_once(". Lead ")?.1;
                Some(rest.split_whitespace().next()?.to_string())
            } else {
                let l = l.strip_prefix("  ")?;
                let id = l.split_whitespace().next()?;
                id.starts_with("LD-").then(|| id.to_string())
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn leads_assign_twice_mails_each_operator_its_own_and_writes_back_to_the_crm() {
    let Some(db) = common::pg_database("leads").await else {
        return;
    };
    let Some(crm) = common::pg_database("leads_crm").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = SmtpCapture::start(dir.path()) else {
        return;
    };
    generate::generate(&GenerateOptions {
        out: dir.path().join("source"),
        operators: 20,
        months: 6,
        end: Period::parse("2025-05").unwrap(),
        seed: 12,
        format: Format::Csv,
    })
    .unwrap();
    let blanked = plant_leads(&dir.path().join("source"), "2025-05");
    assert!(blanked.len() > 20, "planted {}", blanked.len());

    // The CRM's table, as its owners would create it.
    sqlx::any::install_default_drivers();
    let crm_pool = sqlx::AnyPool::connect(&crm.url).await.unwrap();
    sqlx::query(
        "CREATE TABLE crm_lead_assignments (lead_id text PRIMARY KEY, operator_id text NOT NULL, \
         rule text NOT NULL, assigned_at timestamptz NOT NULL)",
    )
    .execute(&crm_pool)
    .await
    .unwrap();
    std::fs::write(
        dir.path().join("opnet.toml"),
        "[email]\nops = [\"ops@candlefish.example\", \"oncall@candlefish.example\"]\n\
         [leads.writeback]\nurl = \"env:CRM_TEST_URL\"\ntable = \"crm_lead_assignments\"\n",
    )
    .unwrap();
    let site = Site {
        dir: dir.path(),
        database: &db.url,
        smtp: &smtp,
        crm: &crm.url,
    };

    // Close the data's months: their tiers are the latest closed period's (2025-05).
    let close = site.opnet(&["close", "--through", "2025-05", "--send-mail", "none"]);
    assert!(close.status.success(), "{}", text(&close));
    let mails_before = smtp.received().len();

    // First run.
    let first = site.opnet(&["leads", "assign", "--at", T]);
    assert!(first.status.success(), "{}", text(&first));
    let out = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        out.contains("tiers and scores of 2025-05, the latest closed period"),
        "{out}"
    );

    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let rows: Vec<(String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT lead_id, operator_id, rule, run_id FROM lead_assignments ORDER BY lead_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let run_id = rows[0].3.clone();
    let assigned: BTreeMap<String, String> = rows
        .iter()
        .filter_map(|(l, o, _, _)| Some((l.clone(), o.clone()?)))
        .collect();
    let no_capacity: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.2 == "no_capacity")
        .map(|r| r.0.clone())
        .collect();
    // Every blanked lead was tried; the burst overflowed every capacity.
    for l in &blanked {
        assert!(
            rows.iter().any(|r| &r.0 == l),
            "{l} was neither assigned nor recorded"
        );
    }
    assert!(
        !no_capacity.is_empty(),
        "the burst leaves leads without capacity"
    );
    assert!(assigned.len() > blanked.len() / 2, "{}", assigned.len());
    assert!(
        assigned.keys().any(|l| l.starts_with("LD-BURST-")),
        "capacity left is used before a lead is given up"
    );
    // R8.3 capacity: no operator holds more leads of June than its tier allows
    // (exclusive ones may exceed it; the burst is in no exclusive metro).
    let june: Vec<(String, i64)> = sqlx::query_as(
        "SELECT operator_id, COUNT(*) FROM lead_assignments WHERE lead_id LIKE 'LD-BURST-%' \
         AND operator_id IS NOT NULL GROUP BY operator_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (op, n) in &june {
        assert!(*n <= 40, "{op} got {n} June leads");
    }

    // The mails: one per operator with new leads, listing exactly its own.
    let operators: BTreeMap<String, String> = {
        let text = std::fs::read_to_string(dir.path().join("source/crm/operators.csv")).unwrap();
        text.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                Some((f.get(2)?.to_string(), f.first()?.to_string()))
            })
            .collect()
    };
    let received = smtp.received();
    let mut per_operator: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut ops_mails: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for raw in &received[mails_before..] {
        let m = MessageParser::default().parse(raw).unwrap();
        let to = m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap()
            .to_string();
        let subject = m.subject().unwrap_or_default().to_string();
        let body = m.body_text(0).unwrap().to_string();
        if to.ends_with("@candlefish.example") {
            assert!(
                subject.contains("without an operator with capacity"),
                "{subject}"
            );
            ops_mails.insert(to, listed(&body, false));
        } else {
            let op = operators.get(&to).unwrap_or_else(|| panic!("mail to {to}"));
            assert!(subject.contains(op.as_str()), "{subject}");
            assert!(body.contains("within 24 hours"), "{body}");
            let before = per_operator.insert(op.clone(), listed(&body, true));
            assert!(before.is_none(), "{op} got two mails in one run");
        }
    }
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (lead, op) in &assigned {
        expected.entry(op.clone()).or_default().insert(lead.clone());
    }
    assert_eq!(
        per_operator, expected,
        "each operator sees exactly its own leads"
    );
    assert_eq!(
        ops_mails.keys().collect::<Vec<_>>(),
        ["oncall@candlefish.example", "ops@candlefish.example"]
    );
    for (to, leads) in &ops_mails {
        assert_eq!(leads, &no_capacity, "{to}");
    }

    eprintln!(
        "run {run_id}: {} assigned to {} operator(s), {} no_capacity, {} planted from May",
        assigned.len(),
        per_operator.len(),
        no_capacity.len(),
        blanked.len()
    );

    // The write-back: every assigned lead, none of the no_capacity ones, T as time.
    let crm_rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT lead_id, operator_id, rule, to_char(assigned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') \
         FROM crm_lead_assignments ORDER BY lead_id",
    )
    .fetch_all(&crm_pool)
    .await
    .unwrap();
    assert_eq!(crm_rows.len(), assigned.len());
    for (lead, op, rule, at) in &crm_rows {
        assert_eq!(assigned.get(lead), Some(op), "{lead}");
        assert_ne!(rule, "no_capacity");
        assert_eq!(at, "2025-06-02T12:00:00");
    }

    // The mart, read by pyarrow, is the database's rows.
    let mart = dir.path().join(format!(
        "lake/marts/lead_assignments/date=2025-06-02/run={run_id}/part-0.parquet"
    ));
    let csv = dir.path().join(format!(
        "lake/exports/lead_assignments/date=2025-06-02/{run_id}.csv"
    ));
    assert!(csv.is_file(), "{}", csv.display());
    let check = r#"
import sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
assert t.column_names == ['lead_id', 'operator_id', 'rule', 'score', 'assigned_at', 'run_id'], t.column_names
assert str(t.schema.field('assigned_at').type).startswith('timestamp[ms'), t.schema
rows = t.to_pylist()
print(len(rows), sum(1 for r in rows if r['rule'] == 'no_capacity'))
"#;
    match Command::new("python3")
        .args(["-c", check])
        .arg(&mart)
        .output()
    {
        Ok(o) if o.status.success() => {
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                format!("{} {}", rows.len(), no_capacity.len())
            );
        }
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            common::unavailable("pyarrow");
        }
        Ok(o) => panic!("pyarrow could not read the mart: {}", text(&o)),
        Err(e) => {
            common::unavailable(&format!("python3 ({e})"));
        }
    }

    // The second run at the same T: nothing new, nothing rewritten, no operator
    // mailed twice; the leads still without capacity are listed to ops again (R8.3:
    // "ops gets one email per run listing them").
    let received_before = smtp.received().len();
    let second = site.opnet(&["leads", "assign", "--at", T]);
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        out.lines()
            .any(|l| l.contains("leads assigned") && l.contains(" 0 ")),
        "{out}"
    );
    let again: Vec<(String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT lead_id, operator_id, rule, run_id FROM lead_assignments ORDER BY lead_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(again, rows);
    let mut second_ops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for raw in &smtp.received()[received_before..] {
        let m = MessageParser::default().parse(raw).unwrap();
        let to = m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap()
            .to_string();
        assert!(
            to.ends_with("@candlefish.example"),
            "an operator mailed twice: {to}"
        );
        let body = m.body_text(0).unwrap().to_string();
        assert!(second_ops.insert(to, listed(&body, false)).is_none());
    }
    assert_eq!(
        second_ops.keys().collect::<Vec<_>>(),
        ["oncall@candlefish.example", "ops@candlefish.example"]
    );
    for (to, leads) in &second_ops {
        assert_eq!(leads, &no_capacity, "{to}: the same leads, still waiting");
    }
    let crm_n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM crm_lead_assignments")
        .fetch_one(&crm_pool)
        .await
        .unwrap();
    assert_eq!(crm_n as usize, assigned.len());
    let runs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT period, rows_out FROM job_runs WHERE job = 'leads' AND status = 'succeeded' ORDER BY started_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        runs,
        [
            ("2025-06".to_string(), rows.len() as i64),
            ("2025-06".to_string(), 0)
        ]
    );

    // For people: the table and the status line.
    let show = site.opnet(&["leads", "show", "--since", "2025-06-01"]);
    assert!(show.status.success(), "{}", text(&show));
    let out = String::from_utf8_lossy(&show.stdout);
    let some = assigned.keys().next().unwrap();
    assert!(out.contains(some.as_str()), "{out}");
    assert!(
        out.contains(&format!("{} row(s) since 2025-06-01", rows.len())),
        "{out}"
    );
    let status = site.opnet(&["status"]);
    assert!(status.status.success(), "{}", text(&status));
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains(&format!("leads: {} waiting", no_capacity.len())),
        "{out}"
    );
    assert!(
        out.contains("0 assignment(s) not yet written back to the CRM"),
        "{out}"
    );
    crm_pool.close().await;
    pool.close().await;
}

/// The commands' help, and bad times refused before anything runs: a malformed
/// `--at`/`--since` is a usage error (exit 2) naming the expected form; a T in the
/// future fails (exit 1) without a ledger row.
#[test]
fn leads_commands_have_help_and_refuse_bad_times() {
    let dir = tempfile::tempdir().unwrap();
    let opnet = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_opnet"))
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("OPNET_CONFIG")
            .args(args)
            .output()
            .unwrap()
    };
    for cmd in [
        vec!["leads", "--help"],
        vec!["leads", "assign", "--help"],
        vec!["leads", "show", "--help"],
    ] {
        let o = opnet(&cmd);
        assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    }
    assert!(text(&opnet(&["leads", "assign", "--help"])).contains("RFC3339"));
    for (cmd, flag) in [
        (["leads", "assign", "--at", "2025-06-15"], "--at"),
        (["leads", "show", "--since", "last week"], "--since"),
    ] {
        let o = opnet(&cmd);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains(flag) && text(&o).contains("RFC 3339"),
            "{}",
            text(&o)
        );
    }
    let o = opnet(&["leads", "assign", "--at", "2999-01-01T00:00:00Z"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is in the future"), "{}", text(&o));
    let runs = opnet(&["runs"]);
    assert!(runs.status.success(), "{}", text(&runs));
    assert!(!text(&runs).contains("leads-"), "{}", text(&runs));
}
