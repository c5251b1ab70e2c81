//! The lead task on SQLite with planted CRM files: a re-run assigns nothing, a
//! `no_capacity` row is replaced when the lead is later assigned and an assigned row
//! never is, each operator's mail lists only its own leads, ops hears of the leads
//! nobody could take, the latest closed period's tiers and scores come from the
//! database, a run commits whole or not at all, and the publication and write-back
//! hold what was committed. (PostgreSQL, SMTP and the CRM write-back on PostgreSQL:
//! tests/e2e_leads.rs.)

use super::*;
use crate::config::Config;
use std::path::{Path, PathBuf};

/// A source folder of planted CRM rows (billing and survey empty), a SQLite
/// database and a `.eml` outbox under one temporary folder.
struct Site {
    dir: tempfile::TempDir,
    app: App,
}

/// (id, name, email, verticals, joined_on, terminated_on)
type Op<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);
/// (id, vertical, metro, created_at, assigned_operator_id)
type Lead<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join("source").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn write_crm(dir: &Path, ops: &[Op<'_>], leads: &[Lead<'_>], territories: &str) {
    let mut o = String::from("operator_id,name,email,metro,verticals,joined_on,terminated_on\n");
    for (id, name, email, verticals, joined, terminated) in ops {
        o.push_str(&format!(
            "{id},{name},{email},Austin,{verticals},{joined},{terminated}\n"
        ));
    }
    write(dir, "crm/operators.csv", &o);
    let mut l = String::from(
        "lead_id,source,vertical,metro,created_at,assigned_operator_id,first_contact_at,converted_customer_id\n",
    );
    for (id, vertical, metro, created, assigned) in leads {
        l.push_str(&format!(
            "{id},web,{vertical},{metro},{created},{assigned},,\n"
        ));
    }
    write(dir, "crm/leads.csv", &l);
    write(
        dir,
        "crm/territories.csv",
        &format!(
            "territory_id,metro,currency,exclusive_operator_id,exclusive_since\n{territories}"
        ),
    );
}

fn config(dir: &Path) -> Config {
    Config {
        source: dir.join("source").display().to_string(),
        lake: dir.join("lake").display().to_string(),
        database: format!("sqlite://{}/o.db", dir.display()),
        mail: format!("file:{}", dir.join("outbox").display()),
        email: Default::default(),
        schedule: Default::default(),
        plan: Default::default(),
        plan_origin: "test".into(),
        file: None,
        sources: Default::default(),
        smtp: Default::default(),
        s3: Default::default(),
        ingest: Default::default(),
        close: Default::default(),
        leads: Default::default(),
    }
}

impl Site {
    async fn new(ops: &[Op<'_>], leads: &[Lead<'_>]) -> Site {
        Self::with(ops, leads, "", |_| {}).await
    }

    async fn with(
        ops: &[Op<'_>],
        leads: &[Lead<'_>],
        territories: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        write_crm(p, ops, leads, territories);
        write(
            p,
            "crm/customers.csv",
            "customer_id,operator_id,name,vertical,metro,contract_signed_on,go_live_on,churned_on\n",
        );
        write(
            p,
            "crm/training.csv",
            "operator_id,module_id,required,completed_on\n",
        );
        write(
            p,
            "billing/invoices.csv",
            "invoice_id,customer_id,currency,issued_on,status,paid_on,total_cents\n",
        );
        write(
            p,
            "billing/invoice_lines.csv",
            "invoice_id,line_no,revenue_type,amount_cents,service_start,service_end\n",
        );
        write(
            p,
            "billing/refunds.csv",
            "refund_id,invoice_id,line_no,refunded_on,amount_cents\n",
        );
        write(
            p,
            "survey/survey_responses.csv",
            "response_id,customer_id,operator_id,submitted_on,nps_score,csat_score\n",
        );
        let mut cfg = config(p);
        tweak(&mut cfg);
        let app = App::open(cfg).await.unwrap();
        Site { dir, app }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    async fn run(&self, at: &str) -> LeadReport {
        let r = assign(&self.app, t(at)).await.unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        r
    }

    /// lead → (operator, rule, run_id) of `lead_assignments`.
    async fn rows(&self) -> BTreeMap<String, (Option<String>, String, String)> {
        let mut conn = self.app.db.pool.acquire().await.unwrap();
        store::rows(&mut conn, "1 = 1", &[])
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.lead_id, (r.operator_id, r.rule, r.run_id)))
            .collect()
    }

    /// (kind, recipient, plain text) of every outbox row, by recipient.
    async fn mails(&self) -> Vec<(String, String, String)> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT kind, recipient, body FROM email_outbox ORDER BY recipient, kind, queued_at",
        )
        .fetch_all(&self.app.db.pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(k, r, body)| {
                let m = mail_parser::MessageParser::default()
                    .parse(body.as_bytes())
                    .unwrap();
                (k, r, m.body_text(0).unwrap().to_string())
            })
            .collect()
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const A: Op<'static> = (
    "OP-A",
    "Alpha",
    "a@alpha.example",
    "dental",
    "2024-01-01",
    "",
);
const B: Op<'static> = ("OP-B", "Beta", "b@beta.example", "legal", "2024-01-01", "");

/// R8.3: every lead once; the same T again finds nothing new, writes nothing, mails
/// nobody; the ledger holds two succeeded `leads` runs for T's month.
#[tokio::test(flavor = "multi_thread")]
async fn r8_3_a_rerun_at_the_same_t_assigns_nothing_new() {
    let site = Site::new(
        &[A, B],
        &[
            ("L1", "dental", "Austin", "2025-06-10T09:00:00Z", ""),
            ("L2", "legal", "Austin", "2025-06-10T10:00:00Z", ""),
            ("L3", "legal", "Austin", "2025-06-11T10:00:00Z", "OP-A"),
            // Created after T: not yet.
            ("L4", "legal", "Austin", "2025-06-20T10:00:00Z", ""),
        ],
    )
    .await;
    let first = site.run("2025-06-15T12:00:00Z").await;
    assert_eq!(first.assigned(), 2);
    assert_eq!(first.by_rule.get("specialist"), Some(&2));
    assert_eq!(
        first.closed_period, None,
        "nothing closed: tier none, no scores"
    );
    let rows = site.rows().await;
    assert_eq!(rows["L1"].0.as_deref(), Some("OP-A"));
    assert_eq!(rows["L2"].0.as_deref(), Some("OP-B"));
    assert!(!rows.contains_key("L3"), "assigned upstream: not opnet's");
    assert!(!rows.contains_key("L4"), "created after T");
    let mails = site.mails().await.len();
    assert_eq!(mails, 2);

    let again = site.run("2025-06-15T12:00:00Z").await;
    assert_eq!(again.assigned(), 0);
    assert_eq!(again.no_capacity, 0);
    assert_eq!(again.mail.queued, 0);
    assert!(again.published.is_empty(), "nothing new, no file");
    assert_eq!(site.rows().await, rows, "nothing rewritten");
    assert_eq!(site.mails().await.len(), mails, "nobody mailed twice");
    let runs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT period, status, rows_out FROM job_runs WHERE job = 'leads' ORDER BY started_at",
    )
    .fetch_all(&site.app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        runs,
        [
            ("2025-06".to_string(), "succeeded".to_string(), 2),
            ("2025-06".to_string(), "succeeded".to_string(), 0)
        ]
    );
}

/// R8.3: each operator gets one mail per run listing its own new leads only, with
/// the response-time target (R4.5) and a deadline per lead; ops gets nothing when
/// every lead found an operator.
#[tokio::test(flavor = "multi_thread")]
async fn r8_3_each_operator_is_mailed_only_its_own_leads() {
    let site = Site::new(
        &[A, B],
        &[
            ("L1", "dental", "Austin", "2025-06-10T09:00:00Z", ""),
            ("L2", "legal", "Austin", "2025-06-10T10:00:00Z", ""),
            ("L3", "dental", "Austin", "2025-06-15T11:00:00Z", ""),
        ],
    )
    .await;
    let r = site.run("2025-06-15T12:00:00Z").await;
    assert_eq!(r.operators_mailed, 2);
    let mails = site.mails().await;
    assert_eq!(mails.len(), 2, "{mails:?}");
    let (kind, to, text) = &mails[0];
    assert_eq!(
        (kind.as_str(), to.as_str()),
        (emails::OPERATOR_KIND, "a@alpha.example")
    );
    for needle in [
        "Hello Alpha",
        "2 new leads",
        "within 24 hours",
        "Lead L1 — dental, Austin",
        "Lead L3 — dental, Austin",
        "Came in       2025-06-10 09:00 UTC",
        "Contact by    2025-06-11 09:00 UTC (already passed)",
        "Contact by    2025-06-16 11:00 UTC",
        "you specialise in dental",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    assert!(!text.contains("2025-06-16 11:00 UTC (already"), "{text}");
    assert!(!text.contains("L2"), "B's lead in A's mail:\n{text}");
    let (_, to, text) = &mails[1];
    assert_eq!(to, "b@beta.example");
    assert!(
        text.contains("Lead L2") && !text.contains("L1") && !text.contains("L3"),
        "{text}"
    );
}

/// `leads.ops_mail = "when_new"`: a run that only finds the same leads still without
/// capacity mails nobody; a run that leaves a new one mails ops, listing both.
#[tokio::test(flavor = "multi_thread")]
async fn r8_3_ops_mail_when_new_skips_runs_without_news() {
    let mut leads = vec![
        ("L1", "dental", "Austin", "2025-06-01T09:00:00Z", ""),
        ("L2", "dental", "Austin", "2025-06-02T09:00:00Z", ""),
        ("L3", "dental", "Austin", "2025-06-03T09:00:00Z", ""),
        ("L4", "dental", "Austin", "2025-06-04T09:00:00Z", ""),
    ];
    let site = Site::with(&[A], &leads, "", |c| {
        c.leads.ops_mail = config::OpsMail::WhenNew;
    })
    .await;
    site.run("2025-06-15T12:00:00Z").await;
    let first = site.mails().await;
    site.run("2025-06-16T12:00:00Z").await;
    assert_eq!(site.mails().await, first, "nothing new: no mail");
    leads.push(("L5", "legal", "Austin", "2025-06-16T09:00:00Z", ""));
    write_crm(&site.path(), &[A], &leads, "");
    site.run("2025-06-17T12:00:00Z").await;
    let third = site.mails().await;
    let new: Vec<_> = third.iter().filter(|m| !first.contains(m)).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].2.contains("L5  ") && new[0].2.contains("L4  "),
        "{}",
        new[0].2
    );
}

/// R8.3 capacity and `no_capacity`: tier none takes 3 leads a month; the fourth
/// stays unassigned and ops is told, naming it. A later run still without capacity
/// writes nothing and mails ops again (one mail per run listing them, the default)
/// or, with `ops_mail = "when_new"`, nobody; when an operator with capacity joins,
/// the lead is assigned and its row replaced — the assigned rows never change.
#[tokio::test(flavor = "multi_thread")]
async fn r8_3_no_capacity_is_reported_then_replaced_and_assigned_rows_never_change() {
    let leads = [
        ("L1", "dental", "Austin", "2025-06-01T09:00:00Z", ""),
        ("L2", "dental", "Austin", "2025-06-02T09:00:00Z", ""),
        ("L3", "dental", "Austin", "2025-06-03T09:00:00Z", ""),
        ("L4", "dental", "Austin", "2025-06-04T09:00:00Z", ""),
    ];
    let site = Site::new(&[A], &leads).await;
    let first = site.run("2025-06-15T12:00:00Z").await;
    assert_eq!(
        (first.assigned(), first.no_capacity, first.waiting),
        (3, 1, 1)
    );
    let rows = site.rows().await;
    assert_eq!(rows["L4"].0, None);
    assert_eq!(rows["L4"].1, "no_capacity");
    let mails = site.mails().await;
    let ops: Vec<_> = mails.iter().filter(|m| m.0 == emails::OPS_KIND).collect();
    assert_eq!(ops.len(), 1, "{mails:?}");
    assert_eq!(ops[0].1, "ops@candlefish.example");
    assert!(
        ops[0].2.contains("L4  2025-06-04 09:00 UTC"),
        "{}",
        ops[0].2
    );
    assert!(!ops[0].2.contains("L1"), "{}", ops[0].2);

    // Still no capacity: the lead keeps the row of the run that first tried it.
    let second = site.run("2025-06-16T12:00:00Z").await;
    assert_eq!(
        (second.assigned(), second.no_capacity, second.waiting),
        (0, 0, 1)
    );
    assert_eq!(site.rows().await, rows);
    let after_second = site.mails().await;
    let new: Vec<_> = after_second.iter().filter(|m| !mails.contains(m)).collect();
    assert_eq!(new.len(), 1, "one ops mail for the run: {new:?}");
    assert_eq!(new[0].0, emails::OPS_KIND);
    assert!(
        new[0].2.contains("L4  2025-06-04 09:00 UTC"),
        "{}",
        new[0].2
    );
    assert!(new[0].2.contains("still unassigned"), "{}", new[0].2);

    // OP-B joins and specialises in dental: L4 goes to it, L1..L3 stay with OP-A.
    // Four legal leads come in too: three fill OP-B, the last finds nobody.
    let b = ("OP-B", "Beta", "b@beta.example", "dental", "2025-06-16", "");
    let mut more = leads.to_vec();
    more.push(("L5", "legal", "Austin", "2025-06-16T09:00:00Z", ""));
    more.push(("L6", "legal", "Austin", "2025-06-16T10:00:00Z", ""));
    more.push(("L7", "legal", "Austin", "2025-06-16T11:00:00Z", ""));
    more.push(("L8", "legal", "Austin", "2025-06-16T12:00:00Z", ""));
    write_crm(&site.path(), &[A, b], &more, "");
    let third = site.run("2025-06-17T12:00:00Z").await;
    // L4 to B (specialist) and L5, L6 to B (score): B's 3 of June; L7, L8 nobody.
    assert_eq!(
        (third.assigned(), third.no_capacity, third.waiting),
        (3, 2, 2)
    );
    let after = site.rows().await;
    assert_eq!(after["L4"].0.as_deref(), Some("OP-B"));
    assert_eq!(
        after["L4"].2, third.run_id,
        "the no_capacity row was replaced"
    );
    for l in ["L1", "L2", "L3"] {
        assert_eq!(after[l], rows[l], "{l} is never reassigned");
    }
    assert_eq!(after["L8"].1, "no_capacity");

    // The CRM assigns L8 by hand: it is no longer opnet's, and stops waiting; L7
    // still waits.
    more[7].4 = "OP-A";
    write_crm(&site.path(), &[A, b], &more, "");
    let fourth = site.run("2025-06-18T12:00:00Z").await;
    assert_eq!(
        (fourth.assigned(), fourth.released, fourth.waiting),
        (0, 1, 1)
    );
    let last = site.rows().await;
    assert!(!last.contains_key("L8"));
    assert_eq!(last["L7"], after["L7"]);
    assert_eq!(last.len(), after.len() - 1, "only the waiting row went");
}

/// R8.3 rule 1 in a run: a lead in an exclusive operator's metro goes to it, beyond
/// its capacity, and its mail says why.
#[tokio::test(flavor = "multi_thread")]
async fn r8_3_exclusive_territory_lead_goes_to_its_holder() {
    let leads: Vec<(String, &str, &str, String, &str)> = (1..=5)
        .map(|i| {
            (
                format!("L{i}"),
                "legal",
                "Denver",
                format!("2025-06-0{i}T09:00:00Z"),
                "",
            )
        })
        .collect();
    let leads: Vec<Lead<'_>> = leads
        .iter()
        .map(|(a, b, c, d, e)| (a.as_str(), *b, *c, d.as_str(), *e))
        .collect();
    let site = Site::with(
        &[A, B],
        &leads,
        "T-DEN,Denver,USD,OP-A,2025-01-01\n",
        |_| {},
    )
    .await;
    let r = site.run("2025-06-15T12:00:00Z").await;
    assert_eq!(r.by_rule.get("exclusive"), Some(&5), "{:?}", r.by_rule);
    assert!(
        site.rows()
            .await
            .values()
            .all(|v| v.0.as_deref() == Some("OP-A"))
    );
    let mails = site.mails().await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].2.contains("your exclusive territory in Denver"),
        "{}",
        mails[0].2
    );
}

/// R8.3 "latest closed period": tiers from the latest period with a succeeded payouts
/// run before T's month — a run of T's month itself does not count — and the R8.1
/// totals of that period when `operator_scorecards` exists (the scorecard job's
/// table; absent here until the test creates it: then every score is null).
#[tokio::test(flavor = "multi_thread")]
async fn r8_3_standing_comes_from_the_latest_closed_period() {
    let site = Site::new(&[A, B], &[]).await;
    let mut conn = site.app.db.pool.acquire().await.unwrap();
    for (run, period, status) in [
        ("p1", "2025-04", "succeeded"),
        ("p2", "2025-05", "succeeded"),
        ("p3", "2025-05", "failed"),
        ("p4", "2025-06", "succeeded"),
    ] {
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, period, started_at, status) VALUES ($1, 'payouts', $2, '2025-06-01T00:00:00.000Z', $3)",
        )
        .bind(run)
        .bind(period)
        .bind(status)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    for (period, op, tier) in [
        ("2025-04", "OP-A", "platinum"),
        ("2025-05", "OP-A", "gold"),
        ("2025-06", "OP-A", "silver"),
    ] {
        sqlx::query(
            "INSERT INTO operator_tiers (period, operator_id, active_customers, tier, previous_tier, change, run_id) \
             VALUES ($1, $2, 20, $3, 'none', 'none', 'r')",
        )
        .bind(period)
        .bind(op)
        .bind(tier)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let closed = store::latest_closed_period(&mut conn, "2025-06")
        .await
        .unwrap();
    assert_eq!(closed.as_deref(), Some("2025-05"));
    let s = store::standing(&mut conn, "2025-05").await.unwrap();
    assert_eq!(s.height(), 1);
    assert_eq!(
        s.column("tier").unwrap().str().unwrap().get(0),
        Some("gold")
    );
    assert_eq!(s.column("total_score").unwrap().f64().unwrap().get(0), None);

    // The scorecard job's rows (migration 0005's table).
    for (period, op, component, score) in [
        ("2025-05", "OP-A", "total", 61.5),
        ("2025-05", "OP-A", "revenue_generation", 99.0),
        ("2025-05", "OP-B", "total", 70.25),
        ("2025-04", "OP-B", "total", 10.0),
    ] {
        sqlx::query(
            "INSERT INTO operator_scorecards (period, operator_id, component, score, weight, run_id) VALUES ($1, $2, $3, $4, 1, 'r')",
        )
        .bind(period)
        .bind(op)
        .bind(component)
        .bind(score)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let s = store::standing(&mut conn, "2025-05").await.unwrap();
    let got: Vec<(Option<&str>, Option<&str>, Option<f64>)> = (0..s.height())
        .map(|i| {
            (
                s.column("operator_id").unwrap().str().unwrap().get(i),
                s.column("tier").unwrap().str().unwrap().get(i),
                s.column("total_score").unwrap().f64().unwrap().get(i),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("OP-A"), Some("gold"), Some(61.5)),
            (Some("OP-B"), Some("none"), Some(70.25)),
        ]
    );
}

/// R8.3 specialists by the R8.1 total of the latest closed period, through a whole
/// run: OP-B's higher total wins the dental lead both are specialists for; without
/// scores the tie goes to the lower operator_id.
#[tokio::test(flavor = "multi_thread")]
async fn r8_3_a_run_ranks_specialists_by_the_closed_periods_total() {
    let b = ("OP-B", "Beta", "b@beta.example", "dental", "2024-01-01", "");
    let lead = [("L1", "dental", "Austin", "2025-06-10T09:00:00Z", "")];
    let site = Site::new(&[A, b], &lead).await;
    let r = site.run("2025-06-15T12:00:00Z").await;
    assert_eq!(
        site.rows().await["L1"].0.as_deref(),
        Some("OP-A"),
        "tie: operator_id"
    );
    assert_eq!(r.by_rule.get("specialist"), Some(&1));

    let site = Site::new(&[A, b], &lead).await;
    let mut conn = site.app.db.pool.acquire().await.unwrap();
    sqlx::query(
        "INSERT INTO job_runs (run_id, job, period, started_at, status) VALUES ('p', 'payouts', '2025-05', '2025-06-01T00:00:00.000Z', 'succeeded')",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO operator_scorecards VALUES ('2025-05', 'OP-A', 'total', NULL, 40.0, 1, 'r'), ('2025-05', 'OP-B', 'total', NULL, 80.0, 1, 'r')",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let r = site.run("2025-06-15T12:00:00Z").await;
    assert_eq!(r.closed_period.as_deref(), Some("2025-05"));
    assert_eq!(site.rows().await["L1"].0.as_deref(), Some("OP-B"));
    let mails = site.mails().await;
    assert!(
        mails[0].2.contains("scorecard 80.0 of 100"),
        "{}",
        mails[0].2
    );
}

/// An operator without a valid address in crm/operators (ingest keeps the row with a
/// warning) still gets its lead — the rule does not look at addresses — and ops is
/// told to pass it on; nobody else receives it.
#[tokio::test(flavor = "multi_thread")]
async fn r8_3_an_unmailable_operators_leads_go_to_ops() {
    let a = (
        "OP-A",
        "Alpha",
        "alpha-at-nowhere",
        "dental",
        "2024-01-01",
        "",
    );
    let site = Site::new(
        &[a, B],
        &[("L1", "dental", "Austin", "2025-06-10T09:00:00Z", "")],
    )
    .await;
    let r = site.run("2025-06-15T12:00:00Z").await;
    assert_eq!(r.assigned(), 1);
    assert_eq!(r.operators_mailed, 0);
    let mails = site.mails().await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].0, emails::OPS_KIND);
    assert!(mails[0].2.contains("L1  -> OP-A"), "{}", mails[0].2);
}

/// A run commits whole or not at all: when its ledger row cannot be finished (here:
/// the row is gone, as when another scheduler marked it interrupted), no assignment
/// and no mail of it remains.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_commits_nothing() {
    let site = Site::new(
        &[A],
        &[("L1", "dental", "Austin", "2025-06-10T09:00:00Z", "")],
    )
    .await;
    let ingest = close::run_ingest(&site.app, Utc::now()).await.unwrap();
    let inputs = site.app.lake.read_snapshot(&ingest.snapshot).await.unwrap();
    let month = Period::parse("2025-06").unwrap();
    let run = Run {
        app: &site.app,
        inputs: &inputs,
        plan: site.app.config.plan.for_period(month).unwrap(),
        at: t("2025-06-15T12:00:00Z"),
        month,
        run_id: "leads-not-in-the-ledger",
    };
    let err = attempt_run(&run).await.expect_err("no running ledger row");
    assert!(
        matches!(err, LeadError::Db(DbError::RunNotRunning { .. })),
        "{err}"
    );
    assert!(site.rows().await.is_empty());
    assert!(site.mails().await.is_empty());
}

/// Two runs racing past the lease: the write of an assignment for a lead another run
/// assigned meanwhile lands nothing, and the run fails (transient: its next attempt
/// re-reads) instead of mailing a lead it does not own; a `no_capacity` row is
/// replaced by an assignment. On both backends (the upsert's row counts are theirs).
async fn an_assigned_row_is_never_overwritten(db: &crate::db::Db) {
    let mut tx = db.begin_write().await.unwrap();
    let a = |lead: &str, op: Option<&str>, rule: &str| Assignment {
        lead_id: lead.into(),
        operator_id: op.map(Into::into),
        rule: rule.into(),
        score: None,
    };
    store::write(
        &mut tx,
        "run-1",
        "2025-06-15T12:00:00.000Z",
        &[a("L1", Some("OP-A"), "specialist")],
        &[a("L2", None, "no_capacity")],
    )
    .await
    .unwrap();
    // L2 (no_capacity) may be assigned; L1 (assigned) may not, in the same statement.
    let err = store::write(
        &mut tx,
        "run-2",
        "2025-06-16T12:00:00.000Z",
        &[
            a("L2", Some("OP-B"), "score"),
            a("L1", Some("OP-B"), "score"),
        ],
        &[],
    )
    .await
    .expect_err("L1 is taken");
    assert!(
        matches!(
            err,
            LeadError::Raced {
                wrote: 2,
                landed: 1
            }
        ),
        "{err}"
    );
    assert!(err.is_transient());
    // A no_capacity row for an assigned lead is refused too.
    let err = store::write(&mut tx, "run-3", "x", &[], &[a("L1", None, "no_capacity")])
        .await
        .expect_err("L1 has a row");
    assert!(
        matches!(
            err,
            LeadError::Raced {
                wrote: 1,
                landed: 0
            }
        ),
        "{err}"
    );
    let rows = store::rows(&mut tx, "1 = 1", &[]).await.unwrap();
    let got: Vec<(&str, Option<&str>, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.lead_id.as_str(),
                r.operator_id.as_deref(),
                r.rule.as_str(),
                r.run_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("L1", Some("OP-A"), "specialist", "run-1"),
            ("L2", Some("OP-B"), "score", "run-2"),
        ],
        "L1 untouched, L2's no_capacity row replaced"
    );
    tx.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn r8_3_an_assigned_row_is_never_overwritten_sqlite() {
    let site = Site::new(&[A], &[]).await;
    an_assigned_row_is_never_overwritten(&site.app.db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn r8_3_an_assigned_row_is_never_overwritten_postgres() {
    let Some(pg) = crate::db::testing::pg_database("leads_store").await else {
        return;
    };
    let db = crate::db::Db::connect(&pg.url).await.unwrap();
    db.migrate().await.unwrap();
    an_assigned_row_is_never_overwritten(&db).await;
    db.pool.close().await;
}

/// The rule's output is checked before anything is written: a lead twice or an
/// operator on a `no_capacity` row fails the run.
#[test]
fn rule_output_that_breaks_an_invariant_is_refused() {
    let frame = |ids: Vec<&str>, ops: Vec<Option<&str>>, rules: Vec<&str>| {
        df!(
            "lead_id" => ids,
            "operator_id" => ops,
            "rule" => rules,
            "score" => [None::<f64>, None],
        )
        .unwrap()
    };
    let ok = frame(
        vec!["L1", "L2"],
        vec![Some("OP-A"), None],
        vec!["exclusive", "no_capacity"],
    );
    assert_eq!(assignments(&ok).unwrap().len(), 2);
    for bad in [
        frame(
            vec!["L1", "L1"],
            vec![Some("OP-A"), Some("OP-B")],
            vec!["score", "score"],
        ),
        frame(
            vec!["L1", "L2"],
            vec![Some("OP-A"), Some("OP-B")],
            vec!["score", "no_capacity"],
        ),
        frame(
            vec!["L1", "L2"],
            vec![Some("OP-A"), None],
            vec!["score", "score"],
        ),
        frame(
            vec!["L1", "L2"],
            vec![Some("OP-A"), Some("OP-B")],
            vec!["score", "random"],
        ),
    ] {
        let e = assignments(&bad).expect_err("refused");
        assert!(!e.is_transient(), "{e}");
    }
}

/// `--at` later than now is refused before anything runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_time_in_the_future_is_refused() {
    let site = Site::new(&[A], &[]).await;
    let e = assign(&site.app, Utc::now() + TimeDelta::hours(1))
        .await
        .expect_err("future");
    assert!(e.to_string().contains("is in the future"), "{e}");
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_runs")
        .fetch_one(&site.app.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
}

/// Publication: the run's committed rows as a Parquet mart (typed: `assigned_at` a
/// timestamp) and a CSV, under T's date and the run id; a run committed but not
/// published (a crash) is published by the next run, and recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_is_published_as_a_mart_and_a_csv_and_healed_after_a_crash() {
    let site = Site::new(
        &[A],
        &[
            ("L1", "dental", "Austin", "2025-06-10T09:00:00Z", ""),
            ("L2", "dental", "Austin", "2025-06-11T09:00:00Z", ""),
            ("L3", "dental", "Austin", "2025-06-12T09:00:00Z", ""),
            ("L4", "dental", "Austin", "2025-06-13T09:00:00Z", ""),
        ],
    )
    .await;
    let r = site.run("2025-06-15T12:00:00Z").await;
    let (mart, csv) = publish::keys(&r.run_id, r.at);
    assert_eq!(
        mart,
        format!(
            "marts/lead_assignments/date=2025-06-15/run={}/part-0.parquet",
            r.run_id
        )
    );
    let lake = site.path().join("lake");
    let df = ParquetReader::new(std::fs::File::open(lake.join(&mart)).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 4);
    for (c, t) in publish::OUTPUT.columns {
        assert_eq!(df.column(c).unwrap().dtype(), t, "{c}");
    }
    let text = std::fs::read_to_string(lake.join(&csv)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "lead_id,operator_id,rule,score,assigned_at,run_id"
    );
    assert_eq!(lines.len(), 5);
    assert!(
        lines[4].starts_with("L4,,no_capacity,,2025-06-15T12:00:00.000Z,"),
        "{text}"
    );

    // The marts of a crash: committed, not published.
    std::fs::remove_dir_all(lake.join("marts/lead_assignments")).unwrap();
    sqlx::query("UPDATE job_runs SET published_at = NULL WHERE run_id = $1")
        .bind(&r.run_id)
        .execute(&site.app.db.pool)
        .await
        .unwrap();
    assert_eq!(publish::publish_pending(&site.app).await.unwrap(), 1);
    assert!(lake.join(&mart).is_file());
    assert_eq!(publish::publish_pending(&site.app).await.unwrap(), 0);
    // The close's healing leaves lead runs alone (it would count them forever).
    assert_eq!(close::publish_pending(&site.app).await.unwrap(), 0);
}

/// The write-back into an SQLite CRM table: assigned leads only, each once; a failed
/// write-back (table missing) leaves them pending, the next one writes them.
#[tokio::test(flavor = "multi_thread")]
async fn writeback_upserts_assigned_leads_and_retries_after_a_failure() {
    let crm_dir = tempfile::tempdir().unwrap();
    let crm_url = format!("sqlite://{}/crm.db?mode=rwc", crm_dir.path().display());
    let url = crm_url.clone();
    let site = Site::with(
        &[A],
        &[
            ("L1", "dental", "Austin", "2025-06-10T09:00:00Z", ""),
            ("L2", "dental", "Austin", "2025-06-11T09:00:00Z", ""),
            ("L3", "dental", "Austin", "2025-06-12T09:00:00Z", ""),
            ("L4", "dental", "Austin", "2025-06-13T09:00:00Z", ""),
        ],
        "",
        move |c| {
            c.leads.writeback = Some(config::Writeback {
                url,
                table: "crm_lead_assignments".into(),
            })
        },
    )
    .await;
    // No table yet: the run commits, the write-back fails and says how to fix it.
    let r = assign(&site.app, t("2025-06-15T12:00:00Z")).await.unwrap();
    assert_eq!(r.assigned(), 3);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].contains("crm_lead_assignments does not exist"),
        "{:?}",
        r.problems
    );
    assert_eq!(status(&site.app).await.unwrap(), (1, Some(3)));

    sqlx::any::install_default_drivers();
    let crm = sqlx::AnyPool::connect(&crm_url).await.unwrap();
    sqlx::query(
        "CREATE TABLE crm_lead_assignments (lead_id TEXT PRIMARY KEY, operator_id TEXT NOT NULL, rule TEXT NOT NULL, assigned_at TEXT NOT NULL)",
    )
    .execute(&crm)
    .await
    .unwrap();
    let r = site.run("2025-06-16T12:00:00Z").await;
    assert_eq!(r.written_back, Some(3));
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT lead_id, operator_id, rule, assigned_at FROM crm_lead_assignments ORDER BY lead_id",
    )
    .fetch_all(&crm)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3, "the no_capacity lead is not written back");
    assert_eq!(
        rows[0],
        (
            "L1".to_string(),
            "OP-A".to_string(),
            "specialist".to_string(),
            "2025-06-15T12:00:00.000Z".to_string()
        )
    );
    assert_eq!(status(&site.app).await.unwrap(), (1, Some(0)));
    let r = site.run("2025-06-17T12:00:00Z").await;
    assert_eq!(r.written_back, Some(0), "each lead written back once");
}

#[test]
fn times_and_hours_in_words() {
    assert_eq!(
        parse_time("2025-06-15T12:00:00Z", false),
        Ok(t("2025-06-15T12:00:00Z"))
    );
    assert_eq!(
        parse_time("2025-06-15T14:00:00+02:00", false),
        Ok(t("2025-06-15T12:00:00Z"))
    );
    assert_eq!(
        parse_time("2025-06-15", true),
        Ok(t("2025-06-15T00:00:00Z"))
    );
    assert!(parse_time("2025-06-15", false).is_err());
    assert!(
        parse_time("yesterday", true)
            .unwrap_err()
            .contains("RFC 3339")
    );
    assert_eq!(hours_text(24.0), "24 hours");
    assert_eq!(hours_text(1.0), "1 hour");
    assert_eq!(hours_text(12.5), "12.5 hours");
    assert_eq!(when(t("2025-06-15T09:05:59Z")), "2025-06-15 09:05 UTC");
}

/// The published columns are the table's, bar opnet's own bookkeeping.
#[tokio::test(flavor = "multi_thread")]
async fn published_columns_match_the_migrated_table() {
    let site = Site::new(&[A], &[]).await;
    let cols: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('lead_assignments')")
            .fetch_all(&site.app.db.pool)
            .await
            .unwrap();
    let mut published: Vec<&str> = publish::OUTPUT.columns.iter().map(|(c, _)| *c).collect();
    published.push("written_back_at");
    assert_eq!(cols, published);
}
