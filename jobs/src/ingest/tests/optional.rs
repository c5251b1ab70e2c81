//! Optional contract columns (crm/leads' `referred_by_operator_id`, R8.1): a source
//! with the column gets it validated and kept, one without it gives a snapshot
//! without it, in every format and from SQL; the scorecard then tells "not provided"
//! (null) from "provided" (a count).

use super::*;
use crate::store::LocalDir;
use chrono::TimeZone;
use opnet_pipelines::scorecard::{REFERRED_BY, component, operator_scorecards};
use opnet_pipelines::{Period, Plan};
use std::sync::Arc;

const LEADS_HEADER: &str = "lead_id,source,vertical,metro,created_at,assigned_operator_id,first_contact_at,converted_customer_id";

/// crm/leads as CSV: `rows` are the required columns' values, `referred` (when
/// given) the optional column's, one per row.
fn leads_csv(rows: &[&str], referred: Option<&[&str]>) -> String {
    let mut text = LEADS_HEADER.to_string();
    if referred.is_some() {
        text.push_str(",referred_by_operator_id");
    }
    text.push('\n');
    for (i, r) in rows.iter().enumerate() {
        text.push_str(r);
        if let Some(refs) = referred {
            text.push(',');
            text.push_str(refs.get(i).copied().unwrap_or_default());
        }
        text.push('\n');
    }
    text
}

const LEAD_ROWS: [&str; 3] = [
    "ld-1,referral,dental,Austin,2025-08-01T10:00:00Z,op-1,,",
    "ld-2,referral,dental,Austin,2025-08-02T10:00:00Z,,,",
    "ld-3,website,dental,Austin,2025-08-03T10:00:00Z,,,",
];

fn names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect()
}

fn required_leads_columns() -> Vec<String> {
    contract::LEADS
        .columns
        .iter()
        .map(|c| c.name.to_string())
        .collect()
}

/// R8.1: a leads file without `referred_by_operator_id` is valid and gives rows
/// without the column (not a column of nulls); with it, the column is typed text,
/// an empty value is null, and it follows the required columns.
#[test]
fn r8_1_leads_csv_with_and_without_the_optional_column() -> anyhow::Result<()> {
    let d = &contract::LEADS;
    let without = leads_csv(&LEAD_ROWS, None);
    let raw = read_raw(d, Format::Csv, without.as_bytes(), "leads.csv")?;
    let v = validate(d, raw, "leads.csv", &rules())?;
    assert_eq!(v.rows_quarantined, 0);
    assert_eq!(names(&v.ok), required_leads_columns());

    let with = leads_csv(&LEAD_ROWS, Some(&["op-2", "", "op-9"]));
    let raw = read_raw(d, Format::Csv, with.as_bytes(), "leads.csv")?;
    let v = validate(d, raw, "leads.csv", &rules())?;
    assert_eq!(v.rows_quarantined, 0);
    let mut expected = required_leads_columns();
    expected.push(REFERRED_BY.to_string());
    assert_eq!(names(&v.ok), expected);
    assert_eq!(v.ok.column(REFERRED_BY)?.dtype(), &DataType::String);
    // Kept as the source says: a referral of a non-referral lead, or by an operator
    // unknown to the CRM, is the scorecard's to ignore, not ingest's to judge.
    assert_eq!(
        column_strs(&v.ok, REFERRED_BY)?,
        [Some("op-2".into()), None, Some("op-9".into())]
    );
    // The column takes part in the key: two copies of a lead that differ only in
    // who referred it are both quarantined (file order must not pick the referrer).
    let twice = leads_csv(
        &[LEAD_ROWS[0], LEAD_ROWS[0], LEAD_ROWS[1]],
        Some(&["op-2", "op-3", ""]),
    );
    let raw = read_raw(d, Format::Csv, twice.as_bytes(), "leads.csv")?;
    let v = validate(d, raw, "leads.csv", &rules())?;
    assert_eq!((v.ok.height(), v.rows_quarantined), (1, 2));
    let lines = quarantine_lines(&v.quarantine)?;
    assert!(
        lines[0].2.contains("different referred_by_operator_id"),
        "{lines:?}"
    );
    Ok(())
}

/// R8.1 and issue 9: `referred_by_operator_id` is an operator id like any other
/// `*_id`: one padded with a space or carrying a control character would count for
/// an operator of its own, so its row is quarantined naming the column, with the
/// original value in the quarantine file.
#[test]
fn r8_1_bad_referrer_id_is_quarantined() -> anyhow::Result<()> {
    let d = &contract::LEADS;
    let text = leads_csv(&LEAD_ROWS, Some(&[" op-1", "op-\u{7}2", "op-3"]));
    let raw = read_raw(d, Format::Csv, text.as_bytes(), "/src/crm/leads.csv")?;
    let v = validate(d, raw, "/src/crm/leads.csv", &rules())?;
    assert_eq!((v.ok.height(), v.rows_quarantined), (1, 2));
    assert_eq!(column_strs(&v.ok, "lead_id")?, [Some("ld-3".into())]);
    let lines = quarantine_lines(&v.quarantine)?;
    assert_eq!(
        lines,
        [
            (
                1,
                REFERRED_BY.into(),
                "an id with leading or trailing whitespace: \" op-1\"".into()
            ),
            (
                2,
                REFERRED_BY.into(),
                "an id with a control character: \"op-\\u{7}2\"".into()
            ),
        ]
    );
    assert_eq!(
        column_strs(&v.quarantine, REFERRED_BY)?,
        [Some(" op-1".into()), Some("op-\u{7}2".into())]
    );
    // Without the column the quarantine file has none either.
    let text = leads_csv(&["ld-1,referral,dental,Austin,2025-08-01 10:00,,,"], None);
    let raw = read_raw(d, Format::Csv, text.as_bytes(), "leads.csv")?;
    let v = validate(d, raw, "leads.csv", &rules())?;
    assert_eq!(v.rows_quarantined, 1);
    assert!(v.quarantine.column(REFERRED_BY).is_err());
    Ok(())
}

/// JSON Lines writers often leave out null keys: the optional column is in the
/// source when any line has its key (even as `null`), absent when none has it.
#[test]
fn r8_1_jsonl_optional_column_is_present_when_a_line_has_its_key() -> anyhow::Result<()> {
    let d = &contract::LEADS;
    let line = |id: &str, extra: &str| {
        format!(
            "{{\"lead_id\":\"{id}\",\"source\":\"referral\",\"vertical\":\"dental\",\"metro\":\"Austin\",\"created_at\":\"2025-08-01T10:00:00Z\"{extra}}}\n"
        )
    };
    let cases = [
        (
            line("a", "") + &line("b", ",\"referred_by_operator_id\":\"op-1\""),
            Some(vec![None, Some("op-1".to_string())]),
        ),
        (
            line("a", ",\"referred_by_operator_id\":null") + &line("b", ""),
            Some(vec![None, None]),
        ),
        (line("a", "") + &line("b", ""), None),
    ];
    for (text, expected) in cases {
        let raw = read_raw(d, Format::JsonLines, text.as_bytes(), "leads.jsonl")?;
        let v = validate(d, raw, "leads.jsonl", &rules())?;
        assert_eq!(v.rows_quarantined, 0, "{text}");
        match expected {
            Some(values) => assert_eq!(column_strs(&v.ok, REFERRED_BY)?, values, "{text}"),
            None => assert_eq!(names(&v.ok), required_leads_columns(), "{text}"),
        }
    }
    Ok(())
}

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 9, 1, h, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The R8.1 `community_contribution` row of op-1 for 2025-08 from a snapshot:
/// (value, score).
async fn community_contribution(
    lake: &Lake,
    snapshot: &str,
) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let inputs = lake.read_snapshot(snapshot).await?;
    let period = Period::parse("2025-08")?;
    let out = operator_scorecards(&inputs, period, &Plan::playbook())?
        .filter(
            col("operator_id")
                .eq(lit("op-1"))
                .and(col("component").eq(lit(component::COMMUNITY_CONTRIBUTION))),
        )
        .collect()?;
    anyhow::ensure!(out.height() == 1, "{out}");
    Ok((
        out.column("value")?.f64()?.get(0),
        out.column("score")?.f64()?.get(0),
    ))
}

/// R8.1 end to end through the lake: a leads file with the column gives a snapshot
/// whose leads have it (and the scorecard counts op-1's referral), one without gives
/// a snapshot without it (and `community_contribution` is null, not 0); in CSV,
/// JSON Lines and Parquet alike. The fingerprints differ, so neither snapshot is
/// reused for the other source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_1_snapshot_keeps_the_optional_column_exactly_when_the_source_has_it()
-> anyhow::Result<()> {
    let lake_dir = tempfile::tempdir()?;
    let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
    let with = leads_csv(&LEAD_ROWS, Some(&["", "op-1", "op-1"]));
    let without = leads_csv(&LEAD_ROWS, None);
    let mut fingerprints = Vec::new();
    for (hour, (text, present)) in [(&with, true), (&without, false)].into_iter().enumerate() {
        for (k, format) in [Format::Csv, Format::JsonLines, Format::Parquet]
            .into_iter()
            .enumerate()
        {
            let src = tempfile::tempdir()?;
            snapshot_sample(src.path())?;
            std::fs::remove_file(src.path().join("crm/leads.csv"))?;
            let raw = read_raw(&contract::LEADS, Format::Csv, text.as_bytes(), "x")?;
            let mut typed = validate(&contract::LEADS, raw, "x", &rules())?.ok;
            match format {
                Format::Csv => write(src.path(), "crm/leads.csv", text.as_bytes())?,
                Format::Parquet => {
                    let mut buf = Vec::new();
                    ParquetWriter::new(&mut buf).finish(&mut typed)?;
                    write(src.path(), "crm/leads.parquet", &buf)?;
                }
                Format::JsonLines => {
                    write(src.path(), "crm/leads.jsonl", csv_to_jsonl(text).as_bytes())?
                }
            }
            let report = ingest(
                &LocalDir::new(src.path()),
                &lake,
                at(hour as u32 * 3 + k as u32),
            )
            .await?;
            assert_eq!(report.rows_quarantined(), 0, "{format:?} {report:?}");
            fingerprints.push(report.fingerprint.clone());
            let leads = lake
                .read_snapshot(&report.snapshot)
                .await?
                .leads
                .collect()?;
            assert_eq!(leads.height(), 3, "{format:?}");
            let expected = if present {
                assert_eq!(leads.column(REFERRED_BY)?.dtype(), &DataType::String);
                assert_eq!(
                    column_strs(&leads, REFERRED_BY)?,
                    [None, Some("op-1".into()), Some("op-1".into())],
                    "{format:?}"
                );
                // One referral lead referred by op-1 in M−11..M (ld-3 is a website
                // lead): value 1, score 100 × 1 / 4.
                (Some(1.0), Some(25.0))
            } else {
                assert!(leads.column(REFERRED_BY).is_err(), "{format:?}");
                (None, None)
            };
            assert_eq!(
                community_contribution(&lake, &report.snapshot).await?,
                expected,
                "{format:?}"
            );
        }
    }
    let distinct: std::collections::BTreeSet<&String> = fingerprints.iter().collect();
    assert_eq!(distinct.len(), fingerprints.len(), "{fingerprints:?}");
    Ok(())
}

/// A CSV text (no quoting) as JSON Lines: every value a string, empty ones left out.
fn csv_to_jsonl(text: &str) -> String {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    lines
        .map(|l| {
            let fields: Vec<String> = header
                .iter()
                .zip(l.split(','))
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect();
            format!("{{{}}}\n", fields.join(","))
        })
        .collect()
}

/// The sample source folder of the snapshot tests, as CSV.
fn snapshot_sample(dir: &Path) -> anyhow::Result<()> {
    for (d, row) in sample_rows() {
        let header: Vec<&str> = row.iter().map(|(k, _)| *k).collect();
        let vals: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
        write(
            dir,
            &format!("{}.csv", d.path()),
            format!("{}\n{}\n", header.join(","), vals.join(",")).as_bytes(),
        )?;
    }
    Ok(())
}

/// A SQLite database `crm.db` in `dir` with `crm_leads` (the required columns and
/// `referred_by_operator_id`); returns its URL.
async fn sqlite_leads(dir: &Path) -> anyhow::Result<String> {
    let url = format!("sqlite://{}", dir.join("crm.db").display());
    sqlx::any::install_default_drivers();
    let mut conn =
        <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{url}?mode=rwc")).await?;
    sqlx::raw_sql(
        "CREATE TABLE crm_leads (lead_id TEXT, source TEXT, vertical TEXT, metro TEXT, \
         created_at TEXT, assigned_operator_id TEXT, first_contact_at TEXT, \
         converted_customer_id TEXT, referred_by_operator_id TEXT); \
         INSERT INTO crm_leads VALUES \
         ('ld-1', 'referral', 'dental', 'Austin', '2025-08-01T10:00:00Z', 'op-1', NULL, NULL, NULL), \
         ('ld-2', 'referral', 'dental', 'Austin', '2025-08-02T10:00:00Z', NULL, NULL, NULL, 'op-1'), \
         ('ld-3', 'referral', 'dental', 'Austin', '2025-08-03T10:00:00Z', NULL, NULL, NULL, ' op-1')",
    )
    .execute(&mut conn)
    .await?;
    sqlx::Connection::close(conn).await?;
    Ok(url)
}

const SQL_REQUIRED: &str = "lead_id, source, vertical, metro, created_at, \
    assigned_operator_id, first_contact_at, converted_customer_id";

/// R8.1 from SQL: a query yielding `referred_by_operator_id` gives a snapshot with it
/// (its bad value quarantined naming the SQL source), a query without it gives one
/// without it; the two fingerprints differ even where the rows' other values do not.
/// A query that does not run at all is an error, never "no such column".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_1_sql_source_with_and_without_the_optional_column() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = sqlite_leads(dir.path()).await?;
    let src = tempfile::tempdir()?;
    snapshot_sample(src.path())?;
    std::fs::remove_file(src.path().join("crm/leads.csv"))?;
    let lake_dir = tempfile::tempdir()?;
    let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
    // One bad row of three on purpose.
    let opts = IngestConfig {
        max_quarantine_share: 1.0,
        ..IngestConfig::default()
    };
    let run = async |query: String, hour: u32| {
        let sources = BTreeMap::from([(
            "crm/leads".to_string(),
            SqlSource {
                url: url.clone(),
                query,
            },
        )]);
        ingest_with_sources(&LocalDir::new(src.path()), &lake, at(hour), &sources, &opts).await
    };

    let with = run("SELECT * FROM crm_leads ORDER BY lead_id".into(), 1).await?;
    let leads = with
        .datasets
        .iter()
        .find(|d| d.dataset == "crm/leads")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no leads report"))?;
    assert_eq!(
        (leads.rows_in, leads.rows_ok, leads.rows_quarantined),
        (3, 2, 1)
    );
    let q = std::fs::read_to_string(leads.quarantine.as_deref().unwrap_or_default())?;
    assert!(
        q.contains(&format!(
            "sql:{url}#crm/leads,3,referred_by_operator_id,\"an id with leading or trailing whitespace: \"\" op-1\"\"\""
        )),
        "{q}"
    );
    let snap = lake.read_snapshot(&with.snapshot).await?.leads.collect()?;
    assert_eq!(
        column_strs(&snap, REFERRED_BY)?,
        [None, Some("op-1".into())]
    );

    let without = run(
        format!("SELECT {SQL_REQUIRED} FROM crm_leads ORDER BY lead_id"),
        2,
    )
    .await?;
    assert!(!without.reused);
    let snap = lake
        .read_snapshot(&without.snapshot)
        .await?
        .leads
        .collect()?;
    assert_eq!(snap.height(), 3);
    assert_eq!(names(&snap), required_leads_columns());

    // The same rows with the column all NULL: a source that has the column (zero
    // referrals), not one without it — another fingerprint, another snapshot.
    let nulls = run(
        format!(
            "SELECT {SQL_REQUIRED}, NULL AS referred_by_operator_id FROM crm_leads ORDER BY lead_id"
        ),
        3,
    )
    .await?;
    assert!(!nulls.reused);
    assert_ne!(nulls.fingerprint, without.fingerprint);
    let snap = lake.read_snapshot(&nulls.snapshot).await?.leads.collect()?;
    assert_eq!(snap.column(REFERRED_BY)?.null_count(), 3);

    let broken = run("SELECT * FROM no_such_table".into(), 4).await.err();
    assert!(
        matches!(&broken, Some(IngestError::Sql { reason, .. }) if reason.starts_with("query failed")),
        "{broken:?}"
    );
    Ok(())
}
