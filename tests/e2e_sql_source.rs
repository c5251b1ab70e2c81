//! End-to-end: `crm/operators` read from a SQL query (real PostgreSQL with proper SQL
//! types, and SQLite) instead of a file; the other datasets stay files. The snapshot
//! holds the table's rows, the bad row is quarantined naming the SQL source, and a
//! second ingest reuses the snapshot. Also `crm/leads` from PostgreSQL with and
//! without its optional column `referred_by_operator_id` (R8.1).

#![allow(clippy::unwrap_used)]

mod common;

use opnet::app::App;
use opnet::close;
use opnet::config::SqlSource;
use opnet::generate::{self, Format, GenerateOptions};
use opnet_pipelines::Period;
use polars::prelude::*;

fn generated(dir: &std::path::Path) {
    generate::generate(&GenerateOptions {
        out: dir.join("source"),
        operators: 6,
        months: 2,
        end: Period::parse("2025-06").unwrap(),
        seed: 5,
        format: Format::Csv,
    })
    .unwrap();
    std::fs::remove_file(dir.join("source/crm/operators.csv")).unwrap();
}

/// Ingest with `crm/operators` from `url`, and check the snapshot and the quarantine.
async fn scenario(database: String, url: String, source_url: String) {
    let dir = tempfile::tempdir().unwrap();
    generated(dir.path());
    let mut config = common::config(
        dir.path(),
        database,
        format!("file:{}", dir.path().join("outbox").display()),
    );
    config.sources.insert(
        "crm/operators".into(),
        SqlSource {
            url,
            query: "SELECT * FROM crm_operators ORDER BY operator_id;".into(),
        },
    );
    // One bad row of four on purpose: over the default 1 % bound, which would fail the
    // ingest (ingest.max_quarantine_share, issue 9).
    config.ingest.max_quarantine_share = 0.5;
    config.validate().unwrap();
    let app = App::open(config).await.unwrap();
    let label = format!("sql:{source_url}#crm/operators");

    let first = close::run_ingest(&app, chrono::Utc::now()).await.unwrap();
    assert!(!first.reused);
    let ops = first
        .datasets
        .iter()
        .find(|d| d.dataset == "crm/operators")
        .unwrap();
    assert_eq!(ops.source, label);
    assert_eq!((ops.rows_in, ops.rows_ok, ops.rows_quarantined), (4, 3, 1));

    // The snapshot's operators are the table's good rows, typed by the contract.
    let inputs = app.lake.read_snapshot(&first.snapshot).await.unwrap();
    let got = inputs
        .operators
        .collect()
        .unwrap()
        .sort(["operator_id"], Default::default())
        .unwrap();
    let ids: Vec<Option<&str>> = got
        .column("operator_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(ids, [Some("op-a"), Some("op-b"), Some("op-d")]);
    let joined = got
        .column("joined_on")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    let joined: Vec<Option<&str>> = joined.str().unwrap().iter().collect();
    assert_eq!(
        joined,
        [Some("2024-01-15"), Some("2024-03-01"), Some("2023-12-31")]
    );
    let term = got
        .column("terminated_on")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    let term: Vec<Option<&str>> = term.str().unwrap().iter().collect();
    assert_eq!(term, [None, Some("2025-05-31"), None]);
    let names: Vec<Option<&str>> = got.column("name").unwrap().str().unwrap().iter().collect();
    assert_eq!(
        names,
        [Some("Ada North"), Some("Bo \"B\" Lee"), Some("Dee O'Hara")]
    );

    // The bad row (op-c, 3rd of the ordered result, empty name) is quarantined.
    let qloc = ops.quarantine.clone().unwrap();
    let q = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(qloc.into()))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(q.height(), 1, "{q}");
    assert_eq!(
        q.column("file").unwrap().str().unwrap().get(0),
        Some(label.as_str())
    );
    assert_eq!(q.column("row").unwrap().str().unwrap().get(0), Some("3"));
    assert_eq!(
        q.column("column").unwrap().str().unwrap().get(0),
        Some("name")
    );
    assert_eq!(
        q.column("operator_id").unwrap().str().unwrap().get(0),
        Some("op-c")
    );

    // Unchanged rows: the snapshot is reused.
    let again = close::run_ingest(&app, chrono::Utc::now()).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.fingerprint, first.fingerprint);
    assert_eq!(again.snapshot, first.snapshot);

    // A missing column names the dataset, the source and the column.
    let mut config = app.config.clone();
    if let Some(s) = config.sources.get_mut("crm/operators") {
        s.query =
            "SELECT operator_id, name, email, metro, verticals, terminated_on FROM crm_operators"
                .into();
    }
    let app2 = App::open(config).await.unwrap();
    let err = format!(
        "{:#}",
        close::run_ingest(&app2, chrono::Utc::now())
            .await
            .unwrap_err()
    );
    assert!(
        err.contains(&format!(
            "missing column joined_on in the result of SQL source {label} of crm/operators"
        )),
        "{err}"
    );
}

const ROWS: &str = "('op-b', 'Bo \"B\" Lee', 'bo@ops.example', 'Austin', 'dental', '2024-03-01', '2025-05-31'),\
     ('op-a', 'Ada North', 'ada@ops.example', 'Denver', 'dental;hvac', '2024-01-15', NULL),\
     ('op-d', 'Dee O''Hara', 'dee@ops.example', 'Austin', 'hvac', '2023-12-31', NULL),\
     ('op-c', '', 'c@ops.example', 'Austin', 'hvac', '2024-02-01', NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_source_on_postgres() {
    let Some(database) = common::pg_database("sqlsrc").await else {
        return;
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&database)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "CREATE TABLE crm_operators (operator_id text PRIMARY KEY, name text NOT NULL, \
         email text NOT NULL, metro text NOT NULL, verticals varchar(200) NOT NULL, \
         joined_on date NOT NULL, terminated_on date, extra_col integer DEFAULT 7); \
         INSERT INTO crm_operators (operator_id, name, email, metro, verticals, joined_on, terminated_on) VALUES {ROWS}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    // The source lives in the same database here; any other would do.
    scenario(
        database.url.clone(),
        database.url.clone(),
        database.url.clone(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_source_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let crm = format!("sqlite://{}", dir.path().join("crm.db").display());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{crm}?mode=rwc"))
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "CREATE TABLE crm_operators (operator_id TEXT PRIMARY KEY, name TEXT, email TEXT, \
         metro TEXT, verticals TEXT, joined_on DATE, terminated_on DATE); \
         INSERT INTO crm_operators VALUES {ROWS}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("opnet.db").display());
    scenario(db, crm.clone(), crm).await;
}

/// R8.1 on PostgreSQL: `crm/leads` from a query that yields the optional
/// `referred_by_operator_id` (a `varchar` column) gives a snapshot with it, its padded
/// id quarantined naming the SQL source; a query without it is valid and gives a
/// snapshot without the column, so the scorecard's `community_contribution` is null
/// (not 0) for every operator; the two are different sources (fingerprints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_sql_source_with_and_without_referrals_on_postgres() {
    let Some(database) = common::pg_database("sqlleads").await else {
        return;
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&database)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE crm_leads (lead_id text PRIMARY KEY, source text NOT NULL, \
         vertical text NOT NULL, metro text NOT NULL, created_at timestamptz NOT NULL, \
         assigned_operator_id text, first_contact_at timestamptz, converted_customer_id text, \
         referred_by_operator_id varchar(20)); \
         INSERT INTO crm_leads VALUES \
         ('LD-1', 'referral', 'dental', 'Austin', '2025-06-02 09:30:00+00', 'OP-0002', '2025-06-02 11:00:00+00', NULL, 'OP-0001'), \
         ('LD-2', 'referral', 'dental', 'Austin', '2025-06-03 09:30:00+02', NULL, NULL, NULL, 'OP-0001'), \
         ('LD-3', 'website', 'hvac', 'Denver', '2025-06-04 09:30:00+00', NULL, NULL, NULL, NULL), \
         ('LD-4', 'referral', 'hvac', 'Denver', '2025-06-05 09:30:00+00', NULL, NULL, NULL, 'OP-0001 ')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate::generate(&GenerateOptions {
        out: dir.path().join("source"),
        operators: 6,
        months: 2,
        end: Period::parse("2025-06").unwrap(),
        seed: 5,
        format: Format::Csv,
    })
    .unwrap();
    // Every dataset from the generated files but crm/leads, from the table.
    std::fs::remove_file(dir.path().join("source/crm/leads.csv")).unwrap();
    let label = format!("sql:{}#crm/leads", database.url);
    let ingest = async |query: &str| {
        let mut config = common::config(
            dir.path(),
            format!("sqlite://{}", dir.path().join("opnet.db").display()),
            format!("file:{}", dir.path().join("outbox").display()),
        );
        config.sources.insert(
            "crm/leads".into(),
            SqlSource {
                url: database.url.clone(),
                query: query.into(),
            },
        );
        // One bad lead of four on purpose.
        config.ingest.max_quarantine_share = 0.5;
        config.validate().unwrap();
        let app = App::open(config).await.unwrap();
        let report = close::run_ingest(&app, chrono::Utc::now()).await.unwrap();
        let inputs = app.lake.read_snapshot(&report.snapshot).await.unwrap();
        (report, inputs)
    };
    let community = |inputs: &opnet_pipelines::Inputs| -> Vec<(String, Option<f64>)> {
        let out = opnet_pipelines::scorecard::operator_scorecards(
            inputs,
            Period::parse("2025-06").unwrap(),
            &opnet_pipelines::Plan::playbook(),
        )
        .unwrap()
        .filter(col("component").eq(lit("community_contribution")))
        .collect()
        .unwrap();
        let ids = out.column("operator_id").unwrap().str().unwrap().clone();
        let values = out.column("value").unwrap().f64().unwrap().clone();
        ids.iter()
            .zip(values.iter())
            .map(|(id, v)| (id.unwrap_or_default().to_string(), v))
            .collect()
    };

    let (with, inputs) = ingest("SELECT * FROM crm_leads ORDER BY lead_id").await;
    let leads_report = with
        .datasets
        .iter()
        .find(|d| d.dataset == "crm/leads")
        .unwrap();
    assert_eq!(leads_report.source, label);
    // LD-2 was written in +02:00 but PostgreSQL renders it in UTC: kept. LD-4's
    // padded referrer is quarantined.
    assert_eq!(
        (
            leads_report.rows_in,
            leads_report.rows_ok,
            leads_report.rows_quarantined
        ),
        (4, 3, 1)
    );
    let q = std::fs::read_to_string(leads_report.quarantine.clone().unwrap()).unwrap();
    assert!(
        q.contains(&format!("{label},4,referred_by_operator_id,")),
        "{q}"
    );
    let leads = inputs.leads.clone().collect().unwrap();
    let referred: Vec<Option<&str>> = leads
        .column("referred_by_operator_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(referred, [Some("OP-0001"), Some("OP-0001"), None]);
    let created = leads
        .column("created_at")
        .unwrap()
        .cast(&DataType::String)
        .unwrap();
    assert_eq!(
        created.str().unwrap().get(1),
        Some("2025-06-03 07:30:00.000")
    );
    // Two referral leads referred by OP-0001 in 2025-06; everyone else zero.
    let scores = community(&inputs);
    assert!(scores.iter().any(|(op, _)| op == "OP-0001"), "{scores:?}");
    for (op, value) in &scores {
        let expected = if op == "OP-0001" { 2.0 } else { 0.0 };
        assert_eq!(*value, Some(expected), "{op}");
    }

    let (without, inputs) = ingest(
        "SELECT lead_id, source, vertical, metro, created_at, assigned_operator_id, \
         first_contact_at, converted_customer_id FROM crm_leads ORDER BY lead_id",
    )
    .await;
    assert!(!without.reused);
    assert_ne!(without.fingerprint, with.fingerprint);
    let leads_report = without
        .datasets
        .iter()
        .find(|d| d.dataset == "crm/leads")
        .unwrap();
    assert_eq!((leads_report.rows_in, leads_report.rows_ok), (4, 4));
    let schema = inputs.leads.clone().collect_schema().unwrap();
    assert!(
        schema.get("referred_by_operator_id").is_none(),
        "{schema:?}"
    );
    let scores = community(&inputs);
    assert!(scores.iter().any(|(op, _)| op == "OP-0001"), "{scores:?}");
    assert!(scores.iter().all(|(_, v)| v.is_none()), "{scores:?}");
}
